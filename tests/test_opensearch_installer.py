"""``ocsf-anomaly opensearch install / uninstall`` against a stand-in cluster (tests/fake_opensearch.py:
no OpenSearch node can run here): the calls and their bodies, idempotency, updates of what changed
alone, one-line errors, and an uninstall that leaves the cluster as it found it."""

from __future__ import annotations

import json
import re
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from certificates import make_certificate
from fake_opensearch import DEFAULTS, FakeOpenSearch
from live_scorer import closed_port, serve_app

from scorer.cli import main
from scorer.opensearch import dashboards, definitions, installer
from scorer.opensearch.definitions import PRIVATE_IP_SETTING, TRUSTED_SETTING, Options
from scorer.opensearch.installer import FINGERPRINT_PARAMETER, InstallError, install, uninstall
from scorer.settings import Settings

AUTH = ("admin", "Adm1n-pass")
TOKEN = "tok-3f9a1c77e2"
OPTIONS = Options(
    scorer_url="http://10.0.0.5:8080", scorer_token=TOKEN, index_patterns=("ocsf-a-*", "ocsf-b-*")
)


@pytest.fixture(autouse=True)
def _cheap_fingerprints(monkeypatch: pytest.MonkeyPatch) -> None:
    """The production hash costs ~0.3 s a token on purpose; the tests need its logic, not its cost
    (test_the_token_fingerprint checks the real one)."""
    monkeypatch.setattr(installer, "PBKDF2_ITERATIONS", 1_000)


@pytest.fixture(autouse=True)
def _no_secrets_from_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    """install reads these when no flag gives them: a developer's shell must not change the tests."""
    monkeypatch.delenv("OCSF_ANOMALY_API_TOKEN", raising=False)
    monkeypatch.delenv("OCSF_ANOMALY_OPENSEARCH_AUTH", raising=False)


@pytest.fixture
def fake() -> Iterator[FakeOpenSearch]:
    with FakeOpenSearch(credentials=AUTH) as server:
        yield server


def run(
    fake: FakeOpenSearch, options: Options = OPTIONS, *, check_scorer: bool = False, **kwargs: Any
) -> tuple[dict[str, str], list[str]]:
    """An install; the scorer not checked unless asked (OPTIONS's is at an address no scorer serves:
    the tests that check it run the real one, below)."""
    lines: list[str] = []
    ids = install(fake.url, options, auth=AUTH, say=lines.append, check_scorer=check_scorer, **kwargs)
    return ids, lines


def remove(fake: FakeOpenSearch, options: Options = OPTIONS, **kwargs: Any) -> list[str]:
    lines: list[str] = []
    uninstall(fake.url, options, auth=AUTH, say=lines.append, **kwargs)
    return lines


def writes_since(fake: FakeOpenSearch, mark: int) -> list[str]:
    return [str(call) for call in fake.calls[mark:] if call.writes]


def test_install_sends_the_definitions_bodies(fake: FakeOpenSearch) -> None:
    ids, lines = run(fake)
    connector_id, group_id, model_id = ids["connector_id"], ids["model_group_id"], ids["model_id"]
    writes = fake.writes()
    assert [str(call) for call in writes] == [
        f"PUT /_component_template/{OPTIONS.component_template}",  # the record of the settings change first
        "PUT /_cluster/settings",
        "POST /_plugins/_ml/connectors/_create",
        "POST /_plugins/_ml/model_groups/_register",
        "POST /_plugins/_ml/models/_register",
        f"PUT /_ingest/pipeline/{OPTIONS.pipeline}",
        f"PUT /_component_template/{OPTIONS.component_template}",
        f"PUT /_index_template/{OPTIONS.template}",
    ]
    record, settings, connector, group, model, pipeline, component, template = (call.body for call in writes)
    regex = definitions.trusted_regex(OPTIONS)
    assert settings == {
        "persistent": {TRUSTED_SETTING: [*DEFAULTS[TRUSTED_SETTING], regex], PRIVATE_IP_SETTING: True}
    }
    fingerprint = connector["parameters"].pop(FINGERPRINT_PARAMETER)
    assert connector == definitions.connector(OPTIONS)
    assert TOKEN not in json.dumps(fingerprint)
    assert group == definitions.model_group(OPTIONS)
    assert model == definitions.model(OPTIONS, connector_id, group_id)
    assert writes[4].query == {"deploy": "true"}
    assert pipeline == definitions.pipeline(OPTIONS, model_id)
    meta = component["_meta"][definitions.META_KEY]
    assert component == definitions.component_template(OPTIONS, meta)
    assert meta["trusted_regex"] == regex
    assert meta["private_ip_enabled_before"] is None
    assert record == component
    assert template == definitions.index_template(OPTIONS)
    assert not any(call.path.startswith("/_template") for call in fake.calls)  # composable templates only
    # the cluster's view: the token only in the (encrypted) credential, the model deployed
    assert fake.secrets[connector_id] == {"token": TOKEN}
    assert TOKEN not in json.dumps(fake.connectors[connector_id])
    assert fake.models[model_id]["model_state"] == "DEPLOYED"
    assert fake.pipelines[OPTIONS.pipeline]["processors"][-1]["ml_inference"]["model_id"] == model_id
    assert lines == [
        f"cluster settings: updated (trusted endpoint added: {regex}; private_ip_enabled: true)",
        f"connector: created {connector_id}",
        f"model group: created {group_id}",
        f"model: created and deployed {model_id}",
        "ingest pipeline: created",
        "component template: created",
        "index template: created",
    ]


