"""The ``ocsf-anomaly`` command line: the parser, assembled from one module per command group, and
:func:`main`, which runs a command and turns a user's error into one line and exit status 2.

    train.py      train
    scoring.py    score, evaluate, refresh, split
    spark.py      score-spark (the [spark] extra)
    report.py     report (the [report] extra)
    features.py   features infer
    serve.py      serve, config show
    models.py     models list, promote, rollback
    opensearch.py opensearch render, install, uninstall
    stream.py     stream (Redis Streams)
    demo.py       demo

Each module adds its commands with their handler. Heavy libraries (torch, faiss, aiohttp, MLflow)
are imported inside the handlers, so that ``--help`` and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import difflib
import errno
import importlib
import math
import os
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeAlias

from scorer import __version__
from scorer.errors import UserError

if sys.argv[1:2] == ["serve"]:  # `ocsf-anomaly serve` or `python -m scorer.cli serve`, as it starts
    # SIGHUP asks serve to reload, once it serves; until then its default action would end the
    # command (while it imports, before serve() holds it too): held from the first moment the
    # command runs, to be acted on once it serves. Its serving processes start with it held.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})

Commands: TypeAlias = "argparse._SubParsersAction[Parser]"
Handler: TypeAlias = Callable[[argparse.Namespace], int]

EPILOG = """\
examples:
  ocsf-anomaly train events.jsonl.gz --output models/m1
  ocsf-anomaly train events.jsonl.gz --register netflow   # a new version in the registry
  ocsf-anomaly models list --name netflow
  ocsf-anomaly models promote 3 --name netflow            # serve with OCSF_ANOMALY_MODEL_NAME=netflow swaps it in
  ocsf-anomaly score --model models/m1 new.jsonl.gz --output scored.jsonl
  ocsf-anomaly score --model models/m1 new.jsonl.gz --output scores.csv --alpha 0.001
  ocsf-anomaly evaluate --model models/m1 test.jsonl.gz --labels test.labels.csv --train events.jsonl.gz
  ocsf-anomaly demo            # what `make run` runs before it serves
"""

PRECEDENCE = (
    "Settings precedence: command-line flags over OCSF_ANOMALY_* environment variables (and "
    "MLFLOW_TRACKING_URI, REDIS_URL) over the --config file over the defaults."
)

CONFIG_HELP = "a TOML file of settings; flags and OCSF_ANOMALY_* environment variables win over it"


class Help(argparse.HelpFormatter):
    """Descriptions wrapped to the terminal; an epilog of examples kept as written (its lines are
    commands, and the paragraphs after them are wrapped by hand)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("examples:"):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


class Parser(argparse.ArgumentParser):
    """The parser of every command (subcommands' parsers are of their parent's class): :class:`Help`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", Help)
        super().__init__(*args, **kwargs)


class CliError(UserError):
    """A user error: printed as one line, exit status 2."""


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _number(text: str, kind: type[float] | type[int], what: str) -> Any:
    """``text`` read as ``kind``, or argparse's one-line error saying what was expected (argparse
    itself would name the parsing function)."""
    try:
        value = kind(text)
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
    return value


def _between(text: str, what: str, *, closed: bool) -> float:
    value: float = _number(text, float, what)
    if not (0 <= value <= 1 if closed else 0 < value < 1):
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
    return value


def _alpha(text: str) -> float:
    return _between(text, "a false-positive rate between 0 and 1, e.g. 0.01", closed=False)


def _share(text: str) -> float:
    return _between(text, "a share between 0 and 1, e.g. 0.1", closed=True)


def _fraction(text: str) -> float:
    return _between(text, "a fraction strictly between 0 and 1, e.g. 0.5", closed=False)


def _at_least(text: str, kind: type[float] | type[int], least: float, what: str) -> Any:
    value = _number(text, kind, what)
    if value < least:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
    return value


def _positive(text: str) -> int:
    value: int = _at_least(text, int, 1, "a positive integer")
    return value


def _count(text: str) -> int:
    value: int = _at_least(text, int, 0, "a whole number, 0 or more")
    return value


def _non_negative(text: str) -> float:
    value: float = _at_least(text, float, 0.0, "a number, 0 or more, e.g. 0.2")
    return value


def _file_out(text: str) -> Path:
    """A file to write: refused at once when it cannot be one (a directory, under a file, or where
    nothing can be written)."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a directory: name a file to write")
    _writable_parent(text, path)
    return path


