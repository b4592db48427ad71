"""The files an operator deploys with (`deploy/`), each run or checked as far as this machine allows.

- The Grafana dashboard and the alert rules name only metrics, labels and label values that a real
  node's `/metrics` has (the node is made to count the events whose labels appear only then).
- The alert rules pass `promtool check rules` and their unit tests (`promtool test rules`), and
  every alert's runbook link lands on a heading of docs/howto/monitor.md.
- The compose file is valid (`docker-compose config`, where installed) and holds together: two
  nodes on one Redis, Caddy in front, names and origins that match, a grace period above the
  shutdown timeout. Its Caddyfile runs here, in front of two real nodes: TLS, the WebSocket
  upgrade, Origin and Host, a message from one node to the other, /metrics kept private.
- The Dockerfile's steps run without docker (no daemon here): the wheel builds from the files the
  image copies, installs in a fresh venv, its ENTRYPOINT serves, its HEALTHCHECK passes.
- The systemd unit passes `systemd-analyze verify`, and its ExecStart line, with its config file,
  serves under MemoryDenyWriteExecute's kernel equivalent (prctl PR_SET_MDWE): argon2 logins,
  WebSockets, Redis, webhooks and /metrics all run without writable-and-executable memory.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import tomllib
import venv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin

from hubbub.auth.passwords import hash_password
from tests.cluster import Node, RedisProcess, free_port, wait_port
from tests.helpers import EventClient, eventually
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROMETHEUS_MADE = {"up"}
"""Series Prometheus writes itself for each target, not read from /metrics."""
PROMETHEUS_LABELS = {"instance", "job"}
"""Labels Prometheus adds to every series it scrapes."""


# ---- helpers -------------------------------------------------------------------------------------


def http_get(port: int, path: str, host: str = "127.0.0.1") -> tuple[int, bytes]:
    """GET `path` from a node on loopback with this `Host` (a node told its names answers no other)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers={"Host": host})
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DEPLOY / "grafana" / "hubbub.json").read_text())
    return data


def alert_rules() -> list[dict[str, Any]]:
    data = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    exprs = []
    for panel in dashboard()["panels"]:
        exprs += [target["expr"] for target in panel.get("targets", [])]
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            exprs.append(variable["definition"].removeprefix("label_values(").removesuffix(")").split(",")[0])
    return exprs


def all_exprs() -> list[str]:
    return dashboard_exprs() + [rule["expr"] for rule in alert_rules()]


_SELECTOR = re.compile(r"\b((?:hubbub|process)_[a-z0-9_]+|up)\b(\{[^}]*\})?")
_MATCHER = re.compile(r'([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*"([^"]*)"')


def selectors(expr: str) -> Iterator[tuple[str, list[tuple[str, str, str]]]]:
    """Each metric a PromQL expression names, with its label matchers (name, op, value)."""
    for match in _SELECTOR.finditer(expr):
        yield match.group(1), _MATCHER.findall(match.group(2) or "")


