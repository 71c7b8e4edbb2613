"""The MLflow registry: a real MLflow store (SQLite and an artifact folder) in a temporary directory,
the real CLI, and the real service following the aliases (admin reload and poll) while requests stream."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from filesystems import fill, small_file_system
from waiting import eventually_async

from scorer import bundle
from scorer.demo import generate_events
from scorer.detector import Detector, DetectorConfig
from scorer.errors import without_credentials
from scorer.opensearch.installer import InstallError
from scorer.registry import AliasMove, Registry, RegistryError, configure_mlflow
from scorer.service.app import create_app
from scorer.service.keys import ANNOUNCE_RELOAD, SERVING
from scorer.settings import Settings

Event = dict[str, Any]
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite store per module (creating its schema takes seconds); tests use their own model names."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture(scope="module")
def registry(store: str) -> Registry:
    return Registry(store)


@pytest.fixture
def name() -> str:
    return f"model-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def two_versions(registry: Registry, name: str, bundle_dir: Path, other_bundle_dir: Path) -> str:
    """``name`` with version 1 (champion, bundle_dir) and version 2 (other_bundle_dir, no alias)."""
    first, champion = registry.register(bundle_dir, name)
    assert (first.version, champion) == ("1", True)
    second, champion = registry.register(other_bundle_dir, name)
    assert (second.version, champion) == ("2", False)
    return name


# ---------------------------------------------------------------------- the registry itself
def test_register_logs_the_bundle_its_metrics_and_the_first_becomes_champion(
    registry: Registry, two_versions: str, bundle_dir: Path, other_bundle_dir: Path
) -> None:
    versions = registry.versions(two_versions)
    assert [(v.version, v.aliases) for v in versions] == [("2", ()), ("1", ("champion",))]
    assert versions[1].bundle_version == bundle.read_metadata(bundle_dir)["version"]
    assert versions[0].bundle_version == bundle.read_metadata(other_bundle_dir)["version"]
    metrics = registry.metrics(versions[1])
    assert 0 < metrics["index_embedding_recall_at_k"] <= 1
    assert metrics["fit_seconds"] > 0
    run = registry.client.get_run(versions[1].run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["bundle_version"] == versions[1].bundle_version
    assert run.data.params["detector.k"] == str(DetectorConfig().k)
    with registry.fetched(versions[1]) as path:
        assert sorted(p.name for p in path.iterdir()) == sorted([*bundle.FILES, "metadata.json"])
        assert Detector.load(path).model_info["version"] == versions[1].bundle_version
    assert not path.exists()  # the download is removed afterwards


def test_a_download_with_no_room_for_the_bundle_says_so_in_one_line_the_same_each_time(
    registry: Registry, name: str, bundle_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With TMPDIR full, MLflow's error said "No space left on device" once for each of the
    bundle's files, in 2,800 characters naming a new temporary folder each time: the service's poll
    logged it again at every try (the resilience review)."""
    first, _ = registry.register(bundle_dir, name)
    with small_file_system(tmp_path / "tmp", "1m") as tmp:
        monkeypatch.setattr(tempfile, "tempdir", str(tmp))
        fill(tmp)
        said = []
        for _ in range(2):
            with pytest.raises(RegistryError) as refused, registry.fetched(first):
                pass
            said.append(str(refused.value))
    assert (
        said[0]
        == said[1]
        == (
            f"cannot download {first.uri}: no space left on the device of {tmp} (TMPDIR) for its bundle; free "
            "space there, or point TMPDIR at a file system with room"
        )
    )


def _moved(move: AliasMove) -> tuple[str | None, ...]:
    """(before, after, retired challenger) as version numbers."""
    return tuple(v.version if v else None for v in (move.before, move.after, move.retired))


def _held(registry: Registry, name: str) -> list[tuple[str, tuple[str, ...]]]:
    return [(v.version, v.aliases) for v in registry.versions(name)]


def test_promote_and_rollback_walk_the_alias_history(registry: Registry, two_versions: str) -> None:
    name = two_versions
    assert _moved(registry.promote(name, "2")) == ("1", "2", None)
    assert registry.alias(name, "champion").version == "2"  # type: ignore[union-attr]
    assert _moved(registry.rollback(name)) == ("2", "1", None)
    assert registry.alias(name, "champion").version == "1"  # type: ignore[union-attr]
    with pytest.raises(RegistryError, match="no earlier champion"):
        registry.rollback(name)
    # an alias moved outside this tool (the MLflow UI, say) is still rolled back to where it was
    registry.client.set_registered_model_alias(name, "champion", "2")
    assert _moved(registry.rollback(name)) == ("2", "1", None)
    # a challenger with no earlier holder is removed: the comparison stops
    assert _moved(registry.promote(name, "2", "challenger")) == (None, "2", None)
    assert _moved(registry.rollback(name, "challenger")) == ("2", None, None)
    assert registry.alias(name, "challenger") is None


def test_an_alias_moved_outside_this_tool_is_where_a_later_rollback_returns(
    registry: Registry, two_versions: str, bundle_dir: Path
) -> None:
    """The champion moved by MLflow's UI (or its client) and then promoted by this tool: a rollback
    went back past the version the UI had set, to the one before it (the mutation review)."""
    name = two_versions
    registry.register(bundle_dir, name)  # version 3
    registry.promote(name, "1")
    registry.client.set_registered_model_alias(name, "champion", "2")  # outside this tool
    assert _moved(registry.promote(name, "3")) == ("2", "3", None)
    assert _moved(registry.rollback(name)) == ("3", "2", None)
    assert _moved(registry.rollback(name)) == ("2", "1", None)


def test_versions_are_listed_newest_first_by_number_not_by_text(
    registry: Registry, name: str, bundle_dir: Path
) -> None:
    """Versions 10 and 11 listed between 1 and 2 when sorted as text (the mutation review)."""
    for _ in range(11):
        registry.register(bundle_dir, name)
    assert [v.version for v in registry.versions(name)] == [str(n) for n in range(11, 0, -1)]


def test_the_champion_and_the_challenger_are_never_one_version(
    registry: Registry, two_versions: str, bundle_dir: Path
) -> None:
    name = two_versions
    registry.register(bundle_dir, name)  # version 3
    registry.promote(name, "2")
    registry.promote(name, "1", "challenger")
    # rolled back onto the challenger's version, the champion takes its place: the challenger goes
    assert _moved(registry.rollback(name)) == ("2", "1", "1")
    assert _held(registry, name) == [("3", ()), ("2", ()), ("1", ("champion",))]
    # promoted onto it, the same (a challenger that won its comparison)
    registry.promote(name, "2", "challenger")
    assert _moved(registry.promote(name, "2")) == ("1", "2", "2")
    assert _held(registry, name) == [("3", ()), ("2", ("champion",)), ("1", ())]
    # a challenger is never given the champion's version
    with pytest.raises(
        RegistryError, match=r"version 2 of .* is the champion: the challenger must be another"
    ):
        registry.promote(name, "2", "challenger")
    # a challenger rolled back to a version that is the champion now is removed instead
    registry.promote(name, "1", "challenger")
    registry.promote(name, "3", "challenger")
    registry.promote(name, "1")
    assert _moved(registry.rollback(name, "challenger")) == ("3", None, None)
    assert _held(registry, name) == [("3", ()), ("2", ()), ("1", ("champion",))]


