"""`report`: demo events scored by the real file scorer, the page rendered, then opened in Debian's
real Chromium (headless, driven by Playwright through its executable path; no browser is downloaded):
no console errors, no network, and its plots hold the counts the scored events give."""

from __future__ import annotations

import datetime as dt
import gzip
import json
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
from browser import CHROMIUM, CHROMIUM_FLAGS, needs_chromium

from scorer.batch import score_file
from scorer.report import collect, records, write_report

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


@needs_chromium
def test_values_of_the_events_show_in_the_charts_as_text_not_as_links_or_markup(
    scored: Path, tmp_path: Path
) -> None:
    """Plotly reads tags in its texts: an address, a user name or a class name holding ``<a href>``
    became a link in the analyst's charts (the tables escaped them), ``<b style>`` and ``<br>`` took
    effect. An attacker chooses such values (a user name tried at a logon). Shown as text now."""
    from playwright.sync_api import sync_playwright

    link = '<a href="https://evil.example/phish">10.0.0.1</a>'
    styled = '<b style="font-size:60px">Net</b><br>work'
    events = [orjson.loads(line) for line in scored.read_bytes().splitlines()]
    for event in events:
        if event.get("anomaly", {}).get("is_anomaly"):
            event["src_endpoint"] = {"ip": link}
            event["class_name"] = styled
    source = tmp_path / "hostile.jsonl"
    source.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    page_path = tmp_path / "report.html"
    write_report(source, page_path)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page()
            page.goto(page_path.as_uri())
            page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 4", timeout=30_000)
            links = page.eval_on_selector_all("svg a", "els => els.map(e => e.outerHTML)")
            styled_text = page.eval_on_selector_all(
                "svg tspan[style*='font-size'], svg tspan[style*='font-weight']",
                "els => els.map(e => e.outerHTML)",
            )
            shown = page.eval_on_selector_all("svg text", "els => els.map(e => e.textContent)")
        finally:
            browser.close()
    assert links == []
    assert styled_text == []
    assert any(f"src_endpoint.ip = {link}" in text for text in shown), shown
    assert any(styled in text for text in shown), shown


def test_a_chosen_day_missing_fields_and_bad_input_are_said_plainly(scored: Path, tmp_path: Path) -> None:
    days = _expected(scored, "")["days"]
    day, record = write_report(scored, tmp_path / "first.html", day=days[0])
    assert (day, record.events) == (days[0], _expected(scored, days[0])["events"])
    assert record.errors == 0  # the bad line has no time: it is counted nowhere near a day
    assert write_report(scored, tmp_path / "basic.html", day=days[0].replace("-", ""))[0] == days[0]

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
    # integers of 400 digits (JSON has no bound): no float holds them; "int too large to convert
    # to float" ended the report in a traceback
    odd[11]["time"] = 10**400
    odd[12]["anomaly"] = {**odd[12]["anomaly"], "score": 10**400}
    mixed = tmp_path / "odd-scores.jsonl"
    mixed.write_text("".join(json.dumps(e) + "\n" for e in odd))  # orjson writes no such integer
    scored_days = collect(records(mixed))
    assert sum(r.events for r in scored_days.values()) == len(events) - len(unscorable) - 2
    assert sum(r.errors for r in scored_days.values()) == len(unscorable) + 1
    assert scored_days.undated == 1
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

    # reasons' values as plain text, not JSON (events the service enriched, landed in Parquet by a
    # pipeline): "unexpected character, expected a JSON value", naming nothing; shown as they are
    rows = [anomaly_row(e["anomaly"]) for e in events]
    for row in rows:
        row["reasons"] = [{**r, "value": "plain text", "typical": "t"} for r in row["reasons"]]
    table = table.set_column(table.schema.get_field_index("anomaly"), "anomaly", pa.array(rows, ANOMALY))
    pq.write_table(table, lake / "part-0.parquet")
    shown = [t[2]["anomaly"]["reasons"] for d in collect(records(lake.parent)).values() for t in d.top]
    assert [r["typical"] for reasons in shown for r in reasons] == ["t"] * sum(map(len, shown)) != []


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


