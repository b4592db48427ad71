"""Print benchmarks/results/*.jsonl as a table (the last run of each scenario and server).

python3 benchmarks/table.py benchmarks/results/2026-11-26.jsonl
python3 benchmarks/table.py --ab benchmarks/results/2026-11-26.jsonl RUN_ID   # ab.sh's runs, by tree
"""

from __future__ import annotations

import json
import statistics
import sys


def main(path: str) -> None:
    rows: dict[tuple[str, str], dict[str, object]] = {}
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            doc = json.loads(line)
            # ab.sh's runs say which tree they measured: they get a row of their own
            rows[(doc["scenario"], doc["server"] + (f" {doc['tree']}" if "tree" in doc else ""))] = doc
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


def ab(path: str, run_id: str) -> None:
    """The runs of one `ab.sh` invocation: per scenario and tree, each run's figures and their median."""
    runs: dict[tuple[str, str], list[dict[str, object]]] = {}
    commits: dict[str, str] = {}
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            doc = json.loads(line)
            if doc.get("ab_run") == run_id:
                runs.setdefault((doc["scenario"], doc["tree"]), []).append(doc)
                commits[doc["tree"]] = f"{doc.get('commit', '?')} {doc.get('server_args', '')}".strip()
    for tree, commit in sorted(commits.items()):
        print(f"{tree}: {commit}")
    columns = (("deliveries/s", "deliveries_per_s", "{:,.0f}"), ("us/deliv", "server_cpu_us_per_delivery", "{:.3f}"))
    columns += (("p99 ms", "p99_ms", "{:.1f}"),)
    for title, key, fmt in columns:
        print(f"\n{title} (median; each run in order)")
        for (scenario, tree), docs in sorted(runs.items()):
            values = [w[key] for w in (d["wsload"] for d in docs) if isinstance(w, dict) and key in w]
            if not values:
                print(f"  {scenario} {tree}  failed")
                continue
            each = " ".join(fmt.format(v) for v in values)
            print(f"  {scenario} {tree}  {fmt.format(statistics.median(values)):>12}   {each}")


if __name__ == "__main__":
    if sys.argv[1] == "--ab":
        ab(sys.argv[2], sys.argv[3])
    else:
        main(sys.argv[1])
