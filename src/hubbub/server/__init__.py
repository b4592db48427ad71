"""Sockets and HTTP: what puts a `Hub` on the network.

It holds the listener and its caps, the picows connection adapter, the front door below picows
(host and origin, login, proxy hold, the pacer), the HTTP routes, static files and the bundled
chat page (`static/`), TLS, logging and `run`. It may import every layer but `hubbub.cli` and
`hubbub.client`.
"""
