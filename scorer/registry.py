"""Model versions in an MLflow registry: register a bundle, move the champion and challenger aliases,
roll back, and resolve what serves.

The embedded default is a local store: an SQLite database with an artifact folder beside it, under
the gitignored ``data/mlflow``; a team points ``OCSF_ANOMALY_REGISTRY_URI`` (or ``MLFLOW_TRACKING_URI``)
at an MLflow server and nothing else changes. Only the bundle's plain files travel through MLflow
(as run artifacts); nothing is logged as an MLflow model flavour and nothing is ever unpickled.

MLflow keeps no history of an alias, so promotions are recorded in a registered-model tag per alias
(``ocsf_anomaly.history.champion``: the versions that held it, oldest first) and ``rollback`` walks it
back. The champion and the challenger are never one version: a champion moved onto the
challenger's version removes the challenger alias. Each version carries its bundle's content
version in a tag; a bundle downloaded from the artifact store must match it, so an artifact altered
after registration is refused.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import shlex
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scorer import bundle
from scorer.errors import UserError, without_credentials

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger("ocsf_anomaly.registry")

ALIASES = ("champion", "challenger")
HISTORY_TAG = "ocsf_anomaly.history."
BUNDLE_TAG = "ocsf_anomaly.bundle_version"
DIGEST_TAG = "ocsf_anomaly.bundle_digest"  # the whole digest the version shortens (versions since 2026-12-06)
HISTORY_KEEP = 50  # versions remembered per alias (a tag holds at most a few kB)
HELD_SHOWN = 10  # registered models named by an error that names a model the registry does not hold
ARTIFACT_PATH = "bundle"


class RegistryError(UserError, ValueError):
    """A registry operation that cannot be done, with what to do instead."""


@dataclass(frozen=True)
class ModelVersion:
    """One registered version of a model."""

    name: str
    version: str
    bundle_version: str
    source: str  # the artifact URI of the bundle
    aliases: tuple[str, ...] = ()
    created_ms: int = 0
    run_id: str = ""
    bundle_digest: str = ""  # bundle.content_digest of what was registered ("" before it was kept)

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


@dataclass(frozen=True)
class AliasMove:
    """What ``promote`` or ``rollback`` did: the alias went from ``before`` to ``after`` (None: not
    held); ``retired`` is the challenger removed because the champion moved onto its version."""

    before: ModelVersion | None
    after: ModelVersion | None
    retired: ModelVersion | None = None


def _sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///PATH`` URI (four slashes: an absolute path), else None."""
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


