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

import errno
import hashlib
import io
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
from scorer import paths
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
BINARY_MAX_BYTES = 16 * 1024**3  # the weights, indices and baseline, each read whole into memory


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
        IndexError,  # an array of fewer dimensions than a part expects
        OverflowError,  # a number past what faiss or numpy holds
        MemoryError,  # an array header asking for more than the machine has
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


def content_digest(metadata: dict[str, Any]) -> str:
    """The whole SHA-256 of a bundle's files' digests, as its metadata lists them: what its version
    shortens to 12 digits (48 bits, which a registry compares against no better than that)."""
    return _digest_of(*_listed(metadata))


def _listed(metadata: dict[str, Any]) -> tuple[dict[str, str], tuple[str, ...]]:
    """The files' digests metadata.json lists, and the files of its format, once it lists each of
    those (and no other) with a digest."""
    names = READABLE[metadata["format"]]  # read_metadata refused a format not in READABLE
    files = metadata.get("files")
    if (
        not isinstance(files, dict)
        or set(files) != set(names)
        or not all(isinstance(digest, str) for digest in files.values())
    ):
        raise BundleError("metadata.json does not list the bundle's files")
    return files, names


def _digest_of(digests: dict[str, str], files: tuple[str, ...]) -> str:
    return hashlib.sha256("".join(digests[f] for f in files).encode()).hexdigest()


def _content_version(digests: dict[str, str], files: tuple[str, ...] = FILES) -> str:
    """The bundle's version: a digest of its files' digests (the same content, the same version)."""
    return _digest_of(digests, files)[:12]


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
        _write_json(staging / "detector.json", _without_timings(state.settings))
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


def _without_timings(settings: dict[str, Any]) -> dict[str, Any]:
    """detector.json's settings without the indices' measured search times, which only describe
    them (metadata.json keeps them): two trainings of the same model timed their searches apart, so
    the same seed and events gave two bundle versions."""
    index = {
        kind: {k: v for k, v in meta.items() if k != "seconds_per_query"}
        for kind, meta in settings["index"].items()
    }
    return {**settings, "index": index}


def read_metadata(directory: Path | str) -> dict[str, Any]:
    """The bundle's metadata.json, checked to be one this version can load."""
    with _Opened(Path(directory)) as opened:
        return _metadata(opened)


