"""The daily report: a day of scored events turned into one self-contained HTML page (``report``).

Reads what ``score``, ``score-spark`` or the service wrote (JSON Lines, ``.gz``, Parquet, or a
directory of their part files) in one pass, keeping per day only counts; the scores, the top events,
the counts of flagged entities and a small sample per calibration group are kept for the one day
rendered (the day asked for, or else the latest so far: dropped when an event of a later day comes,
so memory does not grow with the days the data spans); then renders that day with Plotly figures
and a Jinja2 template. plotly.js is inlined: the page opens with no network. The plotting libraries
are the optional extra ``[report]``.

Drift signs compare the day with the model that scored it, when its bundle is given: each class's
mean score against its calibration group's held-out normal events, and the share of categorical
values the encoder has never seen against the share in the bundle's baseline (the training period's
normal events; the calibration events themselves are not kept in a bundle).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import heapq
import html
import itertools
import math
import random
import re
from array import array
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np
import orjson

from scorer.errors import UserError
from scorer.explain import reason_parts
from scorer.features.encoder import UNKNOWN_INDEX, compile_extractor, iso_moment
from scorer.io import (
    from_parquet,
    is_parquet,
    iter_raw_lines,
    parquet_rows,
    parse_line,
    write_text_atomically,
)

# OCSF fields that name who or what an event is about, as analysts pivot on them
ENTITY_FIELDS = (
    "actor.user.name",
    "user.name",
    "src_endpoint.ip",
    "dst_endpoint.ip",
    "device.hostname",
    "src_endpoint.hostname",
    "dst_endpoint.hostname",
    "actor.process.name",
)
TOP_EVENTS = 25
SAMPLE_PER_GROUP = 500  # events per calibration group of the rendered day, for the unknown-category rate
HISTOGRAM_BINS = 60
# a bundle's version is a digest of its content (scorer.bundle); a registry's version is a number
CONTENT_VERSION = re.compile(r"[0-9a-f]{12}")
# the names of scored events in a directory, in any case: JSON Lines as `score` writes it (gzip or
# not, as `score` reads it) and Parquet as `score-spark` writes it
SCORED_NAMES = (".jsonl", ".ndjson", ".json", ".jsonl.gz", ".ndjson.gz", ".json.gz", ".parquet")
NAMES_TEXT = ".jsonl, .ndjson or .json (each also .gz) or .parquet"


class ReportError(UserError, ValueError):
    """The report cannot be made, with what to do."""


@dataclass
class Day:
    """What one day of scored events adds up to."""

    events: int = 0
    anomalies: int = 0
    errors: int = 0
    by_hour_class: Counter[tuple[int, str]] = field(default_factory=Counter)
    events_by_class: Counter[str] = field(default_factory=Counter)
    anomalies_by_class: Counter[str] = field(default_factory=Counter)
    thresholds: Counter[tuple[str, float]] = field(default_factory=Counter)
    score_sum_by_group: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    events_by_group: Counter[str] = field(default_factory=Counter)
    classes_of_group: dict[str, set[str]] = field(default_factory=dict)
    models: Counter[tuple[str, str]] = field(default_factory=Counter)  # (name, version)
    bundles: Counter[str] = field(default_factory=Counter)  # content versions of the bundles that scored
    # kept for the rendered day only (empty for the others): they grow with its events
    entities: Counter[tuple[str, str]] = field(default_factory=Counter)  # of its flagged events
    entity_fields_seen: set[str] = field(default_factory=set)
    scores: array[float] = field(default_factory=lambda: array("d"))
    top: list[tuple[float, int, dict[str, Any]]] = field(default_factory=list)  # heap of (score, seq, event)
    samples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # by calibration group

    def drop_events(self) -> None:
        """Forget what grows with the day's events (it is not the day rendered); keep the counts."""
        self.entities = Counter()
        self.entity_fields_seen = set()
        self.scores = array("d")
        self.top = []
        self.samples = {}


