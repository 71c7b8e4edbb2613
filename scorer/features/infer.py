"""Infer a feature spec from a corpus by profiling every leaf of its events, ``unmapped.*`` included.

Rules, in order (every path left out is listed in the spec's ``excluded`` with its reason):

* lists, and paths present in under 1% of events, are left out;
* ``metadata.*`` describes the record, not the activity, and is left out; so is the verdict that
  ``score``, the service and the stream consumer add (an object holding ``score``, ``p_value`` and
  ``is_anomaly``, under whatever name): a model trained on scored events would learn the last
  model's verdicts, and events not yet scored hold none;
* identifiers are left out: ``uid``/``*_uid``/``guid``/``uuid``/hash/fingerprint/serial names, and
  strings that are nearly unique per event — except OCSF enum codes (``class_uid``,
  ``category_uid``, ``type_uid``, ``*_id``), which are categorical;
* ``time`` becomes hour/day-of-week features when the corpus spans at least two days (shorter,
  and hour/day are noise); other timestamps are left out: by name (``*_time``, ``*_dt``,
  ``*timestamp``, ``*_ts``, ``ts``), or by value, numbers that vary and all read as epoch times of
  2000–2099 in seconds, milliseconds, microseconds or nanoseconds (a clock only grows: as a
  number, every later event would lie beyond the training range);
* enum captions (``activity_name`` beside ``activity_id``, ``class_name`` beside ``class_uid``)
  repeat their code and are left out; fields constant in training are kept: a change in one is
  exactly the kind of single-field deviation an attack can be;
* numbers (a string that reads as a finite number, ``"443"``, counts as one, as the encoder reads
  it): ports → port bucket, plus a vocabulary of the port unless it is mostly ephemeral; codes
  (``*_id``, ``*_num``, ``*code``) → categorical; other numbers → numeric with signed ``log1p``;
* strings: addresses → /24 (/48) prefix; free text (long, or with spaces and many distinct values)
  is left out; up to ``max_categories`` distinct values → vocabulary; more → stable hashing.

Distinct values are counted up to ``DISTINCT_CAP``; past it, a path's share of distinct values is
the share among the values profiled until the cap was reached, so a value unique per event reads as
unique however many events there are.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scorer.features.encoder import as_number, epoch_ms, ip_prefix, iso_moment
from scorer.features.spec import FeatureDef, FeatureSpec
from scorer.io import DEEPEST_FIELD

Event = dict[str, Any]

PROFILE_SAMPLE = 20_000
DISTINCT_CAP = 5_000
MAX_CATEGORIES = 1000
ENUM_UIDS = frozenset({"class_uid", "category_uid", "type_uid"})
VERDICT_KEYS = frozenset({"score", "p_value", "is_anomaly"})  # of the object scoring adds to an event
ID_WORDS = ("guid", "uuid", "hash", "fingerprint", "serial_number", "session_id", "trace_id", "span_id")
TWO_DAYS_MS = 2 * 86_400_000
CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
# epoch seconds of 2000-01-01 and 2100-01-01; times 1e3, 1e6, 1e9 for ms, µs and ns
EPOCH_SECONDS = (946_684_800.0, 4_102_444_800.0)
EPOCH_UNITS = (1.0, 1e3, 1e6, 1e9)
EPOCH_DISTINCT = 16  # distinct epoch-like numbers that are a clock, however often each repeats


@dataclass
class _Profile:
    present: int = 0
    numbers: int = 0
    strings: int = 0
    bools: int = 0
    lists: int = 0  # an object or another value is counted only as present
    distinct: set[str] = field(default_factory=set)
    overflow: bool = False
    counted: int = 0  # values profiled into `distinct` before it overflowed
    text_length: int = 0
    spaced: int = 0
    low: float = float("inf")
    high: float = float("-inf")
    ips: int = 0

    def add(self, value: Any) -> None:
        self.present += 1
        if isinstance(value, bool):
            self.bools += 1
            self._distinct(str(value))
        elif isinstance(value, int | float):
            self.numbers += 1
            number = float(value)
            if np.isfinite(number):
                self.low, self.high = min(self.low, number), max(self.high, number)
            self._distinct(repr(value))
        elif isinstance(value, str) and math.isfinite(
            number := as_number(value)
        ):  # "443": as the encoder reads it
            self.numbers += 1
            self.low, self.high = min(self.low, number), max(self.high, number)
            self._distinct(value)
        elif isinstance(value, str):
            self.strings += 1
            self.text_length += len(value)
            self.spaced += " " in value.strip()
            if len(value) <= 45 and ip_prefix(value, 24, 48) is not None:
                self.ips += 1
            self._distinct(value)
        elif isinstance(value, list):
            self.lists += 1

    def _distinct(self, key: str) -> None:
        if self.overflow:
            return
        if len(self.distinct) < DISTINCT_CAP or key in self.distinct:
            self.distinct.add(key)
            self.counted += 1
        else:
            self.overflow = True

    def distinct_ratio(self, values: int) -> float:
        """Distinct values per value of ``values``; once the cap overflowed, per value profiled
        before it (the cap over all of them would fall as the events grow: a value unique per event
        would read as repeated)."""
        return len(self.distinct) / max(self.counted if self.overflow else values, 1)


FLATTENED = "a key holding '.', which no feature path can name (a flattened event? nest its fields)"
TOO_DEEP = f"nested deeper than {DEEPEST_FIELD} levels"


def iter_leaves(
    value: Any, prefix: str = "", depth: int = 0, unnamed: dict[str, str] | None = None
) -> Iterator[tuple[str, Any]]:
    """Every leaf of a nested event as ``(dotted.path, value)``; a list is one leaf; what lies
    deeper than DEEPEST_FIELD levels, or under a key no dotted path can name (``"a.b"``, ``""``),
    is left out, and put in ``unnamed`` with why (the key quoted: ``unmapped."a.b"``)."""
    if isinstance(value, dict):
        if depth == DEEPEST_FIELD:
            if unnamed is not None and value:
                unnamed.setdefault(f"{prefix}.*", TOO_DEEP)
            return
        for key, child in value.items():
            if not isinstance(key, str) or not key or "." in key:
                if unnamed is not None and isinstance(key, str):
                    named = f'{prefix}."{key}"' if prefix else f'"{key}"'
                    unnamed.setdefault(named, FLATTENED if key else "an empty key")
                continue
            yield from iter_leaves(child, f"{prefix}.{key}" if prefix else key, depth + 1, unnamed)
    elif value is not None:
        yield prefix, value


def _sample(events: Sequence[Event]) -> Sequence[Event]:
    if len(events) <= PROFILE_SAMPLE:
        return events
    step = len(events) / PROFILE_SAMPLE
    return [events[int(i * step)] for i in range(PROFILE_SAMPLE)]


def infer_spec(events: Sequence[Event], *, min_presence: float = 0.01) -> FeatureSpec:
    """Profile the leaves of ``events`` and build a spec by the rules in this module's docstring."""
    sample = _sample(events)
    profiles: dict[str, _Profile] = {}
    verdicts: set[str] = set()
    unnamed: dict[str, str] = {}
    for event in sample:
        if isinstance(event, dict):
            verdicts.update(k for k, v in event.items() if isinstance(v, dict) and v.keys() >= VERDICT_KEYS)
            for path, value in iter_leaves(event, unnamed=unnamed):
                profiles.setdefault(path, _Profile()).add(value)
    n = max(len(sample), 1)
    features: list[FeatureDef] = []
    excluded: list[tuple[str, str]] = sorted(unnamed.items())
    siblings = set(profiles)
    for path in sorted(profiles):
        if path.split(".", 1)[0] in verdicts:
            excluded.append((path, "a verdict of ocsf-anomaly (a scored event's)"))
            continue
        made, reason = _decide(path, profiles[path], n, min_presence, sample, siblings)
        features.extend(made)
        if reason:
            excluded.append((path, reason))
    if not features:
        if not excluded:
            raise ValueError(f"no usable feature found: none of the {len(sample):,} events holds a field")
        shown = "; ".join(f"{path}: {reason}" for path, reason in excluded[:5])
        more = f"; and {len(excluded) - 5:,} more" if len(excluded) > 5 else ""
        raise ValueError(
            f"no usable feature found in these events, of {len(excluded):,} paths: {shown}{more}"
        )
    return FeatureSpec(features=tuple(features), excluded=tuple(excluded))


