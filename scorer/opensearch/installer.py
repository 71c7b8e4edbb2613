"""Applies definitions.py's calls to a cluster (``ocsf-anomaly opensearch install``) and removes
what they made (``uninstall``), with opensearch-py; the Dashboards saved objects with the stdlib.

Idempotent by comparison, not by overwriting: every object is looked up first (by name: the
connector, the model group and the model have ids only the cluster knows) and written only when it
differs from what the options give, so a second run with the same options writes nothing and says
"unchanged". A stored object is compared on the keys the installer sends (ML Commons adds its
defaults and timestamps to what it stores, and upper-cases the action type).

The cluster-settings step records in the component template's ``_meta`` (definitions.META_KEY)
what it changed, so that uninstall undoes exactly that and nothing the site set itself:

    trusted_regex             the trusted-endpoint regex the install added (absent: it was there)
    trusted_default           the list as it was when no persistent value was set: uninstall then
                              resets the setting instead of pinning today's default list
    private_ip_enabled_before present when the install set private_ip_enabled: its persistent
                              value before (null: unset), which uninstall puts back

The connector's credential is encrypted by the cluster and never returned, so a change of token
is seen through a fingerprint the installer keeps in the connector's ``parameters``
(FINGERPRINT_PARAMETER): ``pbkdf2-sha256:<iterations>:<salt>:<digest>``, PBKDF2-HMAC-SHA256 of the
token with a random 16-byte salt. Anyone who may read connectors may read the parameters, so the
hash is salted (no precomputed tables, equal tokens look different) and slow (a guess costs as
much as 600,000 SHA-256 rounds); the token itself is stored nowhere but in the credential. A
parameter the request body does not name (``${parameters.…}``) is never sent to the scorer.

Before its first write, install calls the scorer once as the connector will (_check_scorer): an
alpha below the serving model's floor, a token it refuses or a URL that is not the scorer's stop
the install there, instead of every document being indexed with ``anomaly.error``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import os
import re
import ssl
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from scorer.errors import UserError, origin, without_credentials
from scorer.opensearch import AUTH_GIVEN, TOKEN_GIVEN, dashboards, definitions
from scorer.opensearch.definitions import META_KEY, PRIVATE_IP_SETTING, TRUSTED_SETTING, Options
from scorer.settings import PRINTABLE_ASCII

if TYPE_CHECKING:
    from opensearchpy import OpenSearch
    from opensearchpy.exceptions import TransportError

FINGERPRINT_PARAMETER = "ocsf_anomaly_token_fingerprint"
PBKDF2_ITERATIONS = 600_000  # OWASP's 2023 figure for PBKDF2-HMAC-SHA256
# How long a model may take to deploy (a remote model deploys in about a second; a busy cluster
# queues the task behind others).
DEPLOY_WAIT_SECONDS = 120.0
_POLL_SECONDS = (0.05, 0.2, 0.5, 1.0)  # growing pauses between polls, then the last one repeated
_DEPLOYED_STATES = ("DEPLOYED", "DEPLOYING", "PARTIALLY_DEPLOYED")  # undeploy these before a change
_DESCRIPTION = "made by ocsf-anomaly opensearch install"
# The check of the scorer before any write: how long it waits, and the title of its lines (which
# are no step: the command line tells them from the steps an install stopped after).
SCORER_CHECK_SECONDS = 5.0
SCORER_CHECK = "scorer"

Say = Callable[[str], None]
_T = TypeVar("_T")


class InstallError(UserError):
    """The cluster (or Dashboards) refused or could not be reached: one line saying what to do."""


class _Refused(InstallError):
    """An HTTP error answer, with its status and the cluster's reason, for steps that explain it better."""

    def __init__(self, message: str, status: int, reason: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


def install(
    opensearch_url: str,
    options: Options,
    *,
    auth: tuple[str, str] | None = None,
    verify_tls: bool = True,
    ca_certs: str | None = None,
    dashboards_url: str | None = None,
    timeout: float = 30.0,
    check_scorer: bool = True,
    say: Say = print,
) -> dict[str, str]:
    """Apply steps 0–4 (and import the dashboards with ``dashboards_url``), saying one line per step;
    the ids of the connector, the model group and the model. ``check_scorer``: first post a sample
    event to the scorer as the connector will (_check_scorer), after the cluster's first read and
    before its first write."""
    cluster = _Cluster(opensearch_url, auth, verify_tls, ca_certs, timeout)
    board = _board(dashboards_url, auth, verify_tls, ca_certs, timeout)  # its URL checked before any write
    component = cluster.component_template(options)  # the cluster reached and the credentials taken
    if check_scorer:
        _check_scorer(options, say, ca_certs)
    meta = _settings(cluster, options, component, say)
    connector_id = _connector(cluster, options, say)
    group_id = _model_group(cluster, options, say)
    model_id = _model(cluster, options, connector_id, group_id, say)
    pipeline_path = f"/_ingest/pipeline/{options.pipeline}"
    stored_pipeline = (cluster.call("GET", pipeline_path, missing=True) or {}).get(options.pipeline)
    _put_if_changed(
        cluster,
        "ingest pipeline",
        pipeline_path,
        stored_pipeline,
        definitions.pipeline(options, model_id),
        say,
    )
    component_path = f"/_component_template/{options.component_template}"
    wanted = definitions.component_template(options, meta)
    _put_if_changed(cluster, "component template", component_path, component, wanted, say)
    template_path = f"/_index_template/{options.template}"
    stored_template = _first(
        cluster.call("GET", template_path, missing=True), "index_templates", "index_template"
    )
    _put_if_changed(
        cluster, "index template", template_path, stored_template, definitions.index_template(options), say
    )
    if board is not None:
        board.install(dashboards.ndjson(options), say)
    return {"connector_id": connector_id, "model_group_id": group_id, "model_id": model_id}


def uninstall(
    opensearch_url: str,
    options: Options,
    *,
    auth: tuple[str, str] | None = None,
    verify_tls: bool = True,
    ca_certs: str | None = None,
    dashboards_url: str | None = None,
    timeout: float = 30.0,
    say: Say = print,
) -> None:
    """Remove what install made under ``options.name`` (dependants first) and undo its settings.

    Indices keep their documents and settings: one created through the index template keeps
    ``index.default_pipeline``, and indexing into it fails until that setting is removed."""
    cluster = _Cluster(opensearch_url, auth, verify_tls, ca_certs, timeout)
    board = _board(dashboards_url, auth, verify_tls, ca_certs, timeout)
    recorded = _recorded(cluster.component_template(options))
    cluster.delete("index template", f"/_index_template/{options.template}", say)
    cluster.delete("ingest pipeline", f"/_ingest/pipeline/{options.pipeline}", say)
    group = _find_one(cluster, "model_groups", _filter({"name.keyword": options.name}))
    models = []
    if group is not None:
        model_name = definitions.model(options, "", group["_id"])["name"]
        models = _search(
            cluster, "models", _filter({"name.keyword": model_name, "model_group_id": group["_id"]})
        )
    for hit in models:
        if hit["_source"].get("model_state") in _DEPLOYED_STATES:
            cluster.call("POST", f"/_plugins/_ml/models/{hit['_id']}/_undeploy")
        cluster.delete("model", f"/_plugins/_ml/models/{hit['_id']}", say)
    if not models:
        say("model: absent")
    if group is None:
        say("model group: absent")
    else:
        cluster.delete("model group", f"/_plugins/_ml/model_groups/{group['_id']}", say)
    connectors = _search(
        cluster, "connectors", _filter({"name.keyword": definitions.connector(options)["name"]})
    )
    for hit in connectors:
        cluster.delete("connector", f"/_plugins/_ml/connectors/{hit['_id']}", say)
    if not connectors:
        say("connector: absent")
    _undo_settings(cluster, recorded, say)
    # the record of the settings goes last: an uninstall stopped before this point (a connector
    # another model uses, a privilege missing) can be run again and still undo them
    cluster.delete("component template", f"/_component_template/{options.component_template}", say)
    if board is not None:
        board.uninstall(dashboards.ndjson(options), say)


class _Cluster:
    """The REST calls, each answer that is not a success turned into an InstallError naming the call."""

    def __init__(
        self, url: str, auth: tuple[str, str] | None, verify_tls: bool, ca_certs: str | None, timeout: float
    ) -> None:
        from opensearchpy import OpenSearch
        from opensearchpy.exceptions import ImproperlyConfigured

        self.url = _checked_url(url, "--opensearch-url", "https://localhost:9200")
        self.timeout = timeout
        if ca_certs is not None and not Path(ca_certs).is_file():  # (over http it would go unread)
            raise InstallError(
                f"--ca-certs {ca_certs}: no such file; give the CA bundle that signed the cluster's certificate"
            )
        try:
            self.client: OpenSearch = OpenSearch(
                hosts=[url],
                # UTF-8, as the security plugin decodes it (opensearch-py's http_auth encodes Latin-1:
                # an "ä" in a password was refused as the wrong one, a "密" failed to encode)
                headers=None if auth is None else {"Authorization": _basic(auth)},
                verify_certs=verify_tls,
                ssl_show_warn=verify_tls,
                ca_certs=ca_certs,
                timeout=timeout,
                max_retries=0,  # one node: a retry would only repeat a refused connection
            )
        except ImproperlyConfigured as exc:
            raise InstallError(f"cannot connect to OpenSearch at {url}: {exc}") from None

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        *,
        missing: bool = False,
        need: str | None = None,
    ) -> Any:
        """The answer's JSON object, which must hold ``need``; None for a 404 when ``missing`` allows it."""
        from opensearchpy.exceptions import NotFoundError, SerializationError, TransportError

        try:
            answer = self.client.transport.perform_request(method, path, params=params, body=body)
        except SerializationError as exc:  # a 2xx that is not JSON: a login page, Dashboards
            raise self.strange(f"{method} {path}", f"a body that is not JSON ({_excerpt(exc)})") from None
        except TransportError as exc:
            if missing and isinstance(exc, NotFoundError):
                return None
            raise self._error(f"{method} {path}", exc) from None
        if not isinstance(answer, dict):
            raise self.strange(f"{method} {path}", f"{_excerpt(answer)}, not a JSON object")
        if need is not None and need not in answer:
            raise self.strange(f"{method} {path}", f"no {need} in {_excerpt(answer)}")
        return answer

    def strange(self, call: str, what: str) -> InstallError:
        """What a server that is not the cluster the installer speaks to answered."""
        return InstallError(
            f"OpenSearch at {self.url} answered {call} with {what}: check that --opensearch-url is the REST "
            "API of an OpenSearch 2.14+ cluster with ML Commons (not Dashboards, nor a proxy's page)"
        )

    def delete(self, title: str, path: str, say: Say) -> None:
        say(f"{title}: {'deleted' if self.call('DELETE', path, missing=True) is not None else 'absent'}")

    def component_template(self, options: Options) -> dict[str, Any] | None:
        return _first(
            self.call(
                "GET",
                f"/_component_template/{options.component_template}",
                params={"flat_settings": "true"},  # settings as the body gives them
                missing=True,
            ),
            "component_templates",
            "component_template",
        )

    def _error(self, call: str, exc: TransportError) -> InstallError:
        from opensearchpy.exceptions import ConnectionError, ConnectionTimeout, SSLError

        if isinstance(exc, ConnectionTimeout):
            return InstallError(f"OpenSearch at {self.url} did not answer {call} within {self.timeout:g} s")
        if isinstance(exc, SSLError):
            return InstallError(
                f"the TLS connection to OpenSearch at {self.url} failed ({_cause(exc.info)}): give the CA "
                "that signed its certificate with --ca-certs FILE (or --insecure for a test cluster)"
            )
        if isinstance(exc, ConnectionError):
            return InstallError(
                f"cannot reach OpenSearch at {self.url} ({_cause(exc.info)}): check --opensearch-url "
                "and that the cluster is up"
            )
        status = int(exc.status_code)
        reason = _reason(exc.info, exc.error)
        if status == 401:
            message = f"OpenSearch at {self.url} refused the credentials ({call}: 401): check {AUTH_GIVEN}"
        elif status == 403:
            message = (
                f"{call} was forbidden (403: {reason}): the user of {AUTH_GIVEN} lacks that privilege; "
                "use a user that has it (e.g. admin) or grant it"
            )
        else:
            message = f"{call} failed ({status}): {reason}"
        return _Refused(message, status, reason)


