"""CPU per ring/approve cycle of several git revisions, alternated in one session.

    .venv/bin/python -m bench.alternate 779a5ca HEAD --cycles 300 --rounds 3

Why: on a shared machine the same code measures 12-16 ms per cycle depending on what else
runs, so a reduction is only shown by running the old and the new code in turn, minutes apart,
each through its own ``bench.link.cpu_per_cycle`` (the harness of its revision, against a
private Mosquitto), and comparing medians. Each revision is exported with ``git archive`` to a
temporary directory and run in a fresh interpreter of this virtualenv with that directory first
on ``sys.path``, so nothing of the working tree leaks in.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

DRIVER = """
import json, sys, tempfile
from pathlib import Path
import controller
from bench import latency, link
n, warmup = int(sys.argv[1]), int(sys.argv[2])
with tempfile.TemporaryDirectory() as tmp:
    broker = latency.start_broker(Path(tmp) / "broker")
    try:
        r = link.cpu_per_cycle(broker, n, warmup=warmup)
    finally:
        broker.stop()
r["tree"] = str(Path(controller.__file__).resolve().parents[1])
print(json.dumps(r))
"""


def export(rev: str, into: Path) -> Path:
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def measure(tree: Path, cycles: int, warmup: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", DRIVER, str(cycles), str(warmup)], cwd=tree,
                         env={**os.environ, "PYTHONPATH": str(tree)},
                         capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"{tree.name}: {out.stderr.strip().splitlines()[-1:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if Path(result["tree"]) != tree.resolve():
        raise RuntimeError(f"{tree.name} ran the code in {result['tree']}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("revs", nargs="+", help="git revisions, the first is the reference")
    parser.add_argument("--cycles", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    runs: dict[str, list[float]] = {rev: [] for rev in args.revs}
    with tempfile.TemporaryDirectory(prefix="entry-alternate-") as tmp:
        trees = {rev: export(rev, Path(tmp) / f"rev{i}") for i, rev in enumerate(args.revs)}
        for _ in range(args.rounds):
            for rev, tree in trees.items():
                ms = measure(tree, args.cycles, args.warmup)["cpu_ms_per_cycle"]
                runs[rev].append(ms)
                print(f"{rev}: {ms:.2f} ms per cycle", flush=True)
    ref = statistics.median(runs[args.revs[0]])
    summary = {rev: {"runs_ms": [round(x, 2) for x in xs], "median_ms": round(statistics.median(xs), 2),
                     "less_than_first": f"{1 - statistics.median(xs) / ref:.1%}" if rev != args.revs[0] else "-"}
               for rev, xs in runs.items()}
    print(json.dumps({"cycles": args.cycles, "rounds": args.rounds, "revisions": summary}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