class Days(dict[str, Day]):
    """Each UTC day of the data (YYYY-MM-DD) with what it adds up to, and ``undated``: the lines that
    fall on no day, having no ``time`` (a line `score` could not read, which it writes as
    ``{"_raw": …, "anomaly": {"error": …}}``, or one that is not an event)."""

    undated: int = 0


def _files(source: Path, say: Callable[[str], object]) -> list[Path]:
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise ReportError(
            f"no scored events at {source} (a file from `score`, or a directory from `score-spark`)"
        )
    found: list[Path] = []
    skipped: list[Path] = []
    for path in sorted(source.rglob("*")):
        # Spark's own files and folders (_SUCCESS, _temporary/ with its attempts' copies of the
        # parts, .spark-staging-*/, .crc files) at any depth below the directory given
        if not path.is_file() or any(part.startswith(("_", ".")) for part in path.relative_to(source).parts):
            continue
        (found if path.name.lower().endswith(SCORED_NAMES) else skipped).append(path)
    if not found:
        raise ReportError(
            f"{source} holds no file named {NAMES_TEXT}: give the directory `score-spark` wrote, "
            "or a file `score` wrote"
        )
    if skipped:
        shown = ", ".join(str(p.relative_to(source)) for p in skipped[:3])
        more = f" and {len(skipped) - 3:,} more" if len(skipped) > 3 else ""
        say(f"warning: skipped {shown}{more} in {source}: only files named {NAMES_TEXT} are read")
    return found


Finish = Callable[[dict[str, Any]], dict[str, Any]]


def _same(event: dict[str, Any]) -> dict[str, Any]:
    return event


def _from_parquet(row: dict[str, Any]) -> dict[str, Any]:
    """A Parquet row as the event it stands for: nulls of absent fields dropped, and the reasons'
    values back from the JSON text score-spark keeps them as to numbers and strings."""
    event: dict[str, Any] = from_parquet(row)
    anomaly = event.get("anomaly")
    if isinstance(anomaly, dict):
        for reason in anomaly.get("reasons") or []:
            for key in ("value", "typical"):
                if isinstance(reason.get(key), str):
                    # text that is not JSON: a value kept as text (events the service enriched, then
                    # landed in Parquet by a pipeline), shown as it is
                    with contextlib.suppress(orjson.JSONDecodeError):
                        reason[key] = orjson.loads(reason[key])
    return event


def records(
    source: Path, say: Callable[[str], object] = lambda message: None, field: str = "anomaly"
) -> Iterator[tuple[dict[str, Any], Finish]]:
    """Every scored record under ``source`` as read (a line that was not an event comes as
    ``{"_raw": …}``), with what turns it into the event it stands for: the one pass reads each record's
    counted fields as they are, and finishes only the few events it keeps (a Parquet row's finishing
    costs more than the counting). The files of a directory that are skipped by their names are said.
    The verdict written under ``field`` (OCSF_ANOMALY_ANOMALY_FIELD) is read as ``anomaly``, and an
    event's own ``anomaly`` field then left out: no verdict."""
    for record, finish in _records(source, say):
        if field != "anomaly":
            record = {k: v for k, v in record.items() if k not in (field, "anomaly")} | (
                {"anomaly": record[field]} if field in record else {}
            )
        yield record, finish


def _records(source: Path, say: Callable[[str], object]) -> Iterator[tuple[dict[str, Any], Finish]]:
    for path in _files(source, say):
        if is_parquet(path):
            for row in parquet_rows(path):
                yield row, _from_parquet
            continue
        for _, raw in iter_raw_lines(path):  # a .gz cut short or not gzip: a UserError naming the file
            if raw.strip():
                event, _ = parse_line(raw)
                yield (event if event is not None else {"_raw": raw.decode("utf-8", "replace")}), _same


