"""Alerts (scorer/alerts.py) against a real Alertmanager, started by the test on a free port, and a
small aiohttp webhook receiver: what becomes an alert and what it says, de-duplication per entity,
a receiver that is down or refuses, and a full queue; then the service sending them, from
``/v1/score`` and the Vector hop alike, and answering as it would without them while the receiver
is down. (The stream consumer's alerts: tests/test_stream_redis.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import orjson
import pytest
from aiohttp import web
from alertmanager import SKIP_REASON, Alertmanager, available
from live_scorer import closed_port, serve_app
from prometheus_client import CollectorRegistry
from vector_downstream import Downstream

from scorer.alerts import ALERTNAME, TIMEOUTS, UNEXPECTED_ERRORS, AlertConfig, Alerter, AlertMetrics, severity
from scorer.detector import ScoreResult
from scorer.errors import origin
from scorer.explain import Reason
from scorer.service.errors import Handler
from scorer.settings import Settings, SettingsError

needs_alertmanager = pytest.mark.skipif(not available(), reason=SKIP_REASON)
MODEL = {"name": "ocsf-anomaly-demo", "version": "3", "variant": "champion"}
REASONS = [Reason("dst_endpoint.port", 4444, 443, 7.3), Reason("actor.user.name", "mallory", "alice", 3.0)]
Scored = tuple[dict[str, Any], dict[str, Any]]
MakeAlerter = Callable[..., Awaitable[Alerter]]


def scored(entity: str, p_value: float, class_uid: int = 3002, uid: str = "evt-1") -> Scored:
    """An event and its anomaly object, as the detector writes it."""
    event = {"class_uid": class_uid, "metadata": {"uid": uid}, "src_endpoint": {"ip": entity}}
    result = ScoreResult(
        score=np.array([4.2]),
        p_value=np.array([p_value]),
        is_anomaly=np.array([p_value <= 0.01]),
        forced=np.array([False]),
        threshold=np.array([1.5]),
        group=[str(class_uid)],
        classes=[str(class_uid)],
        components={},
        reasons=[REASONS],
        neighbors=[["n-1"]],
        unknown_rate=0.0,
        mean_knn_distance=1.0,
        alpha=0.01,
    )
    return event, result.anomaly(0, MODEL)


async def until(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Wait for ``check()`` (a guard against hanging, not a timing assertion)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
def alertmanager() -> Iterator[Alertmanager]:
    """A real Alertmanager, not yet started."""
    server = Alertmanager()
    yield server
    server.close()


@pytest.fixture
def running(alertmanager: Alertmanager) -> Alertmanager:
    alertmanager.start()
    return alertmanager


@pytest.fixture
async def make_alerter() -> AsyncIterator[MakeAlerter]:
    """Started alerters with quick retries, closed after the test. A request to a receiver that is
    up gets a minute: a busy host must not turn a slow answer into a failure (and a retry) that
    the counts would show; a receiver that is down refuses at once."""
    made: list[Alerter] = []

    async def make(url: str, metrics: AlertMetrics | None = None, **changes: Any) -> Alerter:
        config = {"retry_initial_seconds": 0.02, "retry_max_seconds": 0.1, "timeout_seconds": 60.0, **changes}
        alerter = Alerter(AlertConfig(url=url, **config), metrics)
        await alerter.start()
        made.append(alerter)
        return alerter

    yield make
    for alerter in made:
        await alerter.close()


def by_entity(alertmanager: Alertmanager) -> dict[str, dict[str, Any]]:
    return {alert["labels"]["entity"]: alert for alert in alertmanager.alerts()}


@needs_alertmanager
async def test_an_anomaly_at_the_alert_p_value_reaches_alertmanager(
    running: Alertmanager, make_alerter: MakeAlerter, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)

    class Stopped(datetime):  # the alerter's clock, stopped: startsAt and endsAt exact, however slow the host
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> datetime:
            return now

    monkeypatch.setattr("scorer.alerts.datetime", Stopped)
    alerter = await make_alerter(running.url, p_value=0.001)
    alerter.offer(*scored("10.0.0.8", 0.002))  # an anomaly at α = 0.01, not at the alert level
    alerter.offer(*scored("10.0.0.1", 0.001, uid="evt-info"))
    alerter.offer(*scored("10.0.0.2", 0.0003, class_uid=4001))
    alerter.offer(*scored("10.0.0.3", 0.00005))
    # counted as sent once the answer is read: Alertmanager may hold them a moment before that
    await until(lambda: alerter.counters.sent >= 3 and len(running.alerts()) >= 3, "three alerts")

    alerts = by_entity(running)
    assert set(alerts) == {"10.0.0.1", "10.0.0.2", "10.0.0.3"}  # sent in order: 10.0.0.8 would be there
    assert alerts["10.0.0.1"]["labels"] == {
        "alertname": ALERTNAME,
        "severity": "info",
        "class_uid": "3002",
        "entity": "10.0.0.1",
    }
    assert alerts["10.0.0.2"]["labels"]["severity"] == "warning"
    assert alerts["10.0.0.2"]["labels"]["class_uid"] == "4001"
    assert alerts["10.0.0.3"]["labels"]["severity"] == "critical"
    annotations = alerts["10.0.0.1"]["annotations"]
    assert annotations["score"] == "4.2"
    assert annotations["p_value"] == "0.001"
    assert annotations["event_uid"] == "evt-info"
    assert annotations["model_version"] == "3"
    assert annotations["model_name"] == "ocsf-anomaly-demo"
    assert annotations["reasons"].splitlines() == [
        "dst_endpoint.port=4444 (typical 443, deviation 7.3)",
        "actor.user.name=mallory (typical alice, deviation 3.0)",
    ]
    assert "10.0.0.1" in annotations["summary"]
    starts = datetime.fromisoformat(alerts["10.0.0.1"]["startsAt"])
    ends = datetime.fromisoformat(alerts["10.0.0.1"]["endsAt"])
    assert starts == now  # when it was offered
    assert (ends - starts).total_seconds() == 1800  # resolve_seconds after delivery
    assert alerts["10.0.0.1"]["status"]["state"] in {"active", "unprocessed"}
    counters = alerter.counters
    assert (counters.offered, counters.sent, counters.send_failures) == (3, 3, 0)


@needs_alertmanager
async def test_an_alertmanager_url_with_a_query_takes_the_alerts_path_before_it(
    running: Alertmanager, make_alerter: MakeAlerter
) -> None:
    """/api/v2/alerts was appended to the URL as written, after its query (a proxy in front may
    need one): the alerts went to the bare URL, with a mangled query, and never arrived."""
    alerter = await make_alerter(running.url + "/?via=proxy")
    alerter.offer(*scored("10.0.0.9", 0.0005))
    await until(lambda: alerter.counters.sent + alerter.counters.dropped_rejected == 1, "the answer")
    assert alerter.counters.sent == 1
    assert [a["labels"]["entity"] for a in running.alerts()] == ["10.0.0.9"]


@needs_alertmanager
async def test_an_entity_alerts_once_per_window(
    running: Alertmanager, make_alerter: MakeAlerter, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The window runs on a clock the test moves: a busy host pausing between two offers cannot end
    # it early, and passing it takes no sleep.
    now = [1_000.0]
    monkeypatch.setattr("scorer.alerts.time", SimpleNamespace(monotonic=lambda: now[0]))
    alerter = await make_alerter(running.url, dedupe_seconds=1.0)
    alerter.offer(*scored("10.0.0.1", 0.0005, class_uid=3002))
    # Another class: without the de-duplication Alertmanager would hold it as a second alert.
    alerter.offer(*scored("10.0.0.1", 0.0005, class_uid=4001))
    alerter.offer(*scored("10.0.0.2", 0.0005, class_uid=4001))
    await until(lambda: alerter.counters.sent == 2, "two alerts sent")
    assert sorted((a["labels"]["entity"], a["labels"]["class_uid"]) for a in running.alerts()) == [
        ("10.0.0.1", "3002"),
        ("10.0.0.2", "4001"),
    ]
    assert alerter.counters.deduplicated == 1

    now[0] += 1.2  # past the window: the entity alerts again
    alerter.offer(*scored("10.0.0.1", 0.0005, class_uid=4001))
    await until(
        lambda: alerter.counters.sent == 3 and len(running.alerts()) == 3, "the entity's second alert"
    )
    assert (alerter.counters.sent, alerter.counters.deduplicated) == (3, 1)


async def test_the_entities_remembered_are_bounded() -> None:
    alerter = Alerter(AlertConfig(url="http://127.0.0.1:9", dedupe_entities=2))  # never started
    for entity in ("a", "b", "c", "a", "c"):  # a is forgotten when c comes; then b when a returns
        alerter.offer(*scored(entity, 0.0005))
    assert (alerter.counters.deduplicated, alerter.queued) == (1, 4)
    alerter.offer(*scored("b", 0.0005))
    assert (alerter.counters.deduplicated, alerter.queued) == (1, 5)


def test_an_entity_alerting_again_after_its_window_is_remembered_as_the_newest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An entity alerting again once its window had passed kept its old place, the oldest, among
    the entities remembered: the next entity pushed past the bound forgot it at once, and its next
    anomaly, well within its new window, alerted again (the mutation review)."""
    now = [1_000.0]  # the window runs on a clock the test moves
    monkeypatch.setattr("scorer.alerts.time", SimpleNamespace(monotonic=lambda: now[0]))
    alerter = Alerter(AlertConfig(url="http://127.0.0.1:9", dedupe_seconds=60.0, dedupe_entities=2))
    alerter.offer(*scored("a", 0.0005))
    alerter.offer(*scored("b", 0.0005))
    now[0] += 61.0  # past both windows
    alerter.offer(*scored("a", 0.0005))  # alerts again: the newest remembered (b's window has passed)
    alerter.offer(*scored("c", 0.0005))  # two remembered: a and c
    assert (alerter.queued, alerter.counters.deduplicated) == (4, 0)
    alerter.offer(*scored("a", 0.0005))  # within a's new window
    assert (alerter.queued, alerter.counters.deduplicated) == (4, 1)


