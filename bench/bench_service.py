"""The scoring service under load, over loopback, from a separate load-generator process.

Two services: `ocsf-anomaly serve` as `make run` starts it (the demo model, the champion of the
local registry under data/mlflow; 100,000 distinct demo events of the period after its training),
and `ocsf-anomaly serve --model` with the default NSL-KDD model (50,000-event baseline; 60,000
NSL-KDD events in file order). Against each:
- open loop: single-event POST /v1/score at fixed rates; each request's latency is measured from
  its *scheduled* send time, so queueing counts; every request must get a 2xx;
- closed loop: maximum single-event throughput (64 in flight), micro-batching on and off;
- batched: POST /v1/score with 256 events a request (8 in flight): events/s.
Then (NSL-KDD model) a registry swap under load: the model registered twice in a temporary MLflow
store, version 2 promoted and reloaded while single events stream at 200 requests/s (--swap-only
runs only that); and the Redis cache study (--cache-only runs only that). The warm-up sends bodies
of its own, and each measurement goes on where the last one stopped (`Feed`): a body comes again
only after all the others, beyond the reach of the service's embedding cache, so every request pays for its scoring (until
2026-12-05 each measurement began again at the first body, just sent: the first rows were cache
hits). The cache study alone repeats on purpose. The load generator shares the
2 cores with the service: figures include that contention, kept small by a lean HTTP client
(load_client.py: less than half the CPU a request of aiohttp's client).

    .venv/bin/python bench/bench_service.py [--duration 10] [--target make-run|nsl] [--cache-only | --swap-only]
    .venv/bin/python bench/bench_service.py --soak 600 [--rate 500]   (--rate 0: as fast as it answers)
    .venv/bin/python bench/bench_service.py --url http://127.0.0.1:8080 [--runs 3]
    .venv/bin/python bench/bench_service.py --lone [--runs 3]

--lone measures what one request costs when requests come one at a time: `make run`'s service in
one process, distinct demo events sent each right after the last answer (closed loop, one in
flight); its server CPU a request beside the engine's own share (the stage times the service
records) and, for the floor, a bare aiohttp app that reads the body, parses it and answers JSON.

--url measures a service that is already running (the container of docker-compose.yml, say, or
`ocsf-anomaly serve` on this host for the comparison), with the same load generator and demo
events: single events at 500 requests/s (open loop, p50/p99) and 256-event batches (8 in flight).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import gzip
import itertools
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import orjson
from common import CLI, DATA, default_model, machine, require_data, require_program, run_cli
from load_client import LoadClient

DEMO_EVENTS = 100_000  # distinct demo events a benchmark sends: five times what 2 processes' caches hold
WARM_UP = 2_000  # bodies from the end of a feed, sent once before the measurements


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_service(
    model: Path | None,
    port: int,
    batch_max_size: int = 1024,
    redis_url: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """`ocsf-anomaly serve` on ``port``: the bundle directory ``model``, or (None) the registry's
    champion as `make run` serves it; returns once /readyz answers 200."""
    environment = {**os.environ, "OCSF_ANOMALY_BATCH_MAX_SIZE": str(batch_max_size), **(env or {})}
    environment.pop("REDIS_URL", None)
    environment.pop("OCSF_ANOMALY_REDIS_URL", None)
    if redis_url:
        environment["OCSF_ANOMALY_REDIS_URL"] = redis_url
    where = ["--model", str(model)] if model is not None else []
    process = subprocess.Popen(
        [*CLI, "serve", *where, "--port", str(port)],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
                if response.status == 200:
                    return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"the service on port {port} did not become ready")


def cpu_seconds(pid: int) -> float:
    """CPU time used so far by process ``pid`` and its descendants alive now (the serving processes
    of a supervisor), from /proc."""
    total, pending = 0.0, [pid]
    ticks = os.sysconf("SC_CLK_TCK")
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


class CpuMeter:
    """Server and load-generator CPU over a measurement: per request, and in cores."""

    def __init__(self, service: subprocess.Popen[bytes]) -> None:
        self.pid = service.pid

    def __enter__(self) -> CpuMeter:
        self.server, self.generator, self.wall = (
            cpu_seconds(self.pid),
            time.process_time(),
            time.perf_counter(),
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self.server = cpu_seconds(self.pid) - self.server
        self.generator = time.process_time() - self.generator
        self.wall = time.perf_counter() - self.wall

    def line(self, requests: float) -> str:
        return (
            f"server CPU {self.server / max(requests, 1) * 1e6:,.0f} µs a request ({self.server / self.wall:.2f} cores), "
            f"load generator {self.generator / self.wall:.2f} cores"
        )


def rss_mib(pid: int) -> float:
    """Resident memory of process ``pid`` and its descendants alive now, MiB, from /proc."""
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def score_version(body: bytes) -> str:
    """The model version of a /v1/score answer."""
    return str(json.loads(body)["results"][0]["model"]["version"])


# One request of an open loop: (scheduled time from the start, latency, HTTP status or 0 when the
# connection failed, the answer's body when kept).
Sample = tuple[float, float, int, bytes]


async def open_loop(
    url: str,
    bodies: list[bytes],
    rate: int,
    duration: float,
    during: Callable[[float], Coroutine[Any, Any, None]] | None = None,
    keep_bodies: bool = False,
    every: float = 0.0,
    on_window: Callable[[float, list[Sample]], None] | None = None,
) -> list[Sample]:
    """Send ``rate`` requests a second for ``duration`` seconds on a fixed schedule, each started as
    its time comes whatever is still in flight; latency runs from the *scheduled* time, so queueing
    (the generator's own too) counts. ``during(start)`` runs alongside. With ``on_window``, every
    ``every`` seconds the samples so far are handed to it and dropped (a long run holds only what is
    in flight and one window); the samples left at the end are returned."""
    client = LoadClient(url)
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.5
    samples: list[Sample] = []

    async def one(i: int, scheduled: float) -> None:
        try:
            answer = await client.post(bodies[i % len(bodies)])
            status, body = answer.status, answer.body if keep_bodies else b""
        except OSError:
            status, body = 0, b""
        samples.append((scheduled - start, loop.time() - scheduled, status, body))

    side = loop.create_task(during(start)) if during is not None else None
    running: set[asyncio.Task[None]] = set()
    mark = 0.0
    for i in range(int(rate * duration)):
        scheduled = start + i / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = loop.create_task(one(i, scheduled))
        running.add(task)
        task.add_done_callback(running.discard)
        if on_window is not None and scheduled - start - mark >= every:
            mark = scheduled - start
            on_window(mark, list(samples))
            samples.clear()
    await asyncio.gather(*running)
    if side is not None:
        await side
    client.close()
    return samples


def summary(rate: int, samples: list[Sample]) -> str:
    latencies = [latency for _, latency, _, _ in samples]
    failures = sum(not 200 <= status < 300 for _, _, status, _ in samples)
    return (
        f"{rate:>5} req/s: p50 {percentile(latencies, 0.5) * 1e3:7.2f} ms  p99 {percentile(latencies, 0.99) * 1e3:7.2f} ms"
        f"  ({len(samples):,} requests, {failures} not 2xx)"
    )


async def closed_loop(
    url: str, bodies: list[bytes], per_body: int, in_flight: int, duration: float
) -> tuple[float, int]:
    """``in_flight`` requests at all times for ``duration`` seconds: (events a second, not 2xx)."""
    done = 0
    failures = 0
    client = LoadClient(url)
    stop = time.perf_counter() + duration

    async def worker(offset: int) -> None:
        nonlocal done, failures
        i = offset
        while time.perf_counter() < stop:
            answer = await client.post(bodies[i % len(bodies)])
            failures += not 200 <= answer.status < 300
            done += 1
            i += in_flight

    started = time.perf_counter()
    await asyncio.gather(*[worker(k) for k in range(in_flight)])
    elapsed = time.perf_counter() - started
    client.close()
    return done * per_body / elapsed, failures


def lookups(port: int) -> dict[tuple[str, str], float]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (s.labels["tier"], s.labels["result"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "ocsf_anomaly_cache_lookups_total"
    }


def cache_study(model: Path, lines: list[bytes], duration: float) -> None:
    """Batched throughput with the Redis cache cold, then warm (a second replica, empty local tier,
    reading Redis), then hot (a local tier that holds the pass); the hit rate of a replay of NSL-KDD
    in file order through a replica of default settings, and what other local tier sizes would hit."""
    redis_port = free_port()
    redis = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(redis_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{redis_port}/0"
    batches = [b"[" + b",".join(lines[i : i + 256]) + b"]" for i in range(0, 20_480, 256)]
    try:
        time.sleep(0.5)
        print("\nRedis cache (batched, 256 events a request, 8 in flight, the same 20,480 events each pass)")
        for label in (
            "cold (first replica, empty Redis)",
            "warm (second replica: empty local tier, full Redis)",
            "hot (the same replica again: local tier)",
        ):
            if not label.startswith("hot"):
                port = free_port()
                service = start_service(model, port, redis_url=url, env={"OCSF_ANOMALY_CACHE_ITEMS": "32768"})
            per_pass = len(batches) * 256
            started = time.perf_counter()
            sent = asyncio.run(one_pass(f"http://127.0.0.1:{port}/v1/score", batches))
            elapsed = time.perf_counter() - started
            print(
                f"  {label}: {per_pass / elapsed:,.0f} events/s ({sent} not 2xx); lookups so far {lookups(port)}"
            )
            if label.startswith("warm"):
                continue
            if label.startswith("cold"):
                service.terminate()
                service.wait(30)
        service.terminate()
        service.wait(30)
        port = free_port()
        service = start_service(model, port, redis_url=url)
        with gzip.open(DATA / "nsl_kdd_ocsf" / "train.jsonl.gz", "rb") as handle:
            replay = [line.rstrip(b"\n") for line in handle]
        replay_batches = [b"[" + b",".join(replay[i : i + 256]) + b"]" for i in range(0, len(replay), 256)]
        failures = asyncio.run(one_pass(f"http://127.0.0.1:{port}/v1/score", replay_batches))
        counts = lookups(port)
        local_hits = counts.get(("local", "hit"), 0.0)
        total = local_hits + counts.get(("local", "miss"), 0.0)
        print(
            f"  replay of train.jsonl.gz in file order ({len(replay):,} events, fresh replica and Redis holding "
            f"the 20,480 above): local-tier hit rate {local_hits / total:.1%}, Redis hits "
            f"{counts.get(('redis', 'hit'), 0):,.0f} of {counts.get(('redis', 'hit'), 0) + counts.get(('redis', 'miss'), 0):,.0f}"
            f" ({failures} not 2xx)"
        )
        service.terminate()
        service.wait(30)
        tier_hit_rates(model, replay)
    finally:
        redis.kill()
        redis.wait(10)


def tier_hit_rates(
    model: Path, replay: list[bytes], sizes: tuple[int, ...] = (1_000, 10_000, 100_000)
) -> None:
    """The share of a replay's events that an LRU local tier of each size would answer (one process
    seeing the whole replay, keyed as the service keys it), and with no bound."""
    from collections import OrderedDict

    from scorer.detector import Detector
    from scorer.io import parse_line

    detector = Detector.load(model)
    keys: list[str] = []
    for start in range(0, len(replay), 4096):
        events = [parse_line(line)[0] for line in replay[start : start + 4096]]
        keys += detector.prepare(events, keys=True).keys  # type: ignore[arg-type]
    rates = []
    for size in (*sizes, len(keys)):
        tier: OrderedDict[str, None] = OrderedDict()
        hits = 0
        for key in keys:
            if key in tier:
                hits += 1
                tier.move_to_end(key)
            else:
                tier[key] = None
                if len(tier) > size:
                    tier.popitem(last=False)
        rates.append(f"{hits / len(keys):.1%}")
    labels = [f"{size:,}" for size in sizes] + ["unbounded"]
    print(
        "  local tier hit rate on that replay, one process, by size: "
        + ", ".join(f"{label} {rate}" for label, rate in zip(labels, rates, strict=True))
    )


async def one_pass(url: str, bodies: list[bytes], in_flight: int = 8) -> int:
    """Every body once, ``in_flight`` at a time: how many were not answered 2xx."""
    failures = 0
    queue = list(reversed(bodies))
    client = LoadClient(url)

    async def worker() -> None:
        nonlocal failures
        while queue:
            answer = await client.post(queue.pop())
            failures += not 200 <= answer.status < 300

    await asyncio.gather(*[worker() for _ in range(in_flight)])
    client.close()
    return failures


def load_test(label: str, model: Path | None, singles: list[bytes], duration: float) -> None:
    for mode, max_size in (("micro-batching on", 1024), ("micro-batching off (batch_max_size 1)", 1)):
        port = free_port()
        url = f"http://127.0.0.1:{port}/v1/score"
        service = start_service(model, port, max_size)
        feed = Feed(singles[:-WARM_UP])
        try:
            print(f"\n{label}, {mode}")
            asyncio.run(closed_loop(url, singles[-WARM_UP:], 1, 16, 2.0))  # warm up
            if max_size > 1:
                for rate in (200, 500, 1000, 2500):
                    with CpuMeter(service) as cpu:
                        samples = asyncio.run(open_loop(url, feed.next(), rate, duration))
                    feed.sent(len(samples))
                    print("  open loop, single event, " + summary(rate, samples))
                    print("    " + cpu.line(len(samples)))
            with CpuMeter(service) as cpu:
                throughput, failures = asyncio.run(closed_loop(url, feed.next(), 1, 64, duration))
            feed.sent(throughput * cpu.wall)
            print(f"  closed loop, single event, 64 in flight: {throughput:,.0f} req/s ({failures} not 2xx)")
            print("    " + cpu.line(throughput * cpu.wall))
            if max_size > 1:
                with CpuMeter(service) as cpu:
                    throughput, failures = asyncio.run(closed_loop(url, feed.batches(256), 256, 8, duration))
                feed.sent(throughput * cpu.wall)
                print(
                    f"  batched, 256 events a request, 8 in flight: {throughput:,.0f} events/s ({failures} not 2xx)"
                )
                print("    " + cpu.line(throughput / 256 * cpu.wall))
        finally:
            service.terminate()
            service.wait(30)


def swap_study(model: Path, singles: list[bytes], duration: float) -> None:
    """Promote a new registry version while single events stream at 200 requests/s."""
    with tempfile.TemporaryDirectory(prefix="bench-registry-") as scratch:
        store = f"sqlite:///{scratch}/mlflow.db"
        env = {
            "OCSF_ANOMALY_REGISTRY_URI": store,
            "OCSF_ANOMALY_MODEL_NAME": "bench",
            "OCSF_ANOMALY_MODEL_POLL_SECONDS": "0",
        }
        from scorer.registry import Registry

        registry = Registry(store)
        registry.register(model, "bench")  # version 1, the champion
        registry.register(model, "bench")  # version 2: the same bundle, downloaded and loaded anew
        port = free_port()
        url = f"http://127.0.0.1:{port}/v1/score"
        service = start_service(None, port, env=env)
        marks: dict[str, float] = {}
        processes: dict[str, int] = {}
        try:
            asyncio.run(closed_loop(url, singles[-WARM_UP:], 1, 16, 2.0))

            async def promote(start: float) -> None:
                loop = asyncio.get_running_loop()
                await asyncio.sleep(max(0.0, start + duration / 2 - loop.time()))
                marks["promote"] = loop.time() - start
                await loop.run_in_executor(None, registry.promote, "bench", "2")
                reload = LoadClient(f"http://127.0.0.1:{port}/v1/models/reload")
                answer = await reload.post(b"")
                marks["reloaded"] = loop.time() - start
                reload.close()
                assert answer.status == 200, answer.body
                processes.update(json.loads(answer.body)["processes"])

            samples = asyncio.run(
                open_loop(url, singles[:-WARM_UP], 200, duration, promote, keep_bodies=True)
            )
        finally:
            service.terminate()
            service.wait(30)
    window = [lat for at, lat, _, _ in samples if marks["promote"] - 0.1 <= at <= marks["reloaded"] + 0.1]
    versions = [score_version(body) if body else "?" for _, _, _, body in sorted(samples)]
    switches = sum(a != b for a, b in itertools.pairwise(versions))
    # sent once the reload was answered: every serving process had swapped by then
    late = sum(
        1 for at, _, _, body in samples if at > marks["reloaded"] and body and score_version(body) == "1"
    )
    print(
        "\nregistry swap under load (NSL-KDD model registered twice, temporary store), open loop "
        + summary(200, samples)
    )
    print(
        f"  promote + reload took {marks['reloaded'] - marks['promote']:.2f} s; requests sent meanwhile: "
        f"{len(window)}, p50 {percentile(window, 0.5) * 1e3:.2f} ms, p99 {percentile(window, 0.99) * 1e3:.2f} ms, "
        f"max {max(window) * 1e3:.1f} ms; versions in send order: {versions[0]} … {versions[-1]}, {switches} switch(es)"
    )
    print(
        f"  the answer: {processes['serving']} of {processes['count']} serving processes on version 2; "
        f"requests sent after it and scored by version 1: {late}"
    )


def soak_rows(
    url: str, bodies: list[bytes], rate: int, seconds: float, service: subprocess.Popen[bytes], every: float
) -> list[tuple[float, float, float, int, float, float]]:
    """Single events at ``rate`` a second for ``seconds`` (the open loop); every ``every`` seconds a
    row: (elapsed, p50, p99, not 2xx, server RSS MiB, server CPU µs a request) of that window."""
    rows: list[tuple[float, float, float, int, float, float]] = []
    cpu = cpu_seconds(service.pid)

    def window(elapsed: float, samples: list[Sample]) -> None:
        nonlocal cpu
        if not samples:
            return
        now_cpu = cpu_seconds(service.pid)
        latencies = [latency for _, latency, _, _ in samples]
        rows.append(
            (
                elapsed,
                percentile(latencies, 0.5) * 1e3,
                percentile(latencies, 0.99) * 1e3,
                sum(not 200 <= status < 300 for _, _, status, _ in samples),
                rss_mib(service.pid),
                (now_cpu - cpu) / len(samples) * 1e6,
            )
        )
        cpu = now_cpu
        print(
            "  {:5.0f} s: p50 {:6.2f} ms  p99 {:6.2f} ms  not 2xx {}  server RSS {:,.0f} MiB  "
            "server CPU {:,.0f} µs a request".format(*rows[-1]),
            flush=True,
        )

    left = asyncio.run(open_loop(url, bodies, rate, seconds, every=every, on_window=window))
    window(seconds, left)  # the last window: it closes when the run does (600 s printed 9 rows)
    return rows


def soak(seconds: float, rate: int) -> None:
    """`make run`'s service (its default processes) under single events at ``rate`` for ``seconds``;
    distinct events throughout (a fresh stream of the demo company, another seed than the model's).
    ``rate`` 0: as fast as it answers (16 in flight), to pack more requests into the same minutes."""
    register_demo()
    from scorer.demo.generate import generate_events

    events, _ = generate_events(int(rate * seconds) + 2001 if rate else 400_000, seed=99)
    bodies = [json.dumps(event).encode() for event in events]
    del events  # millions of dicts: the load generator's own full collections would pause it for a second
    gc.collect()
    gc.freeze()
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1/score"
    service = start_service(None, port)
    try:
        asyncio.run(closed_loop(url, bodies[-2000:], 1, 16, 2.0))
        if not rate:
            saturated_soak(url, bodies[:-2000], seconds, service)
            return
        print(f"\nsoak: `make run`'s service, single events at {rate} requests/s for {seconds:,.0f} s")
        rows = soak_rows(url, bodies, rate, seconds, service, every=60.0)
    finally:
        service.terminate()
        service.wait(30)
    if len(rows) >= 2:
        p99s = [row[2] for row in rows]
        growth = (rows[-1][4] - rows[0][4]) / rows[0][4]
        print(
            f"  p99 per minute {min(p99s):.2f}–{max(p99s):.2f} ms (median {statistics.median(p99s):.2f}); "
            f"not 2xx {sum(row[3] for row in rows)}; server RSS {rows[0][4]:,.0f} → {rows[-1][4]:,.0f} MiB "
            f"after the first minute ({growth:+.1%})"
        )


def saturated_soak(url: str, bodies: list[bytes], seconds: float, service: subprocess.Popen[bytes]) -> None:
    """Single events, 16 in flight, for ``seconds``: each minute the requests a second and the server's
    RSS (whether memory grows with the requests served; the bodies are sent in turn, 400,000 apart)."""
    print(f"\nsoak: `make run`'s service, single events, 16 in flight, for {seconds:,.0f} s")
    sent = 0
    for minute in range(1, int(seconds // 60) + 1):
        start = sent % len(bodies)
        rate, failures = asyncio.run(closed_loop(url, bodies[start:] + bodies[:start], 1, 16, 60.0))
        sent += int(rate * 60)
        print(
            f"  {minute * 60:5d} s: {rate:,.0f} requests/s, not 2xx {failures}, {sent:,} sent, "
            f"server RSS {rss_mib(service.pid):,.1f} MiB",
            flush=True,
        )


def against(base_url: str, runs: int, duration: float) -> None:
    """The single-event p99 at 500 requests/s and the batched events/s of a running service."""
    url = base_url.rstrip("/") + "/v1/score"
    singles = demo_events()
    feed = Feed(singles[:-WARM_UP])
    print(f"service at {base_url}: {len(singles):,} distinct demo events")
    asyncio.run(closed_loop(url, singles[-WARM_UP:], 1, 16, 2.0))  # warm up
    for run in range(1, runs + 1):
        samples = asyncio.run(open_loop(url, feed.next(), 500, duration))
        feed.sent(len(samples))
        rate, failures = asyncio.run(closed_loop(url, feed.batches(256), 256, 8, duration))
        feed.sent(rate * duration)
        print(f"  run {run}: open loop, single event, {summary(500, samples)}")
        print(
            f"  run {run}: batched, 256 events a request, 8 in flight: {rate:,.0f} events/s ({failures} not 2xx)"
        )


def register_demo() -> None:
    """The demo model trained and registered as `make run` leaves it (once; later calls only score
    the demo file)."""
    run_cli("demo")


def demo_events(count: int = DEMO_EVENTS) -> list[bytes]:
    """``count`` distinct events of the demo company in the period after the one its model trained on,
    as the demo file's are (with as many anomalies), registering the demo model first if `make run`
    has not."""
    from scorer.demo.generate import (
        DEMO_ANOMALY_RATE,
        DEMO_SEED,
        DEMO_TRAIN_EVENTS,
        generate_events,
        generate_later,
    )

    register_demo()
    trained, _ = generate_events(DEMO_TRAIN_EVENTS, seed=DEMO_SEED)
    later, _ = generate_later(trained, count, seed=DEMO_SEED, anomaly_rate=DEMO_ANOMALY_RATE)
    return [orjson.dumps(event) for event in later]


class Feed:
    """Distinct bodies handed out in turn, each measurement going on where the last one stopped: a body
    comes again only after all the others, far beyond the reach of the service's embedding cache
    (10,000 entries a serving process), so every request pays for its scoring."""

    def __init__(self, bodies: list[bytes]) -> None:
        self.bodies = bodies
        self.at = 0

    def next(self) -> list[bytes]:
        """All the bodies, from where the last measurement stopped (sent in turn, then again)."""
        start = self.at % len(self.bodies)
        return self.bodies[start:] + self.bodies[:start]

    def sent(self, count: float) -> None:
        self.at += int(count)

    def batches(self, size: int) -> list[bytes]:
        """The bodies from where the last measurement stopped, ``size`` to a JSON array."""
        bodies = self.next()
        return [b"[" + b",".join(bodies[i : i + size]) + b"]" for i in range(0, len(bodies) - size + 1, size)]


STAGES = ("parse", "encode", "embed", "search", "calibrate", "explain")

BARE_APP = """
import sys, orjson
from aiohttp import web
async def score(request):
    event = orjson.loads(await request.read())
    return web.Response(body=orjson.dumps({"results": [{"score": 0.0, "uid": event.get("class_uid")}]}),
                        content_type="application/json")
app = web.Application()
app.router.add_post("/v1/score", score)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def stage_sums(port: int) -> dict[str, float]:
    """Seconds the service has recorded in each stage so far (its ocsf_anomaly_stage_seconds sums)."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        s.labels["stage"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "ocsf_anomaly_stage_seconds_sum"
    }


def lone(runs: int, requests: int = 5000) -> None:
    """Server CPU a request when requests come one at a time (see the module docstring)."""
    singles = demo_events()
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1/score"
    service = start_service(None, port, env={"OCSF_ANOMALY_WORKERS": "1"})
    try:
        asyncio.run(one_pass(url, singles[:2000], in_flight=1))  # warm up
        print(f"\nmake run's service, one process, {requests:,} distinct single events a run, one in flight")
        for run in range(runs):
            bodies = singles[2000 + run * requests : 2000 + (run + 1) * requests]
            before = stage_sums(port)
            with CpuMeter(service) as cpu:
                failures = asyncio.run(one_pass(url, bodies, in_flight=1))
            after = stage_sums(port)
            engine = {
                stage: (after.get(stage, 0.0) - before.get(stage, 0.0)) / len(bodies) for stage in STAGES
            }
            stages = ", ".join(f"{stage} {seconds * 1e6:.0f}" for stage, seconds in engine.items())
            print(
                f"  run {run + 1}: {len(bodies) / cpu.wall:,.0f} req/s, server CPU {cpu.server / len(bodies) * 1e6:,.0f} µs "
                f"a request, of which the stages {sum(engine.values()) * 1e6:,.0f} µs ({stages}); {failures} not 2xx"
            )
    finally:
        service.terminate()
        service.wait(30)
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1/score"
    bare = subprocess.Popen([sys.executable, "-c", BARE_APP, str(port)])
    try:
        deadline = time.time() + 30
        while asyncio.run(_refused(port)) and time.time() < deadline:
            time.sleep(0.1)
        asyncio.run(one_pass(url, singles[:2000], in_flight=1))
        print("\nthe floor: a bare aiohttp app (read the body, parse it, answer JSON), same requests")
        for run in range(runs):
            bodies = singles[2000 + run * requests : 2000 + (run + 1) * requests]
            with CpuMeter(bare) as cpu:
                failures = asyncio.run(one_pass(url, bodies, in_flight=1))
            print(
                f"  run {run + 1}: {len(bodies) / cpu.wall:,.0f} req/s, server CPU "
                f"{cpu.server / len(bodies) * 1e6:,.0f} µs a request; {failures} not 2xx"
            )
    finally:
        bare.terminate()
        bare.wait(30)


async def _refused(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return True
    writer.close()
    return False


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement (default 10)")
    parser.add_argument(
        "--target",
        choices=("make-run", "nsl", "both"),
        default="both",
        help="the service as `make run` starts it, the NSL-KDD model, or both (default)",
    )
    parser.add_argument("--cache-only", action="store_true", help="only the Redis cache study")
    parser.add_argument("--swap-only", action="store_true", help="only the registry swap under load")
    parser.add_argument(
        "--soak",
        type=float,
        metavar="SECONDS",
        help="only a soak: `make run`'s service under single events at --rate for SECONDS (e.g. 600), "
        "p50/p99, server RSS and CPU a request each minute",
    )
    parser.add_argument(
        "--rate",
        type=int,
        default=500,
        help="requests a second of the soak (default 500); 0: as fast as the service answers, 16 in flight",
    )
    parser.add_argument(
        "--lone", action="store_true", help="only what a request costs when requests come one at a time"
    )
    parser.add_argument("--url", help="only measure the service already running at this base URL")
    parser.add_argument(
        "--runs", type=int, default=3, help="runs of each measurement with --url or --lone (default 3)"
    )
    args = parser.parse_args()
    print(f"machine: {machine()}")
    if args.url:
        against(args.url, args.runs, args.duration)
        return
    if args.lone:
        lone(args.runs)
        return
    if args.soak:
        soak(args.soak, args.rate)
        return
    if args.target != "make-run" and not args.swap_only:  # the cache study's Redis, before any measuring
        require_program("redis-server", "redis-server")
    if args.target in ("make-run", "both") and not (args.cache_only or args.swap_only):
        singles = demo_events()
        load_test(
            f"make run's service (demo model, {len(singles):,} distinct demo events)",
            None,
            singles,
            args.duration,
        )
    if args.target == "make-run":
        return
    require_data()
    model = default_model()
    with gzip.open(DATA / "nsl_kdd_ocsf" / "train.jsonl.gz", "rb") as handle:
        lines = [line.rstrip(b"\n") for _, line in zip(range(60_000), handle, strict=False)]
    if args.swap_only:
        swap_study(model, lines, args.duration)
        return
    if not args.cache_only:
        load_test("NSL-KDD model (50,000-event baseline)", model, lines, args.duration)
        swap_study(model, lines, args.duration)
    cache_study(model, lines, args.duration)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
