"""Detection quality on labelled events, beside two reference baselines measured in the same run."""

from __future__ import annotations

import csv
import gzip
import itertools
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from scorer.batch import said_of_empty
from scorer.detector import SCORE_KINDS, Detector, ScoreResult, concatenate
from scorer.io import (
    BadLines,
    dumps,
    is_parquet,
    iter_raw_lines,
    iter_records,
    make_folders,
    on_terminal,
    parse_line,
    refuse_writing_over,
    remove_folders,
    sample,
    sample_events,
)

if TYPE_CHECKING:  # scikit-learn, imported only where the baselines are fitted
    from scorer.baselines import Baselines


def read_labels_and_types(path: Path) -> tuple[dict[int, int], dict[int, str] | None]:
    """``line,label[,attack]`` → the labels, and each row's ``attack`` column where the file has one
    (None where it has not): an attack's type (``unnamed`` where it is blank), or what a normal row
    holds there."""
    with path.open(newline="", encoding="utf-8-sig") as handle:  # a spreadsheet's byte-order mark too
        reader = csv.DictReader(handle)
        try:
            return _labels_of(path, reader)
        except csv.Error as exc:  # a field over the csv module's limit (128 KiB), a NUL byte
            raise ValueError(f"{path}:{reader.line_num + 1}: not a row of line,label: {exc}") from None
        except UnicodeDecodeError as exc:  # pointed at by byte, in a chunk read ahead: no line to name
            raise ValueError(f"{path}: not UTF-8 text: {exc}") from None


def _labels_of(path: Path, reader: csv.DictReader[str]) -> tuple[dict[int, int], dict[int, str] | None]:
    if not reader.fieldnames or not {"line", "label"} <= set(reader.fieldnames):
        raise ValueError(f"{path}: expected a header with 'line' and 'label' columns")
    labels: dict[int, int] = {}
    types: dict[int, str] | None = {} if "attack" in reader.fieldnames else None
    for row in reader:
        where = f"{path}:{reader.line_num}"
        try:
            line, label = int(row["line"]), int(row["label"])
        except (TypeError, ValueError):
            raise ValueError(
                f"{where}: expected a line number and a label of 0 (normal) or 1 (attack), "
                f"got {row['line']!r}, {row['label']!r}"
            ) from None
        if label not in (0, 1):
            raise ValueError(f"{where}: a label is 0 (normal) or 1 (attack), got {label}")
        if line < 1:
            raise ValueError(f"{where}: lines are numbered from 1, got line {line}")
        if line in labels:
            raise ValueError(f"{where}: line {line} is labelled twice")
        labels[line] = label
        if types is not None:
            types[line] = (row["attack"] or "").strip() or (UNNAMED if label == 1 else "")
    return labels, types


UNNAMED = "unnamed"  # the type of an attack whose labels row gives none


def _count(n: int, one: str, many: str) -> str:
    return f"{n:,} {one if n == 1 else many}"


def _naming_no_line(labels: dict[int, int], lines: int) -> str | None:
    """What to say of the labels that name no line of a file of ``lines`` lines; None when all do."""
    stray = sorted(line for line in labels if line > lines)  # from 1 up: read_labels_and_types
    if not stray:
        return None
    return f"{_count(len(stray), 'label names', 'labels name')} no line (the first, line {stray[0]:,})"


class Labelled(NamedTuple):
    events: list[dict[str, Any]]
    labels: np.ndarray  # 1 for an attack, 0 for a normal event
    attack_types: list[str] | None  # each event's attack type ("" for a normal event); None: not given


class LabelledFile(NamedTuple):
    """A labelled file's events as a stream: their labels (and attack types) at once, the events
    themselves read again each time :attr:`events` is called, so that none need be held."""

    labels: np.ndarray  # 1 for an attack, 0 for a normal event, one for each event in order
    attack_types: list[str] | None  # each event's attack type ("" for a normal event); None: not given
    events: Callable[[], Iterator[dict[str, Any]]]