def test_an_event_without_an_entity_alerts_once_however_often_it_is_scored() -> None:
    """Without the entity field an alert was never deduplicated: a Vector batch answered 503 is
    scored again on each retry (and ML Commons retries too), and each try paged again for the same
    event. Without an entity, the event is what is deduplicated: by its metadata.uid, else by itself."""
    alerter = Alerter(AlertConfig(url="http://127.0.0.1:9"))  # never started
    with_uid, other_uid = scored("x", 0.0005, uid="evt-7"), scored("x", 0.0005, uid="evt-8")
    without_uid = scored("x", 0.0005)
    for event, _ in (with_uid, other_uid, without_uid):
        del event["src_endpoint"]
    del without_uid[0]["metadata"]
    for _ in range(3):  # the batch, and two retries of it
        for event, anomaly in (with_uid, other_uid, without_uid):
            alerter.offer(event, anomaly)
    assert (alerter.queued, alerter.counters.deduplicated) == (3, 6)
    changed = {**without_uid[0], "class_uid": 3003}  # another event: alerts too
    alerter.offer(changed, without_uid[1])
    assert alerter.queued == 4


def test_an_alert_dropped_for_a_full_queue_is_not_its_entitys_alert() -> None:
    alerter = Alerter(AlertConfig(url="http://127.0.0.1:9", queue_size=1))  # never started
    for entity in ("a", "b", "b"):
        alerter.offer(*scored(entity, 0.0005))
    assert (alerter.counters.dropped_queue_full, alerter.counters.deduplicated) == (2, 0)


def test_an_anomaly_no_alert_can_be_made_of_is_counted_and_silences_nobody() -> None:
    """An alert that could not be built was counted as offered and nothing else, and its entity was
    remembered as having alerted: the next, sound anomaly of that host was deduplicated away."""
    alerter = Alerter(AlertConfig(url="http://127.0.0.1:9"))  # never started
    event, anomaly = scored("10.0.0.9", 0.0005)
    broken = {**anomaly, "reasons": [{"field": "x", "value": 1, "typical": 0, "deviation": "far"}]}
    alerter.offer(event, broken)
    counters = alerter.counters
    assert (counters.offered, counters.dropped_malformed, alerter.queued) == (1, 1, 0)
    alerter.offer(event, anomaly)
    assert (counters.offered, counters.deduplicated, alerter.queued) == (2, 0, 1)