def test_a_second_install_writes_nothing(fake: FakeOpenSearch) -> None:
    first, _ = run(fake)
    mark = len(fake.calls)
    second, lines = run(fake)
    assert second == first
    assert writes_since(fake, mark) == []
    assert all("unchanged" in line for line in lines), lines
    assert len(lines) == 7


def test_a_new_token_updates_the_connector_alone(fake: FakeOpenSearch) -> None:
    ids, _ = run(fake)
    connector_id, model_id = ids["connector_id"], ids["model_id"]
    mark = len(fake.calls)
    new = Options(**{**vars(OPTIONS), "scorer_token": "tok-rotated-0b1d"})
    again, lines = run(fake, new)
    assert again == ids
    assert writes_since(fake, mark) == [
        f"POST /_plugins/_ml/models/{model_id}/_undeploy",  # ML Commons refuses to change a connector in use
        f"PUT /_plugins/_ml/connectors/{connector_id}",
        f"POST /_plugins/_ml/models/{model_id}/_deploy",
    ]
    assert fake.secrets[connector_id] == {"token": "tok-rotated-0b1d"}
    assert fake.models[model_id]["model_state"] == "DEPLOYED"
    assert (
        f"connector: updated {connector_id} (token; model {model_id} undeployed and deployed again)" in lines
    )
    mark = len(fake.calls)
    run(fake, new)
    assert writes_since(fake, mark) == []


def test_a_new_scorer_url_updates_the_connector_the_model_and_the_trusted_regex(fake: FakeOpenSearch) -> None:
    before = fake.state()
    ids, _ = run(fake)
    mark = len(fake.calls)
    moved = Options(**{**vars(OPTIONS), "scorer_url": "http://10.0.0.9:8443"})
    again, lines = run(fake, moved)
    assert again == ids
    assert writes_since(fake, mark) == [
        f"PUT /_component_template/{OPTIONS.component_template}",  # the record, before the change
        "PUT /_cluster/settings",
        f"POST /_plugins/_ml/models/{ids['model_id']}/_undeploy",
        f"PUT /_plugins/_ml/connectors/{ids['connector_id']}",
        f"POST /_plugins/_ml/models/{ids['model_id']}/_deploy",
        f"PUT /_plugins/_ml/models/{ids['model_id']}",
        f"PUT /_component_template/{OPTIONS.component_template}",  # its _meta records the new regex
    ]
    # the old regex is replaced, not kept beside the new one
    assert fake.persistent[TRUSTED_SETTING] == [*DEFAULTS[TRUSTED_SETTING], definitions.trusted_regex(moved)]
    assert fake.connectors[ids["connector_id"]]["actions"][0]["url"] == moved.predict_url
    assert fake.models[ids["model_id"]]["description"] == definitions.model(moved, "", "")["description"]
    assert any(
        line.startswith(f"connector: updated {ids['connector_id']} (description, actions;") for line in lines
    )
    remove(fake, moved)
    assert fake.state() == before


def test_without_a_token_the_connector_carries_the_placeholder(fake: FakeOpenSearch) -> None:
    ids, _ = run(fake, Options(scorer_url="http://10.0.0.5:8080"))
    assert fake.secrets[ids["connector_id"]] == {"token": definitions.TOKEN_PLACEHOLDER}


def test_a_model_deleted_by_hand_is_registered_again_and_the_pipeline_follows(fake: FakeOpenSearch) -> None:
    ids, _ = run(fake)
    fake.models.pop(ids["model_id"])
    mark = len(fake.calls)
    again, lines = run(fake)
    assert again["model_id"] != ids["model_id"]
    assert writes_since(fake, mark) == [
        "POST /_plugins/_ml/models/_register",
        f"PUT /_ingest/pipeline/{OPTIONS.pipeline}",
    ]
    assert "ingest pipeline: updated (processors)" in lines
    assert fake.pipelines[OPTIONS.pipeline]["processors"][-1]["ml_inference"]["model_id"] == again["model_id"]


@pytest.mark.parametrize(
    "settings",
    [
        {},  # the cluster's defaults: uninstall resets the list instead of pinning them
        {TRUSTED_SETTING: ["^https://api\\.openai\\.com/.*$"], PRIVATE_IP_SETTING: "false"},
    ],
    ids=["defaults", "site-settings"],
)
def test_uninstall_leaves_the_cluster_as_it_was(fake: FakeOpenSearch, settings: dict[str, Any]) -> None:
    fake.persistent.update(settings)
    fake.pipelines["site-pipeline"] = {"processors": []}
    before = fake.state()
    run(fake)
    run(fake)  # a second install must keep the record of what the first one changed
    assert fake.state() != before
    lines = remove(fake)
    assert fake.state() == before
    assert lines[-2].startswith("cluster settings: restored")
    assert lines[-1] == "component template: deleted"  # the record of the settings, last
    assert all(fake.models[m]["model_state"] != "DEPLOYED" for m in fake.models)  # none left at all
    lines = remove(fake)  # nothing left to remove
    assert [line.split(":")[1].strip() for line in lines if not line.startswith("cluster settings")] == [
        "absent"
    ] * 6
    assert fake.state() == before


