"""A fitted detector on disk: a directory of plain files, none of which is ever unpickled.

    metadata.json       versions, digests of every other file, training metrics, index recall, features
    detector.json       the detector's settings and the indices' search parameters
    features.json       feature spec, vocabularies and scalers
    model.json          network architecture
    weights.pt          network weights (a state dict; loaded with ``torch.load(weights_only=True)``)
    embedding.faiss     k-NN index of baseline embeddings
    features.faiss      k-NN index of baseline feature vectors
    baseline.npz        encoded baseline rows, for explanations (``np.load(allow_pickle=False)``)
    baseline_ids.json   ids of the baseline events (``metadata.uid``)
    calibration.json    sorted held-out scores per calibration group, and the score standardisers

Loading checks every file's SHA-256 against ``metadata.json`` first, so a truncated or altered
file fails with a message naming it, before any parser sees it. Everything that changes a score
is in those files; ``metadata.json`` only describes them (its copies of the settings are for
reading, never used), so the version, a digest of the digests, names what scores. A JSON file larger than any bundle
writes is refused unread.
"""

from __future__ import annotations

import hashlib
import json
import pickle  # only for its error type: nothing is unpickled
import platform
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import scorer

if TYPE_CHECKING:
    from scorer.detector import Detector

# torch, faiss and the engine are imported inside save() and load(), so that BundleError and
# read_metadata() cost a command nothing at start-up (the CLI checks a bundle before it spawns workers).

FORMAT = 2  # 1: the settings were read from metadata.json, outside the digests
FILES = (
    "detector.json",
    "features.json",
    "model.json",
    "weights.pt",
    "embedding.faiss",
    "features.faiss",
    "baseline.npz",
    "baseline_ids.json",
    "calibration.json",
)

METADATA_MAX_BYTES = 4 * 1024 * 1024  # metadata.json is read before any digest is checked
JSON_MAX_BYTES = 256 * 1024 * 1024  # the other JSON files (the baseline's ids, the calibration scores)


class BundleError(ValueError):
    """A bundle that cannot be loaded: missing, corrupt, altered or from an unknown format."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _content_version(digests: dict[str, str]) -> str:
    """The bundle's version: a digest of its files' digests (the same content, the same version)."""
    return hashlib.sha256("".join(digests[f] for f in FILES).encode()).hexdigest()[:12]


def _read_json(path: Path, max_bytes: int) -> Any:
    size = path.stat().st_size
    if size > max_bytes:
        raise BundleError(
            f"{path.name} is {size:,} bytes, larger than any bundle writes (at most {max_bytes:,})"
        )
    return json.loads(path.read_text(encoding="utf-8"))


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, sort_keys=True, allow_nan=False), encoding="utf-8")


def save(detector: Detector, directory: Path | str, *, name: str = "ocsf-anomaly") -> Path:
    """Write ``detector`` to ``directory`` (replaced atomically if it exists); returns the path."""
    import faiss
    import numpy as np
    import torch

    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        index = {
            "embedding": detector.embedding_index.describe(),
            "features": detector.feature_index.describe(),
        }
        _write_json(staging / "detector.json", {"detector": detector.config.to_dict(), "index": index})
        _write_json(staging / "features.json", detector.encoder.to_dict())
        _write_json(staging / "model.json", detector.model.config.to_dict())
        torch.save(detector.model.state_dict(), staging / "weights.pt")
        detector.embedding_index.save(staging / "embedding.faiss")
        detector.feature_index.save(staging / "features.faiss")
        np.savez(staging / "baseline.npz", cat=detector.baseline.cat, num=detector.baseline.num)
        _write_json(staging / "baseline_ids.json", detector.baseline_ids)
        _write_json(
            staging / "calibration.json",
            {
                "calibrations": {kind: c.to_dict() for kind, c in detector.calibrations.items()},
                "standardisers": {
                    k: {"center": v.center, "scale": v.scale} for k, v in detector.standardisers.items()
                },
            },
        )
        digests = {f: _sha256(staging / f) for f in FILES}
        version = _content_version(digests)
        metadata = {
            **detector.metadata,
            "format": FORMAT,
            "name": name,
            "version": version,
            "files": digests,
            "index": index,  # copies of detector.json's, to read
            "detector": detector.config.to_dict(),
            "versions": {
                "ocsf-anomaly": scorer.__version__,
                "python": platform.python_version(),
                "torch": torch.__version__,
                "faiss": faiss.__version__,
                "numpy": np.__version__,
            },
        }
        _write_json(staging / "metadata.json", metadata)
        detector.metadata = metadata
        if directory.exists():
            shutil.rmtree(directory)
        staging.rename(directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


def read_metadata(directory: Path | str) -> dict[str, Any]:
    """The bundle's metadata.json, checked to be one this version can load."""
    directory = Path(directory)
    if not directory.is_dir():
        raise BundleError(
            f"no model bundle at {directory} (train one with `ocsf-anomaly train EVENTS --output DIR`)"
        )
    try:
        metadata = _read_json(directory / "metadata.json", METADATA_MAX_BYTES)
    except FileNotFoundError:
        raise BundleError(f"{directory} is not a model bundle: metadata.json is missing") from None
    except BundleError as exc:
        raise BundleError(f"{directory}: {exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{directory}/metadata.json is not valid JSON: {exc}") from exc
    if isinstance(metadata, dict) and metadata.get("format") == 1:
        raise BundleError(
            f"{directory} was written by an earlier ocsf-anomaly (bundle format 1, whose digests do not "
            "cover its settings): train it again (for `make run`'s demo model: delete data/mlflow)"
        )
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise BundleError(
            f"{directory}: bundle format {metadata.get('format') if isinstance(metadata, dict) else '?'} is not {FORMAT}"
        )
    return metadata


