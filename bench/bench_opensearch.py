"""Latency of POST /v1/integrations/opensearch, one document a call, as OpenSearch's ml_inference
processor calls it (integrations/opensearch): open loop at 200 and 500 requests/s, and closed loop
at OpenSearch's default concurrency (max_prediction_tasks: 10 calls in flight per ingest node),
beside single-event POST /v1/score at the same rates in the same run. Distinct demo events
throughout (no measurement sends an event an earlier one sent: none is scored from the service's
embedding cache), each sent as the connector's request_body sends a whole document: {"event":
<source and metadata>}.
The service is `make run`'s (its defaults). p50/p99 in milliseconds; every request must be 2xx.

    .venv/bin/python bench/bench_opensearch.py [--duration 10] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from bench_service import WARM_UP, Feed, demo_events, free_port, open_loop, percentile, start_service, summary
from common import machine
from load_client import LoadClient

ENDPOINT = "/v1/integrations/opensearch"
RATES = (200, 500)
IN_FLIGHT = 10  # ml_inference's default max_prediction_tasks


def documents(lines: list[bytes]) -> list[bytes]:
    """Each event as ML Commons sends a whole document (input_map "$"): with its metadata."""
    return [
        b'{"event": ' + line[:-1] + b', "_index": "ocsf-2026.12.03", "_id": "d%d", "_version": -3}}' % i
        for i, line in enumerate(lines)
    ]


async def in_flight(
    url: str, bodies: list[bytes], concurrency: int, duration: float
) -> tuple[float, list[float], int]:
    """``concurrency`` callers, each sending its next document when the last is answered: requests/s,
    latencies, and how many were not 2xx."""
    latencies: list[float] = []
    failures = 0
    client = LoadClient(url)
    stop = time.perf_counter() + duration

    async def caller(offset: int) -> None:
        nonlocal failures
        i = offset
        while time.perf_counter() < stop:
            started = time.perf_counter()
            answer = await client.post(bodies[i % len(bodies)])
            latencies.append(time.perf_counter() - started)
            failures += not 200 <= answer.status < 300
            i += concurrency

    began = time.perf_counter()
    await asyncio.gather(*[caller(k) for k in range(concurrency)])
    elapsed = time.perf_counter() - began
    client.close()
    return len(latencies) / elapsed, latencies, failures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement (default 10)")
    parser.add_argument("--runs", type=int, default=3, help="runs of every measurement (default 3)")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    lines = demo_events()
    feed = Feed(lines[:-WARM_UP])  # each measurement sends events none before it sent: no cache hits
    port = free_port()
    service = start_service(None, port)
    base = f"http://127.0.0.1:{port}"
    table: dict[str, list[tuple[float, float, int]]] = {}
    try:
        asyncio.run(open_loop(base + ENDPOINT, documents(lines[-WARM_UP:]), 200, 3))  # warm up
        for run in range(args.runs):
            for rate in RATES:
                for name, url in (("opensearch", base + ENDPOINT), ("score", base + "/v1/score")):
                    bodies = feed.next()[: int(rate * args.duration)]
                    if name == "opensearch":
                        bodies = documents(bodies)
                    samples = asyncio.run(open_loop(url, bodies, rate, args.duration))
                    feed.sent(len(samples))
                    print(f"run {run + 1} {name:>10} {summary(rate, samples)}", flush=True)
                    latencies = [latency for _, latency, _, _ in samples]
                    failed = sum(not 200 <= status < 300 for _, _, status, _ in samples)
                    table.setdefault(f"{name} {rate}/s", []).append(
                        (percentile(latencies, 0.5) * 1e3, percentile(latencies, 0.99) * 1e3, failed)
                    )
            rate_done, latencies, failed = asyncio.run(
                in_flight(base + ENDPOINT, documents(feed.next()), IN_FLIGHT, args.duration)
            )
            feed.sent(len(latencies))
            table.setdefault(f"opensearch {IN_FLIGHT} in flight", []).append(
                (percentile(latencies, 0.5) * 1e3, percentile(latencies, 0.99) * 1e3, failed)
            )
            print(
                f"run {run + 1} opensearch {IN_FLIGHT} in flight: {rate_done:,.0f} req/s, p50 "
                f"{percentile(latencies, 0.5) * 1e3:.2f} ms p99 {percentile(latencies, 0.99) * 1e3:.2f} ms, "
                f"{failed} not 2xx",
                flush=True,
            )
    finally:
        service.terminate()
        service.wait(30)
    print(f"\nmedian of {args.runs} runs (p50 / p99 ms, requests not 2xx):")
    for name, rows in table.items():
        p50 = statistics.median(r[0] for r in rows)
        p99 = statistics.median(r[1] for r in rows)
        print(f"  {name:<28} {p50:6.2f} / {p99:6.2f}   {sum(r[2] for r in rows)} not 2xx")


if __name__ == "__main__":
    main()
