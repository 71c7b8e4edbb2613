"""`report`: demo events scored by the real file scorer, the page rendered, then opened in Debian's
real Chromium (headless, driven by Playwright through its executable path; no browser is downloaded):
no console errors, no network, and its plots hold the counts the scored events give."""

from __future__ import annotations

import datetime as dt
import gzip
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scorer.batch import score_file
from scorer.report import collect, records, write_report

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="Chromium (Debian package chromium) not found"
)
# as root on a closed network: no sandbox, nothing fetched in the background
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

Event = dict[str, Any]


@pytest.fixture(scope="module")
def scored(bundle_dir: Path, train_events: list[Event], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four days of the demo company after the training period, 5% injected anomalies, scored by `score`."""
    from scorer.demo import generate_later

    events, _ = generate_later(train_events, 1_200, seed=1, anomaly_rate=0.05)
    work = tmp_path_factory.mktemp("report")
    source = work / "events.jsonl"
    source.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events) + b"not an event\n")
    output = work / "scored.jsonl"
    score_file(bundle_dir, source, output, workers=1, progress=False)
    return output


def _expected(scored: Path, day: str) -> dict[str, Any]:
    events = [e for e in map(orjson.loads, scored.read_bytes().splitlines()) if "_raw" not in e]
    on_day = [
        e for e in events if dt.datetime.fromtimestamp(e["time"] / 1000, tz=dt.UTC).date().isoformat() == day
    ]
    flagged = [e for e in on_day if e["anomaly"]["is_anomaly"]]
    return {
        "events": len(on_day),
        "anomalies": len(flagged),
        "by_hour": Counter(dt.datetime.fromtimestamp(e["time"] / 1000, tz=dt.UTC).hour for e in flagged),
        "rates": {
            f"{name} ({uid})": sum(e["anomaly"]["is_anomaly"] for e in on_day if e["class_uid"] == uid)
            / sum(e["class_uid"] == uid for e in on_day)
            for name, uid in {(e["class_name"], e["class_uid"]) for e in on_day}
        },
        "days": sorted(
            {dt.datetime.fromtimestamp(e["time"] / 1000, tz=dt.UTC).date().isoformat() for e in events}
        ),
    }


@needs_chromium
def test_the_page_renders_in_a_real_browser_with_the_expected_counts(
    scored: Path, bundle_dir: Path, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    page_path = tmp_path / "report.html"
    day, record = write_report(scored, page_path, bundle_dir=bundle_dir)
    expected = _expected(scored, day)
    assert day == expected["days"][-1]  # the latest day, by default
    assert (record.events, record.anomalies) == (expected["events"], expected["anomalies"])
    assert expected["anomalies"] > 3  # the plots below are not empty

    html = page_path.read_text()
    assert "<script src=" not in html
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page()
            problems: list[str] = []
            requests: list[str] = []
            page.on("console", lambda m: problems.append(m.text) if m.type in {"error", "warning"} else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_path.as_uri())
            page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 4", timeout=30_000)
            figures = page.evaluate(
                """() => Object.fromEntries(Array.from(document.querySelectorAll('[data-figure]')).map(
                    e => [e.id, e.data.map(t => ({name: t.name, x: Array.from(t.x), y: Array.from(t.y)}))]))"""
            )
            cards = page.evaluate(
                "[document.getElementById('n-events').textContent, document.getElementById('n-anomalies').textContent]"
            )
            top_rows = page.locator("#top tr").count() - 1
            entity_bars = figures["entities"][0]["x"]
        finally:
            browser.close()
    assert problems == []
    assert requests == [page_path.as_uri()]  # nothing fetched from anywhere
    assert cards == [f"{expected['events']:,}", f"{expected['anomalies']:,}"]

    hourly: Counter[int] = Counter()
    for trace in figures["hourly"]:
        for hour, n in zip(trace["x"], trace["y"], strict=True):
            hourly[hour] += n
    assert +hourly == expected["by_hour"]
    assert (
        sum(figures["distribution"][0]["y"]) == expected["events"]
    )  # the histogram holds every event of the day
    rates = dict(zip(figures["rate"][0]["x"], figures["rate"][0]["y"], strict=True))
    assert rates == pytest.approx(expected["rates"])
    assert sum(rates.values()) > 0
    assert top_rows == min(25, expected["anomalies"])
    assert sum(entity_bars) >= expected["anomalies"]  # demo events name users, hosts and addresses


def test_a_chosen_day_missing_fields_and_bad_input_are_said_plainly(scored: Path, tmp_path: Path) -> None:
    days = _expected(scored, "")["days"]
    day, record = write_report(scored, tmp_path / "first.html", day=days[0])
    assert (day, record.events) == (days[0], _expected(scored, days[0])["events"])
    assert record.errors == 0  # the bad line has no time: it is counted nowhere near a day

    # events without entity fields (NSL-KDD-like network records): the section says so
    bare = tmp_path / "bare.jsonl"
    kept = ("time", "class_uid", "class_name", "anomaly", "metadata")
    bare.write_bytes(
        b"".join(
            orjson.dumps({k: v for k, v in e.items() if k in kept}) + b"\n"
            for e in map(orjson.loads, scored.read_bytes().splitlines())
            if "_raw" not in e
        )
    )
    write_report(bare, tmp_path / "bare.html")
    text = (tmp_path / "bare.html").read_text()
    assert "carry none of the entity fields" in text
    assert "No bundle given (--model)" in text

    cli = [sys.executable, "-m", "scorer.cli", "report"]
    for args, message in [
        (
            [scored, "--day", "1999-01-01"],
            f"no scored events on 1999-01-01; the data holds scored events from {days[0]} to {days[-1]}",
        ),
        ([scored, "--day", "yesterday"], "is not a date: YYYY-MM-DD"),
        ([tmp_path / "nothing-here"], "no scored events at"),
    ]:
        result = subprocess.run(
            [*cli, *map(str, args), "--output", str(tmp_path / "x.html")],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
        assert result.returncode == 2, result.stderr
        assert message in result.stderr
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "x.html").exists()


def _report(*args: Path | str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scorer.cli", "report", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )


def test_events_that_carry_no_score_are_refused_and_a_bad_score_is_not_counted(
    scored: Path, tmp_path: Path
) -> None:
    """Unscored events gave an empty report and exit 0; a score that is text ended in "could not
    convert string to float"."""
    events = [e for e in map(orjson.loads, scored.read_bytes().splitlines()) if "_raw" not in e]
    unscored = tmp_path / "unscored.jsonl"
    unscored.write_bytes(
        b"".join(orjson.dumps({k: v for k, v in e.items() if k != "anomaly"}) + b"\n" for e in events)
    )
    result = _report(unscored, "--output", tmp_path / "unscored.html")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: no scored event with a time: {len(events):,} events carry no score (or an error in its "
        "place) and 0 lines are not events or have no `time`. The report reads events that "
        "`ocsf-anomaly score`, `score-spark` or the service enriched: score them first"
    )
    assert not (tmp_path / "unscored.html").exists()

    odd = [dict(e) for e in events]
    unscorable = [
        ("score", "high"),
        ("score", "1e999"),
        ("score", True),
        ("p_value", "0.01"),
        ("is_anomaly", "false"),
    ]
    for event, (key, bad) in zip(odd, unscorable, strict=False):
        event["anomaly"] = {**event["anomaly"], key: bad}
    odd[10]["anomaly"] = {**odd[10]["anomaly"], "model": "v1", "threshold": True}  # read as absent
    mixed = tmp_path / "odd-scores.jsonl"
    mixed.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in odd))
    scored_days = collect(records(mixed))
    assert sum(r.events for r in scored_days.values()) == len(events) - len(unscorable)
    assert sum(r.errors for r in scored_days.values()) == len(unscorable)
    assert sum(r.models[("?", "?")] for r in scored_days.values()) == 1
    result = _report(mixed, "--output", tmp_path / "odd.html")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("written", ["iso", "milliseconds"])
