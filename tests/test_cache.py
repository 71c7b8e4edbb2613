"""The embedding cache against a real redis-server, started by the test on a free port."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from certificates import make_certificate
from redis_server import RedisServer

from scorer.service.app import create_app
from scorer.service.cache import RETRY_SECONDS
from scorer.settings import Settings

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def redis_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server; ``indirect`` "tls": TLS only, its URL ``rediss://…?ssl_ca_certs=CA``."""
    tls = make_certificate(tmp_path, "redis") if getattr(request, "param", "plain") == "tls" else None
    server = RedisServer(tls=tls)
    server.start()
    yield server
    server.stop()


def _settings(bundle_dir: Path, redis: RedisServer, **changes: Any) -> Settings:
    return Settings(model_dir=bundle_dir, threads=2, redis_url=redis.url, batch_max_size=1, **changes)


def _lookups(text: str) -> dict[tuple[str, str], float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (s.labels["tier"], s.labels["result"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "ocsf_anomaly_cache_lookups_total"
    }


async def _score(client: Any, events: list[Any]) -> list[dict[str, Any]]:
    response = await client.post("/v1/score", data=orjson.dumps(events), headers=JSON)
    assert response.status == 200
    return (await response.json())["results"]


@pytest.mark.parametrize("redis_server", ["plain", "tls"], indirect=True)
async def test_a_second_replica_reads_embeddings_from_redis(
    aiohttp_client: Any, bundle_dir: Path, redis_server: RedisServer, held_out_events: list[Any]
) -> None:
    events = held_out_events[:50]
    first = await aiohttp_client(create_app(_settings(bundle_dir, redis_server)))
    cold = await _score(first, events)
    ready = await (await first.get("/readyz")).json()
    assert ready["redis"] == "ok"
    for _ in range(50):  # the writes are pipelined in the background
        if redis_server.keys() >= 40:
            break
        await asyncio.sleep(0.02)
    assert redis_server.keys() >= 40  # distinct rows (a few demo events may encode alike)
    second = await aiohttp_client(create_app(_settings(bundle_dir, redis_server)))  # empty local tier
    warm = await _score(second, events)
    assert [r["score"] for r in warm] == pytest.approx([r["score"] for r in cold], abs=1e-6)
    lookups = _lookups(await (await second.get("/metrics")).text())
    assert lookups[("redis", "hit")] >= 40
    again = await _score(second, events)  # now from the local tier
    assert [r["score"] for r in again] == [r["score"] for r in warm]
    assert _lookups(await (await second.get("/metrics")).text())[("local", "hit")] >= 40


async def test_redis_killed_mid_run_then_back(
    aiohttp_client: Any, bundle_dir: Path, redis_server: RedisServer, held_out_events: list[Any]
) -> None:
    client = await aiohttp_client(create_app(_settings(bundle_dir, redis_server, redis_timeout_ms=100)))
    statuses = []
    for i in range(10):
        if i == 4:
            redis_server.stop()
        response = await client.post(
            "/v1/score", data=orjson.dumps(held_out_events[i * 10 : i * 10 + 10]), headers=JSON
        )
        statuses.append(response.status)
    assert statuses == [200] * 10  # no request fails because of Redis
    ready = await client.get("/readyz")
    assert ready.status == 200
    assert (await ready.json())["redis"] == "degraded"
    metrics = await (await client.get("/metrics")).text()
    assert "ocsf_anomaly_redis_degraded 1.0" in metrics

    redis_server.start()  # same port, empty
    await asyncio.sleep(RETRY_SECONDS + 0.2)
    await _score(client, held_out_events[200:220])
    assert (await (await client.get("/readyz")).json())["redis"] == "ok"
    for _ in range(50):
        if redis_server.keys() > 0:
            break
        await asyncio.sleep(0.02)
    assert redis_server.keys() > 0  # writes resumed
    fresh = await aiohttp_client(create_app(_settings(bundle_dir, redis_server)))
    await _score(fresh, held_out_events[200:220])
    assert _lookups(await (await fresh.get("/metrics")).text())[("redis", "hit")] > 0  # hits resume


async def test_without_a_redis_url_the_cache_is_local_only(
    aiohttp_client: Any, bundle_dir: Path, held_out_events: list[Any]
) -> None:
    client = await aiohttp_client(create_app(Settings(model_dir=bundle_dir, threads=2)))
    await _score(client, held_out_events[:10])
    ready = await (await client.get("/readyz")).json()
    assert ready["redis"] == "disabled"
    assert "degraded" not in str(ready)


def test_redis_url_falls_back_to_the_unprefixed_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OCSF_ANOMALY_REDIS_URL", raising=False)
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    assert Settings.load().redis_url == "redis://127.0.0.1:1/0"
    monkeypatch.setenv("OCSF_ANOMALY_REDIS_URL", "redis://127.0.0.1:2/0")
    assert Settings.load().redis_url == "redis://127.0.0.1:2/0"
    monkeypatch.delenv("OCSF_ANOMALY_REDIS_URL")
    monkeypatch.delenv("REDIS_URL")
    assert Settings.load().redis_url is None
