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
    print("{:8} {:11} {:>13} {:>8} {:>8} {:>9} {:>9} {:>6}".format(*head))
    for (scenario, server), doc in sorted(rows.items()):
        w = doc["wsload"]
        assert isinstance(w, dict)
        if "error" in w:
            print(f"{scenario:8} {server:11} {'failed':>13}")
            continue
        print(
            f"{scenario:8} {server:11} {w.get('deliveries_per_s', 0):13,.0f} {w.get('p50_ms', 0):8.1f} "
            f"{w.get('p99_ms', 0):8.1f} {w.get('server_cpu_us_per_delivery', 0):9.3f} "
            f"{w.get('server_rss_bytes_per_conn', 0):9,.0f} {w.get('lost', 0):6}"
        )


if __name__ == "__main__":
    main(sys.argv[1])