@needs_alertmanager
async def test_alertmanager_down_offers_return_at_once_then_alerts_arrive(
    alertmanager: Alertmanager, make_alerter: MakeAlerter
) -> None:
    alerter = await make_alerter(alertmanager.url, queue_size=50, batch_size=20)  # nothing listens yet
    events = [scored(f"10.1.{i // 256}.{i % 256}", 0.0005) for i in range(10_000)]
    returned = [alerter.offer(event, anomaly) for event, anomaly in events]  # never awaits
    assert returned == [None] * 10_000
    counters = alerter.counters
    assert (counters.offered, alerter.queued, counters.dropped_queue_full) == (10_000, 50, 9_950)

    await until(lambda: alerter.counters.send_failures >= 3, "retries")
    assert alerter.queued == 50  # kept while the receiver is down
    alertmanager.start()
    await until(lambda: alerter.counters.sent == 50, "the queued alerts sent")
    # the queue keeps the oldest and drops the newest
    assert set(by_entity(alertmanager)) == {f"10.1.0.{i}" for i in range(50)}
    assert (alerter.queued, counters.dropped_queue_full, counters.dropped_rejected) == (0, 9_950, 0)


@needs_alertmanager
async def test_alerts_are_kept_while_alertmanager_is_stopped(
    running: Alertmanager, make_alerter: MakeAlerter
) -> None:
    alerter = await make_alerter(running.url)
    alerter.offer(*scored("10.0.0.1", 0.0005))
    await until(lambda: alerter.counters.sent == 1, "the first alert")
    running.stop()
    alerter.offer(*scored("10.0.0.2", 0.0005))
    await until(lambda: alerter.counters.send_failures >= 2, "retries")
    assert (alerter.counters.sent, alerter.queued) == (1, 1)
    running.start()  # a new process: it holds only what is posted from now on
    # counted as sent once the answer is read: Alertmanager may hold it a moment before that
    await until(lambda: alerter.counters.sent == 2 and "10.0.0.2" in by_entity(running), "the kept alert")
    assert (alerter.counters.sent, alerter.queued) == (2, 0)


@needs_alertmanager
async def test_close_sends_what_is_queued(running: Alertmanager) -> None:
    # a grace and a request timeout no busy host runs out of: what close sends is the subject here
    alerter = Alerter(
        AlertConfig(url=running.url, batch_size=200, close_grace_seconds=300, timeout_seconds=60)
    )
    await alerter.start()
    for i in range(500):
        alerter.offer(*scored(f"10.2.{i // 256}.{i % 256}", 0.0005))
    await alerter.close()
    assert (alerter.counters.sent, alerter.counters.dropped_at_close) == (500, 0)
    assert len(running.alerts()) == 500


@pytest.mark.parametrize(
    ("kind", "path"),
    [("alertmanager", ""), ("webhook", "/hooks/T0/B0/s3cr3t-path?token=s3cr3t-query")],
    ids=["alertmanager-password", "webhook-secret-in-path-and-query"],
)
async def test_close_with_the_receiver_down_drops_counts_and_says_so(
    unused_tcp_port: int, caplog: pytest.LogCaptureFixture, kind: str, path: str
) -> None:
    """The outage and the drop at close are each one warning naming the receiver: its host and port
    only. A webhook's secret is often its path (Slack, Teams, Discord) or a ?token=, which the
    warnings printed whole (only a user and password were masked)."""
    caplog.set_level(logging.WARNING, logger="ocsf_anomaly")
    config = AlertConfig(
        url=f"http://am:s3cr3t@127.0.0.1:{unused_tcp_port}{path}",
        kind=kind,
        retry_initial_seconds=600,
        retry_max_seconds=600,
        close_grace_seconds=300,
    )
    alerter = Alerter(config)
    await alerter.start()
    for entity in ("a", "b", "c"):
        alerter.offer(*scored(entity, 0.0005))
    await until(lambda: alerter.counters.send_failures >= 1, "a failed send")
    # close cuts the pause before the retry short, tries once more and gives up: well within the grace
    await asyncio.wait_for(alerter.close(), 60)
    alerter.offer(*scored("d", 0.0005))
    assert (alerter.counters.sent, alerter.counters.dropped_at_close, alerter.queued) == (0, 4, 0)
    said = [record.getMessage() for record in caplog.records]
    receiver = f"http://127.0.0.1:{unused_tcp_port}/…"
    assert f"the alert receiver at {receiver} is unavailable (ClientConnectorError)" in said[0], said
    assert f"3 alerts not taken by {receiver} within 300 s of stopping: dropped" in said, said
    assert "s3cr3t" not in caplog.text


