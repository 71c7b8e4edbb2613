"""The file commands' answers to a user's mistakes and to interruptions, through the real command line:
an output that is an input, an interrupted or terminated run, a file that holds no event, an output
where a model lives, a settings file that is not there."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from test_cli import _run, _write_jsonl

from scorer.cli import main
from scorer.demo import generate_events
from scorer.errors import UserError

Event = dict[str, Any]


def _contents(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """300 demo events, a tenth of them injected anomalies, and their labels file."""
    work = tmp_path_factory.mktemp("labelled")
    events, kinds = generate_events(300, seed=8, anomaly_rate=0.1)
    labels = work / "events.labels.csv"
    labels.write_text(
        "line,label\n" + "".join(f"{n},{int(k != 'normal')}\n" for n, k in enumerate(kinds, 1)),
        encoding="utf-8",
    )
    return _write_jsonl(work / "events.jsonl", events), labels


# ------------------------------------------------------------------ split
def test_split_onto_its_own_input_is_refused_and_writes_nothing(
    labelled: tuple[Path, Path], tmp_path: Path
) -> None:
    """`split sx/test.jsonl.gz --labels sx/test.labels.csv -o sx` exited 0 and halved its input."""
    events, labels = labelled
    assert _run("split", events, "--labels", labels, "--output", tmp_path / "sx").returncode == 0
    before = _contents(tmp_path / "sx")
    sx = tmp_path / "sx"
    result = _run("split", sx / "test.jsonl.gz", "--labels", sx / "test.labels.csv", "--output", sx)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "is the input file" in result.stderr.strip().splitlines()[-1]
    assert _contents(sx) == before
    assert sorted(p.name for p in sx.iterdir()) == sorted(before)


def test_a_split_whose_file_name_is_taken_by_a_directory_leaves_the_earlier_split_as_it_was(
    labelled: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The three files were renamed into place one by one: the third failing ("Is a directory",
    naming a temporary path) left the new events beside the earlier labels. Refused before any work."""
    events, labels = labelled
    out = tmp_path / "split"
    assert main(["split", str(events), "--labels", str(labels), "--output", str(out), "--seed", "1"]) == 0
    (out / "test.labels.csv").unlink()
    (out / "test.labels.csv").mkdir()
    before = _contents(out)
    assert main(["split", str(events), "--labels", str(labels), "--output", str(out), "--seed", "2"]) == 2
    said = capsys.readouterr().err.strip().splitlines()[-1]
    assert (
        said == f"error: {out / 'test.labels.csv'} is a directory: the split writes a file of that name there"
    )
    assert _contents(out) == before


