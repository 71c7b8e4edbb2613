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


def start_service(model: Path, port: int, batch_wait_us: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OCSF_ANOMALY_BATCH_MAX_WAIT_US": str(batch_wait_us)}
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0)
    args = parser.parse_args()
    require_data()
    model = default_model()
    with gzip.open(DATA / "nsl_kdd_ocsf" / "train.jsonl.gz", "rb") as handle:
        lines = [line.rstrip(b"\n") for _, line in zip(range(60_000), handle, strict=False)]
    singles = lines
    batches = [b"[" + b",".join(lines[i : i + 256]) + b"]" for i in range(0, len(lines) - 256, 256)]
    print(f"machine: {machine()}")
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
    sys.stdout.flush()


if __name__ == "__main__":
    main()
