"""Events a second through the Vector hop, POST /v1/integrations/vector (integrations/vector_dev):
256-event batches as Vector's http sink sends them (a JSON array), 8 in flight, each enriched and
forwarded to a receiver standing in for Vector's http_server source on loopback (tests/
vector_downstream.py, in this process: it parses every batch it takes), beside POST /v1/enrich
(the same enrichment, answered instead of forwarded) and POST /v1/score against the same service,
alternating, in the same run; each measurement goes on through 98,000 distinct demo events where
the last one stopped, so no event is scored from the service's embedding cache; with the service's CPU a batch (the
"load generator" figure includes the stand-in receiver, which runs in this process). The service is `make run`'s
with its defaults, and the hop's memory of forwarded batches off (OCSF_ANOMALY_VECTOR_DEDUPE_SECONDS=0:
a measurement may send more events than there are, so batches can repeat, and a repeated batch
would be answered without scoring).

    .venv/bin/python bench/bench_vector.py [--duration 10] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys

from bench_service import WARM_UP, CpuMeter, Feed, closed_loop, demo_events, free_port, start_service
from common import ROOT, machine

sys.path.insert(0, str(ROOT / "tests"))
from vector_downstream import Downstream

BATCH = 256
IN_FLIGHT = 8


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement (default 10)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each endpoint, alternating (default 3)")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    lines = demo_events()
    feed = Feed(lines[:-WARM_UP])
    figures: dict[str, list[float]] = {"vector": [], "enrich": [], "score": []}
    with Downstream() as downstream:
        port = free_port()
        env = {
            "OCSF_ANOMALY_VECTOR_DOWNSTREAM_URL": downstream.url,
            "OCSF_ANOMALY_VECTOR_DEDUPE_SECONDS": "0",
        }
        service = start_service(None, port, env=env)
        base = f"http://127.0.0.1:{port}"
        try:
            warm_up = Feed(lines[-WARM_UP:]).batches(BATCH)
            asyncio.run(closed_loop(base + "/v1/score", warm_up, BATCH, IN_FLIGHT, 2.0))
            for run in range(args.runs):
                for name, path in (
                    ("vector", "/v1/integrations/vector"),
                    ("enrich", "/v1/enrich"),
                    ("score", "/v1/score"),
                ):
                    taken = len(downstream.events)
                    with CpuMeter(service) as cpu:
                        rate, failures = asyncio.run(
                            closed_loop(base + path, feed.batches(BATCH), BATCH, IN_FLIGHT, args.duration)
                        )
                    feed.sent(rate * cpu.wall)
                    assert failures == 0, f"{failures} requests not 2xx"
                    if name == "vector":
                        assert len(downstream.events) > taken
                    figures[name].append(rate)
                    print(
                        f"run {run + 1} {name:>6}: {rate:,.0f} events/s; {cpu.line(rate / BATCH * cpu.wall)}"
                    )
        finally:
            service.terminate()
            service.wait(30)
    vector, enrich, score = (statistics.median(figures[name]) for name in ("vector", "enrich", "score"))
    print(
        f"\nmedian of {args.runs}: {vector:,.0f} events/s through the hop (enriched and forwarded), "
        f"{enrich:,.0f} from /v1/enrich (enriched, answered), {score:,.0f} from /v1/score; the hop "
        f"costs {1 - vector / score:.0%} of /v1/score's throughput, {1 - vector / enrich:.0%} of /v1/enrich's"
    )


if __name__ == "__main__":
    main()
