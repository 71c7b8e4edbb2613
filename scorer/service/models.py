"""Where the served models come from: the registry's champion and challenger aliases, or bundle
directories. Both answer the same two questions: what should serve now (cheap, asked at start, on
reload and on every poll), and load that (slow, asked only when the answer changed)."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from scorer import bundle
from scorer.detector import Detector, Prepared, ScoreResult
from scorer.errors import log_unexpected
from scorer.registry import ModelVersion, Registry, RegistryError, promoting
from scorer.settings import Settings


@dataclass(frozen=True)
class ModelRef:
    """One servable model: what answers name (``name``, ``version``) and where it is."""

    name: str
    version: str
    bundle_version: str
    source: str = field(compare=False)  # for people: models:/name/3, or the directory
    location: str = ""  # for the loader: the artifact URI, or the directory
    digest: str = ""  # a registered version's whole SHA-256, compared when it is fetched

    def info(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "bundle_version": self.bundle_version}


log = logging.getLogger("ocsf_anomaly.models")
FOREIGN_SAID_EVERY = 300  # seconds


class ForeignEvents:
    """Events that hold none of a model's fields are each flagged, as unlike anything it was trained
    on: right for one, but a client sending another kind of events altogether saw every one flagged
    and nothing said (`score` warns of it). Said by a long-running scorer (the service, a stream
    consumer) at most every FOREIGN_SAID_EVERY seconds a model and process, with no event's content."""

    def __init__(self, detector: Detector, name: str) -> None:
        self.detector = detector
        self.name = name
        self._said = -math.inf

    def look(self, prepared: Prepared, result: ScoreResult) -> None:
        """Says so if ``prepared`` held such events. The detector flags each whatever its score (as
        one holding an impossible number): a batch with none of either costs one check. A log line:
        it never fails the batch it looks at."""
        if not result.forced.any():
            return
        try:
            self._say(prepared)
        except Exception as exc:
            log_unexpected(log, exc, "the check for events of another kind failed")

    def _say(self, prepared: Prepared) -> None:
        now = time.monotonic()
        if now - self._said < FOREIGN_SAID_EVERY:
            return
        empty = int(self.detector.encoder.empty(prepared.encoded).sum())
        if empty:
            self._said = now
            fields = len(dict.fromkeys(f.path for f in self.detector.encoder.spec.features))
            log.warning(
                "%d of %d events in a batch held none of the %s model's %d fields: not the kind of events it "
                "describes, each is flagged, whatever the alpha (said at most every %d s)",
                empty,
                len(prepared.events),
                self.name,
                fields,
                FOREIGN_SAID_EVERY,
            )


@dataclass(frozen=True)
class Loaded:
    ref: ModelRef
    detector: Detector
    foreign: ForeignEvents = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "foreign", ForeignEvents(self.detector, self.ref.name))


class ModelSource(Protocol):
    kind: str

    def resolve(self) -> dict[str, ModelRef]:
        """What should serve, by alias: always ``champion``, ``challenger`` when there is one."""

    def load(self, ref: ModelRef) -> Loaded:
        """The model ``ref`` names, loaded (raises BundleError or RegistryError)."""


class DirectorySource:
    """Bundles in directories: the champion's and optionally a challenger's. A directory rewritten
    by ``train --output`` or ``refresh`` is a new version."""

    kind = "directory"

    def __init__(self, champion: Path, challenger: Path | None) -> None:
        self.dirs = {"champion": champion, **({"challenger": challenger} if challenger else {})}

    def resolve(self) -> dict[str, ModelRef]:
        return {alias: self._ref(bundle.read_metadata(path), path) for alias, path in self.dirs.items()}

    @staticmethod
    def _ref(metadata: dict[str, Any], path: Path | str) -> ModelRef:
        version = str(metadata.get("version"))
        return ModelRef(str(metadata.get("name")), version, version, str(path), str(path))

    def load(self, ref: ModelRef) -> Loaded:
        detector = Detector.load(ref.location)
        # named by what was read: the directory may have been rewritten since it was resolved
        return Loaded(self._ref(detector.metadata, ref.location), detector)


class RegistrySource:
    """The versions of one registered model that hold the champion and challenger aliases."""

    kind = "registry"

    def __init__(self, registry: Registry, name: str) -> None:
        self.registry = registry
        self.name = name

    def resolve(self) -> dict[str, ModelRef]:
        held = self.registry.aliases(self.name)
        champion = held.get("champion")
        if champion is None:
            raise RegistryError(
                f"no version of {self.name!r} has the alias champion in {self.registry.uri}: "
                f"promote one with {promoting(self.name)}"
            )
        refs = {"champion": self._ref(champion)}
        challenger = held.get("challenger")
        if challenger is not None:
            refs["challenger"] = self._ref(challenger)
        return refs

    @staticmethod
    def _ref(version: ModelVersion) -> ModelRef:
        return ModelRef(
            version.name,
            version.version,
            version.bundle_version,
            version.uri,
            version.source,
            version.bundle_digest,
        )

    def load(self, ref: ModelRef) -> Loaded:
        version = ModelVersion(
            ref.name, ref.version, ref.bundle_version, ref.location, bundle_digest=ref.digest
        )
        with self.registry.fetched(version) as path:
            return Loaded(ref, Detector.load(path))


def source_for(settings: Settings) -> ModelSource:
    """The directories when ``model_dir`` is set, else the registry (opened here: it may do I/O)."""
    if settings.model_dir is not None:
        return DirectorySource(settings.model_dir, settings.challenger_model_dir)
    # serving reads a registry, never makes one: a mistyped URI is an error, not a new empty store
    return RegistrySource(Registry(settings.registry_uri, create=False), settings.model_name)