def test_rollback_passes_over_a_version_deleted_since(
    registry: Registry, two_versions: str, bundle_dir: Path
) -> None:
    """A version deleted from the registry (MLflow's UI, `delete_model_version`) stayed in the alias
    history, and rollback stopped at it for good: "has no version '2'", whatever came before it."""
    name = two_versions
    registry.register(bundle_dir, name)  # version 3
    registry.promote(name, "2")
    registry.promote(name, "3")
    registry.promote(name, "2")
    registry.promote(name, "3")  # champion history: 1, 2, 3, 2, 3
    registry.client.delete_model_version(name, "2")
    assert _moved(registry.rollback(name)) == ("3", "1", None)
    with pytest.raises(RegistryError, match="no earlier champion"):
        registry.rollback(name)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda r, n: r.promote(n, "9"), "has no version '9'"),
        (lambda r, n: r.promote(n, "x"), "has no version 'x'"),
        (lambda r, n: r.promote(n, str(2**64)), f"has no version '{2**64}': versions are numbers from 1"),
        (lambda r, n: r.promote(n, "\uff12"), "has no version '\uff12': versions are numbers"),  # a wide 2
        (lambda r, n: r.promote(n, "2 "), "has no version '2 ': versions are numbers"),
        (lambda r, n: r.promote(n, "-1"), "has no version '-1': versions are numbers"),
        (lambda r, n: r.promote(n, "1", "canary"), "alias must be one of champion, challenger"),
        (lambda r, n: r.rollback(n, "challenger"), "nothing to roll back"),
        (lambda r, n: r.versions("nobody"), "no registered model 'nobody'.*--register nobody"),
        # said as `models list` says it, not as a version missing from a model that is not there
        (lambda r, n: r.promote("nobody", "1"), "no registered model 'nobody'.*--register nobody"),
    ],
    ids=[
        "missing-version",
        "not-a-number",
        "beyond-64-bits",
        "wide-digit",
        "with-a-space",
        "negative",
        "unknown-alias",
        "no-challenger",
        "unknown-model",
        "promote-unknown-model",
    ],
)
def test_registry_errors_say_what_to_do(
    registry: Registry, two_versions: str, call: Any, message: str
) -> None:
    with pytest.raises(RegistryError, match=message):
        call(registry, two_versions)


def test_registry_hints_give_the_command_for_the_model_they_are_about(
    registry: Registry, two_versions: str
) -> None:
    """ "(see `ocsf-anomaly models list`)" lists the default model (ocsf-anomaly-demo, or model_name),
    not the one the error is about: typed as said, it showed another model or none."""
    name = two_versions
    for call in (
        lambda: registry.promote(name, "9"),
        lambda: registry.promote(name, "x"),
        lambda: registry.lookup(f"models:/{name}@challenger"),
    ):
        with pytest.raises(RegistryError) as error:
            call()
        assert str(error.value).endswith(f"(see `ocsf-anomaly models list --name {name}`)"), error.value
    with pytest.raises(RegistryError) as error:
        registry.rollback(name)  # version 1, the first champion: none before it
    assert str(error.value).endswith(f"`ocsf-anomaly models promote VERSION --name {name}`"), error.value
    with pytest.raises(RegistryError) as error:  # quoted as a shell reads it
        registry.promote("my model", "x")
    assert str(error.value).endswith("(see `ocsf-anomaly models list --name 'my model'`)"), error.value


def test_a_model_the_registry_does_not_hold_is_said_with_those_it_holds(
    tmp_path: Path, bundle_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`models list` of a misspelt name, or of the default where the registry holds another model,
    said only that there was no such model."""
    from scorer.cli import main

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    registry = Registry(store)
    with pytest.raises(
        RegistryError, match=r"no registered model 'netflow' in .* \(it holds no model yet\): "
    ):
        registry.versions("netflow")
    registry.register(bundle_dir, "netflow")
    monkeypatch.setenv("OCSF_ANOMALY_REGISTRY_URI", store)
    monkeypatch.delenv("OCSF_ANOMALY_MODEL_NAME", raising=False)
    for args, name in ((["--name", "netflw"], "netflw"), ([], "ocsf-anomaly-demo")):
        capsys.readouterr()
        assert main(["models", "list", *args]) == 2
        assert capsys.readouterr().err.strip().splitlines()[-1] == (
            f"error: no registered model '{name}' in {store} (it holds 'netflow'): "
            f"register one with `ocsf-anomaly train EVENTS --register {name}`"
        )


def test_a_version_registers_into_a_deleted_experiment(
    registry: Registry, two_versions: str, bundle_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The model's experiment deleted in MLflow's UI keeps its name until `mlflow gc`, and `train
    --register` failed after training: "The experiment … must be in the 'active' state"."""
    experiment = registry.client.get_experiment_by_name(two_versions)
    registry.client.delete_experiment(experiment.experiment_id)
    version, champion = registry.register(bundle_dir, two_versions)
    assert (version.version, champion) == ("3", False)
    assert registry.client.get_experiment(experiment.experiment_id).lifecycle_stage == "active"
    assert f"restored the deleted MLflow experiment '{two_versions}'" in caplog.text


def test_a_folder_is_refused_as_a_registry_saying_what_to_name(tmp_path: Path) -> None:
    """A plain path is MLflow's file store, which told the user to set MLFLOW_ALLOW_FILE_STORE."""
    for uri in (str(tmp_path / "noreg"), f"file://{tmp_path / 'noreg'}"):
        with pytest.raises(RegistryError) as error:
            Registry(uri, create=False)
        assert str(error.value) == (
            f"registry {uri} is a folder, not a registry: name a SQLite database "
            f"(sqlite:///{tmp_path / 'noreg' / 'mlflow.db'}) or a tracking server (http://HOST:5000)"
        )
    assert list(tmp_path.iterdir()) == []


def test_serving_from_a_registry_path_where_none_is_is_refused_and_makes_none(tmp_path: Path) -> None:
    """`serve` and `stream` without --model: a mistyped registry path made a new, empty store there."""
    from scorer.service.models import source_for
    from scorer.settings import Settings

    settings = Settings.load(None, registry_uri=f"sqlite:///{tmp_path / 'typo' / 'mlflow.db'}")
    with pytest.raises(RegistryError, match=r"no registry at .*nothing has been registered there"):
        source_for(settings)
    assert list(tmp_path.iterdir()) == []


def test_a_name_that_cannot_name_a_model_is_refused_before_anything_is_written(
    tmp_path: Path, bundle_dir: Path
) -> None:
    """MLflow refused such a name only once the run and its artifacts were logged: the run stayed
    behind, and a name with ".." put the bundle beside the store, not in its artifact folder."""
    registry = Registry(f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}")
    for bad, why in [
        ("../../escaped", "may not hold '/', ':' or '@'"),
        ("team/netflow", "may not hold '/', ':' or '@'"),
        ("a@b", "may not hold '/', ':' or '@'"),  # models:/a@b/1 read as the name a, the alias b/1
        ("..", "may not hold .* nor be '.' or '..'"),
        ("", "is empty"),
        ("  ", "is empty"),
        ("two\nlines", "holds a control character"),
        ("x" * 256, "is longer than 255 bytes"),
    ]:
        with pytest.raises(RegistryError, match=f"cannot name a registered model: it {why}"):
            registry.register(bundle_dir, bad)
    assert [e.name for e in registry.client.search_experiments()] == ["Default"]
    assert registry.client.search_registered_models() == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]
    assert not (tmp_path / "store" / "artifacts").exists()
    registry.register(bundle_dir, "ünïcode name")  # what MLflow takes is taken
    assert [v.version for v in registry.versions("ünïcode name")] == ["1"]
    with pytest.raises(RegistryError, match="single quotes or double quotes, not both"):
        registry.register(bundle_dir, 'it\'s "x"')  # no search of MLflow's could find its versions


