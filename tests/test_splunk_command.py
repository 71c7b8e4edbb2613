"""The Splunk app's ``| ocsfanomaly`` search command (integrations/splunk/ocsf_anomaly), run as splunkd runs it:
the protocol, the fields it adds, its options and settings, splunkd's own ways, the Python it needs.

No Splunk server can run here, so tests/splunk_protocol.py plays splunkd's side of the search
command protocol v2: it starts ``bin/ocsfanomaly.py`` as a subprocess with a Python that has no
site-packages (``python3 -S``, the system's where there is one, no PYTHONPATH: only the standard
library and the app's vendored splunklib can be imported), sends ``getinfo`` with the searchinfo real
splunkd sends, then ``execute`` frames with CSV bodies (header row, ``\\r\\n``, ``__mv_`` columns,
header-only chunks, ``finished: true`` last), and parses the answers. The scorer behind the command
is the real service (``ocsf-anomaly serve`` on a loopback port, with a model trained by the test
session), reached through a recording pass-through proxy (tests/recording_proxy.py) that shows
what went over the wire; splunkd's ``storage/passwords`` REST endpoint is the only fake.
Real vendor events come from ../shared/data/ocsf_events (those tests skip without it, and fail
under CI=true); the others use the demo company's events. How the command calls the scorer (its
batches, and a scorer that cannot answer) is tested in test_splunk_scorer_calls.py; the app's
package, dashboard and alert in test_splunk_app.py.
"""

from __future__ import annotations

import ast
import json
import math
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from live_scorer import Scorer, serve_scorer
from recording_proxy import RecordingProxy
from splunk_protocol import (
    ADDED,
    APP_DIR,
    CommandProcess,
    Credential,
    FakeSplunkd,
    Record,
    Search,
    as_list,
    command_environment,
    copy_app,
    csv_body,
    python_version,
    run_search,
    searchinfo,
    splunk_python,
    splunk_records,
)

from scorer.paths import shared_data_dir

TOKEN = "t0ken-for-the-splunk-tests"
SESSION_KEY = "s3ss10n-k3y^Ab_c"  # what splunk_protocol.searchinfo sends


# ---------------------------------------------------------------- the real scorer


@pytest.fixture(scope="module")
def token_scorer(bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scorer]:
    """The same model behind a service that requires a bearer token."""
    log = tmp_path_factory.mktemp("token-scorer") / "serve.log"
    with serve_scorer(bundle_dir, log, {"OCSF_ANOMALY_API_TOKEN": TOKEN}) as served:
        yield served


# ---------------------------------------------------------------- events as Splunk holds them
@pytest.fixture(scope="module")
def vendor_texts() -> list[str]:
    """Real third-party OCSF events, each line's text as it would sit in _raw."""
    path = shared_data_dir() / "ocsf_events" / "events.jsonl"
    if not path.exists():
        pytest.skip(f"real OCSF events not available at {path} (set OCSF_ANOMALY_SHARED_DATA)")
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _search(
    args: list[str], chunks: list[tuple[bytes, bool]], tmp_path: Path, splunkd_uri: str, **kw: Any
) -> Search:
    return run_search(args, chunks, work=tmp_path / "search", splunkd_uri=splunkd_uri, **kw)