def _epoch_like(p: _Profile) -> bool:
    """Numbers that vary and all lie within 2000–2099 as epoch times in one unit: at least
    EPOCH_DISTINCT values, however often each repeats (a busy sensor's seconds, four events a
    second: a quarter of the values distinct, kept as a number, flagged the next day's normal
    traffic), or fewer, mostly distinct (a small sample of a clock). A handful of values in that
    range, each repeated, are codes (two phone numbers, a tenant's ten digits), not a clock."""
    distinct = len(p.distinct)
    if distinct < 2 or (distinct < EPOCH_DISTINCT and p.distinct_ratio(p.numbers) < 0.5):
        return False
    low, high = EPOCH_SECONDS
    return any(low * unit <= p.low and p.high < high * unit for unit in EPOCH_UNITS)


def _dates(p: _Profile) -> bool:
    """Text that varies and reads as ISO 8601 dates or times (``2023-11-14``, ``…T10:00:00Z``), nine
    values in ten of those profiled: a category each, which every later day's events would hold
    unseen."""
    texts = [value for value in p.distinct if not math.isfinite(as_number(value))]
    return len(texts) >= 2 and sum(iso_moment(text) is not None for text in texts) >= 0.9 * len(texts)


def _caption_of(path: str, siblings: set[str]) -> str | None:
    """The enum code this path is the caption of (OCSF: ``foo`` / ``foo_name`` beside ``foo_id`` / ``foo_uid``)."""
    prefix, _, leaf = path.rpartition(".")
    stem = leaf.removesuffix("_name")
    codes = [f"{stem}_id"] + ([f"{stem}_uid"] if f"{stem}_uid" in ENUM_UIDS else [])
    for code in codes:
        full = f"{prefix}.{code}" if prefix else code
        if full in siblings and full != path:
            return full
    return None


