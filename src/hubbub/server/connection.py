"""The picows adapter of one client: picows' callbacks, translated for its `hubbub.core.connection.Connection`.

picows calls `on_ws_frame` for every frame the socket yields: that is the
read pump. The session says what each frame means (a message to handle, a
pong owed, a close, a budget exceeded) and the adapter calls the connection
accordingly. Writes never pass through here: the connection writes to the raw
transport it was given at `on_ws_connected`.
"""

from __future__ import annotations

import time

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport

from hubbub.core.connection import Connection
from hubbub.protocol.codes import CloseCode
from hubbub.protocol.frames import binary_frame, text_frame
from hubbub.protocol.session import Opcode, State, Verdict

__all__ = ["EchoConnection", "WebSocketListener"]

_TEXT = WSMsgType.TEXT
_CONTINUATION = WSMsgType.CONTINUATION
_BINARY = WSMsgType.BINARY
_CLOSE = WSMsgType.CLOSE
_PING = WSMsgType.PING
_PONG = WSMsgType.PONG
_OPCODES = {_TEXT: Opcode.TEXT, _BINARY: Opcode.BINARY, _CONTINUATION: Opcode.CONTINUATION}
_ALLOW = Verdict.ALLOW
_REFUSE = Verdict.REFUSE


class WebSocketListener(WSListener):
    """picows' listener for one upgraded connection; `conn` is the hubbub connection it serves."""

    __slots__ = ("conn",)

    def __init__(self, conn: Connection) -> None:
        super().__init__()
        self.conn = conn

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.conn.attach(transport, transport.underlying_transport)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        now = time.monotonic()
        conn = self.conn
        kind = frame.msg_type
        session = conn.session
        if frame.rsv1 or frame.rsv2 or frame.rsv3:
            # No extension is negotiated, so a reserved bit is a protocol error.
            conn.close(CloseCode.PROTOCOL_ERROR, "reserved bits set without an extension")
            return
        if kind is _TEXT and frame.fin:
            verdict = session.text(now)
            if verdict is _ALLOW:
                try:
                    text = frame.get_payload_as_utf8_text()
                except UnicodeDecodeError:
                    conn.close(CloseCode.INVALID_DATA, "text frame is not valid UTF-8")
                    return
                conn.receive_text(text)
            elif verdict is _REFUSE:
                conn.refuse(frame.get_payload_as_bytes())
            else:
                conn.carry_out_close()
        elif kind is _PING:
            if session.ping(frame.get_payload_as_bytes(), now):
                conn.pong_owed()
            elif session.state is State.CLOSING:
                conn.carry_out_close()
        elif kind is _PONG:
            if session.pong(now) is Verdict.CLOSE:
                conn.carry_out_close()
        elif kind is _CLOSE:
            has_code = frame.payload_size >= 2
            code = _as_int(frame.get_close_code()) if has_code else int(CloseCode.NO_STATUS)
            conn.peer_closed(code, has_code, int(_ECHOABLE.get(code, WSCloseCode.OK).value))
        else:
            opcode = _OPCODES.get(kind)
            if opcode is None:  # picows refuses unknown opcodes itself; belt and braces
                conn.close(CloseCode.PROTOCOL_ERROR, "unknown opcode")
                return
            verdict, message = session.fragment(opcode, frame.get_payload_as_bytes(), frame.fin, now)
            if verdict is Verdict.CLOSE:
                conn.carry_out_close()
            elif message is not None:
                if verdict is _REFUSE:
                    conn.refuse(message.data)
                elif message.text is None:
                    conn.receive_binary(message.data)
                else:
                    conn.receive_text(message.text)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        handshake = transport.close_handshake
        sent = handshake.sent if handshake is not None else None
        self.conn.transport_lost(_as_int(sent.code) if sent is not None else None)

    def pause_writing(self) -> None:
        self.conn.pause_writing()

    def resume_writing(self) -> None:
        self.conn.resume_writing()


class EchoConnection(Connection):
    """`/echo`: every message comes back through the same outbox and writer.

    For protocol conformance runs (Autobahn): text and binary are both echoed,
    fragmented messages reassembled, and every close rule is the hub's own.
    """

    __slots__ = ()

    def receive_text(self, text: str) -> None:
        self.send_frame(text_frame(text.encode()))

    def receive_binary(self, data: bytes) -> None:
        self.send_frame(binary_frame(data))


def _as_int(code: object) -> int:
    """A close code as an int: picows hands out enum members, or ints outside its enum."""
    value = code.value if isinstance(code, WSCloseCode) else code
    assert isinstance(value, int)
    return value


_ECHOABLE = {int(code.value): code for code in WSCloseCode if code is not WSCloseCode.NO_INFO}
"""Close codes picows can send back; any other valid code is answered with 1000."""