def read_labelled(events_path: Path, labels_path: Path) -> LabelledFile:
    """The labels of ``events_path``'s events (and attack types, where the labels file has an
    ``attack`` column), one label for every line, checked before any event is used; a bad line is
    reported on stderr (as :func:`scorer.io.load_events` does) and left out with its label. The
    file is read again for the events (a pipe, once: its lines are held, as :func:`split_labelled`
    holds them)."""
    labels, types = read_labels_and_types(labels_path)
    held = (
        None if is_parquet(events_path) or Path(events_path).is_file() else list(iter_raw_lines(events_path))
    )

    def records() -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
        if held is None:
            yield from iter_records(events_path)
        else:
            for number, raw in held:
                yield number, *parse_line(raw)

    kept: list[int] = []
    lines = 0
    said = BadLines(sys.stderr)
    for line, event, error in records():
        lines = line
        if event is None:
            said.say(f"{events_path}:{line}: skipped: {error}")
        elif line in labels:
            kept.append(line)
    said.close()
    unlabelled = [line for line in range(1, lines + 1) if line not in labels]
    stray = _naming_no_line(labels, lines)
    if unlabelled or stray:
        first = f" (the first, line {unlabelled[0]:,})" if unlabelled else ""
        raise ValueError(
            f"{labels_path} does not label the {lines:,} lines of {events_path} one for one: "
            f"{_count(len(unlabelled), 'line has', 'lines have')} no label{first}, "
            f"{stray or '0 labels name no line'}"
        )
    if not kept:
        raise ValueError(f"{events_path} holds no event to evaluate")
    stamp = None if held is not None else _stamp(events_path)

    def events() -> Iterator[dict[str, Any]]:
        changed = (
            f"{events_path} changed after its labels were checked (evaluate reads it twice): "
            "evaluate a copy that does not change"
        )
        if stamp is not None and _stamp(events_path) != stamp:
            raise ValueError(changed)
        read = 0
        for line, event, _ in records():
            if line not in labels:
                continue
            if read < len(kept) and kept[read] == line and event is not None:
                read += 1
                yield event
            elif event is not None or (read < len(kept) and kept[read] == line):
                raise ValueError(changed)  # an event where there was none, or none where there was one
        if read != len(kept):
            raise ValueError(changed)

    attack_types = None if types is None else [types[line] if labels[line] else "" for line in kept]
    return LabelledFile(np.asarray([labels[line] for line in kept], dtype=np.int64), attack_types, events)


def _stamp(path: Path) -> tuple[int, int, int]:
    """What a rewritten or replaced file changes: its inode, size and modification time."""
    status = Path(path).stat()
    return status.st_ino, status.st_size, status.st_mtime_ns


def load_labelled(events_path: Path, labels_path: Path) -> Labelled:
    """The events of ``events_path`` and their labels, held (:func:`read_labelled`)."""
    labelled = read_labelled(events_path, labels_path)
    return Labelled(list(labelled.events()), labelled.labels, labelled.attack_types)


# events scored at a time: a multiple of the exact searches' blocks (4,096 rows), so that an event's
# distances are computed as they would be in one batch
CHUNK_EVENTS = 16_384


