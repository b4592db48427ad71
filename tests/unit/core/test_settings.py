"""`Settings` (`hubbub.core.settings`) refuses values the server cannot run with."""

from __future__ import annotations

from typing import Any

import pytest

from hubbub.core.settings import Settings
from hubbub.errors import ConfigError


@pytest.mark.parametrize(
    "kwargs",
    [
        {"port": -1},
        {"max_message_size": 10},
        {"ping_timeout": 0},
        {"send_queue_bytes": 100},
        {"send_buffer": 16384},
        {"send_buffer": -1},
        {"log_format": "xml"},
        {"allowed_origins": ("example.com",)},
    ],
)
def test_settings_refuse_what_cannot_work(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        Settings(**kwargs)