def test_an_uninstall_stopped_part_way_still_undoes_the_settings_when_run_again(fake: FakeOpenSearch) -> None:
    """The record of what install changed in the cluster settings went with the component template,
    deleted second: an uninstall stopped after it (a connector it may not delete, or one another
    model uses) could never undo the settings, and the trusted-endpoint entry and
    private_ip_enabled stayed for good."""
    before = fake.state()
    run(fake)  # a scorer on a private address: the regex and private_ip_enabled both set
    assert fake.persistent[PRIVATE_IP_SETTING] == "true"
    (connector,) = fake.connectors
    fake.forbid(
        "DELETE", f"/_plugins/_ml/connectors/{connector}", "cluster:admin/opensearch/ml/delete_connector"
    )
    with pytest.raises(InstallError, match="forbidden"):
        remove(fake)
    fake.forbidden.clear()  # the privilege granted
    lines = remove(fake)
    assert any(line.startswith("cluster settings: restored") for line in lines), lines
    assert fake.state() == before


def test_settings_the_site_had_are_left_to_it(fake: FakeOpenSearch) -> None:
    regex = definitions.trusted_regex(OPTIONS)
    fake.persistent.update({TRUSTED_SETTING: [regex], PRIVATE_IP_SETTING: "true"})
    before = fake.state()
    _, lines = run(fake)
    assert lines[0] == "cluster settings: unchanged"
    remove(fake)
    assert fake.state() == before  # the regex and private_ip_enabled were there: not the install's to undo


def test_a_public_scorer_leaves_private_addresses_off(fake: FakeOpenSearch) -> None:
    public = Options(scorer_url="https://scorer.example.com", scorer_token=TOKEN)
    run(fake, public)
    (settings,) = [call.body for call in fake.writes() if call.path == "/_cluster/settings"]
    assert PRIVATE_IP_SETTING not in settings["persistent"]
    assert PRIVATE_IP_SETTING not in fake.persistent


def test_a_connector_url_the_cluster_does_not_trust_is_said_in_terms_of_the_setting(
    fake: FakeOpenSearch,
) -> None:
    def revert(line: str) -> None:
        # another tool (a settings reconciler) puts the list back between the steps
        if line.startswith("cluster settings:"):
            fake.persistent.pop(TRUSTED_SETTING)

    with pytest.raises(InstallError) as caught:
        install(fake.url, OPTIONS, auth=AUTH, say=revert, check_scorer=False)
    message = str(caught.value)
    assert "Connector URL is not matching the trusted connector endpoint regex" in message
    assert TRUSTED_SETTING in message
    assert OPTIONS.predict_url in message
    assert not fake.connectors


def test_a_transient_trusted_list_is_refused_before_anything_is_written(fake: FakeOpenSearch) -> None:
    fake.transient[TRUSTED_SETTING] = ["^https://api\\.openai\\.com/.*$"]
    with pytest.raises(InstallError, match=f"transient {TRUSTED_SETTING}"):
        run(fake)
    assert fake.writes() == []


def test_a_forbidden_call_names_the_call_and_the_privilege(fake: FakeOpenSearch) -> None:
    fake.forbid("POST", "/_plugins/_ml/connectors/_create", "cluster:admin/opensearch/ml/create_connector")
    with pytest.raises(InstallError) as caught:
        run(fake)
    message = str(caught.value)
    assert message.startswith("POST /_plugins/_ml/connectors/_create was forbidden (403: no permissions for ")
    assert "cluster:admin/opensearch/ml/create_connector" in message
    assert "--auth" in message
    assert "\n" not in message


def test_wrong_credentials_say_to_check_auth(fake: FakeOpenSearch) -> None:
    with pytest.raises(
        InstallError, match=r"refused the credentials \(GET /_component_template/.*: 401\): check --auth"
    ):
        install(fake.url, OPTIONS, auth=("admin", "wrong"), say=lambda _: None)


def test_an_unreachable_cluster_is_one_line_from_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    status = main(["opensearch", "install", "--opensearch-url", url, "--scorer-url", "http://10.0.0.5:8080"])
    err = capsys.readouterr().err
    assert status == 2
    assert err == f"error: cannot reach OpenSearch at {url} ([Errno 111] Connection refused): check " + (
        "--opensearch-url and that the cluster is up\n"
    )


def test_a_failed_deployment_is_an_error_with_the_reason(fake: FakeOpenSearch) -> None:
    fake.deploy_failure = "Failed to deploy model: no eligible node"
    with pytest.raises(InstallError, match=r"model \S+ failed to deploy"):
        run(fake)
    fake.deploy_failure = None
    ids, lines = run(fake)  # the next run deploys the model it registered
    assert f"model: deployed {ids['model_id']}" in lines
    fake.deploy_failure = "Failed to deploy model: no eligible node"
    with pytest.raises(InstallError, match="failed: Failed to deploy model: no eligible node"):
        run(fake, Options(**{**vars(OPTIONS), "scorer_token": "another"}))