def _checked_url(url: str, option: str, example: str) -> str:
    """``url`` if it is http(s)://host[:port][/path]; else the InstallError that says so (opensearch-py
    and urllib answer one without a host, or with a port out of range, with a traceback or a riddle)."""
    try:
        parts = urlsplit(url)  # raises for a broken IPv6 address, .port for one out of range or not a number
        usable = parts.scheme in ("http", "https") and bool(parts.hostname) and (parts.port or 1) > 0
    except ValueError:
        usable = False
    if not usable:
        raise InstallError(f"{option} must be http(s)://host[:port], e.g. {example}, not {url!r}")
    return url


def _basic(auth: tuple[str, str]) -> str:
    """HTTP basic authentication, its user and password in UTF-8."""
    return "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()


def _board(
    url: str | None, auth: tuple[str, str] | None, verify_tls: bool, ca_certs: str | None, timeout: float
) -> _Dashboards | None:
    return None if url is None else _Dashboards(url, auth, verify_tls, ca_certs, timeout)


# ---- before any write: the scorer, called as the connector will call it ---------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer to judge (the URL is not the scorer's), not one to follow."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _check_scorer(
    options: Options, say: Say, ca_certs: str | None = None, timeout: float = SCORER_CHECK_SECONDS
) -> None:
    """POST the sample event to the scorer exactly as the connector's predict action will (its
    method, URL with ``?alpha=``, headers with the token, and request body, all from
    definitions.connector), from this machine, directly (no proxy: a proxy's own 403 or 404 would be
    taken for the scorer's), over TLS verified with the system's CAs and ``ca_certs`` (the
    cluster's, given with --ca-certs: often the same private CA).

    - a verdict (2xx with every field the pipeline's output_map reads): one line, and on;
    - 400 bad_alpha, 401, 403 in the service's error shape: InstallError quoting it (every document
      would get anomaly.error); a 404, or a 3xx or 4xx not in that shape: InstallError, the URL does
      not look like the scorer; another 4xx of the service's: InstallError quoting it;
    - no answer (refused, a name this machine cannot resolve, TLS, a timeout), 408, 429 or 5xx: a
      warning line, and on: the cluster may reach an address this machine cannot (a docker
      network's name), and a busy or restarting scorer is no reason to stop.

    The token is sent, never said."""
    from scorer.service.schema import EXAMPLE_EVENT

    body = definitions.connector(options)
    action = body["actions"][0]
    token = body["credential"]["token"]
    if not re.match(PRINTABLE_ASCII, token):  # what the scorer's tokens may hold
        raise InstallError(
            f"the scorer token ({TOKEN_GIVEN}) holds a space, a control character or one beyond ASCII, "
            "which no token the scorer can be started with does (its OCSF_ANOMALY_API_TOKEN is printable "
            "ASCII): give the one it was started with"
        )
    where = origin(options.base_url)
    call = f"{action['method']} {definitions.ENDPOINT}"
    headers = {
        name: str(value).replace("${credential.token}", token) for name, value in action["headers"].items()
    }
    data = action["request_body"].replace("${parameters.event}", json.dumps(EXAMPLE_EVENT)).encode()
    request = urllib.request.Request(action["url"], data=data, method=action["method"], headers=headers)  # noqa: S310 - the user's URL
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}),
        urllib.request.HTTPSHandler(context=_scorer_tls(ca_certs)),
        _NoRedirect(),
    )
    location = None
    try:
        with opener.open(request, timeout=timeout) as answer:
            status, text = int(answer.status), answer.read(65536)
    except urllib.error.HTTPError as exc:
        status, text, location = int(exc.code), exc.read(65536), exc.headers.get("Location")
        exc.close()
    except (OSError, http.client.HTTPException, ValueError) as exc:  # URLError and TimeoutError are OSErrors
        why = without_credentials(_why(exc, timeout).replace(token, "***"))
        if isinstance(getattr(exc, "reason", exc), ssl.SSLCertVerificationError):
            say(
                f"{SCORER_CHECK}: warning: not checked, {where}'s certificate is not one this machine "
                f"trusts ({why}); installing anyway: the cluster checks it against the nodes' own trust "
                "store (add the CA there, and give it to --ca-certs to have it checked here too)"
            )
            return
        say(
            f"{SCORER_CHECK}: warning: not checked, {where} cannot be reached from here ({why}); "
            "installing anyway, as the cluster may reach it where this machine cannot (a docker network's "
            "name, say): if the cluster cannot either, every document is indexed with anomaly.error"
        )
        return
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    # what is quoted from the answer, the token never in it (a server that echoes the request)
    quoted = _excerpt(text.decode(errors="replace").replace(token, "***"))
    if 200 <= status < 300:
        if isinstance(value, dict) and all(name in value for name in definitions.OUTPUTS):
            model = f"{value['model_name']} {value['model_version']}, {value['model_variant']}"
            say(f"{SCORER_CHECK}: answers at {where} (model {model}; alpha {value['alpha']})")
            return
        raise InstallError(
            f"{where} answered {call} with {status} but no verdict ({quoted or 'no body'}): "
            + _not_the_scorer(where)
        )
    error = value.get("error") if isinstance(value, dict) else None
    code, message = (
        (str(error["code"]), _excerpt(str(error["message"]).replace(token, "***")))
        if isinstance(error, dict) and "code" in error and "message" in error
        else (None, quoted or "no body")
    )
    said = f"{status} {code}: {message}" if code else f"{status} ({message})"
    if 300 <= status < 400 and location:
        said += f", redirecting to {_excerpt(location)}"
    if status in (408, 429) or status >= 500:  # busy, restarting, or a proxy with the scorer down
        say(
            f"{SCORER_CHECK}: warning: {where} answered {call} with {said}; installing anyway (until "
            "it scores, documents are indexed with anomaly.error)"
        )
        return
    if code is None or status == 404:  # not the scorer's error shape, or not its endpoint
        raise InstallError(f"{where} answered {call} with {said}: " + _not_the_scorer(where))
    if status == 400 and code == "bad_alpha":
        alpha = "its alpha" if options.alpha is None else f"--alpha {options.alpha:g}"
        raise InstallError(
            f"the scorer at {where} refuses {alpha} ({said}): every document would be indexed with "
            "anomaly.error; choose an --alpha at or above the floor it gives, or leave --alpha out for "
            "the service's own"
        )
    if status in (401, 403):
        what = (
            f"give {TOKEN_GIVEN} the token the scorer was started with (its OCSF_ANOMALY_API_TOKEN)"
            if options.scorer_token
            else f"give {TOKEN_GIVEN} the token it was started with (its OCSF_ANOMALY_API_TOKEN): "
            "without one the connector sends a placeholder, which it refuses (--no-check-scorer "
            "installs so, to set the token later)"
        )
        raise InstallError(
            f"the scorer at {where} refused the connector's token ({said}): every document would be "
            f"indexed with anomaly.error; {what}"
        )
    raise InstallError(f"the scorer at {where} refused the sample event ({said}): check --scorer-url")