@pytest.mark.parametrize("quoted", ["alice's model", 'the "best" model'])
def test_a_name_with_quotes_lists_its_versions(registry: Registry, bundle_dir: Path, quoted: str) -> None:
    """A name with a single quote was put in the search filter with a backslash, which MLflow does not
    read as an escape: `models list` showed no versions of a model that had them."""
    name = f"{quoted} {uuid.uuid4().hex[:8]}"
    registry.register(bundle_dir, name)
    assert [(v.version, v.aliases) for v in registry.versions(name)] == [("1", ("champion",))]


def test_cli_refuses_a_bad_model_name_before_training(tmp_path: Path, store: str) -> None:
    """`train --register ../x` trained for minutes before MLflow refused the name; `--register ""` with
    `--output` trained and registered nothing, silently; `models list --name ""` listed the default model."""
    events = tmp_path / "events.jsonl"
    events.write_text("{}\n", encoding="utf-8")
    for args, message in [
        (("train", events, "--register", "../x"), "error: '../x' cannot name a registered model"),
        (("train", events, "--register", "", "--output", tmp_path / "m"), "error: '' cannot name"),
        (("models", "list", "--name", ""), "error: --name is empty: name a registered model"),
    ]:
        result = _cli(*args, store=store)
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith(message), result.stderr
        assert "reading" not in result.stderr
    assert not (tmp_path / "m").exists()


def test_lookup_resolves_model_uris_by_version_and_by_alias(registry: Registry, two_versions: str) -> None:
    name = two_versions
    assert registry.lookup(f"models:/{name}/2").version == "2"
    assert registry.lookup(f"models:/{name}@champion").version == "1"
    registry.promote(name, "2", "challenger")
    assert registry.lookup(f"models:/{name}@challenger").version == "2"
    for uri, message in [
        (f"models:/{name}/7", "has no version '7'"),
        (f"models:/{name}@canary", "alias must be one of champion, challenger"),
        ("models:/", "is not a model URI"),
        (f"{name}/1", "is not a model URI"),
        (f"models:/{name}", "names no version"),
    ]:
        with pytest.raises(RegistryError, match=message):
            registry.lookup(uri)
    registry.client.delete_registered_model_alias(name, "challenger")
    with pytest.raises(RegistryError, match=r"no version of .* holds the alias challenger"):
        registry.lookup(f"models:/{name}@challenger")


def test_an_artifact_altered_after_registration_is_refused(
    registry: Registry, two_versions: str, other_bundle_dir: Path
) -> None:
    first = registry.alias(two_versions, "champion")
    assert first is not None
    stored = Path(first.source.removeprefix("file://"))
    shutil.rmtree(stored)
    shutil.copytree(other_bundle_dir, stored)  # a complete, valid bundle, but not the registered one
    with pytest.raises(bundle.BundleError, match="altered after registration"), registry.fetched(first):
        pass


def test_the_whole_digest_registered_is_what_a_fetch_compares(
    registry: Registry, two_versions: str, bundle_dir: Path
) -> None:
    """A fetch compared the bundle's 12-digit version alone, 48 bits: an artifact altered to match
    them (24 bits took 144 s on one core) passed. The whole digest is kept and compared; a version
    registered before it was kept is compared by its version."""
    from scorer.registry import DIGEST_TAG

    first = registry.alias(two_versions, "champion")
    assert first is not None
    with registry.fetched(first) as path:
        assert first.bundle_digest == bundle.content_digest(bundle.read_metadata(path))
    # the registered digest differs in its last 52 bits: as if the artifact matched the 48 alone
    registry.client.set_model_version_tag(
        two_versions, first.version, DIGEST_TAG, first.bundle_digest[:12] + "0" * 52
    )
    differs = registry.lookup(first.uri)
    with pytest.raises(bundle.BundleError, match="altered after registration"), registry.fetched(differs):
        pass
    # and where the service loads it: the digest went missing between resolving and fetching
    from scorer.service.models import RegistrySource

    source = RegistrySource(registry, two_versions)
    with pytest.raises(bundle.BundleError, match="altered after registration"):
        source.load(source.resolve()["champion"])
    registry.client.delete_model_version_tag(two_versions, first.version, DIGEST_TAG)
    with registry.fetched(registry.lookup(first.uri)):  # registered before the digest was kept
        pass
    registry.client.set_model_version_tag(two_versions, first.version, DIGEST_TAG, first.bundle_digest)