def _snake(leaf: str) -> str:
    """A vendor's CamelCase name as OCSF would write it, for the rules of names: ``EventID`` →
    ``event_id``, ``DestinationPort`` → ``destination_port``, ``StatusCode`` → ``status_code``."""
    return CAMEL_BOUNDARY.sub("_", leaf).lower()


def _decide(
    path: str, p: _Profile, n: int, min_presence: float, sample: Sequence[Event], siblings: set[str]
) -> tuple[list[FeatureDef], str | None]:
    leaf = _snake(path.rsplit(".", 1)[-1])
    if p.lists > p.present / 2:
        return [], "list"
    if p.present < min_presence * n:
        return [], f"rare (in {100 * p.present / n:.2f}% of events)"
    if leaf not in ENUM_UIDS and (leaf == "uid" or leaf.endswith("_uid") or any(w in leaf for w in ID_WORDS)):
        return [], "identifier"
    if path.startswith("metadata."):
        return [], "record metadata"
    caption_of = _caption_of(path, siblings)
    if caption_of:
        return [], f"caption of {caption_of}"
    if path == "time":
        times = epoch_ms([e.get("time") for e in sample if isinstance(e, dict)])
        times = times[~np.isnan(times)]
        if times.size and float(times.max() - times.min()) >= TWO_DAYS_MS:
            return [FeatureDef(path=path, kind="time_cyclic")], None
        return [], "timestamp spanning under two days (hour/day-of-week would be noise)"
    if leaf.endswith(("_time", "_dt", "timestamp", "_ts")) or leaf in ("time", "logged_time", "ts"):
        return [], "timestamp"
    if p.bools >= p.present / 2:
        return [FeatureDef(path=path, kind="categorical")], None
    if p.numbers >= p.present / 2:
        if leaf == "port" or leaf.endswith("_port"):
            bucket = [FeatureDef(path=path, kind="port_bucket")]
            if len(p.distinct) > 0.2 * p.numbers:  # ephemeral source ports: the bucket is all there is
                return bucket, None
            return [*bucket, FeatureDef(path=path, kind="categorical", min_count=5, max_categories=200)], None
        if leaf in ENUM_UIDS or leaf.endswith(("_id", "_num", "code")):
            return [FeatureDef(path=path, kind="categorical")], None
        if _epoch_like(p):
            return [], "timestamp (its numbers read as epoch times)"
        # Signed log1p for every number: counts, bytes and rates alike are skewed in security data,
        # and it measured better than leaving narrow-range fields linear (BENCHMARKS.md).
        return [FeatureDef(path=path, kind="numeric", transform="log1p")], None
    if p.strings:
        distinct_ratio = p.distinct_ratio(p.strings)
        if p.ips >= 0.9 * p.strings:
            return [FeatureDef(path=path, kind="ip_prefix")], None
        if _dates(p):
            return [], "timestamp (its text reads as dates)"
        # long or spaced and mostly distinct; a long value of few kinds (a user agent, a command
        # line run again and again) is a category, as the default spec takes them
        if (p.text_length / p.strings > 64 or p.spaced > 0.5 * p.strings) and distinct_ratio > 0.3:
            return [], "free text"
        if distinct_ratio > 0.9 and p.strings >= 100:
            return [], "identifier (nearly unique per event)"
        if len(p.distinct) <= MAX_CATEGORIES and not p.overflow:
            return [FeatureDef(path=path, kind="categorical")], None
        return [FeatureDef(path=path, kind="hashed")], None
    return [], "not a scalar"