@contextmanager
def _alone(database: Path | None) -> Iterator[bool]:
    """Holds a lock beside a local store's database (none for a server) while it is opened, until
    this version of MLflow has opened it once; answers whether it holds it (then the schema is to be
    made now). The first to open a new store creates its schema (a new MLflow migrates it), and
    processes opening one at once (serve's serving processes, a stream consumer started beside them)
    collided in MLflow's migrations: "duplicate column name: step", or a migration that found no
    row. Opening takes a second: once the schema is made, no lock."""
    if database is None:
        yield False
        return
    from mlflow import __version__

    stamp = f"schema made by mlflow {__version__}\n"
    marker = database.with_name(database.name + ".lock")
    if database.exists() and database.stat().st_size and _text(marker) == stamp:
        yield False
        return
    with open(marker, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        yield True
        lock.seek(0)
        lock.truncate()
        lock.write(stamp)


@contextmanager
def _moving(database: Path | None) -> Iterator[None]:
    """Holds a lock beside a local store's database (none for a server) while an alias and its
    history are read and written: MLflow has no compare-and-set, so two moves at once (two first
    versions registered, two promotions) each read the aliases before the other wrote, and both
    versions were told they were made champion, or the history lost a move."""
    if database is None:
        yield
        return
    with open(database.with_name(database.name + ".aliases.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        yield


def _text(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def configure_mlflow() -> None:
    """MLflow's process-wide settings for this program; entry points (the CLI, the service) call it.

    No progress bars; and MLflow's HTTP client retries 7 times with backoff over minutes by
    default, so an unreachable server would hold a start or a poll that long: 2 retries and 10 s
    here. Settings of these in the environment win.
    """
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    for noisy in ("alembic", "mlflow.store.db.utils"):  # schema migrations on a new store
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # a warning for each retry of a server that does not answer, at every poll: the error that
    # follows is ours to report (the service's poll: once, not at every poll)
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    store = logging.getLogger("mlflow.store.db.utils")
    if not any(isinstance(f, _RaisedAnyway) for f in store.filters):
        store.addFilter(_RaisedAnyway())


class _RaisedAnyway(logging.Filter):
    """Drops the traceback MLflow logs for every query that finds a local store locked, before it
    raises the error anyway: reporting it is ours (the service's poll: once, not at every poll)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("SQLAlchemy database error")


class Registry:
    """The MLflow registry at ``uri`` (a tracking URI: ``sqlite:///…``, ``http://…``).

    Calls are synchronous and may do network or disk I/O: the service runs them off its event loop.
    """

    def __init__(self, uri: str, *, create: bool = True) -> None:
        """``create=False``: a local store that does not exist yet is refused, not made (a
        mistyped path would otherwise give a new, empty registry)."""
        from mlflow import MlflowClient

        self._uri = uri  # what MLflow connects to
        self.uri = without_credentials(uri)  # what messages and listings show
        database = _sqlite_path(uri)
        scheme = uri.partition(":")[0] if ":" in uri else ""
        if scheme in ("", "file") and uri != "databricks":  # MLflow's file store, in maintenance mode
            folder = Path(uri.removeprefix("file://").removeprefix("file:")).absolute()
            raise RegistryError(
                f"registry {uri} is a folder, not a registry: name a SQLite database "
                f"(sqlite:///{folder / 'mlflow.db'}) or a tracking server (http://HOST:5000)"
            )
        if scheme == "sqlite" and (database is None or database.name in ("", ":memory:")):
            # `sqlite://` is a store in memory: a version registered there was gone at exit, its
            # bundle left in ./mlruns of the working directory
            raise RegistryError(
                f"{uri} names no database file: sqlite:////PATH/mlflow.db (four slashes: an absolute path)"
            )
        if database is not None and not create and not (database.is_file() and database.stat().st_size):
            raise RegistryError(
                f"no registry at {database}: nothing has been registered there "
                "(check registry_uri; `ocsf-anomaly demo` registers the demo model, which serve serves by default, "
                "and `ocsf-anomaly train EVENTS --register NAME` yours: serve it with OCSF_ANOMALY_MODEL_NAME=NAME)"
            )
        # a local store keeps its artifacts beside the database (MLflow's default is ./mlruns of the
        # working directory); a server decides for itself
        self._database = database
        self._artifacts = database.parent / "artifacts" if database is not None else None
        if database is not None:
            database.parent.mkdir(parents=True, exist_ok=True)
        with self._errors(f"cannot open the registry at {uri}"), _alone(database) as making:
            self.client: MlflowClient = MlflowClient(tracking_uri=uri, registry_uri=uri)
            if making:  # both sides of the store opened now, while alone
                self.client.search_registered_models(max_results=1)
                self.client.search_experiments(max_results=1)

    def answers(self) -> None:
        """RegistryError unless the registry answers, and a local one takes writes: a server is not
        asked until it is used, and a command that registers asks first, not after its work
        (`train --register` trained, then found a server down or mistyped, or a read-only store)."""
        with self._errors(f"cannot reach the registry at {self.uri}"):
            self.client.search_experiments(max_results=1)
        if self._database is None or self._artifacts is None:
            return
        # SQLite writes the database and a journal beside it; the bundles go under artifacts/
        for place in (self._database, self._database.parent, self._artifacts):
            existing = next(p for p in (place, *place.parents) if p.exists())
            if not os.access(existing, os.W_OK | (os.X_OK if existing.is_dir() else 0)):
                raise RegistryError(
                    f"the registry at {self.uri} cannot be written: {existing} does not take "
                    "changes (read-only, or not yours to write)"
                )

    # ------------------------------------------------------------------ errors
    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        from mlflow.exceptions import MlflowException
        from sqlalchemy.exc import SQLAlchemyError

        try:
            yield
        except MlflowException as exc:
            raise RegistryError(f"{doing}: {_why(exc)}") from exc
        # a local store that is not a database, or locked: MLflow opens it unwrapped
        except SQLAlchemyError as exc:
            raise RegistryError(f"{doing}: {_one_line(str(exc))}") from exc
        except OSError as exc:  # an unreachable server or an unwritable store
            raise RegistryError(f"{doing}: {_why(exc)}") from exc

    def _model(self, name: str) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_registered_model(name)
        except MlflowException as exc:
            if _missing(exc):
                raise RegistryError(
                    f"no registered model {name!r} in {self.uri} ({self._held()}): "
                    f"register one with `ocsf-anomaly train EVENTS --register {shlex.quote(name)}`"
                ) from None
            raise RegistryError(f"cannot read model {name!r} from {self.uri}: {_why(exc)}") from exc

    def _held(self) -> str:
        """The registered models the registry holds, for an error naming one it does not hold (a
        misspelt name, or the default where another was meant): the first few by name."""
        from mlflow.exceptions import MlflowException

        try:
            found = self.client.search_registered_models(max_results=HELD_SHOWN + 1, order_by=["name ASC"])
        except (MlflowException, OSError):
            return "the models it holds cannot be listed"
        names = [repr(m.name) for m in found]
        if not names:
            return "it holds no model yet"
        more = ", …" if len(names) > HELD_SHOWN else ""
        return f"it holds {', '.join(names[:HELD_SHOWN])}{more}"

    # ------------------------------------------------------------------ register
    def register(self, bundle_dir: Path, name: str) -> tuple[ModelVersion, bool]:
        """Log the bundle and its metrics as a run and register it as a new version of ``name``.

        The first version of a model that has no champion becomes the champion, so that a new
        model serves at once; otherwise promote it explicitly. Returns the version and whether it
        was made champion.
        """
        from mlflow.entities import Metric, Param
        from mlflow.exceptions import MlflowException

        check_name(name)
        metadata = bundle.read_metadata(bundle_dir)
        digest = bundle.content_digest(metadata)
        with self._errors(f"cannot register {bundle_dir} as {name!r} in {self.uri}"):
            experiment = self.client.get_experiment_by_name(name)
            if experiment is None:
                location = (self._artifacts / name).as_uri() if self._artifacts is not None else None
                try:
                    experiment_id = self.client.create_experiment(name, artifact_location=location)
                except MlflowException as exc:  # made meanwhile: two first versions registered at once
                    if getattr(exc, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
                        raise
                    experiment = self.client.get_experiment_by_name(name)
                    if experiment is None:
                        raise
            if experiment is not None:
                experiment_id = experiment.experiment_id
                if experiment.lifecycle_stage == "deleted":
                    # deleted in MLflow's UI, say: its name stays taken until `mlflow gc`, and no run
                    # can go in it ("must be in the 'active' state"), so the model took no new version
                    self.client.restore_experiment(experiment_id)
                    log.warning(
                        "restored the deleted MLflow experiment %r, where the runs of its versions go", name
                    )
            run = self.client.create_run(
                experiment_id,
                run_name=f"{'refresh' if metadata.get('refreshed_from') else 'train'}-{metadata['version']}",
                tags={BUNDLE_TAG: str(metadata["version"])},
            )
            run_id = run.info.run_id
            try:
                now = int(time.time() * 1000)
                self.client.log_batch(
                    run_id,
                    metrics=[Metric(k, v, now, step) for k, v, step in _metrics(metadata)],
                    params=[Param(k, v) for k, v in _params(metadata).items()],
                )
                self.client.log_artifacts(run_id, str(bundle_dir), ARTIFACT_PATH)
            except BaseException:
                self.client.set_terminated(run_id, status="FAILED")
                raise
            self.client.set_terminated(run_id)
            try:
                self.client.create_registered_model(
                    name, description=f"ocsf-anomaly detector bundles (see {_listing(name)})"
                )
            except MlflowException as exc:
                if getattr(exc, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
                    raise
            created = self.client.create_model_version(
                name,
                source=f"{run.info.artifact_uri}/{ARTIFACT_PATH}",
                run_id=run_id,
                tags={BUNDLE_TAG: str(metadata["version"]), DIGEST_TAG: digest},
                description=f"bundle {metadata['version']}",
            )
        version = self._version(created)
        with _moving(self._database):
            if self.alias(name, "champion") is not None:
                return version, False
            try:
                self._promote(name, version.version, "champion")
            except RegistryError:  # the first versions of two registrations at once on a server:
                if self.alias(name, "champion") is None:  # one is champion, the other need not fail
                    raise
            with self._errors(f"cannot read {version.uri}"):
                registered = self._version(self.client.get_model_version(name, version.version))
            return registered, "champion" in registered.aliases  # on a server the other may have set it last

    # ------------------------------------------------------------------ read
    def _version(self, mv: Any) -> ModelVersion:
        return ModelVersion(
            name=mv.name,
            version=str(mv.version),
            bundle_version=str((mv.tags or {}).get(BUNDLE_TAG, "")),
            bundle_digest=str((mv.tags or {}).get(DIGEST_TAG, "")),
            source=str(mv.source),
            aliases=tuple(sorted(getattr(mv, "aliases", None) or ())),
            created_ms=int(mv.creation_timestamp or 0),
            run_id=str(mv.run_id or ""),
        )

    def versions(self, name: str) -> list[ModelVersion]:
        """Every version of ``name``, newest first."""
        held: dict[str, list[str]] = {}
        for alias, number in (self._model(name).aliases or {}).items():
            held.setdefault(str(number), []).append(alias)
        with self._errors(f"cannot list versions of {name!r}"):
            found = self.client.search_model_versions(f"name = {_quote(name)}")
        versions = [
            replace(self._version(v), aliases=tuple(sorted(held.get(str(v.version), [])))) for v in found
        ]
        return sorted(versions, key=lambda v: int(v.version), reverse=True)

    def metrics(self, version: ModelVersion) -> dict[str, float]:
        """The metrics logged with the version's training run; none if the run is gone (`mlflow gc`
        deletes a deleted run for good: the version is still listed, without them)."""
        from mlflow.exceptions import MlflowException

        if not version.run_id:
            return {}
        with self._errors(f"cannot read the run of {version.uri}"):
            try:
                return dict(self.client.get_run(version.run_id).data.metrics)
            except MlflowException as exc:
                if _missing(exc):
                    return {}
                raise

    def alias(self, name: str, alias: str) -> ModelVersion | None:
        """The version that holds ``alias``, or None."""
        _check_alias(alias)
        return self.aliases(name).get(alias)

    def aliases(self, name: str) -> dict[str, ModelVersion]:
        """The versions that hold the champion and challenger aliases (one read of the model)."""
        from mlflow.exceptions import MlflowException

        held = {a: str(v) for a, v in (self._model(name).aliases or {}).items() if a in ALIASES}
        try:
            return {a: self._version(self.client.get_model_version(name, v)) for a, v in held.items()}
        except MlflowException as exc:
            raise RegistryError(f"cannot read the aliases of {name!r}: {_why(exc)}") from exc

    def _get(self, name: str, version: str) -> ModelVersion:
        from mlflow.exceptions import MlflowException

        if not (version.isascii() and version.isdigit() and 0 < int(version) < 2**63):
            # MLflow reads it with int(): "１" or " 2" named version 2, 2**64 failed in SQLite
            raise RegistryError(
                f"{name!r} has no version {version!r}: versions are numbers from 1 (see {_listing(name)})"
            )
        try:
            return self._version(self.client.get_model_version(name, version))
        except MlflowException as exc:
            if _missing(exc) or getattr(exc, "error_code", "") == "INVALID_PARAMETER_VALUE":
                self._model(name)  # no such model at all: said as `models list` says it
                raise RegistryError(f"{name!r} has no version {version!r} (see {_listing(name)})") from None
            raise RegistryError(f"cannot read {name} version {version}: {_why(exc)}") from exc

    def lookup(self, uri: str) -> ModelVersion:
        """The version ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS`` names."""
        ref = uri.removeprefix("models:/")
        if ref == uri or not ref:
            raise RegistryError(f"{uri!r} is not a model URI: models:/NAME/VERSION or models:/NAME@ALIAS")
        if "@" in ref:
            name, alias = ref.rsplit("@", 1)
            found = self.alias(name, alias)
            if found is None:
                raise RegistryError(
                    f"no version of {name!r} holds the alias {alias} in {self.uri} (see {_listing(name)})"
                )
            return found
        name, _, version = ref.rpartition("/")
        if not name or not version:
            raise RegistryError(f"{uri!r} names no version: models:/NAME/VERSION or models:/NAME@ALIAS")
        return self._get(name, version)

    # ------------------------------------------------------------------ aliases
    def _history(self, name: str, alias: str) -> list[str]:
        raw = (self._model(name).tags or {}).get(HISTORY_TAG + alias, "[]")
        try:
            history = json.loads(raw)
        except json.JSONDecodeError:
            return []
        return [str(v) for v in history] if isinstance(history, list) else []

    def _set_history(self, name: str, alias: str, history: list[str]) -> None:
        self.client.set_registered_model_tag(name, HISTORY_TAG + alias, json.dumps(history[-HISTORY_KEEP:]))

    def promote(self, name: str, version: str, alias: str = "champion") -> AliasMove:
        """Give ``alias`` to ``version``.

        The champion and the challenger are never one version (a version compared with itself
        tells nothing): a champion moved onto the challenger's version takes the challenger's place
        and the challenger alias is removed; the challenger cannot be given the champion's version.
        """
        with _moving(self._database):
            return self._promote(name, version, alias)

    def _promote(self, name: str, version: str, alias: str) -> AliasMove:
        _check_alias(alias)
        target = self._get(name, str(version))
        held = self.aliases(name)
        champion = held.get("champion")
        if alias == "challenger" and champion is not None and champion.version == target.version:
            raise RegistryError(
                f"version {target.version} of {name!r} is the champion: the challenger must be another "
                "version (it is compared with the champion)"
            )
        previous = held.get(alias)
        history = self._history(name, alias)
        if previous is not None and (not history or history[-1] != previous.version):
            history.append(previous.version)  # the alias was moved outside this tool
        with self._errors(f"cannot promote {target.uri} to {alias}"):
            self.client.set_registered_model_alias(name, alias, target.version)
            if not history or history[-1] != target.version:
                history.append(target.version)
            self._set_history(name, alias, history)
            return AliasMove(previous, target, self._retire_challenger(name, alias, target, held))

    def rollback(self, name: str, alias: str = "champion") -> AliasMove:
        """Give ``alias`` back to the version that held it before.

        A challenger with no earlier holder, or whose earlier holder is the champion now, is
        removed (the A/B test stops); a champion always needs a version to go back to, and takes
        the challenger's place if it goes back to the challenger's version (as ``promote``).
        """
        with _moving(self._database):
            return self._rollback(name, alias)

    def _rollback(self, name: str, alias: str) -> AliasMove:
        _check_alias(alias)
        held = self.aliases(name)
        current = held.get(alias)
        if current is None:
            raise RegistryError(f"no version of {name!r} is {alias}: nothing to roll back")
        history = self._history(name, alias)
        if not history or history[-1] != current.version:
            history.append(current.version)  # the alias was moved outside this tool
        existing = {v.version for v in self.versions(name)}
        earlier: list[str] = []
        for number in history[:-1]:  # a version deleted since cannot serve: passed over, not a dead end
            if number in existing and (not earlier or earlier[-1] != number):
                earlier.append(number)
        while earlier and earlier[-1] == current.version:
            earlier.pop()
        champion = held.get("champion")
        with self._errors(f"cannot roll back {name}@{alias}"):
            if alias == "challenger" and (
                not earlier or (champion is not None and earlier[-1] == champion.version)
            ):
                self.client.delete_registered_model_alias(name, alias)
                self._set_history(name, alias, earlier)
                return AliasMove(current, None)
            if not earlier:
                raise RegistryError(
                    f"{name}@champion (version {current.version}) has no earlier champion to roll back to; "
                    f"promote another version with {promoting(name)}"
                )
            back = self._get(name, earlier[-1])
            self.client.set_registered_model_alias(name, alias, back.version)
            self._set_history(name, alias, earlier)
            return AliasMove(current, back, self._retire_challenger(name, alias, back, held))

    def _retire_challenger(
        self, name: str, alias: str, target: ModelVersion, held: dict[str, ModelVersion]
    ) -> ModelVersion | None:
        """Remove the challenger alias if the champion has just moved onto its version; returns
        the challenger removed."""
        challenger = held.get("challenger")
        if alias != "champion" or challenger is None or challenger.version != target.version:
            return None
        self.client.delete_registered_model_alias(name, "challenger")
        return challenger

    # ------------------------------------------------------------------ fetch
    @contextmanager
    def fetched(self, version: ModelVersion) -> Iterator[Path]:
        """The version's bundle downloaded into a temporary directory, removed afterwards; its
        content must be the bundle that was registered."""
        import mlflow.artifacts

        scratch = Path(tempfile.mkdtemp(prefix="ocsf-anomaly-bundle-"))
        try:
            try:
                with self._errors(f"cannot download {version.uri} from {version.source}"):
                    path = Path(
                        mlflow.artifacts.download_artifacts(
                            artifact_uri=version.source, dst_path=str(scratch), tracking_uri=self._uri
                        )
                    )
            except RegistryError as exc:
                raise _download_error(exc, version, scratch) from exc
            try:
                metadata = bundle.read_metadata(path)
                found = metadata.get("version")
                if (version.bundle_version and found != version.bundle_version) or (
                    version.bundle_digest and bundle.content_digest(metadata) != version.bundle_digest
                ):  # the whole digest where it was kept: 12 digits are 48 bits to find a match for
                    raise bundle.BundleError(
                        f"{version.uri}: the artifact holds bundle {found}, registered as {version.bundle_version} "
                        "(altered after registration)"
                    )
                yield path
            except bundle.BundleError as exc:  # named by the version, not by the download's temporary folder
                raise bundle.BundleError(str(exc).replace(str(path), version.uri)) from exc
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def _download_error(exc: RegistryError, version: ModelVersion, scratch: Path) -> RegistryError:
    """A download's error as the same line each time it fails: MLflow names the temporary folder (a
    new one each try, so the service's poll logged it again every time, 2,800 characters of it), and
    with TMPDIR full it said "No space left on device" once for each of the bundle's files."""
    said = str(exc)
    if os.strerror(errno.ENOSPC) in said:  # MLflow gathers its failures as text, file by file
        return RegistryError(
            f"cannot download {version.uri}: no space left on the device of {scratch.parent} (TMPDIR) for its "
            "bundle; free space there, or point TMPDIR at a file system with room"
        )
    return RegistryError(said.replace(str(scratch), "TMPDIR/ocsf-anomaly-bundle-…"))


def _one_line(message: str) -> str:
    """An MLflow or SQLAlchemy message as one line: SQLAlchemy adds the statement (of several lines),
    its parameters and a link after its own, and MLflow's download errors put the reason under a banner."""
    noise = ("(Background on this error", "#####")
    lines = (line.strip() for line in message.split("\n[SQL:")[0].splitlines())
    return " ".join(line for line in lines if line and not line.startswith(noise))


def _listing(name: str) -> str:
    """The command that lists ``name``'s versions, as it can be typed: with ``--name`` (the default
    name is the settings' model_name, which may be another), quoted for a shell where it must be."""
    return f"`ocsf-anomaly models list --name {shlex.quote(name)}`"


def promoting(name: str, version: str = "VERSION", alias: str = "champion") -> str:
    """The command that gives ``name``'s ``version`` the alias, as it can be typed (as :func:`_listing`)."""
    given = "" if alias == "champion" else f" --alias {alias}"
    return f"`ocsf-anomaly models promote {version}{given} --name {shlex.quote(name)}`"


def _why(exc: Exception) -> str:
    """What went wrong, in one line: for a server that cannot be reached, the reason (refused, no such
    host, timed out) and what to check, not MLflow's retries and urllib3's pool in full."""
    import requests
    import urllib3

    reason: str | None = None
    # the host and port that did not answer, where urllib3 says (an artifact store's, it may be)
    where = "there"
    unreachable = timed_out = False
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:  # MLflow → requests → urllib3 → the socket's error
        seen.add(id(cause))
        if isinstance(cause, requests.exceptions.SSLError):  # it answered: MLflow's message says what failed
            break
        if isinstance(cause, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
            unreachable = True
            timed_out = timed_out or isinstance(cause, requests.exceptions.Timeout)
        # a server that takes the connection and never answers: requests says ConnectionError once
        # the retries are spent, and only urllib3's last try says it timed out ("cannot connect", said
        # of a server that had connected: the resilience review)
        timed_out = timed_out or isinstance(cause, urllib3.exceptions.ReadTimeoutError)
        if isinstance(cause, OSError) and cause.strerror:
            reason = cause.strerror
        # urllib3's NewConnectionError: the connection it tried (its deprecated .pool warns); its
        # MaxRetryError: the pool
        pool = getattr(cause, "conn", None) or getattr(cause, "pool", None)
        host, port = getattr(pool, "host", None), getattr(pool, "port", None)
        if host:
            where = f"at {host}:{port}" if port else f"at {host}"
        last_try = getattr(cause, "reason", None)  # urllib3's MaxRetryError holds the last try's error
        cause = (
            cause.__cause__
            or cause.__context__
            or (last_try if isinstance(last_try, BaseException) else None)
        )
    if not unreachable:
        return _one_line(getattr(exc, "message", None) or str(exc))
    if timed_out:
        reason = f"no answer within {os.environ.get('MLFLOW_HTTP_REQUEST_TIMEOUT', '120')} s"
    return (
        f"nothing answers {where} ({reason or 'cannot connect'}): is the server up, and is registry_uri "
        "(OCSF_ANOMALY_REGISTRY_URI or MLFLOW_TRACKING_URI) right?"
    )


def _missing(exc: Exception) -> bool:
    return getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST"


NAME_MAX_BYTES = 255  # a local store names a folder of its artifacts after the model: a file name's limit


def check_name(name: str) -> str:
    """``name`` if it can name a registered model, else RegistryError saying why. Checked before anything
    is written: MLflow refused such a name only after the run and its artifacts were logged (``..`` or a
    "/" in it put them outside the store's artifact folder)."""
    what = f"{name!r} cannot name a registered model"
    if not name.strip():
        raise RegistryError(f"{what}: it is empty")
    # "@" too: models:/NAME@ALIAS and models:/NAME/3 could not name it (a@b/1 read as name a, alias b/1)
    if any(c in name for c in "/:@") or name in (".", ".."):
        raise RegistryError(f"{what}: it may not hold '/', ':' or '@', nor be '.' or '..'")
    if "'" in name and '"' in name:  # MLflow's searches could not find its versions
        raise RegistryError(f"{what}: it may hold single quotes or double quotes, not both")
    if not name.isprintable():
        raise RegistryError(f"{what}: it holds a control character")
    if len(name.encode("utf-8")) > NAME_MAX_BYTES:
        raise RegistryError(f"{what}: it is longer than {NAME_MAX_BYTES} bytes")
    return name


def _check_alias(alias: str) -> None:
    if alias not in ALIASES:
        raise RegistryError(f"alias must be one of {', '.join(ALIASES)}, not {alias!r}")


def _quote(name: str) -> str:
    """``name`` as a string of MLflow's search filters, which take it between quotes as it stands (no
    escapes: ``'a\\'b'`` is searched for as ``a\\'b``): between double quotes if it holds a single quote."""
    return f'"{name}"' if "'" in name else f"'{name}'"


def _params(metadata: dict[str, Any]) -> dict[str, str]:
    """What identifies how the bundle was made (MLflow params are short strings)."""
    training = metadata.get("training", {})
    out = {
        "bundle_version": str(metadata.get("version")),
        "bundle_name": str(metadata.get("name")),
        "features": str(len(metadata.get("features", []))),
        "events": str(training.get("events")),
        "baseline_events": str(training.get("baseline_events")),
        "calibration_events": str(training.get("calibration_events")),
    }
    out.update({f"detector.{k}": str(v) for k, v in metadata.get("detector", {}).items()})
    out.update({f"train.{k}": str(v) for k, v in training.get("config", {}).items()})
    return {k: v[:500] for k, v in out.items()}


def _metrics(metadata: dict[str, Any]) -> list[tuple[str, float, int]]:
    """Numbers worth comparing between versions, as (key, value, step): training time, the loss
    curves by epoch, index recall, size and speed."""
    training = metadata.get("training", {})
    report = training.get("report", {})
    out: list[tuple[str, float, int]] = []
    if isinstance(training.get("seconds"), int | float):
        out.append(("fit_seconds", float(training["seconds"]), 0))
    for key in ("seconds", "epochs_run", "best_epoch", "rows"):
        if isinstance(report.get(key), int | float):
            out.append((f"train_{key}", float(report[key]), 0))
    for curve in ("train_loss", "validation_loss"):
        out += [(curve, float(v), step) for step, v in enumerate(report.get(curve) or [], start=1)]
    for kind, index in metadata.get("index", {}).items():
        for key in ("recall_at_k", "recall_at_k_shifted", "seconds_per_query", "size"):
            if isinstance(index.get(key), int | float):
                out.append((f"index_{kind}_{key}", float(index[key]), 0))
    return out