def test_an_unreachable_registry_is_an_error_not_a_hang() -> None:
    """MLflow's client retries for minutes unless told otherwise; the CLI (an entry point) tells it.
    The error names the registry without the password in its URL, which MLflow's own message quoted."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_HTTP_REQUEST")}
    env["OCSF_ANOMALY_REGISTRY_URI"] = "http://ocsf:s3cr3t@127.0.0.1:9"
    result = subprocess.run(
        [sys.executable, "-m", "scorer.cli", "models", "list"],
        capture_output=True,
        text=True,
        timeout=120,  # MLflow's own defaults: 7 retries with backoff, minutes
        env=env,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    # one line that names the server and what to check, not MLflow's retries and urllib3's pool
    assert result.stderr.splitlines()[-1] == (
        "error: cannot read model 'ocsf-anomaly-demo' from http://***@127.0.0.1:9: nothing answers at "
        "127.0.0.1:9 (Connection refused): is the server up, and is registry_uri (OCSF_ANOMALY_REGISTRY_URI "
        "or MLFLOW_TRACKING_URI) right?"
    )
    assert "s3cr3t" not in result.stderr
    assert "Traceback" not in result.stderr


def test_a_server_that_does_not_answer_is_one_error_not_a_warning_per_retry(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The service's poll of an MLflow server that is down logged urllib3's "Retrying …" warning for
    each retry, at every poll, beside its own warning (logged once)."""
    from live_scorer import closed_port

    configure_mlflow()  # as the service and the CLI do
    caplog.set_level(logging.INFO)
    with closed_port() as port:
        registry = Registry(f"http://127.0.0.1:{port}")
        for _ in range(2):  # two polls
            with pytest.raises(RegistryError, match=f"cannot read model 'm' from http://127.0.0.1:{port}"):
                registry.aliases("m")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_train_register_finds_a_server_down_before_training(tmp_path: Path) -> None:
    """MLflow's client asks a server nothing until it is used: `train --register` trained (minutes,
    hours on a large corpus) and only then found the registry down or its URL mistyped."""
    from live_scorer import closed_port

    events, _ = generate_events(300, seed=3)
    train_file = tmp_path / "train.jsonl"
    train_file.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    with closed_port() as port:
        result = _cli(
            "train", train_file, "--epochs", "1", "--register", "m", store=f"http://127.0.0.1:{port}"
        )
    assert result.returncode == 2, result.stderr
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(
            f"error: cannot reach the registry at http://127.0.0.1:{port}: nothing answers at 127.0.0.1:{port} ("
        )
    )
    assert "reading" not in result.stderr
    assert "Traceback" not in result.stderr


def test_a_registry_server_that_never_answers_is_said_to_time_out_not_to_refuse(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server that takes the connection and never answers (stopped with SIGSTOP, or hung) was
    said to be one nothing could connect to (the resilience review)."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with socket.socket() as silent:  # the kernel completes the handshake; nobody reads
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        with pytest.raises(RegistryError) as hung:
            Registry(f"http://127.0.0.1:{port}").versions("m")
    assert f"nothing answers at 127.0.0.1:{port} (no answer within 1 s)" in str(hung.value)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("postgresql://mlflow:pw@db:5432/mlflow", "postgresql://***@db:5432/mlflow"),
        ("https://u:p@ss@host/x", "https://***@host/x"),  # a raw "@" in the password: up to the last one
        ("redis://:secret@cache:6379/0", "redis://***@cache:6379/0"),
        ("from http://a:b@h1 to HTTPS://c:d@h2/p?q=e@f", "from http://***@h1 to HTTPS://***@h2/p?q=e@f"),
        ("sqlite:////data/mlflow.db", "sqlite:////data/mlflow.db"),
        ("http://host:5000 failed for ops@example.org", "http://host:5000 failed for ops@example.org"),
    ],
)
def test_credentials_in_urls_are_never_shown(text: str, shown: str) -> None:
    assert without_credentials(text) == shown
    assert str(RegistryError(f"cannot reach {text}")) == f"cannot reach {shown}"  # every UserError
    assert str(InstallError(f"cannot reach {text}")) == f"cannot reach {shown}"


# ---------------------------------------------------------------------- the command line
def _cli(*args: str | Path, store: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OCSF_ANOMALY_REGISTRY_URI": store, "PYTHONWARNINGS": "ignore", "TQDM_DISABLE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "scorer.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )


@pytest.mark.parametrize(
    "command",
    [
        ("models", "list"),
        ("models", "promote", "1"),
        ("score", "--model", "models:/demo@champion", "x", "-o", "y.csv"),
    ],
    ids=["list", "promote", "score"],
)
def test_a_mistyped_local_store_is_refused_not_made(tmp_path: Path, command: tuple[str, ...]) -> None:
    """A command that only reads the registry made a new, empty one wherever its URI pointed."""
    missing = tmp_path / "typo" / "mlfow.db"
    (tmp_path / "x").write_text("{}\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "scorer.cli", *command],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OCSF_ANOMALY_REGISTRY_URI": f"sqlite:///{missing}"},
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: no registry at {missing}: nothing has been registered there "
        "(check registry_uri; `ocsf-anomaly demo` registers the demo model, which serve serves by default, "
        "and `ocsf-anomaly train EVENTS --register NAME` yours: serve it with OCSF_ANOMALY_MODEL_NAME=NAME)"
    )
    assert not (tmp_path / "typo").exists()


def test_a_store_that_is_not_a_database_or_is_locked_is_a_one_line_error(
    tmp_path: Path, store: str, two_versions: str
) -> None:
    """SQLAlchemy's errors reached the command line as a traceback and exit status 1: a registry
    path naming some other file, or a store another writer holds locked."""
    other = tmp_path / "notes.db"
    other.write_text("not a database\n", encoding="utf-8")
    result = _cli("models", "list", store=f"sqlite:///{other}")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: cannot open the registry at sqlite:///{other}: (sqlite3.DatabaseError) file is not a database"
    )

    database = store.removeprefix("sqlite:///")
    writer = sqlite3.connect(database, isolation_level=None)
    writer.execute("BEGIN EXCLUSIVE")  # another writer, mid-transaction
    try:
        locked = _cli("models", "promote", "2", "--name", two_versions, store=store)
    finally:
        writer.rollback()
        writer.close()
    assert locked.returncode == 2, locked.stderr
    assert "Traceback" not in locked.stderr
    last = locked.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: cannot open the registry at {store}: "), last
    assert last.endswith("database is locked"), last
    assert "[SQL:" not in locked.stderr