def _scorer_tls(ca_certs: str | None) -> ssl.SSLContext:
    """The system's CAs, and the cluster's bundle where one is given."""
    context = ssl.create_default_context()
    if ca_certs is not None:
        context.load_verify_locations(cafile=ca_certs)
    return context


def _not_the_scorer(where: str) -> str:
    return (
        f"--scorer-url {where} does not look like ocsf-anomaly's scoring service; give its base URL "
        "(e.g. http://scorer:8080), or skip this check with --no-check-scorer if the cluster reaches "
        "another server at that address than this machine does"
    )


def _why(exc: BaseException, timeout: float) -> str:
    """Why a call got no answer, on one line (e.g. "[Errno 111] Connection refused")."""
    reason: Any = getattr(exc, "reason", exc)  # urllib's URLError wraps the cause
    if isinstance(reason, TimeoutError) or isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s"
    text = " ".join(str(reason).split()) or type(reason).__name__
    return re.sub(r"\s*\(_ssl\.c:\d+\)", "", text)[:200]


# ---- step 0: cluster settings ------------------------------------------------------------------


def _recorded(component: Mapping[str, Any] | None) -> dict[str, Any]:
    """What an earlier install recorded about the settings it changed ({} when none did)."""
    meta = ((component or {}).get("_meta") or {}).get(META_KEY)
    return dict(meta) if isinstance(meta, dict) else {}