# ---------------------------------------------------------------- scoring, end to end
def _check_scored_as_the_service_answered(
    texts: list[str],
    scorer: Scorer,
    proxy: RecordingProxy,
    tmp_path: Path,
    splunkd_uri: str,
    python: list[str] | None = None,
) -> list[Record]:
    third = len(texts) // 3
    first = splunk_records(texts[:third])
    # Splunk 6.3 wrote "\n" line ends; some events pretty-printed, so _raw holds quoted newlines
    middle = splunk_records(texts[third : 2 * third], start=third)
    for record in middle[::4]:
        record["_raw"] = json.dumps(json.loads(str(record["_raw"])), indent=2)
    last = splunk_records(texts[2 * third :], start=2 * third)
    chunks = [
        (csv_body(first), False),
        (csv_body([], fields=list(first[0])), False),  # a chunk with a header and no rows
        (csv_body(middle, newline="\n"), False),
        (csv_body(last), True),
    ]
    search = _search(
        [f"url={proxy.url}", "batch_size=64", "alpha=0.05"],
        chunks,
        tmp_path,
        splunkd_uri,
        python=python,
        app_dir=_app_with_scorer(tmp_path, proxy.url),  # the scorer trusted with the token
    )

    assert search.exit_code == 0, search.stderr
    assert search.getinfo.metadata == {"type": "stateful"}  # streaming, on the search head only
    assert search.errors() == []
    assert [reply.metadata.get("finished") for reply in search.replies] == [False, False, False, True]
    assert [len(reply.records) for reply in search.replies] == [len(first), 0, len(middle), len(last)]
    sent = first + middle + last
    records = search.records
    for before, after in zip(sent, records, strict=True):  # every field kept, as it was
        assert {name: after[name] for name in before} == before
        assert set(after) == set(before) | {f"anomaly_{name}" for name in ADDED}

    exchanges = proxy.scoring()
    assert {e.connection for e in exchanges} == {1}, "one keep-alive connection for the whole search"
    assert all(e.path == "/v1/score?alpha=0.05" for e in exchanges)
    assert all(0 < len(e.events) <= 64 for e in exchanges)
    assert [event for e in exchanges for event in e.events] == [json.loads(text) for text in texts]
    results = [result for e in exchanges for result in json.loads(e.response)["results"]]
    version = scorer.get("/readyz")["model"]["version"]
    for record, result in zip(records, results, strict=True):
        assert record["anomaly_error"] == ""
        assert float(record["anomaly_score"]) == result["score"]
        assert float(record["anomaly_p_value"]) == result["p_value"]
        assert record["anomaly_is_anomaly"] == ("1" if result["is_anomaly"] else "0")
        assert record["anomaly_model_version"] == version == result["model"]["version"]
        reasons = as_list(record["anomaly_reasons"])
        assert len(reasons) == len(result["reasons"])
        for text, reason in zip(reasons, result["reasons"], strict=True):
            assert text.startswith(f"{reason['field']}=")
            assert "(typical " in text
    assert any(len(as_list(r["anomaly_reasons"])) > 1 for r in records), "no multivalue reasons written"
    # splunkd could not be asked for a token: the search went on, saying so at WARNING in search.log
    assert "WARNING OcsfAnomalyCommand: could not read the scorer token" in search.stderr
    return records


def test_real_vendor_events_are_scored_as_the_service_answers(
    vendor_texts: list[str], scorer: Scorer, proxy: RecordingProxy, tmp_path: Path, splunkd_down: str
) -> None:
    assert len(vendor_texts) > 400
    records = _check_scored_as_the_service_answered(vendor_texts, scorer, proxy, tmp_path, splunkd_down)
    assert {json.loads(str(r["_raw"])).get("class_uid") for r in records} >= {1007, 2004, 4001}


def test_demo_events_are_scored_as_the_service_answers(
    demo_texts: list[str], scorer: Scorer, proxy: RecordingProxy, tmp_path: Path, splunkd_down: str
) -> None:
    records = _check_scored_as_the_service_answered(demo_texts[:600], scorer, proxy, tmp_path, splunkd_down)
    flagged = sum(r["anomaly_is_anomaly"] == "1" for r in records)
    assert 0 < flagged < len(records) / 2  # normal events of the company the model knows, at alpha 5%


