"""`ocsf-anomaly score` throughput on 100,000 distinct events, and cost per stage.

Whole command: wall time of `score --model M events.jsonl.gz --output out.csv` in a fresh process
(start-up and model load included) with the model `train nsl_kdd_ocsf/train_normal.jsonl.gz`
makes by default. Per stage: one thread, in process, chunks of 4,096 events, explanation off and
on; then the same for events scored one at a time (what a service pays per single-event request);
then one event at a time after the thread slept 0, 2 and 4 ms (a serving process between requests);
then each stage of one event's scoring alone in a tight loop against the same calls in the
pipeline's order, one event after another (what the caches hold when a stage starts).

    .venv/bin/python bench/bench_score.py [--runs 3] [--events 100000] [--single-only]
"""

from __future__ import annotations

import argparse
import gzip
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from common import DATA, OUT, default_model, machine, require_data, run_cli


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--stage-events", type=int, default=20_000)
    parser.add_argument(
        "--single-only", action="store_true", help="only the measurements of one event at a time"
    )
    args = parser.parse_args()
    require_data()
    model = default_model()
    source = OUT / f"score_input_{args.events}.jsonl.gz"
    if not source.exists():
        with (
            gzip.open(DATA / "nsl_kdd_ocsf" / "train.jsonl.gz", "rb") as src,
            gzip.open(source, "wb", 3) as dst,
        ):
            for i, line in enumerate(src):
                if i >= args.events:
                    break
                dst.write(line)
    if args.single_only:
        idle_gaps(model, source)
        alone_and_in_order(model, source)
        return
    walls = []
    for run in range(args.runs):
        wall, peak = run_cli(
            "score", "--model", str(model), str(source), "--output", str(OUT / "scores.csv"), "--quiet"
        )
        walls.append(wall)
        print(f"run {run + 1}: {wall:.2f} s, {args.events / wall:,.0f} events/s, peak RSS {peak:.0f} MiB")
    median = statistics.median(walls)
    print(f"\nmachine: {machine()}")
    workers = os.cpu_count() or 1  # `score` without --workers: one worker process per core
    print(
        f"score → CSV, {args.events:,} events, {workers} workers: median {median:.2f} s = {args.events / median:,.0f} events/s"
    )
    startup(model)
    stages(model, source, args.stage_events)
    stages(model, source, 2_000, chunk=1)
    idle_gaps(model, source)
    alone_and_in_order(model, source)


def stages(model: object, source: object, limit: int, chunk: int = 4096) -> None:
    from scorer.detector import Detector
    from scorer.io import parse_line
    from scorer.threads import set_threads

    set_threads(1)
    detector = Detector.load(model)  # type: ignore[arg-type]
    with gzip.open(source, "rb") as handle:  # type: ignore[call-overload]
        raw = [line for _, line in zip(range(limit), handle, strict=False)]
    for explain in (False, True):
        started = time.perf_counter()
        events = [parse_line(line)[0] for line in raw]
        totals = {"parse": time.perf_counter() - started}
        for start in range(0, len(events), chunk):
            result = detector.score(events[start : start + chunk], explain=explain)  # type: ignore[arg-type]
            for stage, seconds in result.seconds.items():
                totals[stage] = totals.get(stage, 0.0) + seconds
        n = len(events)
        total = sum(totals.values())
        output = "JSONL output, explanation on" if explain else "CSV output, no explanation"
        print(
            f"\nper stage, one thread, {n:,} events {chunk:,} at a time, {output} ({detector.config.score} score):"
        )
        for stage in ("parse", "encode", "embed", "search", "calibrate", "explain"):
            print(
                f"  {stage:<10}{totals[stage] / n * 1e6:8.1f} µs/event  {100 * totals[stage] / total:5.1f}%"
            )
        print(f"  {'total':<10}{total / n * 1e6:8.1f} µs/event = {n / total:,.0f} events/s per core")


