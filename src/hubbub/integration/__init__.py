"""Where hubbub meets an application: the server API, webhooks, the connect and publish proxies,
and loading an application's `Hub` (`--app`).

It listens to the core's events and may import the core and the layers below it; never the
server, client or cli, and the core never imports it.
"""
