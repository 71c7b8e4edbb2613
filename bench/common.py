"""Shared helpers of the benchmark scripts: paths, the machine, running the CLI and timing it."""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
sys.path.insert(0, str(ROOT))

from scorer.paths import shared_data_dir  # noqa: E402

DATA = shared_data_dir()
CLI = [sys.executable, "-m", "scorer.cli"]


def require_data() -> None:
    if not DATA.is_dir():
        sys.exit(f"benchmark data not found at {DATA} (set OCSF_ANOMALY_SHARED_DATA)")


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {memory:.0f} GiB, Python {platform.python_version()}"


def run_cli(*args: str, quiet: bool = True) -> tuple[float, float]:
    """Run ``ocsf-anomaly ARGS`` in a fresh process: (wall seconds, peak RSS of that process in MiB)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    quietly = subprocess.DEVNULL if quiet else None
    subprocess.run([*CLI, *args], check=True, stdout=quietly, stderr=quietly)
    wall = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(peak, before) / 1024


def default_model() -> Path:
    """The bundle `train train_normal.jsonl.gz --output DIR` makes by default on NSL-KDD (trained once)."""
    model = OUT / "model_nsl_default"
    if not (model / "metadata.json").exists():
        print(f"training {model} (once)", file=sys.stderr)
        run_cli(
            "train", str(DATA / "nsl_kdd_ocsf" / "train_normal.jsonl.gz"), "--output", str(model), "--quiet"
        )
    return model
