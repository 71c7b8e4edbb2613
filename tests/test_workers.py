"""Several serving processes on one port (scorer/service/workers.py), run for real: `ocsf-anomaly
serve --workers 2` as a subprocess on a free loopback port, plain HTTP from the test, a real MLflow
store for the reload, real signals."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from certificates import make_certificate
from filesystems import fill, fill_inodes, small_file_system
from loopback import free_port
from prometheus_client.parser import text_string_to_metric_families
from splunk_protocol import APP_DIR

from scorer.bundle import read_metadata
from scorer.registry import Registry
from scorer.service.workers import METRICS_FILES

Event = dict[str, Any]
JSON = {"Content-Type": "application/json"}


def _serve_command(*args: str | Path | int) -> list[str]:
    """``ocsf-anomaly serve ARGS`` as a subprocess runs it, with this interpreter."""
    return [sys.executable, "-m", "scorer.cli", "serve", *map(str, args)]


STARTING = 180  # seconds a serving process may take to start on a loaded host: a bound, not a measure


class Served:
    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process, self.port, self.log = process, port, log
        self.tls: ssl.SSLContext | None = None  # how a client trusts it, when it serves HTTPS

    def call(self, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
        """A request on a new connection (so the kernel may hand it to either process). It may wait
        for a serving process that is being replaced: as long as serve may take to start one."""
        connection = (
            http.client.HTTPSConnection("127.0.0.1", self.port, timeout=STARTING, context=self.tls)
            if self.tls is not None
            else http.client.HTTPConnection("127.0.0.1", self.port, timeout=STARTING)
        )
        try:
            connection.request(method, path, body=body, headers=JSON)
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        if response.getheader("Content-Type", "").startswith("application/json"):
            return response.status, orjson.loads(data)
        return response.status, data.decode()

    def pid(self) -> int:
        status, body = self.call("GET", "/healthz")
        assert status == 200
        return int(body["pid"])

    def pids(self, want: int = 2, tries: int = 600) -> set[int]:
        """The serving processes seen answering /healthz, asked concurrently until ``want`` answered."""
        seen: set[int] = set()
        with ThreadPoolExecutor(8) as pool:
            for _ in range(tries // 8):
                seen |= set(pool.map(lambda _: self.pid(), range(8)))
                if len(seen) >= want:
                    break
        return seen

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        status, text = self.call("GET", "/metrics")
        assert status == 200
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }


def _until(check: Callable[[], bool], what: str, seconds: float = 60, every: float = 0.05) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(every)


@contextmanager
def _serve(
    tmp_path: Path,
    *args: str | Path,
    env: dict[str, str] | None = None,
    while_starting: Callable[[subprocess.Popen[bytes], int, Path], None] | None = None,
) -> Iterator[Served]:
    """``serve`` on a free port, once it says it serves (``while_starting``: called before that,
    with the process, the port and its log)."""
    port = free_port()
    log = tmp_path / f"serve-{port}.log"
    environment = {
        **os.environ,
        "OCSF_ANOMALY_MODEL_POLL_SECONDS": "0",
        "OCSF_ANOMALY_THREADS": "1",
        "PYTHONWARNINGS": "ignore",
        **(env or {}),
    }
    command = _serve_command("--workers", "2", "--port", port, *args)
    with log.open("w") as sink:
        process = subprocess.Popen(command, stderr=sink, env=environment)
    served = Served(process, port, log)
    try:
        if while_starting is not None:
            while_starting(process, port, log)
        _until(
            lambda: "try:" in log.read_text() or process.poll() is not None, "serve did not start", STARTING
        )
        assert process.poll() is None, log.read_text()
        yield served
    finally:
        if process.poll() is None:  # stopped as an operator would, so it removes its metrics directory
            process.terminate()
            try:
                process.wait(90)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(30)


def _events_total(metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> float:
    return sum(value for (name, _), value in metrics.items() if name == "ocsf_anomaly_events_total")


def test_two_processes_share_the_port_pool_their_metrics_and_stop_on_sigterm(
    bundle_dir: Path, held_out_events: list[Event], tmp_path: Path
) -> None:
    with _serve(tmp_path, "--model", bundle_dir) as served:
        assert "in 2 processes" in served.log.read_text()
        pids = served.pids()
        assert len(pids) == 2, "only one serving process ever answered"
        bodies = [orjson.dumps(event) for event in held_out_events[:40]]
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda body: served.call("POST", "/v1/score", body)[0], bodies))
        assert statuses == [200] * 40
        # whichever process answers /metrics counts what both scored
        for _ in range(6):
            metrics = served.metrics()
            assert _events_total(metrics) == 40
            assert metrics[("ocsf_anomaly_alpha", ())] == 0.01
            assert 0 <= metrics[("ocsf_anomaly_anomaly_rate", (("variant", "champion"),))] <= 1
        metrics_dirs = [
            Path(line.split("=", 1)[1]) for line in _environ(pids) if line.startswith("PROMETHEUS_")
        ]
        assert metrics_dirs
        assert metrics_dirs[0].is_dir()

        served.process.send_signal(signal.SIGTERM)
        assert served.process.wait(60) == 0
        assert not any(Path(f"/proc/{pid}").exists() for pid in pids), (
            "a serving process outlived the service"
        )
        assert not metrics_dirs[0].exists()
        said = served.log.read_text()
        assert "Traceback" not in said
        assert "faiss.loader" not in said  # which SIMD build faiss found, once a process: not news


def test_a_clients_connections_are_spread_over_the_processes(bundle_dir: Path, tmp_path: Path) -> None:
    """16 connections opened at once (a sink's keep-alive pool): on one shared socket the first
    process to wake accepted them all; each process's own SO_REUSEPORT socket spreads them (by
    address: all 16 on one of two processes has odds of 2 in 65,536)."""
    with _serve(tmp_path, "--model", bundle_dir) as served:
        connections = [http.client.HTTPConnection("127.0.0.1", served.port, timeout=60) for _ in range(16)]
        try:
            for connection in connections:
                connection.connect()
            pids = set()
            for connection in connections:
                connection.request("GET", "/healthz")
                response = connection.getresponse()
                pids.add(orjson.loads(response.read())["pid"])
        finally:
            for connection in connections:
                connection.close()
        assert len(pids) == 2, "every connection went to one serving process"


def _environ(pids: set[int]) -> list[str]:
    return Path(f"/proc/{min(pids)}/environ").read_bytes().decode().split("\0")


def test_a_killed_serving_process_is_replaced_and_its_counts_kept(
    bundle_dir: Path, held_out_events: list[Event], tmp_path: Path
) -> None:
    with _serve(tmp_path, "--model", bundle_dir) as served:
        pids = served.pids()
        assert len(pids) == 2
        for event in held_out_events[:20]:
            assert served.call("POST", "/v1/score", orjson.dumps(event))[0] == 200
        victim = min(pids)
        os.kill(victim, signal.SIGKILL)
        # the other process answers meanwhile: nothing is refused while the dead one is replaced
        for event in held_out_events[20:30]:
            assert served.call("POST", "/v1/score", orjson.dumps(event))[0] == 200
        _until(lambda: "is back" in served.log.read_text(), "no replacement started", STARTING)
        now = served.pids()
        assert victim not in now
        assert len(now) == 2
        assert _events_total(served.metrics()) == 30  # the dead process's counts stay in the totals
        log = served.log.read_text()
        assert f"(pid {victim}) exited with code -9; starting another" in log


@pytest.mark.parametrize("full", ["blocks", "inodes"])
def test_a_full_temporary_directory_does_not_kill_the_serving_processes(
    bundle_dir: Path, held_out_events: list[Event], tmp_path: Path, full: str
) -> None:
    """prometheus_client maps each process's metrics files as sparse files: with TMPDIR full, every
    serving process died of SIGBUS at its next metric, then every replacement, until the supervisor
    gave up, and the log never said why (the resilience review). Their blocks are taken at start;
    a process that finds no room for them cannot start, and is tried again while the others serve."""
    with (
        small_file_system(tmp_path / "tmp", "16m", inodes=64 if full == "inodes" else None) as tmp,
        _serve(tmp_path, "--model", bundle_dir, env={"TMPDIR": str(tmp)}) as served,
    ):
        pids = served.pids()
        assert len(pids) == 2
        metrics_dir = next(tmp.glob("ocsf-anomaly-metrics-*"))
        (fill if full == "blocks" else fill_inodes)(tmp)  # no inode left: it "failed", six times
        for event in held_out_events[:40]:
            assert served.call("POST", "/v1/score", orjson.dumps(event))[0] == 200
        assert served.call("GET", "/v1/models")[0] == 200
        assert _events_total(served.metrics()) == 40
        assert served.pids() == pids  # none died and was replaced
        # every file a process wrote its metrics to was one given its blocks at start
        written = {path.name.rsplit("_", 1)[0] for path in metrics_dir.glob("*.db")}
        assert written == set(METRICS_FILES), written
        assert "exited" not in served.log.read_text()
        # a replacement finds no room: the other serves on, and it is tried again later (the whole
        # service stopped after six such deaths: the diff review)
        os.kill(min(pids), signal.SIGKILL)
        _until(
            lambda: "cannot serve (no room for a serving process's metrics" in served.log.read_text(),
            "the replacement refused for want of room",
            STARTING,
        )
        for event in held_out_events[40:50]:
            assert served.call("POST", "/v1/score", orjson.dumps(event))[0] == 200
        assert served.process.poll() is None
        assert "giving up" not in served.log.read_text()
        # and with none left serving, its deaths say why (they said "exited with code 2" alone); the
        # try that found no room gave back what it had taken (2 MiB a try, for as long as the
        # service ran: the second review), so the disk is filled again first
        (fill if full == "blocks" else fill_inodes)(tmp)
        os.kill(max(pids), signal.SIGKILL)
        _until(
            lambda: "exited with code 2: no room for a serving process's metrics" in served.log.read_text(),
            "a death that says why",
            STARTING,
        )


def test_the_metrics_of_a_service_killed_outright_are_removed_by_the_next(
    bundle_dir: Path, tmp_path: Path
) -> None:
    """A supervisor killed with SIGKILL left its metrics directory (the resilience review), 4 MiB
    a serving process, often in memory (a tmpfs /tmp): the next service removes it, known by its
    lock, which the kernel let go (a process id would not do: in a container the supervisor is
    process 1 every time, and another container sharing TMPDIR sees other ids: the diff review)."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    with _serve(tmp_path, "--model", bundle_dir, env={"TMPDIR": str(tmp)}) as served:
        pids = served.pids()
        (abandoned,) = tmp.glob("ocsf-anomaly-metrics-*")
        served.process.kill()
        served.process.wait(30)
        _until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids), "its serving processes stop")
    assert abandoned.exists()
    with _serve(tmp_path, "--model", bundle_dir, env={"TMPDIR": str(tmp)}) as served:
        assert served.call("GET", "/healthz")[0] == 200
        (own,) = tmp.iterdir()  # its own alone: locked while its supervisor runs
        assert (own / ".held").exists()
        with (tmp / "x").open("w"):  # a second service sharing TMPDIR leaves a live one's be
            pass
        second = subprocess.run(
            [sys.executable, "-c", "from scorer.service.workers import _remove_abandoned_metrics as r; r()"],
            env={**os.environ, "TMPDIR": str(tmp)},
            check=True,
        )
        assert second.returncode == 0
        assert own.exists()
    assert not abandoned.exists()


