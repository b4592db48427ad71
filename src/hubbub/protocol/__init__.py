"""The sans-I/O core: what the wire means, as plain functions and classes tested with plain values.

It holds the envelope codec, the event schemas, the close and error codes, frames and their
reassembly, rate limits, the heartbeat decision, the router, the `Host` and `Origin` rules and
`Session`, one client's protocol state. It imports nothing of hubbub but `hubbub.errors`, and no
asyncio, picows or uvloop, so a client program and the tests can load it alone.
"""