class Receiver:
    """A webhook receiver that answers the scripted statuses in turn (then 200) and keeps what it got."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.bodies: list[Any] = []
        self.headers: list[dict[str, str]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.json())
        self.headers.append(dict(request.headers))
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200, text="answer")


@pytest.fixture
def hook(aiohttp_server: Any) -> Callable[[Handler], Awaitable[str]]:
    """A receiver answering POST /hooks/alerts with ``handler``: its URL."""

    async def serve(handler: Handler) -> str:
        app = web.Application()
        app.router.add_post("/hooks/alerts", handler)
        server = await aiohttp_server(app)
        return str(server.make_url("/hooks/alerts"))

    return serve


@pytest.fixture
def webhook(aiohttp_server: Any) -> Callable[..., Awaitable[tuple[Receiver, str]]]:
    async def serve(*statuses: int, max_body: int = 1024**2) -> tuple[Receiver, str]:
        receiver = Receiver(*statuses)
        app = web.Application(client_max_size=max_body)  # a larger body is answered 413
        app.router.add_post("/hooks/alerts", receiver.handle)
        server = await aiohttp_server(app)
        return receiver, str(server.make_url("/hooks/alerts"))

    return serve


async def test_the_webhook_receives_the_alerts(webhook: Any, make_alerter: MakeAlerter) -> None:
    receiver, url = await webhook()
    alerter = await make_alerter(url, kind="webhook", bearer_token="s3cret", generator_url="http://ui/x")
    alerter.offer(*scored("10.0.0.1", 0.0003))
    alerter.offer(*scored("10.0.0.2", 0.02))  # not an alert
    await until(lambda: alerter.counters.sent == 1, "the alert sent")
    [body] = receiver.bodies
    assert body["version"] == "1"
    [alert] = body["alerts"]
    assert alert["labels"] == {
        "alertname": ALERTNAME,
        "severity": "warning",
        "class_uid": "3002",
        "entity": "10.0.0.1",
    }
    assert alert["annotations"]["p_value"] == "0.0003"
    assert alert["generatorURL"] == "http://ui/x"
    assert {"startsAt", "endsAt"} <= set(alert)
    assert receiver.headers[0]["Authorization"] == "Bearer s3cret"
    assert "s3cret" not in repr(alerter.config)


async def test_a_refused_batch_is_dropped_and_counted(webhook: Any, make_alerter: MakeAlerter) -> None:
    receiver, url = await webhook(400)
    alerter = await make_alerter(url, kind="webhook")
    alerter.offer(*scored("10.0.0.1", 0.0005))
    await until(lambda: alerter.counters.dropped_rejected == 1, "the refusal")
    alerter.offer(*scored("10.0.0.2", 0.0005))  # the next batch goes through
    await until(lambda: alerter.counters.sent == 1, "the next alert")
    assert [b["alerts"][0]["labels"]["entity"] for b in receiver.bodies] == ["10.0.0.1", "10.0.0.2"]
    assert alerter.counters.send_failures == 0  # never retried


async def test_a_receiver_that_refuses_every_batch_is_said_once_until_it_takes_them(
    webhook: Any, make_alerter: MakeAlerter, caplog: pytest.LogCaptureFixture
) -> None:
    """A wrong alert URL (404) refuses every batch: 113 WARNINGs in 5 s under load, naming neither
    the receiver nor what to check (the resilience review). Said once, until it takes them."""
    _, url = await webhook(404, 404, 404)
    alerter = await make_alerter(url, kind="webhook")
    for n in range(3):
        alerter.offer(*scored(f"10.0.0.{n}", 0.0005))
        await until(lambda n=n: alerter.counters.dropped_rejected == n + 1, "the refusal")
    alerter.offer(*scored("10.0.0.9", 0.0005))
    await until(lambda: alerter.counters.sent == 1, "the alert taken")
    said = [r.getMessage() for r in caplog.records if r.name == "ocsf_anomaly.alerts"]
    refusals = [message for message in said if "refuses alerts (HTTP 404)" in message]
    assert len(refusals) == 1, said
    assert origin(url) in refusals[0]
    assert "check the alert URL (alerts_url) and its token (alerts_token)" in refusals[0]
    assert said[-1] == "the alert receiver takes alerts again"


async def test_a_full_queue_is_said_once_and_again_when_it_has_room(
    webhook: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Alerts dropped for a full queue were only counted: the one WARNING said they were kept
    queued and retried (the resilience review)."""
    _, url = await webhook()
    alerter = Alerter(AlertConfig(url=url, kind="webhook", queue_size=2))  # started once it is full
    for entity in "abcde":
        alerter.offer(*scored(entity, 0.0005))
    assert alerter.counters.dropped_queue_full == 3
    full = [r.getMessage() for r in caplog.records if "alert queue is full" in r.getMessage()]
    assert full == [
        f"the alert queue is full (2 alerts waiting for {origin(url)}): new alerts are dropped, counted "
        "as dropped_queue_full, until it has room (alerts_queue_size)"
    ]
    await alerter.start()
    try:
        await until(lambda: alerter.counters.sent == 2, "the queued alerts sent")
    finally:
        await alerter.close()
    assert "the alert queue is down to 0 alerts: 3 were dropped while it was full" in caplog.text


