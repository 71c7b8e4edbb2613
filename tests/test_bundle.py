"""Model bundles: save/load gives the same scores, the format is read without the engine, corrupt
bundles are refused by name, never unpickled; and the conformal p-values of a small fitted detector
are calibrated on normal demo events."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from scipy import stats

from scorer import bundle
from scorer.bundle import FILES, BundleError
from scorer.demo import generate_events
from scorer.detector import Detector

Event = dict[str, Any]


@pytest.fixture(scope="module")
def saved(fitted_detector: Detector, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fitted_detector.with_config().save(tmp_path_factory.mktemp("bundle") / "model", name="test-model")


@pytest.fixture(scope="module")
def loaded(saved: Path) -> Detector:
    return Detector.load(saved)


@pytest.fixture(scope="module")
def mixed_events() -> list[Event]:
    events, _ = generate_events(400, seed=1, anomaly_rate=0.1)
    return events


@pytest.fixture
def copy(saved: Path, tmp_path: Path) -> Path:
    """A private copy of the saved bundle, to damage."""
    return Path(shutil.copytree(saved, tmp_path / "copy"))


def _metadata(directory: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((directory / "metadata.json").read_text(encoding="utf-8"))
    return data


def _rewrite_digest(directory: Path, name: str, *, version: bool = True) -> None:
    """Make metadata.json agree with the (altered) file ``name``, as an attacker with write access
    would: its digest, and (unless ``version`` is false) the bundle version derived from the digests."""
    metadata = _metadata(directory)
    metadata["files"][name] = hashlib.sha256((directory / name).read_bytes()).hexdigest()
    if version:
        joined = "".join(metadata["files"][f] for f in bundle.READABLE[metadata["format"]])
        metadata["version"] = hashlib.sha256(joined.encode()).hexdigest()[:12]
    (directory / "metadata.json").write_text(json.dumps(metadata), encoding="utf-8")


# ------------------------------------------------------------------ round trip
def test_save_writes_every_file(saved: Path) -> None:
    assert sorted(p.name for p in saved.iterdir()) == sorted([*FILES, "metadata.json"])
    assert not [p for p in saved.parent.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_scores_equal_after_load(
    fitted_detector: Detector, loaded: Detector, mixed_events: list[Event]
) -> None:
    before = fitted_detector.score(mixed_events)
    after = loaded.score(mixed_events)
    np.testing.assert_allclose(after.score, before.score, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(after.p_value, before.p_value)
    np.testing.assert_array_equal(after.is_anomaly, before.is_anomaly)
    np.testing.assert_allclose(after.threshold, before.threshold)
    assert after.group == before.group
    for kind in before.components:
        np.testing.assert_allclose(after.components[kind], before.components[kind], rtol=1e-6, atol=1e-6)
    assert [[r.field for r in rs] for rs in after.reasons] == [[r.field for r in rs] for rs in before.reasons]
    assert after.neighbors == before.neighbors


def test_every_score_kind_survives_the_round_trip(
    fitted_detector: Detector, loaded: Detector, mixed_events: list[Event]
) -> None:
    for kind in ("embedding", "features", "fusion"):
        a = fitted_detector.with_config(score=kind).score(mixed_events[:100], explain=False)
        b = loaded.with_config(score=kind).score(mixed_events[:100], explain=False)
        np.testing.assert_allclose(b.score, a.score, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(b.p_value, a.p_value)


def test_loaded_detector_knows_its_name_and_version(saved: Path, loaded: Detector) -> None:
    assert loaded.model_info == {"name": "test-model", "version": _metadata(saved)["version"]}


def test_metadata(saved: Path, fitted_detector: Detector) -> None:
    meta = _metadata(saved)
    assert meta["format"] == bundle.FORMAT
    assert meta["name"] == "test-model"
    assert isinstance(meta["version"], str)
    assert len(meta["version"]) == 12
    int(meta["version"], 16)
    assert set(meta["files"]) == set(FILES)
    for name, digest in meta["files"].items():
        assert digest == hashlib.sha256((saved / name).read_bytes()).hexdigest(), name
    for kind in ("embedding", "features"):
        index = meta["index"][kind]
        assert index["kind"] == "exact"
        assert index["recall_at_k"] == 1.0
        assert index["size"] == 1_000
        assert index["dim"] > 0
    assert meta["features"] == [f.name for f in fitted_detector.encoder.spec.features]
    assert "class_uid" in meta["features"]
    assert {e["path"]: e["reason"] for e in meta["excluded"]}["metadata.uid"] == "identifier"
    assert set(meta["versions"]) >= {"ocsf-anomaly", "python", "torch", "faiss", "numpy"}
    assert meta["versions"]["numpy"] == np.__version__
    assert meta["training"]["events"] == 3_000
    assert meta["training"]["baseline_events"] == 1_000
    assert meta["detector"]["baseline_size"] == 1_000
    assert meta["calibration"]["global"] == meta["training"]["calibration_events"]


def test_version_is_a_digest_of_the_content(saved: Path, fitted_detector: Detector, tmp_path: Path) -> None:
    again = fitted_detector.with_config().save(tmp_path / "again", name="test-model")
    assert _metadata(again)["version"] == _metadata(saved)["version"]
    assert _metadata(again)["files"] == _metadata(saved)["files"]


def test_the_measured_search_time_is_no_part_of_the_version(
    fitted_detector: Detector, tmp_path: Path
) -> None:
    """detector.json, under the digests, held each index's measured seconds per query: two trainings
    of the same model on the same events with the same seed were two bundle versions."""
    versions, timings = [], []
    detector = fitted_detector.with_config()
    measured = detector.feature_index.seconds_per_query  # the index may be the shared detector's
    try:
        for seconds in (0.001, 0.002):
            detector.feature_index.seconds_per_query = seconds
            saved = detector.save(tmp_path / f"timed-{seconds}", name="test-model")
            versions.append(_metadata(saved)["version"])
            timings.append(_metadata(saved)["index"]["features"]["seconds_per_query"])
            written = json.loads((saved / "detector.json").read_text(encoding="utf-8"))
            assert "seconds_per_query" not in written["index"]["features"]
    finally:
        detector.feature_index.seconds_per_query = measured
    assert versions[0] == versions[1]
    assert timings == [0.001, 0.002]  # described in metadata.json, which no digest covers


def test_save_replaces_an_existing_bundle_and_nothing_else(fitted_detector: Detector, tmp_path: Path) -> None:
    """A bundle replaces a bundle whole; a directory holding anything else is refused and kept (it
    was deleted: `train --output` naming the folder of its events lost them)."""
    from scorer.bundle import BundleError

    target = tmp_path / "model"
    fitted_detector.with_config().save(target)
    first = Detector.load(target).model_info["version"]
    fitted_detector.with_config(k=3).save(target)
    assert Detector.load(target).model_info["version"] != first
    folder = tmp_path / "events"
    folder.mkdir()
    (folder / "events.jsonl").write_text("{}\n", encoding="utf-8")
    with pytest.raises(BundleError, match="not a model bundle"):
        fitted_detector.with_config().save(folder)
    assert (folder / "events.jsonl").read_text(encoding="utf-8") == "{}\n"


def test_a_replacement_stopped_before_the_new_bundle_is_in_place_keeps_the_old_one(
    fitted_detector: Detector, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The old bundle was deleted before the new one was renamed into its place, and a Ctrl-C or
    SIGTERM between the two (`train --output EXISTING`, `refresh --output SAME`) then deleted the new
    one too: no bundle at all. Stopped there now, the old one is back where it was."""
    target = tmp_path / "model"
    fitted_detector.with_config().save(target)
    first = Detector.load(target).model_info["version"]
    rename = Path.rename

    def stopped_at_the_last_step(self: Path, to: Any) -> Any:
        if Path(to) == target and self.name.startswith(".model."):  # the new bundle into its place
            raise KeyboardInterrupt
        return rename(self, to)

    monkeypatch.setattr(Path, "rename", stopped_at_the_last_step)
    with pytest.raises(KeyboardInterrupt):
        fitted_detector.with_config(k=3).save(target)
    monkeypatch.undo()
    assert Detector.load(target).model_info["version"] == first
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # nothing half-written left beside it