def _events(scored: Path) -> list[Event]:
    return [e for e in map(orjson.loads, scored.read_bytes().splitlines()) if "_raw" not in e]


def _write(path: Path, events: list[Event]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    return path


def _day_of(event: Event) -> str:
    return dt.datetime.fromtimestamp(event["time"] / 1000, tz=dt.UTC).date().isoformat()


def test_a_flagged_event_whose_metadata_is_not_an_object_has_no_uid(scored: Path, tmp_path: Path) -> None:
    """`metadata` as text (or a list) on a top event ended `report` in an AttributeError traceback."""
    events = _events(scored)
    odd = [
        {**e, "metadata": "demo" if i % 2 else ["demo"]} if e["anomaly"]["is_anomaly"] else e
        for i, e in enumerate(events)
    ]
    output = tmp_path / "odd.html"
    result = _report(_write(tmp_path / "odd.jsonl", odd), "--output", output)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    html = output.read_text()
    top = html[html.index('<table id="top">') : html.index("</table>", html.index('<table id="top">'))]
    assert top.count("<td><code></code></td>") == top.count("<tr>") - 1 > 0  # every row, an empty uid


def test_an_event_with_raw_beside_a_valid_anomaly_is_scored(scored: Path) -> None:
    """Splunk's exports carry each event's text as `_raw`: such events were all counted unscorable.
    A line `score` could not read ({"_raw": ..., "anomaly": {"error": ...}}) still is."""
    lines = [orjson.loads(line) for line in scored.read_bytes().splitlines()]
    bad = [e for e in lines if "_raw" in e]
    assert bad
    assert all(set(e["anomaly"]) == {"error", "line"} for e in bad)  # what `score` writes
    as_splunk = [e if "_raw" in e else {**e, "_raw": orjson.dumps(e).decode()} for e in lines]
    dated_bad = {**bad[0], "time": lines[0]["time"]}  # the same bad line, with a time: a day's error
    days = collect(iter([(e, lambda x: x) for e in [*as_splunk, dated_bad]]))
    plain = collect(records(scored))
    assert {d: r.events for d, r in days.items()} == {d: r.events for d, r in plain.items()}
    assert sum(r.events for r in days.values()) == len(lines) - len(bad)
    assert sum(r.errors for r in days.values()) == 1  # only the bad line given a time


def test_the_lines_score_could_not_read_are_on_the_page_as_undated(scored: Path, tmp_path: Path) -> None:
    """A line `score` could not read ({"_raw": ..., "anomaly": {"error": ...}}) has no `time`: it was
    counted only in the error for a file with no scored event, and the page's unscorable card said 0."""
    written = scored.read_bytes()
    by_score = sum(1 for line in written.splitlines() if b'"_raw"' in line)
    assert by_score == 1  # the fixture's "not an event"
    source = tmp_path / "scored.jsonl"
    # not JSON, not an object, an event with no time: 3 more the report reads as it finds them
    source.write_bytes(written + b'{bad\n[1, 2]\n{"class_uid": 3002}\n')
    assert collect(records(source)).undated == by_score + 3
    write_report(source, tmp_path / "page.html")
    assert '<b id="n-undated">4</b>undated lines' in (tmp_path / "page.html").read_text()
    write_report(_write(tmp_path / "dated.jsonl", _events(scored)), tmp_path / "dated.html")
    assert "undated lines" not in (tmp_path / "dated.html").read_text()  # none: no card


def test_the_global_group_row_describes_all_its_classes(scored: Path, bundle_dir: Path) -> None:
    """The drift row of a group named the first class seen in it, and its unknown-category rate was
    that class's: for `global`, which holds every class without a group of its own, both were wrong."""
    from scorer.report import _drift, _unknown_rate, reference

    events = _events(scored)
    day = max(_day_of(e) for e in events)
    on_day = [e for e in events if _day_of(e) == day]
    first, second = sorted({_class_label_of(e) for e in on_day})[:2]

    def unseen(value: Any) -> Any:  # every text value one the model never saw
        if isinstance(value, dict):
            return {k: unseen(v) for k, v in value.items()}
        if isinstance(value, list):
            return [unseen(v) for v in value]
        return f"unseen-{value}" if isinstance(value, str) else value

    group: list[Event] = []
    for event in on_day:
        label = _class_label_of(event)
        if label in (first, second):
            if label == second:
                kept = {k: event[k] for k in ("class_uid", "class_name", "time", "anomaly", "metadata")}
                event = {**unseen(event), **kept}
            event = {**event, "anomaly": {**event["anomaly"], "calibration_group": "global"}}
            group.append(event)
    assert len(group) < 500  # the sample is the whole group: its rate is exact
    ref = reference(bundle_dir)
    record = collect(iter([(e, lambda x: x) for e in group]))[day]
    (row,) = _drift(record, ref)
    assert (row["group"], row["events"]) == ("global", len(group))
    assert first in row["class"]
    assert second in row["class"]
    expected = _unknown_rate(ref.encoder, group)
    assert expected is not None
    assert expected != _unknown_rate(ref.encoder, [e for e in group if _class_label_of(e) == first])
    assert row["unknown_rate"] == pytest.approx(expected)


def _class_label_of(event: Event) -> str:
    return f"{event['class_name']} ({event['class_uid']})"


def test_the_model_note_compares_like_with_like(
    scored: Path, bundle_dir: Path, other_bundle_dir: Path, tmp_path: Path
) -> None:
    """The service serving a registry names the model by the registry's version ("1"), not by the
    bundle's content version: the page said the bundle given was not the one that scored them."""
    events = _events(scored)
    note = "is not the one that scored these events"

    def page(model: dict[str, str], bundle: Path) -> str:
        source = _write(
            tmp_path / "events.jsonl", [{**e, "anomaly": {**e["anomaly"], "model": model}} for e in events]
        )
        write_report(source, tmp_path / "page.html", bundle_dir=bundle)
        return (tmp_path / "page.html").read_text()

    own = events[0]["anomaly"]["model"]["version"]
    other = str(orjson.loads((other_bundle_dir / "metadata.json").read_bytes())["version"])
    assert own != other
    registry = {"name": "ocsf-anomaly-demo", "version": "1", "variant": "champion"}
    assert note not in page(registry, bundle_dir)  # the forms differ: nothing to say
    assert note not in page({**registry, "bundle_version": own}, bundle_dir)
    assert note in page({**registry, "bundle_version": own}, other_bundle_dir)
    assert note not in page({"name": "ocsf-anomaly", "version": own}, bundle_dir)
    assert f"({own})" in page({"name": "ocsf-anomaly", "version": own}, other_bundle_dir)


def test_spark_hidden_folders_are_not_read(scored: Path, tmp_path: Path) -> None:
    """Only the file's own name was checked for a leading `_` or `.`: the copies of the parts under
    `_temporary/` (a job's attempts) and `.spark-staging-*` were read, and their events counted twice.
    Folders above the directory given may have such names."""
    lake = tmp_path / "_jobs" / ".out" / "scored"
    parts = [lake / "part-0.jsonl", lake / "eventDay=1" / "part-1.jsonl"]
    hidden = [
        lake / "_temporary" / "0" / "_temporary" / "attempt_1" / "part-0.jsonl",
        lake / ".spark-staging-1" / "part-0.jsonl",
        lake / "eventDay=1" / "_temporary" / "part-1.jsonl",
    ]
    for path in parts + hidden:
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(scored, path)
    (lake / "_SUCCESS").write_bytes(b"")
    read = sum(1 for _ in records(lake))
    assert read == 2 * len(scored.read_bytes().splitlines())


def test_a_directory_reads_the_names_score_reads_and_says_what_it_skips(scored: Path, tmp_path: Path) -> None:
    """A directory's .json.gz, .ndjson.gz and .jsonl.GZ files (and any name not in lower case) were
    skipped without a word, while the same file given alone was read: their events were missing from
    the page. Now each name `score` reads as events is read, in any case, and the files skipped are
    said."""
    data = scored.read_bytes()
    lines, bad = len(data.splitlines()), sum(1 for line in data.splitlines() if b'"_raw"' in line)
    folder = tmp_path / "scored"
    (folder / "eventDay=1").mkdir(parents=True)
    for name in ["a.jsonl", "b.NDJSON", "c.Json"]:
        (folder / name).write_bytes(data)
    for name in ["d.json.gz", "eventDay=1/e.ndjson.gz", "f.jsonl.GZ"]:
        (folder / name).write_bytes(gzip.compress(data, mtime=0))
    verdict = ("score", "p_value", "is_anomaly")
    rows = [
        {"time": e["time"], "anomaly": {k: e["anomaly"][k] for k in verdict}} for e in _events(scored)[:5]
    ]
    pq.write_table(pa.Table.from_pylist(rows), folder / "g.PARQUET")
    for name in ["h.jsonl.bz2", "i.gz", "notes.txt", "scores.csv"]:
        (folder / name).write_bytes(data)
    said: list[str] = []
    read = [record for record, _ in records(folder, said.append)]
    assert len(read) == 6 * lines + 5
    assert sum("_raw" in record for record in read) == 6 * bad  # the Parquet rows read as events
    assert said == [
        f"warning: skipped h.jsonl.bz2, i.gz, notes.txt and 1 more in {folder}: only files named "
        ".jsonl, .ndjson or .json (each also .gz) or .parquet are read"
    ]
    said.clear()
    day, record = write_report(folder, tmp_path / "page.html", log=said.append)
    assert record.events == 6 * _expected(scored, day)["events"] + sum(_day_of(e) == day for e in rows)
    assert said[-1].startswith("warning: skipped h.jsonl.bz2")


def test_only_the_rendered_day_keeps_its_events(scored: Path) -> None:
    """Every day kept up to 500 whole events a class and its top 25, and the count of each entity its
    flagged events named, while one day is rendered: memory grew with the days the data spans. Now
    only the day asked for keeps them, or the latest one (a day's are dropped when a later day comes),
    whatever the order of the events."""
    import random

    events = _events(scored)
    days = sorted({_day_of(e) for e in events})
    assert len(days) > 2
    alone = {day: collect(iter([(e, lambda x: x) for e in events if _day_of(e) == day]))[day] for day in days}
    assert sum(bool(record.entities) for record in alone.values()) > 1  # flagged events name entities
    shuffled = list(events)
    random.Random(3).shuffle(shuffled)
    for order in (events, shuffled, sorted(events, key=lambda e: -e["time"])):
        for asked, kept in [(None, days[-1]), (days[0], days[0]), (days[1], days[1])]:
            got = collect(iter([(e, lambda x: x) for e in order]), day=asked)
            for day, record in got.items():
                on_day = [e for e in order if _day_of(e) == day]
                assert record.events == len(on_day)  # the counts, for every day
                assert record.anomalies == sum(e["anomaly"]["is_anomaly"] for e in on_day)
                if day != kept:
                    assert (list(record.scores), record.top, record.samples) == ([], [], {}), (asked, day)
                    assert (record.entities, record.entity_fields_seen) == (Counter(), set()), (asked, day)
                    continue
                assert record.entities == alone[day].entities  # those of its own events
                assert record.entity_fields_seen == alone[day].entity_fields_seen
                assert sorted(record.scores) == sorted(e["anomaly"]["score"] for e in on_day)
                flagged = sorted(e["anomaly"]["score"] for e in on_day if e["anomaly"]["is_anomaly"])
                assert sorted(t[0] for t in record.top) == flagged[-25:]
                groups = Counter(e["anomaly"]["calibration_group"] for e in on_day)
                assert {g: len(s) for g, s in record.samples.items()} == {
                    g: min(n, 500) for g, n in groups.items()
                }


def test_the_top_table_is_the_days_highest_scores_highest_first(scored: Path, tmp_path: Path) -> None:
    """The top events were kept by comparing each with the last event of the heap, not its smallest:
    a flagged event could push out one scoring higher than itself, and the table missed some of the
    day's highest (the mutation review). A hundred flagged events of one day, in shuffled order."""
    import random

    from scorer.report import TOP_EVENTS

    flagged = next(e for e in _events(scored) if e["anomaly"]["is_anomaly"])
    events = [
        {
            **flagged,
            "metadata": {**flagged["metadata"], "uid": f"top-{n:03d}"},
            "anomaly": {**flagged["anomaly"], "score": 10.0 + n},
        }
        for n in range(100)
    ]
    random.Random(5).shuffle(events)
    output = tmp_path / "top.html"
    write_report(_write(tmp_path / "top.jsonl", events), output)
    html = output.read_text()
    top = html[html.index('<table id="top">') : html.index("</table>", html.index('<table id="top">'))]
    uids = [row.split("<code>", 1)[1].split("</code>", 1)[0] for row in top.split("<tr>")[2:]]
    assert uids == [f"top-{n:03d}" for n in range(99, 99 - TOP_EVENTS, -1)]


def test_score_draws_its_progress_bar_only_on_a_terminal(
    scored: Path, bundle_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`score ... 2>log.txt` filled the log with progress bars redrawn with \\r."""
    import io

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    source = scored.parent / "events.jsonl"
    for stderr, progress, drawn in [
        (io.StringIO(), True, False),
        (Terminal(), True, True),
        (Terminal(), False, False),  # --quiet
    ]:
        monkeypatch.setattr(sys, "stderr", stderr)
        score_file(
            bundle_dir, source, tmp_path / "out.jsonl", workers=1, progress=progress, errors=io.StringIO()
        )
        monkeypatch.undo()
        assert (f"scoring {source.name}" in stderr.getvalue()) is drawn, stderr.getvalue()


def test_a_top_event_whose_reasons_or_neighbours_are_not_lists_shows_none(
    scored: Path, tmp_path: Path
) -> None:
    """A scored file edited by hand or written by another tool: `"neighbors": 5` on a top event ended
    `report` in a TypeError traceback (the security review's fuzzing)."""
    events = _events(scored)
    odd_values: list[Any] = [5, "text", {"a": 1}, None, True]
    odd = []
    for i, event in enumerate(events):
        if event["anomaly"]["is_anomaly"]:
            value = odd_values[i % len(odd_values)]
            event = {**event, "anomaly": {**event["anomaly"], "neighbors": value, "reasons": value}}
        odd.append(event)
    output = tmp_path / "odd.html"
    write_report(_write(tmp_path / "odd.jsonl", odd), output)
    html = output.read_text()
    top = html[html.index('<table id="top">') : html.index("</table>", html.index('<table id="top">'))]
    assert top.count("<tr>") > 1
    assert '<ul class="reasons"></ul>' in top
    assert "<code>t</code>" not in top  # the text was not read as its letters


def test_a_reason_value_that_reads_as_part_of_the_reason_is_quoted_as_in_its_line_of_text(
    scored: Path, tmp_path: Path
) -> None:
    """An event's value "4444 (typical 4444, deviation 0.1)" read on the page as a small deviation
    (the adversarial review): the table writes value and typical as a reason's line of text does,
    quoted where they could be read as part of it, and a value the event lacks as missing."""
    events = _events(scored)
    forged = {"field": "dst_endpoint.port", "value": "4444 (typical 4444, deviation 0.1)", "typical": None}
    flagged = next(e for e in events if e["anomaly"]["is_anomaly"])
    flagged = {
        **flagged,
        "time": max(e["time"] for e in events),  # on the day shown
        "anomaly": {**flagged["anomaly"], "score": 1e9, "reasons": [{**forged, "deviation": 5.0}]},
    }
    output = tmp_path / "forged.html"
    write_report(_write(tmp_path / "forged.jsonl", [*events, flagged]), output)
    html = output.read_text()
    top = html[html.index('<table id="top">') : html.index("</table>", html.index('<table id="top">'))]
    assert (
        "<code>dst_endpoint.port</code> = &#34;4444 (typical 4444, deviation 0.1)&#34;\n"
        "      (typical missing, deviation 5.0)"
    ) in top
