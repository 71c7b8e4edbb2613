"""The scoring engine: fit a detector on normal events, score batches, explain, save and load.

One batch of OCSF events goes: encode → embed (TabularResNet) → k-NN search over the baseline →
score (embedding distance, feature-space distance, or their fusion) → conformal p-value and verdict
→ explanation. Plain synchronous, batch-first code; the service, the CLI and streaming call it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from scorer import bundle
from scorer.calibration import GLOBAL, Calibration
from scorer.explain import Reason, find_reasons
from scorer.features.encoder import (
    UNKNOWN_INDEX,
    EncodedBatch,
    EncoderError,
    FeatureEncoder,
    compile_getter,
)
from scorer.features.infer import FLATTENED, infer_spec
from scorer.features.spec import FeatureSpec, SpecError
from scorer.knn import ANN_THRESHOLD, KnnIndex
from scorer.network import InferenceNet, ModelConfig, embed

if TYPE_CHECKING:
    from scorer.model import TrainConfig

Event = dict[str, Any]
ScoreKind = Literal["embedding", "features", "fusion"]
SCORE_KINDS: tuple[ScoreKind, ...] = ("embedding", "features", "fusion")
STAGES = ("encode", "embed", "search", "calibrate", "explain")
FUSION_SAMPLE = 5_000
NOISE_SAMPLE = 5_000  # baseline events whose nearest others measure how much each column varies
NOISE_NEIGHBOURS = 5
# What a numeric field the event lacks (or holds as no number: "n/a", null, an object) counts for in
# the feature space, in robust units, where its nearest baseline events hold it: a missing
# indicator at weight 1 replaced a telltale value (up to the clip, 10 units) with the median and
# one unit, and dropping one field un-flagged a tenth of NSL-KDD's flagged attacks (the adversarial
# review). 3, as the reasons rank a number the event lacks (3 × the share of neighbours holding it).
# Where presence varies among near neighbours, the noise weights below take it down again.
MISSING_WEIGHT = 3.0
# a refresh's screen leaving out more than this many times α of the window (and over 10 events) says
# the traffic may have moved, rather than that attacks were in it
LEFT_OUT_WARNING = 3.0
CHUNK = 4096  # events scored at once: bounds the (events × k × columns) arrays of the explanation


@dataclass(frozen=True)
class DetectorConfig:
    """How a detector is fitted and scores. Defaults chosen by measurement on data captured apart
    from training (BENCHMARKS.md, "How the defaults were chosen"): on shifted traffic the embedding
    alone ranks below the feature space, so it has a tenth of the fusion's weight; the feature
    space reads the mean distance to the 3 nearest baseline events, under a metric that counts
    less what varies even among normal neighbours."""

    k: int = 5  # neighbours of the embedding score
    feature_k: int = 3
    # A numeric column that differs between nearest baseline events by more than this (root mean
    # square, in the encoder's robust units) counts for feature_noise / that in the feature-space
    # distance: what varies even among normal neighbours says little. 0: every column in full.
    feature_noise: float = 0.2
    score: ScoreKind = "fusion"
    fusion_weight: float = 0.1  # the embedding's share of the fusion; the feature space has the rest
    alpha: float = 0.01
    baseline_size: int = 50_000
    calibration_fraction: float = 0.2
    max_calibration: int = 20_000
    min_group_size: int = 500
    ann_threshold: int = ANN_THRESHOLD
    n_reasons: int = 3
    n_neighbors: int = 5
    explain_k: int = 20  # feature-space neighbours the reasons compare an event with
    seed: int = 0

    def __post_init__(self) -> None:
        for setting in fields(self):  # a bundle's detector.json is read into these: 5.5 neighbours,
            value = getattr(self, setting.name)  # or "3", failed only at the first scoring call
            kind = {"int": ("a whole number", int), "float": ("a number", int | float)}.get(str(setting.type))
            if kind is not None and (isinstance(value, bool) or not isinstance(value, kind[1])):
                raise ValueError(f"{setting.name} must be {kind[0]}, not {value!r}")
        if self.score not in SCORE_KINDS:
            raise ValueError(f"score must be one of {', '.join(SCORE_KINDS)}, not {self.score!r}")
        if self.k < 1 or self.feature_k < 1 or self.explain_k < 1:
            raise ValueError("k, feature_k and explain_k must be at least 1")
        if not 0 < self.alpha < 1:
            raise ValueError("alpha (the target false-positive rate) must be between 0 and 1")
        if not (self.feature_noise >= 0 and math.isfinite(self.feature_noise)):
            raise ValueError("feature_noise must be a finite number ≥ 0 (0: every column counts in full)")
        if not 0 <= self.fusion_weight <= 1:
            raise ValueError("fusion_weight (the embedding's share of the fusion) must be between 0 and 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Standardiser:
    """Robust standardisation of a log-distance score, fitted on the baseline's own scores."""

    center: float
    scale: float

    def __call__(self, scores: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return (np.log1p(scores) - self.center) / self.scale

    @classmethod
    def fit(cls, scores: npt.NDArray[np.float64]) -> Standardiser:
        logs = np.log1p(scores)
        q25, median, q75 = np.percentile(logs, [25, 50, 75])
        scale = float(q75 - q25) / 1.349 or float(np.std(logs)) or 1.0
        return cls(center=float(median), scale=scale)


@dataclass
class ScoreResult:
    """Scores of one batch, in input order, and what each stage cost."""

    score: npt.NDArray[np.float64]
    p_value: npt.NDArray[np.float64]
    is_anomaly: npt.NDArray[np.bool_]
    # flagged whatever its score (the p-value 0): the event holds a number no real event holds, or
    # none of the model's fields (of another kind: the model can say nothing of it)
    forced: npt.NDArray[np.bool_]
    threshold: npt.NDArray[np.float64]
    group: list[str]
    classes: list[str]  # class_uid as a bounded label: seen in calibration, else "other"
    components: dict[str, npt.NDArray[np.float64]]
    reasons: list[list[Reason]]
    neighbors: list[list[str]]
    unknown_rate: float
    mean_knn_distance: float
    alpha: float  # what the verdicts, groups and thresholds were judged at
    seconds: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.score.shape[0])

    def anomaly(self, i: int, model: dict[str, Any]) -> dict[str, Any]:
        """The ``anomaly`` object written into event ``i``."""
        threshold = float(self.threshold[i])
        return {
            "score": round(float(self.score[i]), 6),
            "p_value": round(float(self.p_value[i]), 6),
            "is_anomaly": bool(self.is_anomaly[i]),
            "threshold": round(threshold, 6) if math.isfinite(threshold) else None,
            "calibration_group": self.group[i],
            "reasons": [r.to_dict() for r in self.reasons[i]],
            "neighbors": self.neighbors[i],
            "model": model,
        }


