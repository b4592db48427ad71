"""`hubbub.core.rpc` and the built-in `rpc` handler, without sockets: lookup order, answers, bounds."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import msgspec
import pytest

from hubbub.core.builtins import rpc
from hubbub.core.rpc import Methods
from hubbub.errors import EventError
from hubbub.protocol.codes import ErrorCode
from hubbub.protocol.events import METHOD_MAX, Rpc


def client(methods: Methods, max_message_size: int = 100) -> Any:
    hub = SimpleNamespace(rpc_methods=methods, settings=SimpleNamespace(max_message_size=max_message_size))
    return SimpleNamespace(hub=hub, identity="ada")


def call(method: str, data: bytes = b"null") -> Rpc:
    return Rpc(method, msgspec.Raw(data))


async def test_a_local_method_answers_first_then_the_proxy_then_bad_payload() -> None:
    methods = Methods()
    asked: list[str] = []

    async def proxy(conn: Any, method: str, data: msgspec.Raw) -> msgspec.Raw:
        asked.append(method)
        return msgspec.Raw(b'"from the app"')

    methods.add("sync", lambda conn, data: {"user": conn.identity, "got": data})
    with pytest.raises(EventError) as none:
        await rpc(call("elsewhere"), client(methods))
    assert none.value.code is ErrorCode.BAD_PAYLOAD
    methods.proxy = proxy
    answer = await rpc(call("sync", b"[1,2]"), client(methods))
    assert msgspec.json.decode(msgspec.json.encode(answer)) == {"data": {"user": "ada", "got": [1, 2]}}
    assert bytes((await rpc(call("elsewhere"), client(methods)))["data"]) == b'"from the app"'
    assert asked == ["elsewhere"]


async def test_an_async_method_is_awaited_and_its_answer_bounded() -> None:
    methods = Methods()

    async def big(conn: Any, data: Any) -> Any:
        return "x" * data

    methods.add("big", big)
    assert bytes((await rpc(call("big", b"10"), client(methods)))["data"]) == b'"' + b"x" * 10 + b'"'
    with pytest.raises(EventError) as over:
        await rpc(call("big", b"99"), client(methods))  # 101 bytes encoded
    assert over.value.code is ErrorCode.UNAVAILABLE


def test_names_are_registered_once_and_bounded() -> None:
    methods = Methods()
    methods.add("m" * METHOD_MAX, lambda conn, data: None)
    for name in ("", "m" * (METHOD_MAX + 1)):
        with pytest.raises(ValueError, match="1 to"):
            methods.add(name, lambda conn, data: None)
    with pytest.raises(ValueError, match="already registered"):
        methods.add("m" * METHOD_MAX, lambda conn, data: None)