def test_install_waits_for_tasks_and_deployment_and_gives_up_in_time(
    fake: FakeOpenSearch, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.pending_polls = 2
    ids, _ = run(fake)
    model_reads = [
        c for c in fake.calls if c.method == "GET" and c.path == f"/_plugins/_ml/models/{ids['model_id']}"
    ]
    assert len(model_reads) == 3  # DEPLOYING, DEPLOYING, DEPLOYED
    assert fake.models[ids["model_id"]]["model_state"] == "DEPLOYED"
    fake.pending_polls = 10**6
    monkeypatch.setattr(installer, "DEPLOY_WAIT_SECONDS", 0.3)
    with pytest.raises(InstallError, match=r"did not complete within 0\.3 s"):
        run(fake, Options(**{**vars(OPTIONS), "scorer_token": "another"}))


def test_install_on_ml_commons_3_7_which_refuses_nested_quantifiers() -> None:
    """ML Commons 3.7 validates every regex of the trusted list when it is set (validateRegexSafety)."""
    with FakeOpenSearch(regex_safety=True) as fake:
        install(fake.url, OPTIONS, say=lambda _: None, check_scorer=False)
        assert definitions.trusted_regex(OPTIONS) in fake.trusted()


def test_dashboards_are_imported_once_and_deleted(fake: FakeOpenSearch) -> None:
    ndjson = dashboards.ndjson(OPTIONS)
    objects = [json.loads(line) for line in ndjson.splitlines() if line.strip()]
    objects = [o for o in objects if "type" in o]
    assert objects
    _, lines = run(fake, dashboards_url=fake.url)
    imports = [c for c in fake.calls if c.path == "/api/saved_objects/_import"]
    assert [(c.query, c.body) for c in imports] == [({"overwrite": "true"}, ndjson)]
    assert set(fake.saved_objects) == {(o["type"], o["id"]) for o in objects}
    assert lines[-1] == f"dashboards: imported {len(objects)} saved objects"
    mark = len(fake.calls)
    _, lines = run(fake, dashboards_url=fake.url)
    assert writes_since(fake, mark) == []
    assert lines[-1] == f"dashboards: unchanged ({len(objects)} saved objects)"
    mark = len(fake.calls)
    lines = remove(fake, dashboards_url=fake.url)
    assert sorted(c for c in writes_since(fake, mark) if "/api/" in c) == sorted(
        f"DELETE /api/saved_objects/{o['type']}/{o['id']}" for o in objects
    )
    assert fake.saved_objects == {}
    assert lines[-1] == f"dashboards: deleted {len(objects)} saved objects"


def test_the_token_fingerprint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.undo()  # the production cost
    first, second = installer._fingerprint(TOKEN), installer._fingerprint(TOKEN)
    assert first.startswith("pbkdf2-sha256:600000:")
    assert TOKEN not in first
    assert first != second  # salted: equal tokens do not look equal
    assert installer._same_token(first, TOKEN)
    assert installer._same_token(second, TOKEN)
    assert not installer._same_token(first, TOKEN + "x")
    assert not installer._same_token(None, TOKEN)
    assert not installer._same_token("pbkdf2-sha256:999999999:AAAA:AAAA", TOKEN)  # would stall the install


@pytest.mark.parametrize(
    "url", ["http://scorer:99999", "http://scorer:0", "http://scorer:port", "ftp://scorer", "http://"]
)
def test_a_scorer_url_without_a_usable_port_or_host_is_refused(url: str) -> None:
    """A port out of range was written into the connector as given."""
    with pytest.raises(ValueError, match=r"the scorer's URL must be http\(s\)://host\[:port\]"):
        Options(scorer_url=url)


@pytest.mark.parametrize(
    "url", ["http://", "", "http://127.0.0.1:99999", "http://[::1", "ftp://127.0.0.1:9200", "localhost:9200"]
)
def test_an_unusable_cluster_or_dashboards_url_is_one_line_before_any_write(
    fake: FakeOpenSearch, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """ "http://" and "" ended in opensearch-py's TypeError (a traceback), a port out of range in
    "Port out of range 0-65535"; a bad --dashboards-url was found after the cluster was installed."""
    status = main(["opensearch", "install", "--opensearch-url", url, "--scorer-url", "http://10.0.0.5:8080"])
    err = capsys.readouterr().err
    assert status == 2
    assert (
        err
        == f"error: --opensearch-url must be http(s)://host[:port], e.g. https://localhost:9200, not {url!r}\n"
    )
    for action in ("install", "uninstall"):
        status = main(["opensearch", action, "--opensearch-url", fake.url, "--dashboards-url", url])
        assert status == 2
        assert capsys.readouterr().err.startswith("error: --dashboards-url must be http(s)://host[:port]")
    assert fake.calls == []


@pytest.mark.parametrize(
    ("method", "path", "body", "content_type", "said"),
    [
        (
            "GET",
            "/_cluster/settings",
            "<html><body>Sign in</body></html>",
            "text/html",
            "a body that is not JSON",
        ),
        ("GET", "/_cluster/settings", "<html>", "application/json", "a body that is not JSON"),
        (
            "GET",
            f"/_component_template/{OPTIONS.component_template}",
            "[]",
            "application/json",
            "not a JSON object",
        ),
        ("POST", "/_plugins/_ml/connectors/_search", "{}", "application/json", "no hits in {}"),
        ("POST", "/_plugins/_ml/connectors/_search", '{"hits": {}}', "application/json", "not search hits"),
        ("POST", "/_plugins/_ml/connectors/_create", '"created"', "application/json", "not a JSON object"),
        ("POST", "/_plugins/_ml/model_groups/_register", "{}", "application/json", "no model_group_id"),
        ("POST", "/_plugins/_ml/models/_register", '{"status": "CREATED"}', "application/json", "no task_id"),
    ],
)
def test_an_answer_that_is_not_the_apis_is_one_line_that_says_what_to_check(
    fake: FakeOpenSearch,
    capsys: pytest.CaptureFixture[str],
    method: str,
    path: str,
    body: str,
    content_type: str,
    said: str,
) -> None:
    """A 200 that was not JSON (a proxy's login page) ended in opensearch-py's SerializationError, and
    JSON of another shape in an AttributeError or a KeyError: tracebacks, for install and uninstall."""
    fake.answer_with(method, path, body, content_type)
    argv = ["--opensearch-url", fake.url, "--auth", ":".join(AUTH)]
    assert main(["opensearch", "install", *argv, "--no-check-scorer"]) == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert error.startswith(f"error: OpenSearch at {fake.url} answered {method} {path} with "), error
    assert said in error
    assert error.endswith(
        "check that --opensearch-url is the REST API of an OpenSearch 2.14+ cluster with ML Commons "
        "(not Dashboards, nor a proxy's page)"
    )
    status = main(["opensearch", "uninstall", *argv])  # it makes only some of these calls
    assert status == 0 or "answered" in capsys.readouterr().err.splitlines()[-1]


@pytest.mark.parametrize(
    ("method", "path", "body", "content_type"),
    [
        ("POST", "/api/saved_objects/_bulk_get", "<html><title>Log in</title></html>", "text/html"),
        ("POST", "/api/saved_objects/_bulk_get", '{"saved_objects": []}', "application/json"),
        ("POST", "/api/saved_objects/_import", "[]", "application/json"),
    ],
)
def test_a_dashboards_answer_that_is_not_its_api_is_one_line(
    fake: FakeOpenSearch, method: str, path: str, body: str, content_type: str
) -> None:
    """Dashboards behind a login (its redirect followed to an HTML page) ended in 'Expecting value:
    line 1 column 1 (char 0)', a list of the wrong length in zip()'s ValueError."""
    fake.answer_with(method, path, body, content_type)
    with pytest.raises(InstallError) as caught:
        run(fake, dashboards_url=fake.url)
    assert str(caught.value).startswith(f"OpenSearch Dashboards at {fake.url} answered {method} {path}")
    assert str(caught.value).endswith(
        "check that --dashboards-url is OpenSearch Dashboards (e.g. http://localhost:5601) and that --auth "
        "may use its API"
    )
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("status", [301, 302, 307])
def test_a_dashboards_redirect_is_not_followed_with_the_credentials(
    fake: FakeOpenSearch, status: int
) -> None:
    """urllib followed a redirect (an SSO proxy's, or anyone's who answers at that URL) and sent
    --auth's Basic credentials on to where it pointed: another host, or plain http (the security
    review's reproduction). The redirect's target here is the stand-in's own, so a followed one shows."""
    path = "/api/saved_objects/_bulk_get"
    elsewhere = fake.url.replace("://", "://user:pw@") + "/api/catch"
    fake.answer_with("POST", path, "", "text/html", status=status, headers={"Location": elsewhere})
    with pytest.raises(InstallError) as caught:
        run(fake, dashboards_url=fake.url)
    said = str(caught.value)
    assert said.startswith(
        f"OpenSearch Dashboards at {fake.url} answered POST {path} with a redirect ({status})"
    )
    assert "/api/catch, not followed" in said, said
    assert "pw" not in said, said
    assert not [call for call in fake.calls if call.path == "/api/catch"]


def test_a_dashboards_delete_answered_by_a_login_page_is_one_line(fake: FakeOpenSearch) -> None:
    (first, *_) = installer._saved_objects(dashboards.ndjson(OPTIONS))
    path = f"/api/saved_objects/{first['type']}/{first['id']}"
    fake.answer_with("DELETE", path, "<html>Log in</html>", "text/html")
    with pytest.raises(
        InstallError, match=f"answered DELETE {path} with <html>Log in</html>, not a JSON object"
    ):
        remove(fake, dashboards_url=fake.url)


@pytest.mark.parametrize("then_install", [False, True], ids=["uninstall", "install-then-uninstall"])
def test_an_install_stopped_after_the_settings_can_still_be_undone(
    fake: FakeOpenSearch, then_install: bool
) -> None:
    """The record of what the install changed in the cluster settings was written last (the component
    template's _meta): an install stopped by a later step left the trusted regex and private_ip_enabled
    changed with no record, so uninstall left them, and the next install took them for the site's own."""
    before = fake.state()
    fake.forbid("POST", "/_plugins/_ml/connectors/_create", "cluster:admin/opensearch/ml/create_connector")
    with pytest.raises(InstallError, match="forbidden"):
        run(fake)
    assert fake.persistent[PRIVATE_IP_SETTING] == "true"  # the settings step was done
    fake.forbidden.clear()  # the privilege granted
    if then_install:
        run(fake)
    lines = remove(fake)
    assert any(line.startswith("cluster settings: restored") for line in lines), lines
    assert fake.state() == before


@pytest.mark.parametrize("action", ["install", "uninstall"])
def test_a_ca_bundle_that_is_not_there_is_refused(
    fake: FakeOpenSearch, action: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Over http it was never read, so a mistyped path (or a scheme that should have been https)
    went unnoticed."""
    missing = tmp_path / "ca.pem"
    assert main(["opensearch", action, "--opensearch-url", fake.url, "--ca-certs", str(missing)]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"error: --ca-certs {missing}: no such file; give the CA bundle that signed the cluster's certificate"
    )
    assert fake.calls == []


def test_an_install_stopped_part_way_says_what_to_do_with_what_it_did(
    fake: FakeOpenSearch, capsys: pytest.CaptureFixture[str]
) -> None:
    """It said only the error, with the steps done above it and nothing about them."""
    fake.forbid("POST", "/_plugins/_ml/connectors/_create", "cluster:admin/opensearch/ml/create_connector")
    argv = ["--opensearch-url", fake.url, "--auth", ":".join(AUTH), "--scorer-url", "http://10.0.0.5:8080"]
    argv.append("--no-check-scorer")
    assert main(["opensearch", "install", *argv]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("cluster settings:"), lines
    assert lines[-2].startswith("the install stopped after the steps above, which stay in place"), lines
    assert "run this install again" in lines[-2]
    assert "ocsf-anomaly opensearch uninstall" in lines[-2]
    assert lines[-1].startswith("error: POST /_plugins/_ml/connectors/_create was forbidden"), lines
    fake.forbidden.clear()
    assert main(["opensearch", "install", *argv]) == 0  # as it says: run again, it goes on
    assert "the install stopped" not in capsys.readouterr().err


@pytest.mark.parametrize(
    "pattern", ["ocsf logs-*", "ocsf-a,ocsf-b", "remote:ocsf-*", "ocsf#1", "", "OCSF-*", "_ocsf"]
)
def test_an_index_pattern_opensearch_refuses_is_refused_before_any_write(
    fake: FakeOpenSearch, pattern: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The index template is the install's last write: a pattern OpenSearch refuses there stopped the
    install with the settings, connector, model, pipeline and component template written; an
    upper-case one (no index name has one) was installed and scored nothing."""
    argv = ["--opensearch-url", fake.url, "--auth", ":".join(AUTH), "--index-pattern", pattern]
    assert main(["opensearch", "install", *argv]) == 2
    assert capsys.readouterr().err.startswith(f"error: index pattern {pattern!r}: ")
    assert fake.calls == []
    assert main(["opensearch", "render", "--index-pattern", pattern]) == 2


@pytest.mark.parametrize("option", ["--read-timeout", "--retries"])
def test_a_number_ml_commons_cannot_read_is_refused_before_any_write(
    fake: FakeOpenSearch, option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """ML Commons reads the connector's client_config as 32-bit integers: a larger value passed the
    command line and was refused by the cluster at the connector step, after the settings step."""
    argv = ["--opensearch-url", fake.url, "--auth", ":".join(AUTH), option, str(2**31)]
    assert main(["opensearch", "install", *argv]) == 2
    assert "ML Commons takes 0 to 2,147,483,647" in capsys.readouterr().err
    assert fake.calls == []
    assert main(["opensearch", "render", option, str(2**31 - 1)]) == 0  # the largest it reads


@pytest.mark.parametrize("password", ["pässwörd", "密码-Adm1n"])
def test_a_password_beyond_ascii_reaches_the_cluster_as_utf_8(password: str) -> None:
    """opensearch-py encodes basic authentication as Latin-1, the security plugin decodes UTF-8: a
    password with an "ä" was refused as wrong (401), one with a "密" ended in a UnicodeEncodeError."""
    credentials = ("admin", password)
    with FakeOpenSearch(credentials=credentials) as fake:
        install(
            fake.url,
            OPTIONS,
            auth=credentials,
            dashboards_url=fake.url,
            say=lambda _: None,
            check_scorer=False,
        )
        assert fake.saved_objects
        uninstall(fake.url, OPTIONS, auth=credentials, dashboards_url=fake.url, say=lambda _: None)
        assert not fake.connectors


@pytest.mark.parametrize(
    ("unknown", "said"),
    [
        ((PRIVATE_IP_SETTING,), "calls only from OpenSearch 2.15 on"),  # ML Commons 2.14
        ((PRIVATE_IP_SETTING, TRUSTED_SETTING), "the ML Commons plugin is not installed"),
    ],
    ids=["2.14", "no-ml-commons"],
)
def test_a_cluster_without_the_settings_is_told_before_any_write(
    unknown: tuple[str, ...], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The settings write came first and failed with the cluster's 'persistent setting [...], not
    recognized', which said nothing of what to do (and now would leave the settings record behind)."""
    with FakeOpenSearch(unknown_settings=unknown) as fake:
        assert main(["opensearch", "install", "--opensearch-url", fake.url, "--no-check-scorer"]) == 2
        assert said in capsys.readouterr().err
        assert fake.writes() == []
        if unknown == (PRIVATE_IP_SETTING,):  # a public scorer needs no private_ip_enabled
            argv = ["--opensearch-url", fake.url, "--scorer-url", "https://scorer.example.com"]
            argv.append("--no-check-scorer")
            assert main(["opensearch", "install", *argv]) == 0


# ---- the scorer, called before any write as the connector will call it ---------------------------

SCORER_TOKEN = "tok-scorer-5e0c2b9a"


@pytest.fixture(scope="module")
def live_scorer(bundle_dir: Path) -> Iterator[str]:
    """The real scoring service (the shared test bundle) on a loopback port, with an API token."""
    with serve_app(Settings(model_dir=bundle_dir, threads=1, api_token=SCORER_TOKEN)) as base_url:
        yield base_url


def test_an_alpha_below_the_models_floor_is_refused_before_any_write(
    fake: FakeOpenSearch, live_scorer: str, fitted_detector: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """It was installed without a word, and the service answered every document 400 bad_alpha: each
    was indexed with anomaly.error."""
    floor = fitted_detector.calibration.smallest_alpha
    argv = ["--opensearch-url", fake.url, "--auth", ":".join(AUTH), "--scorer-url", live_scorer]
    argv += ["--scorer-token", SCORER_TOKEN, "--alpha", f"{floor / 2:g}"]
    assert main(["opensearch", "install", *argv]) == 2
    err = capsys.readouterr().err
    (error,) = err.splitlines()  # no "the install stopped after the steps above": none was done
    assert error.startswith(
        f"error: the scorer at {live_scorer} refuses --alpha {floor / 2:g} (400 bad_alpha: "
    )
    assert f"({floor:.3g})" in error  # the floor, as the service gives it
    assert "choose an --alpha at or above the floor" in error
    assert fake.writes() == []
    assert SCORER_TOKEN not in err


def test_a_token_the_scorer_refuses_is_refused_before_any_write(
    fake: FakeOpenSearch, live_scorer: str
) -> None:
    """A wrong token (or none: the connector's placeholder) was found only as anomaly.error (403)."""
    wrong = "tok-not-the-scorers-71d3"
    with pytest.raises(InstallError) as caught:
        run(fake, Options(scorer_url=live_scorer, scorer_token=wrong), check_scorer=True)
    message = str(caught.value)
    assert message.startswith(
        f"the scorer at {live_scorer} refused the connector's token (403 forbidden: the bearer token is "
        "not valid for this call)"
    )
    assert message.endswith(
        "give --scorer-token (or $OCSF_ANOMALY_API_TOKEN) the token the scorer was started with (its "
        "OCSF_ANOMALY_API_TOKEN)"
    )
    assert wrong not in message
    with pytest.raises(
        InstallError, match=r"without one the connector sends a placeholder.*--no-check-scorer"
    ):
        run(fake, Options(scorer_url=live_scorer), check_scorer=True)
    assert fake.writes() == []


def test_install_reads_its_secrets_from_the_environment_and_render_prints_none(
    fake: FakeOpenSearch,
    live_scorer: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """The token and the cluster's password were flags only: on the command line, which every user
    of the machine reads (ps; a container's from its host). Install and uninstall read them from
    the environment when no flag gives them (the token from the variable the service reads it from),
    and the scorer's check passes with that token; render keeps the placeholder, printing no secret
    it was not given."""
    monkeypatch.setenv("OCSF_ANOMALY_API_TOKEN", SCORER_TOKEN)
    monkeypatch.setenv("OCSF_ANOMALY_OPENSEARCH_AUTH", ":".join(AUTH))
    argv = ["--opensearch-url", fake.url, "--scorer-url", live_scorer]
    assert main(["opensearch", "install", *argv]) == 0, capsys.readouterr().err
    (connector_id,) = fake.connectors
    assert fake.secrets[connector_id] == {"token": SCORER_TOKEN}
    assert main(["opensearch", "render", "--scorer-url", live_scorer]) == 0
    rendered = capsys.readouterr().out
    assert SCORER_TOKEN not in rendered
    assert definitions.TOKEN_PLACEHOLDER in rendered
    # given it, the files that hold it are their owner's alone (they were 0644, the review found),
    # a file already there too
    rendered_dir = tmp_path / "defs"
    rendered_dir.mkdir()
    (rendered_dir / "1-connector.json").write_text("old")
    (rendered_dir / "1-connector.json").chmod(0o644)
    render = ["opensearch", "render", "--output-dir", str(rendered_dir), "--scorer-token", SCORER_TOKEN]
    assert main(render) == 0
    holding = [p for p in rendered_dir.iterdir() if SCORER_TOKEN in p.read_text()]
    assert [p.name for p in holding] == ["1-connector.json"]
    assert {p.stat().st_mode & 0o777 for p in rendered_dir.iterdir()} == {0o600}
    assert main(["opensearch", "uninstall", *argv]) == 0
    assert not fake.connectors
    monkeypatch.setenv("OCSF_ANOMALY_OPENSEARCH_AUTH", "admin")  # no colon
    assert main(["opensearch", "uninstall", *argv]) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith("error: --auth (or $OCSF_ANOMALY_OPENSEARCH_AUTH) is USER:PASSWORD")
    )
    # an error names where else the secret may have come from: not only a flag the user never gave
    monkeypatch.setenv("OCSF_ANOMALY_OPENSEARCH_AUTH", "admin:wrong")
    assert main(["opensearch", "uninstall", *argv]) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith(": 401): check --auth USER:PASSWORD (or $OCSF_ANOMALY_OPENSEARCH_AUTH)")
    )
    monkeypatch.setenv("OCSF_ANOMALY_OPENSEARCH_AUTH", ":".join(AUTH))
    monkeypatch.setenv("OCSF_ANOMALY_API_TOKEN", "tok-not-the-scorers")
    assert main(["opensearch", "install", *argv]) == 2
    assert "give --scorer-token (or $OCSF_ANOMALY_API_TOKEN) the token" in capsys.readouterr().err


def test_a_scorer_this_machine_cannot_reach_is_a_warning_and_the_install_goes_on(
    fake: FakeOpenSearch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The cluster may reach an address this machine cannot (a docker network's name)."""
    with closed_port() as port:
        url = f"http://127.0.0.1:{port}"
        argv = ["--opensearch-url", fake.url, "--auth", ":".join(AUTH), "--scorer-url", url]
        assert main(["opensearch", "install", *argv, "--scorer-token", SCORER_TOKEN]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith(
        f"scorer: warning: not checked, {url} cannot be reached from here ([Errno 111] Connection refused); "
        "installing anyway"
    ), lines
    assert lines[1].startswith("cluster settings: updated")
    assert lines[-1].startswith("installed: connector_id ")
    assert fake.connectors


def test_a_scorer_whose_certificate_this_machine_does_not_trust_is_a_warning_unless_ca_certs(
    fake: FakeOpenSearch, bundle_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A scorer with a private CA's certificate: the cluster trusts it through the nodes' trust
    store, which this machine does not share. Not an unreachable scorer, and no reason to stop;
    given that CA with --ca-certs (often the cluster's own), it is checked."""
    cert, key = make_certificate(tmp_path, "scorer")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    with serve_app(Settings(model_dir=bundle_dir, threads=1), ssl_context=context) as url:
        argv = ["--opensearch-url", fake.url, "--auth", ":".join(AUTH), "--scorer-url", url]
        assert main(["opensearch", "install", *argv]) == 0
        first = capsys.readouterr().err.splitlines()[0]
        assert first.startswith(
            f"scorer: warning: not checked, {url}'s certificate is not one this machine trusts ("
        ), first
        assert "the cluster checks it against the nodes' own trust store" in first
        assert main(["opensearch", "install", *argv, "--ca-certs", str(cert)]) == 0
        first = capsys.readouterr().err.splitlines()[0]
        assert first.startswith(f"scorer: answers at {url} (model "), first


def test_a_scorer_that_answers_is_said_and_the_install_goes_on(
    fake: FakeOpenSearch, live_scorer: str, fitted_detector: Any
) -> None:
    floor = fitted_detector.calibration.smallest_alpha
    alpha = float(f"{floor * 1.01:.3g}")  # just above the floor
    options = Options(scorer_url=live_scorer, scorer_token=SCORER_TOKEN, alpha=alpha)
    ids, lines = run(fake, options, check_scorer=True)
    assert re.fullmatch(
        rf"scorer: answers at {re.escape(live_scorer)} \(model \S+ \S+, champion; alpha {alpha}\)", lines[0]
    ), lines[0]
    assert [line.split(":")[0] for line in lines[1:]] == [
        "cluster settings",
        "connector",
        "model group",
        "model",
        "ingest pipeline",
        "component template",
        "index template",
    ]
    assert fake.connectors[ids["connector_id"]]["actions"][0]["url"] == options.predict_url


def test_the_scorers_line_is_no_step_the_install_stopped_after(
    fake: FakeOpenSearch, live_scorer: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An install stopped before its first write says only its error, the scorer's line above it."""
    fake.transient[TRUSTED_SETTING] = ["^https://api\\.openai\\.com/.*$"]
    argv = ["--opensearch-url", fake.url, "--auth", ":".join(AUTH), "--scorer-url", live_scorer]
    assert main(["opensearch", "install", *argv, "--scorer-token", SCORER_TOKEN]) == 2
    said, error = capsys.readouterr().err.splitlines()
    assert said.startswith(f"scorer: answers at {live_scorer} ")
    assert error.startswith(f"error: the cluster has a transient {TRUSTED_SETTING}")
    assert fake.writes() == []


@pytest.mark.parametrize(
    ("status", "body", "outcome"),
    [
        (404, "", "does not look like ocsf-anomaly's scoring service"),
        (200, "<html>Welcome</html>", "but no verdict (<html>Welcome</html>)"),
        (401, "Unauthorized", "does not look like ocsf-anomaly's scoring service"),  # not the service's 401
        (503, '{"error": {"status": 503, "code": "unavailable", "message": "no model"}}', "warning"),
        (502, "<html>Bad Gateway</html>", "warning"),
    ],
)
def test_an_answer_that_is_not_the_scorers_stops_the_install_unless_it_is_a_5xx(
    fake: FakeOpenSearch, status: int, body: str, outcome: str
) -> None:
    """A --scorer-url at another server (OpenSearch itself, a proxy's page) stops the install; a 5xx
    (a scorer restarting, a proxy with the scorer down) is said and the install goes on."""
    with FakeOpenSearch() as impostor:
        impostor.answer_with("POST", definitions.ENDPOINT, body, "text/html", status=status)
        options = Options(scorer_url=impostor.url, scorer_token=SCORER_TOKEN)
        if outcome == "warning":
            _, lines = run(fake, options, check_scorer=True)
            assert lines[0].startswith(
                f"scorer: warning: {impostor.url} answered POST {definitions.ENDPOINT} with {status}"
            )
            assert fake.connectors
            return
        with pytest.raises(InstallError, match=re.escape(outcome)) as caught:
            run(fake, options, check_scorer=True)
        assert "--no-check-scorer" in str(caught.value)
        assert SCORER_TOKEN not in str(caught.value)
        assert fake.writes() == []