def _dir_out(text: str) -> Path:
    """A directory to write: refused at once when it cannot be one (a file, under a file, or where
    nothing can be written, in it or above it)."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a file: name a directory to write")
    _writable_parent(text, path)
    if path.is_dir():
        _takes_files(text, path)
    return path


def _bundle_out(text: str) -> Path:
    """A model bundle directory to write: refused at once when it holds anything but a bundle (it is
    replaced whole), not after minutes of training."""
    from scorer.bundle import BundleError, replaceable

    path = _dir_out(text)
    try:
        replaceable(path)
    except BundleError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return path


def _writable_parent(text: str, path: Path) -> None:
    """The nearest existing directory above ``path``, where it (or a file beside it, renamed into
    place) is made, must take new entries: else the command would fail only at the end, after
    minutes of training or scoring."""
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise argparse.ArgumentTypeError(
                    f"{text!r} cannot be written: {parent} is a file, not a directory"
                )
            _takes_files(text, parent)
            return


def _takes_files(text: str, directory: Path) -> None:
    """Make and remove a file in ``directory``: its permissions say too little (root may write
    anywhere by them, yet not in /proc nor on a read-only mount, and the command failed at the end)."""
    try:
        handle, probe = tempfile.mkstemp(prefix=".ocsf-anomaly-probe-", dir=directory)
    except OSError as exc:
        raise argparse.ArgumentTypeError(
            f"{text!r} cannot be written: {directory} does not take new files ({exc.strerror or exc}): "
            "choose another place"
        ) from None
    os.close(handle)
    os.unlink(probe)


def _seed(text: str) -> int:
    value: int = _number(text, int, "a seed, a whole number from 0 to 4294967295")
    if not 0 <= value <= 2**32 - 1:  # numpy takes no negative seed, torch and faiss no wider one
        raise argparse.ArgumentTypeError(f"{text!r} is not a seed, a whole number from 0 to 4294967295")
    return value


def _port(text: str) -> int:
    value: int = _number(text, int, "a port number, 0-65535")
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number, 0-65535")
    return value


def _seconds(text: str) -> float:
    value: float = _number(text, float, "a number of seconds above 0")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above 0")
    return value


def _workers(text: str) -> int:
    from scorer.threads import most_processes

    value, most = _positive(text), most_processes()
    if value > most:
        raise argparse.ArgumentTypeError(f"{value} workers on {os.cpu_count()} cores: at most {most}")
    return value


def _existing(text: str) -> Path:
    """A file to read: refused at once when it is missing or a directory (read, a directory failed
    with a bare "Is a directory", refresh's only once the model had loaded)."""
    return _file_in(text)


def _file_in(text: str, directory_hint: str = "") -> Path:
    """:func:`_existing`, with ``directory_hint`` added where a directory is refused (what takes one)."""
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"no such file: {path}")
    if path.is_dir():
        raise argparse.ArgumentTypeError(
            f"{path} is a directory: name a file{f' ({directory_hint})' if directory_hint else ''}"
        )
    return path


def _counted(n: int, one: str, many: str | None = None) -> str:
    """``n`` and the noun that goes with it: "1 anomaly", "2 anomalies", "1,000 lines"."""
    return f"{n:,} {one if n == 1 else many or one + 's'}"


def _check_config(config: Path | None) -> None:
    """Read the --config file now, so that one not valid TOML is refused, not ignored: a command given
    a bundle directory rather than a models:/ URI would never read it."""
    from scorer.settings import Settings

    if config is not None:
        Settings.load(config)


def _registry(config: Path | None, *, create: bool = False) -> Any:
    """The registry of the settings; a local store is made only for commands that register."""
    from scorer.registry import Registry, configure_mlflow
    from scorer.settings import Settings

    settings = Settings.load(config)
    _say("opening the model registry")  # seconds: MLflow's imports, and creating a new local store
    configure_mlflow()
    registry = Registry(settings.registry_uri, create=create)
    if create:
        registry.answers()  # a command that registers finds a server down before its work, not after
    return registry


