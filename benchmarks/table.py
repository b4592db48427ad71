"""Print benchmarks/results/*.jsonl as a table (the last run of each scenario and server)."""

from __future__ import annotations

import json
import sys


def main(path: str) -> None:
    rows: dict[tuple[str, str], dict[str, object]] = {}
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            doc = json.loads(line)
            rows[(doc["scenario"], doc["server"])] = doc
    head = ("scenario", "server", "deliveries/s", "p50 ms", "p99 ms", "us/deliv", "RSS/conn", "lost")
    head += ("deliv/write", "dropped")
    print("{:8} {:11} {:>13} {:>8} {:>8} {:>9} {:>9} {:>6} {:>11} {:>7}".format(*head))
    for (scenario, server), doc in sorted(rows.items()):
        w = doc["wsload"]
        assert isinstance(w, dict)
        if "error" in w:
            print(f"{scenario:8} {server:11} {'failed':>13}")
            continue
        print(
            f"{scenario:8} {server:11} {w.get('deliveries_per_s', 0):13,.0f} {w.get('p50_ms', 0):8.1f} "
            f"{w.get('p99_ms', 0):8.1f} {w.get('server_cpu_us_per_delivery', 0):9.3f} "
            f"{w.get('server_rss_bytes_per_conn', 0):9,.0f} {w.get('lost', 0):6} "
            f"{per_write(doc, w):>11} {dropped(doc):>7}"
        )


def dropped(doc: dict[str, object]) -> str:
    """Slow consumers the server dropped during the run (hubbub says; the others do not)."""
    count = doc.get("server_dropped")
    return f"{count:.0f}" if isinstance(count, int | float) else "-"


def per_write(doc: dict[str, object], w: dict[str, object]) -> str:
    """Deliveries per write system call the server made (older results did not count writes)."""
    writes, received = doc.get("server_writes"), w.get("received")
    if not isinstance(writes, int) or not isinstance(received, int) or writes <= 0:
        return "-"
    return f"{received / writes:.1f}"


if __name__ == "__main__":
    main(sys.argv[1])