@dataclass
class Prepared:
    """A batch encoded for scoring, and the cache key of each event's embedding (if asked for)."""

    events: Sequence[Event]
    encoded: EncodedBatch
    keys: list[str]
    seconds: dict[str, float]


def concatenate(parts: list[ScoreResult]) -> ScoreResult:
    """The results of consecutive batches as one."""
    sizes = np.array([len(p) for p in parts], dtype=np.float64)
    return ScoreResult(
        score=np.concatenate([p.score for p in parts]),
        p_value=np.concatenate([p.p_value for p in parts]),
        is_anomaly=np.concatenate([p.is_anomaly for p in parts]),
        forced=np.concatenate([p.forced for p in parts]),
        threshold=np.concatenate([p.threshold for p in parts]),
        group=[g for p in parts for g in p.group],
        classes=[c for p in parts for c in p.classes],
        components={k: np.concatenate([p.components[k] for p in parts]) for k in parts[0].components},
        reasons=[r for p in parts for r in p.reasons],
        neighbors=[r for p in parts for r in p.neighbors],
        unknown_rate=float(np.average([p.unknown_rate for p in parts], weights=sizes)),
        mean_knn_distance=float(np.average([p.mean_knn_distance for p in parts], weights=sizes)),
        alpha=parts[0].alpha,  # one request's batches, judged at its alpha
        seconds={k: sum(p.seconds.get(k, 0.0) for p in parts) for k in STAGES},
    )