def idle_gaps(model: object, source: object, events: int = 1_000) -> None:
    """CPU of one event (explanation on) scored right after the last, and after the thread slept
    2 or 4 ms: what a serving process pays at 500 or 250 requests/s, when each request finds it idle."""
    from scorer.detector import Detector
    from scorer.io import parse_line
    from scorer.threads import set_threads

    set_threads(1)
    detector = Detector.load(model)  # type: ignore[arg-type]
    with gzip.open(source, "rb") as handle:  # type: ignore[call-overload]
        parsed = [parse_line(line)[0] for _, line in zip(range(events + 200), handle, strict=False)]
    for event in parsed[:200]:  # warm: every code path and table touched once
        detector.score([event])  # type: ignore[list-item]
    print(
        "\none event at a time, explanation on, after the thread was idle (CPU time of the scoring thread):"
    )
    for gap in (0.0, 0.002, 0.004):
        spent = 0.0
        for event in parsed[200:]:
            if gap:
                time.sleep(gap)
            started = time.thread_time()
            detector.score([event])  # type: ignore[list-item]
            spent += time.thread_time() - started
        print(f"  idle {gap * 1e3:.0f} ms before each: {spent / events * 1e6:7.1f} µs an event")


def alone_and_in_order(model: object, source: object, events: int = 1_000) -> None:
    """Each stage of one event's scoring (the engine's own calls, explanation on) timed alone, every
    event through it in a tight loop, then the same calls in the pipeline's order, one event after
    another: the work is the same, what differs is what the caches still hold when a stage starts."""
    from scorer.detector import Detector
    from scorer.explain import find_reasons
    from scorer.io import parse_line
    from scorer.network import embed
    from scorer.threads import set_threads

    set_threads(1)
    detector = Detector.load(model)  # type: ignore[arg-type]
    encoder, config = detector.encoder, detector.config
    with gzip.open(source, "rb") as handle:  # type: ignore[call-overload]
        parsed = [parse_line(line)[0] for _, line in zip(range(events), handle, strict=False)]
    wanted = max(config.explain_k, config.feature_k)
    State = dict[str, Any]

    def encode(event: Any, state: State) -> None:
        state["encoded"] = encoder.encode([event])

    def dense(event: Any, state: State) -> None:
        state["dense"] = detector.feature_vectors(state["encoded"])

    def embedding(event: Any, state: State) -> None:
        state["embedding"] = embed(detector.net, state["encoded"])

    def embedding_search(event: Any, state: State) -> None:
        detector.embedding_index.search(state["embedding"], config.k)

    def feature_search(event: Any, state: State) -> None:
        state["neighbours"] = detector.feature_index.search(state["dense"], wanted)[1]

    def explain(event: Any, state: State) -> None:
        find_reasons(
            encoder, detector.baseline, [event], state["encoded"], state["neighbours"], config.n_reasons
        )

    stages: dict[str, Callable[[Any, State], None]] = {
        "encode": encode,
        "dense": dense,
        "embed": embedding,
        "embedding search": embedding_search,
        "feature search": feature_search,
        "explain": explain,
    }
    states: list[State] = [{} for _ in parsed]
    alone = dict.fromkeys(stages, 0.0)
    for name, stage in stages.items():  # every event through one stage (the states feed the next)
        for event, state in zip(parsed, states, strict=True):
            stage(event, state)  # warm, and the inputs of the next stage
        started = time.thread_time()
        for event, state in zip(parsed, states, strict=True):
            stage(event, state)
        alone[name] = time.thread_time() - started
    in_order = dict.fromkeys(stages, 0.0)
    for _ in range(2):  # the first pass warms
        in_order = dict.fromkeys(stages, 0.0)
        for event in parsed:
            fresh: State = {}
            for name, stage in stages.items():
                started = time.thread_time()
                stage(event, fresh)
                in_order[name] += time.thread_time() - started
    n = len(parsed)
    print(f"\none event at a time, each stage alone against in the pipeline's order ({n:,} events):")
    for name in stages:
        print(
            f"  {name:<18}{alone[name] / n * 1e6:7.1f} µs alone  {in_order[name] / n * 1e6:7.1f} µs in order"
        )
    print(
        f"  {'total':<18}{sum(alone.values()) / n * 1e6:7.1f} µs alone  {sum(in_order.values()) / n * 1e6:7.1f} µs in order"
    )


def startup(model: object) -> None:
    """Wall time of scoring a one-line file: the fixed cost in every whole-command figure."""
    one = OUT / "one_event.jsonl"
    with gzip.open(DATA / "nsl_kdd_ocsf" / "train.jsonl.gz", "rb") as handle:
        one.write_bytes(handle.readline())
    walls = [
        run_cli("score", "--model", str(model), str(one), "--output", str(OUT / "one.csv"), "--quiet")[0]
        for _ in range(3)
    ]
    print(f"start-up (score a one-line file, median of 3): {statistics.median(walls):.2f} s")


if __name__ == "__main__":
    main()