def evaluate(
    detector: Detector,
    events: Iterable[dict[str, Any]],
    labels: np.ndarray,
    train_events: Sequence[dict[str, Any]],
    *,
    alpha: float = 0.01,
    seed: int = 0,
    baselines: bool = True,
    attack_types: Sequence[str] | None = None,
    log: Callable[[str], None] | None = None,
    progress: bool = False,
) -> dict[str, dict[str, Any]]:
    """ROC-AUC, PR-AUC, recall and realised FPR at ``alpha`` for every score kind and the baselines.

    ``events`` (any iterable, read once, CHUNK_EVENTS at a time: none is held longer than its
    chunk) pair one for one with ``labels``; the baselines fit on ``train_events``.

    Every kind gives the verdicts the product gives under it: an event holding a number no real
    event can hold is flagged whatever its score, and ranks above every other event. With the
    baselines, every row also gets ``recall_at_raw_fpr``: its recall at the false-positive
    rate that raw-feature k-NN's own threshold realised on these events, so that scores are compared
    at one false-alarm budget whatever their calibration did. Every row has ``cannot_flag``: why
    nothing can be flagged at ``alpha`` (a calibration too small for it), and then recall and FPR
    at ``alpha`` are NaN, not measurable; else None. Every row has 95% intervals (``roc_auc_low``,
    ``roc_auc_high``, and ``recall_``/``fpr_`` likewise), and with the baselines every row but raw
    k-NN's has ``roc_auc_vs_raw_knn`` with its paired interval. With ``attack_types`` (each event's,
    as :func:`load_labelled` gives them), every row has ``by_attack``: for each type, its attacks
    against every normal event (:func:`_by_attack`). ``log`` is told what is being done, and warned;
    ``progress`` draws a bar on stderr while the events are scored, where stderr is a terminal.
    """
    from scorer.baselines import Baselines
    from scorer.metrics import detection_report, recall_at_fpr, roc_auc_difference

    say: Callable[[str], None] = log or (lambda message: None)
    fitted = None
    if baselines:
        say(f"fitting raw-feature k-NN and IsolationForest on {len(train_events):,} events")
        fitted = Baselines(train_events, alpha=alpha, seed=seed)
    say(f"scoring {len(labels):,} events with the model{' and the baselines' if baselines else ''}")
    scored = _score_in_chunks(detector, fitted, events, alpha, say, len(labels), progress)
    result = scored.result
    if len(result) != len(labels):
        raise ValueError(f"{len(result):,} events for {len(labels):,} labels: they must pair one for one")
    if (found := said_of_empty(detector, scored.empty, len(labels), "events to evaluate")) is not None:
        say(f"warning: {found[0]}; each is flagged, and ranked first under every score kind")
    components = result.components
    groups = result.group  # at alpha: a class calibrated on too few events for it is judged globally
    forced = result.forced  # flagged by the detector whatever its score, with the p-value 0
    report: dict[str, dict[str, Any]] = {}
    scores_of: dict[str, np.ndarray] = {}
    flagged_of: dict[str, np.ndarray] = {}
    warned: set[str] = set()

    def measured(name: str, row: dict[str, Any], why: str | None) -> None:
        """``row`` as measured, or with recall and FPR at α not measurable: its threshold flags nothing."""
        report[name] = {**row, "recall": math.nan, "fpr": math.nan} if why else row
        report[name]["cannot_flag"] = why
        if why and why not in warned:  # as `score` warns; the kinds share one calibration size
            warned.add(why)
            say(f"warning: {why}")

    for kind in SCORE_KINDS:
        scores = _ranked_first(components[kind], forced)  # p = 0: above every other event
        p_values = detector.calibrations[kind].p_values(components[kind], groups, alpha)
        p_values[forced] = 0.0
        name = f"{kind}{' (default)' if kind == detector.config.score else ''}"
        flagged_of[name] = p_values <= alpha + 1e-12
        measured(
            name,
            detection_report(labels, scores, flagged_of[name]),
            detector.with_config(score=kind).cannot_flag(alpha),
        )
        scores_of[name] = scores
    if fitted is not None:
        for baseline in fitted.results(scored.baselines):
            why = None
            if baseline.threshold == math.inf:  # conformal_threshold's answer to an α it cannot resolve
                needed = math.ceil(1 / alpha) - 1
                why = (
                    f"the baselines can flag nothing at α = {alpha:g}: the fifth of the "
                    f"{len(train_events):,} training events held out to set their thresholds gives no "
                    f"p-value that small. It needs at least {needed:,} events (train on about "
                    f"{5 * needed:,}), or evaluate at a larger α"
                )
            measured(baseline.name, detection_report(labels, baseline.scores, baseline.flagged), why)
            scores_of[baseline.name], flagged_of[baseline.name] = baseline.scores, baseline.flagged
    # NaN when raw k-NN flags nothing at α (or was not fitted): no budget to compare at
    raw_fpr = report["raw-knn"]["fpr"] if baselines else math.nan
    for name, scores in scores_of.items():
        row = report[name]
        if baselines:
            row["recall_at_raw_fpr"] = recall_at_fpr(labels, scores, raw_fpr)
            if name != "raw-knn":  # paired on the same events: how sure "above raw k-NN" is
                difference = roc_auc_difference(labels, scores, scores_of["raw-knn"])
                row.update(
                    zip(
                        ("roc_auc_vs_raw_knn", "roc_auc_vs_raw_knn_low", "roc_auc_vs_raw_knn_high"),
                        difference,
                        strict=True,
                    )
                )
        _add_intervals(row, labels, scores)
        if attack_types is not None:
            unflagging = row["cannot_flag"] is not None
            row["by_attack"] = _by_attack(labels, scores, flagged_of[name], attack_types, raw_fpr, unflagging)
    return report