def _moment(value: Any) -> dt.datetime | None:
    """OCSF ``time``: epoch milliseconds (as a number or as text), ISO 8601 text as the encoder reads
    it (what `score` writes for a Parquet timestamp), or a timestamp column of a Parquet lake; in UTC."""
    if isinstance(value, str):  # ISO 8601, or epoch milliseconds written as text (the encoder reads both)
        digits = value.strip().lstrip("-")
        value = float(value) if digits.isascii() and digits.isdigit() else iso_moment(value)
    if isinstance(value, dt.datetime):
        with contextlib.suppress(OverflowError):  # a moment at the edge of year 1 in another zone
            return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)
        return None
    if not _finite(value):
        return None
    try:
        return dt.datetime.fromtimestamp(value / 1000, tz=dt.UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _score_of(anomaly: Any) -> float | None:
    """The score of an ``anomaly`` object as the service writes one: no error, a finite score and a
    p-value that are numbers, a verdict that is true or false. Anything else is counted unscorable
    (a score given as text ended the report in a traceback)."""
    if not isinstance(anomaly, dict) or anomaly.get("error") is not None:
        return None
    score, p_value = anomaly.get("score"), anomaly.get("p_value")
    if not (_finite(score) and _finite(p_value) and isinstance(anomaly.get("is_anomaly"), bool)):
        return None
    return float(score)


def _finite(value: Any) -> TypeGuard[float]:
    """A number a float holds: an integer of 400 digits (JSON has no bound) is none."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def collect(
    scored: Iterator[tuple[dict[str, Any], Finish]], *, seed: int = 0, day: str | None = None
) -> Days:
    """One pass over scored events: per UTC day (from OCSF ``time``, epoch milliseconds) what the report
    shows. The scores, top events, entity counts and samples are kept for ``day`` only, or without it for
    the latest day with a scored event (the one rendered then): a day's are dropped when a later day's
    event comes, which can only be before that later day's first event is counted, so what is kept is
    whole."""
    rng = random.Random(seed)  # noqa: S311  (a sample for a statistic, not a secret)
    days: dict[str, Day] = defaultdict(Day)
    entities = compile_extractor(ENTITY_FIELDS)  # every entity field in one walk of the event
    sequence = itertools.count()
    undated = 0
    kept = day  # the day whose events are kept
    contents: dict[tuple[Any, Any], str | None] = {}  # _content_version of each model seen
    for event, finish in scored:
        anomaly = event.get("anomaly")
        when = _moment(event.get("time"))
        score = _score_of(anomaly)
        # decided on the anomaly object alone: Splunk's exports carry the event's text as `_raw`
        # beside a valid one, and a line `score` could not read is {"_raw": ..., "anomaly": {"error"}}
        if when is None or score is None or not isinstance(anomaly, dict):
            if when is not None:
                days[when.date().isoformat()].errors += 1
            else:
                undated += 1
            continue
        key, hour = when.date().isoformat(), when.hour
        if day is None and (kept is None or key > kept):
            if kept is not None:
                days[kept].drop_events()
            kept = key
        detailed = key == kept
        record = days[key]
        label = _class_label(event)
        flagged = anomaly["is_anomaly"]
        record.events += 1
        record.events_by_class[label] += 1
        group = str(anomaly.get("calibration_group") or "global")
        record.events_by_group[group] += 1
        record.score_sum_by_group[group] += score
        record.classes_of_group.setdefault(group, set()).add(label)
        threshold = anomaly.get("threshold")
        if _finite(threshold):
            record.thresholds[(group, float(threshold))] += 1
        model = anomaly.get("model")
        if not isinstance(model, dict):
            model = {}
        record.models[(str(model.get("name", "?")), str(model.get("version", "?")))] += 1
        named = (model.get("bundle_version"), model.get("version"))  # the same few all day long
        try:
            content = contents[named]
        except KeyError:
            content = contents[named] = _content_version(model)
        except TypeError:  # a version that is no scalar: no content version
            content = None
        if content is not None:
            record.bundles[content] += 1
        if flagged:
            record.anomalies += 1
            record.anomalies_by_class[label] += 1
            record.by_hour_class[(hour, label)] += 1
        if not detailed:
            continue
        for name, value in zip(ENTITY_FIELDS, entities(event), strict=True):
            if value is not None and value != "":
                record.entity_fields_seen.add(name)
                if flagged:
                    record.entities[(name, str(value))] += 1
        record.scores.append(score)
        if flagged:
            if len(record.top) < TOP_EVENTS:
                heapq.heappush(record.top, (score, next(sequence), finish(event)))
            elif score > record.top[0][0]:
                heapq.heapreplace(record.top, (score, next(sequence), finish(event)))
        # a reservoir of each calibration group, for its unknown-category rate
        sample = record.samples.setdefault(group, [])
        if len(sample) < SAMPLE_PER_GROUP:
            sample.append(finish(event))
        else:
            slot = rng.randrange(record.events_by_group[group])
            if slot < SAMPLE_PER_GROUP:
                sample[slot] = finish(event)
    if not any(record.events for record in days.values()):
        unscored = sum(record.errors for record in days.values())
        raise ReportError(
            f"no scored event with a time: {unscored:,} events carry no score (or an error in its place) "
            f"and {undated:,} lines are not events or have no `time`. The report reads events that "
            "`ocsf-anomaly score`, `score-spark` or the service enriched: score them first"
        )
    collected = Days(days)
    collected.undated = undated
    return collected


def _content_version(model: dict[str, Any]) -> str | None:
    """The content version of the bundle an ``anomaly.model`` names, when it names one: `score`,
    `score-spark` and a service serving a directory write it as the version; a service serving a
    registry writes the registry's version number there (and the content, if at all, as
    ``bundle_version``)."""
    for key in ("bundle_version", "version"):
        value = model.get(key)
        if isinstance(value, str) and CONTENT_VERSION.fullmatch(value):
            return value
    return None


def _class_label(event: dict[str, Any]) -> str:
    name, uid = event.get("class_name"), event.get("class_uid")
    if name and uid is not None:
        return f"{name} ({uid})"
    return str(name or uid or "no class")


@dataclass
class Reference:
    """What the model that scored the events saw as normal."""

    version: str
    alpha: float
    group_means: dict[str, float]
    baseline_unknown_rate: float
    encoder: Any


def reference(bundle_dir: Path) -> Reference:
    from scorer.detector import Detector

    detector = Detector.load(bundle_dir)
    cat = detector.baseline.cat
    return Reference(
        version=str(detector.model_info["version"]),
        alpha=float(detector.config.alpha),
        group_means={g: float(np.mean(s)) for g, s in detector.calibration.groups.items() if len(s)},
        baseline_unknown_rate=float((cat == UNKNOWN_INDEX).mean()) if cat.size else 0.0,
        encoder=detector.encoder,
    )


def _unknown_rate(encoder: Any, events: list[dict[str, Any]]) -> float | None:
    if not events:
        return None
    cat = encoder.encode([{k: v for k, v in e.items() if k != "anomaly"} for e in events]).cat
    return float((cat == UNKNOWN_INDEX).mean()) if cat.size else None


def render(
    days: Days,
    *,
    day: str,
    source: str,
    alpha: float,
    ref: Reference | None,
    model_note: str,
) -> str:
    """The page for ``day``, one of ``days``."""
    import jinja2
    import plotly.graph_objects as go
    from plotly.offline import get_plotlyjs

    record = days[day]
    classes = sorted(record.events_by_class)
    figures: dict[str, Any] = {}

    hours = list(range(24))
    hourly = go.Figure(
        [
            go.Bar(name=_text(label), x=hours, y=[record.by_hour_class[(h, label)] for h in hours])
            for label in classes
            if record.anomalies_by_class[label]
        ]
    )
    hourly.update_layout(
        barmode="stack", xaxis_title="hour of the day (UTC)", yaxis_title="anomalies", legend_title="class"
    )
    figures["hourly"] = hourly

    scores = np.frombuffer(record.scores, dtype=np.float64) if record.scores else np.zeros(0)
    finite = scores[np.isfinite(scores)]
    counts, edges = np.histogram(finite, bins=HISTOGRAM_BINS) if finite.size else (np.zeros(0), np.zeros(1))
    distribution = go.Figure(
        go.Bar(
            x=((edges[:-1] + edges[1:]) / 2).tolist(),
            y=counts.tolist(),
            name="events",
            width=np.diff(edges).tolist(),
        )
    )
    groups = _group_thresholds(record)
    for group, threshold in groups.items():
        distribution.add_vline(x=threshold, line_dash="dash", annotation_text=_text(f"threshold {group}"))
    distribution.update_layout(xaxis_title="score", yaxis_title="events", yaxis_type="log", showlegend=False)
    figures["distribution"] = distribution

    rates = [record.anomalies_by_class[c] / record.events_by_class[c] for c in classes]
    rate = go.Figure(go.Bar(x=[_text(c) for c in classes], y=rates, name="realised anomaly rate"))
    rate.add_hline(y=alpha, line_dash="dash", annotation_text=f"α = {alpha:g}")
    rate.update_layout(yaxis_title="share of events flagged", yaxis_tickformat=".1%", showlegend=False)
    figures["rate"] = rate

    top_entities = record.entities.most_common(15)
    if top_entities:
        entities = go.Figure(
            go.Bar(
                x=[n for _, n in reversed(top_entities)],
                y=[_text(f"{f} = {v}") for (f, v), _ in reversed(top_entities)],
                orientation="h",
            )
        )
        entities.update_layout(xaxis_title="anomalies", height=120 + 28 * len(top_entities))
        figures["entities"] = entities

    drift = _drift(record, ref)
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("scorer", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
    )
    page = environment.get_template("report.html.j2").render(
        day=day,
        days=sorted(days),
        source=source,
        record=record,
        undated=days.undated,
        alpha=alpha,
        rate=record.anomalies / record.events if record.events else 0.0,
        classes=[(c, record.events_by_class[c], record.anomalies_by_class[c]) for c in classes],
        top=[_top_row(item[2]) for item in sorted(record.top, key=lambda t: (-t[0], t[1]))],
        entity_fields=[f for f in ENTITY_FIELDS if f in record.entity_fields_seen],
        entities_missing=not record.entity_fields_seen,
        drift=drift,
        ref=ref,
        model_note=model_note,
        models=record.models.most_common(),
        thresholds=groups,
        figures={name: _figure_json(fig) for name, fig in figures.items()},
        plotly_js=_script_safe(get_plotlyjs()),
        generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )
    return page


def _group_thresholds(record: Day) -> dict[str, float]:
    """The threshold each calibration group was flagged at that day (its most common one)."""
    best: dict[str, tuple[int, float]] = {}
    for (group, threshold), n in record.thresholds.items():
        if group not in best or n > best[group][0]:
            best[group] = (n, threshold)
    return {group: value for group, (_, value) in sorted(best.items())}


def _classes_text(labels: set[str]) -> str:
    """The classes of a calibration group's events (``global`` holds several)."""
    ordered = sorted(labels)
    if len(ordered) <= 3:
        return ", ".join(ordered)
    return f"{len(ordered)} classes: {', '.join(ordered[:3])}, …"


