"""Serving on every core: one port, several serving processes, a supervisor.

One Python process scores on about one core however many threads it runs (the GIL: BENCHMARKS.md,
"Where a single request's time goes"). With ``workers`` > 1, ``serve`` checks the port is free,
opens one SO_REUSEPORT listening socket per serving process and spawns the processes (spawned, not
forked), each running the whole app (its model, cache tier, micro-batcher and scoring threads) on
its inherited socket; the kernel spreads new connections over the sockets by address. (On one
shared socket the process that woke first accepted every connection waiting, so a client's
keep-alive pool, a Vector sink's or a search head's, was served by one process on one core.)
The supervisor, the process ``serve`` started:

- says it serves only once every process has loaded and verified its model; a process that
  cannot (a bad bundle, an unreachable registry) fails the command with its one-line error; if they
  loaded different models (one promoted, or the bundle rewritten, while they started: with polling
  off, never seen by those that loaded first), all ask the source again, as after a reload;
- passes a reload on: a process that swapped models (on ``POST /v1/models/reload`` or by its poll)
  tells the supervisor, which tells the others, so they all swap within moments (a reload call is
  answered once they said they asked again, or after RELOAD_WAIT_SECONDS, with how many serve what
  it loaded); so does a
  replacement once it serves, as it loaded what the source names now (SIGHUP to the supervisor has
  them all ask for the champion again and read the TLS certificate again; a process still starting
  is told once it serves);
- replaces a process that dies, and gives up (exit 2) if they keep dying; a replacement that cannot
  load the model it is asked to serve (a bad version promoted since, the registry down) is tried
  again every ``model_poll_seconds`` (at least 1 s; 30 s if 0) while another process serves, never
  given up on: the others serve on with the model they hold, and take all new connections until a
  try has loaded one (each try listens only then; the first, started on the socket of the process
  that died, leaves the connections that waited there to them, handed over);
- on SIGTERM or SIGINT stops them all gracefully (each stops listening, answers what still comes on
  its open connections for DRAIN_SECONDS with ``Connection: close``, and longer while a request is
  in flight, its body still arriving, say; finishes what it holds) and exits 0.

SIGHUP is held (blocked) from the first moment of the ``serve`` command (scorer/cli/__init__.py,
before the command imports its libraries) and in every process it starts until that process can
act on it: one sent while the service starts is acted on once it serves, instead of killing it
(its default action).

Metrics are pooled through prometheus_client's multiprocess mode: a temporary directory, named
in ``PROMETHEUS_MULTIPROC_DIR`` before any process imports prometheus_client, removed at exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import functools
import itertools
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import ssl
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scorer.errors import UserError
from scorer.settings import Settings

if TYPE_CHECKING:  # the supervisor serves nothing: it never imports aiohttp
    from aiohttp import web

log = logging.getLogger("ocsf_anomaly.service")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
WORKER_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"
# An idle keep-alive connection is closed after this: longer than clients commonly keep theirs idle
# in a pool (hyper's default, which Vector's HTTP client is built on, is 90 s), so the client closes
# first rather than send a request on a connection the server is closing (aiohttp's own default,
# as the serving processes of --workers > 1 always had; run_app's 75 s served --workers 1).
KEEPALIVE_SECONDS = 3630.0
DRAIN_SECONDS = 1.5  # on SIGTERM, how long open connections may still bring a request (answered, then closed)
IN_FLIGHT_SECONDS = 50.0  # … and how long they are served while a request is in flight (its body arriving)
SHUTDOWN_SECONDS = 10.0  # then aiohttp's cleanup: a request still in flight after this is cancelled
STOP_SECONDS = 75.0  # a process finishing its requests (the two above, its app's cleanup) before it is killed
BACKLOG = 1024  # connections the kernel holds for a listening socket until its process accepts them
RESTARTS_PER_MINUTE = 5  # per serving process: beyond it the service gives up, it would only flap
UNLOADABLE_RETRY_SECONDS = 30.0  # a replacement that could not load its model, with polling off …
UNLOADABLE_RETRY_FLOOR = 1.0  # … and at the least with it: each try starts a process and loads a model
HAND_OVER_MAX = 128  # connections a dead process's socket hands to the others at most (_hand_over)
# POST /v1/models/reload answers once the other serving processes have asked the source again, or
# after this: they load what it loaded (about half a second), unless the registry is slow to download
RELOAD_WAIT_SECONDS = 30.0
# what a serving process serves, as it tells the supervisor: (alias, name, version, bundle version,
# location) of its champion and of its challenger if any (plain strings: the supervisor loads no model)
Models = tuple[tuple[str, str, str, str, str], ...]


class ServeError(UserError, RuntimeError):
    """The service could not start, or could not keep running, with what to do about it."""


def listen(host: str, port: int, *, reuse_port: bool = False, listening: bool = True) -> socket.socket:
    """A listening socket on host:port (with ``reuse_port``, one of a group the kernel balances).
    Not ``listening``: only bound, its process to listen on it once it can serve (``_serve_until``):
    the kernel gives new connections only to the sockets of the group that listen."""
    try:
        family, _, _, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except OSError as exc:  # socket.gaierror: no such name or address here
        raise ServeError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc} (the host to listen on is an address "
            "of this machine or its name, e.g. 127.0.0.1 or 0.0.0.0: set --host or OCSF_ANOMALY_HOST)"
        ) from None
    try:
        if listening:
            return socket.create_server(address, family=family, backlog=BACKLOG, reuse_port=reuse_port)
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:  # the options socket.create_server sets, so that it joins the same group
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
        except OSError:
            sock.close()
            raise
        return sock
    except OSError as exc:
        if exc.errno == errno.EADDRNOTAVAIL:
            hint = (
                f"{host} is no address of this machine: choose another with --host or OCSF_ANOMALY_HOST "
                "(127.0.0.1, or 0.0.0.0 for every address)"
            )
        elif exc.errno in (errno.EACCES, errno.EPERM):
            hint = "ports below 1024 need root: choose another with --port or OCSF_ANOMALY_PORT"
        else:
            hint = "another service on that port? choose another with --port or OCSF_ANOMALY_PORT"
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc} ({hint})") from None


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The server's TLS context when a certificate is configured (each serving process makes its
    own: a context cannot be handed to another process)."""
    if settings.tls_cert_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        _load_certificate(context, settings)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise ServeError(
            f"cannot serve HTTPS with {settings.tls_cert_file} and {settings.tls_key_file}: {exc} "
            "(a PEM certificate chain, and its private key unencrypted)"
        ) from None
    return context


