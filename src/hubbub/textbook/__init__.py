"""The textbook hub: the seed's design (gorilla's chat hub, the Go tutorial's manager) in one sitting.

`server.py` reads top to bottom: a `Manager` that registers and unregisters, a `Client` with a
bounded send queue, a read loop and a write loop per connection, typed events routed by type. It
speaks protocol v1's core on the `websockets` library and imports nothing of hubbub's fast server.
Run it with `python -m hubbub.textbook --help`; the rules it keeps, and those only hubbub adds, are
in docs/learn/rules.md.
"""
