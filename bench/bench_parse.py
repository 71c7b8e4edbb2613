"""What reading a request body costs, for bodies a client sends and for bodies an attacker does.

The service parses a body (``requests.parse_body``, bodies over 1 MiB one at a time) and writes
the enriched events back (``io.dumps``) on its event loop, and inflates a compressed body in a
thread (``requests.inflate``): what each costs for the largest body allowed (16 MiB) bounds how
long one request can hold the loop, or a thread, from everything else. The last three cases are
what only the standard library reads or writes (orjson refuses them), at 0.3-2 µs a value: the
service does those in a thread (``handlers.off_the_loop``). Each case is timed ``--runs`` times in
this process; the median is printed.

    .venv/bin/python bench/bench_parse.py
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import random
import statistics
import time
from collections.abc import Callable

import orjson
from common import machine

from scorer.io import dumps, loads
from scorer.service.errors import ApiError
from scorer.service.requests import inflate, parse_body

LIMIT = 16 * 1024 * 1024  # OCSF_ANOMALY_MAX_BODY_BYTES's default
MAX_EVENTS = 10_000  # OCSF_ANOMALY_MAX_EVENTS's default


def _median_ms(work: Callable[[], object], runs: int) -> float:
    spent = []
    for _ in range(runs):
        started = time.perf_counter()
        with contextlib.suppress(ApiError):  # a refusal is an outcome here: its cost is what is measured
            work()
        spent.append(time.perf_counter() - started)
    return statistics.median(spent) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5, help="timings of each case (the median is printed)")
    parser.add_argument(
        "--only", nargs="+", metavar="WORD", help="the cases whose name holds one of these words (e.g. gzip)"
    )
    args = parser.parse_args()
    print(machine())
    rng = random.Random(0)
    events = [
        orjson.dumps({"class_uid": 4001, "traffic": {"bytes_out": i}, "message": rng.randbytes(750).hex()})
        for i in range(MAX_EVENTS)
    ]
    event = events[0]
    ndjson = b"\n".join(events)
    array = b"[" + b",".join(events) + b"]"
    empty_member = gzip.compress(b"", mtime=0)
    cases: list[tuple[str, Callable[[], object]]] = [
        (
            f"NDJSON, {MAX_EVENTS:,} events ({len(ndjson) / 2**20:.1f} MiB)",
            lambda: parse_body(ndjson, "application/x-ndjson", max_events=MAX_EVENTS, strict=False),
        ),
        (
            f"JSON array, {MAX_EVENTS:,} events ({len(array) / 2**20:.1f} MiB)",
            lambda: parse_body(array, "application/json", max_events=MAX_EVENTS, strict=False),
        ),
        (
            "NDJSON, 16 MiB of blank lines",
            lambda: parse_body(b"\n" * LIMIT, "application/x-ndjson", max_events=MAX_EVENTS, strict=False),
        ),
        (
            "NDJSON, 16 MiB of {} lines (413)",
            lambda: parse_body(
                b"{}\n" * (LIMIT // 3), "application/x-ndjson", max_events=MAX_EVENTS, strict=False
            ),
        ),
        (
            "NDJSON, one line of 16 MiB of spaces",
            lambda: parse_body(b" " * LIMIT, "application/x-ndjson", max_events=MAX_EVENTS, strict=False),
        ),
    ]
    gzipped = gzip.compress(ndjson, mtime=0)
    members = empty_member * (LIMIT // len(empty_member)) + gzip.compress(event, mtime=0)
    bomb = gzip.compress(bytes(64 * 2**20), mtime=0)
    cases += [
        (
            f"gzip, the NDJSON above ({len(gzipped) / 2**20:.1f} MiB sent)",
            lambda: inflate(gzipped, "gzip", LIMIT),
        ),
        (
            f"gzip, {len(members) // len(empty_member):,} empty members (16 MiB sent)",
            lambda: inflate(members, "gzip", LIMIT),
        ),
        (f"gzip, 64 MiB of zeros in {len(bomb) / 2**10:.0f} KiB (413)", lambda: inflate(bomb, "gzip", LIMIT)),
    ]
    beyond = b"[" + b"1e400," * (LIMIT // 6 - 1) + b"1]"
    long_integers = b"[123456789012345678901234567890" + b",1" * ((LIMIT - 64) // 2) + b"]"
    deep = loads(
        b'{"class_uid": 4001, "deep": '
        + b"[" * 300
        + b"]" * 300
        + b', "x": ['
        + b"0," * ((LIMIT - 700) // 2)
        + b"0]}"
    )
    cases += [
        (
            "JSON array, 16 MiB of 1e400 (413)",
            lambda: parse_body(beyond, "application/json", max_events=MAX_EVENTS, strict=False),
        ),
        (
            "JSON array, 16 MiB of integers, one past 64 bits (413)",
            lambda: parse_body(long_integers, "application/json", max_events=MAX_EVENTS, strict=False),
        ),
        ("written: an event 300 deep beside 16 MiB of zeros", lambda: dumps(deep)),
    ]
    print(f"median of {args.runs} runs each")
    for name, work in cases:
        if args.only and not any(word in name for word in args.only):
            continue
        print(f"  {name:<52} {_median_ms(work, args.runs):8.1f} ms", flush=True)


if __name__ == "__main__":
    main()