def _metadata(opened: _Opened) -> dict[str, Any]:
    directory = opened.directory
    try:
        data = opened.read("metadata.json", METADATA_MAX_BYTES)
    except _Missing:
        raise BundleError(f"{directory} is not a model bundle: metadata.json is missing") from None
    except BundleError as exc:
        raise BundleError(f"{directory}: {exc}") from None
    try:
        metadata = _json(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{directory}/metadata.json is not valid JSON: {exc}") from exc
    except RecursionError:  # read before any digest is checked: nested deeper than the parser goes
        raise BundleError(f"{directory}/metadata.json nests deeper than any bundle writes") from None
    if isinstance(metadata, dict) and metadata.get("format") == 1:
        raise BundleError(
            f"{directory} was written by an earlier ocsf-anomaly (bundle format 1, whose digests do not "
            "cover its settings): train it again (for `make run`'s demo model: delete "
            f"{paths.state_dir() / 'mlflow'})"
        )
    # a list or an object in "format" is no key of READABLE: "unhashable type" ended the command in
    # a traceback, and a serving process that followed the registry to such a version died
    found = metadata.get("format") if isinstance(metadata, dict) else None
    if (
        not isinstance(metadata, dict)
        or not isinstance(found, int)
        or isinstance(found, bool)
        or found not in READABLE
    ):
        raise BundleError(
            f"{directory}: bundle format {found!r} is not one this version reads "
            f"({', '.join(map(str, sorted(READABLE)))})"
        )
    return metadata


def read(directory: Path | str) -> State:
    """Read a bundle written by :func:`write`, each file checked against its digest before it is
    parsed. Fails with :class:`BundleError`, never runs its code.

    Each file is read once, whole, through one handle on the directory and never through a
    symbolic link, and what was hashed is what is parsed: a bundle replaced while it is read (`train
    --output` renames the new one into place) is read whole as it was, not as a mix of both, and
    no file from elsewhere is read under its digests."""
    with _Opened(Path(directory)) as opened:
        return _parts(opened, _metadata(opened))


def _parts(opened: _Opened, metadata: dict[str, Any]) -> State:
    """The bundle's parts, each file parsed once its bytes match their digest."""
    from scorer.knn import KnnIndex

    with reporting(opened.directory):
        files, names = _listed(metadata)
        if metadata.get("version") != _content_version(files, names):
            raise BundleError("the version in metadata.json does not match the bundle's files")

        def verified(name: str) -> bytes:
            """The file, once its bytes match their digest: each is parsed as soon as it is checked
            (all held at once took a third more memory than the model)."""
            data = opened.read(name, JSON_MAX_BYTES if name.endswith(".json") else BINARY_MAX_BYTES)
            if hashlib.sha256(data).hexdigest() != files[name]:
                raise BundleError(f"{name} does not match its digest in metadata.json (corrupt or altered)")
            return data

        settings = _json(verified("detector.json"))
        with _npz(verified("baseline.npz")) as arrays:
            baseline = {"cat": arrays["cat"], "num": arrays["num"]}
        weights_file = "weights.pt" if metadata["format"] == 2 else "weights.npz"
        return State(
            settings=settings,
            features=_json(verified("features.json")),
            model=_json(verified("model.json")),
            weights=_weights(verified(weights_file), metadata["format"]),
            embedding_index=KnnIndex.load(
                "embedding.faiss", verified("embedding.faiss"), settings["index"]["embedding"]
            ),
            feature_index=KnnIndex.load(
                "features.faiss", verified("features.faiss"), settings["index"]["features"]
            ),
            baseline=baseline,
            baseline_ids=_json(verified("baseline_ids.json")),
            calibration=_json(verified("calibration.json")),
            metadata=metadata,
        )


class _Missing(BundleError):
    """A file of the bundle is not there."""


class _Opened:
    """A bundle directory opened once: its files read through that handle (so all from the one
    directory, whatever is renamed meanwhile), never through a symbolic link, each whole."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        try:
            self.fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        except (FileNotFoundError, NotADirectoryError):
            raise BundleError(
                f"no model bundle at {directory} (train one with `ocsf-anomaly train EVENTS --output DIR`)"
            ) from None
        except OSError as exc:
            raise BundleError(f"{directory}: cannot open it: {exc.strerror or exc}") from exc

    def __enter__(self) -> _Opened:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)

    def read(self, name: str, max_bytes: int) -> bytes:
        """The file ``name``, whole; BundleError naming it (not the directory) when it cannot be."""
        try:
            # not blocking: a named pipe would hold the open (and a load) for ever; refused below
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=self.fd)
        except FileNotFoundError:
            raise _Missing(f"{name} is missing") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise BundleError(f"{name} is a symbolic link: a bundle's files are its own") from None
            raise BundleError(f"{name}: cannot read it: {exc.strerror or exc}") from exc
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):  # a directory, a pipe: open() would refuse or wait
                raise BundleError(f"{name} is not a regular file")
            if info.st_size > max_bytes:
                raise BundleError(
                    f"{name} is {info.st_size:,} bytes, larger than any bundle writes (at most {max_bytes:,})"
                )
        except BaseException:
            os.close(fd)
            raise
        with open(fd, "rb") as handle:
            try:
                data = handle.read(info.st_size + 1)  # its size, and a byte more if it grew meanwhile
            except OSError as exc:
                raise BundleError(f"{name}: cannot read it: {exc.strerror or exc}") from exc
        if len(data) > max_bytes:
            raise BundleError(f"{name} is larger than any bundle writes (at most {max_bytes:,} bytes)")
        return data


def _json(data: bytes) -> Any:
    """A bundle's JSON file: NaN and Infinity refused, as :func:`write` never writes them (a NaN
    scale loaded and scored NaN, an infinite calibration flagged nothing)."""
    return json.loads(data.decode("utf-8"), parse_constant=_no_constant)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is no number a bundle holds")


def _weights(data: bytes, bundle_format: int) -> dict[str, npt.NDArray[np.float32]]:
    import numpy as np

    if bundle_format == 2:  # written by torch.save: read with torch's tensors-only loader
        import torch

        tensors = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        return {str(k): v.numpy().astype(np.float32) for k, v in tensors.items()}
    with _npz(data) as arrays:
        return {name: arrays[name] for name in arrays.files}


def _npz(data: bytes) -> Any:
    """An .npz file's arrays, stored as :func:`write` stores them: a compressed member (2.4 MB
    inflating to 2 GB) is refused before it is inflated."""
    import numpy as np

    arrays = np.load(io.BytesIO(data), allow_pickle=False)
    if any(member.compress_type != zipfile.ZIP_STORED for member in arrays.zip.infolist()):
        arrays.close()
        raise ValueError("an .npz member is compressed: a bundle stores its arrays as they are")
    return arrays
