"""How the Splunk app's ``| ocsfanomaly`` command overlaps its own work with the scorer's, and that
the overlap changes nothing else: records in order, each with its own verdict, one answer per chunk,
and onerror=fail|tag as before when the scorer fails in the middle of a chunk.

The command hands its batches to one background thread that sends them to the scorer in order over
its one connection; meanwhile the command's own thread reads and checks the next batch and writes
the records of the one before. The end-to-end tests run the command as splunkd runs it
(tests/splunk_protocol.py) against the real service, through the recording proxy
(tests/recording_proxy.py) made to answer chosen requests itself or to be slow. The overlap itself
is seen from inside: the command's own code, under Splunk's Python, with a stand-in scorer that, in
each call, waits until the command has read the next batch and written the one before (which a
command that waits for the scorer never does: then the stand-in gives up and says so).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from live_scorer import Scorer
from recording_proxy import RecordingProxy
from splunk_protocol import (
    ADDED,
    APP_DIR,
    Search,
    command_environment,
    csv_body,
    parse_records,
    run_search,
    splunk_python,
    splunk_records,
)

INTERNAL = (500, {"code": "internal", "message": "the index is gone"})


class ScriptedProxy(RecordingProxy):
    """The recording proxy, answering the scoring requests numbered in ``answers`` (from 1, in the
    order they arrive) itself, with that status and the service's error shape, and holding every
    request ``hold`` seconds before it answers (a slow scorer)."""

    def __init__(
        self,
        upstream_port: int,
        *,
        answers: dict[int, tuple[int, dict[str, Any]]] | None = None,
        hold: float = 0.0,
    ) -> None:
        super().__init__(upstream_port)
        self._answers = dict(answers or {})
        self._hold = hold
        self._arrived = 0

    def _take_injected(self) -> tuple[int, bytes, dict[str, str]] | None:
        with self._lock:
            self._arrived += 1
            number = self._arrived
        if self._hold:
            time.sleep(self._hold)
        if number in self._answers:
            status, error = self._answers[number]
            body = json.dumps({"error": {"status": status, **error}}).encode()
            return status, body, {"Content-Type": "application/json"}
        return super()._take_injected()


def _search(args: list[str], chunks: list[tuple[bytes, bool]], tmp_path: Path, splunkd_uri: str) -> Search:
    return run_search(args, chunks, work=tmp_path / "search", splunkd_uri=splunkd_uri)


def _answered(proxy: RecordingProxy) -> list[tuple[Any, Any]]:
    """Each event the scorer was sent, with what it answered for it, in the order sent."""
    pairs: list[tuple[Any, Any]] = []
    for exchange in proxy.scoring():
        results = json.loads(exchange.response)["results"]
        pairs += zip(exchange.events, results, strict=True)
    return pairs


# ---------------------------------------------------------------- order and verdicts, end to end
def test_each_record_keeps_its_place_and_its_own_verdict_under_a_slow_scorer(
    demo_texts: list[str], scorer: Scorer, tmp_path: Path, splunkd_down: str
) -> None:
    texts = list(demo_texts[:95])
    not_events = {i: "Dec  3 07:00:01 fw01 sshd[4242]: not json" for i in range(0, 95, 13)}
    not_events[40] = "\ufeff" + texts[40]  # a byte order mark: json.loads' own message
    texts = [not_events.get(i, text) for i, text in enumerate(texts)]
    first, last = splunk_records(texts[:57]), splunk_records(texts[57:], start=57)
    chunks = [
        (csv_body(first), False),
        (csv_body([], fields=list(first[0])), False),
        (csv_body(last), True),
    ]
    with ScriptedProxy(scorer.port, hold=0.02) as proxy:
        search = _search([f"url={proxy.url}", "batch_size=10"], chunks, tmp_path, splunkd_down)

    assert search.exit_code == 0, search.stderr
    assert search.errors() == []
    assert [reply.metadata.get("finished") for reply in search.replies] == [False, False, True]
    assert [len(reply.records) for reply in search.replies] == [57, 0, 38]
    records = search.records
    assert [r["_serial"] for r in records] == [str(i) for i in range(95)]
    assert [r["_raw"] for r in records] == texts

    answered = _answered(proxy)
    scored = [i for i in range(95) if i not in not_events]
    assert [event for event, _ in answered] == [json.loads(texts[i]) for i in scored]
    for i, (_, result) in zip(scored, answered, strict=True):
        assert records[i]["anomaly_error"] == ""
        assert float(records[i]["anomaly_score"]) == result["score"]  # type: ignore[arg-type]
        assert float(records[i]["anomaly_p_value"]) == result["p_value"]  # type: ignore[arg-type]
    for i in not_events:
        assert records[i]["anomaly_error"].startswith("not an OCSF event: _raw ")  # type: ignore[union-attr]
        assert [records[i][f"anomaly_{name}"] for name in ADDED[:-1]] == ["", "", "", "", ""]
    assert "Unexpected UTF-8 BOM" in records[40]["anomaly_error"]
    assert {e.connection for e in proxy.scoring()} == {1}
    assert all(0 < len(e.events) <= 10 for e in proxy.scoring())


# ---------------------------------------------------------------- a failure in the middle of a chunk
def test_a_failure_mid_chunk_with_onerror_fail_answers_once_without_records_and_sends_nothing_more(
    demo_texts: list[str], scorer: Scorer, tmp_path: Path, splunkd_down: str
) -> None:
    chunks = [
        (csv_body(splunk_records(demo_texts[:60])), False),  # six batches of 10
        (csv_body(splunk_records(demo_texts[60:70], start=60)), True),
    ]
    with ScriptedProxy(scorer.port, answers={3: INTERNAL}) as proxy:
        search = _search(
            [f"url={proxy.url}", "batch_size=10", "onerror=fail"], chunks, tmp_path, splunkd_down
        )

    assert search.exit_code == 1
    (reply,) = search.replies  # the search stops at the first chunk, answered once
    assert reply.metadata["finished"] is True
    assert reply.body == b""  # none of the chunk's records, not even the two batches scored before
    (error,) = reply.errors()
    assert f"the scorer at {proxy.url} failed: HTTP 500 internal: the index is gone" in error
    # the batches read ahead were never sent
    assert [e.status for e in proxy.scoring()] == [200, 200, 500]
    assert [event for e in proxy.scoring() for event in e.events] == [json.loads(t) for t in demo_texts[:30]]
    assert search.stderr.count("(onerror=fail: the search stops)") == 1


def test_with_onerror_tag_a_500_tags_its_batch_alone_and_a_scorer_out_of_reach_the_rest_of_the_chunk(
    demo_texts: list[str], scorer: Scorer, tmp_path: Path, splunkd_down: str
) -> None:
    """A 500 is the service failing that batch: the batches after it are sent and scored. A 502
    (nothing behind the gateway) is the scorer out of reach: the rest of that chunk is not sent,
    the next chunk tries again."""
    first = splunk_records(demo_texts[:50])  # five batches of 10
    last = splunk_records(demo_texts[50:70], start=50)  # two
    chunks = [(csv_body(first), False), (csv_body(last), True)]
    gateway = (502, {"code": "bad_gateway", "message": "no scorer behind the gateway"})
    with ScriptedProxy(scorer.port, answers={2: INTERNAL, 4: gateway}) as proxy:
        search = _search([f"url={proxy.url}", "batch_size=10", "onerror=tag"], chunks, tmp_path, splunkd_down)

    assert search.exit_code == 0, search.stderr
    assert search.errors() == []
    assert [reply.metadata.get("finished") for reply in search.replies] == [False, True]
    assert [len(reply.records) for reply in search.replies] == [50, 20]
    records = search.records
    assert [r["_serial"] for r in records] == [str(i) for i in range(70)]
    failed = f"not scored: the scorer at {proxy.url} failed: HTTP 500 internal: the index is gone"
    down = f"not scored: the scorer at {proxy.url} failed: HTTP 502 bad_gateway: no scorer behind the gateway"
    for i, record in enumerate(records):
        if 10 <= i < 20 or 30 <= i < 50:
            assert record["anomaly_error"] == (failed if i < 20 else down)
            assert [record[f"anomaly_{name}"] for name in ADDED[:-1]] == ["", "", "", "", ""]
        else:
            assert record["anomaly_error"] == ""
            assert record["anomaly_score"] != ""
    # after the 502 no more of that chunk was sent (the batch read ahead neither); the next chunk was
    # sent again
    assert [e.status for e in proxy.scoring()] == [200, 500, 200, 502, 200, 200]
    sent = [event for e in proxy.scoring() for event in e.events]
    assert sent == [json.loads(t) for t in demo_texts[:40] + demo_texts[50:70]]
    assert search.stderr.count("(onerror=tag: this batch's records pass through, tagged)") == 1
    assert search.stderr.count("(onerror=tag: the records pass through, tagged)") == 1


# ---------------------------------------------------------------- the overlap, seen from inside
# Runs one chunk of 6 batches through the command's own code (splunklib's reading and writing, the
# command's stream) under Splunk's Python, with a stand-in for the scorer's client. In its k-th call
# the stand-in waits until the command has read batch k+1 (all of it) and written batch k-1, then a
# moment longer (to let a command that reads further ahead do so), and notes how far it had got. A
# command that waits for the scorer before going on cannot get there: the stand-in gives up after
# GIVE_UP seconds (a bound against hanging, not a measured time) and stops waiting from then on.
OVERLAP_DRIVER = r"""
import io, json, sys, time
sys.path.insert(0, sys.argv[1])
import ocsfanomaly
from splunklib.searchcommands.internals import RecordWriterV2

