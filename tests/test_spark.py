"""`score-spark`: a real PySpark in local mode (local[2], a real JVM) scores NSL-KDD events from
``../shared/data`` as the file scorer does, JSON Lines and nested Parquet, partitioned lakes, a corrupt
line and one not UTF-8, a scored lake scored again, an empty partitioned lake, and the command line (a
registry URI, spark-submit, a bad bundle refused before Spark starts)."""

from __future__ import annotations

import collections
import csv
import datetime as dt
import gzip
import io
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from altered import altered_bundle

from scorer.batch import score_file
from scorer.paths import shared_data_dir

NSL = shared_data_dir() / "nsl_kdd_ocsf"
N_EVENTS = 3_000

needs_java = pytest.mark.skipif(
    shutil.which("java") is None, reason="Java 17 (Debian package openjdk-17-jre-headless) not found"
)
needs_nsl = pytest.mark.skipif(
    not (NSL / "dev.jsonl.gz").exists(),
    reason=f"NSL-KDD OCSF events not found in {NSL} (set OCSF_ANOMALY_SHARED_DATA)",
)

Event = dict[str, Any]


@pytest.fixture(scope="module")
def nsl_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small model of NSL-KDD's normal training traffic (3,000 events, one epoch)."""
    from scorer.detector import Detector, DetectorConfig
    from scorer.model import TrainConfig
    from scorer.threads import set_threads

    with gzip.open(NSL / "train_normal.jsonl.gz", "rb") as handle:
        train = [orjson.loads(line) for line in itertools.islice(handle, N_EVENTS)]
    set_threads(1)
    detector = Detector.fit(
        train,
        config=DetectorConfig(baseline_size=1_000, seed=0),
        train_config=TrainConfig(epochs=1, max_rows=2_000, seed=0),
        progress=False,
    )
    return detector.save(tmp_path_factory.mktemp("nsl") / "model")


@pytest.fixture(scope="module")
def dev_lines() -> list[bytes]:
    """The first 3,000 events of NSL-KDD's dev half (captured apart from training), as JSON lines."""
    with gzip.open(NSL / "dev.jsonl.gz", "rb") as handle:
        return [line.rstrip(b"\n") for line in itertools.islice(handle, N_EVENTS)]


@pytest.fixture(scope="module")
def spark() -> Any:
    from scorer import spark as lake

    session = lake.session("local[2]", batch_size=500)
    yield session
    session.stop()


