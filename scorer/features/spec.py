"""The feature spec: which OCSF paths feed the model, and how.

A spec is a list of features, each reading one dotted path of the event (``traffic.bytes_in``,
``unmapped.sttl``) and turning it into model inputs:

``numeric``
    a number; ``transform = "log1p"`` (signed, for counts and bytes) or ``"none"``, then robust
    scaling fitted on training data (median / IQR, falling back to the standard deviation and to 1
    for a constant field) and clipping to ``±clip``. A missing-value indicator column goes with it.
``categorical``
    a vocabulary of the values seen at least ``min_count`` times in training, the ``max_categories``
    most frequent kept; index 0 is *missing*, index 1 *unknown* (unseen or not a scalar).
``hashed``
    high-cardinality strings: a stable BLAKE2b hash into ``buckets`` buckets (0 missing, 1 not a scalar).
``time_cyclic``
    hour of day and day of week (UTC) of an epoch time in ms or s, as sin/cos pairs.
``ip_prefix``
    an IPv4 or IPv6 address reduced to its /``prefix_v4`` or /``prefix_v6`` network, then a vocabulary.
``port_bucket``
    a port number → well-known (< 1024), registered (< 49152) or ephemeral.

Specs are TOML files (``[[feature]]`` tables with these keys) or built in code.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from scorer.errors import UserError
from scorer.io import DEEPEST_FIELD

Kind = Literal["numeric", "categorical", "hashed", "time_cyclic", "ip_prefix", "port_bucket"]
KINDS: tuple[str, ...] = ("numeric", "categorical", "hashed", "time_cyclic", "ip_prefix", "port_bucket")
CATEGORICAL_KINDS = frozenset({"categorical", "hashed", "ip_prefix", "port_bucket"})


MAX_BUCKETS = 1 << 20


class SpecError(UserError, ValueError):
    """A feature spec that cannot be used, with what is wrong and where."""


@dataclass(frozen=True)
class FeatureDef:
    """One feature: a dotted OCSF path and how it becomes model input."""

    path: str
    kind: Kind
    name: str = ""
    transform: Literal["none", "log1p"] = "none"
    clip: float = 10.0
    min_count: int = 2
    max_categories: int = 1000
    buckets: int = 1024
    prefix_v4: int = 24
    prefix_v6: int = 48

    def __post_init__(self) -> None:
        for key in ("path", "kind", "name", "transform"):
            if not isinstance(getattr(self, key), str):
                raise SpecError(f"feature {self.path!r}: {key} must be a string, not {getattr(self, key)!r}")
        for key in ("min_count", "max_categories", "buckets", "prefix_v4", "prefix_v6"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool):
                raise SpecError(f"feature {self.path!r}: {key} must be a whole number, not {value!r}")
        if not isinstance(self.clip, int | float) or isinstance(self.clip, bool):
            raise SpecError(f"feature {self.path!r}: clip must be a number, not {self.clip!r}")
        if not self.name:
            suffix = "" if self.kind in ("numeric", "categorical", "hashed") else f"#{self.kind}"
            object.__setattr__(self, "name", self.path + suffix)
        if self.kind not in KINDS:
            raise SpecError(
                f"feature {self.name!r}: unknown kind {self.kind!r}; use one of {', '.join(KINDS)}"
            )
        if self.transform not in ("none", "log1p"):
            raise SpecError(f"feature {self.name!r}: transform must be 'none' or 'log1p'")
        if not self.path or any(not part for part in self.path.split(".")):
            raise SpecError(f"feature {self.name!r}: path {self.path!r} is not a dotted path")
        if self.path.count(".") >= DEEPEST_FIELD:
            raise SpecError(
                f"feature {self.name[:80]!r}…: its path holds {self.path.count('.') + 1} keys, more than "
                f"the {DEEPEST_FIELD} a feature may lie deep"
            )
        if (
            not (0 < self.clip < math.inf)
            or self.min_count < 1
            or self.max_categories < 1
            or self.buckets < 1
        ):
            raise SpecError(f"feature {self.name!r}: clip, min_count, max_categories and buckets must be > 0")
        if self.buckets > MAX_BUCKETS:  # each bucket is a row of the network's embedding table
            raise SpecError(f"feature {self.name!r}: at most {MAX_BUCKETS:,} buckets, not {self.buckets:,}")
        if not (0 <= self.prefix_v4 <= 32 and 0 <= self.prefix_v6 <= 128):
            raise SpecError(f"feature {self.name!r}: prefix_v4 must be 0–32 and prefix_v6 0–128")

    @property
    def is_categorical(self) -> bool:
        return self.kind in CATEGORICAL_KINDS

    def to_dict(self) -> dict[str, Any]:
        """Only the keys that differ from the defaults, plus path and kind."""
        defaults = FeatureDef(path=self.path, kind=self.kind)
        out: dict[str, Any] = {"path": self.path, "kind": self.kind}
        for key, value in asdict(self).items():
            if key not in out and value != getattr(defaults, key):
                out[key] = value
        return out


@dataclass(frozen=True)
class FeatureSpec:
    """An ordered list of features, plus the paths `infer` saw and left out (with the reason)."""

    features: tuple[FeatureDef, ...]
    excluded: tuple[tuple[str, str], ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.features:
            raise SpecError("a feature spec needs at least one feature")
        names = [f.name for f in self.features]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise SpecError(f"duplicate feature names: {', '.join(dupes)} (give one of each a distinct name)")

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": [f.to_dict() for f in self.features],
            "excluded": [{"path": p, "reason": r} for p, r in self.excluded],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "spec") -> FeatureSpec:
        known = {f.name for f in fields(FeatureDef)}
        raw = data.get("feature")
        if not isinstance(raw, list):
            raise SpecError(f"{source}: expected a list of [[feature]] tables")
        features = []
        for i, entry in enumerate(raw, start=1):
            if not isinstance(entry, dict):
                raise SpecError(f"{source}: feature #{i} is not a table")
            unknown = sorted(set(entry) - known)
            if unknown:
                raise SpecError(f"{source}: feature #{i} has unknown keys: {', '.join(unknown)}")
            if "path" not in entry or "kind" not in entry:
                raise SpecError(f"{source}: feature #{i} needs both 'path' and 'kind'")
            try:
                features.append(FeatureDef(**entry))
            except (TypeError, SpecError) as exc:
                raise SpecError(f"{source}: feature #{i}: {exc}") from exc
        try:
            excluded = tuple((str(e["path"]), str(e["reason"])) for e in data.get("excluded", []))
        except (KeyError, TypeError) as exc:
            raise SpecError(f"{source}: every [[excluded]] table needs 'path' and 'reason'") from exc
        return cls(features=tuple(features), excluded=excluded)

    def to_toml(self) -> str:
        lines = ['# ocsf-anomaly feature spec (its keys: the README, "Feature specs")', ""]
        for feature in self.features:
            lines.append("[[feature]]")
            lines.extend(f"{key} = {_toml_value(value)}" for key, value in feature.to_dict().items())
            lines.append("")
        for path, reason in self.excluded:
            lines.append("[[excluded]]")
            lines.append(f"path = {_toml_value(path)}")
            lines.append(f"reason = {_toml_value(reason)}")
            lines.append("")
        return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    escaped = []
    for char in str(value):
        if char in ('"', "\\"):
            escaped.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            escaped.append(f"\\u{ord(char):04x}")  # TOML basic strings take no raw control characters
        else:
            escaped.append(char)
    return '"' + "".join(escaped) + '"'


def load_spec(path: Path | str) -> FeatureSpec:
    """Read a TOML feature spec, with errors that name the file and the entry."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8-sig"))  # a BOM: Notepad saved it
    except FileNotFoundError:
        raise SpecError(f"feature spec not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not UTF-8 text: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from exc
    except OSError as exc:
        raise SpecError(f"cannot read feature spec {path}: {exc.strerror or exc}") from exc
    return FeatureSpec.from_dict(data, source=str(path))


def default_spec() -> FeatureSpec:
    """The built-in spec of common OCSF fields across classes (``scorer/features/default.toml``)."""
    text = resources.files("scorer.features").joinpath("default.toml").read_text(encoding="utf-8")
    return FeatureSpec.from_dict(tomllib.loads(text), source="default.toml")
