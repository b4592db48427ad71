"""The node: the hub and what it does with live connections, whatever carries them.

It holds the `Hub`, rooms and their membership, presence announcements, fan-out, the keepalive
sweep, the built-in handlers, hooks, owned tasks, metrics, control and the settings. It may import
`hubbub.protocol`, `hubbub.backends` and `hubbub.auth`; never picows, the server, integration,
client or cli (connections are reached through an interface, and integrations listen to its events).
"""
