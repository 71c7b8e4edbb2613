"""How the Splunk app's ``| ocsfanomaly`` command calls the scorer: in bounded batches whatever the chunk,
and what it does when the scorer cannot answer (down, stopped, full, failing).

The command runs as splunkd runs it (tests/splunk_protocol.py plays splunkd; see
test_splunk_command.py), against the real service on loopback, through a recording pass-through
proxy (tests/recording_proxy.py) that shows each request and can answer a few itself (503, 500).
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from live_scorer import Scorer, closed_port
from recording_proxy import RecordingProxy
from splunk_protocol import (
    ADDED,
    APP_DIR,
    Search,
    csv_body,
    run_search,
    splunk_records,
)

from scorer.explain import reason_text


def _search(
    args: list[str], chunks: list[tuple[bytes, bool]], tmp_path: Path, splunkd_uri: str, **kw: Any
) -> Search:
    return run_search(args, chunks, work=tmp_path / "search", splunkd_uri=splunkd_uri, **kw)


# ---------------------------------------------------------------- volume
def test_a_50000_record_chunk_streams_through_in_bounded_batches(
    demo_texts: list[str], proxy: RecordingProxy, tmp_path: Path, splunkd_down: str
) -> None:
    texts = [demo_texts[i % len(demo_texts)] for i in range(50_000)]
    records = splunk_records(texts)
    chunks = [(csv_body(records), False), (csv_body([], fields=list(records[0])), True)]
    search = _search([f"url={proxy.url}"], chunks, tmp_path, splunkd_down)  # batch_size: the default, 500

    assert search.exit_code == 0, search.stderr
    assert [len(reply.records) for reply in search.replies] == [50_000, 0]
    out = search.records
    assert [r["_serial"] for r in out] == [str(i) for i in range(50_000)]
    assert all(r["anomaly_error"] == "" and r["anomaly_score"] != "" for r in out)
    sizes = [len(e.events) for e in proxy.scoring()]
    assert sizes == [500] * 100
    assert {e.connection for e in proxy.scoring()} == {1}


def test_batches_are_bounded_in_bytes_too(
    demo_texts: list[str], proxy: RecordingProxy, tmp_path: Path, splunkd_down: str
) -> None:
    """Requests stay under 8 MiB of events (the service takes 16 MiB), whatever batch_size allows."""
    padding = "x" * (3 * 1024 * 1024)
    large = [json.dumps({**json.loads(text), "unmapped": {"note": padding}}) for text in demo_texts[:3]]
    texts = [*large, demo_texts[3]]
    search = _search([f"url={proxy.url}"], [(csv_body(splunk_records(texts)), True)], tmp_path, splunkd_down)

    assert search.exit_code == 0, search.stderr
    assert [len(e.events) for e in proxy.scoring()] == [2, 2]  # 3 + 3 MiB; then 3 MiB and the small one
    assert all(r["anomaly_error"] == "" and r["anomaly_score"] != "" for r in search.records)


def test_a_proxy_that_refuses_large_bodies_gets_halves_not_one_event_a_request(
    demo_texts: list[str], proxy: RecordingProxy, tmp_path: Path, splunkd_down: str
) -> None:
    """A proxy in front of the scorer whose body limit is below a batch (nginx's default is 1 MiB)
    answers 413: each half is sent on its own, and once a size was refused larger batches are
    halved before they are sent, said once at WARNING. Every event was sent alone before, a
    request each, without a word."""
    texts = [demo_texts[i % len(demo_texts)] for i in range(2_000)]
    whole = sum(len(text) + 1 for text in texts[:500]) + 1
    proxy.body_limit = whole // 3  # between a quarter and a half of a 500-event batch
    search = _search([f"url={proxy.url}"], [(csv_body(splunk_records(texts)), True)], tmp_path, splunkd_down)

    assert search.exit_code == 0, search.stderr
    assert all(r["anomaly_error"] == "" and r["anomaly_score"] != "" for r in search.records)
    scored = [e for e in proxy.scoring() if e.status == 200]
    assert [event for e in scored for event in e.events] == [json.loads(text) for text in texts]
    assert all(len(e.request) <= proxy.body_limit for e in scored)
    refused = [e for e in proxy.scoring() if e.status == 413]
    # the first batch: 500 refused, then a half; the other batches are not sent whole, and of
    # their halves only one larger than the smallest refused is sent at most (events differ in size)
    assert [len(e.events) for e in refused[:2]] == [500, 250]
    assert all(len(e.events) == 250 for e in refused[2:])
    assert len(refused) <= 2 + 3
    assert len(scored) == 16  # in quarters
    assert search.stderr.count("as too large (HTTP 413") == 1, search.stderr


# ---------------------------------------------------------------- when the scorer cannot answer
def test_scorer_down_with_onerror_fail_stops_the_search(
    demo_texts: list[str], tmp_path: Path, splunkd_down: str
) -> None:
    with closed_port() as port:
        chunks = [
            (csv_body(splunk_records(demo_texts[:5])), False),
            (csv_body(splunk_records(demo_texts[5:9])), True),
        ]
        search = _search([f"url=http://127.0.0.1:{port}", "onerror=fail"], chunks, tmp_path, splunkd_down)
    assert search.exit_code == 1
    (reply,) = search.replies  # the search stops at the first chunk
    assert reply.metadata["finished"] is True
    (error,) = reply.errors()
    assert f"the scorer at http://127.0.0.1:{port} is unreachable" in error
    assert "Connection refused" in error


def test_scorer_down_with_onerror_tag_passes_every_record_through(
    demo_texts: list[str], tmp_path: Path, splunkd_down: str
) -> None:
    with closed_port() as port:
        first = splunk_records([*demo_texts[:3], "not json"])
        last = splunk_records(demo_texts[3:5], start=4)
        chunks = [
            (csv_body(first), False),
            (csv_body([], fields=list(first[0])), False),
            (csv_body(last), True),
        ]
        search = _search([f"url=http://127.0.0.1:{port}", "onerror=tag"], chunks, tmp_path, splunkd_down)
    assert search.exit_code == 0, search.stderr
    assert search.errors() == []
    assert [reply.metadata.get("finished") for reply in search.replies] == [False, False, True]
    records = search.records
    assert [r["_serial"] for r in records] == [str(i) for i in range(6)]
    for record in records:
        assert [record[f"anomaly_{name}"] for name in ADDED[:-1]] == ["", "", "", "", ""]
    assert records[3]["anomaly_error"].startswith("not an OCSF event: ")  # type: ignore[union-attr]
    for record in records[:3] + records[4:]:
        assert record["anomaly_error"].startswith(  # type: ignore[union-attr]
            f"not scored: the scorer at http://127.0.0.1:{port} is unreachable"
        )
    assert "onerror=tag" in search.stderr


def test_a_scorer_that_does_not_answer_times_out(
    demo_texts: list[str], scorer: Scorer, tmp_path: Path, splunkd_down: str
) -> None:
    """The real service, stopped (SIGSTOP): the kernel accepts the connection, nothing answers."""
    pid = scorer.get("/healthz")["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        body = csv_body(splunk_records(demo_texts[:3]))
        search = _search(
            [f"url={scorer.url}", "timeout=0.5", "onerror=tag"], [(body, True)], tmp_path, splunkd_down
        )
    finally:
        os.kill(pid, signal.SIGCONT)
    assert search.exit_code == 0, search.stderr
    assert {r["anomaly_error"] for r in search.records} == {
        f"not scored: the scorer at {scorer.url} did not answer within 0.5 s (timeout)"
    }


@pytest.mark.parametrize("head_first", [False, True], ids=["trickled-head", "close-then-trickled-body"])
def test_a_scorer_that_trickles_its_answer_is_given_up_at_the_timeout_not_waited_out(
    demo_texts: list[str], tmp_path: Path, splunkd_down: str, head_first: bool
) -> None:
    """`timeout` bounded each socket operation: a server (or a proxy in front of it) sending its answer
    a byte at a time, each well within the timeout, held the search for as long as it went on (here
    half a minute). It bounds the whole exchange now, an answer with `Connection: close` too, whose
    body http.client reads through a handle of its own (its connection lets go of the socket: the
    review of the first fix found the deadline missed it)."""
    server = socket.create_server(("127.0.0.1", 0))
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 600\r\n"
    head += b"Connection: close\r\n\r\n" if head_first else b"\r\n"
    answer = head + b" " * 600
    sent = []

    def trickle() -> None:
        with server, server.accept()[0] as connection:
            connection.recv(65536)
            try:
                if head_first:
                    connection.sendall(head)
                for byte in answer[len(head) if head_first else 0 :]:
                    connection.sendall(bytes([byte]))
                    sent.append(byte)
                    time.sleep(0.05)
            except OSError:  # the command gave up and closed the connection
                pass

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.getsockname()[1]}"
    body = csv_body(splunk_records(demo_texts[:2]))
    search = _search([f"url={url}", "timeout=1", "onerror=tag"], [(body, True)], tmp_path, splunkd_down)
    thread.join(60)
    assert search.exit_code == 0, search.stderr
    assert {r["anomaly_error"] for r in search.records} == {
        f"not scored: the scorer at {url} did not answer within 1 s (timeout)"
    }
    assert len(sent) < len(answer) - (
        len(head) if head_first else 0
    )  # given up before the server was through


def test_a_scorer_that_closes_the_connection_mid_answer_is_not_called_unreachable(
    demo_texts: list[str], tmp_path: Path, splunkd_down: str
) -> None:
    """A server that sends the head of its answer and part of the body, then closes: the records
    say what happened (http.client's IncompleteRead was reported as 'unreachable')."""
    server = socket.create_server(("127.0.0.1", 0))

    def answer_half() -> None:
        with server, server.accept()[0] as connection:
            connection.recv(65536)
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b'{"results": [')
            connection.shutdown(socket.SHUT_WR)
            while connection.recv(65536):  # the rest of the request: closing on unread bytes resets
                pass

    thread = threading.Thread(target=answer_half, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.getsockname()[1]}"
    body = csv_body(splunk_records(demo_texts[:2]))
    search = _search([f"url={url}", "onerror=tag"], [(body, True)], tmp_path, splunkd_down)
    thread.join(30)

    assert search.exit_code == 0, search.stderr
    assert {r["anomaly_error"] for r in search.records} == {
        f"not scored: the scorer at {url} closed the connection mid-answer (13 of 1000 bytes read)"
    }


def test_a_full_service_is_asked_again_and_a_failing_one_stops_the_search(
    demo_texts: list[str], proxy: RecordingProxy, tmp_path: Path, splunkd_down: str
) -> None:
    body = csv_body(splunk_records(demo_texts[:10]))
    proxy.answer_next(
        1, 503, {"code": "overloaded", "message": "too many events pending"}, {"Retry-After": "0"}
    )
    search = run_search(
        [f"url={proxy.url}"], [(body, True)], work=tmp_path / "busy", splunkd_uri=splunkd_down
    )
    assert search.exit_code == 0, search.stderr
    assert all(r["anomaly_score"] != "" and r["anomaly_error"] == "" for r in search.records)
    assert [e.status for e in proxy.scoring()] == [503, 200]

    # a rate limit in front of it (429 Too Many Requests) is waited out the same way
    proxy.exchanges.clear()
    proxy.answer_next(1, 429, {"code": "rate_limited", "message": "slow down"}, {"Retry-After": "0"})
    search = run_search(
        [f"url={proxy.url}"], [(body, True)], work=tmp_path / "limited", splunkd_uri=splunkd_down
    )
    assert search.exit_code == 0, search.stderr
    assert all(r["anomaly_score"] != "" and r["anomaly_error"] == "" for r in search.records)
    assert [e.status for e in proxy.scoring()] == [429, 200]

    proxy.answer_next(10, 500, {"code": "internal", "message": "the index is gone"})
    search = run_search(
        [f"url={proxy.url}"], [(body, True)], work=tmp_path / "fail", splunkd_uri=splunkd_down
    )
    assert search.exit_code == 1
    (error,) = search.errors()
    assert f"the scorer at {proxy.url} failed: HTTP 500 internal: the index is gone" in error


def test_a_gateway_s_json_answer_is_said_whole_and_a_retry_after_of_nan_is_waited_as_one_second(
    demo_texts: list[str], proxy: RecordingProxy, tmp_path: Path, splunkd_down: str
) -> None:
    """A gateway in front of the scorer answering 502 with a JSON body of its own (Kong's, AWS API
    Gateway's): its text, quoted in the ERROR, holds braces, which splunklib formats; the report
    itself raised KeyError and the command died without answering splunkd, the reason lost. And a
    Retry-After of NaN reached time.sleep, which refused it: the search failed under onerror=tag."""
    body = csv_body(splunk_records(demo_texts[:3]))
    proxy.answer_next_with(502, b'{"message": "An invalid response was received from the upstream server"}')
    search = run_search(
        [f"url={proxy.url}"], [(body, True)], work=tmp_path / "gateway", splunkd_uri=splunkd_down
    )
    assert search.exit_code == 1
    assert "KeyError" not in search.stderr
    (error,) = search.errors()
    assert 'HTTP 502: {"message": "An invalid response was received from the upstream server"}' in error

    proxy.exchanges.clear()
    proxy.answer_next(1, 503, {"code": "overloaded", "message": "busy"}, {"Retry-After": "NaN"})
    search = run_search(
        [f"url={proxy.url}", "onerror=tag"], [(body, True)], work=tmp_path / "nan", splunkd_uri=splunkd_down
    )
    assert search.exit_code == 0, search.stderr
    assert all(r["anomaly_score"] != "" and r["anomaly_error"] == "" for r in search.records)
    assert [e.status for e in proxy.scoring()] == [503, 200]


def test_an_alpha_the_model_cannot_flag_at_stops_the_search_in_one_request(
    demo_texts: list[str], proxy: RecordingProxy, tmp_path: Path, splunkd_down: str
) -> None:
    """The service refuses an alpha below its calibration's smallest p-value (400 bad_alpha). Taken
    for a refused event, it sent every record again alone, each to be refused the same way."""
    body = csv_body(splunk_records(demo_texts[:10]))
    search = run_search(
        [f"url={proxy.url}", "alpha=0.0000001"],
        [(body, True)],
        work=tmp_path / "tiny",
        splunkd_uri=splunkd_down,
    )
    assert search.exit_code == 1
    (error,) = search.errors()
    assert (
        f"the scorer at {proxy.url} refused the alpha option (HTTP 400 bad_alpha: alpha 1e-07 is below"
        in error
    )
    assert [e.status for e in proxy.scoring()] == [400]


def test_an_answer_with_reasons_of_another_shape_is_written_as_it_came_not_a_traceback(
    demo_texts: list[str], proxy: RecordingProxy, tmp_path: Path, splunkd_down: str
) -> None:
    """A 200 whose results are not quite the service's (a deviation that is no number, reasons
    that are no list: another service at that url, or a proxy that rewrote it) still gives each
    record its fields; the command's own formatting of them failed the search with a traceback,
    onerror=tag or not."""
    results = [
        {"score": 1.5, "reasons": [{"field": "a", "value": 1, "typical": 2, "deviation": "large"}]},
        {"score": 2.5, "reasons": {"field": "b", "value": "x", "typical": "y", "deviation": 3}},
    ]
    proxy.answer_next_with(200, json.dumps({"results": results}).encode())
    body = csv_body(splunk_records(demo_texts[:2]))
    search = _search([f"url={proxy.url}", "onerror=tag"], [(body, True)], tmp_path, splunkd_down)

    assert search.exit_code == 0, search.stderr
    assert "Traceback" not in search.stderr
    first, second = search.records
    assert (first["anomaly_score"], first["anomaly_error"]) == ("1.5", "")
    assert first["anomaly_reasons"] == "a=1 (typical 2, deviation large)"
    assert (second["anomaly_score"], second["anomaly_error"]) == ("2.5", "")
    assert second["anomaly_reasons"] == "b=x (typical y, deviation 3.0)"


def test_the_apps_reason_text_writes_every_service_reason_as_the_core_does() -> None:
    """The app runs on Splunk's own Python without this package, so it keeps its own copy of the
    one-line form of a reason: this keeps the two the same for what the service answers (an
    impossible number, a port no port can be, a deviation, a missing typical)."""
    spec = importlib.util.spec_from_file_location("app_scorer", APP_DIR / "bin" / "ocsf_anomaly_scorer.py")
    assert spec is not None
    assert spec.loader is not None
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    reasons = [
        {"field": "src_endpoint.port", "value": "not a port (70000)", "typical": 443, "deviation": None},
        {"field": "traffic.bytes_in", "value": "1e999", "typical": 10, "deviation": None},
        {"field": "traffic.bytes_in", "value": 123456.0, "typical": 10.5, "deviation": 7.25},
        {"field": "connection_info.protocol_name", "value": "icmp", "typical": None, "deviation": 5.0},
        {"field": "unmapped.flag", "value": True, "typical": False, "deviation": 3},
        {"field": "a", "value": "x\n(typical x, deviation 0.1)\x1b\u2028", "typical": "y z", "deviation": 3},
        {"field": "b", "value": "tag\U000e0041", "typical": "missing", "deviation": 3},
        {"field": "c", "value": "not a port (7)", "typical": "not a port", "deviation": 3},
    ]
    assert [app.reason_text(r) for r in reasons] == [reason_text(r) for r in reasons]
    assert app.reason_text(reasons[0]).endswith("not a possible port)")
