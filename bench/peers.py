"""The peers' side of `bench/bench.py --peers`: run ../shared/bench-peers in the same
sitting and print one table with the ratios of the Task Service to each peer.

The peer harness writes one JSON file per system (median of BENCH_REPS runs of the same
phases, same N); its venvs come from ../shared/bench-peers/setup.sh, run once per machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

# (key in our results, key path in a peer's JSON, label, higher is better)
MEASURES = [
    ("enq_single", ("enq_single", "median"), "enqueue, one at a time (tasks/s)", True),
    ("enq_bulk", ("enq_bulk", "median"), "enqueue, bulk (tasks/s)", True),
    ("drain1", ("drain1", "median"), "drain, 1 worker process (tasks/s)", True),
    ("drain2", ("drain2", "median"), "drain, 2 worker processes (tasks/s)", True),
    ("lat_p50", ("lat", "p50"), "pickup latency p50 (ms)", False),
    ("lat_p95", ("lat", "p95"), "pickup latency p95 (ms)", False),
    ("rss", ("drain1", "rss_mb_median"), "worker peak RSS (MB)", False),
]


def peers_dir() -> Path:
    default = Path(__file__).resolve().parents[2] / "shared" / "bench-peers"
    return Path(os.environ.get("BENCH_PEERS_DIR", default))


def run_peers(names: list[str], n: int, reps: int) -> dict[str, dict]:
    """Run the peer harness for `names`; their results by system name."""
    where = peers_dir()
    if not (where / "run.sh").exists():
        raise SystemExit(f"no peer benchmark at {where} (set BENCH_PEERS_DIR)")
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as results:
        env = dict(os.environ, BENCH_RESULTS=results, BENCH_N=str(n), BENCH_REPS=str(reps))
        subprocess.run(["bash", str(where / "run.sh"), *names], env=env, check=False,
                       stdout=subprocess.DEVNULL)
        found = {}
        for path in sorted(Path(results).glob("*.json")):
            data = json.loads(path.read_text())
            found[data["system"]] = data
    if not found:
        raise SystemExit(f"the peer benchmark wrote no results (is {where}/setup.sh run?)")
    return found


def _get(data: dict, path: tuple[str, str]) -> float | None:
    value = (data.get(path[0]) or {}).get(path[1])
    return float(value) if value is not None else None


def side_by_side(ours: dict[str, float], peers: dict[str, dict]) -> str:
    """A markdown table: each measure for us and each peer, and our ratio to each peer
    (above 1.0 means the Task Service does better: faster, or lower latency and memory)."""
    names = list(peers)
    head = ["measure", "Task Service", *names, *(f"× {p}" for p in names)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, path, label, higher in MEASURES:
        mine = ours.get(key)
        theirs = [_get(peers[p], path) for p in names]
        ratios = []
        for t in theirs:
            if mine and t:
                ratios.append(f"{(mine / t if higher else t / mine):.2f}")
            else:
                ratios.append("—")
        cells = [_fmt(mine), *(_fmt(t) for t in theirs)]
        lines.append("| " + " | ".join([label, *cells, *ratios]) + " |")
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"