@pytest.mark.parametrize("version", ["3.9", "3.13"])
def test_the_command_scores_under_the_pythons_splunk_ships(
    version: str,
    demo_texts: list[str],
    scorer: Scorer,
    proxy: RecordingProxy,
    tmp_path: Path,
    splunkd_down: str,
) -> None:
    """Splunk 9 runs commands with Python 3.9, Splunk 10 with 3.13 (python.required = 3.9, 3.13 in
    commands.conf): the whole search under each, without site-packages, where this machine has it
    (these machines have both through pyenv; a user's clone may not)."""
    python = python_version(version)
    if python is None:
        pytest.skip(f"no Python {version} here (python{version} on PATH, or installed by pyenv)")
    version_seen = subprocess.run(
        [*python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert version_seen == version
    _check_scored_as_the_service_answered(demo_texts[:120], scorer, proxy, tmp_path, splunkd_down, python)


@pytest.mark.parametrize("version", ["3.9", "3.13"])
def test_a_record_holding_a_nul_passes_through_under_the_pythons_splunk_ships(
    version: str, demo_texts: list[str], proxy: RecordingProxy, tmp_path: Path, splunkd_down: str
) -> None:
    """A UTF-16 log read as UTF-8 holds a NUL between every letter. Python 3.9's csv module (Splunk
    9's) refused the line ("line contains NUL"): the whole chunk failed, onerror=tag or not, where
    the README promises that what is no event passes through tagged."""
    python = python_version(version)
    if python is None:
        pytest.skip(f"no Python {version} here (python{version} on PATH, or installed by pyenv)")
    utf16_read_as_utf8 = "\0".join('{"class_uid": 4001}')
    texts = [demo_texts[0], utf16_read_as_utf8, demo_texts[1]]
    search = _search(
        [f"url={proxy.url}", "onerror=tag"],
        [(csv_body(splunk_records(texts)), True)],
        tmp_path,
        splunkd_down,
        python=python,
    )
    assert search.exit_code == 0, search.stderr
    assert [r["_raw"] for r in search.records] == texts
    first, tagged, last = search.records
    assert tagged["anomaly_error"].startswith("not an OCSF event: ")  # type: ignore[union-attr]
    assert [first["anomaly_score"] != "", last["anomaly_score"] != ""] == [True, True]


def test_added_fields_are_on_every_record_even_when_the_first_is_no_event(
    demo_texts: list[str], proxy: RecordingProxy, tmp_path: Path, splunkd_down: str
) -> None:
    not_events = {
        "Dec  3 07:00:01 fw01 sshd[4242]: Accepted password for root from 10.0.0.9": "_raw is not valid JSON",
        "[1, 2]": "_raw holds an array, not a JSON object",
        "": "_raw is empty or missing",
        '{"class_uid": 4001, "traffic": {"bytes": NaN}}': "NaN is not a JSON number",
        '"a string"': "_raw holds a string",
        '{"class_uid": 4001, "traffic": {"bytes": 1e999}}': "the number 1e999 is too large",
        '{"class_uid": 4001,': "_raw is not valid JSON",
    }
    texts = list(not_events)[:3] + demo_texts[:4] + list(not_events)[3:] + demo_texts[4:6]
    search = _search([f"url={proxy.url}"], [(csv_body(splunk_records(texts)), True)], tmp_path, splunkd_down)

    assert search.exit_code == 0, search.stderr
    (reply,) = search.replies
    assert {f"anomaly_{name}" for name in ADDED} <= set(reply.header)
    assert b"__mv_anomaly_reasons" in reply.body.split(b"\r\n", 1)[0]
    for text, record in zip(texts, reply.records, strict=True):
        assert record["_raw"] == text
        if text in not_events:
            assert record["anomaly_error"].startswith("not an OCSF event: ")  # type: ignore[union-attr]
            assert not_events[text] in record["anomaly_error"]
            assert [record[f"anomaly_{name}"] for name in ADDED[:-1]] == ["", "", "", "", ""]
        else:
            assert record["anomaly_error"] == ""
            assert math.isfinite(float(record["anomaly_score"]))  # type: ignore[arg-type]
    # only the events went to the scorer, in one request
    assert [len(e.events) for e in proxy.scoring()] == [6]


# ---------------------------------------------------------------- options and settings
@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("alpha=0", "Illegal value: alpha=0"),
        ("alpha=1", "Illegal value: alpha=1"),
        ("alpha=often", "Illegal value: alpha=often"),
        ("batch_size=0", "Illegal value: batch_size=0"),
        ("batch_size=10001", "Illegal value: batch_size=10001"),
        ("timeout=0", "Illegal value: timeout=0"),
        ("onerror=ignore", "Illegal value: onerror=ignore"),
        ("url=ftp://scorer:8080", "Illegal value: url=ftp://scorer:8080"),
        ("url=http://scorer:99999", "Illegal value: url=http://scorer:99999"),
        ("url=http://scorer:0", "Illegal value: url=http://scorer:0"),
        # http.client refuses these when it connects (a traceback, or "unreachable"): refused here
        ("url=http://scorer host:8080", "Illegal value: url=http://scorer host:8080"),
        ("url=http://scorer:8080/a\tb", "Illegal value: url=http://scorer:8080/a\tb"),
        ("url=http://scorer:8080/sc\u00f6rer", "Illegal value: url=http://scorer:8080/sc\u00f6rer"),
        # the resolver's IDNA encoding refuses these: a UnicodeError traceback, onerror=tag or not
        ("url=http://scorer..example:8080", "Illegal value: url=http://scorer..example:8080"),
        (f"url=http://{'a' * 64}.example:8080", f"Illegal value: url=http://{'a' * 64}.example:8080"),
        ("prefix=9lives", "Illegal value: prefix=9lives"),
        ("field=a,b", "Illegal value: field=a,b"),
        ("threshold=3", "Unrecognized option: threshold=3"),
        (
            "_raw",
            "ocsfanomaly takes options only, not '_raw': name the field that holds the event with field=<field>",
        ),
    ],
)
def test_a_bad_option_is_refused_at_getinfo(
    arg: str, message: str, proxy: RecordingProxy, tmp_path: Path, splunkd_down: str
) -> None:
    args = [f"url={proxy.url}", arg] if not arg.startswith("url=") else [arg]
    search = _search(args, [(csv_body(splunk_records(["{}"])), True)], tmp_path, splunkd_down)
    assert search.exit_code == 1
    assert search.replies == []  # nothing more written than the answer to getinfo
    assert message in search.errors()
    assert proxy.exchanges == []
    assert "Traceback" not in search.stderr