def test_time_as_text_is_read_as_the_encoder_reads_it(scored: Path, written: str) -> None:
    """ISO 8601 is what `score` writes for a Parquet timestamp column, and some producers write
    epoch milliseconds as text: the report read either as no time at all."""
    events = [e for e in map(orjson.loads, scored.read_bytes().splitlines()) if "_raw" not in e]
    as_text = []
    for event in events:
        moment = dt.datetime.fromtimestamp(event["time"] / 1000, tz=dt.UTC)
        text = moment.isoformat().replace("+00:00", "Z") if written == "iso" else str(event["time"])
        as_text.append({**event, "time": text})
    by_number = collect(iter((e, lambda x: x) for e in events))
    by_text = collect(iter((e, lambda x: x) for e in as_text))
    assert {d: r.events for d, r in by_text.items()} == {d: r.events for d, r in by_number.items()}
    assert {d: r.by_hour_class for d, r in by_text.items()} == {
        d: r.by_hour_class for d, r in by_number.items()
    }


def test_a_failed_write_leaves_no_partial_file(scored: Path, tmp_path: Path) -> None:
    taken = tmp_path / "report.html"
    taken.mkdir()  # a directory where the page should go: the rename into place fails
    (taken / "keep").write_text("mine", encoding="utf-8")
    result = _report(scored, "--output", taken)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]
    assert (taken / "keep").read_text(encoding="utf-8") == "mine"