def test_no_room_for_the_metrics_files_is_said_at_start(bundle_dir: Path, tmp_path: Path) -> None:
    with small_file_system(tmp_path / "tmp", "4m") as tmp:
        fill(tmp)
        os.truncate(tmp / "filler-0", 3 << 20)  # room for the metrics directory, not for a process's files
        process = subprocess.run(
            _serve_command("--workers", "2", "--port", free_port(), "--model", bundle_dir),
            env={**os.environ, "TMPDIR": str(tmp), "OCSF_ANOMALY_MODEL_POLL_SECONDS": "0"},
            capture_output=True,
            text=True,
            timeout=STARTING,
        )
    assert process.returncode == 2, process.stderr
    assert f"no room for a serving process's metrics in {tmp}/ocsf-anomaly-metrics-" in process.stderr
    assert "(No space left on device): free 4 MiB a process there, or point TMPDIR" in process.stderr


def _serving(metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> set[str]:
    """The versions some live serving process serves (the gauge is the highest over them)."""
    return {
        dict(labels)["version"]
        for (metric, labels), value in metrics.items()
        if metric == "ocsf_anomaly_model_info" and value == 1
    }


def test_a_reload_reaches_every_process(bundle_dir: Path, other_bundle_dir: Path, tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    registry = Registry(store)
    name = f"model-{uuid.uuid4().hex[:8]}"
    registry.register(bundle_dir, name)
    registry.register(other_bundle_dir, name)

    env = {"OCSF_ANOMALY_REGISTRY_URI": store, "OCSF_ANOMALY_MODEL_NAME": name}
    with _serve(tmp_path, env=env) as served:
        assert len(served.pids()) == 2
        assert _serving(served.metrics()) == {"1"}
        registry.promote(name, "2")
        status, body = served.call("POST", "/v1/models/reload")
        assert (status, body["to"]["champion"]) == (200, "2")
        # answered once the other process has asked again too: both serve version 2 already (the
        # gauge is the highest over the live processes: version 1 reads 0 only once both swapped)
        assert body["processes"] == {"count": 2, "serving": 2}
        assert _serving(served.metrics()) == {"2"}

        registry.promote(name, "1")
        served.process.send_signal(signal.SIGHUP)  # an operator's reload, for every process
        _until(lambda: _serving(served.metrics()) == {"1"}, "SIGHUP did not reload every process")
        assert served.process.poll() is None


def test_a_reload_call_is_answered_once_the_others_asked_again_or_when_its_time_is_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The supervisor's side of POST /v1/models/reload, in this process over real pipes whose far
    ends the test holds for three serving processes: the call is answered once every other process
    said it asked again, with what each serves since; one that does not answer in time is counted
    as such; one that dies meanwhile is not waited for."""
    from multiprocessing import Pipe, get_context

    from scorer.service.workers import RELOAD_WAIT_SECONDS, _Supervisor
    from scorer.settings import Settings

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))  # where a dead process's gauges go
    supervisor = _Supervisor(Settings(), [socket.socket() for _ in range(3)])
    theirs = []
    for slot in supervisor.slots:
        ours, their_end = Pipe()
        slot.conn, slot.ready = ours, True
        theirs.append(their_end)
    one, two, three = supervisor.slots
    old, new = (("champion", "m", "1", "a", "l"),), (("champion", "m", "2", "b", "l"),)

    def told() -> int:
        asked = [end.recv() for end in theirs[1:]]
        assert asked[0] == asked[1], asked
        assert asked[0][0] == "reload", asked
        return int(asked[0][1])

    supervisor._said(one, ("reload", new, 7), True)
    number = told()
    supervisor._said(two, ("reloaded", number, new), True)
    assert not theirs[0].poll(0.1)  # the third has not said it asked again
    supervisor._settle(time.monotonic() + RELOAD_WAIT_SECONDS)  # and never does
    assert theirs[0].recv() == ("synced", 7, [new], 1)

    supervisor._said(one, ("reload", new, 8), True)
    number = told()
    supervisor._said(three, ("reloaded", number, old), True)  # it could not load version 2
    assert not theirs[0].poll(0.1)
    two.process = get_context("fork").Process(target=int)  # the second dies before it answers
    two.process.start()
    supervisor._died(two, True)
    assert theirs[0].recv() == ("synced", 8, [old], 0)
    assert not supervisor.reloads
    for slot in supervisor.slots:
        slot.sock.close()
        if slot.conn is not None:
            slot.conn.close()


def _champion_then_unloadable(
    bundle_dir: Path, other_bundle_dir: Path, tmp_path: Path
) -> tuple[Registry, str, dict[str, str]]:
    """A registry whose model has version 1 (the champion) and a version 2 that cannot load (its
    weights cut short), and the environment that serves it, polling every 0.2 s (a replacement that
    cannot load is tried again every 1 s)."""
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    registry = Registry(store)
    name = f"model-{uuid.uuid4().hex[:8]}"
    registry.register(bundle_dir, name)
    second, _ = registry.register(other_bundle_dir, name)
    (Path(second.source.removeprefix("file://")) / "weights.npz").write_bytes(b"truncated")
    env = {
        "OCSF_ANOMALY_REGISTRY_URI": store,
        "OCSF_ANOMALY_MODEL_NAME": name,
        "OCSF_ANOMALY_MODEL_POLL_SECONDS": "0.2",
    }
    return registry, name, env


def test_a_replacement_that_cannot_load_the_champion_leaves_the_others_serving(
    bundle_dir: Path, other_bundle_dir: Path, held_out_events: list[Event], tmp_path: Path
) -> None:
    """A serving process that died while a version that cannot load held the alias was replaced by
    processes that failed to load it, counted as deaths: within half a minute the supervisor gave up
    and stopped the process still serving the good version too. The replacement now waits for a
    loadable version, tried again every poll, while the others serve on.

    Over TLS, with connections waiting on the dead process's socket (it is stopped before it dies,
    so the kernel queues there its share of them): the replacement cannot load its model, and the
    supervisor hands them to the process still serving, which makes their TLS handshake and answers
    them (the handed-over path with TLS was untested)."""
    registry, name, env = _champion_then_unloadable(bundle_dir, other_bundle_dir, tmp_path)
    cert, key = make_certificate(tmp_path, "scorer")
    env |= {"OCSF_ANOMALY_TLS_CERT_FILE": str(cert), "OCSF_ANOMALY_TLS_KEY_FILE": str(key)}
    with _serve(tmp_path, env=env) as served:
        served.tls = ssl.create_default_context(cafile=cert)
        pids = served.pids()
        assert len(pids) == 2
        registry.promote(name, "2")  # cannot load: the processes keep version 1
        victim = min(pids)
        os.kill(victim, signal.SIGSTOP)  # its socket still takes connections, which wait there
        killed = False
        try:
            with ThreadPoolExecutor(16) as pool:  # 16 new connections: a share lands on each socket
                waiting = [pool.submit(served.call, "GET", "/healthz") for _ in range(16)]
                _until(lambda: any(f.done() for f in waiting), "the process still serving answered none")
                time.sleep(0.5)  # the rest are on the stopped process's socket, or on their way
                os.kill(victim, signal.SIGKILL)
                killed = True
                answers = [future.result() for future in waiting]
        finally:
            if not killed:  # a stopped process ignores the SIGTERM that ends serve
                os.kill(victim, signal.SIGKILL)
        assert [status for status, _ in answers] == [200] * 16
        assert {body["pid"] for _, body in answers} == pids - {victim}
        # said once the connections are handed over: the last of them may be answered before
        _until(lambda: "until it can" in served.log.read_text(), "the replacement's failure", STARTING)
        log = served.log.read_text()
        assert "cannot serve (" in log
        assert "weights.npz does not match its digest" in log
        assert "the others serve on with their models; it is started again every 1 s until it can" in log
        assert "handed to the others" in log  # some waited on the dead process's socket
        for event in held_out_events[:10]:
            status, body = served.call("POST", "/v1/score", orjson.dumps(event))
            assert (status, body["results"][0]["model"]["version"]) == (200, "1")
        registry.rollback(name)  # a loadable champion again: the replacement serves it
        _until(lambda: "is back" in served.log.read_text(), "the replacement serving", STARTING)
        assert served.process.poll() is None
        assert len(served.pids()) == 2
        assert "giving up" not in served.log.read_text()


def test_a_replacement_that_cannot_load_its_model_takes_no_connection(
    bundle_dir: Path, other_bundle_dir: Path, tmp_path: Path
) -> None:
    """Each try again of a replacement that could not load its model listened on its slot's socket
    while it loaded: the kernel gave it a share of new connections, all reset when the load failed,
    at every try (12 of 6,253 connections here). A try now listens only once it serves, so every
    connection made meanwhile is answered by the process still serving. The first try starts on the
    socket of the process that died, so that the connections waiting there are served by it; those
    were reset when it could not load its model, and are handed to the process still serving now."""
    registry, name, env = _champion_then_unloadable(bundle_dir, other_bundle_dir, tmp_path)
    with _serve(tmp_path, env=env) as served:
        pids = served.pids()
        assert len(pids) == 2
        registry.promote(name, "2")  # cannot load: the processes keep version 1
        statuses: list[int] = []
        errors: list[str] = []
        done = threading.Event()

        def client() -> None:
            while not done.is_set():  # new connections, which the kernel spreads over the sockets
                connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=STARTING)
                try:
                    connection.request("GET", "/healthz")
                    response = connection.getresponse()
                    response.read()
                    statuses.append(response.status)
                except (OSError, http.client.HTTPException) as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                finally:
                    connection.close()
                # paced: as fast as they could go, the four made over 21,000 connections, and the
                # loopback's 28,000 ports, each held 60 s in TIME_WAIT, were taken again while the
                # rest of the suite used its own: a reused address was now and then reset (1 in 21,504)
                time.sleep(0.005)

        clients = [threading.Thread(target=client, daemon=True) for _ in range(4)]
        os.kill(min(pids), signal.SIGKILL)
        # from once it is seen dead (the connections it had accepted died with it), through the first
        # try, which cannot load its model, with connections waiting on the socket it was started on
        _until(lambda: "exited with code -9" in served.log.read_text(), "the death unseen", STARTING)
        for thread in clients:
            thread.start()
        try:
            _until(
                lambda: "cannot serve (" in served.log.read_text(),
                "the replacement's failure",
                STARTING,
            )
            # the tries that follow, each a process loading (and failing to load) the model
            seen = _children(served.process.pid)
            known = len(seen)

            def three_more() -> bool:
                seen.update(_children(served.process.pid))
                return len(seen) >= known + 3

            _until(three_more, "three more tries", STARTING)
        finally:
            done.set()
            for thread in clients:
                thread.join(STARTING)
        assert errors == [], f"{len(errors)} of {len(errors) + len(statuses)} failed: {errors[:5]}"
        assert statuses
        assert set(statuses) == {200}
        assert served.process.poll() is None


def _children(pid: int) -> set[int]:
    """The processes ``pid`` started that run now."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # exited meanwhile
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def test_a_replacement_has_the_others_serve_the_champion_it_loaded(
    bundle_dir: Path, other_bundle_dir: Path, held_out_events: list[Event], tmp_path: Path
) -> None:
    """A version promoted with polling off and no reload call, then a serving process replaced:
    the replacement loaded the new champion, the others kept theirs, and the answers were split
    between the two versions until a reload. Its being back now has them all ask again."""
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    registry = Registry(store)
    name = f"model-{uuid.uuid4().hex[:8]}"
    registry.register(bundle_dir, name)
    registry.register(other_bundle_dir, name)
    env = {"OCSF_ANOMALY_REGISTRY_URI": store, "OCSF_ANOMALY_MODEL_NAME": name}  # polling off
    with _serve(tmp_path, env=env) as served:
        pids = served.pids()
        assert len(pids) == 2
        assert _serving(served.metrics()) == {"1"}
        registry.promote(name, "2")  # not seen by the processes: they do not poll
        os.kill(min(pids), signal.SIGKILL)
        _until(lambda: "is back" in served.log.read_text(), "no replacement started", STARTING)
        _until(lambda: _serving(served.metrics()) == {"2"}, "the processes serve different versions")
        body = orjson.dumps(held_out_events[0])
        versions = {
            served.call("POST", "/v1/score", body)[1]["results"][0]["model"]["version"] for _ in range(16)
        }
        assert versions == {"2"}
        assert served.process.poll() is None


def _serving_processes(supervisor: int) -> set[int]:
    """The serving processes ``supervisor`` runs now (not multiprocessing's resource tracker)."""
    found = set()
    for pid in _children(supervisor):
        with contextlib.suppress(OSError):  # exited meanwhile
            if b"--multiprocessing-fork" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.add(pid)
    return found


def test_a_bundle_rewritten_while_the_processes_start_is_served_by_all(
    bundle_dir: Path, other_bundle_dir: Path, held_out_events: list[Event], tmp_path: Path
) -> None:
    """With polling off, a model that changed while the processes loaded theirs (a version promoted, a
    bundle directory rewritten) was served by those that loaded last, the others keeping the one
    before: the answers were split between two versions until a reload. Once all have started, the
    supervisor now has them all ask again if they loaded different models. Made certain here: both
    processes are stopped (SIGSTOP) before they load, one loads the bundle, the link to it is pointed
    at another, then the other loads that."""
    model = tmp_path / "model"
    model.symlink_to(bundle_dir)
    first_version = read_metadata(bundle_dir)["version"]
    other_version = read_metadata(other_bundle_dir)["version"]
    assert first_version != other_version
    stopped: list[int] = []

    def one_loads_before_the_change(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        def both_stopped() -> bool:
            for pid in _serving_processes(process.pid) - set(stopped):
                os.kill(pid, signal.SIGSTOP)
                stopped.append(pid)
            return len(stopped) == 2 or process.poll() is not None

        try:
            # each takes a second or so to import what it serves with before it reads the bundle
            _until(both_stopped, "no serving processes started", STARTING, every=0.005)
            if process.poll() is not None:
                return  # said by the caller, with the log
            first = stopped[0]
            os.kill(first, signal.SIGCONT)
            _until(
                lambda: f"[{first}]: serving champion" in log.read_text(), "the first did not load", STARTING
            )
            changed = tmp_path / "model.new"
            changed.symlink_to(other_bundle_dir)
            changed.replace(model)  # as a deploy that points the link at a new bundle does
        finally:
            for pid in stopped:
                os.kill(pid, signal.SIGCONT)

    with _serve(tmp_path, "--model", model, while_starting=one_loads_before_the_change) as served:
        first, second = stopped
        # each loaded a different bundle: the one before the change, the one after
        log = served.log.read_text()
        assert f"[{first}]: serving champion: {model} (bundle {first_version})" in log, log
        assert f"[{second}]: serving champion: {model} (bundle {other_version})" in log, log
        _until(
            lambda: _serving(served.metrics()) == {other_version}, "the processes serve different versions"
        )
        body = orjson.dumps(held_out_events[0])
        versions = {
            served.call("POST", "/v1/score", body)[1]["results"][0]["model"]["version"] for _ in range(16)
        }
        assert versions == {other_version}
        assert served.process.poll() is None


def test_a_bad_bundle_fails_every_process_and_the_command(bundle_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(bundle_dir, broken)
    (broken / "weights.npz").write_bytes(b"truncated")
    command = _serve_command("--model", broken, "--workers", "2", "--port", free_port())
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 2, result.stderr
    assert "error: " in result.stderr
    assert "weights.npz does not match its digest" in result.stderr
    assert "serving the" not in result.stderr
    assert "Traceback" not in result.stderr


def test_a_port_in_use_is_a_one_line_error(bundle_dir: Path) -> None:
    import socket

    # held plainly, or by a socket that would share the port (another `serve --workers 2`): refused
    for reuse_port in (False, True):
        with socket.create_server(("127.0.0.1", 0), reuse_port=reuse_port) as taken:
            _refused_on(taken.getsockname()[1], bundle_dir)


def test_a_host_that_is_no_address_here_says_what_host_means(bundle_dir: Path) -> None:
    """A name that does not resolve was blamed on the port ("another service on that port?")."""
    command = _serve_command("--model", bundle_dir, "--workers", "1", "--host", "no.such.host.invalid")
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot listen on no.such.host.invalid:"), last
    assert last.endswith(
        "(the host to listen on is an address of this machine or its name, e.g. 127.0.0.1 or 0.0.0.0: set --host or OCSF_ANOMALY_HOST)"
    ), last


def test_an_address_not_of_this_machine_is_blamed_on_the_host_not_the_port() -> None:
    """An address no interface here holds (EADDRNOTAVAIL) was blamed on the port too."""
    from scorer.service.workers import ServeError, listen

    with pytest.raises(ServeError) as refused:
        listen("10.255.255.1", 0)
    said = str(refused.value)
    assert said.startswith("cannot listen on 10.255.255.1:0: Cannot assign requested address"), said
    assert said.endswith(
        "(10.255.255.1 is no address of this machine: choose another with --host or OCSF_ANOMALY_HOST "
        "(127.0.0.1, or 0.0.0.0 for every address))"
    ), said


def _refused_on(port: int, bundle_dir: Path) -> None:
    for workers in ("1", "2"):
        command = _serve_command("--model", bundle_dir, "--workers", workers, "--port", port)
        result = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
        assert result.returncode == 2, result.stderr
        assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
        assert "Traceback" not in result.stderr


def test_https_with_the_configured_certificate_in_every_process(bundle_dir: Path, tmp_path: Path) -> None:
    """OCSF_ANOMALY_TLS_CERT_FILE/KEY_FILE: every serving process answers HTTPS with that
    certificate, plain HTTP on the port gets nowhere, and a client that does not trust the CA refuses.
    The Splunk command's client, pointed at the CA as an operator would (SSL_CERT_FILE), scores."""
    cert, key = make_certificate(tmp_path, "scorer")
    env = {"OCSF_ANOMALY_TLS_CERT_FILE": str(cert), "OCSF_ANOMALY_TLS_KEY_FILE": str(key)}
    env["OCSF_ANOMALY_API_TOKEN"] = "t0ken"
    with _serve(tmp_path, "--model", bundle_dir, env=env) as served:
        base = f"https://127.0.0.1:{served.port}"
        assert f"serving {bundle_dir} on {base} in 2 processes" in served.log.read_text()
        trusting = ssl.create_default_context(cafile=cert)
        for _ in range(16):  # new connections, spread over both processes by the kernel
            with urllib.request.urlopen(f"{base}/healthz", context=trusting, timeout=10) as answer:
                assert answer.status == 200
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            urllib.request.urlopen(f"{base}/healthz", context=ssl.create_default_context(), timeout=10)
        with pytest.raises((http.client.HTTPException, ConnectionError)):
            urllib.request.urlopen(f"http://127.0.0.1:{served.port}/healthz", timeout=10)
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                "import json, sys; sys.path.insert(0, sys.argv[1]); from ocsf_anomaly_scorer import ScorerClient; "
                "client = ScorerClient(sys.argv[2], alpha=0.01, timeout=10, verify_tls=True, token='t0ken'); "
                "print(json.dumps(client.score([b'{\"class_uid\": 4001}'])))",
                str(APP_DIR / "bin"),
                base,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "SSL_CERT_FILE": str(cert)},
        )
        assert done.returncode == 0, done.stderr
        assert "p_value" in json.loads(done.stdout)[0]


def test_a_certificate_that_cannot_serve_is_one_line(bundle_dir: Path, tmp_path: Path) -> None:
    not_pem = tmp_path / "cert.pem"
    not_pem.write_text("not a certificate\n")
    env = {
        **os.environ,
        "OCSF_ANOMALY_TLS_CERT_FILE": str(not_pem),
        "OCSF_ANOMALY_TLS_KEY_FILE": str(not_pem),
    }
    command = _serve_command("--model", bundle_dir, "--port", free_port())
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert f"error: cannot serve HTTPS with {not_pem} and {not_pem}" in done.stderr
    half = {**os.environ, "OCSF_ANOMALY_TLS_CERT_FILE": str(not_pem)}
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=half)
    assert done.returncode == 2
    assert "tls_cert_file and tls_key_file go together" in done.stderr