async def test_alerts_dropped_for_a_full_queue_are_said_at_close_if_it_never_drained(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A queue full until the service stopped: the count was only in the metrics (the second review)."""
    alerter = Alerter(AlertConfig(url="http://127.0.0.1:9", queue_size=1, close_grace_seconds=0.1))
    for entity in "abcde":
        alerter.offer(*scored(entity, 0.0005))
    await alerter.close()
    assert "4 alerts were dropped while the alert queue was full" in caplog.text


async def test_a_queue_a_steady_overload_keeps_full_is_said_once(
    hook: Callable[[Handler], Awaitable[str]], caplog: pytest.LogCaptureFixture
) -> None:
    """Under a steady overload each batch sent made room for a moment: "full" and "room again"
    came for every batch, 110 lines a second (the diff review). Said again once it is down to half."""
    gate: asyncio.Queue[None] = asyncio.Queue()

    async def slow(request: web.Request) -> web.Response:
        await request.read()
        await gate.get()
        return web.Response()

    url = await hook(slow)
    config = AlertConfig(url=url, kind="webhook", queue_size=4, batch_size=1)
    alerter = Alerter(config)
    entities = (f"10.0.0.{n}" for n in range(100))

    def offer(n: int) -> None:
        for _ in range(n):
            alerter.offer(*scored(next(entities), 0.0005))

    await alerter.start()
    try:
        offer(5)  # 4 queued (the first on its way), 1 dropped
        for sent in range(1, 4):  # a batch taken makes room for one; two more come
            gate.put_nowait(None)
            await until(lambda sent=sent: alerter.counters.sent == sent, "a batch taken")
            offer(2)
        assert alerter.counters.dropped_queue_full == 4
        said = [r.getMessage() for r in caplog.records if r.name == "ocsf_anomaly.alerts"]
        assert [m.split(" (")[0] for m in said] == ["the alert queue is full"]
        for _ in range(4):
            gate.put_nowait(None)
        await until(lambda: alerter.counters.sent == 7, "the queue drained")
    finally:
        await alerter.close()
    said = [r.getMessage() for r in caplog.records if r.name == "ocsf_anomaly.alerts"]
    assert said[1:] == ["the alert queue is down to 2 alerts: 4 were dropped while it was full"]


@needs_alertmanager
async def test_a_redirect_is_not_followed_nor_taken_for_delivery(
    running: Alertmanager, make_alerter: MakeAlerter, aiohttp_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A receiver that moved (or an http:// URL that a proxy sends to https://) answers 302: a client
    that follows it turns the POST into a GET, which Alertmanager answers 200 with the alerts it
    holds. The batch is dropped and logged, with where the receiver points, not counted as sent."""

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound(running.url + request.path_qs)

    app = web.Application()
    app.router.add_route("*", "/{path:.*}", moved)
    server = await aiohttp_server(app)
    alerter = await make_alerter(str(server.make_url("/")))
    alerter.offer(*scored("10.0.0.1", 0.0005))
    await until(lambda: alerter.counters.sent + alerter.counters.dropped_rejected == 1, "the answer")
    assert (alerter.counters.sent, alerter.counters.dropped_rejected) == (0, 1)
    assert running.alerts() == []
    assert "redirects (HTTP 302)" in caplog.text
    # where it points, but not its path or query: a webhook's secret (its 301 from http to https)
    assert f"redirects (HTTP 302) to {running.url}/…: alerts are dropped" in caplog.text
    assert "/api/v2/alerts" not in caplog.text


async def test_an_answer_without_end_is_read_only_so_far(
    hook: Callable[[Handler], Awaitable[str]], make_alerter: MakeAlerter
) -> None:
    """A receiver that takes the batch, answers 200 and then streams its body without end was read
    whole: the alerter held it in memory until its timeout, then counted a failure and sent the
    alerts again. Its first 64 KiB are read, and the batch counts as sent."""
    never = asyncio.Event()

    async def endless(request: web.Request) -> web.StreamResponse:
        await request.read()
        answer = web.StreamResponse(status=200)
        await answer.prepare(request)
        await answer.write(b"x" * (64 * 1024 + 1))
        await never.wait()  # the body never ends
        return answer

    url = await hook(endless)
    alerter = await make_alerter(url, kind="webhook", timeout_seconds=600.0)
    alerter.offer(*scored("10.0.0.1", 0.0005))
    await until(lambda: alerter.counters.sent == 1, "the batch counted as sent")
    assert alerter.counters.send_failures == 0


async def test_a_2xx_whose_body_cannot_be_read_counts_as_sent_not_sent_again(
    hook: Callable[[Handler], Awaitable[str]], make_alerter: MakeAlerter
) -> None:
    """A receiver (or a proxy before it) that takes the batch and answers 200 with a body that cannot
    be decoded (here a "gzip" body that is not gzip) made the read fail: the batch was counted a
    failure and sent again, every time, for ever. The answer's status is what says it was taken."""
    taken: list[bytes] = []

    async def garbled(request: web.Request) -> web.Response:
        taken.append(await request.read())
        return web.Response(status=200, body=b"not gzip at all", headers={"Content-Encoding": "gzip"})

    url = await hook(garbled)
    alerter = await make_alerter(url, kind="webhook")
    alerter.offer(*scored("10.0.0.1", 0.0005))
    await until(lambda: alerter.counters.sent == 1, "the batch counted as sent")
    alerter.offer(*scored("10.0.0.2", 0.0005))
    await until(lambda: alerter.counters.sent == 2, "the next batch")
    assert [json.loads(body)["alerts"][0]["labels"]["entity"] for body in taken] == ["10.0.0.1", "10.0.0.2"]
    assert alerter.counters.send_failures == 0


async def test_a_batch_past_the_receivers_body_limit_is_sent_in_smaller_ones(
    webhook: Any, make_alerter: MakeAlerter
) -> None:
    """A receiver with a small body limit answers a full batch 413: the whole batch was dropped,
    though every alert in it fits. The batch is halved until the receiver takes it."""
    receiver, url = await webhook(max_body=16 * 1024)
    alerter = await make_alerter(url, kind="webhook")
    for i in range(100):
        alerter.offer(*scored(f"10.3.0.{i}", 0.0005))
    await until(lambda: alerter.counters.sent + alerter.counters.dropped_rejected == 100, "the answers")
    assert (alerter.counters.sent, alerter.counters.dropped_rejected) == (100, 0)
    entities = [a["labels"]["entity"] for body in receiver.bodies for a in body["alerts"]]
    assert entities == [f"10.3.0.{i}" for i in range(100)]  # in order, each once


async def test_batches_halved_for_a_413_grow_again_once_taken(
    webhook: Any, make_alerter: MakeAlerter
) -> None:
    """A 413 halved the batches for good: one refused for a single large alert (or before the
    receiver's limit was raised) left every later alert sent alone. After REGROW_AFTER batches
    taken in a row, twice as many are tried again."""
    from scorer.alerts import REGROW_AFTER

    receiver, url = await webhook(413)  # the first batch refused, every later one taken
    alerter = await make_alerter(url, kind="webhook", batch_size=4)
    count = 2 * REGROW_AFTER + 8  # the refused four among them
    for i in range(count):
        alerter.offer(*scored(f"10.4.{i // 250}.{i % 250}", 0.0005))
    await until(lambda: alerter.counters.sent == count, "every alert sent")
    sizes = [len(body["alerts"]) for body in receiver.bodies]
    assert sizes == [4] + [2] * REGROW_AFTER + [4, 4]  # refused, halved, grown again


async def test_5xx_and_429_are_retried(webhook: Any, make_alerter: MakeAlerter) -> None:
    receiver, url = await webhook(503, 429, 500)
    alerter = await make_alerter(url, kind="webhook")
    alerter.offer(*scored("10.0.0.1", 0.0005))
    await until(lambda: alerter.counters.sent == 1, "the alert sent")
    assert alerter.counters.send_failures == 3
    assert len(receiver.bodies) == 4
    assert all(b["alerts"][0]["labels"]["entity"] == "10.0.0.1" for b in receiver.bodies)
    assert len({b["alerts"][0]["startsAt"] for b in receiver.bodies}) == 1  # the same alert each time


async def test_the_pause_between_retries_doubles_up_to_its_maximum(
    webhook: Any, make_alerter: MakeAlerter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pause after each failed request doubles, but never beyond retry_max_seconds: uncapped,
    an outage of an hour left the sender waiting hours before its next try (the mutation review).
    The pauses are recorded as the sender asks for them (its ``asyncio.timeout``), not timed."""
    pauses: list[float] = []

    class Recording:  # the alerts module's asyncio, whose timeout notes the pause it is given
        def __getattr__(self, name: str) -> Any:
            return getattr(asyncio, name)

        def timeout(self, delay: float | None) -> Any:
            assert delay is not None
            pauses.append(delay)
            return asyncio.timeout(delay)

    monkeypatch.setattr("scorer.alerts.asyncio", Recording())
    receiver, url = await webhook(*[503] * 6)
    alerter = await make_alerter(url, kind="webhook", retry_initial_seconds=0.02, retry_max_seconds=0.1)
    alerter.offer(*scored("10.0.0.1", 0.0005))
    await until(lambda: alerter.counters.sent == 1, "the alert sent")
    assert len(receiver.bodies) == 7
    assert pauses == pytest.approx([0.02, 0.04, 0.08, 0.1, 0.1, 0.1])


@pytest.mark.parametrize("failure", ["disconnected", "503"])
async def test_a_failure_between_timeouts_starts_their_count_again(
    hook: Callable[[Handler], Awaitable[str]], make_alerter: MakeAlerter, failure: str
) -> None:
    """Only timeouts in a row drop a batch: a receiver that timed out, then broke the connection
    (or answered 503), then timed out again, and so on, had its batch dropped as timed out after
    three timeouts that were not in a row, though it took it at the next try (the mutation review)."""
    script = ["timeout", failure, "timeout", failure, "timeout"]  # then 200
    answered = asyncio.Event()

    async def receiver(request: web.Request) -> web.Response:
        await request.read()
        step = script.pop(0) if script else "ok"
        if step == "timeout":
            await answered.wait()  # answers after the sender gave up waiting
        elif step == "disconnected":
            assert request.transport is not None
            request.transport.close()  # a connection error: no answer at all
        elif step == "503":
            return web.Response(status=503)
        return web.Response()

    url = await hook(receiver)
    alerter = await make_alerter(url, kind="webhook", timeout_seconds=1.0)
    alerter.offer(*scored("10.0.0.1", 0.0005))
    alerter.offer(*scored("10.0.0.2", 0.0005))
    await until(lambda: alerter.counters.sent + alerter.counters.dropped_timed_out == 2, "the batch's end")
    answered.set()
    assert script == []
    assert (alerter.counters.sent, alerter.counters.dropped_timed_out) == (2, 0)
    assert alerter.counters.send_failures >= 5  # the retries (a busy host may add one)


async def test_a_batch_the_receiver_does_not_answer_in_time_is_sent_at_most_three_times(
    hook: Callable[[Handler], Awaitable[str]], make_alerter: MakeAlerter
) -> None:
    """A webhook slower than the timeout took the alerts and answered late: the batch was sent again
    at every retry, for as long as the process ran (four times in 25 s in the review), counted as
    never sent, and every later alert queued behind it. Dropped after TIMEOUTS, and counted so."""
    entities: list[str] = []
    answered = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        entities.append((await request.json())["alerts"][0]["labels"]["entity"])
        if entities.count("10.0.0.1") <= TIMEOUTS and entities[-1] == "10.0.0.1":
            await answered.wait()  # takes the alerts, answers after the sender gave up waiting
        return web.Response()

    url = await hook(slow)
    alerter = await make_alerter(url, kind="webhook", timeout_seconds=1.0)
    alerter.offer(*scored("10.0.0.1", 0.0005))
    await until(lambda: alerter.counters.dropped_timed_out == 1, "the batch dropped")
    answered.set()
    alerter.offer(*scored("10.0.0.2", 0.0005))
    await until(lambda: alerter.counters.sent == 1, "the next alert")
    assert entities.count("10.0.0.1") == TIMEOUTS
    assert alerter.counters.send_failures >= TIMEOUTS - 1  # the retries (a busy host may add one)


def unserialisable(monkeypatch: pytest.MonkeyPatch, entity: str, times: float = float("inf")) -> list[bytes]:
    """Fault injection: the alerts module's ``orjson.dumps`` raises a TypeError for a batch holding
    ``entity``, its first ``times`` times; the bodies it refused are returned. No real receiver was
    found to make sending raise anything but the ClientError and TimeoutError it handles (aiohttp
    3.14 turns a broken status line, header, chunk, length, encoding, TLS record or reset into a
    ClientError; a Location is not parsed, the redirect not being followed), nor can an event: every
    value of an alert is text the alerter makes (an integer beyond 64 bits, NaN or an infinity
    becomes its digits or word, the keys are its own), and every event comes through
    ``scorer.io.loads``, which refuses a lone surrogate such as ``"\\ud800"``, the only text orjson
    cannot write (tests/test_service.py). An unexpected error is a bug, made here where it would
    surface, between the queue and the request."""
    refused: list[bytes] = []

    def dumps(value: Any) -> bytes:
        body = orjson.dumps(value)
        if entity.encode() in body and len(refused) < times:
            refused.append(body)
            raise TypeError(f"cannot serialise {entity}")  # a message quoting an alert
        return body

    monkeypatch.setattr("scorer.alerts.orjson", SimpleNamespace(dumps=dumps))
    return refused


async def test_a_batch_failing_unexpectedly_is_retried_then_dropped_and_later_alerts_go(
    webhook: Any, make_alerter: MakeAlerter, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An error sending a batch other than the receiver's (a bug) ended the sender: one ERROR, and
    no alert was sent again while offers queued up to the bound and were dropped. Now it is retried
    as for a receiver that is down; after UNEXPECTED_ERRORS in a row it is dropped, logged and
    counted, and the alerts behind it go. Fault injection (see ``unserialisable``)."""
    caplog.set_level(logging.DEBUG, logger="ocsf_anomaly")
    refused = unserialisable(monkeypatch, "10.6.6.6")
    receiver, url = await webhook()
    registry = CollectorRegistry()
    alerter = await make_alerter(url, AlertMetrics(registry), kind="webhook", batch_size=1)
    alerter.offer(*scored("10.6.6.6", 0.0005))
    alerter.offer(*scored("10.0.0.1", 0.0005))
    await until(lambda: alerter.counters.dropped_send_error == 1, "the failing batch dropped")
    alerter.offer(*scored("10.0.0.2", 0.0005))
    await until(lambda: alerter.counters.sent == 2, "the alerts behind it")

    assert len(refused) == UNEXPECTED_ERRORS == 3
    assert [b["alerts"][0]["labels"]["entity"] for b in receiver.bodies] == ["10.0.0.1", "10.0.0.2"]
    counters = alerter.counters
    assert (counters.offered, counters.sent, counters.dropped_send_error, alerter.queued) == (3, 2, 1, 0)
    assert counters.send_failures == UNEXPECTED_ERRORS - 1  # the attempts retried; the last one dropped
    sample = registry.get_sample_value
    assert sample("ocsf_anomaly_alerts_total", {"outcome": "dropped_send_error"}) == 1
    assert sample("ocsf_anomaly_alerts_total", {"outcome": "sent"}) == 2
    assert sample("ocsf_anomaly_alert_send_failures_total") == UNEXPECTED_ERRORS - 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors  # once for the batch, with where it was raised
    assert "failed with an unexpected TypeError (a bug)" in errors[0]
    assert "in dumps" in errors[0]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"failed unexpectedly {UNEXPECTED_ERRORS} times in a row: dropped" in w for w in warnings)
    assert not any("10.6.6.6" in m for m in errors + warnings)  # the alert only at DEBUG
    assert "10.6.6.6" in caplog.text


async def test_a_batch_failing_unexpectedly_once_is_sent_on_the_retry(
    webhook: Any, make_alerter: MakeAlerter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection (see ``unserialisable``): the first attempt raises, the retry is sent."""
    refused = unserialisable(monkeypatch, "10.0.0.1", times=1)
    receiver, url = await webhook()
    alerter = await make_alerter(url, kind="webhook")
    alerter.offer(*scored("10.0.0.1", 0.0005))
    await until(lambda: alerter.counters.sent == 1, "the alert sent on the retry")
    assert len(refused) == 1
    assert [b["alerts"][0]["labels"]["entity"] for b in receiver.bodies] == ["10.0.0.1"]
    assert (alerter.counters.send_failures, alerter.counters.dropped_send_error) == (1, 0)


async def test_close_while_a_batch_fails_unexpectedly_drops_and_counts_it_at_close(
    webhook: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection (see ``unserialisable``): as with a receiver that is down, close cuts the pause
    short, tries once more and drops what is queued, counted as dropped at close."""
    unserialisable(monkeypatch, "10.0.0.1")
    receiver, url = await webhook()
    config = AlertConfig(
        url=url, kind="webhook", retry_initial_seconds=600, retry_max_seconds=600, close_grace_seconds=300
    )
    alerter = Alerter(config)
    await alerter.start()
    alerter.offer(*scored("10.0.0.1", 0.0005))
    await until(lambda: alerter.counters.send_failures == 1, "a failed send")
    await asyncio.wait_for(alerter.close(), 60)
    counters = alerter.counters
    assert (counters.sent, counters.dropped_send_error, counters.dropped_at_close, alerter.queued) == (
        0,
        0,
        1,
        0,
    )
    assert receiver.bodies == []


async def test_a_huge_value_of_the_event_is_cut_short_in_the_alert(
    webhook: Any, make_alerter: MakeAlerter
) -> None:
    """An entity, class or uid of a megabyte (a hostile or broken producer): each alert held it
    whole, twice with the summary, so the queue's bound (10,000 alerts) and the entities remembered
    (100,000) let memory grow by gigabytes, and a batch holding it was past a receiver's body limit.
    They are cut short as an explanation's values are."""
    receiver, url = await webhook()
    alerter = await make_alerter(url, kind="webhook")
    event, anomaly = scored("x" * 1_000_000, 0.0005, uid="u" * 1_000_000)
    event["class_uid"] = "9" * 1_000_000
    alerter.offer(event, anomaly)
    await until(lambda: alerter.counters.sent + alerter.counters.dropped_rejected == 1, "the answer")
    assert alerter.counters.sent == 1  # whole, it was past the receiver's body limit (1 MiB): 413
    [alert] = receiver.bodies[0]["alerts"]
    assert len(json.dumps(alert)) < 5_000
    assert alert["labels"]["entity"] == "x" * 200 + "…"
    assert alert["labels"]["class_uid"] == "9" * 200 + "…"
    assert alert["annotations"]["event_uid"] == "u" * 200 + "…"
    assert "x" * 200 + "…" in alert["annotations"]["summary"]


def test_an_offer_never_raises() -> None:
    alerter = Alerter(AlertConfig(url="http://127.0.0.1:9"))
    event = {"src_endpoint": {"ip": "10.0.0.1"}}
    for anomaly in ({}, {"p_value": None}, {"p_value": float("nan")}, {"p_value": False}, {"p_value": 0.5}):
        alerter.offer(event, anomaly)
    alerter.offer(event, "not an anomaly object")  # type: ignore[arg-type]
    assert (alerter.counters.offered, alerter.queued) == (0, 0)
    alerter.offer(["not", "an", "event"], {"p_value": 0.0001, "reasons": "?", "model": 3})  # type: ignore[arg-type]
    assert (alerter.counters.offered, alerter.queued) == (1, 1)  # still an alert: no entity, no reasons


def test_severity_from_the_p_value() -> None:
    assert [severity(p, 0.001) for p in (0.001, 0.0004, 0.00034, 0.0003, 0.0002, 0.0001, 0.00001)] == [
        "info",
        "info",
        "info",
        "warning",
        "warning",
        "critical",
        "critical",
    ]


@pytest.mark.parametrize(
    "changes",
    [
        {"kind": "slack"},
        {"url": "ftp://host"},
        {"p_value": 0},
        {"queue_size": 0},
        {"retry_max_seconds": 0.1},
        {"resolve_seconds": 1e12},  # an endsAt past the year 9999
        {"resolve_seconds": float("inf")},
        {"resolve_seconds": float("nan")},
        {"timeout_seconds": float("nan")},
        {"dedupe_seconds": float("nan")},
        {"close_grace_seconds": float("nan")},
    ],
)
def test_unusable_configs_are_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        AlertConfig(**{"url": "http://127.0.0.1:9093", **changes})


def test_a_url_with_a_password_and_a_token_is_refused_at_start(tmp_path: Path) -> None:
    """Both make an Authorization header, and the client refuses to send two: the sender died at the
    first alert (ValueError) and none was sent after it. Refused at start, the password unsaid."""
    url = "http://alerts:s3cr3t@127.0.0.1:9093"
    with pytest.raises(ValueError, match="a bearer token is set too") as refused:
        Settings(model_dir=tmp_path, alerts_url=url, alerts_token="t0ken")
    assert "s3cr3t" not in str(refused.value)
    with pytest.raises(ValueError, match="bearer token") as refused:
        AlertConfig(url=url, bearer_token="t0ken")
    assert "s3cr3t" not in str(refused.value)


async def test_a_url_with_a_password_logs_in_with_it(webhook: Any, make_alerter: MakeAlerter) -> None:
    receiver, url = await webhook()
    alerter = await make_alerter(url.replace("http://", "http://alerts:s3cr3t@", 1), kind="webhook")
    alerter.offer(*scored("10.0.0.1", 0.0005))
    await until(lambda: alerter.counters.sent == 1, "the alert sent")
    assert receiver.headers[0]["Authorization"] == "Basic YWxlcnRzOnMzY3IzdA=="  # alerts:s3cr3t


@pytest.mark.parametrize("name", ["alerts_url", "vector_downstream_url"])
@pytest.mark.parametrize(
    "url",
    ["http://am:s3cr3t@127.0.0.1:99999", "http://am:s3cr3t@127.0.0.1:9093:9093", "http://am:s3cr3t@[::1"],
)
def test_a_url_no_request_can_go_to_is_refused_at_start(name: str, url: str, tmp_path: Path) -> None:
    """A port out of range, two ports, a broken address: accepted, then every request failed before
    it left (the alerts queued and dropped behind one warning, every Vector batch 503 forever)."""
    with pytest.raises(SettingsError, match=f"{name}: .*not a URL a request can go to") as refused:
        Settings.load(None, model_dir=tmp_path, **{name: url})
    assert "s3cr3t" not in str(refused.value)


@needs_alertmanager
@pytest.mark.parametrize("link", ["http://grafana:3000/d/ocsf/load-at-100%", "http://[::1"])
async def test_a_link_alertmanager_refuses_is_refused_at_start(
    link: str, running: Alertmanager, make_alerter: MakeAlerter, tmp_path: Path
) -> None:
    """Alertmanager answers 422 to a batch whose generatorURL does not parse (a bare % in the path,
    a broken address): every alert was dropped. Such a link is refused at start."""
    alerter = await make_alerter(running.url, generator_url=link)
    alerter.offer(*scored("10.0.0.1", 0.0005))
    await until(lambda: alerter.counters.sent + alerter.counters.dropped_rejected == 1, "the answer")
    assert alerter.counters.dropped_rejected == 1  # what such a link does, given to the alerter itself
    with pytest.raises(SettingsError, match=r"alerts_generator_url: .*not a URL"):
        Settings.load(None, model_dir=tmp_path, alerts_generator_url=link)
    query = "http://grafana:3000/d/ocsf?var-load=100%"  # a query is not unescaped: Alertmanager takes it
    assert Settings.load(None, model_dir=tmp_path, alerts_generator_url=query).alerts_generator_url == query


@pytest.mark.parametrize("seconds", ["inf", "1e12", "4e7"])
def test_a_resolve_time_no_alert_can_carry_is_refused_at_start(seconds: str, tmp_path: Path) -> None:
    """endsAt is a date: a resolve time past the year 9999 killed the sender at its first alert, and
    no alert was sent after it. At most a year is taken."""
    with pytest.raises(ValueError, match="alerts_resolve_seconds"):
        Settings(model_dir=tmp_path, alerts_url="http://127.0.0.1:9093", alerts_resolve_seconds=seconds)
    year = 365 * 86_400
    assert Settings(model_dir=tmp_path, alerts_resolve_seconds=year).alerts_resolve_seconds == year


# ---------------------------------------------------------------- the service sends them
LEVEL = 0.05  # the test model is small: its calibration's smallest p-values are a few thousandths


def _post(base_url: str, path: str, events: list[Any]) -> Any:
    request = urllib.request.Request(
        base_url + path, data=json.dumps(events).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read()) if response.status != 204 else None


def _metric(base_url: str, sample: str) -> float:
    """The value of one sample line of /metrics (0 when absent)."""
    with urllib.request.urlopen(base_url + "/metrics", timeout=30) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(sample + " "):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def _label_sets(
    events: list[dict[str, Any]], anomalies: list[dict[str, Any]]
) -> set[tuple[str | None, str, str]]:
    """(entity, class_uid, severity) of every alert these verdicts make at LEVEL (no entity: None)."""
    return {
        (e.get("src_endpoint", {}).get("ip"), str(e["class_uid"]), severity(a["p_value"], LEVEL))
        for e, a in zip(events, anomalies, strict=True)
        if a["p_value"] <= LEVEL
    }


def _held(alertmanager: Alertmanager) -> set[tuple[str | None, str, str]]:
    return {
        (a["labels"].get("entity"), a["labels"]["class_uid"], a["labels"]["severity"])
        for a in alertmanager.alerts()
    }


def _wait(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _alerting_settings(bundle_dir: Path, url: str, **extra: Any) -> Settings:
    return Settings(
        model_dir=bundle_dir,
        threads=1,
        alpha=LEVEL,
        alerts_url=url,
        alerts_p_value=LEVEL,
        alerts_dedupe_seconds=0,
        **extra,
    )


@needs_alertmanager
@pytest.mark.parametrize("route", ["/v1/score", "/v1/integrations/vector"])
def test_the_service_sends_its_rarest_verdicts_to_alertmanager(
    route: str, running: Alertmanager, bundle_dir: Path, held_out_events: list[dict[str, Any]]
) -> None:
    events = held_out_events[:600]
    with contextlib.ExitStack() as stack:
        downstream = stack.enter_context(Downstream())
        settings = _alerting_settings(bundle_dir, running.url, vector_downstream_url=downstream.url)
        base_url = stack.enter_context(serve_app(settings))
        answer = _post(base_url, route, events)
        anomalies = (
            answer["results"] if route == "/v1/score" else [e.pop("anomaly") for e in downstream.events]
        )
        expected = _label_sets(events, anomalies)
        qualifying = sum(a["p_value"] <= LEVEL for a in anomalies)
        assert len(expected) >= 3, "the test needs events at or below the alert p-value"
        _wait(lambda: _metric(base_url, 'ocsf_anomaly_alerts_total{outcome="sent"}') == qualifying, "sent")
        assert _metric(base_url, 'ocsf_anomaly_alerts_total{outcome="offered"}') == qualifying
        assert _metric(base_url, "ocsf_anomaly_alerts_queued") == 0
    # Alertmanager merges alerts with the same labels: it holds one per label set
    assert _held(running) == expected
    uids = {e["metadata"]["uid"] for e in events}
    assert {a["annotations"]["event_uid"] for a in running.alerts()} <= uids


def test_alerts_stricter_than_alpha_are_required(bundle_dir: Path) -> None:
    with pytest.raises(ValueError, match="alerts_p_value"):
        Settings(model_dir=bundle_dir, alpha=0.01, alerts_url="http://127.0.0.1:9093", alerts_p_value=0.05)


def test_a_down_receiver_changes_no_answer(bundle_dir: Path, held_out_events: list[dict[str, Any]]) -> None:
    """Alertmanager down (nothing listens): every request answered as without alerts, the alerts kept
    up to the queue's bound, the rest dropped and counted, the failures counted."""
    events = held_out_events[600:1200]
    with serve_app(Settings(model_dir=bundle_dir, threads=1, alpha=LEVEL)) as base_url:
        plain = [_post(base_url, "/v1/score", events)["results"] for _ in range(3)]
    with closed_port() as port:
        settings = _alerting_settings(bundle_dir, f"http://127.0.0.1:{port}", alerts_queue_size=5)
        with serve_app(settings) as base_url:
            alerting = [_post(base_url, "/v1/score", events)["results"] for _ in range(3)]
            qualifying = sum(a["p_value"] <= LEVEL for answers in alerting for a in answers)
            _wait(lambda: _metric(base_url, "ocsf_anomaly_alert_send_failures_total") >= 2, "retries")
            assert _metric(base_url, "ocsf_anomaly_alerts_queued") == 5
            full = _metric(base_url, 'ocsf_anomaly_alerts_total{outcome="dropped_queue_full"}')
            assert full == qualifying - 5 > 0
    assert alerting == plain
