"""`ocsf-anomaly report` on a day of one million scored events.

The events: 50,000 demo events of the period after training (5% injected anomalies), scored once by
`ocsf-anomaly score` with a model of the demo company's first 20,000 events, then repeated 20 times
over one day (times spread across its 24 hours, uids made unique) into JSON Lines and into Parquet
(the Arrow layout score-spark writes). Each run: `report --model M` in a fresh process, wall time and
peak RSS, alternating the two inputs.

    .venv/bin/python bench/bench_report.py [--runs 3] [--events 1000000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import orjson
from common import OUT, machine, run_cli

DAY_MS = 86_400_000
DAY_START = 1_800_000_000_000 - 1_800_000_000_000 % DAY_MS  # a UTC midnight


def prepare(events_total: int) -> tuple[Path, Path, Path]:
    from scorer.demo import generate_events, generate_later

    work = OUT / "report"
    work.mkdir(parents=True, exist_ok=True)
    model = work / "model_demo"
    if not (model / "metadata.json").exists():
        train, _ = generate_events(20_000, seed=3)
        path = work / "train.jsonl"
        path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in train))
        print(f"training {model} (once)", file=sys.stderr)
        run_cli("train", str(path), "--output", str(model), "--quiet")
    scored = work / "scored_50000.jsonl"
    if not scored.exists():
        train, _ = generate_events(20_000, seed=3)
        later, _ = generate_later(train, 50_000, seed=3, anomaly_rate=0.05)
        source = work / "later_50000.jsonl"
        source.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in later))
        run_cli("score", "--model", str(model), str(source), "--output", str(scored), "--quiet")
    jsonl = work / f"day_{events_total}.jsonl"
    parquet = work / f"day_{events_total}.parquet"
    if not jsonl.exists() or not parquet.exists():
        import pyarrow as pa
        import pyarrow.parquet as pq

        from scorer.spark import ANOMALY, anomaly_row

        base = [orjson.loads(line) for line in scored.read_bytes().splitlines()]
        copies = -(-events_total // len(base))
        step = DAY_MS / events_total
        writer = None
        with jsonl.open("wb") as out:
            n = 0
            for copy in range(copies):
                rows, anomalies = [], []
                for event in base:
                    if n >= events_total:
                        break
                    event = {**event, "time": DAY_START + int(n * step)}
                    event["metadata"] = {**event["metadata"], "uid": f"{event['metadata']['uid']}-{copy}"}
                    out.write(orjson.dumps(event) + b"\n")
                    rows.append(
                        {
                            "time": event["time"],
                            "class_uid": event["class_uid"],
                            "class_name": event["class_name"],
                            "metadata": {"uid": event["metadata"]["uid"]},
                            "src_endpoint": event.get("src_endpoint"),
                            "actor": event.get("actor"),
                            "device": event.get("device"),
                        }
                    )
                    anomalies.append(anomaly_row(event["anomaly"]))
                    n += 1
                if not rows:
                    break
                table = pa.Table.from_pylist(rows).append_column("anomaly", pa.array(anomalies, ANOMALY))
                if writer is None:
                    writer = pq.ParquetWriter(parquet, table.schema)
                writer.write_table(table.cast(writer.schema))
        if writer is not None:
            writer.close()
    return model, jsonl, parquet


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    model, jsonl, parquet = prepare(args.events)
    results: dict[str, list[tuple[float, float]]] = {"jsonl": [], "parquet": []}
    for n in range(args.runs):
        for kind, source in (("jsonl", jsonl), ("parquet", parquet)):
            output = OUT / "report" / f"report_{kind}.html"
            wall, peak = run_cli("report", str(source), "--model", str(model), "--output", str(output))
            results[kind].append((wall, peak))
            print(
                f"run {n + 1}: {kind} {wall:.1f} s, peak RSS {peak:.0f} MiB, page {output.stat().st_size / 2**20:.1f} MiB",
                flush=True,
            )
    print(f"\nmachine: {machine()}; {args.events:,} scored events in one day; medians of {args.runs} runs")
    for kind, pairs in results.items():
        wall = statistics.median(p[0] for p in pairs)
        peak = statistics.median(p[1] for p in pairs)
        print(f"| {kind} | {wall:.1f} s | {args.events / wall:,.0f} events/s | peak RSS {peak:.0f} MiB |")


if __name__ == "__main__":
    main()
