"""The Splunk app as Splunk installs it (integrations/splunk/ocsf_anomaly): its package, its dashboard, its
example alert, its macros, and what splunk-appinspect says of the package.

No Splunk can run here, so the dashboard's searches cannot run. What can be checked is checked: every
file parses as Splunk reads it; every search of the dashboard starts from the ``ocsf_anomaly_base``
macro and the ``| ocsfanomaly`` command, or post-processes the one search that does; every token
it uses is set; every macro it calls exists with that many arguments; the fields the panels read
are made and kept; the options it and the alert give the command are accepted by the real command
(its getinfo, through the harness of tests/splunk_protocol.py); the alert is disabled, scheduled
and needs no alert action configured. splunk-appinspect (a proprietary dev tool, in its own venv,
``.venv-appinspect``, which ``make test`` installs) really inspects the package ``make splunk-app``
builds: no failure, no error, and every warning it leaves is listed, with why, in the app's README.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from splunk_protocol import APP_DIR, REPO, copy_app, run_search

VIEWS = APP_DIR / "default" / "data" / "ui" / "views"
DASHBOARD = VIEWS / "ocsf_anomaly_overview.xml"
NAV = APP_DIR / "default" / "data" / "ui" / "nav" / "default.xml"
APPINSPECT = REPO / ".venv-appinspect" / "bin" / "splunk-appinspect"
BASE_MACRO = "`ocsf_anomaly_base`"
PANEL_TYPES = {"chart", "table", "single", "event"}

Conf = dict[str, dict[str, str]]


# ---------------------------------------------------------------- .conf files as Splunk reads them
def read_conf(path: Path) -> Conf:
    """A Splunk .conf file: ``[stanza]`` headers, ``key = value`` lines, a ``\\`` at a line's end
    continuing the value on the next line (the line break kept), ``#`` comments on lines of their
    own. Settings before the first stanza belong to ``default``. A line that is none of these, or a
    key set twice in one stanza, fails: Splunk would read something else than what was meant."""
    conf: Conf = {}
    stanza = conf.setdefault("default", {})
    lines = iter(enumerate(path.read_text(encoding="utf-8").splitlines(), start=1))
    for number, line in lines:
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith("[") and text.endswith("]"):
            name = text[1:-1]
            assert name not in conf or name == "default", f"{path.name}:{number}: stanza [{name}] twice"
            stanza = conf.setdefault(name, {})
            continue
        assert "=" in text, f"{path.name}:{number}: neither a stanza, a setting nor a comment: {line!r}"
        key, value = (part.strip() for part in text.split("=", 1))
        while value.endswith("\\"):
            number, following = next(lines)
            value = value[:-1] + "\n" + following.strip()
        assert key not in stanza, f"{path.name}:{number}: {key} set twice in one stanza"
        stanza[key] = value
    return conf


def is_true(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "t", "yes", "y")


# ---------------------------------------------------------------- the dashboard's searches
def dashboard() -> ET.Element:
    return ET.parse(DASHBOARD).getroot()


def searches(root: ET.Element) -> list[ET.Element]:
    return list(root.iter("search"))


def query(search: ET.Element) -> str:
    text = (search.findtext("query") or "").strip()
    assert text, f"a search without a query: {ET.tostring(search)[:200]!r}"
    return text


def scoring_searches(root: ET.Element) -> list[str]:
    """The queries that score events (the dashboard's own searches, not post-processes)."""
    return [query(s) for s in searches(root) if s.get("base") is None]


TOKEN = re.compile(r"\$([^$\s|]+)(?:\|[a-z]+)?\$")


def tokens_in(text: str) -> set[str]:
    return set(TOKEN.findall(text.replace("$$", "")))


def macro_calls(text: str) -> list[tuple[str, int]]:
    """Each `name` or `name(a, b)` macro call in a search, with its number of arguments."""
    calls = []
    for call in re.findall(r"`([^`]+)`", text):
        name, _, args = call.partition("(")
        calls.append((name.strip(), len(args.rstrip(")").split(",")) if args else 0))
    return calls


def command_args(search: str) -> list[list[str]]:
    """The arguments of each ``ocsfanomaly`` in a search (up to the next pipe)."""
    return [
        [arg for arg in re.split(r"\s+", match) if arg and arg != "\\"]
        for match in re.findall(r"\|\s*ocsfanomaly\b([^|]*)", search)
    ]


def test_the_dashboard_is_a_simple_xml_1_1_form_that_scores_once_and_post_processes() -> None:
    root = dashboard()
    assert root.tag == "form"
    assert root.get("version") == "1.1"  # what Splunk Cloud and AppInspect require of Simple XML
    assert (root.findtext("label") or "").strip()
    panels = [element for row in root.iter("row") for element in row.iter() if element.tag in PANEL_TYPES]
    assert len(panels) >= 10
    for panel in panels:
        assert panel.find("search") is not None, f"a {panel.tag} panel without a search"

    ids = {s.get("id") for s in searches(root) if s.get("id")}
    assert ids == {"scored"}
    for search in searches(root):
        text = query(search)
        if search.get("base") is not None:
            assert search.get("base") in ids
            assert "ocsfanomaly" not in text, "a post-process scores again"
            continue
        # a search of its own: the events of the macro, scored by the command
        assert text.startswith(BASE_MACRO), text
        assert re.search(r"\|\s*ocsfanomaly\b", text), text
        assert search.findtext("earliest")
        assert search.findtext("latest")
    # the scoring search runs once for the page; the drill-down's own runs only on a click
    assert len(scoring_searches(root)) == 2


def test_every_token_the_dashboard_uses_is_set_by_an_input_or_a_drilldown() -> None:
    root = dashboard()
    defined: set[str] = set()
    for element in root.iter("input"):
        token = element.get("token")
        assert token
        defined |= (
            {token, f"{token}.earliest", f"{token}.latest"} if element.get("type") == "time" else {token}
        )
    defined |= {e.get("token", "") for e in root.iter() if e.tag in ("set", "unset", "eval")}
    # what Simple XML itself sets inside a drilldown or an input's change handler
    predefined_in_handlers = {"earliest", "latest", "label", "value"}

    handlers = [e for e in root.iter() if e.tag in ("drilldown", "change", "init")]
    in_handlers = {id(e) for handler in handlers for e in handler.iter()}
    for element in root.iter():
        for text in [element.text or "", *element.attrib.values()]:
            for token in tokens_in(text):
                if id(element) in in_handlers and (
                    token in predefined_in_handlers or token.startswith(("click.", "row."))
                ):
                    continue
                assert token in defined, f"<{element.tag}> uses ${token}$, which nothing sets"


def test_the_panels_show_class_entity_score_threshold_reasons_and_drill_down_to_the_events() -> None:
    root = dashboard()
    post = [query(s) for s in searches(root) if s.get("base")]

    def one(pattern: str) -> str:
        (found,) = [q for q in post if re.search(pattern, q, re.S)]
        return found

    one(r"where anomaly_is_anomaly=1\s*\|\s*timechart count by ocsf_class")  # over time by class
    one(r"where anomaly_is_anomaly=1\s*\|\s*timechart count by ocsf_entity")  # over time by entity
    one(r"bin anomaly_score .*chart count over anomaly_score by verdict")  # scores, split by verdict
    one(r"anomaly_p_value <= \$alpha\$.*chart count over band by verdict")  # p-values against alpha
    one(r"mvexpand anomaly_reasons.*rex field=anomaly_reasons")  # the top reasons

    # each drill-down sets a key the events panel's search knows, and its time range
    drill_keys = set()
    for drilldown in root.iter("drilldown"):
        sets = {s.get("token"): (s.text or "") for s in drilldown.iter("set")}
        assert {"drill_key", "drill_label", "drill_earliest", "drill_latest"} <= set(sets)
        drill_keys.add(sets["drill_key"].split("=", 1)[0])
    assert drill_keys == {"class", "entity", "reason"}
    (events_row,) = [row for row in root.iter("row") if row.get("depends")]
    assert events_row.get("depends") == "$drill_key$"
    (event_panel,) = events_row.iter("event")
    search = event_panel.find("search")
    assert search is not None
    assert (search.findtext("earliest"), search.findtext("latest")) == ("$drill_earliest$", "$drill_latest$")
    text = query(search)
    assert re.search(r"\|\s*where anomaly_is_anomaly=1", text)
    for key in drill_keys:
        assert f'"{key}=" . ' in text, f"the events panel cannot filter on {key}="
    assert "search drill_keys=$drill_key|s$" in text  # the clicked value quoted, whatever it holds


def test_the_fields_the_panels_read_are_made_by_the_macro_and_kept_by_the_scoring_search() -> None:
    root = dashboard()
    (scored,) = [s for s in searches(root) if s.get("id") == "scored"]
    kept = re.search(r"\|\s*fields ([^|]+)", query(scored))
    assert kept is not None
    kept_fields = set(kept.group(1).split())
    macro = read_conf(APP_DIR / "default" / "macros.conf")["ocsf_anomaly_fields(1)"]["definition"]
    made = set(re.findall(r"output=(\w+)", macro)) | set(re.findall(r"(?:eval |, )(\w+)=", macro))
    added = {f"anomaly_{name}" for name in ("score", "p_value", "is_anomaly", "reasons", "error")}
    for q in (query(s) for s in searches(root) if s.get("base")):
        used = set(re.findall(r"\b(ocsf_\w+|anomaly_\w+)\b", q))
        assert used <= kept_fields, f"{q!r} reads {used - kept_fields}, which the scoring search drops"
        assert used <= made | added, f"{q!r} reads {used - made - added}, which nothing makes"


def test_every_macro_called_is_defined_with_that_many_arguments() -> None:
    macros = read_conf(APP_DIR / "default" / "macros.conf")
    base = macros["ocsf_anomaly_base"]
    assert base["definition"] == "index=* sourcetype=ocsf*"
    assert not is_true(base.get("iseval", "0"))
    for name, stanza in macros.items():
        if name == "default":
            continue
        arity = int(name.split("(")[1].rstrip(")")) if "(" in name else 0
        args = [a.strip() for a in stanza.get("args", "").split(",") if a.strip()]
        assert len(args) == arity, f"[{name}] declares {arity} arguments and names {args}"
        assert tokens_in(stanza["definition"]) == set(args), f"[{name}] uses other arguments than {args}"
    saved = read_conf(APP_DIR / "default" / "savedsearches.conf")
    texts = [ET.tostring(dashboard(), encoding="unicode")]
    texts += [stanza["search"] for name, stanza in saved.items() if name != "default"]
    texts += [stanza["definition"] for stanza in macros.values() if "definition" in stanza]
    called = {call for text in texts for call in macro_calls(text)}
    assert ("ocsf_anomaly_base", 0) in called
    for name, arity in called:
        stanza = name if arity == 0 else f"{name}({arity})"
        assert stanza in macros, f"`{name}` is called with {arity} arguments: macros.conf has no [{stanza}]"


def test_the_entities_to_choose_from_are_ocsf_paths() -> None:
    (entity,) = [i for i in dashboard().iter("input") if i.get("token") == "entity"]
    choices = [c.get("value", "") for c in entity.iter("choice")]
    assert "actor.user.name" in choices
    assert "src_endpoint.ip" in choices
    assert all(re.fullmatch(r"[a-z_]+(\.[a-z_]+)+", c) for c in choices)  # safe as a macro argument
    assert entity.findtext("default") in choices


def test_the_command_accepts_the_options_the_dashboard_and_the_alert_give_it(
    tmp_path: Path, splunkd_down: str
) -> None:
    """Each ``ocsfanomaly`` of the dashboard (with each alpha it offers) and of the alert, asked for its
    configuration as splunkd asks it (getinfo, then the end of input): no ERROR, exit code 0."""
    (alpha,) = [i for i in dashboard().iter("input") if i.get("token") == "alpha"]
    alphas = [c.get("value", "") for c in alpha.iter("choice")]
    assert alpha.findtext("default") in alphas
    in_dashboard = {tuple(args) for text in scoring_searches(dashboard()) for args in command_args(text)}
    # the drill-down scores as the panels do, or an anomaly clicked might not be one there
    assert len(in_dashboard) == 1, in_dashboard
    (dashboards,) = in_dashboard
    invocations = {tuple(arg.replace("$alpha$", value) for arg in dashboards) for value in alphas}
    saved = read_conf(APP_DIR / "default" / "savedsearches.conf")
    for name, stanza in saved.items():
        if name != "default":
            invocations |= {tuple(args) for args in command_args(stanza["search"])}
    assert len(invocations) == len(alphas) + 1
    for i, args in enumerate(sorted(invocations)):
        assert not tokens_in(" ".join(args)), args
        search = run_search(list(args), [], work=tmp_path / str(i), splunkd_uri=splunkd_down)
        assert search.errors() == [], args
        assert search.exit_code == 0, (args, search.stderr)


# ---------------------------------------------------------------- the example alert
def test_the_example_alert_is_disabled_scheduled_and_needs_no_configured_action() -> None:
    saved = read_conf(APP_DIR / "default" / "savedsearches.conf")
    alerts = {name: stanza for name, stanza in saved.items() if name != "default"}
    assert len(alerts) == 1
    for name, alert in alerts.items():
        assert is_true(alert["disabled"]), f"[{name}] must be disabled until its macro is set"
        search = alert["search"]
        assert search.startswith(BASE_MACRO), search
        assert re.search(r"\|\s*ocsfanomaly\b", search)
        assert re.search(r"\|\s*where anomaly_is_anomaly=1\b", search)
        assert is_true(alert["enableSched"])
        fields = alert["cron_schedule"].split()
        assert len(fields) == 5, alert["cron_schedule"]
        assert fields[0] != "*", alert["cron_schedule"]  # not every minute
        assert alert["dispatch.earliest_time"]
        assert alert["dispatch.latest_time"]
        # fires when the search returns any event, and is listed under Triggered Alerts
        assert (alert["counttype"], alert["relation"], alert["quantity"]) == (
            "number of events",
            "greater than",
            "0",
        )
        assert is_true(alert["alert.track"])
        actions = [a.strip() for a in alert.get("actions", "").split(",") if a.strip()]
        enabled = [
            key for key, value in alert.items() if re.fullmatch(r"action\.\w+", key) and is_true(value)
        ]
        # an alert action (email, webhook, script) would need configuring: a mail server, a URL
        assert actions == []
        assert enabled == []
        assert alert["request.ui_dispatch_app"] == APP_DIR.name


# ---------------------------------------------------------------- the app's other files
def test_the_app_is_visible_and_opens_on_its_dashboard() -> None:
    app = read_conf(APP_DIR / "default" / "app.conf")
    assert is_true(app["ui"]["is_visible"])
    nav = ET.parse(NAV).getroot()
    assert nav.tag == "nav"
    views = [view.get("name") for view in nav.iter("view")]
    (default,) = [view.get("name") for view in nav.iter("view") if view.get("default") == "true"]
    assert default == DASHBOARD.stem
    own = {path.stem for path in VIEWS.glob("*.xml")}
    splunks = {"search", "alerts", "reports", "dashboards", "datasets", "analytics_workspace"}
    assert set(views) <= own | splunks, set(views) - own - splunks
    for path in VIEWS.glob("*.xml"):
        ET.parse(path)  # every view is well-formed XML


def test_the_metadata_lets_everyone_read_and_only_admins_write() -> None:
    meta = read_conf(APP_DIR / "metadata" / "default.meta")
    assert meta[""]["access"] == "read : [ * ], write : [ admin, sc_admin ]"
    for name in ("commands", "searchbnf"):
        assert meta[name]["export"] == "system"
    # the dashboard, the alert and the macros stay in the app
    assert meta[""]["export"] == "none"
    assert not {"views", "savedsearches", "macros"} & set(meta)


# ---------------------------------------------------------------- the package
def test_make_splunk_app_packs_the_app_as_splunk_installs_it(tmp_path: Path) -> None:
    source = copy_app(tmp_path / "src")
    # what a working copy collects and the package must leave out
    (source / "bin" / "__pycache__").mkdir()
    (source / "bin" / "__pycache__" / "ocsfanomaly.cpython-311.pyc").write_bytes(b"\0")
    (source / "bin" / "lib" / "splunklib" / "stale.pyc").write_bytes(b"\0")
    (source / "local").mkdir()
    (source / "local" / "ocsf_anomaly.conf").write_text("[scorer]\nurl = http://mine:8080\n")
    (source / "metadata" / "local.meta").write_text("[]\n")
    (source / ".DS_Store").write_bytes(b"\0")
    dist = tmp_path / "dist"
    subprocess.run(
        ["make", "-s", "splunk-app", f"SPLUNK_APP_SRC={source}", f"SPLUNK_DIST={dist}"],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    app = read_conf(APP_DIR / "default" / "app.conf")
    version = app["id"]["version"]
    assert version == app["launcher"]["version"]
    (package,) = dist.iterdir()
    assert package.name == f"ocsf_anomaly-{version}.tgz"
    with tarfile.open(package) as tar:
        members = {m.name: m for m in tar.getmembers()}
    names = {name for name, m in members.items() if m.isfile()}
    expected = {
        f"ocsf_anomaly/{path.relative_to(APP_DIR)}"
        for path in APP_DIR.rglob("*")
        if path.is_file()
        and "__pycache__" not in path.parts
        and "local" not in path.relative_to(APP_DIR).parts
    }
    assert names == expected
    assert {
        "ocsf_anomaly/bin/ocsfanomaly.py",
        "ocsf_anomaly/bin/lib/splunklib/searchcommands/streaming_command.py",
        "ocsf_anomaly/bin/lib/LICENSE",
        "ocsf_anomaly/bin/lib/README",
        "ocsf_anomaly/default/app.conf",
        "ocsf_anomaly/default/commands.conf",
        "ocsf_anomaly/default/macros.conf",
        "ocsf_anomaly/default/savedsearches.conf",
        "ocsf_anomaly/default/data/ui/views/ocsf_anomaly_overview.xml",
        "ocsf_anomaly/default/data/ui/nav/default.xml",
        "ocsf_anomaly/README/ocsf_anomaly.conf.spec",
        "ocsf_anomaly/metadata/default.meta",
        "ocsf_anomaly/README.md",
    } <= names
    assert all(name == "ocsf_anomaly" or name.startswith("ocsf_anomaly/") for name in members)
    assert not [
        n for n in members if "__pycache__" in n or n.endswith(".pyc") or "/." in n or "local" in n.split("/")
    ]
    assert all(m.uid == 0 and m.gid == 0 for m in members.values())


def test_git_ignores_no_file_of_the_app() -> None:
    """The app's default/data/ (dashboard, navigation) must not fall under the repository's data/ rule."""
    files = [
        str(path.relative_to(REPO))
        for path in APP_DIR.rglob("*")
        if path.is_file()
        and "__pycache__" not in path.parts
        and "local" not in path.relative_to(APP_DIR).parts
    ]
    assert str(DASHBOARD.relative_to(REPO)) in files
    done = subprocess.run(
        ["git", "check-ignore", "--no-index", "--verbose", "--stdin"],
        input="\n".join(files),
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode in (0, 1), done.stderr  # 1: nothing ignored
    assert done.stdout == ""


# ---------------------------------------------------------------- splunk-appinspect
def require_appinspect() -> Path:
    """The tool, or a skip saying how to get it; under CI=true its absence is a failure (as
    tests/conftest.py makes of a skip for a required dependency)."""
    if not APPINSPECT.exists():
        reason = f"splunk-appinspect is not installed at {APPINSPECT} (make test installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: a required dependency is missing: {reason}")
        pytest.skip(reason)
    return APPINSPECT


# Checks whose success shows AppInspect saw the dashboard, the alert and the reload triggers.
SEEN = (
    "check_simplexml_standards_version",
    "check_that_all_xml_files_are_well_formed",
    "check_for_sched_saved_searches_earliest_time",
    "check_for_sched_saved_searches_latest_time",
    "check_reload_trigger_for_all_custom_confs",
    "check_custom_conf_replication",
)


def test_appinspect_finds_no_failure_or_error_and_the_readme_explains_each_warning(tmp_path: Path) -> None:
    tool = require_appinspect()
    dist = tmp_path / "dist"
    subprocess.run(
        ["make", "-s", "splunk-app", f"SPLUNK_DIST={dist}"], cwd=REPO, check=True, capture_output=True
    )
    (package,) = dist.glob("*.tgz")
    report_path = tmp_path / "report.json"
    done = subprocess.run(
        [
            *(str(tool), "inspect", str(package), "--mode", "precert", "--skip-trusted-libraries-update"),
            *("--data-format", "json", "--output-file", str(report_path)),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(report_path.read_text(encoding="utf-8"))
    (app,) = report["reports"]
    assert app["app_package_id"] == APP_DIR.name
    results = {check["name"]: check for group in app["groups"] for check in group["checks"]}

    def listed(*outcomes: str) -> dict[str, list[str]]:
        return {
            name: [str(m.get("message")) for m in check["messages"]]
            for name, check in results.items()
            if check["result"] in outcomes
        }

    assert listed("failure", "error") == {}
    assert (report["summary"]["failure"], report["summary"]["error"]) == (0, 0)
    for name in SEEN:
        assert results[name]["result"] == "success", (name, results[name]["messages"])
    readme = (APP_DIR / "README.md").read_text(encoding="utf-8")
    undocumented = {
        name: messages
        for name, messages in listed("warning", "future_failure", "skipped").items()
        if f"`{name}`" not in readme
    }
    assert undocumented == {}, "AppInspect warnings the app's README does not list and explain"
