"""The bundle format: a fitted detector on disk, a directory of plain files, none of which is ever unpickled.

    metadata.json       versions, digests of every other file, training metrics, index recall, features
    detector.json       the detector's settings, the indices' search parameters, the feature weights
    features.json       feature spec, vocabularies and scalers
    model.json          network architecture
    weights.npz         network weights, named as in the torch state dict (``np.load(allow_pickle=False)``)
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

Format 3 keeps the weights as plain arrays, so that loading a bundle (scoring) never imports torch.
Format 2 bundles, whose weights are ``weights.pt`` (a torch state dict, read with
``torch.load(weights_only=True)``), are still read: only they import torch to load.

This module knows files, not the engine: :func:`write` and :func:`read` take and give a
:class:`State` of plain data; ``Detector.to_state``/``Detector.from_state`` (and ``Detector.save``/
``Detector.load``, which use them) turn it into a detector and back.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle  # only for its error type: nothing is unpickled
import platform
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import scorer
from scorer.errors import UserError
from scorer.io import make_folders, plain_mode, remove_folders

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from scorer.knn import KnnIndex

# faiss and numpy are imported inside write() and read(), so that BundleError and read_metadata()
# cost a command nothing at start-up (the CLI checks a bundle before it spawns workers).

# 1: the settings were read from metadata.json, outside the digests; 2: weights.pt (torch); 3: the
# feature space counted every column in full (4: detector.json holds its column weights)
FORMAT = 4
FILES = (
    "detector.json",
    "features.json",
    "model.json",
    "weights.npz",
    "embedding.faiss",
    "features.faiss",
    "baseline.npz",
    "baseline_ids.json",
    "calibration.json",
)
READABLE = {FORMAT: FILES, 3: FILES, 2: tuple("weights.pt" if f == "weights.npz" else f for f in FILES)}

METADATA_MAX_BYTES = 4 * 1024 * 1024  # metadata.json is read before any digest is checked
JSON_MAX_BYTES = 256 * 1024 * 1024  # the other JSON files (the baseline's ids, the calibration scores)


class BundleError(UserError, ValueError):
    """A bundle that cannot be loaded: missing, corrupt, altered or from an unknown format."""


@dataclass
class State:
    """A bundle's content as plain data, one field per file (``metadata`` is metadata.json)."""

    settings: dict[str, Any]  # detector.json: {"detector": settings, "index": the indices, "feature_weights"}
    features: dict[str, Any]  # features.json
    model: dict[str, Any]  # model.json
    weights: dict[str, npt.NDArray[np.float32]]  # weights.npz: the network's weights by state-dict name
    embedding_index: KnnIndex  # embedding.faiss
    feature_index: KnnIndex  # features.faiss
    baseline: dict[str, npt.NDArray[np.generic]]  # baseline.npz: "cat" and "num", as written
    baseline_ids: list[Any]  # baseline_ids.json
    calibration: dict[str, Any]  # calibration.json
    metadata: dict[str, Any]


@contextmanager
def reporting(directory: Path, *explained: type[Exception]) -> Iterator[None]:
    """Errors raised while reading ``directory`` or building from what it holds, as :class:`BundleError`
    naming it: a BundleError or one of the ``explained`` types with its message, the errors a malformed
    file raises (a parser's, torch's, faiss's) as "the bundle is malformed"."""
    named: tuple[type[Exception], ...] = (BundleError, *explained)
    try:
        yield
    except named as exc:
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
        zipfile.BadZipFile,  # an .npz file that is not a zip archive (np.load)
        zlib.error,  # nor one whose compressed members inflate
    ) as exc:  # torch.load(weights_only=True) refuses anything but tensors with UnpicklingError
        raise BundleError(f"{directory}: the bundle is malformed ({type(exc).__name__}: {exc})") from exc


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _content_version(digests: dict[str, str], files: tuple[str, ...] = FILES) -> str:
    """The bundle's version: a digest of its files' digests (the same content, the same version)."""
    return hashlib.sha256("".join(digests[f] for f in files).encode()).hexdigest()[:12]