def test_a_token_served_in_clear_text_beyond_loopback_is_warned_about(bundle_dir: Path) -> None:
    with socket.socket() as held:  # the port is taken, so serve stops right after its warnings
        held.bind(("0.0.0.0", 0))
        held.listen()
        port = held.getsockname()[1]
        command = _serve_command("--model", bundle_dir, "--host", "0.0.0.0")
        env = {**os.environ, "OCSF_ANOMALY_API_TOKEN": "t0ken"}
        done = subprocess.run(
            [*command, "--port", str(port)], capture_output=True, text=True, timeout=120, env=env
        )
    assert done.returncode == 2
    assert "warning: bearer tokens will cross the network to 0.0.0.0 in clear text" in done.stderr
    assert "t0ken" not in done.stderr


@pytest.mark.parametrize("workers", [1, 2])
def test_sighup_has_every_process_serve_a_rotated_certificate(
    workers: int, bundle_dir: Path, tmp_path: Path
) -> None:
    first = tmp_path / "first"
    second = tmp_path / "second"
    first.mkdir()
    second.mkdir()
    cert, key = make_certificate(first, "scorer")
    new_cert, new_key = make_certificate(second, "scorer")  # another key pair: only its CA trusts it
    new_ca = tmp_path / "new-ca.pem"
    shutil.copy(new_cert, new_ca)
    env = {"OCSF_ANOMALY_TLS_CERT_FILE": str(cert), "OCSF_ANOMALY_TLS_KEY_FILE": str(key)}

    def served_with(ca: Path) -> int:
        """Of 16 new connections, how many verified against ``ca``."""
        trusting, verified = ssl.create_default_context(cafile=ca), 0
        for _ in range(16):
            try:
                with urllib.request.urlopen(
                    f"https://127.0.0.1:{served.port}/healthz", context=trusting, timeout=10
                ):
                    verified += 1
            except urllib.error.URLError:
                pass
        return verified

    with _serve(tmp_path, "--model", bundle_dir, "--workers", str(workers), env=env) as served:
        assert served_with(cert) == 16
        new_key.replace(key)  # rotated in place, as cert-manager or certbot do
        new_cert.replace(cert)
        assert served_with(new_ca) == 0  # not before it is told
        served.process.send_signal(signal.SIGHUP)
        _until(
            lambda: served.log.read_text().count("TLS certificate read again") == workers,
            "every process re-read it",
        )
        assert served_with(new_ca) == 16