def test_a_write_that_fails_leaves_no_folder_it_made(
    fitted_detector: Detector, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`train --output a/b/model` that failed while writing (a full disk) left the empty folders
    a and a/b behind, where score and split remove the ones they made."""
    import numpy as np

    def full(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", full)
    with pytest.raises(OSError, match="No space left"):
        fitted_detector.save(tmp_path / "a" / "b" / "model")
    assert list(tmp_path.iterdir()) == []


def test_a_symbolic_link_is_no_place_for_a_bundle(fitted_detector: Detector, tmp_path: Path) -> None:
    """`train --output current` where current -> v1 trained, then failed on rmtree's refusal of a
    link: the work lost, nothing written. Refused before anything is written, v1 untouched."""
    version = tmp_path / "v1"
    fitted_detector.with_config().save(version)
    (tmp_path / "current").symlink_to(version)
    with pytest.raises(
        BundleError, match=r"current is a symbolic link \(to .*v1\): name the directory itself"
    ):
        fitted_detector.with_config(k=3).save(tmp_path / "current")
    assert (
        Detector.load(version).model_info["version"]
        == Detector.load(tmp_path / "current").model_info["version"]
    )


def test_the_format_is_read_without_the_engine(saved: Path) -> None:
    """bundle.read gives plain data and imports no part of the engine (the detector, the network)."""
    code = (
        "import sys\n"
        "from scorer import bundle\n"
        "state = bundle.read(sys.argv[1])\n"
        "print(sorted(state.baseline), len(state.baseline_ids))\n"
        "print(sorted(m for m in sys.modules if m in ('scorer.detector', 'scorer.model', 'scorer.features')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(saved)], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out == ["['cat', 'num'] 1000", "[]"]


def test_scoring_a_loaded_bundle_never_imports_torch(saved: Path) -> None:
    """Only training needs torch (1.2 s and about 200 MB a process): loading and scoring run numpy."""
    code = (
        "import sys\n"
        "from scorer.detector import Detector\n"
        "result = Detector.load(sys.argv[1]).score([{'class_uid': 4001}])\n"
        "print(len(result), 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(saved)], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "False"]


def _as_format_2(directory: Path) -> None:
    """Rewrite a bundle as the format before this one wrote it: the weights as a torch state dict."""
    with np.load(directory / "weights.npz") as arrays:
        torch.save({name: torch.from_numpy(arrays[name]) for name in arrays.files}, directory / "weights.pt")
    (directory / "weights.npz").unlink()
    metadata = _metadata(directory)
    metadata["format"] = 2
    metadata["files"].pop("weights.npz")
    (directory / "metadata.json").write_text(json.dumps(metadata), encoding="utf-8")
    _rewrite_digest(directory, "weights.pt")


def test_a_bundle_of_the_previous_format_still_loads_and_scores_the_same(
    copy: Path, loaded: Detector, mixed_events: list[Event]
) -> None:
    _as_format_2(copy)  # what registries held before the weights became plain arrays
    old = Detector.load(copy)
    assert old.model_info["version"] != loaded.model_info["version"]  # other files, another version
    np.testing.assert_array_equal(old.score(mixed_events).score, loaded.score(mixed_events).score)


def test_to_state_and_from_state_rebuild_the_detector(loaded: Detector, mixed_events: list[Event]) -> None:
    rebuilt = Detector.from_state(loaded.to_state())
    assert rebuilt.config == loaded.config
    assert rebuilt.metadata == loaded.metadata
    before, after = loaded.score(mixed_events), rebuilt.score(mixed_events)
    np.testing.assert_array_equal(after.score, before.score)
    np.testing.assert_array_equal(after.p_value, before.p_value)
    assert after.neighbors == before.neighbors


# ------------------------------------------------------------------ corrupt bundles
def _truncate(p: Path) -> str:
    data = (p / "weights.npz").read_bytes()
    (p / "weights.npz").write_bytes(data[: len(data) // 2])
    return "weights.npz"


def _flip_faiss(p: Path) -> str:
    data = bytearray((p / "embedding.faiss").read_bytes())
    data[len(data) // 2] ^= 0x01
    (p / "embedding.faiss").write_bytes(bytes(data))
    return "embedding.faiss"


def _delete_calibration(p: Path) -> str:
    (p / "calibration.json").unlink()
    return "calibration.json"


def _bad_metadata(p: Path) -> str:
    (p / "metadata.json").write_text("{ this is not json", encoding="utf-8")
    return "metadata.json"


def _delete_metadata(p: Path) -> str:
    (p / "metadata.json").unlink()
    return "metadata.json"


def _edit_features(p: Path) -> str:
    features = json.loads((p / "features.json").read_text(encoding="utf-8"))
    features["vocab"]["class_uid"] = [*features["vocab"]["class_uid"], "9999"]
    (p / "features.json").write_text(json.dumps(features), encoding="utf-8")
    return "features.json"


def _edit_settings(p: Path) -> str:
    settings = json.loads((p / "detector.json").read_text(encoding="utf-8"))
    settings["detector"]["k"] = 100_000_000
    (p / "detector.json").write_text(json.dumps(settings), encoding="utf-8")
    return "detector.json"


def _empty_baseline_ids(p: Path) -> str:
    (p / "baseline_ids.json").write_bytes(b"")
    return "baseline_ids.json"


@pytest.mark.parametrize(
    "damage",
    [
        _truncate,
        _flip_faiss,
        _delete_calibration,
        _bad_metadata,
        _delete_metadata,
        _edit_features,
        _edit_settings,
        _empty_baseline_ids,
    ],
)
def test_corrupt_bundle_is_refused_naming_the_file(copy: Path, damage: Any) -> None:
    name = damage(copy)
    with pytest.raises(BundleError) as info:
        Detector.load(copy)
    assert name in str(info.value)
    assert str(copy) in str(info.value)


def test_missing_directory(tmp_path: Path) -> None:
    missing = tmp_path / "does" / "not" / "exist"
    with pytest.raises(BundleError, match="no model bundle") as info:
        Detector.load(missing)
    assert str(missing) in str(info.value)


def test_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match=r"metadata\.json is missing") as info:
        Detector.load(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_a_file_instead_of_a_directory(tmp_path: Path) -> None:
    path = tmp_path / "model.tar"
    path.write_bytes(b"not a directory")
    with pytest.raises(BundleError):
        Detector.load(path)


@pytest.mark.parametrize(
    "change",
    [
        {"format": bundle.FORMAT + 1},
        {"format": None},
        # "unhashable type: 'list'": a traceback, and a serving process following the registry to
        # such a version died, its replacements too, until the service gave up (the review)
        {"format": [bundle.FORMAT]},
        {"format": {}},
        {"format": str(bundle.FORMAT)},
        {"files": {"weights.npz": "0" * 64}},
        {"files": None},
    ],
    ids=[
        "future-format",
        "no-format",
        "format-list",
        "format-object",
        "format-text",
        "files-incomplete",
        "files-null",
    ],
)
def test_metadata_that_this_version_cannot_load(copy: Path, change: dict[str, Any]) -> None:
    metadata = _metadata(copy) | change
    (copy / "metadata.json").write_text(json.dumps(metadata), encoding="utf-8")
    with pytest.raises(BundleError, match=r"metadata\.json|format"):
        Detector.load(copy)


def test_a_bundle_of_the_first_format_is_refused_saying_what_to_do(
    copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Said with the registry's real folder: it named data/mlflow wherever OCSF_ANOMALY_HOME put it
    (the upgrade review)."""
    metadata = _metadata(copy) | {"format": 1}  # its settings were read from metadata.json, undigested
    (copy / "metadata.json").write_text(json.dumps(metadata), encoding="utf-8")
    monkeypatch.setenv("OCSF_ANOMALY_HOME", str(tmp_path / "home"))
    with pytest.raises(BundleError, match="train it again") as refused:
        Detector.load(copy)
    assert f"delete {tmp_path / 'home' / 'mlflow'}" in str(refused.value)


def test_the_settings_in_metadata_json_are_only_a_description(
    copy: Path, loaded: Detector, mixed_events: list[Event]
) -> None:
    metadata = _metadata(copy)
    metadata["detector"]["k"] = 100_000_000  # an edit outside the digests changes no score
    metadata["index"]["features"]["param"] = 1
    (copy / "metadata.json").write_text(json.dumps(metadata), encoding="utf-8")
    edited = Detector.load(copy)
    assert edited.config == loaded.config
    assert edited.model_info == loaded.model_info
    np.testing.assert_array_equal(
        edited.score(mixed_events, explain=False).score, loaded.score(mixed_events, explain=False).score
    )


def test_a_metadata_json_that_cannot_be_read_is_a_bundle_error(copy: Path) -> None:
    """An OSError reading metadata.json (a directory of that name here; no permission likewise) was
    no BundleError: the service's reload of a bundle directory answered 500."""
    (copy / "metadata.json").unlink()
    (copy / "metadata.json").mkdir()
    with pytest.raises(BundleError, match=r"metadata\.json is not a regular file"):
        bundle.read_metadata(copy)
    with pytest.raises(BundleError, match=r"metadata\.json is not a regular file"):
        Detector.load(copy)


def test_a_bundle_replaced_while_it_is_read_is_read_whole_as_it_was(
    copy: Path, tmp_path: Path, loaded: Detector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files were hashed by path, then opened again by path: a bundle renamed into place meanwhile
    (`train --output` while `serve --model DIR` reloads) was read as the other one's files under
    the first one's version, or a mix of both. Each file is read once, through one handle on the
    directory, and what was hashed is what is parsed; a symbolic link is not followed."""
    other = Path(shutil.copytree(copy, tmp_path / "other"))
    weights = dict(np.load(other / "weights.npz"))
    weights = {name: value + np.float32(1) for name, value in weights.items()}
    np.savez(other / "weights.npz", **weights)
    _rewrite_digest(other, "weights.npz")
    reading = bundle._Opened.read
    swapped = []

    def read(self: Any, name: str, max_bytes: int) -> bytes:
        if name == "weights.npz" and not swapped:  # the old one moved aside, the new one in its place
            copy.rename(tmp_path / "aside")
            other.rename(copy)
            swapped.append(name)
        return reading(self, name, max_bytes)

    monkeypatch.setattr(bundle._Opened, "read", read)
    first = Detector.load(copy)
    assert swapped
    assert first.model_info["version"] == loaded.model_info["version"]
    events, _ = generate_events(50, seed=3)
    np.testing.assert_array_equal(
        first.score(events, explain=False).score, loaded.score(events, explain=False).score
    )
    monkeypatch.undo()
    assert Detector.load(copy).model_info["version"] != loaded.model_info["version"]  # the new one

    (copy / "weights.npz").rename(tmp_path / "weights.npz")
    (copy / "weights.npz").symlink_to(tmp_path / "weights.npz")
    with pytest.raises(BundleError, match=r"weights\.npz is a symbolic link"):
        Detector.load(copy)


def test_a_metadata_json_that_is_a_named_pipe_is_refused_not_waited_on(copy: Path) -> None:
    """A FIFO named metadata.json held the load for ever (found by fuzzing the registry): the serving
    process, a reload, the command all waited on a read that no writer would end."""
    (copy / "metadata.json").unlink()
    os.mkfifo(copy / "metadata.json")
    with pytest.raises(BundleError, match=r"metadata\.json is not a regular file"):
        bundle.read_metadata(copy)


def test_a_metadata_json_nested_past_the_parser_is_a_bundle_error(copy: Path) -> None:
    """metadata.json is read before any digest is checked: nested 100,000 deep (200 KB) it was a
    RecursionError traceback from every command and from serve's start."""
    (copy / "metadata.json").write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    with pytest.raises(BundleError, match=r"metadata\.json nests deeper than any bundle writes"):
        Detector.load(copy)


def test_metadata_that_is_not_an_object(copy: Path) -> None:
    (copy / "metadata.json").write_text("[1, 2, 3]", encoding="utf-8")
    with pytest.raises(BundleError, match="format"):
        Detector.load(copy)


def _standardisers(change: Any) -> Any:
    def edit(p: Path) -> str:
        calibration = json.loads((p / "calibration.json").read_text(encoding="utf-8"))
        change(calibration["standardisers"])
        (p / "calibration.json").write_text(json.dumps(calibration), encoding="utf-8")
        return "calibration.json"

    return edit


def _detector_setting(name: str, value: Any) -> Any:
    def edit(p: Path) -> str:
        settings = json.loads((p / "detector.json").read_text(encoding="utf-8"))
        settings["detector"][name] = value
        (p / "detector.json").write_text(json.dumps(settings), encoding="utf-8")
        return "detector.json"

    return edit


def _json_file(name: str, change: Any) -> Any:
    def edit(p: Path) -> str:
        data = json.loads((p / name).read_text(encoding="utf-8"))
        change(data)
        (p / name).write_text(json.dumps(data), encoding="utf-8")  # NaN and Infinity as Python writes them
        return name

    return edit


def _first_scaler(change: dict[str, Any]) -> Any:
    return _json_file("features.json", lambda f: next(iter(f["numeric"].values())).update(change))


def _first_vocabulary_longer(f: dict[str, Any]) -> None:
    next(iter(f["vocab"].values())).extend(["one more", "and another"])


def _npz(name: str, change: Any) -> Any:
    def edit(p: Path) -> str:
        arrays = dict(np.load(p / name))
        change(arrays)
        np.savez(p / name, **arrays)
        return name

    return edit


def _nan_in_first_weight(arrays: dict[str, Any]) -> None:
    first = next(iter(arrays))
    arrays[first] = arrays[first].copy()
    arrays[first].flat[0] = np.nan


def _baseline_category(value: int) -> Any:
    def change(arrays: dict[str, Any]) -> None:
        arrays["cat"] = arrays["cat"].copy()
        arrays["cat"][0, 0] = value

    return _npz("baseline.npz", change)


@pytest.mark.parametrize(
    ("edit", "said"),
    [
        (_first_scaler({"scale": float("nan")}), "NaN is no number a bundle holds"),
        (_first_scaler({"scale": 0}), "needs a finite center and a finite scale above 0"),
        (
            _json_file(
                "calibration.json",
                lambda c: c["calibrations"]["fusion"]["groups"]["global"].append(float("inf")),
            ),
            "Infinity is no number a bundle holds",
        ),
        (_npz("weights.npz", _nan_in_first_weight), "holds a value that is not a finite number"),
        (
            _json_file("features.json", _first_vocabulary_longer),
            "model.json's inputs do not fit features.json's encoder",
        ),
        (_json_file("model.json", lambda m: m.update(n_blocks=3_000_000)), "(3000000 blocks)"),
        (_baseline_category(-1), "baseline categories are out of range"),
        (_baseline_category(10_000), "baseline categories are out of range"),
        (_standardisers(lambda s: s.pop("embedding")), "standardise the embedding's and the feature space's"),
        (_standardisers(lambda s: s["features"].update(scale=0)), "a finite scale above 0"),
        (_standardisers(lambda s: s["features"].update(center="nan")), "a finite center"),
        (_detector_setting("k", 5.5), "k must be a whole number, not 5.5"),
        (_detector_setting("feature_k", "3"), "feature_k must be a whole number, not '3'"),
        (_detector_setting("fusion_weight", True), "fusion_weight must be a number, not True"),
    ],
    ids=[
        "nan-scale",
        "zero-scaler",
        "infinite-calibration",
        "nan-weight",
        "vocabulary-longer-than-the-network",
        "blocks-the-weights-do-not-hold",
        "negative-category",
        "category-past-its-column",
        "no-embedding-standardiser",
        "zero-scale",
        "nan-center",
        "fractional-k",
        "k-as-text",
        "weight-as-bool",
    ],
)
def test_parts_that_load_but_cannot_score_are_refused_at_load(copy: Path, edit: Any, said: str) -> None:
    """Consistent digests over parts that do not fit (a writer's bug, or an edit): the bundle loaded,
    then failed at the first scoring call (KeyError, TypeError, inside numpy), scored every event inf
    (flagging at random) or NaN (flagging nothing), or, a vocabulary longer than the network's table,
    scored with another field's embeddings without a word."""
    _rewrite_digest(copy, edit(copy))
    with pytest.raises(BundleError, match=re.escape(said)):
        Detector.load(copy)


def test_altered_file_with_its_digest_rewritten_is_still_checked(copy: Path) -> None:
    calibration = json.loads((copy / "calibration.json").read_text(encoding="utf-8"))
    calibration["calibrations"]["fusion"]["groups"]["global"] = []
    (copy / "calibration.json").write_text(json.dumps(calibration), encoding="utf-8")
    _rewrite_digest(copy, "calibration.json")
    with pytest.raises(BundleError, match=r"global"):
        Detector.load(copy)


def test_a_digest_rewritten_without_the_version_is_refused(copy: Path) -> None:
    (copy / "baseline_ids.json").write_text('["x"]', encoding="utf-8")
    _rewrite_digest(copy, "baseline_ids.json", version=False)
    with pytest.raises(BundleError, match=r"version in metadata\.json does not match"):
        Detector.load(copy)


# ------------------------------------------------------------------ no code runs from a bundle
class _Exploit:
    """Unpickling this object would call open(marker, "w"): the marker file proves code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.marker, "w"))


def _plant_exploit(directory: Path, marker: Path, bundle_format: int) -> str:
    """Replace the weights with a pickle that would run code, and make the digests agree."""
    if bundle_format == 2:
        _as_format_2(directory)
        torch.save({"state": _Exploit(marker)}, directory / "weights.pt")
        _rewrite_digest(directory, "weights.pt")
        return "weights.pt"
    payload = np.empty(1, dtype=object)
    payload[0] = _Exploit(marker)
    np.savez(directory / "weights.npz", **{"input.weight": payload})  # an object array: pickled inside
    _rewrite_digest(directory, "weights.npz")
    return "weights.npz"


@pytest.mark.parametrize("bundle_format", [bundle.FORMAT, 2])
def test_weights_are_never_unpickled(copy: Path, tmp_path: Path, bundle_format: int) -> None:
    marker = tmp_path / "pwned"
    name = _plant_exploit(copy, marker, bundle_format)
    with pytest.raises(BundleError, match=r"malformed") as info:
        Detector.load(copy)
    assert not marker.exists(), f"loading a bundle ran code from {name}"
    assert "pickle" in str(info.value).lower()


@pytest.mark.parametrize("name", ["weights.npz", "baseline.npz"])
@pytest.mark.parametrize("deflated", [False, True], ids=["not-a-zip", "corrupt-deflate"])
def test_an_npz_that_is_not_one_raises_bundle_error(copy: Path, name: str, deflated: bool) -> None:
    """np.load's zipfile.BadZipFile (and zlib's error) passed the reporting: a traceback and exit
    status 1 from `score`, a 500 from a reload, a crash at `serve`'s start."""
    path = copy / name
    if deflated:  # a compressed archive whose members do not inflate
        with np.load(path) as arrays:
            np.savez_compressed(path, **{key: arrays[key] for key in arrays.files})
        data = bytearray(path.read_bytes())
        data[len(data) // 3 : len(data) // 3 + 64] = b"\xff" * 64
        path.write_bytes(bytes(data))
    else:
        path.write_bytes(b"PK\x03\x04" + b"not a zip archive" * 10)
    _rewrite_digest(copy, name)
    with pytest.raises(
        BundleError,
        match=r"the bundle is malformed \((BadZipFile|error|ValueError: an \.npz member is compressed)",
    ):
        Detector.load(copy)


def test_a_compressed_npz_is_refused_before_it_is_inflated(copy: Path) -> None:
    """A bundle stores its arrays as they are; a compressed member (2.4 MB inflating to 2 GB) was
    inflated whole before anything could refuse it."""
    with np.load(copy / "baseline.npz") as arrays:
        np.savez_compressed(copy / "baseline.npz", **{key: arrays[key] for key in arrays.files})
    _rewrite_digest(copy, "baseline.npz")
    with pytest.raises(BundleError, match=r"an \.npz member is compressed"):
        Detector.load(copy)


def test_weights_that_do_not_fit_the_architecture_raise_bundle_error(copy: Path) -> None:
    with np.load(copy / "weights.npz") as arrays:
        weights = {name: arrays[name] for name in arrays.files}
    weights["output.bias"] = weights["output.bias"][:-1]
    np.savez(copy / "weights.npz", **weights)
    _rewrite_digest(copy, "weights.npz")
    with pytest.raises(BundleError, match=r"output\.bias has shape"):
        Detector.load(copy)


def test_features_json_of_the_wrong_shape_raises_bundle_error(copy: Path) -> None:
    features = json.loads((copy / "features.json").read_text(encoding="utf-8"))
    features["numeric"] = []
    (copy / "features.json").write_text(json.dumps(features), encoding="utf-8")
    _rewrite_digest(copy, "features.json")
    with pytest.raises(BundleError, match=r"features"):
        Detector.load(copy)


# ------------------------------------------------------------------ scoring odd events
def test_scoring_odd_events_never_raises(loaded: Detector) -> None:
    odd: list[Any] = [
        {},
        {"class_uid": None},
        {"class_uid": "4001"},
        {"class_uid": 4001.0, "time": "2024-01-01T00:00:00Z"},
        {"class_uid": [4001], "src_endpoint": {"ip": "not an ip", "port": "x"}},
        {"class_uid": {"a": 1}, "traffic": {"bytes_in": 10**400}},
        {"class_uid": True, "unmapped": {"sttl": "abc"}},
        {"class_uid": "four thousand", "actor": {"user": {"name": "😀\ud800"}}},
        {"class_uid": float("nan"), "traffic": {"bytes_in": float("inf")}},
    ]
    result = loaded.score(odd)
    assert len(result) == len(odd)
    assert np.isfinite(result.score).all()
    # none of the model's fields (0, 1), bytes_in 10**400 and inf (5, 8: no real event holds them):
    # flagged, whatever the score
    forced = [0, 1, 5, 8]
    assert (result.p_value[forced] == 0).all()
    assert result.is_anomaly[forced].all()
    assert result.forced.tolist() == [i in forced for i in range(len(odd))]
    rest = np.delete(result.p_value, forced)
    assert ((rest > 0) & (rest <= 1)).all()
    assert len(result.reasons) == len(odd)
    empty = loaded.score([])
    assert len(empty) == 0


@pytest.mark.parametrize(
    "class_uid", ["²", "4001²", 10**5000], ids=["superscript", "digits+superscript", "huge-int"]
)
def test_scoring_odd_class_uid_never_raises(loaded: Detector, class_uid: Any) -> None:
    result = loaded.score([{"class_uid": class_uid}, {"class_uid": 4001}])
    assert len(result) == 2


# ------------------------------------------------------------------ calibration quality
def test_p_values_of_held_out_normal_events_are_roughly_uniform(
    fitted_detector: Detector, held_out_events: list[Event]
) -> None:
    p = fitted_detector.score(held_out_events, explain=False).p_value
    assert len(p) == 2_000
    assert ((p > 0) & (p <= 1)).all()
    # the p-values are discrete (1/(n+1) steps with n = 600 calibration scores) and these events come
    # from the weeks after the training period: roughly uniform, not exactly
    assert stats.kstest(p, "uniform").statistic < 0.1
    for level in (0.05, 0.1, 0.25, 0.5):
        assert abs(np.mean(p <= level) - level) < max(0.05, level * 0.5), level
    deciles = np.histogram(p, bins=10, range=(0, 1))[0] / len(p)
    assert deciles.min() > 0.03
    assert deciles.max() < 0.2


def test_false_positive_rate_on_fresh_normal_events(fitted_detector: Detector) -> None:
    fresh, labels = generate_events(2_000, seed=2)
    assert set(labels) == {"normal"}
    result = fitted_detector.score(fresh, alpha=0.05, explain=False)
    fpr = float(np.mean(result.is_anomaly))
    # near α on both sides: four standard deviations of the realised FPR over the draw of 600
    # calibration and 2,000 scored events (√(α(1-α)(1/600 + 1/2000)) = 0.010), so never-flagging fails too
    n_calibration = fitted_detector.metadata["training"]["calibration_events"]
    tolerance = 4 * math.sqrt(0.05 * 0.95 * (1 / n_calibration + 1 / len(fresh)))
    assert abs(fpr - 0.05) < tolerance, fpr
    np.testing.assert_array_equal(result.is_anomaly, result.p_value <= 0.05 + 1e-12)
    assert (result.score[result.is_anomaly] > result.threshold[result.is_anomaly]).all()


def test_injected_anomalies_score_higher_than_normal_events(fitted_detector: Detector) -> None:
    events, labels = generate_events(2_000, seed=1, anomaly_rate=0.1)
    result = fitted_detector.score(events, explain=False)
    is_attack = np.array([label != "normal" for label in labels])
    assert np.median(result.score[is_attack]) > np.median(result.score[~is_attack])


def test_a_bundle_of_format_3_scores_with_every_column_in_full(copy: Path, saved: Path) -> None:
    """Written before the feature space's column weights: it loads, and its feature space counts
    every column in full, as the code that wrote it did. (Today's bundles carry a new format number,
    so that an older reader refuses them by it rather than as malformed.)"""
    settings = json.loads((copy / "detector.json").read_text(encoding="utf-8"))
    del settings["feature_weights"]
    del settings["detector"]["feature_noise"]
    (copy / "detector.json").write_text(json.dumps(settings), encoding="utf-8")
    metadata = _metadata(copy)
    metadata["format"] = 3
    (copy / "metadata.json").write_text(json.dumps(metadata), encoding="utf-8")
    _rewrite_digest(copy, "detector.json")
    older = Detector.load(copy)
    assert older.config.feature_noise == 0.0
    assert (older.feature_weights == 1.0).all()
    assert _metadata(saved)["format"] == bundle.FORMAT == 4
