"""Alerts (scorer/alerts.py): how fast they reach a real Alertmanager, and what sending them costs
the scorer, with the receiver up and with it down.

1. Throughput: one Alerter in this process, N alerts of distinct entities offered at once to a real
   Alertmanager (Debian's prometheus-alertmanager, started on a free port): the time to offer them
   (what scoring pays) and the time until Alertmanager took them all.
2. Cost to the scorer: `make run`'s service under batched load (256-event POST /v1/score requests,
   8 in flight, closed loop) in three settings, alternating, a fresh service each: alerts off;
   alerts to the live Alertmanager; alerts to a port nothing listens on (every send fails and is
   retried, the queue fills and the rest are dropped). To make the alert path as busy as it gets,
   every service runs at alpha = alert p-value = 0.05 with the de-duplication off. The settings
   take turns at going first. Events/s and the service's CPU a request are printed for each.

    .venv/bin/python bench/bench_alerts.py [--alerts 20000] [--duration 8] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import urllib.request

from bench_service import WARM_UP, CpuMeter, Feed, closed_loop, demo_events, free_port, start_service
from common import ROOT, machine

sys.path.insert(0, str(ROOT / "tests"))
from alertmanager import SKIP_REASON, Alertmanager, available

from scorer.alerts import AlertConfig, Alerter

BATCH = 256
IN_FLIGHT = 8
LEVEL = "0.05"


async def throughput(url: str, count: int) -> tuple[float, float]:
    """Seconds to offer ``count`` alerts, and until all were sent."""
    config = AlertConfig(url=url, queue_size=count, dedupe_seconds=0, p_value=0.05)
    alerter = Alerter(config)
    await alerter.start()
    anomaly = {"score": 4.2, "p_value": 0.0004, "reasons": [], "model": {"name": "bench", "version": "1"}}
    events = [
        {
            "class_uid": 4001,
            "metadata": {"uid": f"e{i}"},
            "src_endpoint": {"ip": f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}"},
        }
        for i in range(count)
    ]
    started = time.perf_counter()
    for event in events:
        alerter.offer(event, anomaly)
    offered = time.perf_counter() - started
    quiet = [{**anomaly, "p_value": 0.5}] * count  # what most scored events are: above the alert level
    started = time.perf_counter()
    alerter.offer_many(events, quiet)
    passed = time.perf_counter() - started
    print(f"offer_many: {passed / count * 1e9:,.0f} ns an event above the alert p-value (the common case)")
    while alerter.counters.sent + alerter.counters.dropped_rejected < count:
        await asyncio.sleep(0.01)
    sent = time.perf_counter() - started
    assert alerter.counters.sent == count, alerter.counters
    await alerter.close()
    return offered, sent


def alerts_sent(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
        for line in response.read().decode().splitlines():
            if line.startswith('ocsf_anomaly_alerts_total{outcome="sent"}'):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--alerts", type=int, default=20_000, help="alerts for the throughput (default 20,000)"
    )
    parser.add_argument(
        "--duration", type=float, default=8.0, help="seconds per load measurement (default 8)"
    )
    parser.add_argument("--runs", type=int, default=3, help="runs of each setting, alternating (default 3)")
    args = parser.parse_args()
    if not available():
        raise SystemExit(SKIP_REASON)
    print(f"machine: {machine()}")
    alertmanager = Alertmanager()
    alertmanager.start()
    try:
        offered, sent = asyncio.run(throughput(alertmanager.url, args.alerts))
        print(
            f"throughput: {args.alerts:,} alerts offered in {offered * 1e3:,.1f} ms "
            f"({offered / args.alerts * 1e6:.2f} µs each), all taken by Alertmanager after {sent:.2f} s "
            f"({args.alerts / sent:,.0f} alerts/s, batches of 200)"
        )
        lines = demo_events()  # distinct, a warm-up of their own: no event scored from the cache
        warm_up, batches = Feed(lines[-WARM_UP:]).batches(BATCH), Feed(lines[:-WARM_UP]).batches(BATCH)
        settings = {
            "off": {},
            "alertmanager": {"OCSF_ANOMALY_ALERTS_URL": alertmanager.url},
            "down": {"OCSF_ANOMALY_ALERTS_URL": f"http://127.0.0.1:{free_port()}"},
        }
        figures: dict[str, list[float]] = {name: [] for name in settings}
        cpu_per_request: dict[str, list[float]] = {name: [] for name in settings}
        for run in range(args.runs):
            names = list(settings)
            for name in names[run % 3 :] + names[: run % 3]:  # each setting first in turn: no order bias
                extra = settings[name]
                port = free_port()
                env = {
                    "OCSF_ANOMALY_ALPHA": LEVEL,
                    "OCSF_ANOMALY_ALERTS_P_VALUE": LEVEL,
                    "OCSF_ANOMALY_ALERTS_DEDUPE_SECONDS": "0",
                    **extra,
                }
                service = start_service(None, port, env=env)
                base = f"http://127.0.0.1:{port}"
                try:
                    asyncio.run(closed_loop(base + "/v1/score", warm_up, BATCH, IN_FLIGHT, 2.0))
                    with CpuMeter(service) as cpu:
                        rate, failures = asyncio.run(
                            closed_loop(base + "/v1/score", batches, BATCH, IN_FLIGHT, args.duration)
                        )
                    assert failures == 0, f"{failures} requests not 2xx"
                    requests = rate / BATCH * cpu.wall
                    figures[name].append(rate)
                    cpu_per_request[name].append(cpu.server / max(requests, 1) * 1e3)
                    note = f"; {alerts_sent(port):,.0f} alerts sent" if name != "off" else ""
                    print(f"run {run + 1} {name:>12}: {rate:,.0f} events/s; {cpu.line(requests)}{note}")
                finally:
                    service.terminate()
                    service.wait(30)
    finally:
        alertmanager.close()
    print(f"\nmedian of {args.runs} (alpha = alert p-value = {LEVEL}, no de-duplication):")
    for name in settings:
        print(
            f"  {name:>12}: {statistics.median(figures[name]):,.0f} events/s, "
            f"{statistics.median(cpu_per_request[name]):.1f} ms of service CPU a 256-event request"
        )


if __name__ == "__main__":
    main()