def test_cli_train_register_then_list_promote_and_rollback(
    tmp_path: Path, store: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``train`` runs as a command; the ``models`` commands after it run in this process through the
    same entry point (each process would import MLflow again: this test took a minute of the suite)."""
    monkeypatch.setenv("OCSF_ANOMALY_REGISTRY_URI", store)

    def models(*args: str) -> subprocess.CompletedProcess[str]:
        from scorer.cli import main

        capsys.readouterr()
        code = main(["models", *args])
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(["models", *args], code, out, err)

    name = f"cli-{uuid.uuid4().hex[:8]}"
    events, _ = generate_events(1_000, seed=3)
    train_file = tmp_path / "train.jsonl"
    train_file.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    train = ["train", train_file, "--epochs", "1", "--baseline-size", "500", "--quiet", "--register", name]
    first = _cli(*train, store=store)
    assert first.returncode == 0, first.stderr
    assert f"registered models:/{name}/1" in first.stderr
    assert "it is the champion" in first.stderr
    second = _cli(*train, "--seed", "1", "--output", tmp_path / "kept", store=store)  # both at once
    assert second.returncode == 0, second.stderr
    assert f"models promote 2 --name {name}" in second.stderr
    assert bundle.read_metadata(tmp_path / "kept")["name"] == name

    listing = models("list", "--name", name, "--json")
    assert listing.returncode == 0, listing.stderr
    versions = json.loads(listing.stdout)["versions"]
    assert [(v["version"], v["aliases"]) for v in versions] == [("2", []), ("1", ["champion"])]
    assert versions[0]["bundle_version"] == bundle.read_metadata(tmp_path / "kept")["version"]

    promoted = models("promote", "2", "--name", name)
    assert promoted.returncode == 0, promoted.stderr
    assert f"{name}@champion: version 1 → version 2" in promoted.stderr
    again = models("promote", "2", "--name", name)  # it said "version 2 → version 2;
    assert again.returncode == 0, again.stderr  # a running service swaps it in"
    assert again.stderr.strip().splitlines()[-1] == f"{name}@champion: already version 2; nothing changed"
    table = models("list", "--name", name)
    assert table.stdout.splitlines()[2].split()[:2] == ["2", "champion"]
    back = models("rollback", "--name", name)
    assert back.returncode == 0, back.stderr
    assert f"{name}@champion: version 2 → version 1" in back.stderr

    for args, message in [
        (("promote", "7", "--name", name), "has no version '7'"),
        (("rollback", "--name", name), "no earlier champion"),
        (("list", "--name", "nobody"), "no registered model 'nobody'"),
    ]:
        failed = models(*args)
        assert failed.returncode == 2, (args, failed.stderr)
        assert message in failed.stderr
        assert "Traceback" not in failed.stderr
    nowhere = _cli("train", train_file, store=store)
    assert nowhere.returncode == 2, nowhere.stderr
    assert "--output DIR, --register NAME, or both" in nowhere.stderr
    assert "Traceback" not in nowhere.stderr

    # the challenger wins: promoted champion, it is no longer the challenger, and the CLI says so
    challenger = models("promote", "2", "--name", name, "--alias", "challenger")
    assert f"{name}@challenger: none → version 2" in challenger.stderr
    won = models("promote", "2", "--name", name)
    assert won.returncode == 0, won.stderr
    assert f"{name}@champion: version 1 → version 2" in won.stderr
    assert f"{name}@challenger: version 2 → removed, as it is the champion now" in won.stderr
    listing = models("list", "--name", name, "--json")
    versions = json.loads(listing.stdout)["versions"]
    assert [(v["version"], v["aliases"]) for v in versions] == [("2", ["champion"]), ("1", [])]
    same = models("promote", "2", "--name", name, "--alias", "challenger")
    assert same.returncode == 2
    assert same.stderr.strip().splitlines()[-1].startswith("error: version 2 of ")


def test_score_evaluate_and_refresh_take_a_registered_model(
    tmp_path: Path,
    store: str,
    two_versions: str,
    bundle_dir: Path,
    train_events: list[dict[str, Any]],
    held_out_events: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--model takes models:/NAME@ALIAS and models:/NAME/VERSION, as report and score-spark do: the
    same scores as the registered bundle's directory."""
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in held_out_events[:300]))
    scored = {}
    for model in (f"models:/{two_versions}@champion", str(bundle_dir), f"models:/{two_versions}/2"):
        out = tmp_path / f"{len(scored)}.csv"
        result = _cli(
            "score", events, "--model", model, "--output", out, "--workers", "1", "--quiet", store=store
        )
        assert result.returncode == 0, result.stderr
        scored[model] = out.read_text()
    assert scored[f"models:/{two_versions}@champion"] == scored[str(bundle_dir)]
    assert scored[f"models:/{two_versions}/2"] != scored[str(bundle_dir)]  # other calibration, other p-values

    train = tmp_path / "train.jsonl"
    train.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in train_events[:500]))
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "line,label\n"
        + "".join(f"{i},0\n" for i in range(1, 291))
        + "".join(f"{i},1\n" for i in range(291, 301))
    )
    evaluated = _cli(
        "evaluate",
        events,
        "--model",
        f"models:/{two_versions}/1",
        "--labels",
        labels,
        "--train",
        train,
        "--json",
        store=store,
    )
    assert evaluated.returncode == 0, evaluated.stderr
    assert {"fusion (default)", "raw-knn"} <= set(json.loads(evaluated.stdout))

    refreshed = _cli(
        "refresh",
        events,
        "--model",
        f"models:/{two_versions}@champion",
        "--calibration-only",
        "--output",
        tmp_path / "new",
        store=store,
    )
    assert refreshed.returncode == 0, refreshed.stderr
    assert (
        bundle.read_metadata(tmp_path / "new")["refreshed_from"]
        == bundle.read_metadata(bundle_dir)["version"]
    )
    # back into the registry, without a directory: a new version, not served until promoted (in
    # this process, through the same entry point: another process would import MLflow again)
    import faiss
    import torch

    from scorer.cli import main

    monkeypatch.setenv("OCSF_ANOMALY_REGISTRY_URI", store)
    capsys.readouterr()
    argv = ["refresh", str(events), "--model", f"models:/{two_versions}@champion", "--calibration-only"]
    threads = torch.get_num_threads(), faiss.omp_get_max_threads()
    try:
        assert main([*argv, "--register", two_versions]) == 0
    finally:  # refresh takes every core for its process: this worker shares them with another
        torch.set_num_threads(threads[0])
        faiss.omp_set_num_threads(threads[1])
    said = capsys.readouterr().err
    assert (
        said.strip()
        .splitlines()[-1]
        .endswith(f"promote it with `ocsf-anomaly models promote 3 --name {two_versions}`")
    ), said
    third = Registry(store).lookup(f"models:/{two_versions}/3")
    assert Registry(store).lookup(f"models:/{two_versions}@champion").version == "1"
    with Registry(store).fetched(third) as fetched:
        assert bundle.read_metadata(fetched)["refreshed_from"] == bundle.read_metadata(bundle_dir)["version"]
    assert main(["refresh", str(events), "--model", str(bundle_dir)]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: say where the refreshed model goes: --output DIR, --register NAME, or both"
    )

    missing = _cli(
        "score",
        events,
        "--model",
        f"models:/{two_versions}@challenger",
        "--output",
        tmp_path / "x.csv",
        store=store,
    )
    assert missing.returncode == 2
    assert "challenger" in missing.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "x.csv").exists()


# ---------------------------------------------------------------------- the service follows the aliases
def _settings(store: str, name: str, **changes: Any) -> Settings:
    return Settings(registry_uri=store, model_name=name, threads=2, **{"model_poll_seconds": 0, **changes})


async def _score(client: Any, event: Event) -> tuple[int, dict[str, Any]]:
    response = await client.post("/v1/score", data=orjson.dumps(event), headers=JSON)
    body = await response.json()
    return response.status, body


async def test_service_serves_the_champion_and_says_where_it_comes_from(
    aiohttp_client: Any, store: str, two_versions: str, held_out_events: list[Event]
) -> None:
    client = await aiohttp_client(create_app(_settings(store, two_versions)))
    status, body = await _score(client, held_out_events[0])
    assert status == 200
    assert body["results"][0]["model"] == {"name": two_versions, "version": "1", "variant": "champion"}
    served = await (await client.get("/v1/models")).json()
    assert served["source"] == "registry"
    assert served["registry"] == store
    assert served["champion"]["source"] == f"models:/{two_versions}/1"
    assert served["challenger"] is None
    ready = await (await client.get("/readyz")).json()
    assert ready["model"]["version"] == "1"