def _settings(
    cluster: _Cluster, options: Options, component: Mapping[str, Any] | None, say: Say
) -> dict[str, Any]:
    """Add the scorer's trusted regex to the list (dropping the one an earlier install added for
    another URL) and enable private addresses when definitions asks for it; the ``_meta`` record.

    The record is written to the component template before the settings change (the whole template
    when there is none yet: no index template uses it before step 4b), so that an install stopped
    by a later step leaves uninstall, and the next install, what it changed."""
    recorded = _recorded(component)
    current = cluster.call(
        "GET", "/_cluster/settings", params={"include_defaults": "true", "flat_settings": "true"}
    )
    persistent, transient, defaults = (
        current.get(scope) or {} for scope in ("persistent", "transient", "defaults")
    )
    for setting in (TRUSTED_SETTING, PRIVATE_IP_SETTING):
        if setting in transient:
            raise InstallError(
                f"the cluster has a transient {setting}, which would hide the persistent value install "
                f'sets: remove it (PUT _cluster/settings {{"transient": {{"{setting}": null}}}}) and run again'
            )
    known = {**defaults, **persistent}  # a setting the cluster does not have is in neither
    if TRUSTED_SETTING not in known:
        raise InstallError(
            f"the cluster has no {TRUSTED_SETTING}: the ML Commons plugin is not installed; the integration "
            "needs OpenSearch 2.14 or later with it"
        )
    if PRIVATE_IP_SETTING in definitions.cluster_settings(options, [])["persistent"] and (
        PRIVATE_IP_SETTING not in known
    ):
        raise InstallError(
            f"the scorer's URL {options.scorer_url} has a private or loopback address, which ML Commons "
            f"calls only from OpenSearch 2.15 on (the cluster has no {PRIVATE_IP_SETTING}): upgrade the "
            "cluster, or give a --scorer-url with a public address (--no-private-ip if its name is public)"
        )
    meta: dict[str, Any] = {"description": _DESCRIPTION}
    trusted = list(persistent.get(TRUSTED_SETTING, defaults.get(TRUSTED_SETTING, [])))
    if TRUSTED_SETTING not in persistent:
        meta["trusted_default"] = list(trusted)
    elif "trusted_default" in recorded:
        meta["trusted_default"] = recorded["trusted_default"]
    ours = definitions.trusted_regex(options)
    before = recorded.get("trusted_regex")
    kept = [regex for regex in trusted if regex != before or regex == ours]
    if ours not in kept or before == ours:
        meta["trusted_regex"] = ours
    wanted = definitions.cluster_settings(options, kept)["persistent"]
    changes: dict[str, Any] = {}
    if wanted[TRUSTED_SETTING] != trusted:
        changes[TRUSTED_SETTING] = wanted[TRUSTED_SETTING]
    private_now = _true(persistent.get(PRIVATE_IP_SETTING, defaults.get(PRIVATE_IP_SETTING)))
    if PRIVATE_IP_SETTING in wanted:
        if "private_ip_enabled_before" in recorded:
            meta["private_ip_enabled_before"] = recorded["private_ip_enabled_before"]
        elif not private_now:
            meta["private_ip_enabled_before"] = _setting_value(persistent.get(PRIVATE_IP_SETTING))
        if not private_now:
            changes[PRIVATE_IP_SETTING] = True
    elif "private_ip_enabled_before" in recorded:  # a private scorer before, a public one now
        changes[PRIVATE_IP_SETTING] = _setting_value(recorded["private_ip_enabled_before"])
    if not changes:
        say("cluster settings: unchanged")
        return meta
    if meta != recorded:
        body = {**(component or definitions.component_template(options)), "_meta": {META_KEY: meta}}
        cluster.call("PUT", f"/_component_template/{options.component_template}", body)
    cluster.call("PUT", "/_cluster/settings", {"persistent": changes})
    say(f"cluster settings: updated ({_describe(trusted, wanted[TRUSTED_SETTING], changes)})")
    return meta