def _register(registry: Any, bundle_dir: Path, name: str) -> None:
    """Register a written bundle as a new version of ``name`` and say what to do next."""
    from scorer.registry import promoting

    version, champion = registry.register(bundle_dir, name)
    then = (
        "it is the champion (the model's first)"
        if champion
        else f"promote it with {promoting(version.name, version.version)}"
    )
    _say(f"registered {version.uri} in {registry.uri}: {then}")


def _require_extra(command: str, extra: str, *modules: str) -> None:
    """Fail in one line, saying what to install, when an optional extra's module cannot be imported."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            raise CliError(
                f"{command} needs the [{extra}] extra ({module} is missing): pip install 'ocsf-anomaly[{extra}]'"
            ) from None


def _check_model(spec: str) -> None:
    """Refuse a --model that is neither a registry URI nor a directory, before any slower work."""
    if not spec.startswith("models:/") and not Path(spec).is_dir():
        raise CliError(f"no model bundle at {spec} (a directory written by `train`, or models:/NAME@ALIAS)")


@contextmanager
def _bundle(spec: str, config: Path | None = None, registry: Any = None) -> Iterator[Path]:
    """A bundle directory, or the version a ``models:/NAME@ALIAS`` / ``models:/NAME/VERSION`` URI names,
    downloaded from the registry (``registry``, or the settings') for as long as the block runs."""
    _check_model(spec)
    if not spec.startswith("models:/"):
        yield Path(spec)
        return
    registry = registry or _registry(config)
    version = registry.lookup(spec)
    _say(f"downloading {version.uri} from {registry.uri}")
    with registry.fetched(version) as path:
        yield path


def build_parser() -> argparse.ArgumentParser:
    from scorer.cli import demo, features, models, opensearch, report, scoring, serve, spark, stream, train

    parser = Parser(
        prog="ocsf-anomaly",
        description="Score OCSF security events for anomalies and write the verdict back into each event.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (  # in the order `--help` lists the commands
        train.add_commands,
        scoring.add_commands,
        spark.add_commands,
        report.add_commands,
        features.add_commands,
        serve.add_serve,
        stream.add_commands,
        models.add_commands,
        serve.add_config,
        opensearch.add_commands,
        demo.add_commands,
    ):
        add(commands)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM (as `timeout`, `kill` and `docker stop` send it), raised where Ctrl-C's KeyboardInterrupt
    would be, so that the same clean-up runs: without it a partial output and the workers were left."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # errors only a write meets


def _command_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The parser of the (sub)command ``args`` chose (``models list``'s, not ``models``')."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = action.choices.get(getattr(args, action.dest, None) or "")
            if isinstance(chosen, argparse.ArgumentParser):
                return _command_parser(chosen, args)
    return parser


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """``parser.parse_args``, but an argument the command does not know is refused by the command's
    own parser, with its usage and the option meant: argparse refused it with the top-level usage
    (`usage: ocsf-anomaly [-h] COMMAND ...`), which says nothing of the command's options."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        own = _command_parser(parser, args)
        options = [o for action in own._actions for o in action.option_strings]
        flags = [u.split("=")[0] for u in unknown if u.startswith("-")]
        if any(flag in options for flag in flags):  # `models --json list`: given before the command's name
            hint = f" (the command's options go after its name: {own.prog} {' '.join(unknown)})"
        else:
            meant = [m for flag in flags for m in difflib.get_close_matches(flag, options, 1)]
            hint = f" (did you mean {' or '.join(dict.fromkeys(meant))}?)" if meant else ""
        own.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = _parse(parser, argv)
    handler: Handler = args.handler
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return handler(args)
    except (UserError, FileNotFoundError, ValueError) as exc:
        _say(f"error: {exc}")
        return 2
    except Terminated:
        _say("terminated")
        return 143  # 128 + SIGTERM, as a shell reports a command SIGTERM ended
    except KeyboardInterrupt:
        _say("interrupted")
        return 130
    except MemoryError:  # one line, not numpy's traceback; what the memory went to is the command's
        _say("error: out of memory: give the command more memory, or fewer or smaller inputs")
        return 2
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as a shell tool does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:  # a directory where a file was meant, a full disk, no permission
        where = exc.filename
        if where is None and exc.errno in FULL and getattr(args, "output", None) is not None:
            where = args.output  # a write names no file: the command's output is what was written
        _say(f"error: {exc.strerror or exc}{f': {where}' if where else ''}")
        return 2
    finally:
        signal.signal(signal.SIGTERM, previous)
