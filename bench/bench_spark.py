"""`score-spark` in local mode beside `ocsf-anomaly score` on the same 100,000 events.

Each run, in fresh processes, alternating: `score` (JSON Lines in, JSON Lines out, one worker per core)
and `score-spark --master local[N]` on the same events as one JSON Lines file and as one Parquet file
(row groups of 10,000). Reported: wall time of the whole command (JVM start, bundle load and the
summary included) and Spark's job time (from the command's own report), events/s of each; the peak
memory of the JVM and of each Python worker (sampled from /proc every 0.2 s). Then, in a fresh process
each: the time to the first scored row (session, bundle check, `limit(1).collect()` on the scored
DataFrame) and two full passes to Spark's no-op sink, cold and warm (Python workers reused, the bundle
loaded): the warm rate per core gives a paper estimate of a one-billion-event backfill on N executors.

    .venv/bin/python bench/bench_spark.py [--runs 3] [--events 100000] [--cores N]  (N: os.cpu_count())
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from common import CLI, DATA, OUT, default_model, machine, require_data, require_program


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _rss_mib(pid: int) -> tuple[str, float]:
    try:
        name = Path(f"/proc/{pid}/comm").read_text().strip()
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return name, int(line.split()[1]) / 1024
    except OSError:
        pass
    return "", 0.0


def run(command: list[str]) -> tuple[float, str, dict[str, float]]:
    """Run a command: (wall seconds, its stderr, peak RSS in MiB of the JVM and of the largest Python worker)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peaks = {"jvm": 0.0, "python worker": 0.0, "driver": 0.0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peaks["driver"] = max(peaks["driver"], _rss_mib(process.pid)[1])
            for pid in _descendants(process.pid):
                name, rss = _rss_mib(pid)
                kind = "jvm" if name == "java" else "python worker" if name.startswith("python") else ""
                if kind:
                    peaks[kind] = max(peaks[kind], rss)
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, stderr = process.communicate()
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    if process.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{stderr[-3000:]}")
    return wall, stderr, peaks


def in_process(model: Path, source: Path, cores: int) -> dict[str, float]:
    """In a fresh process: seconds to the first scored row (session, bundle check, a worker, its first
    batch), then two full passes to Spark's no-op sink: cold (workers start and load the bundle) and warm
    (workers reused: the steady rate a long backfill runs at)."""
    code = f"""
import json, time
started = time.perf_counter()
from pathlib import Path
from scorer import spark as lake
model = Path({str(model)!r})
session = lake.session("local[{cores}]")
scored = lake.scored_frame(session, model, lake.verify_bundle(model), {str(source)!r}).frame
scored.limit(1).collect()
times = {{"first row": time.perf_counter() - started}}
for name in ("cold pass", "warm pass"):
    began = time.perf_counter()
    scored.write.format("noop").mode("overwrite").save()
    times[name] = time.perf_counter() - began
print(json.dumps(times))
session.stop()
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    times: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    require_data()
    require_program("java", "openjdk-17-jre-headless")  # Spark's JVM
    model = default_model()
    work = OUT / "spark"
    work.mkdir(parents=True, exist_ok=True)
    jsonl = work / f"events_{args.events}.jsonl"
    parquet = work / f"events_{args.events}.parquet"
    if not jsonl.exists():
        with gzip.open(DATA / "nsl_kdd_ocsf" / "train.jsonl.gz", "rb") as src, jsonl.open("wb") as dst:
            for i, line in enumerate(src):
                if i >= args.events:
                    break
                dst.write(line)
    if not parquet.exists():
        import orjson
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = [orjson.loads(line) for line in jsonl.read_bytes().splitlines()]
        pq.write_table(pa.Table.from_pylist(rows), parquet, row_group_size=10_000)

    master = f"local[{args.cores}]"
    results: dict[str, list[tuple[float, float]]] = {"score": [], "spark json": [], "spark parquet": []}
    memory: dict[str, float] = {}
    for n in range(args.runs):
        out = work / "score-out.jsonl"
        wall, _, peaks = run(
            [*CLI, "score", "--model", str(model), str(jsonl), "--output", str(out), "--quiet"]
        )
        results["score"].append((wall, wall))
        print(f"run {n + 1}: score {wall:.1f} s ({args.events / wall:,.0f} events/s)", flush=True)
        for kind, source in (("spark json", jsonl), ("spark parquet", parquet)):
            target = work / f"out-{kind.split()[1]}"
            shutil.rmtree(target, ignore_errors=True)
            shutil.rmtree(f"{target}-summary", ignore_errors=True)
            wall, stderr, peaks = run(
                [*CLI, "score-spark", "--model", str(model), str(source), str(target), "--master", master]
            )
            job = float(re.search(r"events into .* in ([0-9.]+) s", stderr).group(1))  # type: ignore[union-attr]
            results[kind].append((wall, job))
            for key, value in peaks.items():
                memory[key] = max(memory.get(key, 0.0), value)
            print(
                f"run {n + 1}: {kind} {wall:.1f} s whole, {job:.1f} s job "
                f"({args.events / wall:,.0f} / {args.events / job:,.0f} events/s); peak RSS "
                + ", ".join(f"{k} {v:.0f} MiB" for k, v in peaks.items()),
                flush=True,
            )
    passes = {
        kind: [in_process(model, source, args.cores) for _ in range(args.runs)]
        for kind, source in (("json", jsonl), ("parquet", parquet))
    }

    print(
        f"\nmachine: {machine()}; {args.events:,} NSL-KDD events; master {master}; medians of {args.runs} runs"
    )
    print("| command | whole command | events/s | Spark job | events/s |")
    print("|---|---|---|---|---|")
    for kind, pairs in results.items():
        wall = statistics.median(p[0] for p in pairs)
        job = statistics.median(p[1] for p in pairs)
        job_cell = f"{job:.1f} s | {args.events / job:,.0f}" if kind != "score" else "— | —"
        print(f"| {kind} | {wall:.1f} s | {args.events / wall:,.0f} | {job_cell} |")
    print("\nin process, to Spark's no-op sink: | first row | cold pass | warm pass | warm events/s |")
    for kind, runs in passes.items():
        cells = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        print(
            f"{kind}: | {cells['first row']:.1f} s | {cells['cold pass']:.1f} s | {cells['warm pass']:.1f} s "
            f"| {args.events / cells['warm pass']:,.0f} |"
        )
    print("peak RSS over the commands: " + ", ".join(f"{k} {v:.0f} MiB" for k, v in memory.items()))
    warm = statistics.median(r["warm pass"] for r in passes["parquet"])
    per_core = args.events / warm / args.cores
    print(f"\nrate per core (Parquet, warm pass, local mode): {per_core:,.0f} events/s")
    for executors in (10, 50, 200):
        hours = 1e9 / (per_core * executors * 4) / 3600
        print(
            f"1,000,000,000 events on {executors} executors × 4 cores: {hours:.2f} h of scoring (+ start-up)"
        )


if __name__ == "__main__":
    main()
