"""The Vector hop, ``POST /v1/integrations/vector``: the real app on a loopback port, called as
Vector's ``http`` sink calls it, forwarding to a real HTTP receiver standing in for Vector's
``http_server`` source (tests/vector_downstream.py; no Vector binary can run here). Nothing lost
(Vector is answered 2xx only once the downstream holds the batch) and nothing twice (a batch sent
again after its answer was lost is not forwarded again)."""

from __future__ import annotations

import http.client
import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from live_scorer import serve_app
from redis_server import RedisServer
from vector_downstream import Downstream
from waiting import eventually

from scorer.errors import origin
from scorer.service.vector import Forwarded
from scorer.settings import Settings

TOKEN = "vector-hop-token"
PATH = "/v1/integrations/vector"
Event = dict[str, Any]


@pytest.fixture
def downstream() -> Iterator[Downstream]:
    with Downstream() as receiver:
        yield receiver


def _settings(bundle_dir: Path, downstream: Downstream | None, **extra: Any) -> Settings:
    """The hop's settings; a forward gets a minute unless the test is about its timeout (a
    downstream that answers must never be given up on because the host is busy)."""
    return Settings(
        model_dir=bundle_dir,
        threads=1,
        api_token=TOKEN,
        vector_downstream_url=downstream.url if downstream else None,
        **{"vector_downstream_timeout_seconds": 60.0, **extra},
    )


@pytest.fixture
def hop(bundle_dir: Path, downstream: Downstream) -> Iterator[str]:
    with serve_app(_settings(bundle_dir, downstream)) as base_url:
        yield base_url


def _send(
    base_url: str,
    body: bytes,
    content_type: str = "application/json",
    method: str = "POST",
    token: str | None = TOKEN,
    query: str = "",
) -> tuple[int, dict[str, str], Any]:
    """One call as Vector's http sink makes it: status, headers, JSON answer."""
    address = urlsplit(base_url)
    connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=60)
    headers = {"Content-Type": content_type}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        connection.request(method, PATH + query, body=body if method == "POST" else None, headers=headers)
        response = connection.getresponse()
        data = response.read()
    finally:
        connection.close()
    return response.status, dict(response.headers), json.loads(data) if data else None


def _array(events: list[Any]) -> bytes:
    return json.dumps(events).encode()


def _without_anomaly(event: Event) -> Event:
    return {k: v for k, v in event.items() if k != "anomaly"}


def test_every_event_arrives_once_enriched_in_order_and_otherwise_as_it_came(
    hop: str, downstream: Downstream, held_out_events: list[Event]
) -> None:
    events = [
        *held_out_events[:40],
        {"class_uid": 4001, "traffic": {"bytes": 2**70}, "count": 3, "ratio": 1.0},
    ]
    status, _, answer = _send(hop, _array(events))
    assert status == 200, answer
    assert answer["events"] == len(events)
    assert answer["already_forwarded"] is False
    (batch,) = downstream.batches
    assert [_without_anomaly(e) for e in batch] == events
    last = batch[-1]
    assert type(last["count"]) is int
    assert type(last["ratio"]) is float
    assert last["traffic"]["bytes"] == 2**70  # beyond 64 bits, exact
    assert all({"score", "p_value", "is_anomaly", "model", "reasons"} <= set(e["anomaly"]) for e in batch)
    assert answer["anomalies"] == sum(e["anomaly"]["is_anomaly"] for e in batch)


def test_an_alpha_the_model_cannot_flag_at_is_scored_all_the_same_not_refused(
    hop: str, downstream: Downstream, held_out_events: list[Event]
) -> None:
    """/v1/score refuses such an alpha with a 400; Vector drops a batch answered 400, and a model
    swapped in may raise the floor under a config that was fine: the hop scores at it instead."""
    status, _, answer = _send(hop, _array(held_out_events[:5]), query="?alpha=0.0000001")
    assert status == 200, answer
    (batch,) = downstream.batches
    assert [e["anomaly"]["is_anomaly"] for e in batch] == [False] * 5


