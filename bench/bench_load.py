"""What loading a bundle costs: `Detector.load` of the default NSL-KDD model (or BUNDLE) in fresh
processes, each file read, checked against its digest and parsed: wall time and the process's peak
resident memory, the interpreter and its imports included; each run also prints the peak after
the imports alone, so the load's own share is the difference.

    .venv/bin/python bench/bench_load.py [BUNDLE] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

from common import default_model, machine, require_data

# run in a fresh interpreter: the imports first, then the load, timed alone
CHILD = """
import resource, sys, time
from scorer.detector import Detector
imported = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
if sys.argv[1] != "-":
    Detector.load(sys.argv[1])
seconds = time.perf_counter() - started
print(seconds, imported, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "bundle", nargs="?", type=Path, help="a bundle directory (default: the NSL-KDD model)"
    )
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if args.bundle is None:
        require_data()
    bundle = args.bundle or default_model()
    size = sum(f.stat().st_size for f in bundle.iterdir())
    print(f"{machine()}; bundle {bundle} ({size / 2**20:.1f} MiB)")
    runs = []
    for _ in range(args.runs):
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(bundle)], capture_output=True, text=True, check=True
        )
        seconds, imported, peak = (float(x) for x in out.stdout.split())
        runs.append((seconds, imported / 1024, peak / 1024))
    for seconds, imported, peak in runs:
        print(
            f"  load {seconds * 1000:.0f} ms; peak RSS {imported:.0f} MiB after the imports, {peak:.0f} MiB after the load"
        )
    print(
        f"median of {args.runs}: load {statistics.median(r[0] for r in runs) * 1000:.0f} ms, "
        f"peak RSS +{statistics.median(r[2] - r[1] for r in runs):.0f} MiB over the imports"
    )


if __name__ == "__main__":
    main()