SIZE, BATCHES, GIVE_UP = 10, 6, 30.0
TOTAL = SIZE * BATCHES
command = ocsfanomaly.OcsfAnomalyCommand()
command._settings = ocsfanomaly.Settings(**{**ocsfanomaly.DEFAULTS, "batch_size": SIZE})
writer = command._record_writer = RecordWriterV2(io.BytesIO())
read = [0]
reader = command._read_csv_records


def counted(ifile):
    for record in reader(ifile):
        read[0] += 1
        yield record


command._read_csv_records = counted


class StandIn:
    calls = []
    gave_up = False

    def score(self, bodies):
        k = len(self.calls) + 1
        wanted_read, wanted_written = min(TOTAL, (k + 1) * SIZE), (k - 1) * SIZE
        deadline = time.monotonic() + GIVE_UP
        while not StandIn.gave_up and (read[0] < wanted_read or writer.pending_record_count < wanted_written):
            if time.monotonic() > deadline:
                StandIn.gave_up = True
            time.sleep(0.001)
        time.sleep(0.05)
        self.calls.append({"batch": k, "read": read[0], "written": writer.pending_record_count,
                           "wanted_read": wanted_read, "wanted_written": wanted_written, "events": len(bodies)})
        return [{"score": json.loads(body)["n"], "p_value": 0.5, "is_anomaly": False,
                 "model": {"version": "v1"}, "reasons": []} for body in bodies]