def test_ndjson_and_what_is_no_event_are_passed_on_never_dropped(
    hop: str, downstream: Downstream, held_out_events: list[Event]
) -> None:
    lines = [
        json.dumps(held_out_events[0]),
        "Dec  3 07:00:01 fw01 sshd[4242]: Accepted",
        "",
        json.dumps(held_out_events[1]),
    ]
    status, _, answer = _send(hop, "\n".join(lines).encode() + b"\n", "application/x-ndjson")
    assert status == 200, answer
    first, text, second = downstream.batches[0]
    assert _without_anomaly(first) == held_out_events[0]
    assert _without_anomaly(second) == held_out_events[1]
    assert text["message"] == lines[1]
    assert text["anomaly"]["error"]["code"] == "malformed_json"

    def nested(levels: int) -> Any:
        value: Any = 1
        for _ in range(levels):
            value = [value]
        return value

    # Vector's decoder reads 127 levels, the batch's array among them: an event may nest 126, itself
    # one of them; deeper, the whole batch was refused (400, so 503 to the sender, for ever)
    deepest_whole = {"class_uid": 4001, "note": "whole", "x": nested(125)}
    too_deep = {"class_uid": 4001, "note": "kept", "x": nested(126)}
    body = _array([held_out_events[2], 7, "text", [1], 2**64, [2**70], deepest_whole, too_deep, nested(300)])
    deepest = b"[" * 1000 + b"1" + b"]" * 1000  # read (orjson reads 1,024 levels) and written back
    status, _, answer = _send(hop, body[:-1] + b"," + deepest + b"]")
    assert status == 200, answer
    event, *kept, whole, as_text, deep_text, deepest_text = downstream.batches[1]
    assert _without_anomaly(event) == held_out_events[2]
    assert [e["message"] for e in kept] == [7, "text", [1], 2**64, [2**70]]  # beyond 64 bits, exact
    assert all(e["anomaly"]["error"]["code"] == "not_an_event" for e in kept)
    assert _without_anomaly(whole) == deepest_whole
    assert "score" in whole["anomaly"]
    assert json.loads(as_text["message"]) == too_deep
    assert deep_text["message"] == json.dumps(nested(300), separators=(",", ":"))
    assert deepest_text["message"] == deepest.decode()
    for passed in (as_text, deep_text, deepest_text):
        assert set(passed) == {"message", "anomaly"}
        assert passed["anomaly"]["error"]["code"] == "too_deep"
        assert "126 levels" in passed["anomaly"]["error"]["message"]


def test_the_stand_in_refuses_what_serde_json_refuses(downstream: Downstream) -> None:
    """The stand-in's decoder stops where Vector's does: 127 arrays and objects nested, brackets
    inside strings not counted; deeper is a 400 (and Python's own decoder's limit is no way round)."""
    url = urlsplit(downstream.url)

    def post(body: bytes) -> int:
        connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=30)
        connection.request("POST", url.path, body=body, headers={"Content-Type": "application/json"})
        status = connection.getresponse().status
        connection.close()
        return status

    def array(depth: int, inner: bytes = b"1") -> bytes:  # the batch's own array counts
        return b"[" * depth + inner + b"]" * depth

    assert post(array(127)) == 200
    assert post(array(126, b'{"s": "[[[[{{{{"}')) == 200
    assert post(array(128)) == 400
    assert post(array(126, b'{"a": {"b": 1}}')) == 400
    assert post(array(100_000)) == 400
    # serde_json reads a number beyond 64 bits as a double; one beyond a double it refuses
    assert post(b'[{"n": 18446744073709551616, "m": 1e308}]') == 200
    assert post(b'[{"n": 1e400}]') == 400
    assert post(b'[{"n": -' + b"9" * 400 + b"}]") == 400
    assert downstream.refused == 5
    assert len(downstream.batches) == 3


