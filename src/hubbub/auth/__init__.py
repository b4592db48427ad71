"""Who a client is: logins, password hashes, signed tokens and HMAC signatures.

It may import `hubbub.protocol` and `hubbub.backends` (tickets are kept in a ticket store);
never the core, server, integration, client or cli.
"""