def scrape(port: int, host: str = "127.0.0.1") -> dict[str, dict[str, set[str]]]:
    """A node's /metrics as {sample name: {label: values seen}}."""
    status, body = http_get(port, "/metrics", host)
    assert status == 200, body
    samples: dict[str, dict[str, set[str]]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            labels = samples.setdefault(sample.name, {})
            for key, value in sample.labels.items():
                labels.setdefault(key, set()).add(value)
    return samples


def dockerfile_instruction(name: str, stage: str = "runtime") -> str:
    """The arguments of the Dockerfile's `name` instruction in `stage`, continuation lines joined."""
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    current = ""
    for line in text.splitlines():
        words = line.split(None, 1)
        if not words or line.lstrip().startswith("#"):
            continue
        if words[0] == "FROM":
            current = words[1].split(" AS ")[-1].strip() if " AS " in words[1] else ""
        elif words[0] == name and current == stage:
            return words[1].strip()
    raise AssertionError(f"no {name} in the {stage} stage")


def unit_directives() -> dict[str, list[str]]:
    directives: dict[str, list[str]] = {}
    for line in (DEPLOY / "systemd" / "hubbub.service").read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            directives.setdefault(key.strip(), []).append(value.strip())
    return directives


# ---- the dashboard and the alerts name what /metrics has ------------------------------------------


async def test_every_metric_the_dashboard_and_alerts_name_is_on_a_nodes_metrics(
    tmp_path: Path, redis: RedisProcess, receiver: Receiver
) -> None:
    users = tmp_path / "users"
    users.write_text(f"ada:{hash_password('correct horse battery')}\n")
    hook = await receiver.start()
    node = await Node(
        redis.url, "--users", str(users), "--webhook", hook, "--webhook-secret", "s" * 32, node_id="metrics-1"
    ).start()
    try:
        # a handshake without a ticket: hubbub_handshakes_rejected_total{reason="auth"}, counted from then on
        with pytest.raises(InvalidStatus):
            await EventClient.open(node.url)
        metrics = scrape(node.port)
    finally:
        node.stop()
        await receiver.close()
    exprs = all_exprs()
    assert exprs
    for expr in exprs:
        named = list(selectors(expr))
        assert named, f"names no metric: {expr}"
        for name, matchers in named:
            if name in PROMETHEUS_MADE:
                continue
            assert name in metrics, f"{name} (in {expr!r}) is not on /metrics"
            for label, op, value in matchers:
                if label in PROMETHEUS_LABELS:
                    continue
                assert label in metrics[name], f"{name} has no label {label} (in {expr!r})"
                if op in ("=", "=~"):
                    for alternative in value.split("|"):
                        assert alternative in metrics[name][label], f'{name}{{{label}="{alternative}"}} never appears'
    assert metrics["hubbub_node_info"]["node"] == {"metrics-1"}
    assert metrics["hubbub_broker_healthy"] == {}
    for name in ("process_resident_memory_bytes", "hubbub_max_connections", "hubbub_webhooks_queued"):
        assert name in metrics


def test_the_dashboard_is_templated_on_the_datasource_and_the_node() -> None:
    board = dashboard()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["instance"]["multi"] and variables["instance"]["includeAll"]
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            if "instance" not in target["expr"] and "up{" not in target["expr"]:
                raise AssertionError(f"{panel['title']}: {target['expr']} ignores the node selector")
    titles = " ".join(panel["title"].lower() for panel in board["panels"])
    for subject in ("connections", "messages in", "deliveries", "slow consumers", "rate-limited", "webhook"):
        assert subject in titles
    for subject in ("handshakes refused", "broker", "memory", "nodes"):
        assert subject in titles


# ---- the alert rules -------------------------------------------------------------------------------


def _anchors(markdown: str) -> set[str]:
    """GitHub's anchors for the headings of a Markdown page."""
    anchors = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def test_every_alert_says_what_and_links_to_its_runbook() -> None:
    anchors = _anchors((ROOT / "docs" / "howto" / "monitor.md").read_text())
    names = set()
    for rule in alert_rules():
        names.add(rule["alert"])
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical")
        page, anchor = annotations["runbook_url"].split("#")
        assert page == "docs/howto/monitor.md"
        assert anchor in anchors, f"{rule['alert']}: no heading for #{anchor} in docs/howto/monitor.md"
    for wanted in (
        "HubbubSlowConsumersDropped",
        "HubbubRateLimited",
        "HubbubWebhookFailures",
        "HubbubWebhookBacklog",
        "HubbubBrokerDown",
        "HubbubConnectionsNearCap",
        "HubbubHandshakesRefused",
        "HubbubNodeDown",
    ):
        assert wanted in names


@pytest.mark.skipif(shutil.which("promtool") is None, reason="no promtool (Debian: apt-get install prometheus)")
def test_promtool_checks_the_rules_the_config_and_the_rules_unit_tests() -> None:
    here = DEPLOY / "prometheus"
    for command in (
        ["check", "rules", "alerts.yml"],
        ["check", "config", "prometheus.yml"],
        ["test", "rules", "alerts_test.yml"],
    ):
        done = subprocess.run(["promtool", *command], cwd=here, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
    # every alert is made to fire in the unit tests, and to stay quiet on a healthy node
    tests = (here / "alerts_test.yml").read_text()
    for rule in alert_rules():
        assert tests.count(f"alertname: {rule['alert']}") >= 2, rule["alert"]


# ---- compose and Caddy -----------------------------------------------------------------------------


def test_the_compose_file_holds_together() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    nodes = {name: s for name, s in services.items() if name.startswith("hubbub")}
    assert len(nodes) == 2
    caddy = services["caddy"]
    public_port = caddy["ports"][0].split(":")[0]
    origin = f"https://localhost:{public_port}"
    ids = set()
    for name, node in nodes.items():
        command = node["command"]
        assert "--broker=redis://redis:6379/0" in command
        assert f"--allowed-origin={origin}" in command
        ids.add(next(arg for arg in command if arg.startswith("--node-id=")))
        hosts = node["environment"]["HUBBUB_ALLOWED_HOST"].split(",")
        assert hosts[0] == caddy["environment"]["HUBBUB_PUBLIC_HOST"] == caddy["environment"]["HUBBUB_SITE"]
        assert name in hosts, "Prometheus scrapes the node by this name: its Host must be allowed"
        assert node["depends_on"]["redis"]["condition"] == "service_healthy"
        grace = float(node["stop_grace_period"].removesuffix("s"))
        assert grace > float(node["environment"]["HUBBUB_SHUTDOWN_TIMEOUT"])
        assert int(node["environment"]["HUBBUB_MAX_CONNECTIONS_PER_IP"]) >= int(
            node["environment"]["HUBBUB_MAX_CONNECTIONS"]
        ), "every client comes from Caddy's address"
        assert caddy["depends_on"][name]["condition"] == "service_healthy"
        assert f"{name}:8000" in caddy["environment"]["HUBBUB_UPSTREAMS"].split()
    assert len(ids) == 2
    assert "healthcheck" in services["redis"]
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = prometheus["scrape_configs"][0]["static_configs"][0]["targets"]
    assert sorted(targets) == sorted(f"{name}:8000" for name in nodes)


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="no docker-compose (Debian: docker-compose)")
def test_docker_compose_validates_the_compose_file() -> None:
    for profile in ([], ["--profile", "monitoring"]):
        done = subprocess.run(
            ["docker-compose", "-f", str(DEPLOY / "compose.yaml"), *profile, "config", "-q"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr


@pytest.mark.skipif(shutil.which("caddy") is None, reason="no caddy (Debian: apt-get install caddy)")
async def test_the_caddyfile_in_front_of_two_nodes(tmp_path: Path, redis: RedisProcess) -> None:
    port, http_port = free_port(), free_port()
    site = f"localhost:{port}"
    origin = f"https://{site}"
    nodes = [
        await Node(redis.url, "--allowed-host", "localhost", "--allowed-origin", origin, node_id=f"n{i}").start()
        for i in (1, 2)
    ]
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "CADDY_BIND": "127.0.0.1",
        "CADDY_HTTP_PORT": str(http_port),
        "HUBBUB_SITE": site,
        "HUBBUB_UPSTREAMS": " ".join(f"127.0.0.1:{n.port}" for n in nodes),
        "HUBBUB_PUBLIC_HOST": "localhost",
    }
    caddyfile = str(DEPLOY / "caddy" / "Caddyfile")
    log = tmp_path / "caddy.log"
    with log.open("wb") as out:  # the child keeps its own copy of the descriptor
        caddy = subprocess.Popen(
            ["caddy", "run", "--adapter", "caddyfile", "--config", caddyfile], env=env, stdout=out, stderr=out
        )
    clients: list[EventClient] = []
    try:
        await wait_port(port, timeout=20)
        root = tmp_path / "data" / "caddy" / "pki" / "authorities" / "local" / "root.crt"
        await eventually(root.exists, timeout=10)
        tls = ssl.create_default_context(cafile=str(root))

        def get(path: str) -> int:
            conn = http.client.HTTPSConnection("localhost", port, context=tls, timeout=5)
            try:
                conn.request("GET", path)
                return conn.getresponse().status
            finally:
                conn.close()

        deadline = time.monotonic() + 15
        while True:  # the CA's root is written before the site's certificate is issued
            try:
                assert await asyncio.to_thread(get, "/healthz") == 200
                break
            except (ssl.SSLError, ConnectionError):
                assert time.monotonic() < deadline, "Caddy serves no certificate after 15 s"
                await asyncio.sleep(0.2)
        assert await asyncio.to_thread(get, "/metrics") == 403  # Prometheus scrapes the nodes themselves
        url = f"wss://{site}/ws"
        with pytest.raises(InvalidStatus) as refused:
            await EventClient.open(url + "?name=eve", ssl=tls, origin=Origin("https://evil.example"))
        assert refused.value.response.status_code == 403
        for name in ("ada", "bob"):  # least_conn: one on each node
            clients.append(await EventClient.open(f"{url}?name={name}", ssl=tls, origin=Origin(origin)))
            await asyncio.sleep(0.2)

        per_node = [await asyncio.to_thread(connections, n.port) for n in nodes]
        assert per_node == [1, 1], per_node
        ada, bob = clients
        await ada.join("deploy")
        await bob.join("deploy")
        await ada.send("send_message", {"room": "deploy", "message": "through Caddy, across nodes"})
        got = await bob.recv_type("new_message", timeout=10)
        assert got["payload"]["message"] == "through Caddy, across nodes"
        assert got["payload"]["from"] == "ada"
    finally:
        for client in clients:
            await client.close()
        caddy.send_signal(signal.SIGTERM)
        try:
            caddy.wait(10)
        except subprocess.TimeoutExpired:
            caddy.kill()
        for node in nodes:
            node.stop()
    assert caddy.returncode is not None, log.read_text(errors="replace")[-3000:]


def connections(port: int) -> int:
    """`hubbub_connections` of a node told `--allowed-host localhost`."""
    status, body = http_get(port, "/metrics", "localhost")
    assert status == 200
    for family in text_string_to_metric_families(body.decode()):
        if family.name == "hubbub_connections":
            return int(family.samples[0].value)
    raise AssertionError("no hubbub_connections")


# ---- the container image, without docker -----------------------------------------------------------


def _docker_works() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


def test_the_dockerfile_is_multi_stage_non_root_and_checks_its_health() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM \S+ AS build$", text, re.M) and re.search(r"^FROM \S+ AS runtime$", text, re.M)
    assert "COPY --from=build /wheels" in text
    user = dockerfile_instruction("USER").split(":")[0]
    assert user not in ("root", "0")
    assert json.loads(dockerfile_instruction("ENTRYPOINT")) == ["hubbub", "serve", "--host", "0.0.0.0"]
    assert "/healthz" in dockerfile_instruction("HEALTHCHECK")
    assert dockerfile_instruction("STOPSIGNAL") == "SIGTERM"
    # the build context: what .dockerignore lets through is what the build stage copies
    ignore = (ROOT / ".dockerignore").read_text().split()
    for kept in ("!pyproject.toml", "!README.md", "!LICENSE", "!src"):
        assert kept in ignore


def _without_source_tree() -> dict[str, str]:
    """This environment less PYTHONPATH: the test run's source tree must not shadow the installed wheel."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


@pytest.fixture(scope="module")
def image_venv() -> Iterator[Path]:
    """The Dockerfile's two stages, without docker: a wheel built from the files the build stage
    copies, installed with its dependencies and the image's extras into a fresh venv of the
    system's Python (`/usr/bin/python3`, which any user may run); where there is none, into a venv
    of this interpreter that takes the dependencies from it."""
    base = Path(tempfile.mkdtemp(prefix="hubbub-image-"))
    base.chmod(0o755)  # the non-root test's user must reach the venv
    try:
        yield _image_venv(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _image_venv(base: Path) -> Path:
    context = base / "context"
    context.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, context / name)
    shutil.copytree(ROOT / "src", context / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    wheels = base / "wheels"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--wheel-dir", str(wheels), str(context)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if built.returncode != 0 and "satisfies the requirement setuptools" in built.stderr:
        pytest.skip("pip cannot fetch setuptools>=77 for the isolated build (no package index reachable)")
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("hubbub-*.whl")
    env_dir = base / "venv"
    python = env_dir / "bin" / "python"
    extras = re.search(r'"\.(\[[a-z,]+\])"', dockerfile_instruction("RUN", "build"))
    assert extras is not None, "the build stage builds the wheels of hubbub's extras"
    fresh = Path("/usr/bin/python3")
    made = fresh.exists() and subprocess.run([str(fresh), "-m", "venv", str(env_dir)], timeout=120).returncode == 0
    if made:
        installed = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--only-binary", ":all:", f"{wheel}{extras.group(1)}"],
            capture_output=True,
            text=True,
            timeout=600,
        )
        made = installed.returncode == 0
    if not made:  # no system Python with venv, or no index: this interpreter's packages
        shutil.rmtree(env_dir, ignore_errors=True)
        venv.create(env_dir, system_site_packages=True, with_pip=False)
        installed = subprocess.run(
            [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert installed.returncode == 0, installed.stderr
    where = subprocess.run(
        [str(python), "-c", "import hubbub; print(hubbub.__file__)"],
        env=_without_source_tree(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert where.stdout.startswith(str(env_dir)), f"the venv imports another hubbub: {where.stdout}"
    return env_dir


@pytest.mark.skipif(_docker_works(), reason="a docker daemon runs here: test_docker_builds_the_image does this")
async def test_the_images_entrypoint_serves_and_its_healthcheck_passes(image_venv: Path, tmp_path: Path) -> None:
    port = free_port()
    env = {**_without_source_tree(), "HUBBUB_PORT": str(port), "HUBBUB_ALLOWED_HOST": "chat.example.com,hubbub1"}
    entrypoint = json.loads(dockerfile_instruction("ENTRYPOINT"))
    entrypoint[0] = str(image_venv / "bin" / entrypoint[0])
    # the image listens on 0.0.0.0; here on loopback, the same code path
    entrypoint[entrypoint.index("0.0.0.0")] = "127.0.0.1"
    healthcheck = json.loads(dockerfile_instruction("HEALTHCHECK").split("CMD", 1)[1])
    healthcheck[0] = str(image_venv / "bin" / healthcheck[0])
    log = tmp_path / "node.log"
    with log.open("wb") as out:
        node = subprocess.Popen(entrypoint, env=env, stderr=out)
    try:
        await wait_port(port, timeout=30)
        health = await asyncio.to_thread(subprocess.run, healthcheck, env=env, timeout=10)
        assert health.returncode == 0
        # the health check sends the first allowed name: with only 127.0.0.1 it would get 403
        assert http_get(port, "/healthz")[0] == 403
        status, page = http_get(port, "/", "chat.example.com")
        assert status == 200 and b"<html" in page.lower()  # the chat page: package data is in the wheel
        node.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(node.wait, 10) == 0
    finally:
        if node.poll() is None:
            node.kill()
            node.wait(5)
    output = log.read_text(errors="replace")
    assert "Traceback" not in output, output
    down = await asyncio.to_thread(subprocess.run, healthcheck, env=env, timeout=10, capture_output=True)
    assert down.returncode != 0  # nothing listens: unhealthy


def test_the_image_runs_as_a_non_root_user(image_venv: Path) -> None:
    """As the image's user does: an unprivileged uid with no home, on a port above 1024, writing nothing."""
    if os.geteuid() != 0:
        pytest.skip("this test runs as a non-root user already: the entrypoint test covers it")
    nobody = 65534
    python = image_venv / "bin" / "python"
    try:
        probe = subprocess.run([str(python), "-c", "pass"], user=nobody, capture_output=True, timeout=30)
    except PermissionError:
        probe = None
    if probe is None or probe.returncode != 0:
        pytest.skip(
            f"uid {nobody} may not run the venv's interpreter (no /usr/bin/python3 with venv and a package"
            f" index here, so the venv is one of {sys.base_prefix}, under a directory uid {nobody} may not enter)"
        )
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "HUBBUB_PORT": str(port), "HOME": "/nonexistent"}
    node = subprocess.Popen([str(image_venv / "bin" / "hubbub"), "serve"], env=env, user=nobody)
    try:
        asyncio.run(wait_port(port, timeout=30))
        assert http_get(port, "/healthz")[0] == 200
        status = Path(f"/proc/{node.pid}/status").read_text()
        assert re.search(rf"^Uid:\s+{nobody}\s", status, re.M), status  # the serving process is not root
    finally:
        node.terminate()
        node.wait(10)
    assert node.returncode == 0


@pytest.mark.skipif(not _docker_works(), reason="no docker daemon here (docker info fails): the steps run in a venv")
def test_docker_builds_the_image() -> None:
    done = subprocess.run(
        ["docker", "build", "-f", str(DEPLOY / "Dockerfile"), "-t", "hubbub:test", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]


# ---- systemd -----------------------------------------------------------------------------------------


def test_the_systemd_unit_is_hardened_and_stops_in_time() -> None:
    unit = unit_directives()
    config = tomllib.loads((DEPLOY / "systemd" / "hubbub.toml").read_text())
    assert unit["KillSignal"] == ["SIGTERM"]
    assert float(unit["TimeoutStopSec"][0].removesuffix("s")) > config["shutdown_timeout"]
    assert int(unit["LimitNOFILE"][0]) >= 65536
    for key, value in {
        "DynamicUser": "yes",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "MemoryDenyWriteExecute": "yes",
    }.items():
        assert unit[key] == [value], key
    assert set(unit["RestrictAddressFamilies"][0].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert unit["EnvironmentFile"] == ["-/etc/hubbub/hubbub.env"]
    assert "ProcSubset" not in unit, "process_* metrics need /proc/stat"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze (Debian: systemd)")
def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    # verify wants ExecStart's program to exist: point it at this machine's hubbub
    program = shutil.which("hubbub") or sys.executable
    text = (DEPLOY / "systemd" / "hubbub.service").read_text().replace("/opt/hubbub/bin/hubbub", program)
    unit = tmp_path / "hubbub.service"
    unit.write_text(text)
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "hubbub.service" not in done.stderr, done.stderr  # no warning about this unit


_MDWE = """
import ctypes, mmap, runpy, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
    sys.exit(77)
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
except OSError:
    pass
else:
    sys.exit(78)
sys.argv = ["hubbub", *sys.argv[1:]]
runpy.run_module("hubbub", run_name="__main__")
"""
"""Run hubbub as systemd's MemoryDenyWriteExecute=yes would: the kernel refuses it any memory
both writable and executable (Linux 6.3's PR_SET_MDWE, what systemd uses where it can)."""


async def test_the_units_exec_start_serves_under_memory_deny_write_execute(
    tmp_path: Path, redis: RedisProcess, receiver: Receiver
) -> None:
    (exec_start,) = unit_directives()["ExecStart"]
    argv = shlex.split(exec_start)
    assert argv[0] == "/opt/hubbub/bin/hubbub"
    port = free_port()
    config = (DEPLOY / "systemd" / "hubbub.toml").read_text()
    config = config.replace("port = 8000", f"port = {port}").replace("redis://127.0.0.1:6379/0", redis.url)
    users = tmp_path / "users"
    users.write_text(f"ada:{hash_password('correct horse battery')}\n")
    hook = await receiver.start()
    config += f'users = "{users}"\nwebhook = ["{hook}"]\nwebhook_secret = "{"w" * 32}"\nlog_level = "warning"\n'
    (tmp_path / "hubbub.toml").write_text(config)
    argv = [str(tmp_path / "hubbub.toml") if a == "/etc/hubbub/hubbub.toml" else a for a in argv[1:]]
    log = tmp_path / "node.log"
    with log.open("wb") as out:
        node = subprocess.Popen([sys.executable, "-c", _MDWE, *argv], stderr=out)
    host = "chat.example.com"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                await wait_port(port, timeout=0.5)
                break
            except AssertionError:
                if node.poll() is not None:
                    if node.returncode == 77:
                        pytest.skip("this kernel has no PR_SET_MDWE (Linux 6.3 or newer)")
                    raise AssertionError(f"exited {node.returncode}: {log.read_text()}") from None
                assert time.monotonic() < deadline
        assert http_get(port, "/healthz", host)[0] == 200

        def login() -> str:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            body = json.dumps({"username": "ada", "password": "correct horse battery"})
            conn.request("POST", "/login", body, headers={"Host": host, "Content-Type": "application/json"})
            answer = conn.getresponse()
            assert answer.status == 200
            ticket: str = json.loads(answer.read())["ticket"]
            conn.close()
            return ticket

        ticket = await asyncio.to_thread(login)  # argon2id
        ada = await EventClient.open(
            f"ws://{host}:{port}/ws?ticket={ticket}",
            host="127.0.0.1",  # the TCP connection's address; the Host header stays chat.example.com
            origin=Origin(f"https://{host}"),
        )
        await ada.join("night")
        await ada.send("send_message", {"room": "night", "message": "no W^X memory"})
        assert (await ada.recv_type("new_message"))["payload"]["message"] == "no W^X memory"
        await receiver.wait_for(lambda events: any(e["type"] == "connected" for e in events))
        assert "hubbub_connections" in scrape(port, host)
        await ada.close()
        node.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(node.wait, 15) == 0
    finally:
        if node.poll() is None:
            node.kill()
            node.wait(5)
        await receiver.close()
    output = log.read_text(errors="replace")
    assert "Traceback" not in output and "MemoryError" not in output, output