def _read_json(path: Path, max_bytes: int) -> Any:
    info = path.stat()
    if not stat.S_ISREG(info.st_mode):  # a named pipe would hold the read (and a load) for ever
        raise BundleError(f"{path.name} is not a regular file")
    size = info.st_size
    if size > max_bytes:
        raise BundleError(
            f"{path.name} is {size:,} bytes, larger than any bundle writes (at most {max_bytes:,})"
        )
    return json.loads(path.read_text(encoding="utf-8"))


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, sort_keys=True, allow_nan=False), encoding="utf-8")


def replaceable(directory: Path) -> None:
    """Refuse to write a bundle over anything but nothing, an empty directory or another bundle:
    it is replaced whole, and `train --output` naming the folder of its events deleted them. The
    command line checks it before any work too."""
    if directory.is_symlink():  # replaced, it would be the link or what it points to: say which
        raise BundleError(
            f"{directory} is a symbolic link (to {os.readlink(directory)}): name the directory itself, "
            "or a new one, for the model bundle"
        )
    if not directory.exists():
        return
    if not directory.is_dir():
        raise BundleError(f"{directory} is a file: name a directory for the model bundle")
    here = Path.cwd()
    if directory.resolve() in (here, *here.parents):
        # renamed into place, the new bundle would leave this process and the shell that started it
        # in a deleted directory (and `.` cannot be renamed at all: "Device or resource busy")
        raise BundleError(
            f"{directory} is the current directory{'' if directory.resolve() == here else ' or above it'}: "
            f"it is replaced whole; name a new directory, e.g. {directory / 'model'}"
        )
    found = {entry.name for entry in directory.iterdir()}
    others = found - {*FILES, *READABLE[2], "metadata.json"}
    if others:
        raise BundleError(
            f"{directory} holds files that are not a model bundle ({', '.join(sorted(others)[:3])}"
            f"{', …' if len(others) > 3 else ''}): name a new or empty directory, or a bundle to replace"
        )


def write(state: State, directory: Path | str, *, name: str = "ocsf-anomaly") -> Path:
    """Write ``state`` to ``directory`` (replaced atomically if it exists); returns the path.

    ``state.metadata`` becomes the metadata written: what it held, and the name, version, digests
    and library versions.
    """
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    import faiss
    import numpy as np

    try:
        torch_version = installed("torch")  # the training's; not imported to ask
    except PackageNotFoundError:
        torch_version = None
    directory = Path(directory)
    replaceable(directory)
    made = make_folders(directory.parent)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    old: Path | None = None  # the bundle replaced, moved aside until the new one is in its place
    try:
        plain_mode(staging)
        _write_json(staging / "detector.json", state.settings)
        _write_json(staging / "features.json", state.features)
        _write_json(staging / "model.json", state.model)
        np.savez(staging / "weights.npz", allow_pickle=False, **state.weights)  # type: ignore[arg-type]
        state.embedding_index.save(staging / "embedding.faiss")
        state.feature_index.save(staging / "features.faiss")
        np.savez(staging / "baseline.npz", cat=state.baseline["cat"], num=state.baseline["num"])
        _write_json(staging / "baseline_ids.json", state.baseline_ids)
        _write_json(staging / "calibration.json", state.calibration)
        digests = {f: _sha256(staging / f) for f in FILES}
        version = _content_version(digests)
        metadata = {
            **state.metadata,
            "format": FORMAT,
            "name": name,
            "version": version,
            "files": digests,
            "index": state.settings["index"],  # copies of detector.json's, to read
            "detector": state.settings["detector"],
            "versions": {
                "ocsf-anomaly": scorer.__version__,
                "python": platform.python_version(),
                "torch": torch_version,
                "faiss": faiss.__version__,
                "numpy": np.__version__,
            },
        }
        _write_json(staging / "metadata.json", metadata)
        state.metadata = metadata
        if directory.exists():
            # one assignment: ``old`` is None or a path inside its own temporary folder, never that folder
            old = (
                Path(tempfile.mkdtemp(prefix=f".{directory.name}.replaced.", dir=directory.parent)) / "bundle"
            )
            directory.rename(old)
        staging.rename(directory)
    except BaseException:  # Ctrl-C or SIGTERM included: the bundle that was there stays there
        if old is not None and old.exists() and not directory.exists():
            old.rename(directory)
        shutil.rmtree(staging, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old.parent, ignore_errors=True)
        remove_folders(made)  # nothing of a failed write remains, the folders it made included
        raise
    if old is not None:
        shutil.rmtree(old.parent, ignore_errors=True)
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
    except RecursionError:  # read before any digest is checked: nested deeper than the parser goes
        raise BundleError(f"{directory}/metadata.json nests deeper than any bundle writes") from None
    except OSError as exc:  # a directory of that name, no permission: the service answered 500
        raise BundleError(f"{directory}: cannot read metadata.json: {exc.strerror or exc}") from exc
    if isinstance(metadata, dict) and metadata.get("format") == 1:
        raise BundleError(
            f"{directory} was written by an earlier ocsf-anomaly (bundle format 1, whose digests do not "
            "cover its settings): train it again (for `make run`'s demo model: delete data/mlflow)"
        )
    if not isinstance(metadata, dict) or metadata.get("format") not in READABLE:
        raise BundleError(
            f"{directory}: bundle format {metadata.get('format') if isinstance(metadata, dict) else '?'} is not "
            f"one this version reads ({', '.join(map(str, sorted(READABLE)))})"
        )
    return metadata