def test_local_conf_overrides_default_and_options_override_both(
    demo_texts: list[str], proxy: RecordingProxy, tmp_path: Path, splunkd_down: str
) -> None:
    app = copy_app(tmp_path / "apps")
    (app / "local").mkdir()
    (app / "local" / "ocsf_anomaly.conf").write_text(
        f"[scorer]\nurl = {proxy.url}\nbatch_size = 7\nprefix = ml_\nalpha = 0.2\n", encoding="utf-8"
    )
    body = csv_body(splunk_records(demo_texts[:20]))
    by_conf = run_search([], [(body, True)], work=tmp_path / "conf", splunkd_uri=splunkd_down, app_dir=app)
    assert by_conf.exit_code == 0, by_conf.stderr
    assert all(r["ml_error"] == "" and r["ml_score"] != "" for r in by_conf.records)
    assert [len(e.events) for e in proxy.scoring()] == [7, 7, 6]
    assert {e.path for e in proxy.scoring()} == {"/v1/score?alpha=0.2"}

    proxy.exchanges.clear()  # the app's default: no alpha sent, the scorer's own (OCSF_ANOMALY_ALPHA)
    (app / "local" / "ocsf_anomaly.conf").write_text(f"[scorer]\nurl = {proxy.url}\n", encoding="utf-8")
    by_default = run_search(
        [], [(body, True)], work=tmp_path / "default", splunkd_uri=splunkd_down, app_dir=app
    )
    assert by_default.exit_code == 0, by_default.stderr
    assert {e.path for e in proxy.scoring()} == {"/v1/score"}

    proxy.exchanges.clear()
    by_option = run_search(
        ["batch_size=5", "prefix=anomaly_"],
        [(body, True)],
        work=tmp_path / "opt",
        splunkd_uri=splunkd_down,
        app_dir=app,
    )
    assert by_option.exit_code == 0, by_option.stderr
    assert all("ml_score" not in r and r["anomaly_score"] != "" for r in by_option.records)
    assert [len(e.events) for e in proxy.scoring()] == [5, 5, 5, 5]


