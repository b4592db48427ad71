"""What a program uses to talk to a hub: the Python client, its errors, dialing, the server-API
client, the terminal chat and the load generator.

It imports only `hubbub.protocol` of the other layers: a client program never loads the server,
the core or prometheus_client.
"""
