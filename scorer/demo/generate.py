"""One period of the company: normal events and injected anomalies merged into one timeline, with
strictly increasing times and unique uids (:func:`generate_events`, :func:`generate_later`), and the
demo files ``make run`` trains on and scores (:func:`write_demo_files`)."""

from __future__ import annotations

import bisect
import contextlib
import gc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import orjson

from scorer.demo.anomalies import ANOMALY_KINDS, _anomalies
from scorer.demo.catalogue import _DAY_MS, _HOUR_MS
from scorer.demo.events import _BUILDERS, NORMAL, Event, _Draws, _normal_times
from scorer.demo.world import _world

DEFAULT_START_TIME_MS: Final = 1_700_000_000_000
DEMO_SEED: Final = 7  # the company of `make run`'s demo files
DEMO_TRAIN_EVENTS: Final = 20_000
DEMO_ANOMALY_RATE: Final = 0.02
EVENTS_PER_DAY: Final = 280
MAX_NEW_HIRES: Final = 100

TRAIN_FILE: Final = "train.jsonl"
DEMO_FILE: Final = "demo.jsonl"
LABELS_FILE: Final = "demo.labels.csv"


def _window_ms(n: int) -> int:
    """How much time ``n`` events span at :data:`EVENTS_PER_DAY` (at least one hour)."""
    return max(_HOUR_MS, round(n * _DAY_MS / EVENTS_PER_DAY))


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building events.

    The events hold no reference cycles, but their ~10 dicts each would trigger collection after
    collection over an ever larger heap: pausing it saves about a third of the run time.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _generate(
    n: int,
    *,
    seed: int,
    stream: int,
    anomaly_rate: float,
    start_time_ms: int,
    uid_offset: int,
    new_hires: int = 0,
) -> tuple[list[Event], list[str]]:
    """:func:`generate_events` on event stream ``stream``, numbering uids from ``uid_offset``."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if not 0.0 <= anomaly_rate <= 1.0:
        raise ValueError(f"anomaly_rate must be in [0, 1], got {anomaly_rate}")
    if not 0 <= new_hires <= MAX_NEW_HIRES:
        raise ValueError(f"new_hires must be in [0, {MAX_NEW_HIRES}], got {new_hires}")
    with _gc_paused():
        return _build(n, seed, stream, anomaly_rate, start_time_ms, uid_offset, new_hires)


def _build(
    n: int, seed: int, stream: int, anomaly_rate: float, start_time_ms: int, uid_offset: int, new_hires: int
) -> tuple[list[Event], list[str]]:
    world = _world(seed, new_hires)
    n_anomalies = min(n, round(n * anomaly_rate))
    m = n - n_anomalies
    time_rng, event_rng, anomaly_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence([seed, 1, stream]).spawn(3)
    )
    start = start_time_ms
    end = start + _window_ms(n)

    times, actor_ids = _normal_times(world, time_rng, m, start, end)
    rows: list[tuple[int, int, Event, str]] = []
    d = _Draws(event_rng)
    for i, (t, actor_id) in enumerate(zip(times, actor_ids, strict=True)):
        actor = world.actors[actor_id]
        builder = _BUILDERS[min(bisect.bisect_right(actor.class_cum, d.u() * actor.class_cum[-1]), 5)]
        rows.append((t, i, builder(t, d, actor), NORMAL))

    if n_anomalies:
        order = anomaly_rng.permutation(len(ANOMALY_KINDS))
        kinds = [ANOMALY_KINDS[int(order[j % len(order)])] for j in range(n_anomalies)]
        kinds.sort(key=lambda k: k != "brute_force")  # bursts first: one campaign after another
        for j, (t, event, kind) in enumerate(_anomalies(world, kinds, anomaly_rng, start, end)):
            rows.append((t, m + j, event, kind))
        rows.sort(key=lambda row: (row[0], row[1]))

    events: list[Event] = []
    labels: list[str] = []
    previous = start - 1
    for i, (t, _, event, label) in enumerate(rows):
        t = max(t, previous + 1)  # strictly increasing times
        previous = t
        event["time"] = t
        event["metadata"]["uid"] = f"demo-{seed}-{uid_offset + i}"
        events.append(event)
        labels.append(label)
    return events, labels


def generate_events(
    n: int,
    *,
    seed: int,
    anomaly_rate: float = 0.0,
    start_time_ms: int = DEFAULT_START_TIME_MS,
    new_hires: int = 0,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Generate ``n`` OCSF 1.5.0 events of the demo company, ``round(n * anomaly_rate)`` of them anomalies.

    Returns the events, in strictly increasing ``time`` from ``start_time_ms`` (epoch ms, UTC) over about
    ``n / 280`` days, and a parallel list of labels: ``"normal"`` or the anomaly kind (one of
    :data:`ANOMALY_KINDS`). Anomalies land at random positions (by their own time). ``metadata.uid`` is
    ``demo-<seed>-<i>`` with ``i`` the position. The same arguments always give the same events.

    ``new_hires`` employees who joined later (see "Shifted traffic" in the module docstring) act beside
    the staff; their own activity is labelled ``"normal"``.

    Raises ``ValueError`` for a negative ``n`` or ``seed``, an ``anomaly_rate`` outside ``[0, 1]`` or
    ``new_hires`` outside ``[0, MAX_NEW_HIRES]``.
    """
    return _generate(
        n,
        seed=seed,
        stream=0,
        anomaly_rate=anomaly_rate,
        start_time_ms=start_time_ms,
        uid_offset=0,
        new_hires=new_hires,
    )