def test_a_number_beyond_a_double_goes_on_as_text_not_the_batch_refused(
    bundle_dir: Path, downstream: Downstream, held_out_events: list[Event]
) -> None:
    """1e400, or an integer of 400 digits, is valid JSON and was forwarded as it came: Vector's
    decoder refuses such a number with the whole batch ("number out of range", 400), so the hop
    answered 422 and Vector dropped every event of the batch. It goes on as its JSON text."""
    beyond = [
        b'{"class_uid":4001,"traffic":{"bytes_out":1e400}}',
        b'{"class_uid":4001,"ticket":' + b"9" * 400 + b"}",
    ]
    within = {"class_uid": 4001, "ticket": 2**64, "hash": "3e456789abcdef", "x": 1e300}
    lines = [json.dumps(held_out_events[0]).encode(), *beyond, json.dumps(within).encode()]
    with serve_app(_settings(bundle_dir, downstream)) as hop:
        status, _, answer = _send(hop, b"[" + b",".join(lines) + b"]")
        assert status == 200, answer
    first, *as_text, kept = downstream.batches[0]
    assert _without_anomaly(first) == held_out_events[0]
    for passed, text in zip(as_text, beyond, strict=True):
        assert set(passed) == {"message", "anomaly"}
        assert passed["anomaly"]["error"]["code"] == "out_of_range"
        assert passed["message"] == text.decode()  # as it came
    assert _without_anomaly(kept) == within
    assert "score" in kept["anomaly"]
    # the answer counts the verdicts forwarded: not the two flagged (impossible numbers) and passed
    # on without theirs
    assert answer["anomalies"] == sum(bool(e["anomaly"].get("is_anomaly")) for e in downstream.batches[0])