@dataclass
class Detector:
    """A fitted detector: encoder, network, baseline indices, calibration and metadata."""

    config: DetectorConfig
    encoder: FeatureEncoder
    net: InferenceNet  # the trained network, run in numpy (training alone imports torch)
    embedding_index: KnnIndex
    feature_index: KnnIndex
    feature_weights: npt.NDArray[np.float32]  # of the feature-space vector's columns (feature_noise)
    baseline: EncodedBatch
    baseline_ids: list[str]
    standardisers: dict[str, Standardiser]
    calibrations: dict[str, Calibration]
    metadata: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ fit
    @classmethod
    def fit(
        cls,
        events: Sequence[Event],
        *,
        spec: FeatureSpec | None = None,
        config: DetectorConfig | None = None,
        train_config: TrainConfig | None = None,
        model_config: dict[str, Any] | None = None,
        progress: bool = True,
        log: Callable[[str], None] | None = None,
        calibration_joins_baseline: bool = True,
    ) -> Detector:
        """Fit on normal events: encoder and network on one part, calibration on a held-out part.

        The baseline index is a sample of the training part (the same events may train the
        encoder and sit in the index); calibration events are held out from both, and once they
        have set the thresholds they join the baseline where ``baseline_size`` leaves it room
        (:meth:`admit`), unless ``calibration_joins_baseline`` is false (for studies that calibrate
        the fitted detector again on them).
        """
        from scorer.model import TrainConfig, train_model, weights_of  # torch: only training needs it

        config = config or DetectorConfig()
        train_config = train_config or TrainConfig(seed=config.seed)
        say: Callable[[str], None] = log or (lambda message: None)
        events = [e for e in events if isinstance(e, dict)]
        if len(events) < 50:
            raise ValueError(f"need at least 50 events to fit a detector, got {len(events)}")
        started = time.perf_counter()
        cal_rows, train_rows = split_for_fit(len(events), config)
        neighbours = max(config.k, config.feature_k, config.explain_k) + 1  # + the event itself, left out
        if min(config.baseline_size, len(train_rows)) < neighbours:
            raise ValueError(
                f"a baseline of {min(config.baseline_size, len(train_rows)):,} events is too small for "
                f"k = {config.k}, feature_k = {config.feature_k} and explain_k = {config.explain_k}: it needs "
                f"at least {neighbours} (a larger baseline size, more events, or smaller k)"
            )
        train_events = [events[i] for i in train_rows]
        cal_events = [events[i] for i in cal_rows]

        if spec is None:
            say(f"inferring a feature spec from {len(train_events):,} events")
            spec = infer_spec(train_events)
            if flattened := [path for path, why in spec.excluded if why == FLATTENED]:
                say(
                    f"warning: {_count(len(flattened))} fields left out, under keys holding '.' "
                    f"({', '.join(flattened[:3])}{'…' if len(flattened) > 3 else ''}), which no feature "
                    'path can name: are these events flattened? Nest their fields ({"a": {"b": 1}})'
                )
        encoder = FeatureEncoder(spec)
        for warning in encoder.coverage(train_events, "training events").warnings():
            say(f"warning: {warning}")
        encoder.fit(train_events)
        for name, values in encoder.port_sentinels.items():
            shown = ", ".join(values[:5]) + ("…" if len(values) > 5 else "")
            say(
                f"{name}: the training events hold numbers no port can be ({shown}), a producer's "
                "'no port': read as a port never seen, not flagged as impossible"
            )
        say(
            f"{len(spec.features)} features ({len(encoder.cardinalities)} categorical, {len(encoder.numeric_columns)} numeric columns)"
        )
        encoded = encoder.encode(train_events)
        if encoded.invalid is not None:  # flagged whatever the model learns: say so before it is used
            held = encoded.invalid[:, : len(encoder.numeric_features)].sum(axis=0)
            for feature, count in zip(encoder.numeric_features, held.tolist(), strict=True):
                if count:
                    say(
                        f"warning: {feature.path}: {_count(count)} of the {_count(len(train_events))} training events "
                        "hold a number no real event can hold (not finite, or beyond ±2⁶⁴), a producer's "
                        "sentinel perhaps: every event holding one is flagged when scored (map it to null, or "
                        "leave the field out with a feature spec)"
                    )

        architecture = ModelConfig(
            cardinalities=tuple(encoder.cardinalities), n_numeric=encoded.num.shape[1], **(model_config or {})
        )
        say(f"training TabularResNet on {min(len(train_events), train_config.max_rows):,} events")
        model, report = train_model(encoded, architecture, train_config, progress=progress)
        net = InferenceNet(architecture, weights_of(model))

        baseline_rows = np.random.default_rng(config.seed + 2).permutation(len(train_events))[
            : config.baseline_size
        ]
        baseline = encoded.take(baseline_rows)
        getter = compile_getter("metadata.uid")
        baseline_ids = [_event_id(getter(train_events[i]), int(i)) for i in baseline_rows]
        say(f"indexing a baseline of {len(baseline):,} events")
        cal_encoded = encoder.encode(cal_events)
        embedding_index, feature_index, feature_weights = _build_indices(
            net, encoder, baseline, cal_encoded, config
        )
        detector = cls(
            config=config,
            encoder=encoder,
            net=net,
            embedding_index=embedding_index,
            feature_index=feature_index,
            feature_weights=feature_weights,
            baseline=baseline,
            baseline_ids=baseline_ids,
            standardisers={},
            calibrations={},
        )
        say(f"calibrating on {len(cal_events):,} held-out events")
        detector.calibrate(cal_events)
        if (why := detector.cannot_flag()) is not None:
            say(f"warning: {why}")
        if calibration_joins_baseline:
            detector.admit(cal_events, cal_encoded)  # as far as baseline_size leaves room
            if len(detector.baseline) > len(baseline):
                say(
                    f"{len(detector.baseline) - len(baseline):,} of the calibration events join the baseline, "
                    f"as its size allows: {len(detector.baseline):,} events"
                )
        detector.metadata = {
            "training": {
                "events": len(events),
                "encoder_events": report.rows,
                "baseline_events": len(detector.baseline),
                "calibration_events": len(cal_events),
                "calibration_in_baseline": len(detector.baseline) - len(baseline),  # how many joined
                "seconds": round(time.perf_counter() - started, 2),
                "report": report.to_dict(),
                "config": train_config.to_dict(),
            },
            "model": architecture.to_dict(),
            "detector": config.to_dict(),
            "index": {
                "embedding": detector.embedding_index.describe(),
                "features": detector.feature_index.describe(),
            },
            "calibration": detector.calibration.sizes(),
            "features": [f.name for f in spec.features],
            "excluded": [{"path": p, "reason": r} for p, r in spec.excluded],
        }
        return detector

    def admit(self, events: Sequence[Event], encoded: EncodedBatch | None = None) -> Detector:
        """Take normal ``events`` (``encoded``, if they are already) into the baseline where it has
        room (up to ``baseline_size`` rows in all: the first of them), without calibrating again.
        An event's distance to its nearest baseline events can only shrink when the baseline grows,
        and the standardisers and thresholds stay as they were, so its p-value does not fall: what
        α bounds, it still bounds (a little below α). That holds for exact and IVF search, up to
        float32's choice between near-equal neighbours; an HNSW graph rewires as it grows and can
        lose a neighbour it found, so a detector with an HNSW index admits nothing.

        :meth:`fit` admits its calibration events this way once they have set the thresholds: a
        later event finds more of its normal kin (BENCHMARKS.md). Do not calibrate again on events
        admitted (they would be their own nearest neighbours). The indices are copies: a detector
        sharing them (:meth:`with_config`) is left as it was."""
        room = max(0, self.config.baseline_size - len(self.baseline))
        events = list(events)[:room]
        if not events or "hnsw" in (self.embedding_index.kind, self.feature_index.kind):
            return self
        encoded = encoded.take(np.arange(len(events))) if encoded is not None else self.encoder.encode(events)
        getter = compile_getter("metadata.uid")
        offset = len(self.baseline)
        self.baseline_ids = self.baseline_ids + [
            _event_id(getter(e), offset + i) for i, e in enumerate(events)
        ]
        self.baseline = EncodedBatch(
            cat=np.concatenate([self.baseline.cat, encoded.cat]),
            num=np.concatenate([self.baseline.num, encoded.num]),
        )
        self.embedding_index = self.embedding_index.extended(embed(self.net, encoded))
        self.feature_index = self.feature_index.extended(self.feature_vectors(encoded))
        return self

    def _left_out(self, flagged: int, offered: int, alpha: float) -> str:
        """What the baseline's screen left out, and a warning when it is many more than α."""
        said = (
            f"left out of the baseline: {flagged:,} of the {offered:,} events, those the model flags at "
            f"α = {alpha:g} (an attack there would hide its kind from now on)"
        )
        if flagged > max(LEFT_OUT_WARNING * alpha * offered, 10):
            return (
                f"warning: {said}; that is {flagged / offered:.1%}, far above α: normal traffic may have "
                "moved away from the baseline. If these events are vetted normal, refresh with "
                "--keep-flagged to bring them in"
            )
        return f"{said}; --keep-flagged brings them in, for events you have vetted" if flagged else said

    def cannot_flag(self, alpha: float | None = None) -> str | None:
        """Why nothing can be flagged at ``alpha`` (default: the configured one), or None when it can:
        a calibration of n events gives no p-value below 1 / (n + 1)."""
        alpha = self.config.alpha if alpha is None else alpha
        calibration = self.calibration
        if alpha >= calibration.smallest_alpha:
            return None
        held = calibration.groups[GLOBAL].size
        needed = math.ceil(1 / alpha) - 1
        return (
            f"nothing can be flagged at α = {alpha:g}: the model's {held:,} calibration events give no "
            f"p-value below {calibration.smallest_alpha:.3g}. Calibrating for this α needs at least "
            f"{_count(needed)} held-out normal events (train or refresh on about "
            f"{_count(math.ceil(needed / self.config.calibration_fraction))}), or score at α ≥ "
            f"{calibration.smallest_alpha:.3g}"
        )

    def refresh(
        self,
        events: Sequence[Event],
        *,
        calibration_only: bool = False,
        keep_flagged: bool = False,
        log: Callable[[str], None] | None = None,
    ) -> Detector:
        """Bring recent normal ``events`` in: into the baseline and the calibration
        (:meth:`rebaseline`), or into the calibration alone. Refuses events that hold none of
        the model's fields, and says which fields the events lack."""
        say: Callable[[str], None] = log or (lambda message: None)
        events = self._not_in_baseline([e for e in events if isinstance(e, dict)], say)
        for warning in self.encoder.coverage(events, "recent events").warnings():
            say(f"warning: {warning}")
        if calibration_only:
            say(f"calibrating on {len(events):,} events")
        else:
            held_out = calibration_size(len(events), self.config)
            say(
                f"adding {len(events) - held_out:,} of the {len(events):,} events to the baseline"
                f"{'' if keep_flagged else ' (less those the model flags)'}, which keeps its newest "
                f"{self.config.baseline_size:,}, and indexing it; calibrating on the other {held_out:,}"
            )
        refreshed = (
            self.calibrate(events)
            if calibration_only
            else self.rebaseline(events, keep_flagged=keep_flagged, log=say)
        )
        if (why := refreshed.cannot_flag()) is not None:
            say(f"warning: {why}")
        return refreshed

    def _not_in_baseline(self, events: list[Event], say: Callable[[str], None]) -> list[Event]:
        """``events`` but those the baseline holds already, known by their ``metadata.uid`` (an event
        without one cannot be told). Calibrated on, they score about 0 and lower every threshold: the
        training file given again to refresh flagged 3.3% of later normal traffic at α = 1%."""
        held = {uid for uid in self.baseline_ids if not uid.startswith(ROW_ID)}
        if not held:
            return events
        getter = compile_getter("metadata.uid")
        fresh = [event for event in events if getter(event) not in held]
        if events and not fresh:
            raise ValueError(
                f"all {len(events):,} recent events are in the model's baseline already (by metadata.uid): "
                "refresh with traffic the model has not seen"
            )
        if len(fresh) < len(events):
            say(
                f"warning: {len(events) - len(fresh):,} of the {len(events):,} recent events are in the "
                "model's baseline already (by metadata.uid): left out (calibrated on, they would lower "
                "the thresholds, and α would not hold)"
            )
        return fresh

    def rebaseline(
        self,
        events: Sequence[Event],
        *,
        keep_flagged: bool = False,
        log: Callable[[str], None] | None = None,
    ) -> Detector:
        """Bring recent normal ``events`` into the baseline and recalibrate on a held-out part of them.

        When normal traffic moves away from the baseline, recalibration alone holds α only by
        raising the threshold, which costs recall; new normal events in the baseline restore both.
        The newest ``baseline_size`` rows are kept; the network is not retrained.

        The events the model flags at its α stay out of the baseline unless ``keep_flagged``: an
        attack in the baseline hides every later one like it (the feature space reads the nearest
        baseline events), and a window of traffic is seldom free of them. The calibration takes
        all of the held-out part: an attack there only makes the thresholds stricter. Keep them for
        a vetted window whose normal traffic has moved: then the flagged events are what the
        baseline lacks (BENCHMARKS.md, drift).
        """
        say: Callable[[str], None] = log or (lambda message: None)
        events = [e for e in events if isinstance(e, dict)]
        if len(events) < 50:
            raise ValueError(f"need at least 50 recent events to refresh the baseline, got {len(events)}")
        cal_rows, new_rows = split_for_fit(len(events), self.config)
        recent = [events[i] for i in np.sort(new_rows)]
        if not keep_flagged:
            # at α, or at the least α the calibration can flag at, where that is more (else nothing)
            alpha = max(self.config.alpha, self.calibration.smallest_alpha)
            flagged = self.score(recent, alpha=alpha, explain=False).is_anomaly
            recent = [event for event, out in zip(recent, flagged, strict=True) if not out]
            say(self._left_out(int(flagged.sum()), len(flagged), alpha))
        getter = compile_getter("metadata.uid")
        offset = len(self.baseline)
        ids = self.baseline_ids + [_event_id(getter(e), offset + i) for i, e in enumerate(recent)]
        added = self.encoder.encode(recent)
        keep = slice(max(0, len(ids) - self.config.baseline_size), None)
        self.baseline = EncodedBatch(
            cat=np.concatenate([self.baseline.cat, added.cat])[keep],
            num=np.concatenate([self.baseline.num, added.num])[keep],
        )
        self.baseline_ids = ids[keep]
        return self.reindex([events[i] for i in cal_rows])

    def reindex(self, events: Sequence[Event]) -> Detector:
        """Build both indices over the baseline again (and the feature space's column weights) for
        the configured k, feature_k and feature_noise, then calibrate on ``events``: normal, held out
        from the baseline (their recall tunes the indices)."""
        self.embedding_index, self.feature_index, self.feature_weights = _build_indices(
            self.net, self.encoder, self.baseline, self.encoder.encode(events), self.config
        )
        return self.calibrate(events)

    def calibrate(self, events: Sequence[Event]) -> Detector:
        """Fit score standardisers and conformal calibration of every score kind on ``events``.

        ``events`` must be normal and held out from the encoder's training and from the baseline
        (:meth:`fit`'s own calibration events have joined the baseline: :meth:`admit`).
        Every score kind is calibrated, so the kind can be switched at scoring time.
        """
        self.standardisers = self._fit_standardisers()
        encoded = self.encoder.encode(events)
        scores = self.with_config(score="fusion")._components(encoded)[0]
        class_uids = [compile_getter("class_uid")(e) for e in events]
        self.calibrations = {
            kind: Calibration.fit(scores[kind], class_uids, min_group_size=self.config.min_group_size)
            for kind in SCORE_KINDS
        }
        return self

    def _fit_standardisers(self) -> dict[str, Standardiser]:
        """Leave-one-out scores of a baseline sample (its nearest neighbour, itself, dropped)."""
        rng = np.random.default_rng(self.config.seed + 1)
        rows = rng.permutation(len(self.baseline))[:FUSION_SAMPLE]
        sample = self.baseline.take(rows)
        k, feature_k = self.config.k, self.config.feature_k
        emb_d, _ = self.embedding_index.search(embed(self.net, sample), k + 1)
        feat_d, _ = self.feature_index.search(self.feature_vectors(sample), feature_k + 1)
        return {
            "embedding": Standardiser.fit(emb_d[:, 1:].mean(axis=1, dtype=np.float64)),
            "features": Standardiser.fit(feat_d[:, 1:].mean(axis=1, dtype=np.float64)),
        }

    # ------------------------------------------------------------------ score
    def with_config(self, **changes: Any) -> Detector:
        """The same fitted detector scoring with other settings.

        The score kind, alpha and the explanation's settings can change freely (every kind is
        calibrated). ``k``, ``feature_k`` and ``fusion_weight`` change the scores themselves: call
        :meth:`calibrate` on held-out normal events before reading p-values or verdicts (and
        :meth:`reindex` after changing ``feature_noise``, or k beyond what the indices were tuned for).
        """
        return replace(self, config=replace(self.config, **changes))

    def feature_vectors(self, encoded: EncodedBatch) -> npt.NDArray[np.float32]:
        """The encoded rows as the feature space's k-NN sees them: the encoder's dense vectors,
        each column weighted (:attr:`DetectorConfig.feature_noise`)."""
        vectors = self.encoder.dense(encoded)
        vectors *= self.feature_weights
        return vectors

    def _components(
        self,
        encoded: EncodedBatch,
        seconds: dict[str, float] | None = None,
        *,
        neighbours_for_explain: bool = False,
        embeddings: npt.NDArray[np.float32] | None = None,
    ) -> tuple[dict[str, npt.NDArray[np.float64]], npt.NDArray[np.int64]]:
        """Raw scores of every kind the configured score needs, and the neighbours to explain with."""
        seconds = seconds if seconds is not None else {}
        k = self.config.k
        t0 = time.perf_counter()
        if self.config.score == "features":
            embeddings = None
        elif embeddings is None:
            embeddings = embed(self.net, encoded)
        t1 = time.perf_counter()
        dense = self.feature_vectors(encoded) if self.config.score != "embedding" else None
        t2 = time.perf_counter()
        out: dict[str, npt.NDArray[np.float64]] = {}
        neighbours = np.zeros((len(encoded), 0), dtype=np.int64)
        if embeddings is not None:
            distances, neighbours = self.embedding_index.search(embeddings, k)
            # sum / k: the values of .mean(), without its wrapper's cost (a single event pays it)
            out["embedding"] = distances.sum(axis=1, dtype=np.float64) / distances.shape[1]
        if dense is not None:
            wanted = (
                max(self.config.explain_k, self.config.feature_k)
                if neighbours_for_explain
                else self.config.feature_k
            )
            distances, neighbours = self.feature_index.search(dense, wanted)
            nearest = distances[:, : self.config.feature_k]
            out["features"] = nearest.sum(axis=1, dtype=np.float64) / nearest.shape[1]
        if "embedding" in out and "features" in out:
            weight = self.config.fusion_weight
            out["fusion"] = weight * self.standardisers["embedding"](out["embedding"]) + (
                1.0 - weight
            ) * self.standardisers["features"](out["features"])
        t3 = time.perf_counter()
        seconds["embed"] = seconds.get("embed", 0.0) + t1 - t0
        seconds["encode"] = seconds.get("encode", 0.0) + t2 - t1  # the feature-space vectors
        seconds["search"] = seconds.get("search", 0.0) + t3 - t2
        return out, neighbours

    def score(
        self, events: Sequence[Event], *, alpha: float | None = None, explain: bool = True
    ) -> ScoreResult:
        """Score a batch of events (dicts). Never raises on an event's content.

        The one pipeline, in two calls for callers that keep embeddings between them (a cache):
        :meth:`prepare`, then :meth:`finish`.
        """
        return self.finish(self.prepare(events), alpha=alpha, explain=explain)[0]

    def prepare(self, events: Sequence[Event], *, keys: bool = False) -> Prepared:
        """Encode a batch; with ``keys``, the cache key of each event's embedding as well."""
        started = time.perf_counter()
        encoded = self.encoder.encode(events)
        cache_keys: list[str] = []
        if keys and self.config.score != "features":
            version = self.model_info["version"]  # the bundle's content: the same bundle, the same key
            cache_keys = [f"ocsf-anomaly:{version}:{digest.hex()}" for digest in encoded.row_digests()]
        return Prepared(events, encoded, cache_keys, {"encode": time.perf_counter() - started})

    def finish(
        self,
        prepared: Prepared,
        cached: Sequence[bytes | None] | None = None,
        *,
        alpha: float | None = None,
        explain: bool = True,
    ) -> tuple[ScoreResult, dict[str, bytes]]:
        """Score a prepared batch, in chunks that bound memory.

        ``cached`` holds, row for row, an embedding found under ``prepared.keys`` (or None); the
        others are computed and returned by key, for the caller to store.
        """
        alpha = self.config.alpha if alpha is None else alpha
        if not 0 < alpha < 1:
            raise ValueError("alpha must be between 0 and 1")
        seconds = dict(prepared.seconds)
        embeddings: npt.NDArray[np.float32] | None = None
        fresh: dict[str, bytes] = {}
        if cached is not None and prepared.keys:
            started = time.perf_counter()
            embeddings, fresh = self._embeddings(prepared, cached)
            seconds["embed"] = time.perf_counter() - started
        events, encoded = prepared.events, prepared.encoded
        parts = [
            self._score_chunk(
                events[i : i + CHUNK],
                alpha,
                explain,
                encoded.take(np.arange(i, min(i + CHUNK, len(events)))),
                embeddings[i : i + CHUNK] if embeddings is not None else None,
            )
            for i in range(0, len(events), CHUNK)
        ] or [self._score_chunk([], alpha, explain, encoded, embeddings)]
        result = parts[0] if len(parts) == 1 else concatenate(parts)
        for stage, spent in seconds.items():
            result.seconds[stage] = result.seconds.get(stage, 0.0) + spent
        return result, fresh

    def _embeddings(
        self, prepared: Prepared, cached: Sequence[bytes | None]
    ) -> tuple[npt.NDArray[np.float32], dict[str, bytes]]:
        """The batch's embeddings: those found in the cache, and the others computed (returned by key)."""
        width = self.net.d_out
        embeddings = np.empty((len(prepared.encoded), width), dtype=np.float32)
        found = np.zeros(len(embeddings), dtype=bool)
        for i, value in enumerate(cached):
            if value is not None and len(value) == width * 4:
                embeddings[i] = np.frombuffer(value, dtype=np.float32)
                found[i] = True
        # computed: a row not found, and one holding a number no network computes (NaN, infinite:
        # whoever may write to Redis wrote it; a NaN embedding scored NaN, answered as no score and no
        # anomaly), in one check over the batch
        rows = np.flatnonzero(~(found & np.isfinite(embeddings).all(axis=1)))
        if not len(rows):
            return embeddings, {}
        embeddings[rows] = embed(self.net, prepared.encoded.take(rows))
        return embeddings, {prepared.keys[i]: embeddings[i].tobytes() for i in rows.tolist()}

    def _score_chunk(
        self,
        events: Sequence[Event],
        alpha: float,
        explain: bool,
        encoded: EncodedBatch,
        embeddings: npt.NDArray[np.float32] | None,
    ) -> ScoreResult:
        seconds: dict[str, float] = {}
        components, neighbours = self._components(
            encoded, seconds, neighbours_for_explain=explain, embeddings=embeddings
        )
        t1 = time.perf_counter()
        scores = components[self.config.score]
        class_getter = compile_getter("class_uid")
        class_uids = [class_getter(e) for e in events]
        groups = self.calibration.resolve(class_uids, alpha)
        p_values = self.calibration.p_values(scores, groups, alpha)
        forced = self.encoder.empty(encoded)
        if encoded.invalid is not None:
            forced |= encoded.invalid.any(axis=1)
        p_values[forced] = 0.0  # flagged, whatever the rest says
        thresholds = self.calibration.thresholds(groups, alpha)
        t2 = time.perf_counter()
        seconds["calibrate"] = t2 - t1
        reasons: list[list[Reason]] = [[] for _ in events]
        neighbor_ids: list[list[str]] = [[] for _ in events]
        if explain and len(events):
            reasons = find_reasons(
                self.encoder, self.baseline, events, encoded, neighbours, self.config.n_reasons
            )
            neighbor_ids = [
                [self.baseline_ids[j] for j in row[: self.config.n_neighbors] if j >= 0]
                for row in neighbours.tolist()
            ]
        seconds["explain"] = time.perf_counter() - t2
        unknown = encoded.cat == UNKNOWN_INDEX
        return ScoreResult(
            score=scores,
            p_value=p_values,
            is_anomaly=p_values <= alpha + 1e-12,
            forced=forced,
            threshold=thresholds,
            group=groups,
            classes=self.calibration.class_labels(class_uids),
            components=components,
            reasons=reasons,
            neighbors=neighbor_ids,
            unknown_rate=float(unknown.sum()) / unknown.size if unknown.size else 0.0,
            mean_knn_distance=float(scores.sum()) / len(scores) if len(scores) else 0.0,
            alpha=alpha,
            seconds=seconds,
        )

    @property
    def calibration(self) -> Calibration:
        """The calibration of the score kind in use."""
        return self.calibrations[self.config.score]

    @property
    def model_info(self) -> dict[str, Any]:
        return {
            "name": self.metadata.get("name", "ocsf-anomaly"),
            "version": self.metadata.get("version", "unsaved"),
        }

    # ------------------------------------------------------------------ save and load
    def save(self, directory: Path | str, *, name: str = "ocsf-anomaly") -> Path:
        """Write the detector as a bundle to ``directory`` (replaced atomically if it exists); returns
        the path. The detector's metadata becomes the bundle's (its name, version and digests)."""
        state = self.to_state()
        path = bundle.write(state, directory, name=name)
        self.metadata = state.metadata
        return path

    @classmethod
    def load(cls, directory: Path | str) -> Detector:
        """Load a bundle written by :meth:`save`. Fails with :class:`~scorer.bundle.BundleError`,
        never runs its code."""
        directory = Path(directory)
        state = bundle.read(directory)
        with bundle.reporting(directory, EncoderError, SpecError):
            return cls.from_state(state)

    def to_state(self) -> bundle.State:
        """The detector as the plain data of a bundle's files."""
        return bundle.State(
            settings={
                "detector": self.config.to_dict(),
                "index": {
                    "embedding": self.embedding_index.describe(),
                    "features": self.feature_index.describe(),
                },
                "feature_weights": [float(w) for w in self.feature_weights],
            },
            features=self.encoder.to_dict(),
            model=self.net.config.to_dict(),
            weights=self.net.weights,
            embedding_index=self.embedding_index,
            feature_index=self.feature_index,
            baseline={"cat": self.baseline.cat, "num": self.baseline.num},
            baseline_ids=self.baseline_ids,
            calibration={
                "calibrations": {kind: c.to_dict() for kind, c in self.calibrations.items()},
                "standardisers": {
                    k: {"center": v.center, "scale": v.scale} for k, v in self.standardisers.items()
                },
            },
            metadata=self.metadata,
        )

    @classmethod
    def from_state(cls, state: bundle.State) -> Detector:
        """The detector :meth:`to_state` described. Raises :class:`~scorer.bundle.BundleError` when the
        parts do not fit together, and the parsers' errors (``EncoderError``, ``SpecError``,
        ``KeyError``, ``ValueError``…) when one is malformed."""
        encoder = FeatureEncoder.from_dict(state.features)
        model_config = ModelConfig.from_dict(state.model)
        net = InferenceNet(model_config, state.weights)
        config = DetectorConfig(**state.settings["detector"])
        weights = state.settings.get("feature_weights")
        if weights is None:  # written before feature_noise: every column in full
            config = replace(config, feature_noise=0.0)
            weights = [1.0] * state.feature_index.dim
        feature_weights = np.asarray(weights, dtype=np.float32)
        if feature_weights.shape != (state.feature_index.dim,) or not (
            np.isfinite(feature_weights).all() and (feature_weights > 0).all()
        ):
            raise bundle.BundleError("detector.json's feature_weights do not fit features.faiss")
        if state.embedding_index.dim != model_config.d_out:
            raise bundle.BundleError("embedding.faiss does not match the network's output dimension")
        baseline = EncodedBatch(
            cat=state.baseline["cat"].astype(np.int64), num=state.baseline["num"].astype(np.float32)
        )
        calibrations = {
            str(k): Calibration.from_dict(v) for k, v in state.calibration["calibrations"].items()
        }
        if set(calibrations) != set(SCORE_KINDS):
            raise bundle.BundleError(f"calibration.json must calibrate {', '.join(SCORE_KINDS)}")
        standardisers = {
            k: Standardiser(center=float(v["center"]), scale=float(v["scale"]))
            for k, v in state.calibration["standardisers"].items()
        }
        if set(standardisers) != {"embedding", "features"} or not all(
            math.isfinite(s.center) and math.isfinite(s.scale) and s.scale > 0 for s in standardisers.values()
        ):  # loaded as they were, one missing failed the first scoring call, a zero scale flagged at random
            raise bundle.BundleError(
                "calibration.json must standardise the embedding's and the feature space's scores, "
                "each with a finite center and a finite scale above 0"
            )
        _check_fit(encoder, model_config, baseline, state)
        return cls(
            config=config,
            encoder=encoder,
            net=net,
            embedding_index=state.embedding_index,
            feature_index=state.feature_index,
            feature_weights=feature_weights,
            baseline=baseline,
            baseline_ids=[str(x) for x in state.baseline_ids],
            standardisers=standardisers,
            calibrations=calibrations,
            metadata=state.metadata,
        )


