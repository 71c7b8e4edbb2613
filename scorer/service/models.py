"""Where the served models come from: the registry's champion and challenger aliases, or bundle
directories. Both answer the same two questions: what should serve now (cheap, asked at start, on
reload and on every poll), and load that (slow, asked only when the answer changed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from scorer import bundle
from scorer.detector import Detector
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


@dataclass(frozen=True)
class Loaded:
    ref: ModelRef
    detector: Detector


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