def read(directory: Path | str) -> State:
    """Read a bundle written by :func:`write`, every file checked against its digest first. Fails with
    :class:`BundleError`, never runs its code."""
    import numpy as np

    from scorer.knn import KnnIndex

    directory = Path(directory)
    metadata = read_metadata(directory)
    names = READABLE[metadata["format"]]
    files = metadata.get("files")
    if not isinstance(files, dict) or set(files) != set(names):
        raise BundleError(f"{directory}/metadata.json does not list the bundle's files")
    for name in names:
        path = directory / name
        if not path.is_file():
            raise BundleError(f"{directory}: {name} is missing")
        try:
            digest = _sha256(path)
        except OSError as exc:
            raise BundleError(f"{directory}: cannot read {name}: {exc.strerror or exc}") from exc
        if digest != files[name]:
            raise BundleError(
                f"{directory}: {name} does not match its digest in metadata.json (corrupt or altered)"
            )
    if metadata.get("version") != _content_version(files, names):
        raise BundleError(f"{directory}: the version in metadata.json does not match the bundle's files")
    with reporting(directory):
        features = _read_json(directory / "features.json", JSON_MAX_BYTES)
        model = _read_json(directory / "model.json", JSON_MAX_BYTES)
        weights = _read_weights(directory, metadata["format"])
        settings = _read_json(directory / "detector.json", JSON_MAX_BYTES)
        embedding_index = KnnIndex.load(directory / "embedding.faiss", settings["index"]["embedding"])
        feature_index = KnnIndex.load(directory / "features.faiss", settings["index"]["features"])
        with np.load(directory / "baseline.npz", allow_pickle=False) as arrays:
            baseline = {"cat": arrays["cat"], "num": arrays["num"]}
        baseline_ids = _read_json(directory / "baseline_ids.json", JSON_MAX_BYTES)
        calibration = _read_json(directory / "calibration.json", JSON_MAX_BYTES)
    return State(
        settings=settings,
        features=features,
        model=model,
        weights=weights,
        embedding_index=embedding_index,
        feature_index=feature_index,
        baseline=baseline,
        baseline_ids=baseline_ids,
        calibration=calibration,
        metadata=metadata,
    )


def _read_weights(directory: Path, bundle_format: int) -> dict[str, npt.NDArray[np.float32]]:
    import numpy as np

    if bundle_format == 2:  # written by torch.save: read with torch's tensors-only loader
        import torch

        tensors = torch.load(directory / "weights.pt", map_location="cpu", weights_only=True)
        return {str(k): v.numpy().astype(np.float32) for k, v in tensors.items()}
    with np.load(directory / "weights.npz", allow_pickle=False) as arrays:
        return {name: arrays[name] for name in arrays.files}