async def test_promote_while_requests_stream_switches_once(
    aiohttp_client: Any, store: str, registry: Registry, two_versions: str, held_out_events: list[Event]
) -> None:
    client = await aiohttp_client(create_app(_settings(store, two_versions)))
    statuses: list[int] = []
    versions: list[str] = []
    promoted = asyncio.Event()

    async def stream() -> None:  # before, during and 20 requests after the swap
        after = 0
        for event in itertools.cycle(held_out_events[:200]):
            status, body = await _score(client, event)
            statuses.append(status)
            versions.append(body["results"][0]["model"]["version"])
            after += promoted.is_set()
            if after == 20:
                return

    async def promote() -> dict[str, Any]:
        while len(versions) < 10:
            await asyncio.sleep(0.005)
        await asyncio.get_running_loop().run_in_executor(None, registry.promote, two_versions, "2")
        response = await client.post("/v1/models/reload")
        assert response.status == 200
        promoted.set()
        return dict(await response.json())

    _, reload = await asyncio.gather(stream(), promote())
    assert reload == {
        "reloaded": True,
        "from": {"champion": "1", "challenger": None},
        "to": {"champion": "2", "challenger": None},
        "processes": {"count": 1, "serving": 1},
    }
    assert statuses == [200] * len(statuses)
    assert versions[0] == "1"
    assert versions[-1] == "2"
    assert sum(a != b for a, b in itertools.pairwise(versions)) == 1
    metrics = await (await client.get("/metrics")).text()
    assert 'ocsf_anomaly_model_reloads_total{result="swapped"} 1.0' in metrics
    assert 'alias="champion",bundle_version=' in metrics
    assert f'name="{two_versions}",version="2"' in metrics


async def _wait_for(client: Any, event: Event, version: str, variant: str = "champion") -> None:
    async def served() -> bool:
        _, body = await _score(client, event)
        model = body["results"][0]["model"]
        return bool((model["version"], model["variant"]) == (version, variant))

    await eventually_async(served, f"the service serving version {version} as {variant}")