def test_score_spark_parquet_output_reads_as_the_jsonl_it_came_from(scored: Path, tmp_path: Path) -> None:
    """score-spark's Parquet (nulls for absent fields, the reasons' values as JSON text) adds up to the
    same report as the JSON Lines it came from: the same counts, the same top events and reasons."""
    from scorer.spark import ANOMALY, anomaly_row

    events = [e for e in map(orjson.loads, scored.read_bytes().splitlines()) if "_raw" not in e]
    columns = sorted({key for e in events for key in e} - {"anomaly"})  # every field of every class
    table = pa.Table.from_pylist([{k: e.get(k) for k in columns} for e in events]).append_column(
        "anomaly", pa.array([anomaly_row(e["anomaly"]) for e in events], ANOMALY)
    )
    lake = tmp_path / "scored" / "eventDay=1"
    lake.mkdir(parents=True)
    pq.write_table(table, lake / "part-0.parquet")
    (lake.parent / "_SUCCESS").write_bytes(b"")
    from_jsonl, from_parquet = collect(records(scored)), collect(records(lake.parent))
    assert from_parquet.keys() == from_jsonl.keys()
    for day, want in from_jsonl.items():
        got = from_parquet[day]
        assert (got.events, got.anomalies, got.entities) == (want.events, want.anomalies, want.entities)
        assert [t[2]["anomaly"]["reasons"] for t in sorted(got.top)] == [
            t[2]["anomaly"]["reasons"] for t in sorted(want.top)
        ]
        assert got.samples == want.samples
    assert any(t[2]["anomaly"]["reasons"] for d in from_parquet.values() for t in d.top)


def test_a_scored_gz_cut_short_or_not_gzip_is_one_line_naming_it(scored: Path, tmp_path: Path) -> None:
    """A .jsonl.gz cut short ended `report` in an EOFError traceback; one that was not gzip said
    `error: Not a gzipped file (b'{"')` without naming the file. Each is now one line naming it."""
    whole = gzip.compress(scored.read_bytes(), mtime=0)
    for name, data, message in [
        ("cut.jsonl.gz", whole[: len(whole) // 2], "breaks off after line"),
        ("plain.jsonl.gz", scored.read_bytes(), "cannot be read as gzip"),
    ]:
        source, output = tmp_path / name, tmp_path / f"{name}.html"
        source.write_bytes(data)
        result = _report(source, "--output", output)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        said = result.stderr.strip().splitlines()[-1]
        assert str(source) in said, said
        assert message in said, said
        assert not output.exists()