def test_an_interrupted_split_leaves_the_earlier_split_as_it_was(
    labelled: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while a split wrote over an earlier one left a corrupt test.jsonl.gz and an empty
    test.labels.csv: the files are now written aside and renamed into place at the end."""
    events, labels = labelled
    out = tmp_path / "split"
    assert main(["split", str(events), "--labels", str(labels), "--output", str(out), "--seed", "1"]) == 0
    before = _contents(out)
    write = gzip.GzipFile.write
    calls = 0

    def interrupted(self: gzip.GzipFile, data: Any) -> int:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise KeyboardInterrupt
        return write(self, data)

    monkeypatch.setattr(gzip.GzipFile, "write", interrupted)
    assert main(["split", str(events), "--labels", str(labels), "--output", str(out), "--seed", "2"]) == 130
    assert calls >= 2
    assert [p.name for p in sorted(out.iterdir())] == sorted(before)
    assert _contents(out) == before


# ------------------------------------------------------------------ score, terminated
def _children(pid: int) -> dict[int, str]:
    """The processes whose parent is ``pid``, with their command lines."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:  # gone meanwhile
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found[int(entry.name)] = cmdline
    return found


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux's /proc")
@pytest.mark.parametrize("stop", ["sigterm", "ctrl-c twice"])
def test_sigterm_or_ctrl_c_to_score_leaves_no_partial_file_and_no_worker(
    bundle_dir: Path, tmp_path: Path, stop: str
) -> None:
    """SIGTERM (`timeout`, `kill`, `docker stop`) left a hidden .partial file beside the output and the
    two worker processes alive under PID 1; it now ends as Ctrl-C does, with SIGTERM's status 143.
    Ctrl-C, which a terminal sends to the whole process group, printed a worker's KeyboardInterrupt
    traceback now and then, and a second one, in the clean-up of the first, left the command hanging
    at its exit for good (the review); now 130, whatever the timing."""
    import signal
    import time

    from scorer.batch import CHUNK_LINES

    events, _ = generate_events(1_000, seed=5)
    lines = [orjson.dumps(e) + b"\n" for e in events]
    source = tmp_path / "events.jsonl"
    source.write_bytes(b"".join(lines * (30 * CHUNK_LINES // len(lines))))  # 30 chunks: seconds of work
    out = tmp_path / "out" / "scored.jsonl"
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "TQDM_DISABLE": "1"}
    command = ["score", str(source), "--model", str(bundle_dir), "--output", str(out), "--workers", "2"]
    log = tmp_path / "stderr.txt"
    with log.open("w") as stderr_file:  # a file, not a pipe: workers left alive would hold a pipe open
        process = subprocess.Popen(
            [sys.executable, "-m", "scorer.cli", *command, "--quiet"],
            stderr=stderr_file,
            env=env,
            start_new_session=True,  # a process group of its own, as a terminal gives a command
            # Ctrl-C as a terminal delivers it, whatever this test's runner did with SIGINT
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    workers: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        while len(workers) < 2 and process.poll() is None and time.monotonic() < deadline:
            workers |= {pid for pid, cmd in _children(process.pid).items() if "spawn_main" in cmd}
            time.sleep(0.05)
        assert len(workers) == 2, "the workers did not start"
        assert list(out.parent.glob(".*.partial"))
        if stop == "sigterm":
            process.send_signal(signal.SIGTERM)
        else:
            os.killpg(process.pid, signal.SIGINT)
            time.sleep(0.1)  # while the workers finish the chunks in hand
            os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=120)
        stderr = log.read_text()
        assert (process.returncode, stderr.strip().splitlines()[-1]) == (
            (143, "terminated") if stop == "sigterm" else (130, "interrupted")
        ), stderr
        assert "Traceback" not in stderr
        assert not out.parent.exists() or list(out.parent.iterdir()) == []
        deadline = time.monotonic() + 15
        while any(map(_alive, workers)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(map(_alive, workers)), "worker processes outlived the command"
    finally:
        for pid in (process.pid, *workers):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        process.wait()


# ------------------------------------------------------------------ files that hold no event
def _not_events(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Files none of whose lines is an event, and what the refusal should say of each."""
    rows = b"".join(b"0,tcp,ftp_data,SF,491,0,0,0,0,0,normal,20\n" for _ in range(100))
    csv_file, gzip_file = tmp_path / "kdd.txt", tmp_path / "events.jsonl"
    csv_file.write_bytes(rows)
    gzip_file.write_bytes(gzip.compress(b"".join(orjson.dumps({"n": i}) + b"\n" for i in range(100))))
    # Windows PowerShell's `>` writes UTF-16: it was asked whether it is JSONL
    utf16 = tmp_path / "powershell.jsonl"
    utf16.write_bytes("".join(f'{{"n": {i}}}\n' for i in range(100)).encode("utf-16"))
    # a JSON array on one line (an API's answer saved as it came)
    array = tmp_path / "answer.json"
    array.write_bytes(orjson.dumps([{"n": i} for i in range(100)]) + b"\n")
    # the same compressed: its first bytes are gzip's, and it got the generic hint (the last notes)
    gzipped_array = tmp_path / "answer.json.gz"
    gzipped_array.write_bytes(gzip.compress(array.read_bytes()))
    # Parquet compressed: not to be named .parquet as it is (still gzip), but gunzipped (the review)
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = io.BytesIO()
    pq.write_table(pa.table({"n": list(range(100))}), table)
    gzipped_parquet = tmp_path / "events.parquet.gz"
    gzipped_parquet.write_bytes(gzip.compress(table.getvalue()))
    return {
        "array": (
            array,
            "it is a JSON array, not JSON Lines (one OCSF event, a JSON object, per line): convert",
        ),
        "array in gzip": (
            gzipped_array,
            "it is a JSON array, not JSON Lines (one OCSF event, a JSON object, per line): convert",
        ),
        "csv": (csv_file, "is it JSONL"),
        "gzip": (gzip_file, "name it .gz"),
        "parquet in gzip": (gzipped_parquet, "it is gzip-compressed Parquet: gunzip it to a .parquet file"),
        "utf16": (utf16, "it is UTF-16 text (as Windows PowerShell's > writes): save it as UTF-8"),
    }


def test_score_of_a_file_with_no_event_is_refused_in_one_line(bundle_dir: Path, tmp_path: Path) -> None:
    """A CSV file, or gzip data named .jsonl, exited 0 with an output of nothing but errors and one
    stderr line for each of its lines (25,194 for NSL-KDD's)."""
    for source, hint in _not_events(tmp_path).values():
        out = tmp_path / f"{source.name}.csv"
        result = _run("score", source, "--model", bundle_dir, "--output", out, "--workers", "1", "--quiet")
        assert result.returncode == 2, result.stderr
        said = result.stderr.strip().splitlines()
        assert len(said) < 30, said
        assert said[-1].startswith(f"error: no line of {source} is an event"), said[-1]
        assert hint in said[-1]
        assert not out.exists()
        assert list(tmp_path.glob(".*.partial")) == []
    said = _run("score", tmp_path / "kdd.txt", "--model", bundle_dir, "--output", tmp_path / "o.csv").stderr
    assert "… and 80 more bad lines" in said.splitlines()


def test_a_pretty_printed_json_array_is_refused_in_one_line(bundle_dir: Path, tmp_path: Path) -> None:
    """An array written over many lines (json.dump(..., indent=2)) was a bad line for each of its lines,
    20 of them said, then that no line is an event (the new-user walkthrough)."""
    source = tmp_path / "events.json"
    source.write_text(json.dumps(generate_events(20, seed=3)[0], indent=2))
    expected = f"error: {source} is a JSON array, not JSON Lines (one OCSF event, a JSON object, per line): convert it with jq -c '.[]'"
    for command in (
        ["score", source, "--model", bundle_dir, "--output", tmp_path / "o.jsonl", "--quiet"],
        ["train", source, "--output", tmp_path / "m", "--quiet"],
        ["features", "infer", source],
    ):
        result = _run(*command)
        assert result.returncode == 2, result.stderr
        said = result.stderr.strip().splitlines()
        assert said[-1] == expected, result.stderr
        assert said[:-1] in ([], [f"reading {source}"]), result.stderr  # no bad line said


def test_a_long_one_line_json_array_is_refused_before_it_is_read(
    bundle_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file of one line holding an array of 300,000 events (368 MB) was parsed three times, at
    2.6 GB, before it was refused as no events (the scale review). Past ARRAY_LINE_MOST it is
    refused as an array at once, none of it parsed."""
    import io as io_module
    import types

    import orjson

    from scorer import batch, io

    events = generate_events(1_000, seed=3)[0]
    source = tmp_path / "events.json"
    source.write_bytes(orjson.dumps(events * (io.ARRAY_LINE_MOST // len(orjson.dumps(events)) + 1)))
    parsed: list[int] = []

    def loads(data: Any) -> Any:
        parsed.append(len(data))
        return orjson.loads(data)

    monkeypatch.setattr(
        io, "orjson", types.SimpleNamespace(loads=loads, JSONDecodeError=orjson.JSONDecodeError)
    )
    with pytest.raises(UserError) as refused:
        batch.score_file(bundle_dir, source, tmp_path / "o.csv", progress=False)
    assert str(refused.value) == f"{source} {io.JSON_ARRAY}"
    assert parsed == []
    # with lines after it, it is a bad line of a JSON Lines file, as a short one is (the diff review:
    # the first version refused such a file whole, as if it were one array)
    with source.open("ab") as handle:
        handle.write(b"\n" + b"\n".join(orjson.dumps(e) for e in events[:50]) + b"\n")
    monkeypatch.undo()
    errors = io_module.StringIO()
    stats = batch.score_file(bundle_dir, source, tmp_path / "o.csv", progress=False, errors=errors)
    assert (stats.lines, stats.scored, stats.bad) == (51, 50, 1)
    assert f"{source}:1: expected a JSON object, got an array" in errors.getvalue()


def test_an_empty_input_is_refused_as_a_file_with_no_event_is(bundle_dir: Path, tmp_path: Path) -> None:
    """`score` of a 0-byte file (or a .gz of nothing) exited 0 with a header-only CSV, though a file
    none of whose lines is an event is refused; `train` said it needed 50 events, not that the file
    was empty."""
    empty, gzipped = tmp_path / "empty.jsonl", tmp_path / "empty.jsonl.gz"
    empty.write_bytes(b"")
    gzipped.write_bytes(gzip.compress(b""))
    for source in (empty, gzipped):
        out = tmp_path / f"{source.name}.csv"
        result = _run("score", source, "--model", bundle_dir, "--output", out, "--quiet")
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().splitlines()[-1] == f"error: {source} is empty: it holds no event"
        assert not out.exists()
        assert list(tmp_path.glob(".*.partial")) == []
    alone = _run("features", "infer", empty, gzipped)
    assert alone.returncode == 2, alone.stderr
    assert alone.stderr.strip().splitlines()[-1] == f"error: {empty} is empty: it holds no event"
    # beside a file of events (an hour's file rotated while empty), skipped and said
    events = _write_jsonl(tmp_path / "events.jsonl", generate_events(100, seed=2)[0])
    inferred = _run("features", "infer", empty, events, gzipped)
    assert inferred.returncode == 0, inferred.stderr
    assert f"warning: skipped {empty}, {gzipped}: empty" in inferred.stderr.splitlines()


def test_train_and_features_infer_on_a_file_with_no_event_say_so_briefly(tmp_path: Path) -> None:
    """`train` and `features infer` printed a "skipped" line for each of the file's lines before their error."""
    for source, hint in _not_events(tmp_path).values():
        for command in (["train", source, "--output", tmp_path / "model"], ["features", "infer", source]):
            result = _run(*command)
            assert result.returncode == 2, result.stderr
            said = result.stderr.strip().splitlines()
            assert len(said) < 30, said
            assert hint in said[-1], said[-1]
    assert not (tmp_path / "model").exists()
    # refused before torch is imported: it took 2.5 s to say so, 0.5 s now
    source = next(iter(_not_events(tmp_path).values()))[0]
    code = (
        "import sys\nfrom scorer.cli import main\n"
        f"code = main(['train', {str(source)!r}, '--output', {str(tmp_path / 'model')!r}])\n"
        "print(code, 'torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["2", "False"], result.stderr


# ------------------------------------------------------------------ outputs checked before any work
def test_train_and_refresh_onto_a_folder_that_is_not_a_bundle_are_refused_before_any_work(
    bundle_dir: Path, tmp_path: Path
) -> None:
    """`train -o DIR` (and `refresh`), DIR holding other files, trained fully and only then refused."""
    events = _write_jsonl(tmp_path / "events.jsonl", generate_events(300, seed=2)[0])
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine", encoding="utf-8")
    for command in (
        ["train", events, "--output", folder, "--epochs", "1", "--quiet"],
        ["refresh", "--model", bundle_dir, events, "--output", folder],
    ):
        result = _run(*command)
        assert result.returncode == 2, result.stderr
        assert "reading" not in result.stderr  # refused by the parser, before the events are read
        assert "argument --output/-o" in result.stderr
        assert "holds files that are not a model bundle (notes.txt)" in result.stderr
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]
    assert (folder / "notes.txt").read_text(encoding="utf-8") == "mine"
    train_help = _run("train", "--help").stdout
    assert "replaced if it exists" not in train_help
    assert "stops early" in " ".join(train_help.split())


def test_features_infer_makes_the_output_s_directories(tmp_path: Path) -> None:
    """`features infer -o missing/f.toml` failed with a raw errno after profiling the events."""
    from scorer.features.spec import load_spec

    events = _write_jsonl(tmp_path / "events.jsonl", generate_events(200, seed=2)[0])
    out = tmp_path / "missing" / "dir" / "spec.toml"
    result = _run("features", "infer", events, "--output", out)
    assert result.returncode == 0, result.stderr
    assert load_spec(out).features
    assert [p.name for p in out.parent.iterdir()] == ["spec.toml"]


def test_a_config_file_that_is_missing_or_not_toml_is_refused(bundle_dir: Path, tmp_path: Path) -> None:
    """`score`, `evaluate`, `refresh`, `report` and `score-spark` ignored a --config file that was not
    there or not TOML, as `train` and `models` do not."""
    events = _write_jsonl(tmp_path / "events.jsonl", generate_events(50, seed=2)[0])
    broken = tmp_path / "broken.toml"
    broken.write_text("alpha = [\n", encoding="utf-8")
    for config, message in [(tmp_path / "missing.toml", "no such file"), (broken, "not valid TOML")]:
        out = tmp_path / "scored.csv"
        result = _run("score", "--model", bundle_dir, events, "--output", out, "--config", config, "--quiet")
        assert result.returncode == 2, result.stderr
        assert message in result.stderr.strip().splitlines()[-1]
        assert not out.exists()
    result = _run("refresh", "--model", bundle_dir, events, "--output", tmp_path / "m", "--config", broken)
    assert result.returncode == 2, result.stderr
    assert "not valid TOML" in result.stderr
    # score-spark too, before Spark starts (given a bundle directory it never read the file)
    for config, message in [(tmp_path / "missing.toml", "no such file"), (broken, "not valid TOML")]:
        out = tmp_path / "lake"
        result = _run("score-spark", "--model", bundle_dir, events, out, "--config", config)
        assert result.returncode == 2, result.stderr
        assert message in result.stderr.strip().splitlines()[-1]
        assert not out.exists()


def test_score_into_the_model_bundle_in_use_is_refused(bundle_dir: Path, tmp_path: Path) -> None:
    """`score -o BUNDLE/metadata.json` wrote over the bundle that scored, and destroyed the model."""
    import shutil

    from scorer.detector import Detector

    model = tmp_path / "model"
    shutil.copytree(bundle_dir, model)
    events = _write_jsonl(tmp_path / "events.jsonl", generate_events(50, seed=2)[0])
    result = _run("score", "--model", model, events, "--output", model / "metadata.json", "--quiet")
    assert result.returncode == 2, result.stderr
    assert "inside the model bundle" in result.stderr.strip().splitlines()[-1]
    Detector.load(model)


# ------------------------------------------------------------------ wording
def test_a_misspelt_feature_spec_and_a_too_small_train_file_say_what_to_give(
    bundle_dir: Path, tmp_path: Path
) -> None:
    events, _ = generate_events(50, seed=2)
    source = _write_jsonl(tmp_path / "events.jsonl", events)
    result = _run("train", source, "--output", tmp_path / "m", "--features", "defualt")
    assert result.returncode == 2, result.stderr
    assert "auto, default or the path of a SPEC.toml" in result.stderr.strip().splitlines()[-1]
    # a model bundle's folder given for its features (they are its features.json, not a SPEC.toml)
    result = _run("train", source, "--output", tmp_path / "m", "--features", bundle_dir)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: --features {bundle_dir} is a directory; give auto, default or the path of a SPEC.toml"
    )
    labels = tmp_path / "labels.csv"
    labels.write_text("line,label\n" + "".join(f"{n},0\n" for n in range(1, 51)), encoding="utf-8")
    one = _write_jsonl(tmp_path / "one.jsonl", events[:1])
    result = _run("evaluate", "--model", bundle_dir, source, "--labels", labels, "--train", one)
    assert result.returncode == 2, result.stderr
    assert f"--train {one} holds 1 normal events" in result.stderr.strip().splitlines()[-1]


def test_evaluate_names_the_first_bad_lines_then_how_many_more(
    bundle_dir: Path, labelled: tuple[Path, Path], tmp_path: Path
) -> None:
    """As every file command does: a file of many bad lines printed one line for each."""
    events_path, labels_path = labelled
    events = tmp_path / "events.jsonl"
    events.write_bytes(events_path.read_bytes() + b"not json\n" * 25)
    labels = tmp_path / "labels.csv"
    labels.write_text(
        labels_path.read_text(encoding="utf-8") + "".join(f"{n},0\n" for n in range(301, 326)),
        encoding="utf-8",
    )
    train = _write_jsonl(tmp_path / "train.jsonl", generate_events(300, seed=2)[0])
    result = _run("evaluate", "--model", bundle_dir, events, "--labels", labels, "--train", train)
    assert result.returncode == 0, result.stderr
    skipped = [line for line in result.stderr.splitlines() if ": skipped: " in line]
    assert skipped[0].startswith(f"{events}:301: skipped: ")
    assert len(skipped) == 20
    assert "… and 5 more bad lines" in result.stderr


@pytest.mark.parametrize("bad", [19, 20, 21])
def test_the_bad_lines_said_end_in_how_many_more_only_when_there_are_more(bad: int) -> None:
    """Twenty bad lines are said one by one; "… and 0 more bad lines" after exactly twenty would
    say nothing true (the mutation review: only 25 were tested)."""
    import io

    from scorer.io import BAD_LINES_SAID, BadLines

    out = io.StringIO()
    lines = BadLines(out)
    for n in range(bad):
        lines.say(f"line {n + 1}: skipped")
    lines.close()
    said = out.getvalue().splitlines()
    assert said[: min(bad, BAD_LINES_SAID)] == [
        f"line {n + 1}: skipped" for n in range(min(bad, BAD_LINES_SAID))
    ]
    assert said[BAD_LINES_SAID:] == (
        [f"… and {bad - BAD_LINES_SAID} more bad lines"] if bad > BAD_LINES_SAID else []
    )


def test_evaluate_on_attacks_alone_says_n_a_not_nan(
    bundle_dir: Path, labelled: tuple[Path, Path], tmp_path: Path
) -> None:
    """With no normal event no false-positive rate is realised: the footer printed "(nan)"."""
    events_path, labels_path = labelled
    rows = labels_path.read_text(encoding="utf-8").splitlines()[1:]
    attacks = [n for n, row in enumerate(rows) if row.endswith(",1")]
    lines = events_path.read_bytes().splitlines()
    events = tmp_path / "attacks.jsonl"
    events.write_bytes(b"".join(lines[n] + b"\n" for n in attacks))
    labels = tmp_path / "attacks.labels.csv"
    labels.write_text(
        "line,label\n" + "".join(f"{n},1\n" for n in range(1, len(attacks) + 1)), encoding="utf-8"
    )
    train = _write_jsonl(tmp_path / "train.jsonl", generate_events(300, seed=2)[0])
    result = _run("evaluate", "--model", bundle_dir, events, "--labels", labels, "--train", train)
    assert result.returncode == 0, result.stderr
    assert "raw-knn's threshold realised (n/a)" in result.stdout
    assert "nan" not in result.stdout


@pytest.mark.parametrize("name", ["", " ", "a\nb"])
def test_train_refuses_a_model_name_no_listing_could_show(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = _write_jsonl(tmp_path / "events.jsonl", generate_events(50, seed=2)[0])
    with pytest.raises(SystemExit) as exit_:
        main(["train", str(events), "--output", str(tmp_path / "m"), "--name", name])
    assert exit_.value.code == 2
    assert f"argument --name: {name!r} is not a model name" in capsys.readouterr().err


def test_a_sample_of_events_is_uniform_in_file_order_and_seeded(tmp_path: Path) -> None:
    from scorer.io import sample_events

    events = [{"class_uid": 4001, "metadata": {"uid": str(i)}} for i in range(2_000)]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events[:1_200]))
    (tmp_path / "b.jsonl").write_text("not json\n" + "".join(json.dumps(e) + "\n" for e in events[1_200:]))
    paths = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    kept, read = sample_events(paths, 500, seed=1, warn=False)
    rows = [int(e["metadata"]["uid"]) for e in kept]
    assert (len(rows), read) == (500, 2_000)
    assert rows == sorted(rows)  # in the files' order
    assert len(set(rows)) == 500  # once each
    assert 150 < sum(r >= 1_200 for r in rows) < 250  # the second file's share, 40%: uniform
    assert sample_events(paths, 500, seed=1, warn=False)[0] == kept
    assert sample_events(paths, 500, seed=2, warn=False)[0] != kept
    assert sample_events(paths, 2_000, warn=False) == (events, 2_000)  # all of them, when they fit


def test_train_holds_a_sample_of_a_large_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """train held every event as an object (4 GB a million; 14 GB at three million extrapolated:
    the scale review) where it reads at most 100,000, 50,000 and 20,000 of them. It holds a seeded
    uniform sample of TRAIN_EVENTS_MOST (200,000, or twice the baseline size) and says so."""
    from scorer import io

    monkeypatch.setattr(io, "TRAIN_EVENTS_MOST", 300)
    events = _write_jsonl(tmp_path / "events.jsonl", generate_events(700, seed=2)[0])
    main(["train", str(events), "--output", str(tmp_path / "m"), "--baseline-size", "100", "--epochs", "1"])
    assert "read 700 events: fitting on a uniform sample of 300 of them (seed 0)" in capsys.readouterr().err
    metadata = json.loads((tmp_path / "m" / "metadata.json").read_text())
    assert metadata["training"]["events"] == 300


def test_train_refuses_a_name_that_its_registered_name_would_replace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--name other --register netflow wrote "netflow" and dropped --name without a word (the docs
    review): refused before any work; the same name twice, or --register alone, is that name."""
    monkeypatch.setenv("OCSF_ANOMALY_HOME", str(tmp_path / "home"))
    events = _write_jsonl(tmp_path / "events.jsonl", generate_events(50, seed=2)[0])
    assert main(["train", str(events), "--register", "netflow", "--name", "other"]) == 2
    assert "--name other and --register netflow: a registered model is named as it is registered" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "home").exists()  # before the registry was made


def test_score_warns_before_the_work_when_events_hold_none_of_the_model_s_fields(
    bundle_dir: Path, tmp_path: Path
) -> None:
    """As train and refresh warn: events of another kind score as all-missing, and were flagged
    without a word."""
    foreign = [{"unrelated": n} for n in range(30)]
    for events, said in [
        (foreign, "none of the 30 events read first holds any of the model's"),
        (
            [*foreign, *generate_events(300, seed=2)[0]],
            "30 of the 330 events read first hold none of the model's fields",
        ),
    ]:
        source = _write_jsonl(tmp_path / "events.jsonl", events)
        result = _run("score", "--model", bundle_dir, source, "--output", tmp_path / "out.csv", "--quiet")
        assert result.returncode == 0, result.stderr
        first = result.stderr.splitlines()[0]
        assert first.startswith("warning: "), result.stderr
        assert said in first, result.stderr
    source = _write_jsonl(tmp_path / "events.jsonl", generate_events(300, seed=2)[0])
    result = _run("score", "--model", bundle_dir, source, "--output", tmp_path / "out.csv", "--quiet")
    assert "warning" not in result.stderr


def test_score_warns_when_far_more_than_alpha_is_flagged(bundle_dir: Path, tmp_path: Path) -> None:
    """Events of another kind that share a few of the model's fields (NSL-KDD's, to a model of the
    demo's) were all flagged at α = 0.01 without a word: no coverage warning, as some fields are there."""
    other = [
        {
            "class_uid": 4001,
            "activity_id": 6,
            "time": 1_700_000_000_000 + n,
            "connection_info": {"protocol_name": "tcp"},
            "dst_endpoint": {"svc_name": "ftp_data"},
            "traffic": {"bytes_out": 491 * n, "bytes_in": 0, "bytes": 491 * n},
            "unmapped": {"count": n % 7, "serror_rate": 0},
        }
        for n in range(200)
    ]
    source = _write_jsonl(tmp_path / "other.jsonl", other)
    result = _run("score", "--model", bundle_dir, source, "--output", tmp_path / "out.csv", "--quiet")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1, result.stderr
    flagged = sum(row.endswith(",true") for row in (tmp_path / "out.csv").read_text().splitlines())
    assert warnings[0].startswith(
        f"warning: {flagged} of the 200 events flagged ({flagged / 200:.1%}), far above α = 0.01: these "
        "events are unlike those the model was trained on"
    ), warnings[0]
    assert "`ocsf-anomaly refresh`" in warnings[0]
    # at an α that makes this many flags expected, or for events like the model's, no warning
    wide = _run("score", "--model", bundle_dir, source, "--output", tmp_path / "out.csv", "--alpha", "0.5")
    assert wide.returncode == 0, wide.stderr
    assert "far above α" not in wide.stderr


# ------------------------------------------------------------------ where nothing can be written
def _mounted(mount: str, *args: str | Path, after: str = "") -> subprocess.CompletedProcess[str]:
    """The command run in a mount namespace of its own, after ``mount`` and before ``after`` (shell;
    its output goes to stdout, the command's status is kept): the tests run as root, whom file modes
    do not stop, while a read-only or full mount stops anyone."""
    command = " ".join(f"'{a}'" for a in [sys.executable, "-m", "scorer.cli", *map(str, args)])
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        reason = f"no mount namespace here (unshare -m: {probe.stderr.decode().strip()}); needs root"
        if os.environ.get("CI") == "true":  # CI runs as root: its absence there is a failure
            pytest.fail(f"CI=true: {reason}")
        pytest.skip(reason)
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "TQDM_DISABLE": "1"}
    return subprocess.run(
        [
            "unshare",
            "-m",
            "sh",
            "-c",
            f"{mount} && {{ {command}; status=$?; {after or ':'}; exit $status; }}",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=300,
    )


def _read_only(directory: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    d = f"'{directory}'"
    return _mounted(f"mount --bind {d} {d} && mount -o remount,bind,ro {d} {d}", *args)


@pytest.mark.parametrize("command", ["train", "score", "report", "split"])
def test_an_output_where_nothing_can_be_written_is_refused_before_the_work(
    command: str, labelled: tuple[Path, Path], bundle_dir: Path, tmp_path: Path
) -> None:
    """`train --output` on a read-only file system trained for the whole run, then failed writing;
    `split --output DIR`, DIR read-only in a directory that takes files, split and then failed."""
    events, labels = labelled
    locked = tmp_path / "locked"
    locked.mkdir()
    args = {
        "train": ("train", events, "--output", locked / "m"),
        "score": ("score", events, "--model", bundle_dir, "--output", locked / "out.csv"),
        "report": ("report", events, "--output", locked / "report.html"),
        "split": ("split", events, "--labels", labels, "--output", locked),
    }[command]
    result = _read_only(locked, *args)
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert f"{locked} does not take new files" in last, result.stderr
    assert "training" not in result.stderr  # refused before the work
    assert "reading" not in result.stderr
    assert list(locked.iterdir()) == []


def test_an_output_in_proc_is_refused_though_root_may_write_anywhere(
    labelled: tuple[Path, Path], bundle_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The check read the directory's permissions, which let root write anywhere: `score --output
    /proc/scored.csv` (and `score-spark`'s OUTPUT) scored the whole input, then failed writing."""
    events, _ = labelled
    with pytest.raises(SystemExit) as stopped:
        main(["score", str(events), "--model", str(bundle_dir), "--output", "/proc/scored.csv"])
    assert stopped.value.code == 2
    assert "'/proc/scored.csv' cannot be written: /proc does not take new files" in capsys.readouterr().err


def test_train_register_into_a_registry_that_cannot_be_written_is_refused_before_training(
    labelled: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It trained, then failed to register with SQLAlchemy's "attempt to write a readonly database"
    and an autoflush hint."""
    from scorer.registry import Registry

    events, _ = labelled
    home = tmp_path / "home"
    Registry(f"sqlite:///{home / 'mlflow' / 'mlflow.db'}")  # an existing local registry
    monkeypatch.setenv("OCSF_ANOMALY_HOME", str(home))
    result = _read_only(home, "train", events, "--register", "demo", "--epochs", "1")
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the registry at sqlite:///"), result.stderr
    assert "cannot be written" in last
    assert "training" not in result.stderr


@pytest.mark.parametrize("command", ["train", "score"])
def test_a_full_disk_names_the_output_and_leaves_nothing(
    command: str, labelled: tuple[Path, Path], bundle_dir: Path, tmp_path: Path
) -> None:
    """A write that fails names no file: the error said "No space left on device" and no more."""
    events, _ = labelled
    full = tmp_path / "full"
    full.mkdir()
    output = full / ("out.jsonl" if command == "score" else "model")
    args = {
        "train": ("train", events, "--output", output, "--epochs", "1", "--quiet"),
        "score": ("score", events, "--model", bundle_dir, "--output", output, "--quiet"),
    }[command]
    result = _mounted(f"mount -t tmpfs -o size=64k tmpfs '{full}'", *args, after=f"ls -A '{full}'")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"error: No space left on device: {output}"
    assert "Traceback" not in result.stderr
    assert result.stdout == ""  # the full place holds nothing the command began


def test_running_out_of_memory_is_one_line(
    bundle_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """numpy's MemoryError (evaluate's baselines on a path unique per event, under `ulimit -v`, in
    the review) ended the command in a traceback. The scoring is replaced by one that runs out of
    memory: main()'s handling is what is tested."""
    from scorer import batch

    def out_of_memory(*args: Any, **kwargs: Any) -> Any:
        raise MemoryError("Unable to allocate 4.7 GiB for an array with shape (20000, 62000)")

    monkeypatch.setattr(batch, "score_file", out_of_memory)
    events = _write_jsonl(tmp_path / "e.jsonl", generate_events(10, seed=1)[0])
    code = main(["score", str(events), "-m", str(bundle_dir), "-o", str(tmp_path / "out.csv")])
    said = capsys.readouterr().err
    assert code == 2
    assert said.strip() == "error: out of memory: give the command more memory, or fewer or smaller inputs"