def _drift(record: Day, ref: Reference | None) -> list[dict[str, Any]]:
    rows = []
    for group in sorted(record.events_by_group):
        n = record.events_by_group[group]
        row: dict[str, Any] = {
            "group": group,
            "class": _classes_text(record.classes_of_group[group]),
            "events": n,
            "mean_score": record.score_sum_by_group[group] / n,
            "calibration_mean": None,
            "unknown_rate": None,
        }
        if ref is not None:
            row["calibration_mean"] = ref.group_means.get(group)
            row["unknown_rate"] = _unknown_rate(ref.encoder, record.samples.get(group, []))
        rows.append(row)
    return rows


def _reason_row(reason: dict[str, Any]) -> dict[str, str]:
    """A reason as the report's table shows it, as its line of text writes it: a value that could be
    read as part of the line ("x (typical x, deviation 0.1)") quoted, none as "missing"."""
    value, typical, how = reason_parts(reason)
    return {"field": str(reason.get("field")), "value": value, "typical": typical, "how": how}


def _top_row(event: dict[str, Any]) -> dict[str, Any]:
    anomaly = event["anomaly"]
    when = _moment(event.get("time"))
    metadata = event.get("metadata")
    return {
        "time": when.strftime("%H:%M:%S") if when else "",
        "class": _class_label(event),
        "uid": metadata.get("uid", "") if isinstance(metadata, dict) else "",
        "score": anomaly.get("score"),
        "p_value": anomaly.get("p_value"),
        "reasons": [
            _reason_row(reason) for reason in _listed(anomaly.get("reasons")) if isinstance(reason, dict)
        ],
        "neighbors": _listed(anomaly.get("neighbors"))[:5],
    }