def _check_fit(
    encoder: FeatureEncoder, model: ModelConfig, baseline: EncodedBatch, state: bundle.State
) -> None:
    """Raise BundleError where a bundle's parts do not fit together: each was checked alone, and a
    mismatch either failed the first scoring call inside numpy or, a vocabulary longer than the
    network's table, scored silently with another field's embeddings."""
    if list(model.cardinalities) != encoder.cardinalities or model.n_numeric != len(encoder.numeric_columns):
        raise bundle.BundleError("model.json's inputs do not fit features.json's encoder")
    rows = len(baseline)
    if (
        baseline.cat.shape[1] != len(encoder.cardinalities)
        or baseline.num.shape[1] != model.n_numeric
        or len(state.baseline_ids) != rows
    ):
        raise bundle.BundleError("baseline rows do not match the feature spec")
    if state.embedding_index.size != rows or state.feature_index.size != rows:
        raise bundle.BundleError("the k-NN indices do not hold the baseline's rows")
    cardinalities = np.asarray(encoder.cardinalities, dtype=np.int64)
    if rows and ((baseline.cat < 0).any() or (baseline.cat >= cardinalities).any()):
        raise bundle.BundleError("baseline categories are out of range")
    if not np.isfinite(baseline.num).all():
        raise bundle.BundleError("baseline.npz holds a value that is not a finite number")
    if rows and encoder.dense(baseline.take(np.arange(1))).shape[1] != state.feature_index.dim:
        raise bundle.BundleError("features.faiss does not fit features.json's encoder")