def test_the_event_can_sit_in_another_field(
    demo_texts: list[str], proxy: RecordingProxy, tmp_path: Path, splunkd_down: str
) -> None:
    records = splunk_records(["<134>Dec  3 07:00:01 gw01 ocsf: forwarded"] * 4)
    for record, text in zip(records, [*demo_texts[:3], ""], strict=True):
        record["event"] = text
    search = _search(
        [f"url={proxy.url}", "field=event", "prefix=ml_"], [(csv_body(records), True)], tmp_path, splunkd_down
    )
    assert search.exit_code == 0, search.stderr
    assert [r["ml_error"] for r in search.records] == [
        "",
        "",
        "",
        "not an OCSF event: event is empty or missing",
    ]
    assert all(r["ml_score"] != "" for r in search.records[:3])
    assert [event for e in proxy.scoring() for event in e.events] == [json.loads(t) for t in demo_texts[:3]]


def test_a_bad_setting_in_the_conf_is_refused_at_getinfo(tmp_path: Path, splunkd_down: str) -> None:
    app = copy_app(tmp_path / "apps")
    (app / "local").mkdir()
    (app / "local" / "ocsf_anomaly.conf").write_text("[scorer]\nalpha = 1.5\n", encoding="utf-8")
    search = run_search([], [], work=tmp_path / "search", splunkd_uri=splunkd_down, app_dir=app)
    assert search.exit_code == 1
    (error,) = search.errors()
    assert error.startswith("ocsf_anomaly.conf [scorer] alpha = 1.5: ")

    (app / "local" / "ocsf_anomaly.conf").write_bytes(
        b"[scorer]\nurl = http://scorer-\xe9t\xe9:8080\n"
    )  # Latin-1
    search = run_search([], [], work=tmp_path / "latin-1", splunkd_uri=splunkd_down, app_dir=app)
    assert search.exit_code == 1
    (error,) = search.errors()
    assert error.startswith("ocsf_anomaly.conf cannot be read: ")
    assert "can't decode byte 0xe9" in error

    # one it cannot open was skipped without a word: the defaults called 127.0.0.1:8080
    (app / "local" / "ocsf_anomaly.conf").unlink()
    (app / "local" / "ocsf_anomaly.conf").mkdir()
    search = run_search([], [], work=tmp_path / "unopened", splunkd_uri=splunkd_down, app_dir=app)
    assert search.exit_code == 1
    (error,) = search.errors()
    assert error.startswith("ocsf_anomaly.conf cannot be read: [Errno 21] Is a directory: ")


def test_a_field_over_10_mib_fails_the_search_with_splunklibs_message(
    demo_texts: list[str], proxy: RecordingProxy, tmp_path: Path, splunkd_down: str
) -> None:
    """splunklib reads splunkd's CSV with a field limit of 10 MiB (the app's README says so): only a
    sourcetype with a custom TRUNCATE far above Splunk's default 10,000 bytes gets such an event."""
    event = json.loads(demo_texts[0])
    event["unmapped"] = {"note": "x" * (10 * 1024 * 1024)}
    records = splunk_records([demo_texts[1], json.dumps(event)])
    search = _search([f"url={proxy.url}"], [(csv_body(records), True)], tmp_path, splunkd_down)
    assert search.exit_code == 1
    (error,) = search.errors()
    assert "field larger than field limit (10485760)" in error
    assert proxy.exchanges == []  # the chunk is refused whole, before any record is scored


# ---------------------------------------------------------------- splunkd's own ways
def test_a_getinfo_only_process_exits_cleanly_on_eof(proxy: RecordingProxy, tmp_path: Path) -> None:
    """splunkd starts processes that are only asked for their configuration, then closes stdin."""
    with FakeSplunkd(SESSION_KEY, [Credential("ocsf_anomaly", "scorer_token", TOKEN)]) as splunkd:
        command = CommandProcess(APP_DIR, tmp_path)
        try:
            info = searchinfo([f"url={proxy.url}"], dispatch_dir="", splunkd_uri=splunkd.uri)
            assert command.getinfo(info).metadata == {"type": "stateful"}
            assert command.close() == 0
            assert command.rest_of_output() == b""
        finally:
            command.kill()
    assert proxy.exchanges == [], "the scorer was called before any record came"
    assert splunkd.requests == [], "splunkd was called before any record came"
    assert command.stderr == ""