def generate_later(
    earlier: Sequence[Event], n: int, *, seed: int, anomaly_rate: float = 0.0, new_hires: int = 0
) -> tuple[list[dict[str, Any]], list[str]]:
    """``n`` new events of the company of ``seed`` in the period right after ``earlier``.

    ``earlier`` is ``generate_events(len(earlier), seed=seed)``, the period a model trained on. The later
    events come from another random stream of the same company, start after the last earlier event, and
    number their uids on from ``len(earlier)``; ``new_hires`` employees who joined in between act beside
    the staff (see "Shifted traffic"). This is how :func:`write_demo_files` makes the demo file.
    """
    start = DEFAULT_START_TIME_MS + _window_ms(len(earlier))
    if earlier:
        start = max(start, int(earlier[-1]["time"]) + 1)
    return _generate(
        n,
        seed=seed,
        stream=1,
        anomaly_rate=anomaly_rate,
        start_time_ms=start,
        uid_offset=len(earlier),
        new_hires=new_hires,
    )


@dataclass(frozen=True)
class DemoFiles:
    """The three files :func:`write_demo_files` writes."""

    train: Path
    demo: Path
    labels: Path


def _write_jsonl(path: Path, events: Sequence[Event]) -> None:
    path.write_bytes(b"".join(orjson.dumps(event) + b"\n" for event in events))


def write_demo_files(
    out_dir: Path,
    *,
    seed: int = DEMO_SEED,
    n_train: int = DEMO_TRAIN_EVENTS,
    n_demo: int = 2_000,
    anomaly_rate: float = DEMO_ANOMALY_RATE,
) -> DemoFiles:
    """Write the demo training file, the demo file to score, and the demo file's labels into ``out_dir``.

    * ``train.jsonl``: ``n_train`` normal events, exactly ``generate_events(n_train, seed=seed)``.
    * ``demo.jsonl``: ``n_demo`` new events of the same company (another random stream) in the period right
      after the training one, ``round(n_demo * anomaly_rate)`` of them injected anomalies.
    * ``demo.labels.csv``: header ``line,label,attack``, then one row per demo line: the 1-based line
      number, 1 for an anomaly or 0, and the anomaly kind or ``normal``.

    ``out_dir`` is created if missing; existing files are overwritten. The same arguments always write
    byte-identical files.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    train_events, _ = generate_events(n_train, seed=seed, anomaly_rate=0.0)
    demo_events, labels = generate_later(train_events, n_demo, seed=seed, anomaly_rate=anomaly_rate)
    files = DemoFiles(train=out_dir / TRAIN_FILE, demo=out_dir / DEMO_FILE, labels=out_dir / LABELS_FILE)
    _write_jsonl(files.train, train_events)
    _write_jsonl(files.demo, demo_events)
    rows = [f"{line},{0 if label == NORMAL else 1},{label}\n" for line, label in enumerate(labels, start=1)]
    files.labels.write_text("line,label,attack\n" + "".join(rows), encoding="utf-8", newline="\n")
    return files