class _Scored(NamedTuple):
    result: ScoreResult  # the model's, at alpha
    baselines: list[np.ndarray]  # each baseline's scores
    empty: int  # how many events hold none of the model's fields


def _score_in_chunks(
    detector: Detector,
    fitted: Baselines | None,
    events: Iterable[dict[str, Any]],
    alpha: float,
    say: Callable[[str], None],
    total: int,
    progress: bool,
) -> _Scored:
    """The scores of ``events``, CHUNK_EVENTS at a time: none is held longer than its chunk (a
    million events held as objects took 6.85 GB). Of ``total`` events in more than one chunk, those
    of the first that hold none of the model's fields are said at once, as `score` says them."""
    from tqdm import tqdm

    fusion = detector.with_config(score="fusion")
    results: list[ScoreResult] = []
    baselines: list[list[np.ndarray]] = [[], []]
    empty = 0
    stream = iter(events)
    bar = tqdm(  # not into a log of `evaluate ... 2>file`
        total=total,
        desc="evaluating",
        unit=" events",
        file=sys.stderr,
        disable=not (progress and on_terminal(sys.stderr)),
        leave=False,
    )
    while chunk := list(itertools.islice(stream, CHUNK_EVENTS)):
        results.append(fusion.score(chunk, alpha=alpha, explain=False))
        if fitted is not None:
            for each, scores in zip(baselines, fitted.score(chunk), strict=True):
                each.append(scores)
        bar.update(len(chunk))  # once they are scored: the bar shows work done, not work begun
        empty += detector.encoder.holding_none(chunk)
        first = len(results) == 1 and total > len(chunk)  # more chunks to come: said now
        if first and (found := said_of_empty(detector, empty, len(chunk), "events read first")) is not None:
            bar.clear()
            say(f"warning: {found[0]}; each is flagged, and ranked first under every score kind")
    bar.close()
    return _Scored(
        concatenate(results) if results else fusion.score([], alpha=alpha, explain=False),
        [np.concatenate(each) if each else np.empty(0) for each in baselines] if fitted is not None else [],
        empty,
    )


def _by_attack(
    labels: np.ndarray,
    scores: np.ndarray,
    flagged: np.ndarray,
    attack_types: Sequence[str],
    raw_fpr: float,
    unflagging: bool,
) -> dict[str, dict[str, float]]:
    """Each attack type, most frequent first: ``n`` (its attacks), ``roc_auc`` (its attacks against
    every normal event), ``recall`` at α (NaN where the row can flag nothing) and
    ``recall_at_raw_fpr``: which kinds of attack a score finds, and which it misses. Events
    without a score are left out, as :func:`scorer.metrics.detection_report` leaves them.

    One sort of the normal scores serves every type: an attack's share of the normal events below
    it (a tie counting half) is its part of the ROC-AUC, and the threshold at raw k-NN's
    false-positive rate is :func:`scorer.metrics.recall_at_fpr`'s."""
    from scorer.metrics import threshold_at_fpr

    if len(attack_types) != len(labels):
        raise ValueError(f"{len(attack_types):,} attack types for {len(labels):,} events")
    scored = ~np.isnan(scores)
    normal = np.sort(scores[scored & (labels == 0)])
    attack = scored & (labels == 1)
    names, which, counts = np.unique(
        np.asarray(attack_types, dtype=object)[attack].astype(str), return_inverse=True, return_counts=True
    )
    values = scores[attack]

    def per_type(weights: np.ndarray) -> np.ndarray:
        return np.bincount(which, weights=weights, minlength=names.size) / np.maximum(counts, 1)

    roc_auc = recall_at_raw = np.full(names.size, math.nan)
    if normal.size:
        below = np.searchsorted(normal, values, side="left") + np.searchsorted(normal, values, side="right")
        roc_auc = per_type(below / (2 * normal.size))
        if not math.isnan(raw_fpr):
            recall_at_raw = per_type((values > threshold_at_fpr(normal, raw_fpr)).astype(np.float64))
    recall = per_type(flagged[attack].astype(np.float64))
    return {
        str(names[i]): {
            "n": int(counts[i]),
            "roc_auc": float(roc_auc[i]),
            "recall": math.nan if unflagging else float(recall[i]),
            "recall_at_raw_fpr": float(recall_at_raw[i]),
        }
        for i in sorted(range(names.size), key=lambda i: (-counts[i], names[i]))
    }