def _undo_settings(cluster: _Cluster, recorded: Mapping[str, Any], say: Say) -> None:
    """Remove the regex install added and put private_ip_enabled back, as recorded."""
    if not recorded:
        say(
            "cluster settings: no record of an install's changes (component template absent); left as they are"
        )
        return
    persistent = cluster.call("GET", "/_cluster/settings", params={"flat_settings": "true"}).get(
        "persistent", {}
    )
    changes: dict[str, Any] = {}
    ours = recorded.get("trusted_regex")
    trusted_before = list(persistent.get(TRUSTED_SETTING, []))
    trusted = [regex for regex in trusted_before if regex != ours]
    if trusted != trusted_before:
        changes[TRUSTED_SETTING] = None if trusted == recorded.get("trusted_default") else trusted
    if "private_ip_enabled_before" in recorded:
        changes[PRIVATE_IP_SETTING] = _setting_value(recorded["private_ip_enabled_before"])
    if not changes:
        say("cluster settings: unchanged")
        return
    cluster.call("PUT", "/_cluster/settings", {"persistent": changes})
    say(f"cluster settings: restored ({_describe(trusted_before, trusted, changes)})")


def _true(value: Any) -> bool:
    """A boolean setting as the cluster returns it: the text "true" or "false"."""
    return str(value).lower() == "true"


def _setting_value(before: Any) -> bool | None:
    return None if before is None else _true(before)


def _describe(before: list[str], after: list[str], changes: Mapping[str, Any]) -> str:
    """What a settings write changes, e.g. "trusted endpoint added: ^http://…$; private_ip_enabled: true"."""
    said = [f"trusted endpoint added: {regex}" for regex in after if regex not in before]
    said += [f"trusted endpoint removed: {regex}" for regex in before if regex not in after]
    if TRUSTED_SETTING in changes and changes[TRUSTED_SETTING] is None:
        said.append("trusted endpoints: the default list")
    if PRIVATE_IP_SETTING in changes:
        value = changes[PRIVATE_IP_SETTING]
        said.append(f"private_ip_enabled: {'the default' if value is None else json.dumps(value)}")
    return "; ".join(said)


# ---- steps 1 and 2: connector, model group, model ------------------------------------------------