def _port_taken(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


@pytest.mark.parametrize("workers", [1, 2])
def test_a_sighup_while_serve_starts_is_acted_on_once_it_serves(
    workers: int, bundle_dir: Path, tmp_path: Path
) -> None:
    """SIGHUP while serve started (its socket open, its models loading) ended `--workers 1`, its
    default action, and with several processes the supervisor passed it only to those already
    serving: it was lost. It is held now, and acted on once they serve."""
    cert, key = make_certificate(tmp_path, "scorer")
    env = {"OCSF_ANOMALY_TLS_CERT_FILE": str(cert), "OCSF_ANOMALY_TLS_KEY_FILE": str(key)}

    def sighup_once_listening(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        _until(lambda: _port_taken(port) or process.poll() is not None, "serve did not listen", STARTING)
        assert "try:" not in log.read_text(), "serve started before the test could signal it"
        process.send_signal(signal.SIGHUP)

    with _serve(
        tmp_path,
        "--model",
        bundle_dir,
        "--workers",
        str(workers),
        env=env,
        while_starting=sighup_once_listening,
    ) as served:
        _until(
            lambda: served.log.read_text().count("TLS certificate read again") == workers,
            "the SIGHUP was lost",
        )
        trusting = ssl.create_default_context(cafile=cert)
        with urllib.request.urlopen(
            f"https://127.0.0.1:{served.port}/healthz", context=trusting, timeout=10
        ) as answer:
            assert answer.status == 200
        assert served.process.poll() is None


def _running_its_own_code(pid: int) -> bool:
    """Whether ``pid`` (the ``serve`` command) runs the command's own code: SIGHUP held, or main()'s
    SIGTERM handler set (both well before serve() starts, its imports and settings taking longer)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:  # exited: the caller sees it
        return True
    masks = {
        name: int(value, 16)
        for name, value in (line.split(":", 1) for line in status.splitlines())
        if name in ("SigBlk", "SigCgt")
    }
    held = masks["SigBlk"] >> (signal.SIGHUP - 1) & 1
    return bool(held or masks["SigCgt"] >> (signal.SIGTERM - 1) & 1)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_sighup_in_the_first_moments_of_serve_is_acted_on_once_it_serves(
    workers: int, bundle_dir: Path, tmp_path: Path
) -> None:
    """SIGHUP in serve's first half second, while Python imported the command and its settings,
    before serve() held it, ended the command (its default action). It is held from the command's
    first moment now: sent again and again from then (as soon as the command's own code runs, its
    SIGTERM handler set or SIGHUP held), serve comes up and acts on it, reading its certificate again."""
    cert, key = make_certificate(tmp_path, "scorer")
    env = {"OCSF_ANOMALY_TLS_CERT_FILE": str(cert), "OCSF_ANOMALY_TLS_KEY_FILE": str(key)}

    def sighup_at_once(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        _until(
            lambda: _running_its_own_code(process.pid) or process.poll() is not None,
            "serve did not start",
            STARTING,
        )
        for _ in range(10):  # through the first half second or so: imports, settings, serve() starting
            if process.poll() is not None:
                return
            process.send_signal(signal.SIGHUP)
            time.sleep(0.05)

    with _serve(
        tmp_path, "--model", bundle_dir, "--workers", str(workers), env=env, while_starting=sighup_at_once
    ) as served:
        _until(
            lambda: served.log.read_text().count("TLS certificate read again") >= workers,
            "the SIGHUP was lost",
        )
        trusting = ssl.create_default_context(cafile=cert)
        with urllib.request.urlopen(
            f"https://127.0.0.1:{served.port}/healthz", context=trusting, timeout=10
        ) as answer:
            assert answer.status == 200
        assert served.process.poll() is None


class _Tally:
    """What the looping clients of the SIGTERM test saw: ``counts`` of "answered 200" (or another
    status), "reused" (an answer on a connection that had answered before), "refused" (a new
    connection refused: nothing listens any more), "closed before sent" (the server had closed an idle
    connection before the next request went), "lost on new" (a new connection reset before its
    answer); and ``lost``: requests sent on an open keep-alive connection and never answered."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.lost: list[str] = []

    def count(self, what: str) -> None:
        with self.lock:
            self.counts[what] += 1

    def __repr__(self) -> str:
        return f"{dict(self.counts)}, lost: {self.lost}"


def _loop_client(port: int, request: bytes, tally: _Tally) -> None:
    """POST the same request over and over on one keep-alive connection (plain sockets, no retries),
    opening another when the server answered ``Connection: close``; until a connection is refused.
    Plain sockets: aiohttp's client sends a request again, unsaid, on some disconnects."""
    sock: socket.socket | None = None
    answered_here = 0
    try:
        while True:
            if sock is None:
                try:
                    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
                except ConnectionRefusedError:
                    tally.count("refused")
                    return
                answered_here = 0
            elif select.select([sock], [], [], 0)[0]:  # readable while idle: the server closed it
                tally.count("closed before sent")
                sock.close()
                sock = None
                continue
            try:
                sock.sendall(request)
            except OSError:  # not all of it written: the server had closed it
                tally.count("closed before sent")
                sock.close()
                sock = None
                continue
            try:
                response = http.client.HTTPResponse(sock)
                response.begin()
                response.read()
            except (OSError, http.client.HTTPException) as exc:
                if answered_here:
                    with tally.lock:
                        tally.lost.append(f"{type(exc).__name__}: {exc} (after {answered_here} answers)")
                else:
                    tally.count("lost on new")
                sock.close()
                sock = None
                continue
            tally.count(f"answered {response.status}")
            if answered_here:
                tally.count("reused")
            answered_here += 1
            if response.will_close:
                sock.close()
                sock = None
    finally:
        if sock is not None:
            sock.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_answers_every_request_sent_on_an_open_connection(
    workers: int, bundle_dir: Path, held_out_events: list[Event], tmp_path: Path
) -> None:
    """SIGTERM under load from keep-alive clients: aiohttp's own stop closed idle keep-alive
    connections at once, so a request already on its way on one was never answered (the clients saw
    disconnects). Now a request that reached an open connection is answered, 200 (or 503 once the
    model is gone), with ``Connection: close``; a client that connects afterwards is refused."""
    body = orjson.dumps(held_out_events[0])
    request = (
        b"POST /v1/score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    tally = _Tally()
    with _serve(tmp_path, "--model", bundle_dir, "--workers", str(workers)) as served:
        clients = [
            threading.Thread(target=_loop_client, args=(served.port, request, tally), daemon=True)
            for _ in range(8)
        ]
        for client in clients:
            client.start()
        _until(lambda: tally.counts["reused"] >= 200, "no answers on the clients' keep-alive connections")
        served.process.send_signal(signal.SIGTERM)
        assert served.process.wait(90) == 0
        for client in clients:
            client.join(90)
        assert not any(client.is_alive() for client in clients)
        said = served.log.read_text()
    assert tally.lost == [], tally
    assert {what for what in tally.counts if what.startswith("answered")} <= {
        "answered 200",
        "answered 503",
    }, tally
    assert tally.counts["refused"] == len(clients), tally  # each client stopped on a refused new connection
    assert "Traceback" not in said


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_finishes_a_request_whose_body_is_still_arriving(
    workers: int, bundle_dir: Path, held_out_events: list[Event], tmp_path: Path
) -> None:
    """A request whose body was still arriving when SIGTERM came lost the rest of it: past
    DRAIN_SECONDS (1.5 s) aiohttp's cleanup discarded what the connection brought, so the handler
    waited for the body until it answered 408 (30 s), and the stop waited as long. The connections
    are served while a request is in flight now: it is answered, and the service stops after it."""
    body = orjson.dumps([held_out_events[0]])
    half = len(body) // 2
    head = (
        b"POST /v1/score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    with _serve(tmp_path, "--model", bundle_dir, "--workers", str(workers)) as served:
        with socket.create_connection(("127.0.0.1", served.port), timeout=STARTING) as sock:
            sock.sendall(head + body[:half])
            time.sleep(0.5)  # its handler reads the body
            served.process.send_signal(signal.SIGTERM)
            time.sleep(3)  # well past DRAIN_SECONDS
            sock.sendall(body[half:])
            response = http.client.HTTPResponse(sock)
            response.begin()
            answer = response.read()
        assert response.status == 200, answer
        assert response.getheader("Connection") == "close"
        assert orjson.loads(answer)["results"][0]["p_value"] is not None
        assert served.process.wait(90) == 0


def test_serving_on_an_ipv6_address_prints_a_url_curl_takes(bundle_dir: Path, tmp_path: Path) -> None:
    """The start-up line's curl command read http://::1:PORT, which curl refuses (exit 3)."""
    with _serve(tmp_path, "--model", bundle_dir, "--host", "::1", "--workers", "1") as served:
        text = served.log.read_text()
        assert f"on http://[::1]:{served.port};" in text, text
        url = f"http://[::1]:{served.port}/healthz"
        with urllib.request.urlopen(url, timeout=STARTING) as answer:
            assert answer.status == 200