@pytest.fixture(scope="module")
def lake_bundles(bundle_dir: Path, other_bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The shared bundle and its recalibrated twin (another version), each under a name of its own:
    the module's session ships the NSL-KDD `model` already, and Spark ships a name from one path."""
    root = tmp_path_factory.mktemp("lake-bundles")
    return Path(shutil.copytree(bundle_dir, root / "lake-model")), Path(
        shutil.copytree(other_bundle_dir, root / "lake-model-2")
    )


def _file_scores(model: Path, source: Path, tmp_path: Path) -> dict[str, Event]:
    """What `ocsf-anomaly score` writes for ``source``, by metadata.uid."""
    scored = tmp_path / "file-scored.jsonl"
    score_file(model, source, scored, workers=1, progress=False)
    return {e["metadata"]["uid"]: e for e in map(orjson.loads, scored.read_bytes().splitlines())}


def _assert_same_scores(expected: dict[str, Event], got: dict[str, dict[str, Any]]) -> None:
    assert got.keys() == expected.keys()
    for uid, event in expected.items():
        want, have = event["anomaly"], got[uid]
        assert abs(want["score"] - have["score"]) <= 1e-4, uid
        assert abs(want["p_value"] - have["p_value"]) <= 1e-4, uid
        assert want["is_anomaly"] == have["is_anomaly"], uid
        assert [r["field"] for r in want["reasons"]] == [r["field"] for r in have["reasons"]], uid
        assert want["model"] == have["model"]
    assert (
        sum(e["anomaly"]["is_anomaly"] for e in expected.values()) > 50
    )  # the comparison covers verdicts both ways


@needs_java
@needs_nsl
def test_a_partitioned_json_lake_is_scored_as_the_file_scorer_scores_it(
    spark: Any, nsl_model: Path, dev_lines: list[bytes], tmp_path: Path
) -> None:
    from scorer import spark as lake

    lake_dir = tmp_path / "lake"
    halves = {"day=2026-12-01": dev_lines[:1_500], "day=2026-12-02": dev_lines[1_500:]}
    for part, lines in halves.items():
        (lake_dir / part).mkdir(parents=True)
        corrupt = [b'{"class_uid": 4001, "time": ', b""] if part.endswith("01") else []
        (lake_dir / part / "events.jsonl").write_bytes(
            b"\n".join([*lines[:700], *corrupt, *lines[700:]]) + b"\n"
        )
    flat = tmp_path / "flat.jsonl"
    flat.write_bytes(b"\n".join(dev_lines) + b"\n")
    output = tmp_path / "scored"

    stats = lake.score_lake(
        spark, nsl_model, lake.verify_bundle(nsl_model), str(lake_dir), str(output), partitions=3
    )

    assert (stats.output_format, stats.events, stats.errors) == ("json", N_EVENTS + 2, 2)
    assert sorted(p.name for p in output.iterdir() if p.is_dir()) == sorted(halves)
    parts = sorted(output.glob("*/part-*"))
    assert parts
    assert all(p.suffix == ".jsonl" for p in parts)
    written = [orjson.loads(line) for p in parts for line in p.read_bytes().splitlines()]
    bad = [e for e in written if "_raw" in e]
    assert sorted((e["_raw"], e["anomaly"]["error"].split(":")[0]) for e in bad) == [
        ("", "empty line"),
        ('{"class_uid": 4001, "time": ', "invalid JSON"),
    ]
    events = {e["metadata"]["uid"]: e for e in written if "_raw" not in e}
    originals = {e["metadata"]["uid"]: e for e in map(orjson.loads, dev_lines)}
    for uid, event in events.items():  # every event as it came, nested, plus `anomaly`
        assert {k: v for k, v in event.items() if k != "anomaly"} == originals[uid]
    _assert_same_scores(_file_scores(nsl_model, flat, tmp_path), {u: e["anomaly"] for u, e in events.items()})

    with next(Path(stats.summary).glob("part-*.csv")).open() as handle:
        rows = list(csv.DictReader(handle))
    assert sum(int(r["events"]) for r in rows) == N_EVENTS + 2
    assert (
        sum(int(r["anomalies"]) for r in rows)
        == stats.anomalies
        == sum(e["anomaly"]["is_anomaly"] for e in events.values())
    )
    assert sum(int(r["errors"]) for r in rows) == 2
    assert {r["class_uid"] for r in rows} == {"4001", ""}

    with pytest.raises(lake.SparkJobError, match="--overwrite replaces it"):
        lake.score_lake(spark, nsl_model, lake.verify_bundle(nsl_model), str(lake_dir), str(output))


@needs_java
@needs_nsl
def test_nested_parquet_in_nested_parquet_out(
    spark: Any, nsl_model: Path, dev_lines: list[bytes], tmp_path: Path
) -> None:
    from pyspark.sql.pandas.types import from_arrow_type

    from scorer import spark as lake

    events = [orjson.loads(line) for line in dev_lines]
    for event in events[::2]:  # a vendor's field of another case (Spark refused the lake: `hot` exists)
        event["unmapped"]["Hot"] = 50
    lake_dir = tmp_path / "lake"
    for i, part in enumerate(("eventDay=20261201", "eventDay=20261202")):
        (lake_dir / part).mkdir(parents=True)
        pq.write_table(
            pa.Table.from_pylist(events[i * 1_500 : (i + 1) * 1_500]), lake_dir / part / "a.parquet"
        )
    flat = tmp_path / "flat.parquet"
    pq.write_table(pa.Table.from_pylist(events), flat)
    output = tmp_path / "scored"

    stats = lake.score_lake(spark, nsl_model, lake.verify_bundle(nsl_model), str(lake_dir), str(output))

    assert (stats.output_format, stats.events, stats.errors) == ("parquet", N_EVENTS, 0)
    assert sorted(p.name for p in output.iterdir() if p.is_dir()) == [
        "eventDay=20261201",
        "eventDay=20261202",
    ]
    assert spark.read.parquet(str(output)).schema["anomaly"].dataType == from_arrow_type(lake.ANOMALY)
    table = ds.dataset(output, format="parquet", partitioning="hive").to_table()
    assert table.schema.field("metadata").type == pa.Table.from_pylist(events).schema.field("metadata").type
    rows = {r["metadata"]["uid"]: r for r in table.to_pylist()}
    by_uid = {e["metadata"]["uid"]: e for e in events}
    for uid, row in rows.items():
        assert row["metadata"]["product"]["name"] == by_uid[uid]["metadata"]["product"]["name"] == "NSL-KDD"
        assert row["unmapped"]["dst_host_count"] == by_uid[uid]["unmapped"]["dst_host_count"]
        assert (row["unmapped"]["hot"], row["unmapped"]["Hot"]) == (
            by_uid[uid]["unmapped"]["hot"],
            by_uid[uid]["unmapped"].get("Hot"),
        )
        for reason in row["anomaly"]["reasons"]:  # JSON text in a string column
            assert isinstance(orjson.loads(reason["value"]), int | float | str)
    assert sum(len(r["anomaly"]["reasons"]) for r in rows.values()) > 100
    _assert_same_scores(_file_scores(nsl_model, flat, tmp_path), {u: r["anomaly"] for u, r in rows.items()})


# ---------------------------------------------------------------------------------- the command line
def _cli(*args: str | Path, env: dict[str, str] | None = None, tool: list[str] | None = None) -> Any:
    command = tool or [sys.executable, "-m", "scorer.cli", "score-spark"]
    return subprocess.run(
        [*command, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        check=False,
    )


def _refused_in_process(capsys: pytest.CaptureFixture[str], *args: str | Path) -> str:
    """``score-spark`` run in this process (what it refuses, it refuses before Spark starts: no JVM to
    start, so no process either), expected to exit 2; what it said."""
    from scorer.cli import main

    capsys.readouterr()
    assert main(["score-spark", *map(str, args)]) == 2
    said = capsys.readouterr().err
    assert "starting Spark" not in said
    return said


def test_a_bad_bundle_input_or_output_fails_before_spark_starts(
    bundle_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"class_uid": 4001}\n')
    (tmp_path / "earlier").mkdir()
    (tmp_path / "stale-summary").mkdir()
    lake = tmp_path / "lake"
    for day in ("day=1", "day=2"):
        (lake / day).mkdir(parents=True)
        (lake / day / "events.jsonl").write_text('{"class_uid": 4001}\n')
    (tmp_path / "link").symlink_to(lake)
    # OUTPUT holding INPUT was not refused: --overwrite deleted the lake's other days, INPUT's files with
    # them; OUTPUT inside INPUT spelled another way was written into the lake, read as events next time
    outside = "write the scores to a directory outside INPUT that does not hold it"
    for args, message in [
        ([tmp_path / "nowhere.jsonl", tmp_path / "out"], "no such input"),
        ([source, tmp_path / "earlier"], "earlier exists: --overwrite replaces OUTPUT and OUTPUT-summary"),
        ([source, tmp_path / "stale"], "stale-summary exists"),
        ([lake / "day=1", lake, "--overwrite"], f"OUTPUT {lake} holds INPUT {lake / 'day=1'}: {outside}"),
        ([lake / "day=1", lake], f"holds INPUT {lake / 'day=1'}: {outside}"),
        ([lake, f"{tmp_path}/./lake/../lake/scored"], "lake/scored is inside INPUT"),
        ([lake, tmp_path / "link" / "scored"], "link/scored is inside INPUT"),
        ([lake, tmp_path / "link", "--overwrite"], "link is INPUT"),
        ([tmp_path / "earlier-summary", tmp_path / "earlier"], "OUTPUT-summary"),
        ([f"file://{lake}", f"file://{tmp_path}", "--overwrite"], f"OUTPUT file://{tmp_path} holds INPUT"),
        (["s3a://bucket/lake/day=1", "s3a://BUCKET//lake/", "--overwrite"], "holds INPUT"),
        # where no directory can be made: found once the JVM had started and the job had run
        ([lake, source / "scored"], f"cannot be written: {source} is a file, not a directory"),
        ([lake, source, "--overwrite"], f"'{source}' is a file: name a directory to write"),
    ]:
        if args[0] == tmp_path / "earlier-summary":
            args[0].mkdir()
        said = _refused_in_process(capsys, "--model", bundle_dir, *args)
        assert message in said, said
    assert sorted(p.relative_to(lake).as_posix() for p in lake.rglob("*")) == [
        "day=1",
        "day=1/events.jsonl",
        "day=2",
        "day=2/events.jsonl",
    ]
    assert "no model bundle at" in _refused_in_process(
        capsys, "--model", tmp_path / "nowhere", source, tmp_path / "out"
    )

    altered = altered_bundle(bundle_dir, tmp_path / "altered")
    result = _cli("--model", altered, source, tmp_path / "out")
    assert result.returncode == 2, result.stderr
    assert "weights.npz" in result.stderr
    assert "starting Spark" not in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def _registered(bundle_dir: Path, directory: Path) -> dict[str, str]:
    """``bundle_dir`` registered as models:/lake-model@champion in a store of its own in ``directory``:
    the environment that names it."""
    from scorer.registry import Registry

    directory.mkdir(exist_ok=True)
    store = f"sqlite:///{directory / 'mlflow.db'}"
    Registry(store).register(bundle_dir, "lake-model")  # the first version becomes champion
    return {"OCSF_ANOMALY_REGISTRY_URI": store, "PYTHONWARNINGS": "ignore"}


def _assert_scored_by(result: Any, output: Path, bundle_dir: Path, n: int) -> None:
    """``result`` scored ``n`` events into ``output`` with models:/lake-model@champion (``bundle_dir``)
    and printed the summary."""
    from scorer.detector import Detector

    said = result.stderr + result.stdout  # spark-submit passes the driver's stderr to its stdout
    assert result.returncode == 0, said[-3000:]
    assert "downloading models:/lake-model/1" in said
    assert f"scored {n} events" in said
    assert "class_uid" in result.stdout  # the summary's rows
    written = [
        orjson.loads(line) for p in output.glob("part-*.jsonl") for line in p.read_bytes().splitlines()
    ]
    version = Detector.load(bundle_dir).model_info["version"]
    assert len(written) == n
    assert all(e["anomaly"]["model"]["version"] == version for e in written)
    assert output.with_name(output.name + "-summary").is_dir()


@needs_java
def test_spark_submit_scores_a_registered_model_and_prints_the_summary(
    bundle_dir: Path, held_out_events: list[Event], tmp_path: Path
) -> None:
    """The job as spark-submit runs it (`ocsf-anomaly score-spark` itself: the failed run's test)."""
    import scorer.spark

    source = tmp_path / "events.jsonl"
    source.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in held_out_events[:300]))
    output = tmp_path / "scored"
    env = _registered(bundle_dir, tmp_path)
    bin_dir = Path(sys.executable).parent
    env |= {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYSPARK_PYTHON": sys.executable}
    tool = [str(bin_dir / "spark-submit"), "--master", "local[2]", scorer.spark.__file__]
    result = _cli("--model", "models:/lake-model@champion", source, output, env=env, tool=tool)
    _assert_scored_by(result, output, bundle_dir, 300)


@needs_java
def test_an_event_nested_as_deep_as_can_be_read_is_scored_and_written_whole(
    spark: Any, bundle_dir: Path, held_out_events: list[Event], tmp_path: Path
) -> None:
    """orjson writes 254 levels and reads 1,024: one event nested 300 levels failed the whole job
    (JSONEncodeError in a worker); one nested 1,020 levels then became a bad record with its text.
    Every event read is written through the standard library, as `score` writes it."""
    from scorer import spark as lake

    bundle = Path(shutil.copytree(bundle_dir, tmp_path / "deep-bundle"))  # this session ships a `model`
    deep = '{"class_uid": 4001, "deep": ' + '{"a":' * 300 + "1" + "}" * 300 + "}"
    deeper = '{"class_uid": 4001, "deeper": ' + '{"a":' * 1_020 + "1" + "}" * 1_020 + "}"
    source = tmp_path / "events.jsonl"
    source.write_text("\n".join([json.dumps(held_out_events[0]), deep, deeper]) + "\n")
    output = tmp_path / "scored"

    stats = lake.score_lake(spark, bundle, lake.verify_bundle(bundle), str(source), str(output))

    assert (stats.events, stats.errors) == (3, 0)
    lines = [line for p in output.glob("part-*.jsonl") for line in p.read_bytes().splitlines()]
    written = {next(k for k in ("deep", "deeper", "metadata") if k in e): e for e in map(orjson.loads, lines)}
    assert written["metadata"]["metadata"] == held_out_events[0]["metadata"]
    for key, levels in (("deep", 300), ("deeper", 1_020)):
        assert "score" in written[key]["anomaly"]
        inner, depth = written[key][key], 0
        while isinstance(inner, dict):
            inner, depth = inner["a"], depth + 1
        assert (depth, inner) == (levels, 1)


@needs_java
def test_a_line_that_is_not_utf8_is_a_bad_line_written_as_score_writes_it(
    spark: Any, lake_bundles: tuple[Path, Path], held_out_events: list[Event], tmp_path: Path
) -> None:
    """One line with a byte that is not UTF-8 (a Latin-1 é) failed the whole job: a UnicodeDecodeError
    in a worker, some 220 lines of traces and no output. It is one bad line now, with the `_raw` text
    and the error `score` writes for it, and the job goes on. A CR inside a line (JSON whitespace)
    split it in two bad lines, as Hadoop's line reader ends a line there too: lines end at LF now, a
    CR before it is not part of the line (CRLF files), as `score` reads them. The summary's day of an
    event whose `time` is epoch milliseconds as text (or ISO 8601 text) was empty (read as a number);
    one far beyond year 9999 failed the summary (DATETIME_OVERFLOW) after the job."""
    from scorer import spark as lake

    bundle, _ = lake_bundles
    latin1 = b'{"class_uid": 4002, "severity": "Informational\xe9", "time": 1700841688897}\r'
    events = [dict(e) for e in held_out_events[:20]]
    events[7]["time"] = str(events[7]["time"])
    moment = dt.datetime.fromtimestamp(events[8]["time"] / 1000, tz=dt.UTC)
    events[8]["time"] = moment.isoformat().replace("+00:00", "Z")
    events[9]["time"] = 2**63 - 1  # no day
    good = [orjson.dumps(e) for e in events]
    good[0] = b"\xef\xbb\xbf" + good[0]  # a UTF-8 byte order mark opening the file
    good[3] = good[3].replace(b',"', b',\r"', 1)
    good[5] += b"\r"
    source = tmp_path / "events.jsonl"
    source.write_bytes(b"\n".join([*good[:10], latin1, *good[10:]]) + b"\n")
    output = tmp_path / "scored"

    stats = lake.score_lake(spark, bundle, lake.verify_bundle(bundle), str(source), str(output))

    assert (stats.events, stats.errors) == (21, 1)
    written = [
        orjson.loads(line) for p in output.glob("part-*.jsonl") for line in p.read_bytes().splitlines()
    ]
    bad = [e for e in written if "_raw" in e]
    score_file(bundle, source, tmp_path / "file-scored.jsonl", workers=1, progress=False)
    by_score = map(orjson.loads, (tmp_path / "file-scored.jsonl").read_bytes().splitlines())
    expected = [e for e in by_score if "_raw" in e]
    assert len(bad) == len(expected) == 1
    assert bad[0]["_raw"] == expected[0]["_raw"] == latin1[:-1].decode("utf-8", "replace")
    assert bad[0]["anomaly"]["error"] == expected[0]["anomaly"]["error"]
    assert bad[0]["anomaly"]["error"].startswith("invalid JSON: str is not valid UTF-8")
    uids = {e["metadata"]["uid"] for e in written if "_raw" not in e}
    assert uids == {e["metadata"]["uid"] for e in held_out_events[:20]}
    days = collections.Counter()
    for _, day, count, _, _ in stats.by_class_day:
        days[day] += count
    expected_days = collections.Counter(
        dt.datetime.fromtimestamp(e["time"] / 1000, tz=dt.UTC).date().isoformat()
        for e in held_out_events[:20]
        if e is not held_out_events[9]
    )
    assert days == expected_days + collections.Counter({None: 2})  # event 9's and the bad line's


def _verdicts(output: Path) -> dict[str, dict[str, Any]]:
    table = ds.dataset(output, format="parquet", partitioning="hive").to_table()
    return {row["metadata"]["uid"]: row["anomaly"] for row in table.to_pylist()}


@needs_java
def test_a_scored_parquet_lake_is_scored_again_its_anomaly_column_replaced(
    spark: Any, lake_bundles: tuple[Path, Path], held_out_events: list[Event], tmp_path: Path
) -> None:
    """Re-scoring a scored Parquet lake after a model change failed: a second `anomaly` column,
    [COLUMN_ALREADY_EXISTS], with a hint that --overwrite replaces it (it gave the same error). The
    column is replaced now, with the new model's verdicts, as a JSON lake's key is."""
    from pyspark.sql.pandas.types import from_arrow_type

    from scorer import spark as lake

    first_model, new_model = lake_bundles
    new_version = lake.verify_bundle(new_model)
    lake_dir = tmp_path / "lake"
    table = pa.Table.from_pylist(held_out_events[:200])  # one schema (a file's own may lack a field)
    for i, part in enumerate(("eventDay=20261201", "eventDay=20261202")):
        (lake_dir / part).mkdir(parents=True)
        pq.write_table(table.slice(i * 100, 100), lake_dir / part / "a.parquet")
    scored, rescored, fresh = tmp_path / "scored", tmp_path / "rescored", tmp_path / "fresh"
    lake.score_lake(spark, first_model, lake.verify_bundle(first_model), str(lake_dir), str(scored))
    lake.score_lake(spark, new_model, new_version, str(lake_dir), str(fresh))

    stats = lake.score_lake(spark, new_model, new_version, str(scored), str(rescored))

    assert (stats.output_format, stats.events, stats.errors) == ("parquet", 200, 0)
    schema = spark.read.parquet(str(rescored)).schema
    assert [f.name for f in schema.fields].count("anomaly") == 1
    assert schema["anomaly"].dataType == from_arrow_type(lake.ANOMALY)
    assert sorted(p.name for p in rescored.iterdir() if p.is_dir()) == sorted(
        p.name for p in lake_dir.iterdir()
    )
    before, after, expected = _verdicts(scored), _verdicts(rescored), _verdicts(fresh)
    assert after.keys() == expected.keys() == before.keys()
    assert len(after) == 200
    for uid, want in expected.items():  # the new model's verdicts, as if the events were scored afresh
        have = after[uid]
        assert have["model"]["version"] == new_version != before[uid]["model"]["version"]
        assert abs(have["score"] - want["score"]) <= 1e-6, uid
        assert (have["is_anomaly"], have["calibration_group"]) == (
            want["is_anomaly"],
            want["calibration_group"],
        )
        assert [r["field"] for r in have["reasons"]] == [r["field"] for r in want["reasons"]], uid

    again = lake.score_lake(spark, new_model, new_version, str(scored), str(rescored), overwrite=True)
    assert again.events == 200


@needs_java
def test_the_anomaly_field_setting_names_the_verdict_in_both_formats(
    spark: Any, lake_bundles: tuple[Path, Path], held_out_events: list[Event], tmp_path: Path
) -> None:
    """OCSF_ANOMALY_ANOMALY_FIELD: score-spark wrote `anomaly` whatever it said, over an event's own
    field of that name (the consistency review); the summary counts the renamed verdicts."""
    from scorer import spark as lake

    field = "ml.verdict `v`"  # a dot and backticks: no column path of Spark's (the diff review)
    bundle_dir, _ = lake_bundles
    events = [{**e, "anomaly": "theirs"} for e in held_out_events[:100]]
    version = lake.verify_bundle(bundle_dir)
    (tmp_path / "json").mkdir()
    (tmp_path / "json" / "a.jsonl").write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events) + b"[1]\n")
    (tmp_path / "parquet").mkdir()
    pq.write_table(pa.Table.from_pylist(events), tmp_path / "parquet" / "a.parquet")
    for fmt in ("json", "parquet"):
        output = tmp_path / f"{fmt}-out"
        stats = lake.score_lake(spark, bundle_dir, version, str(tmp_path / fmt), str(output), field=field)
        assert (stats.events, stats.errors) == ((101, 1) if fmt == "json" else (100, 0))
        assert stats.anomalies == sum(a for _, _, _, a, _ in stats.by_class_day) > 0
        if fmt == "json":
            rows = [
                orjson.loads(line)
                for p in sorted(output.glob("part-*"))
                for line in p.read_bytes().splitlines()
            ]
            assert {"_raw": "[1]", field: {"error": "expected a JSON object, got an array"}} in rows
            rows = [r for r in rows if "_raw" not in r]
        else:
            rows = ds.dataset(output, format="parquet").to_table().to_pylist()
        assert len(rows) == 100
        assert all(r["anomaly"] == "theirs" and isinstance(r[field]["p_value"], float) for r in rows)