def _connector(cluster: _Cluster, options: Options, say: Say) -> str:
    """Create the connector, or update it in place (its models undeployed around the update, as ML
    Commons requires) when its definition or its token changed."""
    body = definitions.connector(options)
    token = body["credential"]["token"]
    found = _find_one(cluster, "connectors", _filter({"name.keyword": body["name"]}))
    if found is None:
        body["parameters"] = {**body["parameters"], FINGERPRINT_PARAMETER: _fingerprint(token)}
        answer = _connector_call(
            cluster, "POST", "/_plugins/_ml/connectors/_create", body, need="connector_id"
        )
        connector_id = str(answer["connector_id"])
        say(f"connector: created {connector_id}")
        return connector_id
    connector_id = str(found["_id"])
    stored = _normalized_connector(found["_source"])
    fingerprint = stored.get("parameters", {}).get(FINGERPRINT_PARAMETER)
    # compared with the stored fingerprint in place: a token change is said as "token", not "parameters"
    visible = {key: value for key, value in body.items() if key != "credential"}
    visible["parameters"] = {**body["parameters"], FINGERPRINT_PARAMETER: fingerprint}
    changed = _differences(stored, visible, deep=True)
    if not _same_token(fingerprint, token):
        changed.append("token")
        fingerprint = _fingerprint(token)
    if not changed:
        say(f"connector: unchanged {connector_id}")
        return connector_id
    body["parameters"] = {**body["parameters"], FINGERPRINT_PARAMETER: fingerprint}
    deployed = {"terms": {"model_state": list(_DEPLOYED_STATES)}}
    models = [
        hit["_id"] for hit in _search(cluster, "models", _filter({"connector_id": connector_id}, deployed))
    ]
    for model_id in models:
        cluster.call("POST", f"/_plugins/_ml/models/{model_id}/_undeploy")
    _connector_call(cluster, "PUT", f"/_plugins/_ml/connectors/{connector_id}", body)
    for model_id in models:
        _deploy(cluster, model_id)
    redeployed = f"; model {', '.join(models)} undeployed and deployed again" if models else ""
    say(f"connector: updated {connector_id} ({', '.join(changed)}{redeployed})")
    return connector_id


def _normalized_connector(stored: Mapping[str, Any]) -> dict[str, Any]:
    """ML Commons stores the action type upper-case; the definitions write it lower-case."""
    actions = [
        {**action, "action_type": str(action.get("action_type", "")).lower()}
        for action in stored.get("actions") or []
    ]
    return {**stored, "actions": actions}


def _connector_call(
    cluster: _Cluster, method: str, path: str, body: dict[str, Any], need: str | None = None
) -> Any:
    """A connector write, ML Commons' refusal of an untrusted URL said in terms of the setting."""
    try:
        return cluster.call(method, path, body, need=need)
    except _Refused as exc:
        if exc.status == 400 and "trusted connector endpoint" in exc.reason:
            url = body["actions"][0]["url"]
            raise InstallError(
                f"the cluster does not trust the scorer's URL {url} ({method} {path}: {exc.reason}): "
                f"{TRUSTED_SETTING} must hold a regex that fully matches it (install adds one; check that "
                "nothing removed it since)"
            ) from None
        raise


def _fingerprint(token: str, salt: bytes | None = None, iterations: int | None = None) -> str:
    """``pbkdf2-sha256:<iterations>:<salt>:<digest>`` of ``token`` (module docstring: why)."""
    salt = os.urandom(16) if salt is None else salt
    rounds = PBKDF2_ITERATIONS if iterations is None else iterations
    digest = hashlib.pbkdf2_hmac("sha256", token.encode(), salt, rounds)
    return f"pbkdf2-sha256:{rounds}:{_b64(salt)}:{_b64(digest)}"


def _same_token(fingerprint: Any, token: str) -> bool:
    """Whether ``fingerprint`` (as stored in the connector's parameters) is of ``token``."""
    parts = str(fingerprint).split(":")
    if len(parts) != 4 or parts[0] != "pbkdf2-sha256" or not parts[1].isdigit():
        return False
    rounds = int(parts[1])
    if not 0 < rounds <= 10 * PBKDF2_ITERATIONS:  # a doctored count must not stall the install
        return False
    try:
        salt = base64.urlsafe_b64decode(parts[2] + "==")
    except ValueError:
        return False
    return hmac.compare_digest(_fingerprint(token, salt, rounds), str(fingerprint))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _model_group(cluster: _Cluster, options: Options, say: Say) -> str:
    body = definitions.model_group(options)
    found = _find_one(cluster, "model_groups", _filter({"name.keyword": body["name"]}))
    if found is None:
        answer = cluster.call("POST", "/_plugins/_ml/model_groups/_register", body, need="model_group_id")
        group_id = str(answer["model_group_id"])
        say(f"model group: created {group_id}")
        return group_id
    group_id = str(found["_id"])
    if _differences(found["_source"], body):
        cluster.call("PUT", f"/_plugins/_ml/model_groups/{group_id}", {"description": body["description"]})
        say(f"model group: updated {group_id} (description)")
    else:
        say(f"model group: unchanged {group_id}")
    return group_id


def _model(cluster: _Cluster, options: Options, connector_id: str, group_id: str, say: Say) -> str:
    """Register the remote model with ``deploy=true``; or update the one there (a deployed remote
    model takes a new description or connector in place) and deploy it if it is not deployed."""
    body = definitions.model(options, connector_id, group_id)
    found = _find_one(cluster, "models", _filter({"name.keyword": body["name"], "model_group_id": group_id}))
    if found is None:
        path = "/_plugins/_ml/models/_register"
        answer = cluster.call("POST", path, body, params={"deploy": "true"}, need="task_id")
        task = _await_task(cluster, answer["task_id"], "register the model")
        if "model_id" not in task:
            raise cluster.strange(
                f"GET /_plugins/_ml/tasks/{answer['task_id']}", f"no model_id in {_excerpt(task)}"
            )
        model_id = str(task["model_id"])
        _await_deployed(cluster, model_id)
        say(f"model: created and deployed {model_id}")
        return model_id
    model_id = str(found["_id"])
    stored = found["_source"]
    done = []
    changed = {key: body[key] for key in ("description", "connector_id") if stored.get(key) != body[key]}
    if changed:
        cluster.call("PUT", f"/_plugins/_ml/models/{model_id}", changed)
        done.append(f"updated ({', '.join(changed)})")
    state = stored.get("model_state")
    if state == "DEPLOYING":
        _await_deployed(cluster, model_id)
    elif state != "DEPLOYED":
        _deploy(cluster, model_id)
        done.append("deployed")
    say(f"model: {' and '.join(done) or 'unchanged'} {model_id}")
    return model_id