def _app_with_scorer(where: Path, url: str) -> Path:
    """A copy of the app whose local ocsf_anomaly.conf names the scorer at ``url``."""
    app = copy_app(where / "apps")
    (app / "local").mkdir()
    (app / "local" / "ocsf_anomaly.conf").write_text(f"[scorer]\nurl = {url}\n", encoding="utf-8")
    return app


def test_the_stored_token_goes_only_to_the_scorer_the_conf_names(
    demo_texts: list[str], token_scorer: Scorer, tmp_path: Path
) -> None:
    """url= is a search option: a search someone else wrote (a shared dashboard's, a macro) sent the
    stored token to whatever host it named, in clear text over http://. The token goes to the
    scorer ocsf_anomaly.conf names, whether the search names it again or not; another gets none."""
    credentials = [Credential("ocsf_anomaly", "scorer_token", TOKEN)]
    body = csv_body(splunk_records(demo_texts[:2]))
    with (
        FakeSplunkd(SESSION_KEY, credentials) as splunkd,
        RecordingProxy(token_scorer.port) as trusted,
        RecordingProxy(token_scorer.port) as other,
    ):
        app = _app_with_scorer(tmp_path, trusted.url)
        named = run_search(
            [f"url={trusted.url}/"], [(body, True)], work=tmp_path / "a", splunkd_uri=splunkd.uri, app_dir=app
        )
        elsewhere = run_search(
            [f"url={other.url}", "onerror=tag"],
            [(body, True)],
            work=tmp_path / "b",
            splunkd_uri=splunkd.uri,
            app_dir=app,
        )
    assert named.exit_code == 0, named.stderr
    assert {e.authorization for e in trusted.scoring()} == {f"Bearer {TOKEN}"}
    assert elsewhere.exit_code == 0, elsewhere.stderr
    assert {e.authorization for e in other.scoring()} == {None}
    assert (
        "is not the scorer ocsf_anomaly.conf names: calling it without the stored token" in elsewhere.stderr
    )
    assert len(splunkd.requests) == 1  # the token was not even read for the other


def test_the_token_is_read_from_storage_passwords_with_the_searchs_session(
    demo_texts: list[str], token_scorer: Scorer, tmp_path: Path
) -> None:
    credentials = [
        Credential("other_app", "scorer_token", "not-this-one"),
        Credential("ocsf_anomaly", "someone_else", "not-this-one-either"),
        Credential("ocsf_anomaly", "scorer_token", TOKEN),
    ]
    body = csv_body(splunk_records(demo_texts[:5]))
    with FakeSplunkd(SESSION_KEY, credentials) as splunkd, RecordingProxy(token_scorer.port) as proxy:
        app = _app_with_scorer(tmp_path, proxy.url)
        search = run_search([], [(body, True)], work=tmp_path, splunkd_uri=splunkd.uri, app_dir=app)
    assert search.exit_code == 0, search.stderr
    assert all(r["anomaly_error"] == "" and r["anomaly_score"] != "" for r in search.records)
    assert {e.authorization for e in proxy.scoring()} == {f"Bearer {TOKEN}"}
    ((method, path, authorization),) = splunkd.requests
    assert (method, path.split("?")[0]) == ("GET", "/servicesNS/nobody/ocsf_anomaly/storage/passwords")
    assert authorization == f"Splunk {SESSION_KEY}"


