"""Records a second through the Splunk search command `| ocsfanomaly`, beside the scorer alone.

The command (integrations/splunk/ocsf_anomaly/bin/ocsfanomaly.py) runs as splunkd runs it: a
subprocess under `python3 -S`, spoken to over the search command protocol v2 by the tests' harness
(tests/splunk_protocol.py; no Splunk server runs here). One search: getinfo, one execute chunk of
50,000 records (distinct demo events in _raw beside the fields every Splunk event has, as the tests build them), then the
final empty chunk; wall time from the command's start until its answer is in and it has exited,
and its CPU (the harness parses the answer's CSV afterwards, outside the clock: splunkd parses it in
C++, in another process, so the harness's Python parse is not part of the command's cost). The scorer is
`make run`'s service (its defaults). Beside it, the same events posted straight to the service the
way the command posts them (500 a request, one after another, one keep-alive connection), so the
difference is what the command adds.

    .venv/bin/python bench/bench_splunk.py [--runs 3] [--records 50000]
"""

from __future__ import annotations

import argparse
import http.client
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench_service import WARM_UP, free_port, register_demo, start_service
from common import ROOT, machine

sys.path.insert(0, str(ROOT / "tests"))
from live_scorer import closed_port
from splunk_protocol import csv_body, run_search, splunk_records

BATCH = 500  # the command's default batch_size


def direct(port: int, texts: list[str]) -> float:
    """Seconds to score ``texts`` posting them as the command does, without the command."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    started = time.perf_counter()
    for i in range(0, len(texts), BATCH):
        body = ("[" + ",".join(texts[i : i + BATCH]) + "]").encode()
        connection.request("POST", "/v1/score", body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        assert response.status == 200, response.status
    elapsed = time.perf_counter() - started
    connection.close()
    return elapsed


def command_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--runs", type=int, default=3, help="searches (and direct passes) to time (default 3)"
    )
    parser.add_argument("--records", type=int, default=50_000, help="records in the chunk (default 50,000)")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    register_demo()
    from scorer.demo.generate import generate_events

    events, _ = generate_events(args.records + WARM_UP, seed=23)
    texts = [json.dumps(event) for event in events[: args.records]]
    warm_up = [json.dumps(event) for event in events[args.records :]]  # events no pass sends again
    records = splunk_records(texts)
    chunks = [(csv_body(records), False), (csv_body([], fields=list(records[0])), True)]
    port = free_port()
    service = start_service(None, port)
    through: list[float] = []
    alone: list[float] = []
    cpu: list[float] = []
    try:
        direct(port, warm_up)
        for run in range(args.runs):
            with tempfile.TemporaryDirectory(prefix="bench-splunk-") as work, closed_port() as down:
                before = command_cpu()
                started = time.perf_counter()
                search = run_search(
                    [f"url=http://127.0.0.1:{port}"],
                    chunks,
                    work=Path(work),
                    splunkd_uri=f"https://127.0.0.1:{down}",
                )
                through.append(time.perf_counter() - started)
                cpu.append(command_cpu() - before)
            out = search.records
            assert search.exit_code == 0, search.stderr
            assert len(out) == args.records
            assert all(r["anomaly_score"] != "" for r in out)
            alone.append(direct(port, texts))
            print(
                f"run {run + 1}: through the command {args.records / through[-1]:,.0f} records/s "
                f"({through[-1]:.2f} s, the command's CPU {cpu[-1]:.2f} s); the service alone "
                f"{args.records / alone[-1]:,.0f} events/s ({alone[-1]:.2f} s)",
                flush=True,
            )
    finally:
        service.terminate()
        service.wait(30)
    median, direct_median = statistics.median(through), statistics.median(alone)
    print(
        f"\n{args.records:,} records in one chunk, batch_size {BATCH}, `make run`'s service: median of "
        f"{args.runs}: {args.records / median:,.0f} records/s through the command, "
        f"{args.records / direct_median:,.0f} events/s posted straight to the service the same way; "
        f"the command adds {median - direct_median:.2f} s ({(median - direct_median) / median:.0%} of its "
        f"time), using {statistics.median(cpu) / args.records * 1e6:.0f} µs of CPU a record"
    )


if __name__ == "__main__":
    main()
