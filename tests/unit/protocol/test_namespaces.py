"""Namespaces as plain values: matching, the first match winning, defaults, the cache and its bound."""

from __future__ import annotations

import pytest

from hubbub.errors import ConfigError
from hubbub.protocol import namespaces
from hubbub.protocol.namespaces import JoinRule, Namespace, Namespaces, PublishRule, from_tables


def test_the_first_matching_namespace_wins_and_others_keep_the_defaults() -> None:
    rules = Namespaces(
        (Namespace("news:*", PublishRule.SERVER, history_size=0), Namespace("news:local:*", join=JoinRule.TOKEN)),
        history_size=1000,
        history_ttl=3600.0,
    )
    local = rules.rules("news:local:paris")
    assert (local.publish, local.join, local.history_size, local.outside) == (
        PublishRule.SERVER,
        JoinRule.OPEN,
        0,
        False,
    )
    lobby = rules.rules("lobby")
    assert lobby is rules.default and lobby.outside and lobby.history_size == 1000 and lobby.presence
    assert rules.history("news:x") == (0, 3600.0) and rules.varied_history


def test_patterns_are_globs_on_the_whole_name() -> None:
    rules = Namespaces((Namespace("user:*:inbox"), Namespace("room-?")), 1, 1.0)
    assert not rules.rules("user:ann:inbox").outside
    assert rules.rules("user:ann:inbox:x").outside  # the whole name, not a prefix
    assert not rules.rules("room-1").outside and rules.rules("room-12").outside
    assert rules.rules("xuser:a:inbox").outside


def test_the_cache_answers_repeats_and_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(namespaces, "MAX_CACHED", 8)
    rules = Namespaces((Namespace("a*"),), 1, 1.0)
    first = rules.rules("a1")
    assert rules.rules("a1") is first
    for n in range(100):  # a client inventing room names cannot grow it past the bound
        rules.rules(f"b{n}")
        assert len(rules._cache) <= 8


def test_tables_name_every_unknown_key_and_bad_value_on_one_line() -> None:
    assert from_tables([{"pattern": "a*", "publish": "server"}]) == (Namespace("a*", PublishRule.SERVER),)
    with pytest.raises(ConfigError, match=r"^namespaces\[2\]: unknown keys 'colour', 'size'$"):
        from_tables([{"pattern": "a*"}, {"pattern": "b*", "size": 1, "colour": "red"}])
    with pytest.raises(ConfigError) as caught:
        from_tables([{"pattern": "a*", "join": "maybe", "history_ttl": -1, "presence": 1}])
    said = str(caught.value)
    assert "join must be one of" in said and "history_ttl" in said and "presence" in said and "\n" not in said
    with pytest.raises(ConfigError, match="pattern is required"):
        from_tables([{"publish": "server"}])
    with pytest.raises(ConfigError, match="must be"):
        from_tables({"pattern": "a*"})