def _build_indices(
    net: InferenceNet,
    encoder: FeatureEncoder,
    baseline: EncodedBatch,
    queries: EncodedBatch,
    config: DetectorConfig,
) -> tuple[KnnIndex, KnnIndex, npt.NDArray[np.float32]]:
    """Both k-NN indices over the baseline, and the feature space's column weights; ``queries``
    (held out) measure their recall."""
    embedding_index = KnnIndex.build(
        embed(net, baseline),
        k=config.k,
        recall_queries=embed(net, queries),
        ann_threshold=config.ann_threshold,
    )
    vectors = encoder.dense(baseline)
    weights = noise_weights(vectors, baseline.num.shape[1], config.feature_noise, config.seed)
    columns, features = len(encoder.numeric_columns), len(encoder.numeric_features)
    weights[columns - features : columns] *= MISSING_WEIGHT  # one missing indicator a numeric feature, last
    vectors *= weights
    feature_index = KnnIndex.build(  # tuned for the recall of what the score reads
        vectors,
        k=config.feature_k,
        recall_queries=encoder.dense(queries) * weights,
        ann_threshold=config.ann_threshold,
    )
    return embedding_index, feature_index, weights


def noise_weights(
    vectors: npt.NDArray[np.float32], n_numeric: int, noise: float, seed: int
) -> npt.NDArray[np.float32]:
    """Weights of the feature-space columns: each of the first ``n_numeric`` (the numeric columns)
    counts for min(1, noise / rms), rms being how much it differs between NOISE_SAMPLE baseline
    events and their NOISE_NEIGHBOURS nearest others (exact search); the rest count in full.

    A difference in a column that varies even between near twins says little; a column that is
    steady among neighbours (UNSW-NB15's near-constant fields, where its attacks differ) keeps its
    weight. On the shifted protocols it raised ROC-AUC on UNSW-NB15 in file order and the demo
    company; the mean over 3 neighbours, not the weights, is what lowered NSL-KDD's shifted
    false-positive rate (BENCHMARKS.md, "How the defaults were chosen")."""
    weights = np.ones(vectors.shape[1], dtype=np.float32)
    if noise <= 0 or n_numeric == 0 or len(vectors) <= NOISE_NEIGHBOURS:
        return weights
    rows = np.random.default_rng(seed + 3).permutation(len(vectors))[:NOISE_SAMPLE]
    exact = KnnIndex.build(vectors, ann_threshold=len(vectors))
    _, ids = exact.search(vectors[rows], NOISE_NEIGHBOURS + 1)
    itself_last = np.argsort(ids == rows[:, None], axis=1, kind="stable")  # a twin may come first
    ids = np.take_along_axis(ids, itself_last, axis=1)[:, :NOISE_NEIGHBOURS]
    own = vectors[rows][:, None, :n_numeric].astype(np.float64)
    others = vectors[ids][:, :, :n_numeric]
    rms = np.sqrt(((own - others) ** 2).mean(axis=(0, 1)))
    weights[:n_numeric] = 1.0 / np.maximum(1.0, rms / noise)
    return weights


def split_for_fit(n: int, config: DetectorConfig) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Row indices (calibration, training) of ``n`` events, seeded: calibration is held out from both
    the encoder's training and the baseline."""
    order = np.random.default_rng(config.seed).permutation(n)
    n_cal = calibration_size(n, config)
    return order[:n_cal], order[n_cal:]


def calibration_size(n: int, config: DetectorConfig) -> int:
    """How many of ``n`` events :func:`split_for_fit` holds out to calibrate: a fifth, at most 20,000."""
    return min(config.max_calibration, max(20, int(n * config.calibration_fraction)))


def _count(n: int) -> str:
    """A count as people write it: 1,000,000, or 1e+300 where the digits would fill the screen."""
    return f"{n:,}" if n < 10**12 else f"{float(n):.3g}"


ROW_ID = "baseline-row-"  # the id of a baseline event without a metadata.uid: its row


def _event_id(uid: Any, row: int) -> str:
    return uid if isinstance(uid, str) and uid else f"{ROW_ID}{row}"