def _filter(terms: Mapping[str, str], *more: Mapping[str, Any]) -> dict[str, Any]:
    """A query for the documents whose fields hold exactly ``terms`` (and match ``more``)."""
    return {"bool": {"filter": [*({"term": {field: value}} for field, value in terms.items()), *more]}}


def _deploy(cluster: _Cluster, model_id: str) -> None:
    answer = cluster.call("POST", f"/_plugins/_ml/models/{model_id}/_deploy", need="task_id")
    _await_task(cluster, answer["task_id"], f"deploy model {model_id}")


def _await_task(cluster: _Cluster, task_id: str, what: str) -> dict[str, Any]:
    """Poll the ML task until it is COMPLETED (FAILED, or still running at the deadline: an error)."""

    def completed() -> dict[str, Any] | None:
        task: dict[str, Any] = cluster.call("GET", f"/_plugins/_ml/tasks/{task_id}")
        if task.get("state") in ("FAILED", "CANCELLED"):
            raise InstallError(
                f"the task to {what} ({task_id}) failed: {task.get('error', 'no reason given')}"
            )
        return task if task.get("state") == "COMPLETED" else None

    return _poll(completed, f"the task to {what} ({task_id}) did not complete")


def _await_deployed(cluster: _Cluster, model_id: str) -> None:
    """Poll the model until DEPLOYED: ``register?deploy=true`` deploys in a task of its own, whose id
    the answer does not give."""

    def deployed() -> bool | None:
        state = cluster.call("GET", f"/_plugins/_ml/models/{model_id}").get("model_state")
        if state == "DEPLOY_FAILED":
            raise InstallError(
                f"model {model_id} failed to deploy: see GET _plugins/_ml/models/{model_id} and the cluster's log"
            )
        return True if state == "DEPLOYED" else None

    _poll(deployed, f"model {model_id} was not deployed")


def _poll(check: Callable[[], _T | None], timeout_message: str) -> _T:
    """What ``check`` gives once it gives something, pausing longer each time; InstallError when
    DEPLOY_WAIT_SECONDS have passed."""
    deadline = time.monotonic() + DEPLOY_WAIT_SECONDS
    attempt = 0
    while (result := check()) is None:
        if time.monotonic() >= deadline:
            raise InstallError(
                f"{timeout_message} within {DEPLOY_WAIT_SECONDS:g} s: check the cluster's ML tasks"
            )
        time.sleep(_POLL_SECONDS[min(attempt, len(_POLL_SECONDS) - 1)])
        attempt += 1
    return result


