"""`hubbub serve`'s settings from flags, `HUBBUB_*` variables, a config file and the defaults, as plain values.

Each setting is declared once (`hubbub.core.settings`); these tests hold that
every reader derives from that one declaration, that the first source that
sets a value wins (flags, then variables, then the file), and that a mistake
in the file names the file and the key.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

import pytest

from hubbub.cli import config
from hubbub.cli.main import build_parser, parse_args
from hubbub.cli.parser import commands
from hubbub.cli.settings import SERVE_OPTIONS, read_config, settings_from, unknown_variables
from hubbub.core.settings import OPTIONS, Settings
from hubbub.errors import ConfigError
from hubbub.protocol.namespaces import JoinRule, Namespace, PublishRule


def _settings(*argv: str, env: dict[str, str] | None = None) -> Settings:
    return settings_from(parse_args(build_parser(), ["serve", *argv]), env or {})


def _file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "hubbub.toml"
    path.write_text(text)
    return str(path)


def test_every_setting_is_a_flag_a_variable_and_a_key_of_one_name() -> None:
    serve = commands(build_parser())["serve"]
    flags = {flag for action in serve._actions for flag in action.option_strings}
    for option in SERVE_OPTIONS:
        assert option.flag == "--" + option.key.replace("_", "-") and option.flag in flags
        assert option.env == "HUBBUB_" + option.key.upper()
    declared = {f.name for f in dataclasses.fields(Settings)} - {"max_fragments", "close_timeout"}
    declared -= {"slow_close_grace", "inbox_high_water", "extra"}  # for Python callers only
    declared -= {"namespaces"}  # the config file's [[namespaces]] tables, and Python callers
    assert {o.attr for o in OPTIONS} == declared


def test_the_defaults_are_the_settings_defaults() -> None:
    assert dataclasses.replace(_settings(), node_id="n") == Settings(node_id="n")


def test_a_flag_wins_over_a_variable_which_wins_over_the_file(tmp_path: Path) -> None:
    path = _file(tmp_path, "port = 8101\nping_interval = 5\nbroker = 'memory'\n")
    assert _settings("--config", path).port == 8101
    assert _settings("--config", path).ping_interval == 5.0  # an integer is a number
    assert _settings("--config", path, env={"HUBBUB_PORT": "8102"}).port == 8102
    assert _settings("--config", path, "--port", "8103", env={"HUBBUB_PORT": "8102"}).port == 8103
    assert _settings(env={"HUBBUB_CONFIG": path}).port == 8101
    other = tmp_path / "other.toml"
    other.write_text("port = 8104\n")
    assert _settings("--config", str(other), env={"HUBBUB_CONFIG": path}).port == 8104


def test_lists_from_flags_and_variables_add_up_and_replace_the_file(tmp_path: Path) -> None:
    path = _file(tmp_path, 'allowed_origin = ["https://a.example"]\nproxy_header = []\n')
    assert _settings("--config", path).allowed_origins == ("https://a.example",)
    env = {"HUBBUB_ALLOWED_ORIGIN": "https://b.example,https://c.example"}
    assert _settings("--config", path, env=env).allowed_origins == ("https://b.example", "https://c.example")
    both = _settings("--config", path, "--allowed-origin", "https://d.example", env=env).allowed_origins
    assert both == ("https://b.example", "https://c.example", "https://d.example")
    assert _settings("--config", path).proxy_headers == ("Cookie", "Authorization")  # empty: the default


def test_a_switch_is_true_or_false_and_no_presence_events_turns_presence_events_off(tmp_path: Path) -> None:
    path = _file(tmp_path, "echo = true\nno_presence_events = true\n")
    s = _settings("--config", path)
    assert s.echo and not s.presence_events
    assert not _settings("--config", path, env={"HUBBUB_ECHO": "0"}).echo  # a variable can turn it off


def test_the_secret_file_and_the_app_are_keys_too(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s" * 32 + "\n")
    path = _file(tmp_path, f"auth_secret_file = {str(secret)!r}\n")
    assert _settings("--config", path).auth_secret == "s" * 32
    with pytest.raises(ConfigError, match="give --auth-secret or --auth-secret-file, not both"):
        _settings("--config", path, env={"HUBBUB_AUTH_SECRET": "t" * 32})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("publish = 'proxy'", "namespace 'a*': publish = \"proxy\" needs --publish-proxy"),
        ("join = 'proxy'", "namespace 'a*': join = \"proxy\" needs --join-proxy"),
        ("join = 'token'", "namespace 'a*': join = \"token\" needs credentials that name rooms"),
    ],
)
def test_a_namespace_that_names_a_proxy_needs_it(tmp_path: Path, text: str, message: str) -> None:
    path = _file(tmp_path, f"[[namespaces]]\npattern = 'a*'\n{text}\n")
    with pytest.raises(ConfigError, match=f"^{re.escape(path)}: {re.escape(message)}"):  # names the file
        _settings("--config", path)


def test_namespaces_are_read_in_order_with_their_defaults(tmp_path: Path) -> None:
    path = _file(
        tmp_path,
        "[[namespaces]]\npattern = 'news:*'\npublish = 'server'\nhistory_size = 5\npresence = false\n"
        "[[namespaces]]\npattern = 'dm:*'\njoin = 'token'\n",
    )
    settings = _settings("--config", path, "--history-ttl", "60", "--auth-secret", "s" * 32)
    assert settings.namespaces == (
        Namespace("news:*", PublishRule.SERVER, history_size=5, presence=False),
        Namespace("dm:*", join=JoinRule.TOKEN),
    )
    rules = settings.namespace_rules()
    assert (rules.rules("news:a").history_size, rules.rules("news:a").history_ttl) == (5, 60.0)
    assert rules.rules("dm:x").history_size == 1000 and rules.rules("dm:x").presence
    assert rules.rules("lobby").outside and not rules.rules("news:a").outside


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("prot = 8000", "hubbub.toml: unknown key 'prot' (did you mean 'port'?)"),
        ("[[namespaces]]\nname = 'chat'", "hubbub.toml: namespaces[1]: unknown key 'name'"),
        (
            "[[namespaces]]\npattern = 'a*'\nsize = 1\nlook = 2",
            "hubbub.toml: namespaces[1]: unknown keys 'look', 'size'",
        ),
        ("[[namespaces]]\npublish = 'server'", "hubbub.toml: namespaces[1]: pattern is required"),
        (
            "[[namespaces]]\npattern = 'a*'\npresense = false\nhistroy_ttl = 5",
            "hubbub.toml: namespaces[1]: unknown keys 'histroy_ttl' (did you mean 'history_ttl'?),"
            " 'presense' (did you mean 'presence'?)",
        ),
        ("namespaces = 1", "hubbub.toml: namespaces must be [[namespaces]] tables"),
        (
            "[[namespaces]]\npattern = 'a*'\npublish = 'anyone'\njoin = 'never'",
            "namespaces[1]: publish must be one of 'members', 'server', 'proxy', not 'anyone';"
            " join must be one of 'open', 'token', 'proxy', not 'never'",
        ),
        ("[[namespaces]]\npattern = 'a*'\nhistory_size = -1", "history_size must be an integer of at least 0"),
        ("[[namespaces]]\npattern = 'a*'\nhistory_ttl = 0", "history_ttl must be a number of seconds above 0"),
        ("[[namespaces]]\npattern = 'a*'\npresence = 'no'", "presence must be true or false"),
        ("config = 'other.toml'", "hubbub.toml: unknown key 'config'"),
        ("port = '8000'", 'hubbub.toml: port must be an integer, not "8000"'),
        ("port = true", "hubbub.toml: port must be an integer, not true"),
        ("ping_interval = 'soon'", 'hubbub.toml: ping_interval must be a number, not "soon"'),
        ("host = 1", "hubbub.toml: host must be a string, not 1"),
        ("echo = 'yes'", 'hubbub.toml: echo must be true or false, not "yes"'),
        ("allowed_origin = 'https://a.example'", "hubbub.toml: allowed_origin must be a list of strings, not"),
        ("api_key = [1234567890123456789]", "hubbub.toml: api_key must be a list of strings"),
        ("port = 70000", "hubbub.toml: port must be between 0 and 65535, not 70000"),
        ("backlog = 0", "hubbub.toml: backlog must be a positive integer, not 0"),
        ("log_level = 'loud'", "hubbub.toml: log_level must be debug, info, warning or error"),
        ("port = ", "hubbub.toml: not a TOML file: "),
    ],
)
def test_a_bad_file_names_the_file_and_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = _file(tmp_path, text + "\n")
    with pytest.raises(ConfigError) as caught:
        _settings("--config", path)
    said = str(caught.value)
    assert said.startswith(path.removesuffix("hubbub.toml")) and message in said and "\n" not in said


def test_a_secret_of_the_wrong_type_is_not_shown(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        read_config(_file(tmp_path, "webhook_secret = 12345678\n"), SERVE_OPTIONS)
    assert str(caught.value).endswith("webhook_secret must be a string")


def test_a_missing_file_is_one_line() -> None:
    with pytest.raises(ConfigError, match=r"^--config: cannot read /nonexistent/h.toml: No such file"):
        _settings("--config", "/nonexistent/h.toml")


def test_a_bad_variable_names_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"^HUBBUB_PORT must be between 0 and 65535, not 70000$"):
        _settings(env={"HUBBUB_PORT": "70000"})
    with pytest.raises(ConfigError, match=r"^HUBBUB_BACKLOG: invalid value '-1'$"):
        _settings(env={"HUBBUB_BACKLOG": "-1"})


def test_a_variable_that_names_no_setting_is_warned_about() -> None:
    env = {
        "HUBBUB_PROT": "8012",
        "HUBBUB_PORT": "8000",
        "HUBBUB_CONFIG": "x.toml",
        "HUBBUB_REQUIRE_BROWSER": "1",
        "HUBBUB_REQUIRE_NODE": "1",
        "HUBBUB_WEBHOK": "x",
        "PATH": "/bin",
    }
    assert list(unknown_variables(env)) == [
        "warning: HUBBUB_PROT names no setting (did you mean HUBBUB_PORT?); ignored",
        "warning: HUBBUB_WEBHOK names no setting (did you mean HUBBUB_WEBHOOK?); ignored",
    ]


def test_the_printed_config_file_reads_back_as_the_defaults(tmp_path: Path) -> None:
    text = config.template()
    data = tomllib.loads(text)
    for option in SERVE_OPTIONS:
        commented = option.default is None or option.secret
        assert (option.key in data) is not commented, option.key
        assert f"# {option.key} = " in text if commented else f"\n{option.key} = " in text
    assert "# ---- Limits: " in text and "max_message_size = 65536" in text
    for line in text.splitlines():
        if line.startswith("# ") and " = " in line and not line.startswith("# ----"):
            tomllib.loads(line[2:])  # uncommented, a line is good TOML
    read = _settings("--config", _file(tmp_path, text))
    assert dataclasses.replace(read, node_id="n") == Settings(node_id="n")
    example = text[text.index("# [[namespaces]]") :]
    uncommented = "\n".join(line[2:] for line in example.splitlines() if not line.startswith("#    "))
    read = _settings("--config", _file(tmp_path, uncommented))
    assert read.namespaces == (
        Namespace("news:*", PublishRule.SERVER, history_size=100, history_ttl=600, presence=False),
    )


def test_settings_keep_their_python_keywords_and_messages() -> None:
    s = Settings(port=8001, allowed_origins=("https://a.example",), presence_events=False, users_file="")
    assert (s.port, s.allowed_origins, s.presence_events) == (8001, ("https://a.example",), False)
    with pytest.raises(ConfigError, match=r"^--port must be between 0 and 65535, not 70000$"):
        Settings(port=70000)
    with pytest.raises(ConfigError, match=r"^--api-from: name must be 1 to"):
        Settings(api_from="")
    with pytest.raises(ConfigError, match=r"^--send-queue-bytes must be at least --max-message-size$"):
        Settings(send_queue_bytes=1000, max_message_size=2000)
    assert "secret" not in repr(Settings(auth_secret="secret" * 6, webhook_secret="secret", api_keys=("k" * 16,)))


def test_an_empty_node_id_is_made_per_run_and_python_log_levels_stay_lenient() -> None:
    assert len(_settings("--node-id", "").node_id) == 12
    assert _settings(env={"HUBBUB_NODE_ID": "n-1"}).node_id == "n-1"
    assert Settings(log_level="DEBUG").log_level == "DEBUG"  # logs.configure takes any case
    with pytest.raises(ConfigError, match=r"^HUBBUB_LOG_LEVEL must be debug, info, warning or error$"):
        _settings(env={"HUBBUB_LOG_LEVEL": "verbose"})
    with pytest.raises(ConfigError, match=r"^--log-format must be text or json$"):
        Settings(log_format="xml")