def _listed(value: Any) -> list[Any]:
    """A list the service wrote, or nothing: a file edited by hand, or written by another tool, may hold
    anything there (`"neighbors": 5` ended the report in a traceback)."""
    return value if isinstance(value, list) else []


def _text(value: str) -> str:
    """A value of the events as a chart shows it: Plotly reads tags in its texts (``<a href>`` a
    link, ``<b>``, ``<br>``, ``<span style>``), and a value an attacker chose (a user name tried at a
    logon) would become a link in the analyst's report; escaped, Plotly shows the tag as text."""
    return html.escape(value, quote=False)


def _figure_json(figure: Any) -> str:
    figure.update_layout(margin={"l": 60, "r": 20, "t": 30, "b": 50}, template="plotly_white")
    return _script_safe(figure.to_json())


def _script_safe(text: str) -> str:
    """Text safe inside a <script> element: no sequence there can close it."""
    return text.replace("</", "<\\/")


def write_report(
    source: Path,
    output: Path,
    *,
    day: str | None = None,
    alpha: float | None = None,
    bundle_dir: Path | None = None,
    log: Any = None,
    field: str = "anomaly",
) -> tuple[str, Day]:
    """Read ``source`` (the verdicts under ``field``), render the report of ``day`` to ``output``
    (atomically); returns (day, its record)."""
    say = log or (lambda message: None)
    if day is not None:
        try:
            day = dt.date.fromisoformat(day).isoformat()  # 20261201 is 2026-12-01, as days are keyed
        except ValueError:
            raise ReportError(f"--day {day!r} is not a date: YYYY-MM-DD") from None
    ref = None
    if bundle_dir is not None:
        say(f"loading {bundle_dir} (the calibration to compare with)")
        ref = reference(bundle_dir)
    say(f"reading {source}")
    days = collect(records(source, say, field), day=day)
    scored = [name for name, record in days.items() if record.events]
    chosen = day or max(scored)
    if chosen not in scored:
        raise ReportError(
            f"no scored events on {chosen}; the data holds scored events from {min(scored)} to "
            f"{max(scored)} ({len(scored)} days)"
        )
    # compared on the bundle's content version, when the events name it: a service serving a
    # registry names its model by the registry's version number, which the bundle does not carry
    versions = set(days[chosen].bundles)
    model_note = ""
    if ref is None:
        model_note = "No bundle given (--model): the drift columns against the calibration are empty."
    elif versions and ref.version not in versions:
        model_note = (
            f"The bundle given ({ref.version}) is not the one that scored these events "
            f"({', '.join(sorted(versions))}): the comparison is with another model's calibration."
        )
    page = render(
        days,
        day=chosen,
        source=str(source),
        alpha=alpha if alpha is not None else (ref.alpha if ref else 0.01),
        ref=ref,
        model_note=model_note,
    )
    write_text_atomically(output, page)
    return chosen, days[chosen]
