"""The real command line, run as a subprocess: help, train, score (CSV, JSONL, gzip, bad lines), features infer,
split, evaluate, refresh and demo."""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import decimal
import fcntl
import gzip
import json
import math
import os
import re
import shutil
import subprocess
import sys
import termios
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from altered import altered_bundle
from waiting import eventually

from scorer import settings
from scorer.batch import CHUNK_LINES
from scorer.bundle import FILES
from scorer.cli import PRECEDENCE, build_parser
from scorer.demo import generate_events
from scorer.detector import Detector
from scorer.features.infer import infer_spec
from scorer.features.spec import load_spec
from scorer.io import load_events
from scorer.paths import state_dir

Event = dict[str, Any]

TIMEOUT = 300


def _run(
    *args: str | Path, check: bool = False, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**(os.environ if env is None else env), "PYTHONWARNINGS": "ignore", "TQDM_DISABLE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "scorer.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env,
        check=False,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def _in_process(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str]:
    """The command run by main() in this process, for what ends early (no interpreter to start, no
    torch to import again: a second or two a run): its exit status and what it said on stderr."""
    code, _, said = _in_process_out(capsys, *args)
    return code, said


def _in_process_out(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    """:func:`_in_process`, with what the command wrote on stdout before its stderr."""
    import faiss
    import torch

    from scorer.cli import main

    capsys.readouterr()
    threads = torch.get_num_threads(), faiss.omp_get_max_threads()
    try:
        code = main([str(arg) for arg in args])
    finally:  # the commands take every core for their process: this worker shares them with another
        torch.set_num_threads(threads[0])
        faiss.omp_set_num_threads(threads[1])
    out, err = capsys.readouterr()
    return code, out, err


def _write_jsonl(path: Path, events: list[Event]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    return path


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli")


@dataclass(frozen=True)
class Trained:
    train_file: Path
    model: Path
    returncode: int
    stderr: str


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """`ocsf-anomaly train` on 1,000 demo events, run once per test run.

    Under pytest-xdist every worker would otherwise train its own bundle (xdist_group does not keep
    this module on one worker here), so the first worker trains into the run's shared temporary
    directory under a file lock and the others reuse the result.
    """
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = tmp_path_factory.getbasetemp().parent / "cli-trained"  # one per run, shared by workers
        shared.mkdir(exist_ok=True)
    else:
        shared = tmp_path_factory.mktemp("cli-trained")
    with (shared / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        train_file, model, done = shared / "train.jsonl", shared / "model", shared / "result.json"
        if not done.exists():
            events, _ = generate_events(1_000, seed=3)
            _write_jsonl(train_file, events)
            result = _run(
                "train",
                train_file,
                "--output",
                model,
                "--epochs",
                "1",
                "--baseline-size",
                "500",
                "--fusion-weight",
                "0.4",
                "--feature-noise",
                "0.3",
                "--name",
                "cli-test",
                "--quiet",
            )
            done.write_text(json.dumps({"returncode": result.returncode, "stderr": result.stderr}))
        outcome = json.loads(done.read_text())
    return Trained(train_file, model, outcome["returncode"], outcome["stderr"])


@pytest.fixture(scope="module")
def model(trained: Trained) -> Path:
    assert trained.returncode == 0, trained.stderr
    return trained.model


@pytest.fixture(scope="module")
def score_events() -> list[Event]:
    events, _ = generate_events(120, seed=4, anomaly_rate=0.05)
    return events


@pytest.fixture(scope="module")
def events_file(workdir: Path, score_events: list[Event]) -> Path:
    """A small events file for the commands that fail before they read it."""
    return _write_jsonl(workdir / "some-events.jsonl", score_events)


# ------------------------------------------------------------------ help
@pytest.mark.parametrize(
    ("command", "options"),
    [
        ([], ["train", "score", "evaluate", "split", "features", "serve", "models", "demo"]),
        (
            ["train"],
            [
                "--output",
                "--register",
                "--features",
                "--epochs",
                "--seed",
                "--score",
                "--k",
                "--feature-k",
                "--feature-noise",
                "--fusion-weight",
                "--baseline-size",
                "--quiet",
            ],
        ),
        (["score"], ["--model", "--output", "--alpha", "--workers", "--quiet", ".csv", ".jsonl"]),
        (["evaluate"], ["--model", "--labels", "--train", "--alpha", "--json"]),
        (["split"], ["--labels", "--output", "--seed", "--fraction"]),
        (["features"], ["infer"]),
        (["features", "infer"], ["--output", "EVENTS"]),
        (["demo"], ["usage"]),
        (["serve"], ["--host", "--port", "--model", "--workers", "--config", "champion"]),
        (["models"], ["list", "promote", "rollback", "champion", "challenger"]),
        (["models", "promote"], ["VERSION", "--alias", "--name", "rollback"]),
        (["models", "rollback"], ["--alias", "--name", "removed"]),
    ],
    ids=[
        "main",
        "train",
        "score",
        "evaluate",
        "split",
        "features",
        "features-infer",
        "demo",
        "serve",
        "models",
        "models-promote",
        "models-rollback",
    ],
)
def test_help(command: list[str], options: list[str]) -> None:
    result = _run(*command, "--help")
    assert result.returncode == 0, result.stderr
    for option in options:
        assert option in result.stdout, option
    assert result.stderr == ""


def test_version_and_an_option_the_command_does_not_take(
    capsys: pytest.CaptureFixture[str], model: Path, tmp_path: Path
) -> None:
    """--version was 'the following arguments are required: COMMAND'; a mistyped option was refused
    with the top-level usage, which lists no option of the command, and no guess (the new-user
    walkthrough)."""
    from scorer import __version__
    from scorer.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"ocsf-anomaly {__version__}\n"
    events = tmp_path / "in.jsonl"
    events.write_text('{"class_uid": 4001}\n')
    for argv, usage, said in [
        (
            ["score", str(events), "-m", str(model), "-o", str(tmp_path / "o.jsonl"), "--alfa", "0.01"],
            "ocsf-anomaly score",
            "--alfa 0.01 (did you mean --alpha?)",
        ),
        (["models", "list", "--jsn"], "ocsf-anomaly models list", "--jsn (did you mean --json?)"),
        (
            ["models", "--json", "list"],
            "ocsf-anomaly models list",
            "--json (the command's options go after its name: ocsf-anomaly models list --json)",
        ),
        (["features", "infer", str(events), "--zzz"], "ocsf-anomaly features infer", "--zzz"),
    ]:
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith(f"usage: {usage} "), err
        assert err.rstrip().endswith(f"{usage}: error: unrecognized arguments: {said}"), err


def _parsers(
    parser: argparse.ArgumentParser, path: str = "ocsf-anomaly"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


def test_every_argument_of_every_command_says_what_it_is() -> None:
    for path, parser in _parsers(build_parser()):
        assert (parser.description or "").strip(), path
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:
                    assert (choice.help or "").strip(), f"{path} {choice.dest}"
            else:
                assert (action.help or "").strip(), f"{path} {'/'.join(action.option_strings) or action.dest}"


def test_every_command_s_help_ends_in_examples_that_use_only_its_flags() -> None:
    """A command's --help taught its flags but showed no command line (the new-user walkthrough): each
    command's ends in examples now, and each example names only flags its command takes."""
    from scorer.cli.train import DEFAULT_EPOCHS
    from scorer.model import TrainConfig

    assert TrainConfig().epochs == DEFAULT_EPOCHS  # what train's --help says of --epochs
    parsers = dict(_parsers(build_parser()))
    for path, parser in parsers.items():
        if parser._subparsers is not None and path != "ocsf-anomaly":
            continue  # a group: its commands have the examples
        epilog = parser.epilog or ""
        assert epilog.startswith("examples:\n"), path
        block = epilog.split("\n\n", 1)[0].replace("\\\n", " ")
        for line in block.splitlines()[1:]:
            for part in re.split(r"&&|\|", line.split("  # ", 1)[0]):
                words = [w for w in part.split() if not re.match(r"^[A-Z_]+=", w)]
                if not words or words[0] != "ocsf-anomaly":
                    continue
                command = "ocsf-anomaly"
                for word in words[1:]:
                    if f"{command} {word}" not in parsers:
                        break
                    command = f"{command} {word}"
                takes = {o for action in parsers[command]._actions for o in action.option_strings}
                flags = {w.split("=")[0] for w in words if w.startswith("-") and w != "-"}
                assert flags <= takes, f"{path}: {line!r} gives {command} {sorted(flags - takes)}"
                assert command != "ocsf-anomaly" or path == "ocsf-anomaly", line


def test_the_readme_synopsis_lists_every_command_with_only_flags_it_takes() -> None:
    """The README's "Command line" block: every command is on a line, and every flag on a line is
    one that each command the line names (``install|uninstall``) accepts; a line that does not end
    in `` ...`` lists every flag its command takes but ``--config`` (which the text below names)."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = readme.split("## Command line", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    lines: list[str] = []
    for line in block.splitlines():
        if line.startswith("ocsf-anomaly "):
            lines.append(line)
        elif line.strip():
            lines[-1] += " " + line  # a continuation
    parsers = dict(_parsers(build_parser()))
    leaves = {path for path, parser in parsers.items() if parser._subparsers is None}
    listed: set[str] = set()
    for line in lines:
        words = line.split()
        command = f"ocsf-anomaly {words[1]}"
        if command in leaves:
            named = [command]
        else:  # a group: its commands are the words before the flags, alternatives split by |
            head = [w for w in words[2:] if not w.startswith(("-", "["))]
            names = {part for word in head for part in word.split("|")}
            named = [f"{command} {name}" for name in sorted(names) if f"{command} {name}" in leaves]
        assert named, line
        for path in named:
            listed.add(path)
            takes = {option for action in parsers[path]._actions for option in action.option_strings}
            flags = set(re.findall(r"--[a-z][a-z0-9-]*", line))
            assert flags <= takes, f"README: {path} does not take {sorted(flags - takes)}"
            if not line.rstrip().endswith(" ..."):  # not EVENTS...: that is a repeated argument
                missing = {f for f in takes if f.startswith("--")} - flags - {"--help", "--config"}
                assert not missing, f"README: the line of {path} omits {sorted(missing)}"
    assert leaves <= listed, f"README lists no line for {sorted(leaves - listed)}"


@pytest.mark.parametrize(
    ("hidden", "extra", "command"),
    [
        ("pyspark", "spark", ["score-spark", "--model", "{model}", "{source}", "{out}"]),
        ("plotly", "report", ["report", "{source}", "--output", "{out}.html"]),
        ("opensearchpy", "opensearch", ["opensearch", "install", "--opensearch-url", "http://127.0.0.1:9"]),
        ("opensearchpy", "opensearch", ["opensearch", "uninstall", "--opensearch-url", "http://127.0.0.1:9"]),
        (
            "aiokafka",
            "kafka",
            [
                *("stream", "--source", "kafka", "--bootstrap-servers", "127.0.0.1:9", "--model", "{model}"),
                *(
                    "--input",
                    "in",
                    "--output",
                    "out",
                    "--alerts",
                    "alerts",
                    "--dead-letter",
                    "dead",
                    "--group",
                    "g",
                ),
            ],
        ),
    ],
)
def test_a_missing_extra_is_one_line_saying_what_to_install(
    hidden: str, extra: str, command: list[str], bundle_dir: Path, tmp_path: Path
) -> None:
    """Each command an extra serves says, in one line, which extra to install. `opensearch install`,
    `uninstall` and `stream --source kafka` ended in a traceback (the README walk-through), the last
    after loading the model."""
    source = tmp_path / "in.jsonl"
    source.write_text('{"class_uid": 4001}\n')
    args = [a.format(model=bundle_dir, source=source, out=tmp_path / "out") for a in command]
    code = (  # the package made unimportable, as where the extra was never installed
        f"import sys; sys.modules[{hidden!r}] = None; from scorer.cli import main; sys.exit(main({args!r}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 2, result.stderr
    assert f"pip install 'ocsf-anomaly[{extra}]'" in result.stderr
    assert "Traceback" not in result.stderr
    assert "loading" not in result.stderr  # said before any model loads


def test_every_help_states_the_one_true_precedence_of_settings() -> None:
    """As measured in tests/test_settings.py: flags over the environment over the file over the defaults."""
    stated = {  # the description as written: argparse's wrapping may break "command-line" at its hyphen
        path: " ".join((parser.description or "").split())
        for path, parser in _parsers(build_parser())
        if "precedence" in parser.format_help().lower()
    }
    assert set(stated) == {"ocsf-anomaly serve", "ocsf-anomaly config show"}
    for path, text in stated.items():
        assert " ".join(PRECEDENCE.split()) in text, path
    for path, parser in _parsers(build_parser()):
        for action in parser._actions:
            if "--config" in action.option_strings:
                assert action.help is not None
                assert "environment variables win over it" in action.help, path
    assert "over the environment over the file over the defaults" in " ".join(settings.__doc__.split())


def test_every_checked_number_refuses_nonsense_and_says_what_it_wants(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """argparse names the function that read a value ("invalid _alpha value") unless the function
    says what was wanted; a non-finite or overflowing number is refused, not carried into the run."""
    checked = 0
    for path, parser in _parsers(build_parser()):
        words = path.split()[1:]
        for action in parser._actions:
            kind = action.type
            if (
                not callable(kind)
                or getattr(kind, "__module__", "") != "scorer.cli"
                or kind.__name__
                in ("_existing", "_file_out", "_dir_out", "_bundle_out")  # paths, not numbers
            ):
                continue
            option = action.option_strings[0]
            for value in ("nonsense", "inf", "nan", "1e999", "-1"):
                with pytest.raises(SystemExit) as exit_:
                    build_parser().parse_args([*words, option, value])
                assert exit_.value.code == 2
                said = capsys.readouterr().err.strip().splitlines()[-1]
                assert said.startswith(f"{path}: error: argument {'/'.join(action.option_strings)}: "), said
                assert f"'{value}' is not " in said, said
                assert "invalid" not in said, said
                checked += 1
    assert checked >= 5 * 20  # every command's checked options, not a few


def test_a_spark_master_that_is_none_is_refused_before_spark_starts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Spark's JVM took a wrong master and the command ended in a Java and a Python traceback."""
    for master in ("local", "local[*]", "local[2]", "spark://head:7077", "yarn", "k8s://https://api:6443"):
        assert (
            build_parser().parse_args(["score-spark", "--model", "m", "in", "out", "--master", master]).master
            == master
        )
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["score-spark", "--model", "m", "in", "out", "--master", "bogus://x"])
    assert exit_.value.code == 2
    said = capsys.readouterr().err.strip().splitlines()[-1]
    assert said.endswith(
        "argument --master: 'bogus://x' is not a Spark master: local, local[N], local[*], spark://HOST:PORT, yarn or k8s://URL"
    )


def test_no_command_is_a_usage_error() -> None:
    result = _run()
    assert result.returncode == 2
    assert "usage" in result.stderr


# ------------------------------------------------------------------ train
def test_train_writes_a_bundle(trained: Trained) -> None:
    assert trained.returncode == 0, trained.stderr
    path = trained.model
    assert sorted(p.name for p in path.iterdir()) == sorted([*FILES, "metadata.json"])
    metadata = json.loads((path / "metadata.json").read_text(encoding="utf-8"))
    assert metadata["name"] == "cli-test"
    assert metadata["training"]["events"] == 1_000
    assert metadata["training"]["baseline_events"] == 500
    assert metadata["training"]["config"]["epochs"] == 1
    assert metadata["detector"]["fusion_weight"] == 0.4
    assert metadata["detector"]["feature_noise"] == 0.3
    assert metadata["version"] in trained.stderr
    assert "wrote" in trained.stderr
    assert "Traceback" not in trained.stderr
    assert Detector.load(path).model_info == {"name": "cli-test", "version": metadata["version"]}


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--fusion-weight", "-0.1"),
        ("--fusion-weight", "1.5"),
        ("--fusion-weight", "half"),
        ("--feature-noise", "-1"),
        ("--feature-noise", "nan"),
    ],
)
def test_train_fusion_weight_outside_zero_to_one_or_a_negative_noise_is_a_usage_error(
    workdir: Path, events_file: Path, option: str, value: str
) -> None:
    result = _run("train", events_file, "--output", workdir / "m3", option, value)
    assert result.returncode == 2
    assert option in result.stderr
    assert not (workdir / "m3").exists()


@pytest.mark.parametrize(("option", "value"), [("--baseline-size", "1"), ("--k", "5000")])
def test_train_refuses_a_baseline_smaller_than_its_neighbours(
    trained: Trained, workdir: Path, option: str, value: str
) -> None:
    """k neighbours of a baseline that holds fewer are not there: the search would pad with nothing."""
    out = workdir / "too-few"
    result = _run("train", trained.train_file, "--output", out, option, value, "--quiet")
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: a baseline of "), last
    assert " is too small for k = " in last, last
    assert "Warning" not in result.stderr
    assert not out.exists()


def test_score_keeps_integers_beyond_64_bits_exact(
    model: Path, workdir: Path, score_events: list[Event]
) -> None:
    """orjson reads such an integer as a float, so the event written back changed (1e+30 for a
    30-digit id); the service kept it exact. Both now read through scorer.io.loads."""
    huge, negative = 123456789012345678901234567890, -(2**70)
    events = [
        {**score_events[0], "unmapped": {"ticket": huge}},
        {**score_events[1], "traffic": {"bytes_out": negative}},
    ]
    source = _write_jsonl(workdir / "huge-integers.jsonl", [])
    source.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")  # orjson writes none
    out = workdir / "huge-integers-out.jsonl"
    result = _run("score", "--model", model, source, "--output", out, "--workers", "1", "--quiet")
    assert result.returncode == 0, result.stderr
    written = out.read_text(encoding="utf-8").splitlines()
    assert f'"ticket":{huge}' in written[0].replace(" ", "")
    assert f'"bytes_out":{negative}' in written[1].replace(" ", "")
    assert json.loads(written[0])["unmapped"]["ticket"] == huge
    assert json.loads(written[1])["anomaly"]["is_anomaly"] is True  # an impossible byte count


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_score_reads_a_file_that_opens_with_a_byte_order_mark(
    model: Path, workdir: Path, score_events: list[Event], suffix: str
) -> None:
    """Windows tools open a UTF-8 file with a byte order mark: its first event was a bad line
    ("UTF-8 byte order mark (BOM) is not supported"), while score-spark, through Spark's line
    reader, scored it."""
    body = b"\xef\xbb\xbf" + b"\n".join(orjson.dumps(e) for e in score_events[:3]) + b"\n"
    source = workdir / f"bom{suffix}"
    source.write_bytes(gzip.compress(body) if suffix.endswith(".gz") else body)
    out = workdir / "bom-out.csv"
    result = _run("score", "--model", model, source, "--output", out, "--workers", "1", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "byte order mark" not in result.stderr
    rows = out.read_text(encoding="utf-8").splitlines()[1:]
    assert len(rows) == 3, rows
    assert all(row.split(",")[1] != "" for row in rows), rows  # every line scored


def test_score_reads_a_gz_named_in_capitals(
    model: Path, workdir: Path, score_events: list[Event], capsys: pytest.CaptureFixture[str]
) -> None:
    """EVENTS.JSONL.GZ, as Windows tools name it, was read as text: twenty lines of "not valid
    UTF-8", then "it holds gzip data: name it .gz" of a file so named."""
    source = workdir / "CAPITALS.JSONL.GZ"
    source.write_bytes(gzip.compress(b"\n".join(orjson.dumps(e) for e in score_events[:3]) + b"\n"))
    out = workdir / "capitals.csv"
    code, said = _in_process(capsys, "score", "--model", model, source, "--output", out, "--quiet")
    assert code == 0, said
    assert len(out.read_text(encoding="utf-8").splitlines()) == 4, said  # the header and 3 events


@pytest.mark.parametrize("output", [".", "{here}", ".."])
def test_train_refuses_the_current_directory_as_its_output_before_any_work(
    output: str,
    workdir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An empty current directory passed the check, and after the whole training the write failed
    ("Device or resource busy: ."); named by its full path, it was replaced, leaving the shell in a
    deleted directory."""
    here = tmp_path / "empty" / "here"
    here.mkdir(parents=True)
    monkeypatch.chdir(here)
    source = _write_jsonl(workdir / "one-event.jsonl", [{}])
    with pytest.raises(SystemExit) as ended:
        _in_process(capsys, "train", source, "--output", output.format(here=here))
    said = capsys.readouterr().err
    assert ended.value.code == 2, said
    assert "is the current directory" in said, said
    assert "it is replaced whole; name a new directory" in said, said
    assert "profiling" not in said  # refused before any work


def test_score_writes_numbers_beyond_a_double_back_as_they_came(
    model: Path, workdir: Path, score_events: list[Event]
) -> None:
    """1e400 (or an integer of 4,400 digits) in an event that also held an integer beyond 64 bits
    stopped the whole run ("Out of range float values are not JSON compliant"), and alone came back
    as null, in the event and in its reason: the value that flagged it was lost."""
    longest = "9" * 4_400
    lines = [
        orjson.dumps(score_events[0])[:-1]
        + b',"traffic":{"bytes_out":1e400},"ticket":123456789012345678901234567890}',
        orjson.dumps(score_events[1])[:-1] + b',"traffic":{"bytes_out":-1E+400}}',
        orjson.dumps(score_events[2])[:-1] + b',"traffic":{"bytes_out":' + longest.encode() + b"}}",
        orjson.dumps(score_events[3]),
    ]
    source = workdir / "beyond-a-double.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    out = workdir / "beyond-a-double-out.jsonl"
    result = _run("score", "--model", model, source, "--output", out, "--workers", "1", "--quiet")
    assert result.returncode == 0, result.stderr
    written = out.read_bytes().splitlines()
    assert len(written) == 4
    for line, number in zip(written, (b"1e400", b"-1E+400", longest.encode()), strict=False):
        assert b'"bytes_out":' + number + b"}" in line
        event = json.loads(line, parse_int=str)  # 4,400 digits: past what Python converts
        assert event["anomaly"]["is_anomaly"] is True  # an impossible byte count
        (reason,) = [r for r in event["anomaly"]["reasons"] if r["field"] == "traffic.bytes_out"]
        assert reason["value"] == (number.decode() if len(number) <= 200 else "<number of 4,400 characters>")
    assert b'"ticket":123456789012345678901234567890' in written[0]
    assert "error" not in json.loads(written[3])["anomaly"]


def test_a_model_too_small_to_flag_at_alpha_is_said_by_train_and_score(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """200 events leave 40 to calibrate on, whose smallest p-value is 1/41: nothing could be flagged
    at α = 0.01, and no command said so. (In this process: score's warnings go to the standard error
    stream of the moment, which they did not while it was bound at import.)"""
    events, _ = generate_events(200, seed=4)
    source = _write_jsonl(workdir / "two-hundred.jsonl", events)
    out = workdir / "small-model"
    code, trained = _in_process(
        capsys, "train", source, "--output", out, "--epochs", "1", "--baseline-size", "30"
    )
    assert code == 0, trained
    why = (
        "warning: nothing can be flagged at α = 0.01: the model's 40 calibration events give no p-value "
        "below 0.0244. Calibrating for this α needs at least 99 held-out normal events (train or refresh "
        "on about 495), or score at α ≥ 0.0244"
    )
    assert why in trained.splitlines()
    code, scored = _in_process(capsys, "score", "--model", out, source, "--output", workdir / "small.csv")
    assert code == 0, scored
    assert why in scored.splitlines()
    code, looser = _in_process(
        capsys, "score", "--model", out, source, "--output", workdir / "small.csv", "--alpha", "0.05"
    )
    assert code == 0, looser
    assert "warning" not in looser


def test_score_refuses_more_workers_than_the_cores_can_use(model: Path, workdir: Path) -> None:
    many = str(4 * (os.cpu_count() or 1) + 1)
    source = _write_jsonl(workdir / "one-event.jsonl", [{}])
    result = _run("score", "--model", model, source, "--output", workdir / "out.csv", "--workers", many)
    assert result.returncode == 2
    assert f"argument --workers: {many} workers on {os.cpu_count()} cores: at most " in result.stderr


def test_train_on_a_missing_file_is_a_usage_error(workdir: Path) -> None:
    result = _run("train", workdir / "nope.jsonl", "--output", workdir / "m2")
    assert result.returncode == 2
    assert "no such file" in result.stderr
    assert not (workdir / "m2").exists()


# ------------------------------------------------------------------ score
def _mixed_input(path: Path, events: list[Event]) -> tuple[Path, list[int], list[int]]:
    """Good lines with an invalid JSON line, a JSON array line and an empty line among them."""
    lines = [orjson.dumps(e) for e in events[:40]]
    lines.insert(3, b'{"class_uid": 4001, "broken": ')
    lines.insert(10, b"[1, 2, 3]")
    lines.insert(17, b"")
    lines.insert(25, b"   ")
    path.write_bytes(b"\n".join(lines) + b"\n")
    bad = [4, 11, 18, 26]
    good = [n for n in range(1, len(lines) + 1) if n not in bad]
    return path, good, bad


def _read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def test_score_to_csv_with_bad_lines(model: Path, workdir: Path, score_events: list[Event]) -> None:
    source, good, bad = _mixed_input(workdir / "mixed.jsonl", score_events)
    out = workdir / "mixed.csv"
    result = _run("score", source, "--model", model, "--output", out, "--workers", "1", "--quiet")
    assert result.returncode == 0, result.stderr
    rows = _read_csv(out)
    assert rows[0] == ["line", "score", "p_value", "is_anomaly"]
    body = rows[1:]
    assert [int(r[0]) for r in body] == list(range(1, len(good) + len(bad) + 1))
    for row in body:
        assert len(row) == 4
        if int(row[0]) in bad:
            assert row[1:] == ["", "", ""], row
        else:
            score, p_value = float(row[1]), float(row[2])
            assert 0 < p_value <= 1
            assert score == score  # not NaN
            assert row[3] in ("true", "false")
    for line in bad:
        assert f"{source}:{line}:" in result.stderr, line
    assert f"{source}:4: invalid JSON" in result.stderr
    assert f"{source}:11: expected a JSON object, got an array" in result.stderr
    assert f"{source}:18: empty line" in result.stderr
    assert f"{source}:26: empty line" in result.stderr
    for line in good:
        assert f"{source}:{line}:" not in result.stderr
    assert f"{len(bad)} bad lines" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_chunk_of_bad_lines_only_is_written_line_by_line(
    model: Path, workdir: Path, score_events: list[Event]
) -> None:
    """Every line of a chunk bad (arrays, NaN, nesting past what JSON readers take): each is written with
    its error, and the command ends normally. (With `make run`'s model this stopped the command: a chunk
    without one event could not be put in its feature space; test_encoder holds that part.) A file
    without one event is refused (tests/test_cli_errors.py)."""
    bad = [b"[1, 2]", b"7", b'{"duration": NaN}', b"[" * 2000 + b"]" * 2000] * (CHUNK_LINES // 4)
    source = workdir / "all-bad.jsonl"
    source.write_bytes(b"\n".join(bad) + b"\n" + orjson.dumps(score_events[0]) + b"\n")
    out = workdir / "all-bad.out.jsonl"
    result = _run("score", source, "--model", model, "--output", out, "--workers", "1", "--quiet")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["anomaly"]["line"] for row in rows[:-1]] == list(range(1, len(bad) + 1))
    assert all(row["anomaly"]["error"] for row in rows[:-1])
    assert rows[-1]["anomaly"].get("error") is None
    assert f"{len(bad):,} bad lines" in result.stderr


def test_a_broken_gzip_input_or_the_input_as_output_is_one_line_and_no_output(
    model: Path, workdir: Path, score_events: list[Event]
) -> None:
    """A .gz cut short or not gzip at all ended in an EOFError or BadGzipFile traceback; naming the
    input as the output replaced the events with their scores. Each is now one line, exit 2. A whole
    .gz with bytes appended that are not gzip was said to be incomplete: it says what it is."""
    whole = gzip.compress(b"\n".join(orjson.dumps(e) for e in score_events[:200]), mtime=0)
    appended = gzip.compress(b"".join(orjson.dumps(e) + b"\n" for e in score_events[:100]), mtime=0) + b"PK"
    for name, data, message in [
        ("cut.jsonl.gz", whole[: len(whole) // 2], "breaks off after line"),
        ("plain.jsonl.gz", b"not gzip", "cannot be read as gzip"),
        ("appended.jsonl.gz", appended, "ends in data that is not gzip, after line 100"),
    ]:
        source = workdir / name
        source.write_bytes(data)
        out = workdir / f"{name}.out.jsonl"
        result = _run("score", source, "--model", model, "--output", out, "--workers", "1", "--quiet")
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        assert message in result.stderr.strip().splitlines()[-1]
        assert not out.exists()
    source = _write_jsonl(workdir / "keep.jsonl", score_events[:5])
    before = source.read_bytes()
    result = _run("score", source, "--model", model, "--output", workdir / "." / "keep.jsonl", "--quiet")
    assert result.returncode == 2
    assert "is the input file" in result.stderr
    assert source.read_bytes() == before
    for command in (
        ["features", "infer", source, "--output", source],
        ["report", source, "--output", source],
    ):
        result = _run(*command)
        assert result.returncode == 2, result.stderr
        assert "is the input file" in result.stderr
        assert source.read_bytes() == before


def test_a_failed_score_leaves_no_directory_it_made(
    model: Path, workdir: Path, score_events: list[Event]
) -> None:
    """The output's missing parent directories were made and left behind, empty, when the run failed
    (here: a .gz that breaks off past the first two chunks, read before the output is begun)."""
    lines = [orjson.dumps(e) + b"\n" for e in score_events] * (3 * CHUNK_LINES // len(score_events))
    whole = gzip.compress(b"".join(lines), mtime=0)
    source = workdir / "half.jsonl.gz"
    source.write_bytes(whole[: len(whole) * 9 // 10])
    out = workdir / "made" / "by" / "score" / "half.jsonl"
    result = _run("score", source, "--model", model, "--output", out, "--workers", "1", "--quiet")
    assert result.returncode == 2, result.stderr
    assert "breaks off after line" in result.stderr
    assert not (workdir / "made").exists()


def test_outputs_get_the_mode_a_shell_gives_them(
    model: Path, events_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """score's output and train's bundle directory were made under a temporary name by mkstemp and
    mkdtemp, and kept their private modes (0600, 0700) when renamed: now 0666 and 0777 less the umask."""
    umask = os.umask(0o027)  # the process's, which the commands read
    try:
        scored = _in_process(capsys, "score", events_file, "--model", model, "--output", tmp_path / "s.csv")
        trained = _in_process(
            capsys, "train", events_file, "--output", tmp_path / "m", "--epochs", "1", "--baseline-size", "50"
        )
    finally:
        os.umask(umask)
    assert scored[0] == 0, scored[1]
    assert trained[0] == 0, trained[1]
    assert (tmp_path / "s.csv").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "m").stat().st_mode & 0o777 == 0o750
    assert (tmp_path / "m" / "metadata.json").stat().st_mode & 0o777 == 0o640


def test_what_the_helper_fuzzing_the_cli_found(model: Path, workdir: Path, score_events: list[Event]) -> None:
    """An event nested 300 levels (past orjson's writer) lost the whole JSONL output to a
    traceback; an output that is a directory ended in IsADirectoryError; `train --output` naming
    the folder of its events deleted them. Each is now a bad line or one line, exit 2."""
    deep = '{"class_uid": 4001, "deep": ' + '{"a":' * 300 + "1" + "}" * 300 + "}"
    source = workdir / "deep.jsonl"
    source.write_text("\n".join([json.dumps(score_events[0]), deep, json.dumps(score_events[1])]) + "\n")
    out = workdir / "deep.out.jsonl"
    result = _run("score", source, "--model", model, "--output", out, "--workers", "1", "--quiet")
    assert result.returncode == 0, result.stderr
    assert len(out.read_text().splitlines()) == 3

    folder = workdir / "a-folder.jsonl"
    folder.mkdir()
    result = _run("score", source, "--model", model, "--output", folder, "--quiet")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "is a directory" in result.stderr.strip().splitlines()[-1]

    home = workdir / "events-home"
    home.mkdir()
    events = _write_jsonl(home / "events.jsonl", score_events[:120])
    result = _run("train", events, "--output", home, "--epochs", "1", "--baseline-size", "100", "--quiet")
    assert result.returncode == 2, result.stderr
    assert "not a model bundle (events.jsonl)" in result.stderr
    assert events.exists()


def test_score_gzip_to_jsonl_with_two_workers_keeps_every_field(model: Path, workdir: Path) -> None:
    # more than one chunk of CHUNK_LINES lines, so both workers score and the output must be put back in order
    events, _ = generate_events(CHUNK_LINES + 300, seed=5, anomaly_rate=0.02)
    source = workdir / "events.jsonl.gz"
    with gzip.open(source, "wb") as handle:
        handle.write(b"".join(orjson.dumps(e) + b"\n" for e in events))
        handle.write(b'{"truncated": \n')
    out = workdir / "scored.jsonl"
    result = _run("score", source, "--model", model, "--output", out, "--workers", "2", "--quiet")
    assert result.returncode == 0, result.stderr
    assert f"scored {len(events):,} of {len(events) + 1:,} lines" in result.stderr
    assert f"{source}:{len(events) + 1}: invalid JSON" in result.stderr
    version = json.loads((model / "metadata.json").read_text(encoding="utf-8"))["version"]
    scored = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert len(scored) == len(events) + 1
    bad = scored.pop()
    assert bad["anomaly"]["line"] == len(events) + 1
    assert "invalid JSON" in bad["anomaly"]["error"]
    anomalies = []
    for original, event in zip(events, scored, strict=True):
        anomaly = event.pop("anomaly")
        anomalies.append(anomaly)
        assert event == original  # every original field, unchanged
        assert list(event) == list(original)  # and in its place
        assert set(anomaly) >= {
            "score",
            "p_value",
            "is_anomaly",
            "threshold",
            "reasons",
            "neighbors",
            "model",
        }
        assert isinstance(anomaly["score"], float)
        assert 0 < anomaly["p_value"] <= 1
        assert isinstance(anomaly["is_anomaly"], bool)
        assert anomaly["threshold"] is None or isinstance(anomaly["threshold"], float)
        assert isinstance(anomaly["reasons"], list)
        for reason in anomaly["reasons"]:
            assert {"field", "value", "typical", "deviation"} <= set(reason)
        assert isinstance(anomaly["neighbors"], list)
        assert all(isinstance(n, str) for n in anomaly["neighbors"])
        assert anomaly["model"] == {"name": "cli-test", "version": version}
    assert any(a["reasons"] for a in anomalies)
    assert any(a["is_anomaly"] for a in anomalies)
    # in input order: the same events scored here in one batch give the same scores, line by line
    expected = Detector.load(model).score(events, explain=False)
    np.testing.assert_allclose([a["score"] for a in anomalies], expected.score, rtol=1e-4, atol=1e-5)
    # batches of other sizes may round a score differently in its last bits, which can move it past a
    # tied calibration score: p-values agree but for such rare ties, and then by one calibration rank
    differ = np.abs(np.array([a["p_value"] for a in anomalies]) - expected.p_value)
    assert (differ > 1e-6).mean() <= 0.01
    assert differ.max() <= 0.01
    assert [a["is_anomaly"] for a in anomalies] == [a["p_value"] <= 0.01 for a in anomalies]


def _piped(*args: str | Path, stdin: bytes | None) -> subprocess.CompletedProcess[bytes]:
    """The command with ``stdin`` as its standard input (None: started with standard input closed)."""
    command = [sys.executable, "-m", "scorer.cli", *map(str, args)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "TQDM_DISABLE": "1"}
    if stdin is None:  # as `<&-` starts it
        command = ["bash", "-c", 'exec "$@" <&-', "closed", *command]
    return subprocess.run(command, input=stdin, capture_output=True, timeout=TIMEOUT, env=env, check=False)


def test_score_reads_standard_input_and_writes_standard_output(model: Path, workdir: Path) -> None:
    """`score - -o -`, as in `zcat a.gz | ocsf-anomaly score - -m M -o - | jq`: gzip known by its first
    bytes, two workers, bad lines named by <stdin>; the same bytes as scoring the file into a file."""
    events, _ = generate_events(CHUNK_LINES + 300, seed=6, anomaly_rate=0.02)
    lines = b"".join(orjson.dumps(e) + b"\n" for e in events) + b"not json\n"
    source = workdir / "piped.jsonl"
    source.write_bytes(lines)
    _run("score", source, "-m", model, "-o", workdir / "piped-scored.jsonl", "--workers", "2", check=True)
    result = _piped("score", "-", "-m", model, "-o", "-", "--workers", "2", stdin=gzip.compress(lines))
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == (workdir / "piped-scored.jsonl").read_bytes()
    said = result.stderr.decode()
    assert f"<stdin>:{len(events) + 1}: invalid JSON" in said
    assert f"scored {len(events):,} of {len(events) + 1:,} lines into <stdout>" in said
    # plain JSON Lines in, a CSV file out
    plain = _piped("score", "-", "-m", model, "-o", workdir / "piped.csv", "--workers", "1", stdin=lines)
    assert plain.returncode == 0, plain.stderr.decode()
    assert len(_read_csv(workdir / "piped.csv")) == len(events) + 2  # the header, every line


def test_gzip_on_standard_input_is_known_however_its_first_bytes_arrive(model: Path, workdir: Path) -> None:
    """A writer whose first write is one byte (a network pipe): peeking saw b"\\x1f" alone, and the
    gzip data was read as lines of text, none an event."""
    events, _ = generate_events(50, seed=7)
    data = gzip.compress(b"".join(orjson.dumps(e) + b"\n" for e in events))
    command = [sys.executable, "-m", "scorer.cli", "score", "-", "-m", str(model), "-o", "-"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "TQDM_DISABLE": "1"}
    with subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    ) as process:
        assert process.stdin is not None
        process.stdin.write(data[:1])
        process.stdin.flush()
        stdin = process.stdin

        def unread() -> int:  # bytes in the pipe that the command has not read yet
            return int.from_bytes(fcntl.ioctl(stdin, termios.FIONREAD, b"\0\0\0\0"), sys.byteorder)

        # the command's first read takes the one byte there is: the rest is sent only after it
        eventually(lambda: unread() == 0, "the command to read the first byte", timeout=TIMEOUT)
        out, err = process.communicate(data[1:], timeout=TIMEOUT)
    assert process.returncode == 0, err.decode()
    assert len(out.splitlines()) == len(events)


def test_score_to_a_closed_standard_output_or_from_a_terminal_is_a_one_line_error(
    model: Path, workdir: Path
) -> None:
    import pty

    events = _write_jsonl(workdir / "few.jsonl", generate_events(5, seed=8)[0])
    command = [sys.executable, "-m", "scorer.cli", "score", str(events), "-m", str(model), "-o", "-"]
    closed = subprocess.run(
        ["bash", "-c", 'exec "$@" >&-', "closed", *command], capture_output=True, timeout=TIMEOUT
    )
    assert closed.returncode == 2
    assert closed.stderr.decode().strip() == "error: standard output is closed: name an --output file"
    master, terminal = pty.openpty()  # events typed in would be waited for, silently
    try:
        typed = subprocess.run(
            [
                sys.executable,
                "-m",
                "scorer.cli",
                "score",
                "-",
                "-m",
                str(model),
                "-o",
                workdir / "typed.jsonl",
            ],
            stdin=terminal,
            capture_output=True,
            timeout=TIMEOUT,
        )
    finally:
        os.close(terminal)
        os.close(master)
    assert typed.returncode == 2
    assert "error: standard input is a terminal: pipe the events in" in typed.stderr.decode()


@pytest.mark.parametrize(
    ("stdin", "said"),
    [
        (b"", "error: <stdin> is empty: it holds no event"),
        (b"PAR1\x15\x04\n", "error: no line of <stdin> is an event (1 read): it is Parquet: name the file"),
        (None, "error: standard input is closed: pipe the events in, or name a file"),
        (  # a JSON array, gzipped: its first bytes are gzip's (the hint read only those)
            gzip.compress(b'[{"n": 1}, {"n": 2}]\n'),
            "error: no line of <stdin> is an event (1 read): it is a JSON array, not JSON Lines",
        ),
    ],
    ids=["empty", "parquet", "closed", "gzipped array"],
)
def test_score_of_standard_input_without_events_is_a_one_line_error(
    model: Path, workdir: Path, stdin: bytes | None, said: str
) -> None:
    out = workdir / "nothing.jsonl"
    result = _piped("score", "-", "-m", model, "-o", out, stdin=stdin)
    assert result.returncode == 2
    assert said in result.stderr.decode()
    assert b"Traceback" not in result.stderr
    assert not out.exists()


def test_score_with_a_missing_model_is_a_one_line_error(workdir: Path, events_file: Path) -> None:
    result = _run(
        "score", events_file, "--model", workdir / "no-model", "--output", workdir / "x.csv", "--quiet"
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:")
    assert "no-model" in lines[0]
    assert "Traceback" not in result.stderr
    assert not (workdir / "x.csv").exists()


def test_score_with_a_corrupt_model_fails_before_writing_and_keeps_the_old_output(
    model: Path, workdir: Path, events_file: Path, tmp_path: Path
) -> None:
    broken = Path(shutil.copytree(model, tmp_path / "broken"))
    weights = broken / "weights.npz"
    weights.write_bytes(weights.read_bytes()[:-100])  # its digest no longer matches
    out = tmp_path / "scored.csv"
    out.write_text("yesterday's scores\n", encoding="utf-8")
    result = _run("score", events_file, "--model", broken, "--output", out, "--workers", "2", "--quiet")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:")
    assert "weights.npz" in lines[0]
    assert out.read_text(encoding="utf-8") == "yesterday's scores\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")] == []


def test_a_small_input_is_scored_without_worker_processes(
    model: Path, score_events: list[Event], tmp_path: Path
) -> None:
    from scorer import batch

    source = _write_jsonl(tmp_path / "few.jsonl", score_events[:6])
    out = tmp_path / "few.jsonl.out.jsonl"
    batch._worker.clear()
    stats = batch.score_file(model, source, out, workers=2, progress=False)
    assert "detector" in batch._worker  # set up in this process: no worker was started
    assert stats.lines == stats.scored == 6
    assert [orjson.loads(line)["class_uid"] for line in out.read_bytes().splitlines()] == [
        e["class_uid"] for e in score_events[:6]
    ]


def test_workers_refuse_a_bundle_replaced_after_the_main_process_verified_it(
    bundle_dir: Path,
    other_bundle_dir: Path,
    score_events: list[Event],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The main process verified the bundle, then each worker loaded the directory again: one
    replaced in between (`train --output` onto it) scored every line with the other model under
    the first one's checks. Each worker checks it loaded the version verified."""
    from scorer import batch
    from scorer.detector import Detector

    model = Path(shutil.copytree(bundle_dir, tmp_path / "model"))
    loading = Detector.load

    def load_then_replace(directory: Any) -> Detector:  # in the main process only: workers spawn
        loaded = loading(directory)
        shutil.rmtree(model)
        shutil.copytree(other_bundle_dir, model)
        return loaded

    monkeypatch.setattr(Detector, "load", staticmethod(load_then_replace))
    source = _write_jsonl(tmp_path / "events.jsonl", score_events[:60])
    out = tmp_path / "scored.jsonl"
    with pytest.raises(batch.ScoringError) as refused:
        batch.score_file(model, source, out, workers=2, chunk_lines=20, progress=False)
    first, now = (Detector.load(d).model_info["version"] for d in (bundle_dir, other_bundle_dir))
    assert str(refused.value) == (
        f"the model {model} changed while the file was scored (it was bundle {first}, now bundle {now}): score again"
    )
    assert not out.exists()


def test_the_anomaly_field_setting_names_score_s_verdict_and_report_reads_it(
    model: Path, workdir: Path, score_events: list[Event]
) -> None:
    """OCSF_ANOMALY_ANOMALY_FIELD renamed the verdict of the service and the stream consumer only:
    `score` still wrote `anomaly`, over the event's own field of that name, the very case the
    setting is for, and `report` found no scored event in what they wrote (the consistency review)."""
    events = [{**e, "anomaly": {"theirs": i}} for i, e in enumerate(score_events[:300])]
    source = _write_jsonl(workdir / "own-anomaly.jsonl", events)
    renamed = {**os.environ, "OCSF_ANOMALY_ANOMALY_FIELD": "verdict"}
    out = workdir / "renamed.jsonl"
    _run("score", source, "--model", model, "--output", out, "--quiet", env=renamed, check=True)
    written = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert [e["anomaly"] for e in written] == [e["anomaly"] for e in events]  # theirs, kept
    assert all({"score", "p_value", "is_anomaly"} <= set(e["verdict"]) for e in written)
    plain = workdir / "plain.jsonl"
    _run("score", source, "--model", model, "--output", plain, "--quiet", check=True)
    said = [
        _run("report", scored, "--output", workdir / f"{scored.stem}.html", env=env, check=True).stderr
        for scored, env in ((out, renamed), (plain, None))
    ]
    assert said[0].splitlines()[-1].split(": ", 1)[1] == said[1].splitlines()[-1].split(": ", 1)[1]
    assert re.search(r": \d{4}-\d\d-\d\d, [1-9][\d,]* events, ", said[0]), said[0]  # the latest day's
    refused = _run(
        "score", source, "--model", model, "--output", workdir / "x.jsonl",
        env={**os.environ, "OCSF_ANOMALY_ANOMALY_FIELD": "_raw"},
    )  # fmt: skip
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: OCSF_ANOMALY_ANOMALY_FIELD: '_raw' is where"), refused.stderr
    assert not (workdir / "x.jsonl").exists()


def test_long_lines_are_scored_in_smaller_chunks_and_all_in_order(
    bundle_dir: Path, score_events: list[Event], tmp_path: Path
) -> None:
    """Chunks were 2,048 lines whatever they held: lines of 100 KB held 1.7 GB in the main process
    and 3 GB with its workers (the scale review). A chunk now ends at CHUNK_BYTES too."""
    from scorer import batch

    wide = [{**e, "raw_data": "x" * (batch.CHUNK_BYTES // 6)} for e in score_events[:30]]
    source = _write_jsonl(tmp_path / "wide.jsonl", wide)
    sizes = [len(chunk) for chunk in batch._chunks(source, batch.CHUNK_LINES)]
    assert sizes == [6] * 5
    out = tmp_path / "scored.csv"
    stats = batch.score_file(bundle_dir, source, out, workers=2, progress=False)
    assert stats.lines == stats.scored == 30
    assert [row.split(",")[0] for row in out.read_text().splitlines()[1:]] == [str(i) for i in range(1, 31)]


@pytest.mark.parametrize("name", ["out.txt"])
def test_score_to_an_unknown_extension_is_a_one_line_error(
    model: Path, workdir: Path, events_file: Path, name: str
) -> None:
    result = _run("score", events_file, "--model", model, "--output", workdir / name, "--quiet")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:")
    assert ".csv" in lines[0]
    assert all(taken in lines[0] for taken in (".jsonl", ".ndjson", ".json "))  # every name it takes
    assert not (workdir / name).exists()


def test_score_a_missing_input_is_a_usage_error(workdir: Path) -> None:
    result = _run("score", workdir / "nope.jsonl", "--model", workdir, "--output", workdir / "y.csv")
    assert result.returncode == 2
    assert "no such file" in result.stderr


@pytest.mark.parametrize(
    ("command", "argument"),
    [
        ("score --model {tmp}/m {dir} --output {tmp}/o.csv", "INPUT"),
        ("score --model {tmp}/m {file} --output {tmp}/o.csv --config {dir}", "--config"),
        ("train {dir} --output {tmp}/m", "EVENTS"),
        ("features infer {dir}", "EVENTS"),
        ("evaluate --model {tmp}/m {dir} --labels {file} --train {file}", "EVENTS"),
        ("evaluate --model {tmp}/m {file} --labels {dir} --train {file}", "--labels"),
        ("evaluate --model {tmp}/m {file} --labels {file} --train {dir}", "--train"),
        ("split {dir} --labels {file} --output {tmp}/s", "EVENTS"),
        ("refresh --model {tmp}/m {file} {dir} --output {tmp}/r", "RECENT"),
    ],
    ids=["score", "config", "train", "features", "evaluate", "labels", "train-events", "split", "refresh"],
)
def test_a_directory_given_as_an_input_file_is_refused_by_the_parser(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, argument: str
) -> None:
    """A directory read as a file failed with a bare "error: Is a directory: lake", after the work
    before it (refresh's once the model had loaded); it is refused as a missing file is, and `score`
    says what reads a directory of part files."""
    lake, events = tmp_path / "lake", tmp_path / "events.jsonl"
    lake.mkdir()
    events.write_text("{}\n", encoding="utf-8")
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(command.format(tmp=tmp_path, dir=lake, file=events).split())
    assert exited.value.code == 2
    said = capsys.readouterr().err.strip().splitlines()[-1]
    hint = " (score-spark reads a directory of part files)" if argument == "INPUT" else ""
    assert said.endswith(f"error: argument {argument}: {lake} is a directory: name a file{hint}"), said


def test_score_counts_one_anomaly_and_one_bad_line_in_the_singular(
    model: Path, tmp_path: Path, score_events: list[Event]
) -> None:
    """ "1 anomalies, 1 bad lines"."""
    event = orjson.loads(orjson.dumps(next(e for e in score_events if "bytes_out" in e.get("traffic", {}))))
    event["traffic"]["bytes_out"] = "Infinity"  # an impossible number: flagged whatever the model
    source = tmp_path / "one.jsonl"
    source.write_bytes(orjson.dumps(event) + b"\nnot json\n")
    result = _run("score", "--model", model, source, "--output", tmp_path / "one.csv", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "scored 1 of 2 lines into " in result.stderr
    assert "lines/s): 1 anomaly, 1 bad line\n" in result.stderr, result.stderr


@pytest.mark.parametrize("alpha", ["0", "1", "1.5", "-0.1"])
def test_score_alpha_out_of_range_is_a_usage_error(workdir: Path, events_file: Path, alpha: str) -> None:
    result = _run("score", events_file, "--model", workdir, "--output", workdir / "z.csv", "--alpha", alpha)
    assert result.returncode == 2
    assert "alpha" in result.stderr


# ------------------------------------------------------------------ features infer
def test_features_infer_writes_a_spec_that_loads(workdir: Path) -> None:
    events, _ = generate_events(500, seed=6)
    train_file = _write_jsonl(workdir / "infer.jsonl", events)
    out = workdir / "spec.toml"
    result = _run("features", "infer", train_file, "--output", out)
    assert result.returncode == 0, result.stderr
    spec = load_spec(out)
    assert spec == infer_spec(load_events([train_file], warn=False))
    assert "class_uid" in {f.path for f in spec.features}
    assert ("metadata.uid", "identifier") in spec.excluded
    assert result.stderr.splitlines() == [
        f"reading {train_file}",
        "profiling every field of 500 events",
        f"wrote {out}: {len(spec.features)} features, {len(spec.excluded)} paths left out",
    ]


def test_parquet_events_train_and_score(model: Path, workdir: Path, score_events: list[Event]) -> None:
    """OCSF events in Parquet: nested structs, fields absent from a class filled with nulls by Arrow."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    events = score_events[:300]
    path = workdir / "events.parquet"
    # pa.array infers one struct type over all events (Table.from_pylist would keep the first row's keys)
    pq.write_table(pa.Table.from_struct_array(pa.array(events)), path)
    out = workdir / "parquet.csv"
    result = _run("score", "--model", model, path, "--output", out, "--workers", "1", "--quiet")
    assert result.returncode == 0, result.stderr
    rows = _read_csv(out)
    assert len(rows) == len(events) + 1
    assert [int(r[0]) for r in rows[1:]] == list(range(1, len(events) + 1))
    assert all(r[1] != "" for r in rows[1:])
    # the same events as JSONL score the same: the nulls Arrow adds are dropped, not read as values
    jsonl = _write_jsonl(workdir / "same.jsonl", events)
    out_jsonl = workdir / "same.csv"
    assert (
        _run("score", "--model", model, jsonl, "--output", out_jsonl, "--workers", "1", "--quiet").returncode
        == 0
    )
    assert [r[1] for r in _read_csv(out_jsonl)[1:]] == [r[1] for r in rows[1:]]
    trained = _run(
        "train",
        path,
        "--output",
        workdir / "parquet-model",
        "--epochs",
        "1",
        "--baseline-size",
        "200",
        "--quiet",
    )
    assert trained.returncode == 0, trained.stderr
    assert (workdir / "parquet-model" / "metadata.json").is_file()


def _score_parquet(model: Path, stem: Path, table: Any, columns: dict[str, Any]) -> tuple[Path, list[Event]]:
    """``table`` with ``columns`` set or added, written to STEM.parquet and scored to STEM.jsonl."""
    import pyarrow.parquet as pq

    for name, column in columns.items():
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name, column)
        else:
            table = table.append_column(name, column)
    path, out = stem.with_suffix(".parquet"), stem.with_suffix(".jsonl")
    pq.write_table(table, path)
    result = _run("score", "--model", model, path, "--output", out, "--workers", "1", "--quiet")
    assert result.returncode == 0, result.stderr
    return path, [json.loads(line) for line in out.read_text().splitlines()]


def test_parquet_columns_of_types_json_lacks_are_read_as_json_would_hold_them(
    model: Path, workdir: Path, score_events: list[Event]
) -> None:
    """A timestamp, a decimal, binary, a date and a duration column: `score` stopped with a
    traceback on the decimal, and read a timestamp `time` as absent. Now each is what an OCSF
    producer writes in JSON, and a timestamp `time` scores as its epoch milliseconds do."""
    import pyarrow as pa

    events = [e for e in score_events if isinstance(e.get("time"), int)][:50]
    table = pa.Table.from_struct_array(pa.array(events))
    moments = [dt.datetime.fromtimestamp(e["time"] / 1000, dt.UTC) for e in events]
    odd = {
        "time": pa.array(moments, pa.timestamp("ms", tz="UTC")),
        "amount": pa.array([decimal.Decimal("12.50"), *[decimal.Decimal(7)] * 49], pa.decimal128(10, 2)),
        "blob": pa.array([b"\x00\xff"] * 50, pa.binary()),
        "day": pa.array([dt.date(2026, 12, 4)] * 50, pa.date32()),
        "wait": pa.array([dt.timedelta(seconds=1.5)] * 50, pa.duration("ms")),
        # a timestamp kept in another zone is the same instant, written in UTC (the mutation review)
        "seen": pa.array(moments, pa.timestamp("ms", tz="America/New_York")),
    }
    _, scored = _score_parquet(model, workdir / "odd", table, odd)
    assert len(scored) == len(events)
    first = scored[0]
    assert first["time"] == first["seen"] == moments[0].isoformat().replace("+00:00", "Z")
    assert (first["amount"], scored[1]["amount"]) == (12.5, 7)
    assert (first["blob"], first["day"], first["wait"]) == ("AP8=", "2026-12-04", 1500)
    # the same events as JSONL, time in epoch milliseconds: the same scores
    twins = [
        {**{k: v for k, v in row.items() if k != "anomaly"}, "time": event["time"]}
        for row, event in zip(scored, events, strict=True)
    ]
    twin_out = workdir / "odd-twins.jsonl"
    twin_in = _write_jsonl(workdir / "odd-twins-in.jsonl", twins)
    assert _run("score", "--model", model, twin_in, "--output", twin_out, "--workers", "1").returncode == 0
    rescored = [json.loads(line)["anomaly"]["score"] for line in twin_out.read_text().splitlines()]
    assert rescored == [row["anomaly"]["score"] for row in scored]


def test_parquet_values_python_cannot_hold_spoil_no_more_than_themselves(
    model: Path, workdir: Path, score_events: list[Event], capsys: pytest.CaptureFixture[str]
) -> None:
    """A timestamp or date past year 9,999 and a duration past 999,999,999 days: pyarrow's
    to_pylist raised OverflowError for the whole file, a traceback in score, train and report. Now
    each such value is its epoch milliseconds (whole milliseconds for the duration), its neighbours
    in the same row and struct are read as before, and the row scores as its JSON twin does."""
    import pyarrow as pa

    events = [e for e in score_events if isinstance(e.get("time"), int)][:50]
    far = 300_000_000_000_000  # epoch milliseconds in the year 11476
    table = pa.Table.from_struct_array(pa.array(events))
    ms = [far, *(e["time"] for e in events[1:])]
    columns = {
        "time": pa.array(ms, pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
        "day": pa.array([3_000_000, *[20_000] * 49], pa.int32()).cast(pa.date32()),
        "wait": pa.array([2**62, *[2] * 49], pa.int64()).cast(pa.duration("s")),
        "window": pa.StructArray.from_arrays(
            [
                pa.array(ms).cast(pa.timestamp("ms")),
                pa.array([e["time"] for e in events]).cast(pa.timestamp("ms")),
            ],
            names=["start", "end"],
        ),
        "amount": pa.array([decimal.Decimal(10**75)] * 50, pa.decimal256(76, 0)),  # beyond 64 bits
    }
    path, scored = _score_parquet(model, workdir / "far", table, columns)
    first, second = scored[0], scored[1]
    assert (first["time"], first["day"], first["wait"]) == (far, 3_000_000 * 86_400_000, 2**62 * 1000)
    iso = [
        dt.datetime.fromtimestamp(e["time"] / 1000, dt.UTC).isoformat().replace("+00:00", "Z") for e in events
    ]
    assert first["window"] == {"start": far, "end": iso[0]}  # the struct's other timestamp as before
    assert second["time"] == iso[1]
    assert (second["day"], second["wait"]) == ("2024-10-04", 2000)
    assert first["amount"] == 10**75
    twins = [{k: v for k, v in row.items() if k != "anomaly"} for row in scored]
    twin_out = workdir / "far-twins.jsonl"
    twin_in = workdir / "far-twins-in.jsonl"
    twin_in.write_text("".join(json.dumps(twin) + "\n" for twin in twins))  # orjson writes no 10**75
    code, said = _in_process(
        capsys, "score", "--model", model, twin_in, "--output", twin_out, "--workers", "1"
    )
    assert code == 0, said
    rescored = [json.loads(line)["anomaly"]["score"] for line in twin_out.read_text().splitlines()]
    assert rescored == [row["anomaly"]["score"] for row in scored]

    far_model = workdir / "far-model"
    code, said = _in_process(
        capsys, "train", path, "--output", far_model, "--epochs", "1", "--baseline-size", "30"
    )
    assert code == 0, said
    code, said = _in_process(capsys, "report", path, "--output", workdir / "far.html")  # read, none scored
    assert code == 2, said
    assert "error: no scored event with a time: 49 events carry no score" in said


def test_a_parquet_nan_or_infinity_is_flagged_as_its_json_twin_is(
    model: Path, workdir: Path, score_events: list[Event]
) -> None:
    """A NaN in a Parquet float column was read as a float NaN, which the encoder takes for a
    dataframe's "missing": an impossible byte count passed as normal. JSON has no NaN (orjson
    refuses a bare one), so its twin holds the text "NaN", which the encoder flags; ±inf was flagged
    but written back as null. Now the Parquet row is its JSON twin: flagged, and written as text."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    events, twins = (
        orjson.loads(orjson.dumps(score_events[:60])),
        orjson.loads(orjson.dumps(score_events[:60])),
    )
    network = [i for i, e in enumerate(events) if "bytes_out" in e.get("traffic", {})][:3]
    odd = [(math.nan, "NaN"), (math.inf, "Infinity"), (-math.inf, "-Infinity")]
    for i, (number, text) in zip(network, odd, strict=True):
        events[i]["traffic"]["bytes_out"], twins[i]["traffic"]["bytes_out"] = number, text
    path = workdir / "nan.parquet"
    pq.write_table(pa.Table.from_struct_array(pa.array(events)), path)
    twin_in = _write_jsonl(workdir / "nan-twins.jsonl", twins)
    scored = {}
    for name, source in (("parquet", path), ("json", twin_in)):
        out = workdir / f"nan-{name}.out.jsonl"
        result = _run("score", "--model", model, source, "--output", out, "--workers", "1", "--quiet")
        assert result.returncode == 0, result.stderr
        scored[name] = [json.loads(line) for line in out.read_text().splitlines()]
    for i in network:
        row, twin = scored["parquet"][i], scored["json"][i]
        assert row["traffic"]["bytes_out"] == twin["traffic"]["bytes_out"]  # the text, not null
        assert row["anomaly"]["is_anomaly"]
        assert row["anomaly"]["p_value"] == 0.0
        assert row["anomaly"]["reasons"][0]["field"] == "traffic.bytes_out"
    assert [r["anomaly"]["score"] for r in scored["parquet"]] == pytest.approx(
        [r["anomaly"]["score"] for r in scored["json"]], rel=1e-6
    )


def test_an_input_that_cannot_be_read_is_named(
    model: Path,
    workdir: Path,
    score_events: list[Event],
    events_file: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A file named .parquet that is not Parquet, or whose second row group is damaged, ended in
    pyarrow's message alone ("Parquet magic bytes not found in footer", "Corrupt snappy compressed
    data"), and a labels file that is not UTF-8 in the codec's: which of the files was it? Now every
    such error names the file, in one line, in score, train, evaluate and features infer."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    not_parquet = workdir / "not.parquet"
    not_parquet.write_bytes(orjson.dumps(score_events[0]) + b"\n")
    damaged = workdir / "damaged.parquet"
    pq.write_table(pa.Table.from_struct_array(pa.array(score_events)), damaged, row_group_size=50)
    second = pq.ParquetFile(damaged).metadata.row_group(1)
    chunks = [second.column(i) for i in range(second.num_columns)]
    start = min(c.data_page_offset for c in chunks)
    end = max(c.data_page_offset + c.total_compressed_size for c in chunks)
    data = bytearray(damaged.read_bytes())
    data[start:end] = b"\x00" * (end - start)
    damaged.write_bytes(bytes(data))
    labels = workdir / "some-events.labels.csv"
    labels.write_text("line,label\n" + "".join(f"{n},0\n" for n in range(1, len(score_events) + 1)))
    latin = workdir / "latin.labels.csv"
    latin.write_bytes(b"line,label,attack\n1,0,caf\xe9\n")
    for source, message in [
        (not_parquet, f"error: {not_parquet} cannot be read as Parquet (Parquet magic bytes not found"),
        (damaged, f"error: {damaged} cannot be read as Parquet ("),  # pyarrow read both groups at once
    ]:
        out = workdir / f"{source.stem}.scored.jsonl"
        for command in (
            ["score", source, "--model", model, "--output", out, "--workers", "1", "--quiet"],
            ["train", source, "--output", workdir / f"{source.stem}-model", "--quiet"],
            ["evaluate", source, "--model", model, "--labels", labels, "--train", events_file],
            ["evaluate", events_file, "--model", model, "--labels", labels, "--train", source],
            ["features", "infer", source],
        ):
            code, said = _in_process(capsys, *command)
            assert code == 2, (command, said)
            assert said.strip().splitlines()[-1].startswith(message), (command, said)
        assert not out.exists()
    code, said = _in_process(
        capsys, "evaluate", events_file, "--model", model, "--labels", latin, "--train", events_file
    )
    assert code == 2, said
    assert said.strip().splitlines()[-1].startswith(f"error: {latin}: not UTF-8 text: ")


def test_config_show_masks_secrets(tmp_path: Path) -> None:
    settings_file = tmp_path / "settings.toml"
    settings_file.write_text('port = 9191\nadmin_token = "from-file"\n', encoding="utf-8")
    env = {
        **os.environ,
        "OCSF_ANOMALY_API_TOKEN": "very-secret",
        "REDIS_URL": "redis://user:pa55@cache.internal:6380/0",
        "MLFLOW_TRACKING_URI": "https://ml:t0ken@mlflow.internal",
        "OCSF_ANOMALY_ALPHA": "0.05",
    }
    env.pop("OCSF_ANOMALY_REDIS_URL", None)
    env.pop("OCSF_ANOMALY_REGISTRY_URI", None)
    result = _run("config", "show", "--config", settings_file, env=env)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["port"] == 9191  # from the file
    assert shown["alpha"] == 0.05  # from the environment
    assert shown["api_token"] == "***"
    assert shown["admin_token"] == "***"
    assert shown["redis_url"] == "redis://***@cache.internal:6380/0"  # REDIS_URL, password hidden
    assert "very-secret" not in result.stdout
    assert shown["registry_uri"] == "https://***@mlflow.internal"  # MLFLOW_TRACKING_URI, hidden too
    assert shown["model_name"] == "ocsf-anomaly-demo"
    assert shown["model_dir"] is None  # the registry serves unless a directory is named
    assert "pa55" not in result.stdout
    assert "t0ken" not in result.stdout
    assert "from-file" not in result.stdout


def test_config_show_hides_what_a_receiver_keeps_in_its_path_and_query(tmp_path: Path) -> None:
    """A Slack webhook's secret is its path, other receivers take ?token=: `config show` printed
    them whole (only a user and password were masked), and alerts_generator_url not even those."""
    env = {
        **os.environ,
        "OCSF_ANOMALY_ALERTS_URL": "https://hooks.slack.com/services/T000/B000/s3cretPATH",
        "OCSF_ANOMALY_ALERTS_KIND": "webhook",
        "OCSF_ANOMALY_VECTOR_DOWNSTREAM_URL": "http://v:pw1@127.0.0.1:8687/v1/enriched?token=s3cretQUERY",
        "OCSF_ANOMALY_ALERTS_GENERATOR_URL": "http://user:pw2@grafana.internal/d/x",
    }
    result = _run("config", "show", env=env)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["alerts_url"] == "https://hooks.slack.com/…"
    assert shown["vector_downstream_url"] == "http://***@127.0.0.1:8687/v1/enriched?…"
    assert shown["alerts_generator_url"] == "http://***@grafana.internal/d/x"
    for secret in ("s3cretPATH", "s3cretQUERY", "pw1", "pw2"):
        assert secret not in result.stdout


def test_a_misspelt_variable_is_said_with_the_setting_it_is_closest_to(tmp_path: Path) -> None:
    """OCSF_ANOMALY_WORKER=3 was ignored without a word (a misspelt key in the file is refused)."""
    env = {
        **os.environ,
        "OCSF_ANOMALY_WORKER": "3",
        "OCSF_ANOMALY_HOME": str(tmp_path),
        "OCSF_ANOMALY_OPENSEARCH_AUTH": "admin:pass",  # as integrations/opensearch/README.md exports it
    }
    result = _run("config", "show", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "warning: OCSF_ANOMALY_WORKER is no setting: ignored (did you mean OCSF_ANOMALY_WORKERS?)"
    ]  # and OCSF_ANOMALY_HOME or _OPENSEARCH_AUTH, no setting but read all the same, are not named


def test_the_settings_file_takes_the_settings_names_not_the_variables(tmp_path: Path) -> None:
    """REDIS_URL in the file (a variable's name, which the setting takes from the environment) was
    taken, and beat OCSF_ANOMALY_REDIS_URL from the environment: the file over the environment."""
    settings_file = tmp_path / "settings.toml"
    settings_file.write_text('REDIS_URL = "redis://from-file:1/0"\n', encoding="utf-8")
    env = {**os.environ, "OCSF_ANOMALY_REDIS_URL": "redis://from-env:3/0"}
    result = _run("config", "show", "--config", settings_file, env=env)
    assert result.returncode == 2, result.stdout
    assert result.stderr.strip() == (
        f"error: {settings_file}: 'REDIS_URL': no such setting (did you mean redis_url?); the file "
        "takes the names `ocsf-anomaly config show` prints"
    )


def test_invalid_settings_are_a_one_line_error(tmp_path: Path) -> None:
    env = {**os.environ, "OCSF_ANOMALY_PORT": "99999"}
    result = _run("config", "show", env=env)
    assert result.returncode == 2
    assert result.stderr.startswith("error: invalid settings: port")
    assert "Traceback" not in result.stderr


def test_a_challenger_directory_needs_a_champion_directory(tmp_path: Path) -> None:
    env = {**os.environ, "OCSF_ANOMALY_CHALLENGER_MODEL_DIR": str(tmp_path)}
    env.pop("OCSF_ANOMALY_MODEL_DIR", None)
    result = _run("config", "show", env=env)
    assert result.returncode == 2
    assert "challenger_model_dir needs model_dir" in result.stderr
    assert "models promote VERSION --alias challenger" in result.stderr


# ------------------------------------------------------------------ split, evaluate
@dataclass(frozen=True)
class Labelled:
    events: Path
    labels: Path
    uids: list[str]  # metadata.uid of each line
    attack: list[int]  # 1 for an injected anomaly, per line
    kinds: list[str]  # the labels file's attack column: the anomaly's kind, or normal


@pytest.fixture(scope="module")
def labelled(workdir: Path) -> Labelled:
    """600 demo events, a tenth of them injected anomalies, with a labels file as `demo` writes one."""
    events, kinds = generate_events(600, seed=8, anomaly_rate=0.1)
    attack = [int(kind != "normal") for kind in kinds]
    labels = workdir / "labelled.labels.csv"
    rows = "".join(
        f"{line},{a},{kind}\n" for line, (a, kind) in enumerate(zip(attack, kinds, strict=True), 1)
    )
    labels.write_text("line,label,attack\n" + rows, encoding="utf-8")
    uids = [e["metadata"]["uid"] for e in events]
    return Labelled(_write_jsonl(workdir / "labelled.jsonl", events), labels, uids, attack, kinds)


def _split(labelled: Labelled, output: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return _run("split", labelled.events, "--labels", labelled.labels, "--output", output, *options)


def _uids(path: Path) -> list[str]:
    return [e["metadata"]["uid"] for e in load_events([path], warn=False)]


@pytest.fixture(scope="module")
def split_dir(labelled: Labelled, workdir: Path) -> Path:
    result = _split(labelled, workdir / "split")
    assert result.returncode == 0, result.stderr
    for name in ("train_normal.jsonl.gz", "test.jsonl.gz", "test.labels.csv"):
        assert str(workdir / "split" / name) in result.stderr
    train, test = (
        _uids(workdir / "split" / "train_normal.jsonl.gz"),
        _uids(workdir / "split" / "test.jsonl.gz"),
    )
    attacks = sum(dict(zip(labelled.uids, labelled.attack, strict=True))[uid] for uid in test)
    said = f"{len(train):,} normal events to train on; {len(test):,} to test, {attacks:,} of them attacks"
    assert said in result.stderr
    return workdir / "split"


def test_split_puts_normal_lines_of_one_side_to_train_and_the_other_side_to_test(
    labelled: Labelled, split_dir: Path
) -> None:
    label_of = dict(zip(labelled.uids, labelled.attack, strict=True))
    train, test = _uids(split_dir / "train_normal.jsonl.gz"), _uids(split_dir / "test.jsonl.gz")
    assert len(test) == 300  # --fraction 0.5 of 600 lines
    assert not set(train) & set(test)
    assert all(label_of[uid] == 0 for uid in train)
    # every normal line is on one side, every attack on the test side (else on side A, dropped)
    assert sorted(train + [u for u in test if label_of[u] == 0]) == sorted(
        u for u in labelled.uids if label_of[u] == 0
    )
    assert test == [u for u in labelled.uids if u in set(test)]  # in file order
    rows = _read_csv(split_dir / "test.labels.csv")
    assert rows[0] == ["line", "label", "attack"]  # the attack types go along, for evaluate
    kind_of = dict(zip(labelled.uids, labelled.kinds, strict=True))
    assert rows[1:] == [
        [str(line), str(label_of[uid]), kind_of[uid]] for line, uid in enumerate(test, start=1)
    ]
    # seeded: another seed draws other lines
    again = _split(labelled, split_dir.parent / "split-seed-1", "--seed", "1")
    assert again.returncode == 0, again.stderr
    assert _uids(split_dir.parent / "split-seed-1" / "test.jsonl.gz") != test


def test_split_ordered_trains_on_the_first_lines_and_tests_on_the_rest(
    labelled: Labelled, workdir: Path
) -> None:
    result = _split(labelled, workdir / "ordered", "--ordered", "--fraction", "0.75")
    assert result.returncode == 0, result.stderr
    first, rest = labelled.uids[:450], labelled.uids[450:]
    normal = dict(zip(labelled.uids, labelled.attack, strict=True))
    assert _uids(workdir / "ordered" / "train_normal.jsonl.gz") == [u for u in first if normal[u] == 0]
    assert _uids(workdir / "ordered" / "test.jsonl.gz") == rest


def test_split_reads_a_pipe_as_it_reads_the_file(labelled: Labelled, workdir: Path) -> None:
    """split reads a file twice now, not holding its lines (the scale review); a pipe (bash's <(…))
    reads once, so its lines are held: the same split either way."""
    fifo = workdir / "events.fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(labelled.events.read_bytes()))
    writer.start()
    try:
        piped = _run("split", fifo, "--labels", labelled.labels, "--output", workdir / "piped", "--seed", "3")
    finally:
        writer.join(60)
    assert piped.returncode == 0, piped.stderr
    assert _split(labelled, workdir / "filed", "--seed", "3").returncode == 0
    for name in ("train_normal.jsonl.gz", "test.jsonl.gz"):
        assert _uids(workdir / "piped" / name) == _uids(workdir / "filed" / name)
    assert (workdir / "piped" / "test.labels.csv").read_text() == (
        workdir / "filed" / "test.labels.csv"
    ).read_text()


def test_evaluate_says_when_events_hold_none_of_the_model_s_fields(
    model: Path, split_dir: Path, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Events of another kind are flagged whatever they hold: score, train and refresh say so, and evaluate printed
    its table of 0.5s without a word, for the events or for the baselines' --train events."""
    other = _write_jsonl(workdir / "other-kind.jsonl", [{"reading": i} for i in range(40)])
    labels = workdir / "other-kind.labels.csv"
    labels.write_text("line,label\n" + "".join(f"{i},{i % 2}\n" for i in range(1, 41)), encoding="utf-8")
    test, test_labels, train = (
        split_dir / "test.jsonl.gz",
        split_dir / "test.labels.csv",
        split_dir / "train_normal.jsonl.gz",
    )
    code, said = _in_process(
        capsys, "evaluate", other, "--model", model, "--labels", labels, "--train", train
    )
    assert code == 0, said
    assert "warning: none of the 40 events to evaluate holds any of the model's " in said, said
    assert "they are not the kind of events the model describes; each is flagged, and ranked first" in said
    code, said = _in_process(
        capsys, "evaluate", test, "--model", model, "--labels", test_labels, "--train", other
    )
    assert code == 0, said
    assert "warning: none of the 40 --train events holds any of the model's " in said, said
    assert "; the baselines fitted on them describe other events" in said
    code, said = _in_process(
        capsys, "evaluate", test, "--model", model, "--labels", test_labels, "--train", train
    )
    assert code == 0, said
    assert "hold none of the model's fields" not in said
    assert "holds any of the model's" not in said


def test_evaluate_scores_a_stream_in_chunks_as_it_scores_the_events_held_at_once(
    model: Path, split_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """evaluate held every event as an object (6.85 GB a million: the scale review). It reads the
    events as a stream, CHUNK_EVENTS at a time, and its figures are those of the events held and
    scored in one batch, to the last digit."""
    from scorer import evaluate as evaluation
    from scorer.evaluate import evaluate, load_labelled, load_train_normals

    test = load_labelled(split_dir / "test.jsonl.gz", split_dir / "test.labels.csv")
    train, _ = load_train_normals(split_dir / "train_normal.jsonl.gz", None, 10_000)
    detector = Detector.load(model)

    def report(events: Any) -> dict[str, Any]:
        return evaluate(detector, events, test.labels, train, alpha=0.05, attack_types=test.attack_types)

    whole = report(test.events)  # 300 events: one chunk
    monkeypatch.setattr(evaluation, "CHUNK_EVENTS", 7)
    streamed = report(iter(test.events))  # 43 chunks, read once
    assert json.dumps(streamed, sort_keys=True) == json.dumps(whole, sort_keys=True)
    assert whole["fusion (default)"]["roc_auc"] > 0.75
    with pytest.raises(ValueError, match="299 events for 300 labels: they must pair one for one"):
        report(iter(test.events[1:]))


def test_evaluate_reads_events_from_a_pipe_and_samples_a_large_train_file(
    model: Path,
    split_dir: Path,
    workdir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The events are read twice (their labels checked first, then scored); a pipe (bash's <(…))
    reads once, so its lines are held: the same report either way. Of more normal --train events
    than TRAIN_EVENTS_MOST the baselines fit on a seeded sample, as train's model does, and it is said."""
    from scorer import io

    test, labels, train = (
        split_dir / "test.jsonl.gz",
        split_dir / "test.labels.csv",
        split_dir / "train_normal.jsonl.gz",
    )
    options = ["--model", model, "--labels", labels, "--train", train, "--json"]
    code, filed, said = _in_process_out(capsys, "evaluate", test, *options)
    assert code == 0, said
    fifo = workdir / "evaluate.fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(gzip.decompress(test.read_bytes())))
    writer.start()
    try:
        code, piped, said = _in_process_out(capsys, "evaluate", fifo, *options)
    finally:
        writer.join(60)
    assert code == 0, said
    assert json.loads(piped) == json.loads(filed) != {}
    monkeypatch.setattr(io, "TRAIN_EVENTS_MOST", 100)
    code, said = _in_process(capsys, "evaluate", test, *options)
    assert code == 0, said
    normal = len(gzip.decompress(train.read_bytes()).splitlines())
    assert (
        f"read {normal:,} normal events of --train: the baselines fit on a uniform sample of 100 of them (seed 0)"
        in said
    )
    assert "baselines fit on 100 normal events" in said


def test_evaluate_draws_its_progress_bar_only_on_a_terminal(
    model: Path, split_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """evaluate scores for minutes on a large file, and said nothing meanwhile: a bar, as `score`
    draws one, on a terminal only (not into a log of `2>file`), and none with --quiet."""
    import io

    from scorer.evaluate import evaluate, load_labelled

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    test = load_labelled(split_dir / "test.jsonl.gz", split_dir / "test.labels.csv")
    detector = Detector.load(model)
    for stderr, progress, drawn in [
        (io.StringIO(), True, False),
        (Terminal(), True, True),
        (Terminal(), False, False),  # --quiet
    ]:
        monkeypatch.setattr(sys, "stderr", stderr)
        evaluate(detector, test.events, test.labels, [], baselines=False, progress=progress)
        monkeypatch.undo()
        assert ("evaluating: " in stderr.getvalue()) is drawn, stderr.getvalue()
    files = [split_dir / name for name in ("test.jsonl.gz", "test.labels.csv", "train_normal.jsonl.gz")]
    argv = ["evaluate", files[0], "--model", "m", "--labels", files[1], "--train", files[2], "--quiet"]
    assert build_parser().parse_args([str(arg) for arg in argv]).quiet


def test_evaluate_refuses_events_that_changed_after_their_labels_were_checked(
    split_dir: Path, workdir: Path
) -> None:
    """evaluate reads EVENTS twice (the review): a file replaced between the reads paired every
    label with another event, and its report was wrong without a word. A changed file is refused,
    whether it was replaced or rewritten in place with its size and time kept."""
    from scorer.evaluate import read_labelled

    lines = gzip.decompress((split_dir / "test.jsonl.gz").read_bytes()).splitlines(keepends=True)
    labels = split_dir / "test.labels.csv"
    events = workdir / "changing.jsonl"
    events.write_bytes(b"".join(lines))
    labelled = read_labelled(events, labels)
    assert len(list(labelled.events())) == len(lines)  # unchanged: read again as often as asked
    replaced = workdir / "changing.new"
    replaced.write_bytes(b"".join(lines[1:] + lines[:1]))  # the lines rotated by one
    replaced.rename(events)
    with pytest.raises(ValueError, match="changed after its labels were checked"):
        next(labelled.events())
    labelled = read_labelled(events, labels)
    status = events.stat()
    with events.open("r+b") as handle:  # the first line no event now, the same bytes in number
        handle.write(b"x" * (len(lines[1]) - 1))
    os.utime(events, ns=(status.st_atime_ns, status.st_mtime_ns))
    with pytest.raises(ValueError, match="changed after its labels were checked"):
        list(labelled.events())


def test_evaluate_says_events_of_another_kind_in_its_first_chunk_at_once(
    model: Path, split_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scored as a stream, the events that hold none of the model's fields were counted once all
    were scored: on a large file, after the whole run. The first chunk's are said when it is
    scored, as `score` says those it reads first, and the whole count at the end."""
    from scorer import evaluate as evaluation
    from scorer.evaluate import evaluate, load_labelled

    test = load_labelled(split_dir / "test.jsonl.gz", split_dir / "test.labels.csv")
    events = [{"reading": 1}, *test.events[1:]]
    said: list[str] = []
    monkeypatch.setattr(evaluation, "CHUNK_EVENTS", 7)
    evaluate(Detector.load(model), events, test.labels, [], baselines=False, log=said.append)
    warnings = [line for line in said if line.startswith("warning: ")]
    assert warnings == [
        "warning: 1 of the 7 events read first hold none of the model's fields; each is flagged, and "
        "ranked first under every score kind",
        "warning: 1 of the 300 events to evaluate hold none of the model's fields; each is flagged, and "
        "ranked first under every score kind",
    ]
    assert said.index(warnings[0]) < said.index(warnings[1])


def test_split_of_an_empty_pipe_is_refused_not_waited_on(workdir: Path, labelled: Labelled) -> None:
    """A pipe's lines are held, as it reads once; an empty pipe held none, and split opened it
    again to read them, waiting for a writer that had come and gone: it hung for good."""
    fifo = workdir / "empty.fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(b""))
    writer.start()
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "scorer.cli",
                "split",
                str(fifo),
                "--labels",
                str(labelled.labels),
                "--output",
                str(workdir / "from-empty"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        writer.join(60)
    assert result.returncode == 2, result.stderr
    assert "error: " in result.stderr


def test_evaluate_reports_every_score_kind_beside_the_baselines(model: Path, split_dir: Path) -> None:
    result = _run(
        "evaluate",
        split_dir / "test.jsonl.gz",
        "--model",
        model,
        "--labels",
        split_dir / "test.labels.csv",
        "--train",
        split_dir / "train_normal.jsonl.gz",
        "--alpha",
        "0.05",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    attacks = sum(int(row[1]) for row in _read_csv(split_dir / "test.labels.csv")[1:])
    assert f"evaluating on 300 events ({attacks} attacks)" in result.stderr
    for step in (f"loading {model}", "scoring 300 events with the model", "fitting raw-feature k-NN"):
        assert step in result.stderr, step
    report = json.loads(result.stdout)
    assert list(report) == ["embedding", "features", "fusion (default)", "raw-knn", "isolation-forest"]
    for name, row in report.items():
        assert (row["n"], row["n_attack"]) == (300, attacks), name
        for figure in ("fpr", "recall", "recall_at_raw_fpr", "roc_auc", "pr_auc"):
            assert 0 <= row[figure] <= 1, (name, figure)
        for figure in ("roc_auc", "recall", "fpr"):  # 95% intervals, around what was measured
            assert 0 <= row[f"{figure}_low"] <= row[figure] <= row[f"{figure}_high"] <= 1, (name, figure)
        if name != "raw-knn":  # paired on the same events: how sure "above raw k-NN" is
            difference = row["roc_auc"] - report["raw-knn"]["roc_auc"]
            assert row["roc_auc_vs_raw_knn"] == pytest.approx(difference, abs=1e-9), name
            assert row["roc_auc_vs_raw_knn_low"] <= difference <= row["roc_auc_vs_raw_knn_high"], name
    assert "roc_auc_vs_raw_knn" not in report["raw-knn"]
    # by attack type (the split kept the labels' attack column): the types add up to the attacks
    kinds = [row[2] for row in _read_csv(split_dir / "test.labels.csv")[1:] if row[1] == "1"]
    for name, row in report.items():
        by_type = row["by_attack"]
        assert {kind: m["n"] for kind, m in by_type.items()} == {k: kinds.count(k) for k in set(kinds)}, name
        assert list(by_type) == sorted(by_type, key=lambda k: (-kinds.count(k), k))  # most frequent first
        found = sum(m["n"] * m["recall"] for m in by_type.values())
        assert found == pytest.approx(row["recall"] * attacks), name
        assert all(0 <= m["roc_auc"] <= 1 and 0 <= m["recall_at_raw_fpr"] <= 1 for m in by_type.values())
    assert report["fusion (default)"]["roc_auc"] > 0.75  # measured 0.90: anomalies rank above normal events
    from scorer.evaluate import format_report

    text = format_report(report, 0.05).splitlines()
    at = text.index(next(line for line in text if line.startswith("95% intervals")))
    fusion = next(line for line in text[at:] if line.startswith("fusion (default)")).split()
    row = report["fusion (default)"]
    assert fusion[2] == f"{row['roc_auc_low']:.4f}–{row['roc_auc_high']:.4f}"
    assert fusion[3] == f"{row['roc_auc_vs_raw_knn']:+.4f}"
    at = text.index("by attack type (its attacks against every normal event): fusion (default)")
    first = next(iter(row["by_attack"]))
    assert text[at + 3].split()[:2] == [first, f"{row['by_attack'][first]['n']:,}"]


@pytest.mark.parametrize(
    ("rows", "unlabelled", "stray"), [(1200, 0, 600), (300, 300, 0)], ids=["more", "fewer"]
)
def test_evaluate_refuses_labels_that_do_not_match_the_events(
    model: Path, labelled: Labelled, tmp_path: Path, rows: int, unlabelled: int, stray: int
) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "line,label\n" + "".join(f"{line},0\n" for line in range(1, rows + 1)), encoding="utf-8"
    )
    result = _run(
        "evaluate", labelled.events, "--model", model, "--labels", labels, "--train", labelled.events
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip().splitlines()[:-1] == [
        f"loading {model}",
        f"reading {labelled.events} and {labels}",
    ]  # no further
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith(f"error: {labels} does not label the 600 lines of {labelled.events}")
    assert error.endswith(
        f"{unlabelled} lines have no label"
        + (" (the first, line 301)" if unlabelled else "")
        + f", {stray} labels name no line"
        + (" (the first, line 601)" if stray else "")
    )


def test_evaluate_refuses_a_model_it_cannot_load_before_reading_the_events(
    model: Path, labelled: Labelled, tmp_path: Path
) -> None:
    """The model is loaded first, as `score` loads it: a bundle that cannot be loaded (an older
    format, an altered file) was refused only once the events, their labels and --train had been
    read (the upgrade review)."""
    altered = altered_bundle(model, tmp_path / "altered")
    result = _run(
        "evaluate",
        labelled.events,
        "--model",
        altered,
        "--labels",
        labelled.labels,
        "--train",
        labelled.events,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[0] == f"loading {altered}"
    assert "reading" not in result.stderr
    assert "weights.npz" in result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "line,label\n1,yes\n",
            "labels.csv:2: expected a line number and a label of 0 (normal) or 1 (attack)",
        ),
        ("line,label\nx,1\n", "labels.csv:2: expected a line number"),
        ("line,label\n1,2\n", "labels.csv:2: a label is 0 (normal) or 1 (attack), got 2"),
        ("line,label\n1,1\n1,0\n", "labels.csv:3: line 1 is labelled twice"),
        # named only as "1 lines have no label, 1 labels name no line" (the review)
        ("line,label\n1,1\n0,0\n", "labels.csv:3: lines are numbered from 1, got line 0"),
        ("line,label\n-200,1\n", "labels.csv:2: lines are numbered from 1, got line -200"),
        ("line;label\n1;1\n", "expected a header with 'line' and 'label' columns"),
    ],
)
def test_labels_say_which_row_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    """A label that is not 0 or 1 said "invalid literal for int()"; a line labelled twice, only
    that some line had no label. A spreadsheet's byte-order mark is read as such."""
    from scorer.evaluate import read_labels_and_types

    labels = tmp_path / "labels.csv"
    labels.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(message)):
        read_labels_and_types(labels)
    labels.write_text("line,label,attack\n1,1,neptune\n2,0,normal\n3,1, \n", encoding="utf-8-sig")
    assert read_labels_and_types(labels)[0] == {1: 1, 2: 0, 3: 1}

    # the attack column, where the file gives it; an attack it leaves blank is named so
    assert read_labels_and_types(labels)[1] == {1: "neptune", 2: "normal", 3: "unnamed"}
    labels.write_text("line,label\n1,1\n", encoding="utf-8")
    assert read_labels_and_types(labels) == ({1: 1}, None)


def test_figures_by_attack_type_are_those_of_each_type_s_attacks_against_every_normal_event() -> None:
    """One sort serves every type (1 M events and 40 types took 15 s a row as a report per type):
    the figures are still each type's own report, ties, unscored events and a row that cannot flag
    included."""
    from scorer.evaluate import _by_attack
    from scorer.metrics import detection_report, recall_at_fpr

    rng = np.random.default_rng(2)
    labels = (rng.random(3_000) < 0.3).astype(np.int64)
    lifted = labels * (rng.random(3_000) < 0.5)  # the other attacks tie with normal events: a half each
    scores = rng.integers(0, 40, 3_000).astype(np.float64) + 8 * lifted * rng.random(3_000)
    scores[rng.random(3_000) < 0.02] = np.nan  # not scored: left out
    flagged = scores > 30
    types = [f"kind {k}" if y else "" for k, y in zip(rng.integers(0, 7, 3_000), labels, strict=True)]
    figures = _by_attack(labels, scores, flagged, types, 0.05, unflagging=False)
    kinds = np.asarray(types)
    for kind, m in figures.items():
        rows = (labels == 0) | (kinds == kind)
        report = detection_report(labels[rows], scores[rows], flagged[rows])
        assert m["n"] == report["n_attack"]
        assert m["roc_auc"] == pytest.approx(report["roc_auc"], abs=1e-12)
        assert m["recall"] == pytest.approx(report["recall"], abs=1e-12)
        assert m["recall_at_raw_fpr"] == pytest.approx(
            recall_at_fpr(labels[rows], scores[rows], 0.05), abs=1e-12
        )
    assert [m["n"] for m in figures.values()] == sorted((m["n"] for m in figures.values()), reverse=True)
    assert all(
        math.isnan(m["recall"]) for m in _by_attack(labels, scores, flagged, types, 0.05, True).values()
    )
    assert all(
        math.isnan(m["recall_at_raw_fpr"])
        for m in _by_attack(labels, scores, flagged, types, math.nan, False).values()
    )


def test_a_labels_field_over_the_csv_limit_names_its_row(tmp_path: Path) -> None:
    """The csv module's error was a traceback. Its limit is process-wide (the Splunk protocol
    helper raises it), so this test sets the default for itself."""
    from scorer.evaluate import read_labels_and_types

    labels = tmp_path / "labels.csv"
    labels.write_text("line,label\n1,0\n2," + "0" * 200_000 + "\n", encoding="utf-8")
    before = csv.field_size_limit(128 * 1024)  # Python's default
    try:
        with pytest.raises(
            ValueError, match=r"labels\.csv:3: not a row of line,label: field larger than field limit"
        ):
            read_labels_and_types(labels)
    finally:
        csv.field_size_limit(before)


def test_evaluate_on_one_class_says_what_it_cannot_measure() -> None:
    """Labels of one class only (fresh normal traffic, to see what false-positive rate α keeps):
    the false-positive rate is shown, the figures that need both classes are n/a, not nan."""
    from scorer.evaluate import format_report

    nan = float("nan")
    text = format_report(
        {"fusion (default)": {"roc_auc": nan, "pr_auc": nan, "recall": nan, "fpr": 0.012}}, 0.01
    )
    assert "nan" not in text
    assert "n/a" in text
    assert "0.0120" in text
    assert "the labels hold one class only" in text


def test_evaluate_on_one_class_writes_json_with_null_and_names_skipped_lines(
    model: Path, labelled: Labelled, tmp_path: Path
) -> None:
    """`--json` printed a bare NaN, which JSON parsers refuse; a line that is not an event was left
    out of the evaluation without a word."""
    every = labelled.events.read_bytes().splitlines()
    normal = [line for line, attack in zip(every, labelled.attack, strict=True) if not attack]
    lines = [*normal[:150], b'{"broken": ', *normal[150:300]]
    events = tmp_path / "normal.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    labels = tmp_path / "normal.labels.csv"
    labels.write_text(
        "line,label\n" + "".join(f"{n},0\n" for n in range(1, len(lines) + 1)), encoding="utf-8"
    )
    result = _run(
        "evaluate", events, "--model", model, "--labels", labels, "--train", labelled.events, "--json"
    )
    assert result.returncode == 0, result.stderr
    assert f"{events}:151: skipped: " in result.stderr
    assert "evaluating on 300 events (0 attacks)" in result.stderr

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    report = json.loads(result.stdout, parse_constant=refuse)
    for name, row in report.items():
        assert row["roc_auc"] is None, name
        assert 0 <= row["fpr"] <= 1, name


def _normal_with_impossible_numbers(labelled: Labelled, tmp_path: Path) -> tuple[Path, Path]:
    """200 normal events of `labelled`, 20 of them holding "NaN" bytes and labelled attacks."""
    every = load_events([labelled.events], warn=False)
    normal = [e for e, attack in zip(every, labelled.attack, strict=True) if not attack][:200]
    for event in normal[::10]:
        event["traffic"] = {"bytes_out": "NaN"}
    events = _write_jsonl(tmp_path / "impossible.jsonl", normal)
    labels = tmp_path / "impossible.labels.csv"
    labels.write_text(
        "line,label,attack\n"
        + "".join(
            f"{n},{int(n % 10 == 1)},{'impossible' if n % 10 == 1 else 'Normal'}\n" for n in range(1, 201)
        ),
        encoding="utf-8",
    )
    return events, labels


def test_evaluate_flags_an_impossible_number_as_score_does(
    model: Path, labelled: Labelled, tmp_path: Path
) -> None:
    """`score` flags an event holding a number no real event can hold (p-value 0) whatever its
    score; `evaluate` read every kind's p-values from the scores alone: recall 0 for such attacks."""
    events, labels = _normal_with_impossible_numbers(labelled, tmp_path)
    result = _run(
        "evaluate", events, "--model", model, "--labels", labels, "--train", labelled.events, "--json"
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    for name in ("embedding", "features", "fusion (default)"):
        row = report[name]
        assert (row["n"], row["n_attack"]) == (200, 20), name
        assert row["recall"] == 1.0, (name, row)  # flagged, as `score` flags them
        assert row["roc_auc"] == row["pr_auc"] == 1.0, (name, row)  # and ranked first, as p = 0 is
        assert row["recall_at_raw_fpr"] == 1.0, (name, row)


def test_evaluate_says_when_alpha_is_below_what_a_calibration_can_flag(
    model: Path, labelled: Labelled, tmp_path: Path
) -> None:
    """At an α below 1 / (calibration events + 1) nothing can be flagged: `score` warns, `evaluate`
    printed recall and FPR 0 for every row without a word. The baselines' thresholds are set on their
    own held-out events: they are measured where those can flag, n/a where they cannot."""
    events, labels = _normal_with_impossible_numbers(labelled, tmp_path)
    train, _ = generate_events(2_000, seed=5)  # the baselines hold out 400: α ≥ 1/401 can flag
    train_file = _write_jsonl(tmp_path / "train.jsonl", train)
    detector = Detector.load(model)  # 200 calibration events: nothing below 1/201
    run = ("evaluate", events, "--model", model, "--labels", labels, "--train", train_file)

    result = _run(*run, "--alpha", "0.003", "--json")
    assert result.returncode == 0, result.stderr
    assert f"warning: {detector.cannot_flag(0.003)}\n" in result.stderr
    assert result.stderr.count("warning: ") == 1, result.stderr  # once, not once per score kind
    report = json.loads(result.stdout)
    for name in ("embedding", "features", "fusion (default)"):
        row = report[name]
        assert (row["recall"], row["fpr"]) == (None, None), (name, row)
        assert row["cannot_flag"] == detector.cannot_flag(0.003), name
        for figure in ("roc_auc", "recall_at_raw_fpr"):  # measured at no threshold of the model's
            assert 0 <= row[figure] <= 1, (name, figure)
        # null inside the figures by attack type too (a NaN there made --json print NaN)
        assert row["by_attack"]["impossible"]["n"] == 20
        assert row["by_attack"]["impossible"]["recall"] is None, (name, row["by_attack"])
    for name in ("raw-knn", "isolation-forest"):
        row = report[name]
        assert row["cannot_flag"] is None, (name, row)
        for figure in ("recall", "fpr"):
            assert 0 <= row[figure] <= 1, (name, figure)

    result = _run(*run, "--alpha", "0.001")  # beyond the baselines' held-out events too
    assert result.returncode == 0, result.stderr
    assert f"warning: {detector.cannot_flag(0.001)}\n" in result.stderr
    assert "warning: the baselines can flag nothing at α = 0.001: " in result.stderr
    rows = {line[:22].strip(): line[22:].split() for line in result.stdout.splitlines()[3:8]}
    assert list(rows) == ["embedding", "features", "fusion (default)", "raw-knn", "isolation-forest"]
    assert all(figures[2:] == ["n/a", "n/a", "n/a"] for figures in rows.values()), result.stdout
    assert "can flag nothing at α = 0.001" in result.stdout


def test_split_says_what_it_left_out_and_refuses_a_side_left_empty(
    labelled: Labelled, tmp_path: Path
) -> None:
    events = tmp_path / "some-bad.jsonl"
    lines = labelled.events.read_bytes().splitlines()
    lines[4] = b"not json"
    events.write_bytes(b"\n".join(lines) + b"\n")
    labels = tmp_path / "part.labels.csv"
    labels.write_text("line,label\n" + "".join(f"{n},0\n" for n in range(1, 501)), encoding="utf-8")
    result = _run("split", events, "--labels", labels, "--output", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert (
        "left out 100 lines without a label and 1 that are not JSON objects (the first: line 5, "
        "invalid JSON: invalid literal, expected 'null': line 1 column 1 (char 0)), of 600" in result.stderr
    )
    assert (
        len(_uids(tmp_path / "out" / "test.jsonl.gz"))
        + len(_uids(tmp_path / "out" / "train_normal.jsonl.gz"))
        == 499
    )

    labels.write_text("line,label\n", encoding="utf-8")  # a header and no row: nothing to split
    result = _run("split", events, "--labels", labels, "--output", tmp_path / "empty")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: the split of {events} would leave 0 normal events to train on and 0 to test: "
        "it needs some of each (are the labels those of this file?)"
    )
    assert not (tmp_path / "empty").exists()

    labels.write_text("line,label\n" + "".join(f"{n},0\n" for n in range(1, 701)), encoding="utf-8")
    result = _run("split", events, "--labels", labels, "--output", tmp_path / "other")  # another file's
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {labels} does not label the 600 lines of {events}: 100 labels name no line (the first, "
        "line 601) (are the labels those of this file?)"
    )
    assert not (tmp_path / "other").exists()


def test_split_of_parquet_writes_its_rows_as_json_lines(labelled: Labelled, tmp_path: Path) -> None:
    """`split` read a Parquet file's bytes as lines of text and wrote garbage."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    events = load_events([labelled.events], warn=False)
    parquet = tmp_path / "labelled.parquet"
    pq.write_table(pa.Table.from_struct_array(pa.array(events)), parquet)
    result = _run("split", parquet, "--labels", labelled.labels, "--output", tmp_path / "from-parquet")
    assert result.returncode == 0, result.stderr
    from_jsonl = _split(labelled, tmp_path / "from-jsonl")
    assert from_jsonl.returncode == 0, from_jsonl.stderr
    for name in ("train_normal.jsonl.gz", "test.jsonl.gz"):
        assert _uids(tmp_path / "from-parquet" / name) == _uids(tmp_path / "from-jsonl" / name), name
    assert (tmp_path / "from-parquet" / "test.labels.csv").read_text() == (
        tmp_path / "from-jsonl" / "test.labels.csv"
    ).read_text()


def test_split_onto_a_file_is_one_line(labelled: Labelled, tmp_path: Path) -> None:
    taken = tmp_path / "taken.jsonl"
    taken.write_text("{}\n", encoding="utf-8")
    result = _run("split", labelled.events, "--labels", labelled.labels, "--output", taken)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"ocsf-anomaly split: error: argument --output/-o: '{taken}' is a file: name a directory to write"
    )


def test_an_output_that_cannot_be_written_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`report --output DIR` rendered the whole report, then failed on a temporary file the user never
    named; `train --output FILE` failed after training; an output under a file said "File exists"."""
    folder, taken = tmp_path / "folder", tmp_path / "taken"
    folder.mkdir()
    taken.write_text("x", encoding="utf-8")
    events = str(tmp_path / "in.jsonl")
    Path(events).write_text("{}\n", encoding="utf-8")
    cases = [
        (["report", events, "--output", str(folder)], f"'{folder}' is a directory: name a file to write"),
        (
            ["score", "--model", "m", events, "--output", str(folder)],
            f"'{folder}' is a directory: name a file to write",
        ),
        (
            ["features", "infer", events, "--output", str(taken / "spec.toml")],
            f"'{taken / 'spec.toml'}' cannot be written: {taken} is a file, not a directory",
        ),
        (["train", events, "--output", str(taken)], f"'{taken}' is a file: name a directory to write"),
        (
            ["refresh", "--model", "m", events, "--output", str(taken / "a" / "b")],
            f"cannot be written: {taken} is a file, not a directory",
        ),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit) as exit_:
            build_parser().parse_args(argv)
        assert exit_.value.code == 2, argv
        said = capsys.readouterr().err.strip().splitlines()[-1]
        assert "argument --output/-o: " in said, said
        assert said.endswith(message), said
    assert build_parser().parse_args(["train", events, "--output", str(folder / "new" / "bundle")]).output


# ------------------------------------------------------------------ refresh
@pytest.mark.parametrize("calibration_only", [False, True], ids=["baseline", "calibration-only"])
def test_refresh_writes_a_new_version_from_recent_events(
    model: Path, workdir: Path, calibration_only: bool
) -> None:
    recent, _ = generate_events(300, seed=9)
    source = _write_jsonl(workdir / "recent.jsonl", recent)
    out = workdir / f"refreshed-{calibration_only}"
    options = ["--calibration-only"] if calibration_only else []
    result = _run("refresh", source, "--model", model, "--output", out, *options)
    assert result.returncode == 0, result.stderr
    before, after = Detector.load(model), Detector.load(out)
    assert after.metadata["refreshed_from"] == before.model_info["version"]
    # what it holds now, not the first training's figures (the review)
    assert after.metadata["training"]["baseline_events"] == len(after.baseline) == len(after.baseline_ids)
    assert after.metadata["training"]["calibration_events"] == (300 if calibration_only else 60)
    assert after.metadata["training"]["calibration_in_baseline"] == 0
    assert after.model_info["version"] != before.model_info["version"]
    assert after.model_info["name"] == "cli-test"
    what = "calibration" if calibration_only else "baseline and calibration"
    doing = (
        "calibrating on 300 events"
        if calibration_only
        else "adding 240 of the 300 events to the baseline (less those the model flags), which keeps its "
        f"newest {before.config.baseline_size:,}, and indexing it; calibrating on the other 60"
    )
    assert doing in result.stderr
    assert f"wrote {out} (bundle {after.model_info['version']}): {what} refreshed" in result.stderr
    recent_ids = {e["metadata"]["uid"] for e in recent}
    if calibration_only:
        assert after.baseline_ids == before.baseline_ids
    else:  # four fifths of the recent events, less those the model flags, join the baseline, newest
        # last; the other fifth calibrates
        left_out = re.search(
            r"left out of the baseline: (\d+) of the 240 events, those the model flags", result.stderr
        )
        assert left_out is not None, result.stderr
        joined = 240 - int(left_out[1])
        assert joined > 200
        assert set(after.baseline_ids[-joined:]) <= recent_ids
        assert len(set(after.baseline_ids) & recent_ids) == joined
    assert after.metadata["calibration"] == after.calibration.sizes()


@pytest.mark.parametrize(("most", "held"), [(300, 1_000), (1_200, 1_200)])
def test_refresh_holds_the_newest_events_of_a_large_input(
    model: Path,
    workdir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    most: int,
    held: int,
) -> None:
    """refresh held every event as an object (6 GB a million: the scale review) where its baseline
    keeps the newest and its calibration at most 20,000. It holds the newest TRAIN_EVENTS_MOST, or
    twice the baseline size where that is more (1,000 for this model's 500), and says so."""
    from scorer import io

    monkeypatch.setattr(io, "TRAIN_EVENTS_MOST", most)
    recent, _ = generate_events(1_500, seed=9)
    source = _write_jsonl(workdir / "many-recent.jsonl", recent)
    out = workdir / f"refreshed-newest-{most}"
    code, said = _in_process(capsys, "refresh", source, "--model", model, "--output", out, "--keep-flagged")
    assert code == 0, said
    assert f"read 1,500 events: refreshing from the newest {held:,} of them" in said
    after = Detector.load(out)
    assert after.metadata["training"]["calibration_events"] == held // 5
    newest = {e["metadata"]["uid"] for e in recent[-held:]}
    older = {e["metadata"]["uid"] for e in recent[:-held]}
    assert len(set(after.baseline_ids) & newest) == 500  # the baseline's size, all of them newest
    assert not set(after.baseline_ids) & older


def test_refresh_keep_flagged_brings_every_event_in(model: Path, workdir: Path) -> None:
    recent, _ = generate_events(300, seed=9)
    source = _write_jsonl(workdir / "recent.jsonl", recent)
    out = workdir / "kept"
    result = _run("refresh", source, "--model", model, "--output", out, "--keep-flagged")
    assert result.returncode == 0, result.stderr
    assert "left out" not in result.stderr
    assert len(set(Detector.load(out).baseline_ids) & {e["metadata"]["uid"] for e in recent}) == 240
    both = _run(
        "refresh",
        source,
        "--model",
        model,
        "--output",
        workdir / "never",
        "--keep-flagged",
        "--calibration-only",
    )
    assert both.returncode == 2
    assert "--keep-flagged is for the baseline, which --calibration-only keeps" in both.stderr
    assert "loading" not in both.stderr  # said before the model and the events are read
    assert not (workdir / "never").exists()


def test_refresh_needs_enough_recent_events(model: Path, workdir: Path, score_events: list[Event]) -> None:
    source = _write_jsonl(workdir / "few.jsonl", score_events[:50])
    result = _run("refresh", source, "--model", model, "--output", workdir / "never")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == "error: refresh needs at least 100 recent events, got 50"
    assert not (workdir / "never").exists()


@pytest.mark.parametrize("calibration_only", [False, True], ids=["baseline", "calibration-only"])
def test_refresh_refuses_events_with_none_of_the_model_s_fields(
    model: Path, workdir: Path, calibration_only: bool
) -> None:
    """Events of another kind would give a blind model: every one encodes as all-missing, so every
    later event would look normal."""
    source = _write_jsonl(workdir / "foreign.jsonl", [{"message": f"line {i}"} for i in range(300)])
    out = workdir / f"blind-{calibration_only}"
    options = ["--calibration-only"] if calibration_only else []
    result = _run("refresh", source, "--model", model, "--output", out, *options)
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: none of the 300 recent events holds any of the model's ")
    assert last.endswith(": they are not the kind of events the model describes")
    assert not out.exists()


def test_refresh_says_which_fields_the_recent_events_lack(model: Path, workdir: Path) -> None:
    recent, _ = generate_events(300, seed=9)
    for event in recent:
        event.pop("src_endpoint", None)
    recent[:30] = [{"message": "not an event of this kind"}] * 30
    source = _write_jsonl(workdir / "partial.jsonl", recent)
    result = _run("refresh", source, "--model", model, "--output", workdir / "partial-model")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert warnings[0] == "warning: 30 of the 300 recent events hold none of the model's fields"
    features = Detector.load(model).metadata["features"]
    lacking = {f.split("#")[0] for f in features if f.startswith("src_endpoint.")}
    assert lacking, "the demo model should describe src_endpoint"
    assert warnings[1].startswith(
        f"warning: {len(lacking)} of the model's fields are in none of the recent events: "
    )
    assert set(warnings[1].split(": ", 2)[2].rstrip("…").split(", ")) <= lacking


def test_train_refuses_a_spec_that_none_of_the_events_holds(trained: Trained, workdir: Path) -> None:
    spec = workdir / "elsewhere.toml"
    spec.write_text('[[feature]]\npath = "nowhere.to.be.found"\nkind = "categorical"\n')
    out = workdir / "never-trained"
    result = _run("train", trained.train_file, "--features", spec, "--output", out, "--quiet")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "error: none of the 800 training events holds any of the model's 1 fields "
        "(nowhere.to.be.found): they are not the kind of events the model describes"
    )
    assert not out.exists()


# ------------------------------------------------------------------ demo
def _without_state_settings() -> dict[str, str]:
    """This process's environment without what would move the demo's state out of ./data."""
    moved = ("OCSF_ANOMALY_HOME", "OCSF_ANOMALY_REGISTRY_URI", "MLFLOW_TRACKING_URI")
    return {k: v for k, v in os.environ.items() if k not in moved}


def test_demo_from_nothing_trains_registers_and_scores(tmp_path: Path) -> None:
    """`make run`'s first run in a fresh clone: no registry yet, so `demo` writes the demo files,
    trains the demo model with the defaults, registers it as the champion and scores the demo file."""
    from scorer.settings import DEMO_MODEL

    env = _without_state_settings()
    result = subprocess.run(
        [sys.executable, "-m", "scorer.cli", "demo"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={**env, "PYTHONWARNINGS": "ignore", "TQDM_DISABLE": "1"},
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "training the demo model" in result.stderr
    assert f"registered models:/{DEMO_MODEL}/1" in result.stderr
    state = tmp_path / "data"
    assert (state / "mlflow" / "mlflow.db").is_file()
    anomalies = [
        orjson.loads(line)["anomaly"] for line in (state / "demo" / "scored.jsonl").read_bytes().splitlines()
    ]
    labels = [int(row[1]) for row in _read_csv(state / "demo" / "demo.labels.csv")[1:]]
    assert len(anomalies) == len(labels) == 2_000
    flagged = [a["is_anomaly"] for a in anomalies]
    found = sum(f and y for f, y in zip(flagged, labels, strict=True))
    # what a new user sees first: a good share of the flags are injected anomalies, and of the anomalies found
    # (measured: 25 of 40 flags, 25 of 40 anomalies)
    assert found >= 0.4 * sum(labels)
    assert found >= 0.4 * sum(flagged)


def test_demo_scores_the_demo_file_with_the_registered_champion(model: Path, tmp_path: Path) -> None:
    """What `make run` does once a demo model is registered, in a fresh working directory: its state
    (demo files, registry) lands in ./data there. The champion is the small test model (training
    the real demo model takes 10-20 s)."""
    from scorer.registry import Registry
    from scorer.settings import DEMO_MODEL

    state = tmp_path / "data"
    registry = Registry(f"sqlite:///{state / 'mlflow' / 'mlflow.db'}")  # the default store of ./data
    registry.register(model, DEMO_MODEL)
    env = _without_state_settings()
    result = subprocess.run(
        [sys.executable, "-m", "scorer.cli", "demo"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={**env, "PYTHONWARNINGS": "ignore"},
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"using models:/{DEMO_MODEL}/1, the champion in {registry.uri}" in result.stderr
    scored = state / "demo" / "scored.jsonl"
    assert f"scored 2,000 demo events → {scored}" in result.stdout
    anomalies = [orjson.loads(line)["anomaly"] for line in scored.read_bytes().splitlines()]
    assert len(anomalies) == 2_000
    labels = [int(row[1]) for row in _read_csv(state / "demo" / "demo.labels.csv")[1:]]
    flagged = [line for line, a in enumerate(anomalies, start=1) if a["is_anomaly"]]
    hits = sum(labels[line - 1] for line in flagged)
    assert hits > 0
    assert (
        f"{len(flagged)} flagged at α = 0.01; {hits} of them injected anomalies ({hits}/{sum(labels)} found)"
        in (result.stdout)
    )
    listed = [line for line in result.stdout.splitlines() if line.startswith("line ")]
    assert len(listed) == min(10, len(flagged))
    assert {int(line.split()[1]) for line in listed} <= set(flagged)
    assert "typical" in listed[0]
    # which kinds were found, from the labels' attack column: every kind injected, most frequent first
    rows = _read_csv(state / "demo" / "demo.labels.csv")[1:]
    injected = Counter(row[2] for row in rows if row[1] == "1")
    found = Counter(rows[line - 1][2] for line in flagged if labels[line - 1])
    expected = ", ".join(f"{kind} {found[kind]}/{n}" for kind, n in injected.most_common())
    assert f"found, by kind: {expected}\n" in result.stdout


def test_state_dir_is_the_working_directory_unless_ocsf_anomaly_home_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OCSF_ANOMALY_HOME", raising=False)
    assert state_dir() == tmp_path / "data"
    monkeypatch.setenv("OCSF_ANOMALY_HOME", "state")
    assert state_dir() == tmp_path / "state"  # made absolute: the registry's SQLite URI needs that


def test_make_report_reads_the_demo_where_make_run_wrote_it(tmp_path: Path) -> None:
    """`make run` with OCSF_ANOMALY_HOME=/x puts the demo in /x/demo; `make report` looked for
    data/demo/scored.jsonl all the same, and failed. Without a scored demo it names the place it looked.
    (``-o``: the virtualenv's stamps are taken as they are, nothing is installed.)"""
    root = Path(__file__).resolve().parent.parent  # make runs the suite: it is there
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}
    env["OCSF_ANOMALY_HOME"] = str(tmp_path / "home")
    result = subprocess.run(
        ["make", "-s", "-o", ".venv/.installed", "-o", ".venv/.installed-report", "report"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode != 0
    assert f"no {tmp_path / 'home' / 'demo' / 'scored.jsonl'}: `make run` scores the demo file first" in (
        result.stdout
    ), result.stdout + result.stderr
    assert not (tmp_path / "home").exists()