async def _reloads(client: Any, result: str) -> float:
    """How many refreshes of the models ended with ``result`` (unchanged, swapped, failed)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = await (await client.get("/metrics")).text()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "ocsf_anomaly_model_reloads_total" and sample.labels.get("result") == result
    )


async def test_the_poll_follows_promote_and_rollback(
    aiohttp_client: Any, store: str, registry: Registry, two_versions: str, held_out_events: list[Event]
) -> None:
    """And a swap the poll made is announced once (under `serve`'s supervisor, the other serving
    processes then reload at once rather than at their own next poll); a poll that changed nothing
    is not."""
    app = create_app(_settings(store, two_versions, model_poll_seconds=0.1))
    announced: list[str] = []
    app[ANNOUNCE_RELOAD] = lambda: announced.append(app[SERVING].champion.ref.version)
    client = await aiohttp_client(app)
    event = held_out_events[0]
    await _wait_for(client, event, "1")

    async def polled_unchanged() -> bool:
        return await _reloads(client, "unchanged") >= 3

    await eventually_async(polled_unchanged, "several polls that find nothing new")
    assert announced == []
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, registry.promote, two_versions, "2")
    await _wait_for(client, event, "2")
    await loop.run_in_executor(None, registry.rollback, two_versions)
    await _wait_for(client, event, "1")
    # the announcement follows the swap in the poll's own task
    await eventually_async(lambda: len(announced) >= 2, "the second swap announced")
    assert announced == ["2", "1"]


async def test_the_challenger_alias_starts_and_stops_an_ab_split(
    aiohttp_client: Any, store: str, registry: Registry, two_versions: str, held_out_events: list[Event]
) -> None:
    client = await aiohttp_client(create_app(_settings(store, two_versions, challenger_split=0.5)))
    registry.promote(two_versions, "2", "challenger")
    assert (await client.post("/v1/models/reload")).status == 200
    events = [
        {**e, "src_endpoint": {"ip": f"10.8.{i // 200}.{i % 200}"}}
        for i, e in enumerate(held_out_events[:200])
    ]
    response = await client.post("/v1/score", data=orjson.dumps(events), headers=JSON)
    models = {(r["model"]["variant"], r["model"]["version"]) for r in (await response.json())["results"]}
    assert models == {("champion", "1"), ("challenger", "2")}
    served = await (await client.get("/v1/models")).json()
    assert served["challenger"]["version"] == "2"
    assert served["split"] == 0.5
    registry.rollback(two_versions, "challenger")  # no earlier challenger: removed
    assert (await client.post("/v1/models/reload")).status == 200
    response = await client.post("/v1/score", data=orjson.dumps(events), headers=JSON)
    assert {r["model"]["variant"] for r in (await response.json())["results"]} == {"champion"}


async def test_a_bad_new_version_is_refused_and_the_old_keeps_serving(
    aiohttp_client: Any, store: str, registry: Registry, two_versions: str, held_out_events: list[Event]
) -> None:
    client = await aiohttp_client(create_app(_settings(store, two_versions)))
    second = registry.versions(two_versions)[0]
    weights = Path(second.source.removeprefix("file://")) / "weights.npz"
    weights.write_bytes(b"truncated")
    registry.promote(two_versions, "2")
    response = await client.post("/v1/models/reload")
    assert response.status == 409
    error = (await response.json())["error"]
    assert error["code"] == "reload_failed"
    assert "weights.npz" in error["message"]
    assert error["message"].endswith("; still serving champion 1")
    status, body = await _score(client, held_out_events[0])
    assert status == 200
    assert body["results"][0]["model"]["version"] == "1"
    metrics = await (await client.get("/metrics")).text()
    assert 'ocsf_anomaly_model_reloads_total{result="failed"} 1.0' in metrics


async def test_a_bundle_directory_that_cannot_be_read_is_a_409_not_a_500(
    aiohttp_client: Any, bundle_dir: Path, tmp_path: Path, held_out_events: list[Event]
) -> None:
    served = tmp_path / "model"
    shutil.copytree(bundle_dir, served)
    client = await aiohttp_client(create_app(Settings(model_dir=served, threads=1, model_poll_seconds=0)))
    (served / "metadata.json").unlink()
    (served / "metadata.json").mkdir()  # unreadable as a file, as a file without permission would be
    response = await client.post("/v1/models/reload")
    assert response.status == 409
    assert "metadata.json is not a regular file" in (await response.json())["error"]["message"]
    status, _ = await _score(client, held_out_events[0])
    assert status == 200


async def test_a_model_without_a_champion_does_not_start(
    store: str, registry: Registry, bundle_dir: Path
) -> None:
    from aiohttp.test_utils import TestServer

    name = f"unpromoted-{uuid.uuid4().hex[:8]}"
    registry.register(bundle_dir, name)
    registry.client.delete_registered_model_alias(name, "champion")
    server = TestServer(create_app(_settings(store, name)))
    with pytest.raises(RegistryError, match=f"no version of '{name}' has the alias champion.*models promote"):
        await server.start_server()
    await server.close()


@pytest.mark.parametrize("state", ["opened", "unstamped", "missing"])
def test_serve_with_an_empty_or_missing_registry_is_a_one_line_error(
    store: str, registry: Registry, state: str, tmp_path: Path
) -> None:
    """Unstamped: a store this MLflow has not opened yet (as after an upgrade), whose first opener
    migrates the schema; two serving processes opening it at once collided ("duplicate column name:
    step") until the supervisor started one first and the others once it was ready. Missing: a
    mistyped path, which serving made into a new, empty store; it is refused and nothing is made.
    (``registry``: the module's store is made.)"""
    where = store
    if state != "opened":
        copy = tmp_path / "mlflow.db"
        if state == "unstamped":
            shutil.copy(store.removeprefix("sqlite:///"), copy)
        where = f"sqlite:///{copy}"
    from loopback import free_port

    # a port of its own: the cases run at once under xdist, and a fixed one (1) was held by the other
    result = _cli("serve", "--port", str(free_port()), "--workers", "2", store=where)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    if state == "missing":
        assert f"no registry at {tmp_path / 'mlflow.db'}: nothing has been registered there" in result.stderr
        assert list(tmp_path.iterdir()) == []
    else:
        assert "no registered model 'ocsf-anomaly-demo'" in result.stderr
        assert "duplicate column" not in result.stderr


async def test_the_poll_keeps_serving_through_a_registry_without_a_champion(
    aiohttp_client: Any, store: str, registry: Registry, two_versions: str, held_out_events: list[Event]
) -> None:
    client = await aiohttp_client(create_app(_settings(store, two_versions, model_poll_seconds=0.1)))
    registry.client.delete_registered_model_alias(two_versions, "champion")  # removed by hand, say

    async def failed_twice() -> bool:  # at least: a busy host may see the count pass 2 between looks
        return await _reloads(client, "failed") >= 2

    await eventually_async(failed_twice, "the poll noticing the missing champion (twice)")
    status, body = await _score(client, held_out_events[0])
    assert status == 200
    assert body["results"][0]["model"]["version"] == "1"  # the last good champion keeps answering
    response = await client.post("/v1/models/reload")
    assert response.status == 409
    assert "no version of" in (await response.json())["error"]["message"]
    registry.promote(two_versions, "2")
    await _wait_for(client, held_out_events[0], "2")  # and the poll picks up the next one


async def test_a_failing_poll_is_logged_once_until_it_changes_or_passes(
    aiohttp_client: Any,
    store: str,
    registry: Registry,
    two_versions: str,
    held_out_events: list[Event],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every poll logged its failure again (a warning every 30 s for as long as the registry was down
    or a bad version held the alias), and a bad bundle's was new each time: it named the download's
    temporary folder, not the version."""
    caplog.set_level(logging.INFO, logger="ocsf_anomaly.service")
    client = await aiohttp_client(create_app(_settings(store, two_versions, model_poll_seconds=0.1)))
    second = registry.versions(two_versions)[0]
    (Path(second.source.removeprefix("file://")) / "weights.npz").write_bytes(b"truncated")
    registry.promote(two_versions, "2")

    def warned() -> list[str]:
        return [
            r.getMessage()
            for r in caplog.records
            if r.name == "ocsf_anomaly.service" and r.levelno >= logging.WARNING
        ]

    async def failed(times: int) -> bool:
        return await _reloads(client, "failed") >= times

    await eventually_async(lambda: failed(3), "three polls failing to load version 2")
    assert len(warned()) == 1, warned()
    assert f"models:/{two_versions}/2: weights.npz does not match its digest" in warned()[0]
    assert "ocsf-anomaly-bundle-" not in warned()[0]
    registry.client.delete_registered_model_alias(two_versions, "champion")  # another failure: logged
    await eventually_async(lambda: len(warned()) == 2, "the new failure logged")
    assert "no version of" in warned()[1]
    count = await _reloads(client, "failed")
    await eventually_async(lambda: failed(count + 2), "two more polls failing the same way")
    assert len(warned()) == 2, warned()
    writer = sqlite3.connect(store.removeprefix("sqlite:///"), isolation_level=None)
    writer.execute("BEGIN EXCLUSIVE")  # another writer holds the store: one line, not MLflow's traceback
    try:
        await eventually_async(lambda: len(warned()) == 3, "the locked store logged")
    finally:
        writer.rollback()
        writer.close()
    assert warned()[2].endswith("database is locked (logged again when this changes)"), warned()[2]
    assert not [r for r in caplog.records if r.name.startswith("mlflow") and r.levelno >= logging.WARNING]
    registry.promote(two_versions, "1")  # the version serving: the poll succeeds again, and says so

    def recovered() -> bool:
        return any("the model source answers again" in r.getMessage() for r in caplog.records)

    await eventually_async(recovered, "the recovery logged")
    status, body = await _score(client, held_out_events[0])
    assert status == 200
    assert body["results"][0]["model"]["version"] == "1"


async def test_the_poll_does_not_fetch_again_a_version_that_could_not_be_loaded(
    aiohttp_client: Any, store: str, registry: Registry, two_versions: str, held_out_events: list[Event]
) -> None:
    """A version that cannot be loaded was downloaded again at every poll (a bundle can be hundreds
    of megabytes). The poll now fails with what it learnt, unfetched for ten minutes; a reload asked
    for fetches again. Seen here by mending the version's file in place: the poll does not notice, the reload
    does."""
    client = await aiohttp_client(create_app(_settings(store, two_versions, model_poll_seconds=0.1)))
    second = registry.versions(two_versions)[0]
    weights = Path(second.source.removeprefix("file://")) / "weights.npz"
    good = weights.read_bytes()
    weights.write_bytes(b"truncated")
    registry.promote(two_versions, "2")
    await eventually_async(lambda: _reloads_at_least(client, "failed", 1), "a poll failing to load version 2")
    weights.write_bytes(good)
    count = await _reloads(client, "failed")
    await eventually_async(lambda: _reloads_at_least(client, "failed", count + 3), "three more polls")
    status, body = await _score(client, held_out_events[0])
    assert status == 200
    assert body["results"][0]["model"]["version"] == "1"  # version 2 was not fetched again
    response = await client.post("/v1/models/reload")
    assert response.status == 200, await response.text()
    assert (await response.json())["to"]["champion"] == "2"
    await _wait_for(client, held_out_events[0], "2")


async def test_the_poll_fetches_a_refused_version_again_after_a_while(
    aiohttp_client: Any,
    store: str,
    registry: Registry,
    two_versions: str,
    held_out_events: list[Event],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What made a version fail may pass (a broken download): the poll tries it again once the
    refusal is REFUSED_SECONDS old (ten minutes; one second here)."""
    from scorer.service import lifecycle

    monkeypatch.setattr(lifecycle, "REFUSED_SECONDS", 1.0)
    client = await aiohttp_client(create_app(_settings(store, two_versions, model_poll_seconds=0.1)))
    weights = Path(registry.versions(two_versions)[0].source.removeprefix("file://")) / "weights.npz"
    good = weights.read_bytes()
    weights.write_bytes(b"truncated")
    registry.promote(two_versions, "2")
    await eventually_async(lambda: _reloads_at_least(client, "failed", 1), "a poll failing to load version 2")
    weights.write_bytes(good)
    await _wait_for(client, held_out_events[0], "2")  # by the poll alone


async def test_a_challenger_that_cannot_be_loaded_never_holds_back_the_champion(
    aiohttp_client: Any,
    store: str,
    registry: Registry,
    two_versions: str,
    bundle_dir: Path,
    held_out_events: list[Event],
) -> None:
    """Reloads were all or nothing: with a broken challenger the service did not start, and a new
    champion (a rollback in an incident, say) was refused until someone removed the challenger. The
    champion now serves alone, and the refusal is said (409 on a reload, a warning)."""
    weights = Path(registry.versions(two_versions)[0].source.removeprefix("file://")) / "weights.npz"
    weights.write_bytes(b"truncated")
    registry.promote(two_versions, "2", alias="challenger")
    client = await aiohttp_client(create_app(_settings(store, two_versions)))  # it starts
    models = await (await client.get("/v1/models")).json()
    assert (models["champion"]["version"], models["challenger"]) == ("1", None)
    third, _ = registry.register(bundle_dir, two_versions)
    registry.promote(two_versions, third.version)
    response = await client.post("/v1/models/reload")
    assert response.status == 409
    message = (await response.json())["error"]["message"]
    assert f"the challenger models:/{two_versions}/2 was not loaded, so the champion serves alone" in message
    assert "weights.npz" in message
    status, body = await _score(client, held_out_events[0])
    assert status == 200
    assert body["results"][0]["model"]["version"] == third.version  # the new champion answers
    assert await _reloads(client, "swapped") == 1


async def _reloads_at_least(client: Any, result: str, count: float) -> bool:
    return await _reloads(client, result) >= count


def test_models_list_shows_a_version_whose_run_is_gone(
    store: str, registry: Registry, two_versions: str
) -> None:
    """`mlflow gc` deletes a deleted run for good; `models list` then failed as a whole ("cannot read
    the run of models:/NAME/1"), for want of one version's training metrics."""
    first = registry.lookup(f"models:/{two_versions}/1")
    registry.client.delete_run(first.run_id)
    registry.client._tracking_client.store._hard_delete_run(first.run_id)  # what `mlflow gc` does
    assert registry.metrics(first) == {}
    listing = _cli("models", "list", "--name", two_versions, "--json", store=store)
    assert listing.returncode == 0, listing.stderr
    versions = json.loads(listing.stdout)["versions"]
    assert [(v["version"], v["aliases"], bool(v["metrics"])) for v in versions] == [
        ("2", [], True),
        ("1", ["champion"], False),
    ]


@pytest.mark.parametrize("uri", ["sqlite://", "sqlite:///:memory:", "sqlite:///", "sqlite:////"])
def test_a_sqlite_uri_without_a_database_file_is_refused(tmp_path: Path, uri: str) -> None:
    """`sqlite://` is SQLite's store in memory: `train --register` said "registered models:/NAME/1"
    of a version gone at exit, and left its bundle in ./mlruns; `sqlite:///` failed with "PosixPath('.')
    has an empty name"."""
    with pytest.raises(RegistryError, match=r"names no database file: sqlite:////PATH/mlflow\.db"):
        Registry(uri)
    result = subprocess.run(
        [sys.executable, "-m", "scorer.cli", "models", "list"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OCSF_ANOMALY_REGISTRY_URI": uri},
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {uri} names no database file")
    assert list(tmp_path.iterdir()) == []


def _register_together(store: str, name: str, directories: tuple[Path, Path]) -> list[tuple[str, bool]]:
    """Two registries (as two processes have) registering a version of ``name`` at the same moment:
    each version made and whether it was said to be the champion, or the error."""
    start, done = threading.Barrier(2), []

    def register(directory: Path) -> None:
        registry = Registry(store)
        start.wait()
        try:
            version, champion = registry.register(directory, name)
            done.append((version.version, champion))
        except RegistryError as exc:
            done.append((str(exc), False))

    threads = [threading.Thread(target=register, args=(directory,)) for directory in directories]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return done


def test_two_first_versions_registered_at_once_both_register(
    store: str, bundle_dir: Path, other_bundle_dir: Path
) -> None:
    """Two `train --register NEW` finishing together (a pipeline's parallel jobs) both found no
    experiment for the model and both made one: the second failed, after its training, with
    "Experiment(name=…) already exists"; or both found no champion and both set it ("UNIQUE
    constraint failed: registered_model_aliases…"), the version registered all the same; then both
    could be told they were made champion, the history naming the one that was not. Raced a few
    times, as two processes would meet: both versions registered, one the champion, and only it
    says so (a local store's moves of an alias take turns)."""
    registry = Registry(store)
    for _ in range(6):
        name = f"raced-{uuid.uuid4().hex[:8]}"
        done = _register_together(store, name, (bundle_dir, other_bundle_dir))
        assert sorted(version for version, _ in done) == ["1", "2"], done
        champion = registry.alias(name, "champion")
        assert champion is not None
        assert [version for version, said in done if said] == [champion.version], done
        assert registry._history(name, "champion") == [champion.version]


def test_promotions_at_once_keep_the_history_true(
    store: str, bundle_dir: Path, other_bundle_dir: Path
) -> None:
    """Two operators (or a pipeline and an operator) promoting at the same moment: each read the
    history, set the alias and wrote the history, and the later write could name the version the
    earlier alias move put there, so that a rollback went back to the wrong one. Raced a few times:
    the history's last version is the champion after every round."""
    registry = Registry(store)
    name = f"promoted-{uuid.uuid4().hex[:8]}"
    registry.register(bundle_dir, name)
    registry.register(other_bundle_dir, name)
    operators = [Registry(store), Registry(store)]
    for _ in range(30):
        start = threading.Barrier(2)

        def promote(operator: Registry, version: str, start: threading.Barrier = start) -> None:
            start.wait()
            operator.promote(name, version)

        threads = [threading.Thread(target=promote, args=(operators[i], str(i + 1))) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        champion = registry.alias(name, "champion")
        assert champion is not None
        assert registry._history(name, "champion")[-1] == champion.version
