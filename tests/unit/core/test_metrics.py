"""The metrics an operator's dashboard and alerts read (deploy/grafana, deploy/prometheus)."""

from __future__ import annotations

import sys

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hubbub._version import __version__
from hubbub.core.metrics import Metrics


def samples(metrics: Metrics) -> dict[str, list[tuple[dict[str, str], float]]]:
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def test_broker_healthy_is_read_at_each_scrape() -> None:
    healthy = [True]
    metrics = Metrics(lambda: 0, lambda: 0, lambda: healthy[0], "n1")
    assert samples(metrics)["hubbub_broker_healthy"] == [({}, 1.0)]
    healthy[0] = False
    assert samples(metrics)["hubbub_broker_healthy"] == [({}, 0.0)]


def test_node_info_names_the_node_and_the_version() -> None:
    metrics = Metrics(lambda: 0, lambda: 0, node="night-1")
    assert samples(metrics)["hubbub_node_info"] == [({"node": "night-1", "version": __version__}, 1.0)]


def test_max_connections_is_the_listeners_cap_once_it_watches() -> None:
    metrics = Metrics(lambda: 0, lambda: 0)
    assert samples(metrics)["hubbub_max_connections"] == [({}, 0.0)]
    metrics.watch_max_connections(lambda: 19808)
    assert samples(metrics)["hubbub_max_connections"] == [({}, 19808.0)]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process_* are read from /proc")
def test_process_metrics_without_listing_open_files() -> None:
    found = samples(Metrics(lambda: 0, lambda: 0))
    assert found["process_resident_memory_bytes"][0][1] > 1_000_000
    assert found["process_max_fds"][0][1] >= 1
    assert found["process_start_time_seconds"][0][1] > 1_600_000_000
    assert "process_cpu_seconds_total" in found
    assert "process_open_fds" not in found  # a listing of /proc/self/fd: 50 ms a scrape at 10,000 sockets