def _search(cluster: _Cluster, kind: str, query: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The hits of an ML Commons search (oldest first), e.g. kind "connectors"."""
    path = f"/_plugins/_ml/{kind}/_search"
    body = {"query": query, "size": 100, "sort": [{"created_time": {"order": "asc"}}]}
    hits = cluster.call("POST", path, body, need="hits")["hits"]
    found = hits.get("hits") if isinstance(hits, dict) else None
    if not isinstance(found, list) or not all(
        isinstance(hit, dict) and "_id" in hit and isinstance(hit.get("_source"), dict) for hit in found
    ):
        raise cluster.strange(f"POST {path}", f"hits that are not search hits ({_excerpt(hits)})")
    return found


def _find_one(cluster: _Cluster, kind: str, query: Mapping[str, Any]) -> dict[str, Any] | None:
    """The oldest match: connectors may share a name (made by hand); the installer keeps to one."""
    hits = _search(cluster, kind, query)
    return hits[0] if hits else None


# ---- steps 3 and 4: pipeline and templates -------------------------------------------------------


def _put_if_changed(
    cluster: _Cluster, title: str, path: str, stored: Any, body: dict[str, Any], say: Say
) -> None:
    if stored is None:
        cluster.call("PUT", path, body)
        say(f"{title}: created")
    elif changed := _differences(stored, body):
        cluster.call("PUT", path, body)
        say(f"{title}: updated ({', '.join(changed)})")
    else:
        say(f"{title}: unchanged")


def _first(answer: Any, listing: str, field: str) -> dict[str, Any] | None:
    """The one template of a GET _component_template/<name> (or _index_template) answer."""
    items = (answer or {}).get(listing) or []
    return dict(items[0][field]) if items else None


def _differences(stored: Mapping[str, Any], desired: Mapping[str, Any], *, deep: bool = False) -> list[str]:
    """The top-level keys of ``desired`` whose value ``stored`` does not hold; keys only the cluster
    has (timestamps, a version) are no difference. ``deep``: nor anywhere below, for what ML Commons
    stores with its defaults filled in (a connector's client_config)."""
    return [
        key
        for key, value in desired.items()
        if key not in stored or (_project(stored[key], value) if deep else stored[key]) != value
    ]


def _project(stored: Any, desired: Any) -> Any:
    if isinstance(stored, dict) and isinstance(desired, dict):
        return {key: _project(stored[key], value) for key, value in desired.items() if key in stored}
    if isinstance(stored, list) and isinstance(desired, list) and len(stored) == len(desired):
        return [_project(s, d) for s, d in zip(stored, desired, strict=True)]
    return stored


# ---- errors ----------------------------------------------------------------------------------------


def _reason(info: Any, error: Any) -> str:
    """The cluster's reason for an error answer, on one line."""
    reason: Any = info
    if isinstance(info, dict):
        detail = info.get("error", info)
        if isinstance(detail, dict):
            causes = detail.get("root_cause") or [detail]
            reason = causes[0].get("reason") or detail.get("type") or detail
        else:
            reason = detail
    text = str(reason or error)
    return " ".join(text.split())[:500]


def _excerpt(value: Any) -> str:
    """A value quoted in a message: on one line, at most 200 characters."""
    return " ".join(str(value).split())[:200]


def _cause(info: Any) -> str:
    """Why a connection failed, without urllib3's nesting (e.g. "[Errno 111] Connection refused")."""
    text = str(info)
    found = re.search(r"\[Errno -?\d+\][^'\")]*", text)
    return found.group(0).strip() if found else type(info).__name__


# ---- OpenSearch Dashboards -------------------------------------------------------------------------


class _Dashboards:
    """The saved-objects API of OpenSearch Dashboards (with the osd-xsrf header it requires)."""

    def __init__(
        self, url: str, auth: tuple[str, str] | None, verify_tls: bool, ca_certs: str | None, timeout: float
    ) -> None:
        self.url = _checked_url(url, "--dashboards-url", "http://localhost:5601").rstrip("/")
        self.timeout = timeout
        self.headers = {"osd-xsrf": "true"}
        if auth is not None:
            self.headers["Authorization"] = _basic(auth)
        context = ssl.create_default_context(cafile=ca_certs)
        if not verify_tls:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        # a redirect is not followed: urllib would send --auth's credentials on to wherever it points
        # (another host, or plain http), and a login page there is no answer of Dashboards' API anyway
        self.opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), _NoRedirect())

    def install(self, ndjson: bytes, say: Say) -> None:
        """Import the saved objects (overwriting), unless each is already there as the file has it."""
        objects = _saved_objects(ndjson)
        path = "/api/saved_objects/_bulk_get"
        stored = self.call("POST", path, _json([{"type": o["type"], "id": o["id"]} for o in objects]))
        have_all = stored.get("saved_objects")
        if not isinstance(have_all, list) or len(have_all) != len(objects):
            raise self.strange(f"POST {path}", f"not one saved object a request ({_excerpt(stored)})")
        if all(
            isinstance(have, dict)
            and "error" not in have
            and have.get("attributes") == want.get("attributes")
            and have.get("references", []) == want.get("references", [])
            for have, want in zip(have_all, objects, strict=True)
        ):
            say(f"dashboards: unchanged ({len(objects)} saved objects)")
            return
        boundary = uuid.uuid4().hex
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="ocsf-anomaly.ndjson"\r\n'
                "Content-Type: application/ndjson\r\n\r\n"
            ).encode()
            + ndjson
            + f"\r\n--{boundary}--\r\n".encode()
        )
        answer = self.call(
            "POST",
            "/api/saved_objects/_import?overwrite=true",
            (body, f"multipart/form-data; boundary={boundary}"),
        )
        if not answer.get("success"):
            errors = answer.get("errors") or [{}]
            raise InstallError(f"OpenSearch Dashboards refused the saved objects: {json.dumps(errors[0])}")
        say(f"dashboards: imported {answer.get('successCount', len(objects))} saved objects")

    def uninstall(self, ndjson: bytes, say: Say) -> None:
        objects = _saved_objects(ndjson)
        deleted = sum(
            self.call("DELETE", f"/api/saved_objects/{o['type']}/{o['id']}", missing=True) is not None
            for o in objects
        )
        say(f"dashboards: deleted {deleted} saved objects" if deleted else "dashboards: absent")

    def call(
        self, method: str, path: str, body: tuple[bytes, str] | None = None, *, missing: bool = False
    ) -> Any:
        """The answer's JSON; None for a 404 when ``missing`` allows it."""
        headers = dict(self.headers)
        data = None
        if body is not None:
            data, headers["Content-Type"] = body
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)  # noqa: S310 - the user's URL
        try:
            with self.opener.open(request, timeout=self.timeout) as answer:
                text = answer.read() or b"{}"
        except urllib.error.HTTPError as exc:
            if exc.code == 404 and missing:
                return None
            if 300 <= exc.code < 400:
                where = without_credentials(str(exc.headers.get("Location", "nowhere")))
                raise self.strange(
                    f"{method} {path}", f"a redirect ({exc.code}) to {_excerpt(where)}, not followed"
                ) from None
            detail = " ".join(exc.read().decode(errors="replace").split())[:300]
            hint = {
                401: f": check {AUTH_GIVEN}",
                403: f": the user of {AUTH_GIVEN} lacks that privilege",
            }.get(exc.code, "")
            raise InstallError(
                f"OpenSearch Dashboards refused {method} {path} ({exc.code}: {detail}){hint}"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise InstallError(
                f"cannot reach OpenSearch Dashboards at {self.url} ({reason}): check --dashboards-url"
            ) from None
        try:
            value = json.loads(text)
        except ValueError:  # a login page (a redirect followed), another server
            value = None
        if not isinstance(value, dict):
            raise self.strange(
                f"{method} {path}", f"{_excerpt(text.decode(errors='replace'))}, not a JSON object"
            )
        return value

    def strange(self, call: str, what: str) -> InstallError:
        """What a server that is not Dashboards' API answered."""
        return InstallError(
            f"OpenSearch Dashboards at {self.url} answered {call} with {what}: check that --dashboards-url "
            "is OpenSearch Dashboards (e.g. http://localhost:5601) and that --auth may use its API"
        )


def _json(value: Any) -> tuple[bytes, str]:
    return json.dumps(value).encode(), "application/json"


def _saved_objects(ndjson: bytes) -> list[dict[str, Any]]:
    """The saved objects of an export file (its last line, a summary with no type, left out)."""
    lines = (json.loads(line) for line in ndjson.splitlines() if line.strip())
    return [item for item in lines if "type" in item and "id" in item]
