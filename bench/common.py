"""Shared helpers of the benchmark scripts: paths, the machine, running the CLI and timing it."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# models, splits and outputs of every script (gitignored; hundreds of MB): another place with
# OCSF_ANOMALY_BENCH_OUT, so that two runs at once do not train into each other's folders
OUT = Path(os.environ.get("OCSF_ANOMALY_BENCH_OUT") or ROOT / "bench" / "out")
sys.path.insert(0, str(ROOT))

from scorer.paths import shared_data_dir  # noqa: E402

DATA = shared_data_dir()
CLI = [sys.executable, "-m", "scorer.cli"]


def require_data() -> None:
    if not DATA.is_dir():
        sys.exit(f"benchmark data not found at {DATA} (set OCSF_ANOMALY_SHARED_DATA)")


def require_program(name: str, package: str) -> None:
    """One line, not a traceback, where a benchmark needs a program this machine lacks."""
    if shutil.which(name) is None:
        sys.exit(f"{name} is not installed: apt-get install -y {package}")


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


# Runs the command and writes its peak RSS (KiB) to the file descriptor it is given. A process
# started straight from the benchmark would report the benchmark's own peak instead whenever that
# is larger: Linux keeps, across exec, the high-water mark of the memory a child was started with
# (the parent's, under vfork or fork). Started from this small process, the command's is its own.
MEASURED = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
os.write(int(sys.argv[1]), b"%d" % usage.ru_maxrss)
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


def run_cli(*args: str, quiet: bool = True) -> tuple[float, float]:
    """Run ``ocsf-anomaly ARGS`` in a fresh process: (wall seconds, peak RSS in MiB of that process or
    its largest worker, whatever the benchmark's own process holds)."""
    quietly = subprocess.DEVNULL if quiet else None
    read, write = os.pipe()
    with os.fdopen(read, "rb") as answer:
        started = time.perf_counter()
        try:
            process = subprocess.Popen(
                [sys.executable, "-c", MEASURED, str(write), *CLI, *args],
                stdout=quietly,
                stderr=quietly,
                pass_fds=(write,),
            )
        finally:
            os.close(write)
        returncode = process.wait()
        wall = time.perf_counter() - started
        peak_kib = answer.read()
    if returncode != 0:
        raise subprocess.CalledProcessError(returncode, process.args)
    return wall, int(peak_kib) / 1024


def default_model() -> Path:
    """The bundle `train train_normal.jsonl.gz --output DIR` makes by default on NSL-KDD (trained once)."""
    model = OUT / "model_nsl_default"
    if not (model / "metadata.json").exists():
        print(f"training {model} (once)", file=sys.stderr)
        run_cli(
            "train", str(DATA / "nsl_kdd_ocsf" / "train_normal.jsonl.gz"), "--output", str(model), "--quiet"
        )
    return model