def load(directory: Path | str) -> Detector:
    """Load a bundle written by :func:`save`. Fails with :class:`BundleError`, never runs its code."""
    import numpy as np
    import torch

    from scorer.calibration import Calibration
    from scorer.detector import SCORE_KINDS, Detector, DetectorConfig, Standardiser
    from scorer.features.encoder import EncodedBatch, EncoderError, FeatureEncoder
    from scorer.features.spec import SpecError
    from scorer.knn import KnnIndex
    from scorer.model import ModelConfig, TabularResNet

    directory = Path(directory)
    metadata = read_metadata(directory)
    files = metadata.get("files")
    if not isinstance(files, dict) or set(files) != set(FILES):
        raise BundleError(f"{directory}/metadata.json does not list the bundle's files")
    for name in FILES:
        path = directory / name
        if not path.is_file():
            raise BundleError(f"{directory}: {name} is missing")
        if _sha256(path) != files[name]:
            raise BundleError(
                f"{directory}: {name} does not match its digest in metadata.json (corrupt or altered)"
            )
    if metadata.get("version") != _content_version(files):
        raise BundleError(f"{directory}: the version in metadata.json does not match the bundle's files")
    try:
        encoder = FeatureEncoder.from_dict(_read_json(directory / "features.json", JSON_MAX_BYTES))
        model_config = ModelConfig.from_dict(_read_json(directory / "model.json", JSON_MAX_BYTES))
        model = TabularResNet(model_config)
        state = torch.load(directory / "weights.pt", map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        model.eval()
        settings = _read_json(directory / "detector.json", JSON_MAX_BYTES)
        config = DetectorConfig(**settings["detector"])
        embedding_index = KnnIndex.load(directory / "embedding.faiss", settings["index"]["embedding"])
        feature_index = KnnIndex.load(directory / "features.faiss", settings["index"]["features"])
        if embedding_index.dim != model_config.d_out:
            raise BundleError("embedding.faiss does not match the network's output dimension")
        with np.load(directory / "baseline.npz", allow_pickle=False) as arrays:
            baseline = EncodedBatch(cat=arrays["cat"].astype(np.int64), num=arrays["num"].astype(np.float32))
        baseline_ids = _read_json(directory / "baseline_ids.json", JSON_MAX_BYTES)
        calibration_data = _read_json(directory / "calibration.json", JSON_MAX_BYTES)
        calibrations = {str(k): Calibration.from_dict(v) for k, v in calibration_data["calibrations"].items()}
        if set(calibrations) != set(SCORE_KINDS):
            raise BundleError(f"calibration.json must calibrate {', '.join(SCORE_KINDS)}")
        standardisers = {
            k: Standardiser(center=float(v["center"]), scale=float(v["scale"]))
            for k, v in calibration_data["standardisers"].items()
        }
    except (BundleError, EncoderError, SpecError) as exc:
        raise BundleError(f"{directory}: {exc}") from exc
    except (
        KeyError,
        TypeError,
        ValueError,
        AttributeError,
        RuntimeError,
        OSError,
        EOFError,
        pickle.UnpicklingError,
    ) as exc:  # torch.load(weights_only=True) refuses anything but tensors with UnpicklingError
        raise BundleError(f"{directory}: the bundle is malformed ({type(exc).__name__}: {exc})") from exc
    if baseline.cat.shape[1] != len(encoder.cardinalities) or len(baseline_ids) != len(baseline):
        raise BundleError(f"{directory}: baseline rows do not match the feature spec")
    if int(baseline.cat.max(initial=0)) >= max(encoder.cardinalities, default=1) + 1:
        raise BundleError(f"{directory}: baseline categories are out of range")
    return Detector(
        config=config,
        encoder=encoder,
        model=model,
        embedding_index=embedding_index,
        feature_index=feature_index,
        baseline=baseline,
        baseline_ids=[str(x) for x in baseline_ids],
        standardisers=standardisers,
        calibrations=calibrations,
        metadata=metadata,
    )