command._scorer = StandIn()
body = "_serial,_raw\r\n" + "".join('%d,"{""class_uid"": 4001, ""n"": %d}"\r\n' % (i, i) for i in range(TOTAL))
command._execute_chunk_v2(command.stream, ({}, body))
print(json.dumps({"calls": StandIn.calls, "gave_up": StandIn.gave_up, "body": writer._buffer.getvalue()}))
"""


def test_the_scorer_scores_a_batch_while_the_command_reads_the_next_and_writes_the_one_before(
    tmp_path: Path,
) -> None:
    driver = tmp_path / "overlap_driver.py"
    driver.write_text(OVERLAP_DRIVER, encoding="utf-8")
    done = subprocess.run(
        [*splunk_python(), str(driver), str(APP_DIR / "bin")],
        capture_output=True,
        env=command_environment(tmp_path),
        cwd=tmp_path,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    seen = json.loads(done.stdout)
    calls = seen["calls"]
    assert [call["batch"] for call in calls] == [1, 2, 3, 4, 5, 6]
    assert not seen["gave_up"], f"the command waited for the scorer instead of going on: {calls}"
    for call in calls:
        k = call["batch"]
        assert call["read"] >= call["wanted_read"]  # batch k+1 read while batch k was scored
        assert call["written"] >= call["wanted_written"]  # and batch k-1 written
        # ... and no further: batch k+1 waits behind batch k, the command reads one record past it
        assert call["read"] <= min(60, (k + 1) * 10 + 1)
    # the records as they were, in order, each with its own verdict
    _, records = parse_records(seen["body"].encode("utf-8"))
    assert [r["_serial"] for r in records] == [str(i) for i in range(60)]
    assert [r["anomaly_score"] for r in records] == [str(i) for i in range(60)]
    assert {r["anomaly_error"] for r in records} == {""}