def _add_intervals(row: dict[str, Any], labels: np.ndarray, scores: np.ndarray) -> None:
    """``row``'s 95% intervals: ``roc_auc_low``/``_high`` (DeLong), ``recall_low``/``_high`` and
    ``fpr_low``/``_high`` (Wilson, over the attacks and the normal events it scored)."""
    from scorer.metrics import proportion_interval, roc_auc_interval

    row["roc_auc_low"], row["roc_auc_high"] = roc_auc_interval(labels, scores)
    for figure, n in (("recall", row["n_attack"]), ("fpr", row["n"] - row["n_attack"])):
        share = row[figure]
        interval = (math.nan, math.nan) if math.isnan(share) else proportion_interval(round(share * n), n)
        row[f"{figure}_low"], row[f"{figure}_high"] = interval


def _ranked_first(scores: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``scores`` with ``rows`` above every other score (finite: the metrics refuse infinity)."""
    if not rows.any():
        return scores
    finite = scores[np.isfinite(scores)]
    return np.where(rows, np.nextafter(float(np.max(finite, initial=0.0)), math.inf), scores)


def format_report(report: Mapping[str, Mapping[str, Any]], alpha: float) -> str:
    at_raw = all("recall_at_raw_fpr" in m for m in report.values())
    header = f"{'score':<22}{'ROC-AUC':>9}{'PR-AUC':>9}{'recall@α':>10}{'FPR@α':>9}"
    header += f"{'recall@raw-FPR':>16}" if at_raw else ""
    lines = [f"α = {alpha}", header, "-" * len(header)]
    for name, m in report.items():
        line = f"{name:<22}{_figure(m['roc_auc'], 9)}{_figure(m['pr_auc'], 9)}{_figure(m['recall'], 10)}"
        line += _figure(m["fpr"], 9)
        lines.append(line + (_figure(m["recall_at_raw_fpr"], 16) if at_raw else ""))
    if at_raw:
        lines.append(
            "recall@raw-FPR: recall at the FPR raw-knn's threshold realised "
            f"({_figure(report['raw-knn']['fpr'], 0)})"
        )
    if all("roc_auc_low" in m for m in report.values()):
        lines += ["", *_intervals(report)]
    if any(math.isnan(m.get("roc_auc_low", 0.0)) and not math.isnan(m["roc_auc"]) for m in report.values()):
        lines.append(
            "n/a intervals: an interval of ROC-AUC needs two attacks and two normal events, and a ranking "
            "that is not perfect (where every attack ranks above every normal event, DeLong's method reads "
            "no spread)"
        )
    default = next((name for name in report if name.endswith(" (default)")), None)
    if default is not None and report[default].get("by_attack"):
        lines += ["", *_by_attack_table(report, default)]
    if any(math.isnan(m["roc_auc"]) for m in report.values()):
        lines.append(
            "n/a: the labels hold one class only; ranking and recall need attacks (label 1), "
            "the false-positive rate normal events (label 0)"
        )
    unflagging = [name for name, m in report.items() if m.get("cannot_flag")]
    if unflagging:
        lines.append(
            f"n/a at α: {', '.join(unflagging)} can flag nothing at α = {alpha} (the warning says why)"
            + ("; recall@raw-FPR needs raw-knn's threshold" if "raw-knn" in unflagging and at_raw else "")
        )
    return "\n".join(lines)


def _intervals(report: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The table of 95% intervals: a figure's range on other events of the same kind and number."""
    against = any("roc_auc_vs_raw_knn" in m for m in report.values())
    header = f"{'score':<22}{'ROC-AUC':>17}" + (f"{'ROC-AUC − raw-knn':>29}" if against else "")
    header += f"{'recall@α':>17}{'FPR@α':>17}"
    lines = [
        "95% intervals (DeLong for ROC-AUC, paired on the same events against raw-knn; Wilson for shares):"
    ]
    lines += [header, "-" * len(header)]
    for name, m in report.items():
        line = f"{name:<22}{_range(m['roc_auc_low'], m['roc_auc_high'], 17)}"
        if against:
            if "roc_auc_vs_raw_knn" in m and not math.isnan(m["roc_auc_vs_raw_knn_low"]):
                difference = f"{m['roc_auc_vs_raw_knn']:+.4f} ({m['roc_auc_vs_raw_knn_low']:+.4f}, {m['roc_auc_vs_raw_knn_high']:+.4f})"
                line += f"{difference:>29}"
            else:
                line += f"{'–':>29}"
        line += _range(m["recall_low"], m["recall_high"], 17) + _range(m["fpr_low"], m["fpr_high"], 17)
        lines.append(line)
    if against:
        lines.append("ROC-AUC − raw-knn: above raw k-NN where its interval lies above 0")
    return lines


def _by_attack_table(report: Mapping[str, Mapping[str, Any]], default: str) -> list[str]:
    """Each attack type's figures under the default score, and raw k-NN's beside them."""
    mine, raw = report[default]["by_attack"], report.get("raw-knn", {}).get("by_attack")
    width = min(max([6, *(len(kind) for kind in mine)]) + 2, 32)
    header = f"{'attack':<{width}}{'n':>7}{'ROC-AUC':>9}{'recall@α':>10}{'recall@raw-FPR':>16}"
    header += f"{'raw-knn ROC-AUC':>17}{'recall@α':>10}" if raw is not None else ""
    lines = [f"by attack type (its attacks against every normal event): {default}", header, "-" * len(header)]
    for kind, m in mine.items():
        line = f"{_cut(kind, width - 2):<{width}}{m['n']:>7,}{_figure(m['roc_auc'], 9)}{_figure(m['recall'], 10)}"
        line += _figure(m["recall_at_raw_fpr"], 16)
        if raw is not None:
            line += _figure(raw[kind]["roc_auc"], 17) + _figure(raw[kind]["recall"], 10)
        lines.append(line)
    return lines


def _cut(name: str, width: int) -> str:
    """``name`` in ``width`` characters: its start and its end, where most names differ."""
    return name if len(name) <= width else f"{name[: (width - 1) // 2]}…{name[-(width // 2) :]}"


def _range(low: float, high: float, width: int) -> str:
    return f"{'n/a':>{width}}" if math.isnan(low) else f"{f'{low:.4f}–{high:.4f}':>{width}}"


def _figure(value: float, width: int) -> str:
    return f"{'n/a':>{width}}" if math.isnan(value) else f"{value:>{width}.4f}"


def split_labelled(
    events_path: Path,
    labels_path: Path,
    output: Path,
    *,
    seed: int = 0,
    fraction: float = 0.5,
    ordered: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, Path]:
    """A seeded line-level split: normal lines of one side to train on, the other side to test.

    ``ordered`` puts the first ``fraction`` of the file on the training side instead of a random
    choice of lines: the later traffic is then scored by a model of the earlier, as in use.

    Writes ``train_normal.jsonl.gz`` (normal lines of side A), ``test.jsonl.gz`` (all lines of
    side B, in file order) and ``test.labels.csv`` (``line,label``, 1-based in test.jsonl.gz, and
    ``attack`` where the labels file has that column, as it was; an attack's blank one ``unnamed``).
    Lines without a label, and lines that are not JSON objects, are left out; ``log`` is told how many.
    """
    say: Callable[[str], None] = log or (lambda message: None)
    names = {"train": "train_normal.jsonl.gz", "test": "test.jsonl.gz", "labels": "test.labels.csv"}
    paths = {key: output / name for key, name in names.items()}
    for path in paths.values():  # a split written over its own input destroyed it
        refuse_writing_over(path, [events_path, labels_path])
        if path.is_dir():  # else found at the renames, after the first: a new file beside old ones
            raise ValueError(f"{path} is a directory: the split writes a file of that name there")
    labels, types = read_labels_and_types(labels_path)
    # Read twice, never held: which lines are events, then the lines written where they go (every
    # line held took the whole file's size in memory: the scale review)
    events: list[bool] = []  # whether each line is a labelled event
    first_not_json: tuple[int, str] | None = None
    # a pipe (bash's <(…)) reads once: its lines are held, as every file's were
    held = None if Path(events_path).is_file() else list(_split_lines(events_path))
    for number, raw in held if held is not None else _split_lines(events_path):
        event, error = parse_line(raw) if number in labels else (None, None)
        events.append(event is not None)
        if error is not None and first_not_json is None:
            first_not_json = (number, error)
    n = len(events)
    kept = np.array(events, dtype=bool)
    stray = _naming_no_line(labels, n)
    if stray:  # labels of another file: the lines they do name would get the wrong ones
        raise ValueError(
            f"{labels_path} does not label the {n:,} lines of {events_path}: {stray} "
            "(are the labels those of this file?)"
        )
    rng = np.random.default_rng(seed)
    side_a = np.zeros(n, dtype=bool)
    chosen = np.arange(n) if ordered else rng.permutation(n)
    side_a[chosen[: int(n * fraction)]] = True
    labelled, normal = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)  # line numbers from 1
    labelled[[line - 1 for line in labels]] = True
    normal[[line - 1 for line, label in labels.items() if label == 0]] = True
    unlabelled, not_json = int(n - labelled.sum()), int((labelled & ~kept).sum())
    if unlabelled or not_json:
        first = f" (the first: line {first_not_json[0]:,}, {first_not_json[1]})" if first_not_json else ""
        say(
            f"left out {unlabelled:,} lines without a label and {not_json:,} that are not JSON "
            f"objects{first}, of {n:,}"
        )
    to_train = kept & side_a & normal
    to_test = kept & ~side_a
    train_rows, test_rows = np.flatnonzero(to_train), np.flatnonzero(to_test)
    if not len(train_rows) or not len(test_rows):
        raise ValueError(
            f"the split of {events_path} would leave {len(train_rows):,} normal events to train on and "
            f"{len(test_rows):,} to test: it needs some of each (are the labels those of this file?)"
        )
    if output.exists() and not output.is_dir():
        raise ValueError(f"--output {output} is a file: name a directory for the three files")
    made = make_folders(output)
    # Written in a staging directory and renamed into place at the end: an interrupted split leaves
    # an earlier one as it was, not half of each file.
    staging = Path(tempfile.mkdtemp(prefix=".split.", dir=output))
    try:
        staged = {key: staging / name for key, name in names.items()}
        with (
            gzip.open(staged["train"], "wb", compresslevel=3) as train,
            gzip.open(staged["test"], "wb", compresslevel=3) as test,
            staged["labels"].open("w", encoding="utf-8", newline="") as out_labels,
        ):
            for number, raw in held if held is not None else _split_lines(events_path):
                if to_train[number - 1]:
                    train.write(raw + b"\n")
                elif to_test[number - 1]:
                    test.write(raw + b"\n")
            rows = csv.writer(out_labels, lineterminator="\n")
            if types is None:
                rows.writerow(["line", "label"])
                rows.writerows([k, labels[i + 1]] for k, i in enumerate(test_rows.tolist(), start=1))
            else:  # the attack types go along, for evaluate's figures by type
                rows.writerow(["line", "label", "attack"])
                rows.writerows(
                    [k, labels[i + 1], types[i + 1]] for k, i in enumerate(test_rows.tolist(), start=1)
                )
        for key, path in staged.items():
            os.replace(path, paths[key])
        staging.rmdir()
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        remove_folders(made)  # nothing of a failed run remains
        raise
    attacks = sum(labels[i + 1] for i in test_rows.tolist())
    say(
        f"{len(train_rows):,} normal events to train on; {len(test_rows):,} to test, "
        f"{attacks:,} of them attacks"
    )
    return paths


def _split_lines(events_path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes) of each line: a Parquet file's rows as the JSON lines they would be."""
    if is_parquet(events_path):
        for number, event, _ in iter_records(events_path):
            yield number, dumps(event)
    else:
        yield from iter_raw_lines(events_path)


def load_train_normals(
    path: Path, labels_path: Path | None, most: int, *, seed: int = 0
) -> tuple[list[dict[str, Any]], int]:
    """The normal events of a training file (all of them when it has no labels), and how many
    there were: of more than ``most``, a seeded uniform sample of that many (:func:`scorer.io.sample`)."""
    if labels_path is None:
        return sample_events([path], most, seed=seed)
    labelled = read_labelled(path, labels_path)
    normal = (event for event, y in zip(labelled.events(), labelled.labels.tolist(), strict=True) if y == 0)
    return sample(normal, most, seed=seed)