@needs_java
def test_a_lake_of_another_kind_is_warned_of_as_score_warns(
    spark: Any, lake_bundles: tuple[Path, Path], tmp_path: Path
) -> None:
    """score-spark said only "scored 300 events … 300 anomalies" of a lake holding none of the
    model's fields at an α its calibration cannot flag at, where `score` warns of all three (the
    consistency review): the same warnings now, worded as `score` words them."""
    from scorer import batch
    from scorer import spark as lake

    bundle_dir, _ = lake_bundles
    (tmp_path / "lake").mkdir()
    foreign = [{"message": f"login {i}", "user": f"u{i % 7}"} for i in range(300)]
    (tmp_path / "lake" / "a.jsonl").write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in foreign))
    file_said = io.StringIO()
    batch.score_file(
        bundle_dir,
        tmp_path / "lake" / "a.jsonl",
        tmp_path / "a.csv",
        alpha=1e-5,
        progress=False,
        errors=file_said,
    )
    said: list[str] = []
    version = lake.verify_bundle(bundle_dir)
    stats = lake.score_lake(
        spark, bundle_dir, version, str(tmp_path / "lake"), str(tmp_path / "out"), alpha=1e-5, log=said.append
    )
    assert (stats.events, stats.anomalies) == (300, 300)
    warnings = [line for line in said if line.startswith("warning: ")]
    assert warnings == [line for line in file_said.getvalue().splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 3, warnings


@needs_java
def test_an_input_of_no_events_is_refused_as_score_refuses_it(
    spark: Any, lake_bundles: tuple[Path, Path], held_out_events: list[Event], tmp_path: Path
) -> None:
    """Inputs that hold no event were "scored" and the command succeeded: an empty file or lake, "scored
    0 events"; gzip not named .gz, UTF-16 text, Parquet not named .parquet, lines none of which is an
    event: every line unscorable. Each is refused now, a file with what `score` says of it, and
    nothing is left of OUTPUT. A partitioned lake of no rows gets there too: Spark writes it no
    Parquet file (only _SUCCESS), and reading OUTPUT back for the summary once failed
    (UNABLE_TO_INFER_SCHEMA), a traceback."""
    from scorer import spark as lake

    bundle, _ = lake_bundles
    version = lake.verify_bundle(bundle)
    body = b"".join(orjson.dumps(e) + b"\n" for e in held_out_events[:20])
    (tmp_path / "lake" / "eventDay=1").mkdir(parents=True)
    pq.write_table(
        pa.Table.from_pylist(held_out_events[:10]).slice(0, 0), tmp_path / "lake" / "eventDay=1" / "z.parquet"
    )
    (tmp_path / "empty.jsonl").write_bytes(b"")
    (tmp_path / "gzip.jsonl").write_bytes(gzip.compress(body))
    (tmp_path / "utf16.jsonl").write_bytes(body.decode().encode("utf-16"))
    pq.write_table(pa.Table.from_pylist(held_out_events[:20]), tmp_path / "parquet.data")
    (tmp_path / "arrays").mkdir()
    (tmp_path / "arrays" / "a.jsonl").write_bytes(b"[1]\n[2]\n")
    for source, message in [
        ("lake", f"{tmp_path / 'lake'} holds no event: its files hold no rows"),
        ("empty.jsonl", f"{tmp_path / 'empty.jsonl'} is empty: it holds no event"),
        ("gzip.jsonl", "it holds gzip data: name it .gz"),
        ("utf16.jsonl", "it is UTF-16 text (as Windows PowerShell's > writes): save it as UTF-8"),
        ("parquet.data", "it is Parquet: name it .parquet"),
        (
            "arrays",
            f"no row of {tmp_path / 'arrays'} could be scored (2 read; the first: expected a JSON object, "
            "got an array): is it JSON Lines, one OCSF event (a JSON object) per line?",
        ),
    ]:
        output = tmp_path / f"{source}-scored"
        with pytest.raises(lake.SparkJobError, match=re.escape(message)):
            lake.score_lake(spark, bundle, version, str(tmp_path / source), str(output))
        assert not output.exists()
        assert not Path(lake.summary_path(str(output))).exists()


@needs_java
@pytest.mark.parametrize("order", ["ticket-first", "note-first"])
def test_files_of_a_lake_that_hold_different_fields_keep_them_all(
    spark: Any,
    lake_bundles: tuple[Path, Path],
    held_out_events: list[Event],
    tmp_path: Path,
    order: str,
) -> None:
    """One day's files held a field the other's lacked (an optional OCSF field). Spark read the
    lake with one file's columns, so the other field was left out of its events and of the output,
    and a column not in the first file was taken for a partition column: the write failed
    (INVALID_PARTITION_COLUMN_DATA_TYPE), or the lake was partitioned on it."""
    from scorer import spark as lake

    bundle, _ = lake_bundles
    days = ("eventDay=20261201", "eventDay=20261202")
    fields = ("ticket", "note") if order == "ticket-first" else ("note", "ticket")
    events = []
    for i, (day, field) in enumerate(zip(days, fields, strict=True)):
        part = [{**e, field: f"{field}-{j}"} for j, e in enumerate(held_out_events[i * 100 : (i + 1) * 100])]
        (tmp_path / "lake" / day).mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(part), tmp_path / "lake" / day / "a.parquet")
        events += part
    output = tmp_path / "scored"

    stats = lake.score_lake(spark, bundle, lake.verify_bundle(bundle), str(tmp_path / "lake"), str(output))

    assert (stats.events, stats.errors) == (200, 0)
    assert sorted(p.name for p in output.iterdir() if p.is_dir()) == list(days)  # partitioned as it was
    rows = {
        r["metadata"]["uid"]: r
        for r in ds.dataset(output, format="parquet", partitioning="hive").to_table().to_pylist()
    }
    for event in events:  # each field where it was, and nowhere else
        row = rows[event["metadata"]["uid"]]
        assert (row["ticket"], row["note"]) == (event.get("ticket"), event.get("note"))
    expected = {  # what `score` makes of each file
        uid: event
        for day in days
        for uid, event in _file_scores(bundle, tmp_path / "lake" / day / "a.parquet", tmp_path).items()
    }
    assert expected.keys() == rows.keys()
    for uid, event in expected.items():
        assert abs(rows[uid]["anomaly"]["score"] - event["anomaly"]["score"]) <= 1e-4, uid
        assert rows[uid]["anomaly"]["is_anomaly"] == event["anomaly"]["is_anomaly"], uid


