"""The scoring service under load, over loopback, from a separate load-generator process.

Starts `ocsf-anomaly serve` with the default NSL-KDD model (50,000-event baseline), then:
- open loop: single-event POST /v1/score at fixed rates; each request's latency is measured from
  its *scheduled* send time, so queueing counts; every request must get a 2xx;
- closed loop: maximum single-event throughput (64 in flight), micro-batching on and off;
- batched: POST /v1/score with 256 events a request (8 in flight): events/s.
Distinct events throughout (NSL-KDD lines in file order), never one body repeated.
The load generator shares the 2 cores with the service: figures include that contention.

    .venv/bin/python bench/bench_service.py [--duration 10]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
from common import CLI, DATA, default_model, machine, require_data

HEADERS = {"Content-Type": "application/json"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_service(
    model: Path, port: int, batch_wait_us: int, redis_url: str | None = None
) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OCSF_ANOMALY_BATCH_MAX_WAIT_US": str(batch_wait_us)}
    env.pop("REDIS_URL", None)
    env.pop("OCSF_ANOMALY_REDIS_URL", None)
    if redis_url:
        env["OCSF_ANOMALY_REDIS_URL"] = redis_url
    process = subprocess.Popen(
        [*CLI, "serve", "--model", str(model), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            time.sleep(0.2)
    return process


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def open_loop(url: str, bodies: list[bytes], rate: int, duration: float) -> str:
    count = int(rate * duration)
    latencies: list[float] = []
    failures = 0
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        loop = asyncio.get_running_loop()
        start = loop.time() + 0.5

        async def one(i: int) -> None:
            nonlocal failures
            scheduled = start + i / rate
            await asyncio.sleep(max(0.0, scheduled - loop.time()))
            try:
                async with session.post(url, data=bodies[i % len(bodies)], headers=HEADERS) as response:
                    await response.read()
                    if response.status >= 300:
                        failures += 1
            except aiohttp.ClientError:
                failures += 1
            latencies.append(loop.time() - scheduled)

        await asyncio.gather(*[one(i) for i in range(count)])
    return (
        f"{rate:>5} req/s: p50 {percentile(latencies, 0.5) * 1e3:7.2f} ms  p99 {percentile(latencies, 0.99) * 1e3:7.2f} ms"
        f"  ({count:,} requests, {failures} not 2xx)"
    )


async def closed_loop(
    url: str, bodies: list[bytes], per_body: int, in_flight: int, duration: float
) -> tuple[float, int]:
    done = 0
    failures = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        stop = time.perf_counter() + duration

        async def worker(offset: int) -> None:
            nonlocal done, failures
            i = offset
            while time.perf_counter() < stop:
                async with session.post(url, data=bodies[i % len(bodies)], headers=HEADERS) as response:
                    await response.read()
                    if response.status >= 300:
                        failures += 1
                done += 1
                i += in_flight

        started = time.perf_counter()
        await asyncio.gather(*[worker(k) for k in range(in_flight)])
        elapsed = time.perf_counter() - started
    return done * per_body / elapsed, failures


def lookups(port: int) -> dict[tuple[str, str], float]:
    import urllib.request

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
    reading Redis), and the hit rate of a replay of NSL-KDD in file order."""
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
                service = start_service(model, port, 2000, url)
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
        service = start_service(model, port, 2000, url)
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
    finally:
        redis.kill()
        redis.wait(10)


async def one_pass(url: str, bodies: list[bytes], in_flight: int = 8) -> int:
    failures = 0
    queue = list(reversed(bodies))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def worker() -> None:
            nonlocal failures
            while queue:
                body = queue.pop()
                async with session.post(url, data=body, headers=HEADERS) as response:
                    await response.read()
                    failures += response.status >= 300

        await asyncio.gather(*[worker() for _ in range(in_flight)])
    return failures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--cache-only", action="store_true", help="only the Redis cache study")
    args = parser.parse_args()
    require_data()
    model = default_model()
    with gzip.open(DATA / "nsl_kdd_ocsf" / "train.jsonl.gz", "rb") as handle:
        lines = [line.rstrip(b"\n") for _, line in zip(range(60_000), handle, strict=False)]
    singles = lines
    batches = [b"[" + b",".join(lines[i : i + 256]) + b"]" for i in range(0, len(lines) - 256, 256)]
    print(f"machine: {machine()}")
    if args.cache_only:
        cache_study(model, lines, args.duration)
        return
    for label, wait_us in (("micro-batching on (2 ms)", 2000), ("micro-batching off", 0)):
        port = free_port()
        url = f"http://127.0.0.1:{port}/v1/score"
        service = start_service(model, port, wait_us)
        try:
            print(f"\n{label}")
            asyncio.run(closed_loop(url, singles[:2000], 1, 16, 2.0))  # warm up
            if wait_us:
                for rate in (200, 500, 1000):
                    print(
                        "  open loop, single event, "
                        + asyncio.run(open_loop(url, singles, rate, args.duration))
                    )
            rate, failures = asyncio.run(closed_loop(url, singles, 1, 64, args.duration))
            print(f"  closed loop, single event, 64 in flight: {rate:,.0f} req/s ({failures} not 2xx)")
            if wait_us:
                rate, failures = asyncio.run(closed_loop(url, batches, 256, 8, args.duration))
                print(
                    f"  batched, 256 events a request, 8 in flight: {rate:,.0f} events/s ({failures} not 2xx)"
                )
        finally:
            service.terminate()
            service.wait(30)
    cache_study(model, lines, args.duration)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