def test_a_stored_token_is_trimmed_and_one_no_header_can_carry_is_never_shown(
    demo_texts: list[str], token_scorer: Scorer, tmp_path: Path
) -> None:
    """A token pasted with a line break at its end is sent without it; one with a line break inside
    or a non-ASCII letter cannot be sent (http.client refused it, quoting the token in the search's
    ERROR): the command goes on without it, as without a token, and never shows it."""
    body = csv_body(splunk_records(demo_texts[:2]))
    for name, stored in [
        ("trimmed", f" {TOKEN}\r\n"),
        ("break", f"{TOKEN}\r\nX-Other: 1"),
        ("letter", f"{TOKEN}\u2019"),
    ]:
        credentials = [Credential("ocsf_anomaly", "scorer_token", stored)]
        with FakeSplunkd(SESSION_KEY, credentials) as splunkd, RecordingProxy(token_scorer.port) as proxy:
            search = run_search(
                ["onerror=tag"],
                [(body, True)],
                work=tmp_path / name,
                splunkd_uri=splunkd.uri,
                app_dir=_app_with_scorer(tmp_path / name, proxy.url),
            )
        assert search.exit_code == 0, search.stderr
        assert search.errors() == []
        assert "Traceback" not in search.stderr
        assert TOKEN not in search.stderr
        if name == "trimmed":
            assert {e.authorization for e in proxy.scoring()} == {f"Bearer {TOKEN}"}
            assert all(r["anomaly_error"] == "" and r["anomaly_score"] != "" for r in search.records)
            continue
        assert "WARNING OcsfAnomalyCommand: the scorer token in storage/passwords" in search.stderr
        assert {e.authorization for e in proxy.scoring()} == {None}
        for record in search.records:
            assert "refused the request (HTTP 401 unauthorized" in record["anomaly_error"]
            assert TOKEN not in record["anomaly_error"]


def test_without_a_stored_token_the_command_goes_on_and_says_why_the_scorer_refused(
    demo_texts: list[str], token_scorer: Scorer, tmp_path: Path
) -> None:
    body = csv_body(splunk_records(demo_texts[:2]))
    with FakeSplunkd(SESSION_KEY, []) as splunkd:
        search = run_search(
            ["onerror=tag"],
            [(body, True)],
            work=tmp_path,
            splunkd_uri=splunkd.uri,
            app_dir=_app_with_scorer(tmp_path, token_scorer.url),
        )
    assert search.exit_code == 0, search.stderr
    assert search.errors() == []  # no ERROR message: that would fail the search
    assert "INFO OcsfAnomalyCommand: no scorer token in storage/passwords" in search.stderr
    for record in search.records:
        assert "refused the request (HTTP 401 unauthorized" in record["anomaly_error"]
        assert "storage/passwords, realm 'ocsf_anomaly', name 'scorer_token'" in record["anomaly_error"]


# ---------------------------------------------------------------- what Splunk's Python can run
def test_the_command_imports_only_the_standard_library_and_the_app(tmp_path: Path) -> None:
    """Under ``python3 -S`` nothing from site-packages is importable; loading the command (without
    running it) pulls in only modules of the standard library and of the app's bin/."""
    code = (
        "import json, sys, sysconfig\n"
        f"sys.path.insert(0, {str(APP_DIR / 'bin')!r})\n"
        "import ocsfanomaly\n"
        "files = [getattr(m, '__file__', None) for m in list(sys.modules.values())]\n"
        "print(json.dumps({'path': sys.path, 'site': 'site' in sys.modules, 'files': [f for f in files if f],\n"
        "  'stdlib': [sysconfig.get_paths()['stdlib'], sysconfig.get_paths()['platstdlib']]}))\n"
    )
    done = subprocess.run(
        [*splunk_python(), "-c", code],
        capture_output=True,
        env=command_environment(tmp_path),
        check=True,
        cwd=tmp_path,
    )
    seen = json.loads(done.stdout)
    assert not seen["site"]
    assert not any("site-packages" in p or "dist-packages" in p for p in seen["path"])
    roots = (str(APP_DIR / "bin"), *seen["stdlib"])
    outside = [f for f in seen["files"] if not f.startswith(roots)]
    assert outside == []
    assert any(f.startswith(str(APP_DIR / "bin" / "lib" / "splunklib")) for f in seen["files"])


def test_the_command_is_written_for_python_3_9() -> None:
    """Splunk 9's Python is 3.9: no syntax of later versions (match, except*, parenthesised withs)."""
    paths = sorted((APP_DIR / "bin").glob("*.py"))
    assert paths, APP_DIR  # a moved app left nothing to check
    for path in paths:
        ast.parse(path.read_text(encoding="utf-8"), filename=str(path), feature_version=(3, 9))