@needs_java
def test_a_failed_run_leaves_nothing_and_says_which_file_in_one_line(
    bundle_dir: Path, held_out_events: list[Event], tmp_path: Path
) -> None:
    """A job that failed (here on a .gz cut short) left an empty OUTPUT directory, so that the rerun
    was refused ("exists"), and ended in a Py4JJavaError traceback. Now what the run made is removed
    and the error is one line naming the file; the rerun on mended input succeeds (with the model
    registered: `ocsf-anomaly score-spark --model models:/…` as a user runs it)."""
    env = _registered(bundle_dir, tmp_path / "registry")
    lake_dir = tmp_path / "lake"
    lake_dir.mkdir()
    text = b"".join(orjson.dumps(e) + b"\n" for e in held_out_events[:50])
    (lake_dir / "a.jsonl").write_bytes(text)
    whole = gzip.compress(text)
    (lake_dir / "b.jsonl.gz").write_bytes(whole[: len(whole) // 2])
    output = tmp_path / "scored"
    failed = _cli(
        "--model", bundle_dir, lake_dir, output, "--master", "local[2]", env={"PYTHONWARNINGS": "ignore"}
    )
    assert failed.returncode == 2, failed.stderr[-3000:]
    assert "Traceback" not in failed.stderr
    # the failed task's Java stack trace, some 150 lines from the executor and the task scheduler
    assert not [line for line in failed.stderr.splitlines() if line.startswith(("\tat ", "Caused by"))]
    assert "TaskSetManager" not in failed.stderr
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the Spark job failed: ")
    assert "b.jsonl.gz" in last
    assert last.endswith("(EOFException: Unexpected end of input stream)")  # why, not only which file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lake", "registry"]

    (lake_dir / "b.jsonl.gz").write_bytes(whole)
    again = _cli("--model", "models:/lake-model@champion", lake_dir, output, "--master", "local[2]", env=env)
    _assert_scored_by(again, output, bundle_dir, 100)


@needs_java
def test_a_lake_is_read_whole_at_any_depth_and_by_its_data_files_names(
    spark: Any, lake_bundles: tuple[Path, Path], held_out_events: list[Event], tmp_path: Path
) -> None:
    """Events under folders that are not key=value (dated/2023/11/) were not read: 0 events scored, and
    the command succeeded; a Parquet lake with a README.md at its top was read as JSON Lines (every
    event unscorable), a JSON lake's README as bad lines. Every data file is read now, at any depth,
    other files are not (and said so); a lake Spark would read in part, or whose files are of both
    kinds, is refused before any task runs, naming a file. A lake partitioned by class_uid (its files
    hold none) was scored without it, as partition columns are left out of the events: a field the
    model reads is put back now."""
    from scorer import spark as lake

    bundle, _ = lake_bundles
    version = lake.verify_bundle(bundle)
    lines = [orjson.dumps(e) + b"\n" for e in held_out_events[:30]]
    table = pa.Table.from_pylist(held_out_events[:30])

    def put(path: str, data: bytes | pa.Table) -> None:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, pa.Table):
            pq.write_table(data, tmp_path / path)
        else:
            (tmp_path / path).write_bytes(data)

    put("dated/2023/11/a.jsonl", b"".join(lines[:10]))
    put("dated/2023/12/late/b.JSONL.gz", gzip.compress(b"".join(lines[10:])))
    put("dated/README.md", b"# exported events\n")
    # partitioned by class_uid too, as Spark's and pyarrow's writers do it: the files hold no class_uid
    # (the events were scored without it: a feature, and their calibration group, changed)
    schema = table.schema.remove(table.schema.get_field_index("class_uid"))
    for folder, events in (
        ("eventDay=1/class_uid={}", held_out_events[:10]),
        ("eventDay=2/class_uid={}/hour", held_out_events[10:30]),
    ):
        for uid in {e["class_uid"] for e in events}:
            rows = [e for e in events if e["class_uid"] == uid]
            put(f"pq/{folder.format(uid)}/a.parquet", pa.Table.from_pylist(rows, schema=schema))
    put("pq/README.md", b"# exported events\n")
    for uid in {e["class_uid"] for e in held_out_events[:30]}:
        rows = [
            {k: v for k, v in e.items() if k != "class_uid"}
            for e in held_out_events[:30]
            if e["class_uid"] == uid
        ]
        put(f"jparts/class_uid={uid}/a.jsonl", b"".join(orjson.dumps(e) + b"\n" for e in rows))
    put("jparts/README.md", b"# exported events\n")
    said: list[str] = []

    for source, fmt, parts in [
        ("dated", "json", []),
        ("pq", "parquet", ["eventDay", "class_uid"]),
        ("jparts", "json", ["class_uid"]),
    ]:
        stats = lake.score_lake(
            spark, bundle, version, str(tmp_path / source), str(tmp_path / f"{source}-out"), log=said.append
        )
        assert (stats.output_format, stats.events, stats.errors) == (fmt, 30, 0)
        assert f"partitioned by {', '.join(parts) or 'nothing'}" in "\n".join(said)
        assert any(m.startswith("warning: not read") and m.endswith(": README.md") for m in said)
        said.clear()
    assert sorted(p.name for p in (tmp_path / "pq-out").iterdir() if p.is_dir()) == [
        "eventDay=1",
        "eventDay=2",
    ]
    written = [
        orjson.loads(line)
        for p in (tmp_path / "jparts-out").glob("*/part-*.jsonl")
        for line in p.read_bytes().splitlines()
    ]
    assert not [e for e in written if "class_uid" in e]  # each event as it came
    pq.write_table(table, tmp_path / "flat.parquet")
    flat = tmp_path / "flat.jsonl"
    flat.write_bytes(b"".join(lines))
    for got, source in [  # scored as `score` scores the same rows, class_uid and all
        (_verdicts(tmp_path / "pq-out"), tmp_path / "flat.parquet"),
        ({e["metadata"]["uid"]: e["anomaly"] for e in written}, flat),
    ]:
        expected = _file_scores(bundle, source, tmp_path)
        assert got.keys() == expected.keys()
        for uid, event in expected.items():
            want, have = event["anomaly"], got[uid]
            assert (have["calibration_group"], have["is_anomaly"]) == (
                want["calibration_group"],
                want["is_anomaly"],
            )
            assert abs(have["score"] - want["score"]) <= 1e-4, uid

    put("mixed/a.jsonl", lines[0])
    put("mixed/more/b.parquet", table.slice(0, 1))
    put("stray/day=1/a.jsonl", lines[0])
    put("stray/late/b.jsonl", lines[1])  # Spark refused the lake: CONFLICTING_DIRECTORY_STRUCTURES
    put("top/day=1/a.jsonl", lines[0])
    put("top/b.jsonl", lines[1])  # Spark left it out
    put("keys/day=1/a.jsonl", lines[0])
    put("keys/region=x/b.jsonl", lines[1])
    put("readme/README.md", b"# nothing yet\n")
    (tmp_path / "empty").mkdir()
    for source, message in [
        (
            "mixed",
            "holds Parquet (more/b.parquet) and JSON Lines (a.jsonl) files: score each kind apart (--format",
        ),
        ("stray", "(day=1/a.jsonl) but late/b.jsonl is not below folders of the same keys"),
        ("top", "(day=1/a.jsonl) but b.jsonl is not below"),
        ("keys", "(day=1/a.jsonl) but region=x/b.jsonl is not below"),
        ("readme", "no .parquet, .jsonl, .json, .ndjson or .gz file under"),
        ("empty", "no file to score under"),
    ]:
        with pytest.raises(lake.SparkJobError, match=re.escape(message)):
            lake.score_lake(spark, bundle, version, str(tmp_path / source), str(tmp_path / f"{source}-out"))
        assert not (tmp_path / f"{source}-out").exists()


@needs_java
def test_a_damaged_parquet_file_is_refused_in_one_line_naming_it(
    spark: Any, lake_bundles: tuple[Path, Path], held_out_events: list[Event], tmp_path: Path
) -> None:
    """A .parquet file that is not Parquet (cut short) ended in a Py4JJavaError traceback, after some
    200 lines of Java traces: its footer is read before any task runs. One line now, naming the file."""
    from scorer import spark as lake

    bundle, _ = lake_bundles
    (tmp_path / "lake").mkdir()
    pq.write_table(pa.Table.from_pylist(held_out_events[:10]), tmp_path / "lake" / "a.parquet")
    (tmp_path / "lake" / "b.parquet").write_bytes(b"PAR1 cut short")

    with pytest.raises(lake.SparkJobError) as failed:
        lake.score_lake(
            spark, bundle, lake.verify_bundle(bundle), str(tmp_path / "lake"), str(tmp_path / "out")
        )

    message = str(failed.value)
    assert message.startswith(f"cannot read {tmp_path / 'lake'}: ")
    assert message.endswith(
        f"(RuntimeException: file:{tmp_path / 'lake' / 'b.parquet'} is not a Parquet file. "
        "Expected magic number at tail, but found [104, 111, 114, 116])"
    )
    assert "\n" not in message
    assert not (tmp_path / "out").exists()