def _load_certificate(context: ssl.SSLContext, settings: Settings) -> None:
    """The configured certificate and key into ``context`` (for the connections made after)."""

    def no_password() -> str:
        raise ValueError("the private key is encrypted")

    # both are set here: the settings hold both or neither, and this runs only with a certificate
    context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file, password=no_password)  # type: ignore[arg-type]


def listen_each(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` listening sockets on one port, one per serving process (SO_REUSEPORT): the kernel
    spreads new connections over them by address, so a client's few keep-alive connections do not
    all land on whichever process accepted first, as they do on one shared socket. The port is first
    bound alone, without SO_REUSEPORT, so that a port held by anything else (another ``serve``
    included) is refused instead of shared."""
    listen(host, port).close()
    return [listen(host, port, reuse_port=True) for _ in range(count)]


def serve(settings: Settings, say_ready: Callable[[], None]) -> int:
    """Serve ``settings`` until stopped: in this process, or in ``settings.workers`` processes."""
    # held until it can be acted on (already since the command started, run as `ocsf-anomaly serve`)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    context = tls_context(settings)  # a bad certificate fails here, before any process starts
    if settings.workers == 1:
        sock = listen(settings.host, settings.port)
        _logging(LOG_FORMAT, http=True)
        asyncio.run(_serve_alone(settings, sock, context, say_ready))
        return 0
    return _Supervisor(settings, listen_each(settings.host, settings.port, settings.workers)).run(say_ready)


def _logging(form: str, *, http: bool) -> None:
    """The log's format; ``http`` for a process that serves (the supervisor does not, and keeps its
    imports light: it holds no model)."""
    logging.basicConfig(level=logging.INFO, format=form)
    if http:
        # which SIMD build it found, per process; set before the import below, which loads faiss
        logging.getLogger("faiss.loader").setLevel(logging.WARNING)
        from scorer.service.middlewares import BrokenHttpFilter

        logging.getLogger("aiohttp.server").addFilter(BrokenHttpFilter())


async def _reread_on_sighup(app: Any, context: ssl.SSLContext | None) -> None:
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, _reread, app, context)


def _reread(app: Any, context: ssl.SSLContext | None) -> None:
    """SIGHUP: the champion asked for again, and the TLS certificate read again from its files (a
    rotated certificate serves new connections; those open keep theirs)."""
    if context is not None:
        from scorer.service.keys import SETTINGS

        settings = app[SETTINGS]
        try:
            _load_certificate(context, settings)
            log.info("TLS certificate read again from %s", settings.tls_cert_file)
        except (OSError, ssl.SSLError, ValueError) as exc:  # half-written mid-rotation, say
            log.warning("TLS certificate not read again (%s): serving on with the one before", exc)
    _reload_soon(app)


@contextlib.contextmanager
def _sighup_held() -> Iterator[None]:
    """SIGHUP held meanwhile: a process started now starts with it held (a signal mask is inherited)."""
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


_reloads: set[asyncio.Task[bool]] = set()  # held until done (the loop keeps only weak references)


def _reload_soon(app: Any) -> asyncio.Task[bool]:
    from scorer.service.lifecycle import refresh_logged

    task = asyncio.get_running_loop().create_task(refresh_logged(app))
    _reloads.add(task)
    task.add_done_callback(_reloads.discard)
    return task


_adopting: set[asyncio.Task[Any]] = set()  # connections handed over, held likewise until served


def _adopt(conn: Connection, runner: web.AppRunner, context: ssl.SSLContext | None) -> None:
    """Serve a connection the supervisor hands over, its descriptor following the message on ``conn``:
    one that waited on the socket of a process that could not start (``_Supervisor._hand_over``)."""
    from multiprocessing.reduction import recv_handle

    try:
        accepted = socket.socket(fileno=recv_handle(conn))
    except (OSError, RuntimeError, EOFError) as exc:  # RuntimeError: not a descriptor that came
        log.warning("a connection handed over from another serving process was lost: %s", exc)
        return
    if runner.server is None:  # stopped meanwhile
        accepted.close()
        return
    loop = asyncio.get_running_loop()
    task = loop.create_task(loop.connect_accepted_socket(runner.server, accepted, ssl=context))
    _adopting.add(task)
    task.add_done_callback(_adopted)


def _adopted(task: asyncio.Task[Any]) -> None:
    _adopting.discard(task)
    if not task.cancelled() and task.exception() is not None:  # its TLS handshake failed, say
        log.debug("a connection handed over was lost", exc_info=task.exception())


# ---------------------------------------------------------------------- a serving process
# The files prometheus_client's multiprocess mode keeps a serving process's metrics in, one for each
# kind of value (a gauge's by its multiprocess_mode), and the size it gives each at first. It maps
# them into memory as sparse files: a write to a page that the file system has no room for is
# SIGBUS, and with TMPDIR full every serving process died at its next metric, then each replacement
# at its first, until the supervisor gave up, with nothing in the log (the resilience review).
METRICS_FILES = ("counter", "histogram", "gauge_livemax", "gauge_livesum")
METRICS_FILE_BYTES = 1 << 20  # prometheus_client.mmap_dict._INITIAL_MMAP_SIZE


METRICS_DIR = "ocsf-anomaly-metrics-"  # then mkdtemp's letters
METRICS_LOCK = ".held"  # in it: locked (flock) by its supervisor for as long as it runs


def _metrics_dir() -> tuple[str, int]:
    """A new metrics directory, and the descriptor of its lock, held (flock) until the supervisor
    exits, whatever ends it: a directory whose lock can be taken is abandoned."""
    directory = tempfile.mkdtemp(prefix=METRICS_DIR)
    # locked under another name, then named: another service's cleanup never finds the lock free
    # between its making and its taking (the second review: 38 of 88,181 directories lost)
    making = os.path.join(directory, f"{METRICS_LOCK}.new")
    try:
        held = os.open(making, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:  # no inode left: nothing is left behind that no cleanup could tell
        os.rmdir(directory)
        raise NoRoom(f"no room for the serving processes' metrics in {directory} ({exc.strerror})") from None
    fcntl.flock(held, fcntl.LOCK_EX)
    os.rename(making, os.path.join(directory, METRICS_LOCK))
    return directory, held


def _remove_abandoned_metrics() -> None:
    """Remove the metrics directories of services that ended without removing theirs (a supervisor
    killed with SIGKILL, a container killed): each held 4 MiB a serving process, and TMPDIR is often
    memory (tmpfs). Known by their lock, which the kernel lets go with its holder: a process id
    would not do (in a container the supervisor is process 1 every time, and another container
    sharing TMPDIR sees other ids)."""
    for path in Path(tempfile.gettempdir()).glob(f"{METRICS_DIR}*"):
        try:
            if path.is_symlink() or not path.is_dir() or path.stat().st_uid != os.getuid():
                continue
            lock = os.open(path / METRICS_LOCK, os.O_RDWR | os.O_NOFOLLOW)
        except OSError:  # no lock: not one of these, or made before they had one
            continue
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held: its service runs
            continue
        finally:
            os.close(lock)
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            log.info("removed %s, the metrics of a service that ended without removing them", path)


class NoRoom(UserError):
    """No room for a serving process's metrics files: it cannot start (tried again later)."""


def _reserve_metrics_files() -> None:
    """Give this process's metrics files their blocks before any metric is written, so that a full
    disk is an error at start, said, and never SIGBUS later (the metrics of a busy service fill a
    few pages of each)."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return
    for path in _metrics_files(directory, os.getpid()):
        try:
            handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)  # an inode, then its blocks
            try:
                if os.fstat(handle).st_size == 0:  # a pid used again finds its predecessor's counts
                    os.posix_fallocate(handle, 0, METRICS_FILE_BYTES)
            finally:
                os.close(handle)
        except OSError as exc:
            raise NoRoom(
                f"no room for a serving process's metrics in {directory} ({exc.strerror}): free "
                f"{len(METRICS_FILES) * METRICS_FILE_BYTES >> 20} MiB a process there, or point TMPDIR "
                "at a file system with room"
            ) from None


def _metrics_files(directory: str, pid: int) -> list[str]:
    return [os.path.join(directory, f"{kind}_{pid}.db") for kind in METRICS_FILES]


def _forget_metrics_files() -> None:
    """Remove this process's metrics files: it never served, so they count nothing, and a process
    started again and again (a model that cannot load, no room) left 2 MiB each time for as long as
    the service ran (the second review: 75 MiB in 50 s, polling every second)."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        for path in _metrics_files(directory, os.getpid()):
            with contextlib.suppress(OSError):
                os.unlink(path)


def _worker(settings: Settings, sock: socket.socket, conn: Connection) -> None:
    """A serving process: the app on the shared socket until the supervisor says stop or goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the supervisor too; it decides
    _logging(WORKER_LOG_FORMAT, http=True)
    try:
        _reserve_metrics_files()
        asyncio.run(_serve_worker(settings, sock, conn))
    except Exception as exc:  # before it served: the supervisor reports it and stops the service
        from scorer.bundle import BundleError
        from scorer.registry import RegistryError

        log.debug("serving process failed", exc_info=True)
        # its model, or the disk, not the process: a replacement may be told to serve a version that
        # cannot load, or find TMPDIR full; the others serve on while it is tried again
        kind = "unloadable" if isinstance(exc, BundleError | RegistryError | NoRoom) else "failed"
        if kind == "unloadable":  # as it starts: it has served nothing
            _forget_metrics_files()
        with contextlib.suppress(OSError):
            conn.send((kind, str(exc) or type(exc).__name__))
        raise SystemExit(2) from None


async def _serve_worker(settings: Settings, sock: socket.socket, conn: Connection) -> None:
    from aiohttp import web

    from scorer.service.app import create_app
    from scorer.service.keys import ANNOUNCE_RELOAD, SERVING, SYNC_RELOAD

    loop = asyncio.get_running_loop()
    app = create_app(settings)
    stop = asyncio.Event()

    def loaded() -> Models:
        refs = app[SERVING].refs()
        return tuple(
            (alias, ref.name, ref.version, ref.bundle_version, ref.location) for alias, ref in refs.items()
        )

    def say(message: tuple[Any, ...]) -> None:
        with contextlib.suppress(OSError):  # the supervisor is gone: seen by from_supervisor
            conn.send(message)

    syncs: dict[int, asyncio.Future[tuple[list[Models], int]]] = {}
    tokens = itertools.count(1)

    async def sync_reload() -> tuple[int, int]:
        """Have the others ask again, and wait until they have (the supervisor's answer: what each
        serves now, and how many did not answer in time): how many processes serve, how many of
        them this one's models. Stopping meanwhile, it answers for itself."""
        token = next(tokens)
        answer = syncs[token] = loop.create_future()
        say(("reload", loaded(), token))
        stopping = loop.create_task(stop.wait())
        try:
            await asyncio.wait({answer, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            syncs.pop(token, None)
        others, unanswered = answer.result() if answer.done() else ([], 0)
        mine = loaded()
        return 1 + len(others) + unanswered, 1 + sum(models == mine for models in others)

    app[ANNOUNCE_RELOAD] = lambda: say(("reload", loaded()))
    app[SYNC_RELOAD] = sync_reload
    context = tls_context(settings)

    def from_supervisor() -> None:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the supervisor is gone: never serve on orphaned
            loop.remove_reader(conn.fileno())
            stop.set()
            return
        if message[0] == "reload":  # with an id: a reload call elsewhere waits to hear it was done
            task = _reload_soon(app)
            if len(message) == 2:
                task.add_done_callback(lambda _: say(("reloaded", message[1], loaded())))
        elif message[0] == "synced":
            if (answer := syncs.get(message[1])) is not None and not answer.done():
                answer.set_result((message[2], message[3]))
        elif message == ("reread",):
            _reread(app, context)
        elif message == ("adopt",):
            _adopt(conn, runner, context)

    def ready() -> None:
        loop.add_reader(conn.fileno(), from_supervisor)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        conn.send(("ready", loaded()))

    runner = web.AppRunner(
        app, handle_signals=False, keepalive_timeout=KEEPALIVE_SECONDS, shutdown_timeout=SHUTDOWN_SECONDS
    )
    await _serve_until(runner, sock, context, stop, ready)


async def _serve_alone(
    settings: Settings, sock: socket.socket, context: ssl.SSLContext | None, say_ready: Callable[[], None]
) -> None:
    """The one serving process of ``--workers 1``: SIGTERM and SIGINT stop it gracefully."""
    from aiohttp import web

    from scorer.service.app import create_app

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def ready() -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        say_ready()

    runner = web.AppRunner(
        create_app(settings),
        handle_signals=False,
        keepalive_timeout=KEEPALIVE_SECONDS,
        shutdown_timeout=SHUTDOWN_SECONDS,
    )
    await _serve_until(runner, sock, context, stop, ready)


async def _serve_until(
    runner: web.AppRunner,
    sock: socket.socket,
    context: ssl.SSLContext | None,
    stop: asyncio.Event,
    ready: Callable[[], None],
) -> None:
    """Serve the runner's app on ``sock`` until ``stop`` is set, then stop gracefully: the listening
    socket is closed; for DRAIN_SECONDS, and beyond while a request is in flight (up to
    IN_FLIGHT_SECONDS), the connections already open are still served, each answer with
    ``Connection: close`` (less once every connection is closed); then aiohttp's cleanup closes those
    left idle, answers what is in flight and stops the app. (aiohttp's cleanup alone closed idle
    keep-alive connections at once: a request already on its way on one went unanswered; and it
    discards what a connection still brings, so a request whose body was still arriving waited for
    it, and answered 408, as long as the body may take.) A socket only bound (a replacement's) listens
    once the app has started, its model loaded; SIGHUP, held until then, is acted on once it serves."""
    from aiohttp import hdrs, web

    from scorer.service.errors import Handler

    draining = False
    in_flight = 0

    @web.middleware
    async def count_in_flight(request: web.Request, handler: Handler) -> web.StreamResponse:
        nonlocal in_flight
        in_flight += 1
        try:
            return await handler(request)
        finally:
            in_flight -= 1

    async def close_when_draining(request: web.Request, response: web.StreamResponse) -> None:
        if draining:
            response.force_close()  # aiohttp closes the connection once this answer is sent
            response.headers[hdrs.CONNECTION] = "close"  # and the client opens no request on it

    runner.app.middlewares.insert(0, count_in_flight)  # the outermost: the whole of a handler's time
    runner.app.on_startup.append(functools.partial(_reread_on_sighup, context=context))
    runner.app.on_response_prepare.append(close_when_draining)
    await runner.setup()
    try:
        if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            sock.listen(BACKLOG)  # its share of the port's new connections from now on
        await web.SockSite(runner, sock, ssl_context=context).start()
        ready()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})  # one held meanwhile is acted on now
        await stop.wait()
        draining = True
        for site in runner.sites:
            await site.stop()  # closes the listening socket: a new connection is refused
        loop = asyncio.get_running_loop()
        started = loop.time()
        while runner.server is not None and runner.server.connections:
            waited = loop.time() - started
            if waited >= DRAIN_SECONDS and (not in_flight or waited >= IN_FLIGHT_SECONDS):
                break
            await asyncio.sleep(0.05)
    finally:
        await runner.cleanup()


# ---------------------------------------------------------------------- the supervisor
@dataclass
class _Slot:
    number: int
    # its own socket, kept across restarts: connections wait in its backlog for the replacement
    # (but not for one that cannot load its model: then only bound, listened on once one serves)
    sock: socket.socket
    process: BaseProcess | None = None
    conn: Connection | None = None
    ready: bool = False
    restart_at: float | None = None
    deaths: deque[float] = field(default_factory=deque)
    unloadable: str | None = None  # why it could not load its model: not a death that counts
    reported: str | None = None  # the last such reason logged (once, until it changes or it serves)
    reread: bool = False  # a SIGHUP came while it started: it is told once it serves
    models: Models = ()  # what it said it serves, when it became ready or swapped models since


@dataclass
class _Reload:
    """A reload call in ``origin`` (POST /v1/models/reload), waiting for the others to ask again."""

    origin: _Slot
    token: int  # the call's, in its process
    waiting: set[int]  # the processes told, by slot number, that have not said they did
    deadline: float
    answers: list[Models] = field(default_factory=list)  # what each of the others serves since


class _Supervisor:
    def __init__(self, settings: Settings, socks: list[socket.socket]) -> None:
        self.settings = settings
        self.context = multiprocessing.get_context("spawn")
        self.slots = [_Slot(number, sock) for number, sock in enumerate(socks, start=1)]
        self.reloads: dict[int, _Reload] = {}
        self.reload_ids = itertools.count(1)

    def run(self, say_ready: Callable[[], None]) -> int:
        _logging(LOG_FORMAT, http=False)
        _remove_abandoned_metrics()
        metrics_dir, held = _metrics_dir()
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # read by each process as it starts
        wake_r, wake_w = socket.socketpair()
        wake_w.setblocking(False)
        previous = signal.set_wakeup_fd(wake_w.fileno())
        handlers = {
            sig: signal.signal(sig, _ignore) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        }
        try:
            for slot in self.slots:
                self._start(slot)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})  # held since serve began
            self._supervise(wake_r, say_ready)
            return 0
        finally:
            self._stop_all(wake_r)
            signal.set_wakeup_fd(previous)
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            wake_r.close()
            wake_w.close()
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
            shutil.rmtree(metrics_dir, ignore_errors=True)
            os.close(held)
            for slot in self.slots:
                slot.sock.close()

    def _start(self, slot: _Slot) -> None:
        ours, theirs = self.context.Pipe()
        process = self.context.Process(
            target=_worker, args=(self.settings, slot.sock, theirs), name=f"ocsf-anomaly-serve-{slot.number}"
        )
        with _sighup_held():  # until it can act on one: SIGHUP's default action would end it
            process.start()
        theirs.close()
        slot.process, slot.conn, slot.ready, slot.restart_at = process, ours, False, None
        slot.unloadable, slot.reread, slot.models = None, False, ()

    def _supervise(self, wake: socket.socket, say_ready: Callable[[], None]) -> None:
        announced = False
        while True:
            if not announced and all(slot.ready for slot in self.slots):
                self._agree()
                say_ready()
                announced = True
            now = time.monotonic()
            for slot in self.slots:
                if slot.restart_at is not None and slot.restart_at <= now:
                    self._start(slot)
            self._settle(now)
            waits = [slot.restart_at - now for slot in self.slots if slot.restart_at is not None]
            waits += [pending.deadline - now for pending in self.reloads.values()]
            owners: dict[Any, _Slot] = {}
            for slot in self.slots:
                if slot.process is not None and slot.conn is not None:
                    owners[slot.conn] = owners[slot.process.sentinel] = slot
            for ready in wait([wake, *owners], timeout=max(0.0, min(waits)) if waits else None):
                if ready is wake:
                    for number in wake.recv(64):
                        if number in (signal.SIGTERM, signal.SIGINT):
                            log.info("stopping: %s", signal.Signals(number).name)
                            return
                        if number == signal.SIGHUP:
                            self._tell_others(None, ("reread",))
                            for slot in self.slots:
                                slot.reread = not slot.ready  # one starting is told once it serves
                    continue
                slot = owners[ready]
                if slot.process is None:
                    continue  # its other object was ready too and it was already found dead
                if ready is slot.conn:
                    self._message(slot, announced)
                else:
                    self._died(slot, announced)

    def _agree(self) -> None:
        """Once all have started: if they serve different models (a version promoted, or the bundle
        rewritten, while they loaded: with polling off, never seen by those that loaded first), all
        ask the source again, as after a reload, and swap within moments to what it names now."""
        served = {slot.models for slot in self.slots}
        if len(served) > 1:
            log.info(
                "the serving processes loaded different models (%s): all ask the source again",
                "; ".join(
                    sorted(
                        ", ".join(f"{alias} {name} {version}" for alias, name, version, *_ in models)
                        for models in served
                    )
                ),
            )
            self._tell_others(None)

    def _message(self, slot: _Slot, announced: bool) -> None:
        assert slot.conn is not None
        try:
            message = slot.conn.recv()
        except (EOFError, OSError):  # its end closed: it is exiting
            self._died(slot, announced)
            return
        self._said(slot, message, announced)

    def _said(self, slot: _Slot, message: tuple[Any, ...], announced: bool) -> None:
        if message[0] == "ready":
            slot.ready, slot.reported, slot.models = True, None, message[1]
            if announced:
                log.info(
                    "serving process %d is back (pid %s)", slot.number, slot.process and slot.process.pid
                )
                # it loaded what the source names now, which may be a version promoted since the
                # others loaded theirs (with polling off, never seen by them): all ask again, as
                # after a reload, and swap within moments if it changed
                self._tell_others(None)
            if slot.reread and slot.conn is not None:
                slot.reread = False
                with contextlib.suppress(OSError):
                    slot.conn.send(("reread",))
        elif message[0] in ("failed", "unloadable") and not announced:
            raise ServeError(message[1])
        elif message[0] == "failed":
            log.error("serving process %d failed: %s", slot.number, message[1])
        elif message[0] == "unloadable":
            slot.unloadable = message[1]  # logged as it exits
        elif message[0] == "reload":  # it swapped models; with a token, a reload call there waits
            slot.models = message[1]
            if len(message) == 2:
                self._tell_others(slot)
                return
            number = next(self.reload_ids)
            told = self._tell_others(slot, ("reload", number))
            deadline = time.monotonic() + RELOAD_WAIT_SECONDS
            self.reloads[number] = _Reload(slot, message[2], {other.number for other in told}, deadline)
            self._settle(time.monotonic())
        elif message[0] == "reloaded":  # it asked again, for reload call ``number``
            _, number, slot.models = message
            pending = self.reloads.get(number)
            if pending is not None and slot.number in pending.waiting:
                pending.waiting.discard(slot.number)
                pending.answers.append(slot.models)
                self._settle(time.monotonic())

    def _settle(self, now: float) -> None:
        """Answer each waiting reload call whose others have all asked again, or whose time is up."""
        for number, pending in list(self.reloads.items()):
            if pending.waiting and now < pending.deadline:
                continue
            del self.reloads[number]
            if pending.origin.conn is not None:
                with contextlib.suppress(OSError):
                    pending.origin.conn.send(("synced", pending.token, pending.answers, len(pending.waiting)))

    def _tell_others(self, sender: _Slot | None, message: tuple[Any, ...] = ("reload",)) -> list[_Slot]:
        told = []
        for slot in self.slots:
            if slot is not sender and slot.ready and slot.conn is not None:
                with contextlib.suppress(OSError):
                    slot.conn.send(message)
                    told.append(slot)
        return told

    def _died(self, slot: _Slot, announced: bool) -> None:
        from prometheus_client import multiprocess

        assert slot.process is not None
        assert slot.conn is not None
        slot.process.join()
        with contextlib.suppress(EOFError, OSError):
            while slot.conn.poll():  # what it said before it exited, if its exit was seen first
                self._said(slot, slot.conn.recv(), announced)
        code, pid = slot.process.exitcode, slot.process.pid
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]  # its live gauges leave the pooled metrics
        slot.conn.close()
        slot.process, slot.conn, slot.ready = None, None, False
        for number, pending in list(self.reloads.items()):  # it serves nothing now: not waited for
            pending.waiting.discard(slot.number)
            if pending.origin is slot:  # its call died with it
                del self.reloads[number]
        self._settle(time.monotonic())
        if not announced:
            raise ServeError(f"serving process {slot.number} exited with code {code} before it served")
        now = time.monotonic()
        if slot.unloadable is not None and any(other.ready for other in self.slots):
            # the others serve the model they hold: a replacement waits for a loadable one (a
            # rollback, a fixed registry), and the service is not given up for a bad version
            poll = self.settings.model_poll_seconds
            delay = max(poll, UNLOADABLE_RETRY_FLOOR) if poll else UNLOADABLE_RETRY_SECONDS
            if slot.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                # the connections the kernel gives its socket would wait that long, and be reset
                # when the next try failed too: they go to the others. A socket only bound takes
                # none; the try that loads a model listens on it once it serves.
                port = slot.sock.getsockname()[1]
                self._hand_over(slot)  # those waiting there, else reset as it closes
                slot.sock.close()
                slot.sock = listen(self.settings.host, port, reuse_port=True, listening=False)
            if slot.unloadable != slot.reported:
                log.error(
                    "serving process %d cannot serve (%s): the others serve on with their models; "
                    "it is started again every %g s until it can",
                    slot.number,
                    slot.unloadable,
                    delay,
                )
                slot.reported = slot.unloadable
            slot.restart_at = now + delay
            return
        # with none serving, no retry waits for it: a death, said with its reason (the second review:
        # "exited with code 2" six times, then "giving up", and never why)
        why = f": {slot.unloadable}" if slot.unloadable is not None else ""
        slot.deaths.append(now)
        while slot.deaths and slot.deaths[0] < now - 60:
            slot.deaths.popleft()
        if len(slot.deaths) > RESTARTS_PER_MINUTE:
            raise ServeError(
                f"serving process {slot.number} died {len(slot.deaths)} times within a minute (last exit "
                f"code {code}{why}); giving up: see the log above"
            )
        delay = 0.5 * 2 ** (len(slot.deaths) - 1)
        log.error(
            "serving process %d (pid %s) exited with code %s%s; starting another in %.1f s",
            slot.number,
            pid,
            code,
            why,
            delay,
        )
        slot.restart_at = now + delay

    def _hand_over(self, slot: _Slot) -> None:
        """The connections waiting on ``slot``'s listening socket, not yet accepted (those the kernel
        gave it while its process was replaced by one that could not start): accepted here and handed
        to the serving processes in turn, their descriptors sent over their pipes; at most
        HAND_OVER_MAX (the pipes are blocking: a taker whose loop is stalled would hold the
        supervisor), the rest reset as the socket closes. Not where passing a descriptor waits for
        an acknowledgement on the pipe (macOS), which would read the taker's own messages."""
        from multiprocessing import reduction

        if reduction.ACKNOWLEDGE:
            return
        takers = [other for other in self.slots if other is not slot and other.ready and other.conn]
        slot.sock.setblocking(False)
        handed = 0
        while takers and handed < HAND_OVER_MAX:
            try:
                accepted, _ = slot.sock.accept()
            except ConnectionAbortedError:  # its client gave up while it waited
                continue
            except OSError:  # BlockingIOError: none waits
                break
            with accepted:  # the taker holds its own copy once sent
                while takers:
                    taker = takers[handed % len(takers)]
                    assert taker.conn is not None
                    try:
                        taker.conn.send(("adopt",))
                    except OSError:  # it is exiting: seen as it does
                        takers.remove(taker)
                        continue
                    try:
                        reduction.send_handle(taker.conn, accepted.fileno(), None)
                    except OSError as exc:
                        # it waits for a descriptor that will not come, and would read the next message
                        # out of step: replaced, as a process that died
                        log.warning(
                            "serving process %d could not be handed a connection (%s): it is replaced",
                            taker.number,
                            exc,
                        )
                        takers.remove(taker)
                        if taker.process is not None:
                            taker.process.terminate()
                        continue
                    handed += 1
                    break
        if handed:
            log.info(
                "%d connections waiting for serving process %d handed to the others", handed, slot.number
            )

    def _stop_all(self, wake: socket.socket) -> None:
        """SIGTERM to every serving process, then wait for them (a second SIGINT or SIGTERM: kill).
        The supervisor's copies of the listening sockets are closed first: each socket stops listening
        when its process closes its own (else new connections would wait in its queue, unanswered)."""
        for slot in self.slots:
            slot.sock.close()
        running = [slot.process for slot in self.slots if slot.process is not None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)  # type: ignore[arg-type]
        deadline = time.monotonic() + STOP_SECONDS
        while running and time.monotonic() < deadline:
            for ready in wait([wake, *(p.sentinel for p in running)], timeout=deadline - time.monotonic()):
                if ready is wake and set(wake.recv(64)) & {signal.SIGTERM, signal.SIGINT}:
                    deadline = 0.0  # asked again: do not wait
            running = [p for p in running if p.is_alive()]
        for process in running:
            log.warning("serving process pid %s did not stop in time: killed", process.pid)
            process.kill()
        for slot in self.slots:
            if slot.process is not None:
                slot.process.join()
            if slot.conn is not None:
                slot.conn.close()


def _ignore(signum: int, frame: Any) -> None:
    """Signals reach the supervisor's loop through the wake-up socket; the handler only keeps the
    default action (terminate) from running."""