@pytest.mark.parametrize("failure", ["error", "timeout", "refused"])
def test_a_downstream_failure_is_503_nothing_held_and_the_retry_arrives_once(
    failure: str,
    bundle_dir: Path,
    downstream: Downstream,
    held_out_events: list[Event],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The hop's timeout is the subject only for "timeout", where the downstream never answers the
    # first forward (it holds the batch, unrecorded, until the test lets it go): 5 s, which the
    # retry's forward, to a downstream that answers at once, never comes near on a busy host.
    timeout = 5.0 if failure == "timeout" else 60.0
    with serve_app(_settings(bundle_dir, downstream, vector_downstream_timeout_seconds=timeout)) as hop:
        body = _array(held_out_events[:10])
        if failure == "error":
            downstream.status = 500
        elif failure == "timeout":
            downstream.hold()
        else:
            downstream.stop()
        status, headers, answer = _send(hop, body)
        assert status == 503
        assert answer["error"]["code"] == "downstream_unavailable"
        assert "Retry-After" in headers
        assert downstream.batches == []
        if failure == "timeout":
            assert "did not answer in time" in answer["error"]["message"]
            assert downstream.held == 1  # it reached the downstream, which never answered
            downstream.release(take=False)  # the hop gave up on it: never taken
        else:  # Vector retries meanwhile
            assert _send(hop, body)[0] == 503

        downstream.status = 200  # the downstream is back; Vector sends the batch again
        if failure == "refused":
            downstream.start()
        status, _, answer = _send(hop, body)
        assert status == 200
        assert answer["already_forwarded"] is False
        assert [_without_anomaly(e) for e in downstream.events] == held_out_events[:10]
    # the outage in the log, once, and its end (the answers alone said it: the resilience review)
    said = [r.getMessage() for r in caplog.records if "Vector downstream" in r.getMessage()]
    why = {
        "error": "it answered HTTP 500",
        "timeout": "it did not answer in time",
        "refused": "it could not be reached (Client",
    }
    assert len(said) == 2, said
    assert said[0].startswith(
        f"the Vector downstream at {origin(downstream.url)} does not take the enriched batches ({why[failure]}"
    )
    assert said[0].endswith("each is answered 503, and Vector retries it (said again once it takes them)")
    assert said[1] == f"the Vector downstream at {origin(downstream.url)} takes the enriched batches again"


@pytest.mark.parametrize("status", [400, 413, 422])
def test_a_batch_the_downstream_rejects_for_what_it_holds_is_422_not_retried_for_ever(
    status: int, hop: str, downstream: Downstream, held_out_events: list[Event]
) -> None:
    """Vector's http_server source answers 400 when a sink after it rejected the events (its
    handle_batch_status: BatchStatus::Rejected), as it will every time. The hop answered 503, so
    Vector's http sink retried it for ever: the pipeline stalled behind it, and each try wrote the
    events again into the sinks that had taken them. Now a 4xx Vector does not retry."""
    downstream.status = status
    answer_status, headers, answer = _send(hop, _array(held_out_events[:3]))
    assert answer_status == 422, answer
    assert answer["error"]["code"] == "downstream_rejected"
    assert f"HTTP {status}" in answer["error"]["message"]
    assert "Retry-After" not in headers
    assert downstream.refused == 1


def test_a_token_in_the_downstream_s_query_is_in_no_answer(
    bundle_dir: Path, downstream: Downstream, held_out_events: list[Event]
) -> None:
    """The downstream's URL was quoted whole in the 503 and 422 answers, a `?token=` with it, to
    every client of the hop; `config show` hides the query as a secret. So is a redirect's target."""
    settings = _settings(bundle_dir, downstream).model_copy(
        update={"vector_downstream_url": downstream.url + "?token=S3CRET"}
    )
    with serve_app(settings) as hop:
        answers = []
        for status, redirect in ((500, None), (400, None), (200, "/sign-in?token=S3CRET")):
            downstream.status, downstream.redirect = status, redirect
            answers.append(_send(hop, _array(held_out_events[:2]))[2]["error"]["message"])
    assert all("S3CRET" not in message for message in answers), answers
    assert all(f"{downstream.url}?…" in message for message in answers[:2]), answers
    assert "a redirect to /sign-in?…" in answers[2], answers


def test_a_downstream_that_redirects_is_503_not_taken_for_delivery(
    hop: str, downstream: Downstream, held_out_events: list[Event]
) -> None:
    """An auth proxy in front of the http_server source answers 302 to its sign-in page: a client
    that follows it turns the POST into a GET, which the page answers 200. The batch is not held
    downstream, so Vector must not hear 200 (it would drop the batch): 503, saying where it points."""
    downstream.redirect = "/sign-in"
    status, headers, answer = _send(hop, _array(held_out_events[:3]))
    assert status == 503, answer
    assert "Retry-After" in headers
    assert "HTTP 302" in answer["error"]["message"]
    assert "/sign-in" in answer["error"]["message"]
    assert (downstream.batches, downstream.pages) == ([], 0)

    downstream.redirect = None  # the proxy fixed: Vector sends the batch again
    assert _send(hop, _array(held_out_events[:3]))[0] == 200
    assert [_without_anomaly(e) for e in downstream.events] == held_out_events[:3]


def test_a_downstream_answer_without_end_is_not_waited_for(
    hop: str, downstream: Downstream, held_out_events: list[Event]
) -> None:
    """The hop read the downstream's answer whole: a 200 whose body never ended held the batch until
    the forward's timeout, and then Vector heard 503 for a batch the downstream had taken (and sent
    it again: twice downstream). The answer is read only as far as a status needs."""
    downstream.endless = True
    status, _, answer = _send(hop, _array(held_out_events[:3]))
    assert status == 200, answer
    assert [_without_anomaly(e) for e in downstream.events] == held_out_events[:3]


def test_a_downstream_2xx_whose_body_cannot_be_read_is_delivered_once(
    hop: str, downstream: Downstream, held_out_events: list[Event]
) -> None:
    """A 200 whose body could not be decoded (a "gzip" body that is not gzip, as a proxy might send)
    made the forward fail after the downstream had taken the batch: Vector heard 503 and sent it
    again, twice downstream. The status is what says it was taken."""
    downstream.garbled = True
    status, _, answer = _send(hop, _array(held_out_events[:3]))
    assert status == 200, answer
    assert [_without_anomaly(e) for e in downstream.events] == held_out_events[:3]
    assert len(downstream.batches) == 1


def test_a_downstream_failure_never_shows_the_password_of_its_url(
    bundle_dir: Path, downstream: Downstream, held_out_events: list[Event]
) -> None:
    url = downstream.url.replace("http://", "http://vector:s3cr3t@", 1)
    downstream.stop()
    settings = _settings(bundle_dir, None).model_copy(update={"vector_downstream_url": url})
    with serve_app(settings) as base_url:
        status, _, answer = _send(base_url, _array(held_out_events[:2]))
    assert status == 503
    assert "http://***@127.0.0.1:" in answer["error"]["message"]
    assert "s3cr3t" not in json.dumps(answer)


def test_a_batch_sent_again_after_its_answer_was_lost_is_not_forwarded_twice(
    hop: str, downstream: Downstream, held_out_events: list[Event]
) -> None:
    body = _array(held_out_events[:5])
    assert _send(hop, body)[0] == 200
    status, _, answer = _send(hop, body)  # Vector did not hear the 200 and retries
    assert status == 200
    assert answer == {"events": 0, "anomalies": 0, "already_forwarded": True}
    assert len(downstream.batches) == 1
    assert _send(hop, _array(held_out_events[5:10]))[0] == 200  # another batch goes on as usual
    assert len(downstream.batches) == 2


def test_the_same_events_at_another_alpha_are_another_batch(
    hop: str, downstream: Downstream, held_out_events: list[Event]
) -> None:
    """Two sinks on two routes (a strict one and a loose one) may send the same events at two
    alphas: the second was answered already_forwarded, and its verdicts never reached the
    downstream (the consistency review)."""
    body = _array(held_out_events[:5])
    for query in ("?alpha=0.05", "?alpha=0.01"):
        status, _, answer = _send(hop, body, query=query)
        assert (status, answer["already_forwarded"]) == (200, False), query
    loose, strict = ([e["anomaly"]["threshold"] for e in batch] for batch in downstream.batches)
    assert all(t < u for t, u in zip(loose, strict, strict=True)), (loose, strict)  # at each alpha
    assert _send(hop, body, query="?alpha=0.01")[2]["already_forwarded"] is True  # its retry


def test_the_same_batch_sent_twice_at_once_is_forwarded_once(
    hop: str, downstream: Downstream, held_out_events: list[Event], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both must reach the hop while the first is being forwarded, however slow the host: the
    # downstream holds the first forward until the hop has taken both requests in hand.
    entered: list[bytes] = []
    once = Forwarded.once

    async def counted(self: Forwarded, body: bytes, alpha: float, forward: Any) -> Any:
        entered.append(body)
        return await once(self, body, alpha, forward)

    monkeypatch.setattr(Forwarded, "once", counted)
    downstream.hold()
    body = _array(held_out_events[:5])
    answers: list[Any] = []
    callers = [threading.Thread(target=lambda: answers.append(_send(hop, body))) for _ in range(2)]
    for caller in callers:
        caller.start()
    try:
        eventually(
            lambda: len(entered) == 2 and downstream.held >= 1,
            "both requests in the hop while the first one's forward is held",
        )
    finally:
        downstream.release(take=True)
    for caller in callers:
        caller.join(60)
    assert sorted(a[2]["already_forwarded"] for a in answers) == [False, True]
    assert all(a[0] == 200 for a in answers)
    assert len(downstream.batches) == 1


def test_bodies_that_can_never_succeed_are_4xx_and_nothing_is_forwarded(
    hop: str, downstream: Downstream
) -> None:
    assert _send(hop, b'[{"class_uid": 4001},')[0] == 400
    assert _send(hop, b'"a string"')[0] == 422
    assert _send(hop, b"[]", "text/csv")[0] == 415
    assert _send(hop, b"[]", token=None)[0] == 401
    assert downstream.batches == []


def test_vectors_health_check_needs_no_token(hop: str) -> None:
    status, _, _ = _send(hop, b"", method="HEAD", token=None)
    assert status == 200


def test_without_a_downstream_every_batch_is_503_saying_what_to_set(bundle_dir: Path) -> None:
    """And so is Vector's health check (a HEAD, healthy on 2xx alone), still without a token: it
    answered 200, so Vector started healthy and every batch it then sent was answered 503."""
    with serve_app(_settings(bundle_dir, None)) as base_url:
        status, headers, answer = _send(base_url, b"[{}]")
        health, health_headers, nothing = _send(base_url, b"", method="HEAD", token=None)
    assert status == 503
    assert "Retry-After" in headers
    assert answer["error"]["code"] == "no_downstream"
    assert "OCSF_ANOMALY_VECTOR_DOWNSTREAM_URL" in answer["error"]["message"]
    assert (health, nothing) == (503, None)  # a HEAD's answer has no body
    assert health_headers["Retry-After"] == headers["Retry-After"]
    assert health_headers["Content-Type"] == headers["Content-Type"]
    assert health_headers["Content-Length"] == headers["Content-Length"]  # the POST's error, unsent


def test_lines_passed_on_hold_the_batch_within_the_body_limit(
    bundle_dir: Path, downstream: Downstream, held_out_events: list[Event]
) -> None:
    """What is not an event goes on under "message" as /v1/enrich keeps it under _raw (one way):
    JSON writes a control character in six bytes, so NDJSON lines of them within the body limit
    went downstream several times its size. Kept lines take only the room the limit leaves; one
    that does not fit goes on cut, to a prefix of its text, and its error says so."""
    limit = 64 * 1024
    lines = [json.dumps(held_out_events[0]).encode(), *[b"\x01" * 3_000] * 20, b"Dec  3 sshd: text"]
    body = b"\n".join(lines) + b"\n"
    assert len(body) <= limit < 6 * len(body)
    with serve_app(_settings(bundle_dir, downstream, max_body_bytes=limit)) as base_url:
        status, _, answer = _send(base_url, body, "application/x-ndjson")
    assert status == 200, answer
    (batch,) = downstream.batches
    event, *kept, text = batch
    assert _without_anomaly(event) == held_out_events[0]
    assert text["message"] == lines[-1].decode()
    assert all(line["message"] == "\x01" * len(line["message"]) for line in kept)
    assert sum(len(json.dumps(line["message"])) - 2 for line in kept) <= limit - len(body) + 20 * 3_000
    cut = [line for line in kept if len(line["message"]) < 3_000]
    assert cut
    assert all("message holds its first" in line["anomaly"]["error"]["message"] for line in cut)


def test_an_element_too_deep_for_vector_goes_on_as_text_within_the_body_limit(
    bundle_dir: Path, downstream: Downstream
) -> None:
    """An element nesting deeper than Vector's decoder reads goes on as its JSON text, in which
    each quote doubles: a body of such elements within the limit went downstream twice its size
    (a review). Its text takes only the room left, as a kept line's does."""
    limit = 64 * 1024
    deep: Any = ['"' * 6_000]
    for _ in range(130):
        deep = [deep]
    body = _array([deep] * 4)
    assert len(body) <= limit < 2 * len(body)
    with serve_app(_settings(bundle_dir, downstream, max_body_bytes=limit)) as base_url:
        status, _, answer = _send(base_url, body)
    assert status == 200, answer
    (batch,) = downstream.batches
    assert all(part["anomaly"]["error"]["code"] == "too_deep" for part in batch)
    assert sum(len(json.dumps(part["message"])) - 2 for part in batch) <= limit
    whole = json.dumps(deep, separators=(",", ":"))
    cut = [part for part in batch if part["message"] != whole]
    assert cut
    assert all(whole.startswith(part["message"]) for part in cut)
    assert all("message holds its first" in part["anomaly"]["error"]["message"] for part in cut)


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_serving_processes_share_what_was_forwarded_through_redis(
    bundle_dir: Path, downstream: Downstream, held_out_events: list[Event]
) -> None:
    """Two apps on two ports stand for two serving processes: a retry the kernel hands to the other
    one is recognised through Redis; with Redis gone, each still answers from its own memory."""
    redis = RedisServer()
    redis.start()
    try:
        # a budget no busy host misses: what is shared is the subject here, not how fast
        settings = _settings(bundle_dir, downstream, redis_url=redis.url, redis_timeout_ms=5_000)
        with serve_app(settings) as first, serve_app(settings) as second:
            body = _array(held_out_events[:5])
            assert _send(first, body)[2]["already_forwarded"] is False
            assert _send(second, body)[2]["already_forwarded"] is True
            assert len(downstream.batches) == 1
            redis.stop()
            other = _array(held_out_events[5:10])
            assert _send(first, other)[0] == 200  # Redis down: forwarded, remembered locally
            assert _send(first, other)[2]["already_forwarded"] is True
            assert len(downstream.batches) == 2
    finally:
        redis.stop()


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_pipelines_sharing_a_redis_each_get_the_batch_they_sent(
    bundle_dir: Path, downstream: Downstream, held_out_events: list[Event]
) -> None:
    """Two sites' scorers, each with its own downstream, share one Redis: the same batch sent to
    each was answered already_forwarded by the second, which never forwarded it, and its Vector,
    answered 2xx, dropped the events. What is remembered names the downstream."""
    redis = RedisServer()
    redis.start()
    try:
        with Downstream() as other_downstream:
            one = _settings(bundle_dir, downstream, redis_url=redis.url, redis_timeout_ms=5_000)
            two = _settings(bundle_dir, other_downstream, redis_url=redis.url, redis_timeout_ms=5_000)
            with serve_app(one) as first, serve_app(two) as second:
                body = _array(held_out_events[:5])
                assert _send(first, body)[2]["already_forwarded"] is False
                assert _send(second, body)[2]["already_forwarded"] is False
                assert _send(second, body)[2]["already_forwarded"] is True  # its own retry
            assert len(downstream.batches) == len(other_downstream.batches) == 1
    finally:
        redis.stop()
