"""What OpenSearch needs to score every OCSF document at ingest through the service: the bodies of
the REST calls, built from a few options (one place; ``ocsf-anomaly opensearch render`` prints
them, ``install`` sends them, and integrations/opensearch/definitions/ holds them as rendered with
the defaults).

Written for OpenSearch 2.14 and later (the ``ml_inference`` ingest processor; 2.15 for a scorer
on a private or loopback address), as read from ML Commons' source:

- the connector's ``request_body`` is a string template: ``${parameters.event}`` is replaced by
  the JSON of what the processor's ``input_map`` read (the whole document for ``"$"``, metadata
  fields included, which the service ignores), spliced as JSON because it is an object;
- the reply is read as a map, and ``output_map`` copies fields of it into the document; a path
  the reply lacks fails the document, so the service always sends every mapped field; before 3.5
  every number comes back a double, so the model version travels as text;
- a failed call fails the document unless the processor handles it: ``on_failure`` here writes
  the reason to ``anomaly.error`` and the document is indexed unscored (``ignore_failure`` is not
  used: it would skip ``on_failure`` too, and the document would carry no sign of the failure);
- output fields a document already has are not overwritten (2.16+, where the call is skipped
  only when it has them all; before 2.16 such a field fails the document): the pipeline removes
  a document's ``anomaly`` object first unless it is a verdict of its own (``model_version``, which
  no other path writes, and no error), so that a document is indexed with one verdict, whole: its
  own earlier one kept (re-indexed, or updated by query, it is not scored again), or this call's.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

ENDPOINT = "/v1/integrations/opensearch"
# ML Commons refuses a connector without a credential: this stands in until the real token is set
TOKEN_PLACEHOLDER = "set-the-scorer-token"  # noqa: S105 - a placeholder, not a secret
TRUSTED_SETTING = "plugins.ml_commons.trusted_connector_endpoints_regex"
PRIVATE_IP_SETTING = "plugins.ml_commons.connector.private_ip_enabled"
# What the installer leaves in the component template's _meta, to know on uninstall what it set.
META_KEY = "ocsf_anomaly"
# Characters an index template's pattern may not hold (OpenSearch's MetadataIndexTemplateService):
# refused there, they would stop an install at its last step, with everything else written.
INDEX_PATTERN_REFUSED = ' ,#:\\/?"<>|'
# ML Commons reads a connector's client_config as Java ints (ConnectorClientConfig.parse): a larger
# number is refused by the cluster at the connector step, after the settings step has written.
JAVA_INT_MAX = 2**31 - 1

# The reply's field → the document's field (under anomaly.), and how the index maps it.
OUTPUTS: dict[str, dict[str, Any]] = {
    "score": {"type": "double"},
    "p_value": {"type": "double"},
    "is_anomaly": {"type": "boolean"},
    "alpha": {"type": "double"},
    "calibration_group": {"type": "keyword"},
    "reasons": {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 1024}}},
    "reason_fields": {"type": "keyword"},
    "model_name": {"type": "keyword"},
    "model_version": {"type": "keyword"},
    "model_variant": {"type": "keyword"},
}
# Written by the pipeline's failure handler, not read from the reply.
FAILURE_FIELDS: dict[str, dict[str, Any]] = {
    "error": {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 1024}}},
}


@dataclass(frozen=True)
class Options:
    """What a site chooses; every other setting follows from these."""

    scorer_url: str = "http://127.0.0.1:8080"
    scorer_token: str | None = None
    name: str = "ocsf-anomaly"  # of the connector, model group, model, pipeline and templates
    pipeline_name: str | None = None  # the ingest pipeline's, when not ``name``
    index_patterns: tuple[str, ...] = ("ocsf-*",)
    event_field: str = "$"  # the input_map's document path: "$" is the whole document
    alpha: float | None = None  # None: the service's own
    connection_timeout: int = 5  # seconds
    read_timeout: int = 10  # seconds
    max_retry_times: int = 2  # a failed call is retried this many times (ML Commons' default is 0)
    max_prediction_tasks: int = 10  # concurrent calls per ingest node (the processor's default)
    private_ip: bool | None = None  # allow a private scorer address; None: when the URL looks private

    def __post_init__(self) -> None:
        parts = urlsplit(self.scorer_url)
        try:
            port_ok = (
                parts.port is None or parts.port > 0
            )  # .port raises for one out of range or not a number
        except ValueError:
            port_ok = False
        if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
            raise ValueError(f"the scorer's URL must be http(s)://host[:port], not {self.scorer_url!r}")
        if parts.path.strip("/") or parts.query or parts.fragment:
            raise ValueError(
                f"give the scorer's base URL (e.g. http://scorer:8080), without a path: {self.scorer_url!r}"
            )
        for what, value in (("name", self.name), ("pipeline name", self.pipeline)):
            if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", value):
                raise ValueError(f"{what} {value!r}: lower-case letters, digits, '-', '_' and '.'")
        if not self.index_patterns:
            raise ValueError("at least one index pattern")
        for pattern in self.index_patterns:  # what OpenSearch refuses in an index template, and more
            if not pattern or pattern != pattern.lower() or pattern.startswith(("_", "-", "+")):
                raise ValueError(
                    f"index pattern {pattern!r}: index names are lower-case and do not start with '_', '-' or '+'"
                )
            if refused := sorted(set(INDEX_PATTERN_REFUSED) & set(pattern)):
                raise ValueError(
                    f"index pattern {pattern!r}: OpenSearch refuses {' '.join(map(repr, refused))} in one"
                )
        if self.alpha is not None and not 0 < self.alpha < 1:
            raise ValueError("alpha is a false-positive rate between 0 and 1, e.g. 0.01")
        for what, number in (
            ("connection timeout", self.connection_timeout),
            ("read timeout", self.read_timeout),
            ("retries", self.max_retry_times),
            ("prediction tasks", self.max_prediction_tasks),
        ):
            if not 0 <= number <= JAVA_INT_MAX:
                raise ValueError(
                    f"{what} {number}: ML Commons takes 0 to {JAVA_INT_MAX:,} (a 32-bit integer)"
                )

    @property
    def base_url(self) -> str:
        return self.scorer_url.rstrip("/")

    @property
    def predict_url(self) -> str:
        query = f"?alpha={self.alpha:g}" if self.alpha is not None else ""
        return self.base_url + ENDPOINT + query

    @property
    def pipeline(self) -> str:
        return self.pipeline_name or self.name

    @property
    def template(self) -> str:
        return self.name

    @property
    def component_template(self) -> str:
        return f"{self.name}-mappings"


def trusted_regex(options: Options) -> str:
    """The trusted-endpoint regex (a full match) that admits the connector's URL and nothing else.
    No quantifier after a group: ML Commons 3.7+ refuses a regex with a quantified group that holds a
    quantifier (``(\\?.*)?``) as a ReDoS risk."""
    return "^" + re.escape(options.base_url + ENDPOINT) + r"(|\?.*)$"


def is_private(url: str) -> bool:
    """Whether ML Commons (2.15+) refuses ``url`` unless private addresses are enabled: a loopback,
    private or link-local address, or a name that is not a public DNS name (checked by its address
    at predict time: localhost and single-label names resolve privately)."""
    host = urlsplit(url).hostname or ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host == "localhost" or "." not in host or host.endswith((".local", ".internal", ".lan"))
    return address.is_private or address.is_loopback or address.is_link_local


def cluster_settings(options: Options, trusted: list[str]) -> dict[str, Any]:
    """Step 0: ``PUT _cluster/settings``. ``trusted`` is the cluster's current list of trusted
    endpoint regexes: ours is added to it, never put in its place."""
    ours = trusted_regex(options)
    persistent: dict[str, Any] = {
        TRUSTED_SETTING: [*trusted, ours] if ours not in trusted else list(trusted),
    }
    private = is_private(options.scorer_url) if options.private_ip is None else options.private_ip
    if private:
        persistent[PRIVATE_IP_SETTING] = True
    return {"persistent": persistent}


def connector(options: Options) -> dict[str, Any]:
    """Step 1: ``POST _plugins/_ml/connectors/_create``."""
    return {
        "name": f"{options.name}-scorer",
        "description": (
            f"ocsf-anomaly's scoring service ({options.base_url}): one OCSF document a call, the verdict "
            "as flat fields"
        ),
        "version": "1",
        "protocol": "http",
        "parameters": {},
        "credential": {"token": options.scorer_token or TOKEN_PLACEHOLDER},
        "client_config": {
            "connection_timeout": options.connection_timeout,
            "read_timeout": options.read_timeout,
            "max_connection": max(30, options.max_prediction_tasks),
            "max_retry_times": options.max_retry_times,
            "retry_backoff_millis": 100,
            "retry_backoff_policy": "exponential_full_jitter",
        },
        "actions": [
            {
                "action_type": "predict",
                "method": "POST",
                "url": options.predict_url,
                "headers": {
                    "Content-Type": "application/json",
                    "Authorization": "Bearer ${credential.token}",
                },
                # the event is spliced as JSON (an object), so it is not quoted
                "request_body": '{"event": ${parameters.event}}',
            }
        ],
    }


def model_group(options: Options) -> dict[str, Any]:
    """Step 2a: ``POST _plugins/_ml/model_groups/_register`` (a group's name is unique)."""
    return {
        "name": options.name,
        "description": "ocsf-anomaly: anomaly scores of OCSF events, from the scoring service",
    }


def model(options: Options, connector_id: str, model_group_id: str) -> dict[str, Any]:
    """Step 2b: ``POST _plugins/_ml/models/_register?deploy=true``."""
    return {
        "name": f"{options.name}-scorer",
        "function_name": "remote",
        "model_group_id": model_group_id,
        "description": f"ocsf-anomaly's scoring service at {options.base_url}",
        "connector_id": connector_id,
    }


def pipeline(options: Options, model_id: str) -> dict[str, Any]:
    """Step 3: ``PUT _ingest/pipeline/<name>``."""
    return {
        "description": (
            "Scores each OCSF document for anomalies through ocsf-anomaly (anomaly.*); a document the "
            "scorer could not score is indexed with anomaly.error"
        ),
        "processors": [
            {
                # Whatever `anomaly` a document arrives with goes first, whole. ML Commons writes only
                # the output fields a document lacks (2.16+; it skips the call only when it has them
                # all; before 2.16 one it has fails the document): a verdict of another path's was
                # indexed half old, half new, and one shaped as this pipeline's own was kept
                # unscored, which a document's source can write as well as the pipeline can (the
                # adversarial review: a forged `is_anomaly: false` indexed as the verdict).
                "remove": {
                    "tag": f"{options.name}-earlier-verdict",
                    "description": (
                        "any anomaly object the document arrives with (another path's verdict, an "
                        "earlier one, an error, or one forged at the source): this call's verdict "
                        "replaces it whole"
                    ),
                    "field": "anomaly",
                    "ignore_missing": True,
                }
            },
            {
                "ml_inference": {
                    "tag": f"{options.name}-score",
                    "description": "the verdict of ocsf-anomaly's scoring service",
                    "model_id": model_id,
                    "input_map": [{"event": options.event_field}],
                    "output_map": [{f"anomaly.{name}": name for name in OUTPUTS}],
                    "max_prediction_tasks": options.max_prediction_tasks,
                    "on_failure": [
                        {
                            "set": {
                                "field": "anomaly.error",
                                "value": "{{ _ingest.on_failure_message }}",
                            }
                        }
                    ],
                }
            },
        ],
    }


def component_template(options: Options, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Step 4a: ``PUT _component_template/<name>-mappings``: the anomaly.* mappings, OCSF's ``time``
    as a date (milliseconds since the epoch), and the pipeline as the indices' default. An index
    template of the site's own can list it in ``composed_of`` instead of step 4b."""
    return {
        "template": {
            "settings": {"index.default_pipeline": options.pipeline},
            "mappings": {
                "properties": {
                    "time": {"type": "date", "format": "epoch_millis"},
                    "anomaly": {"properties": {**OUTPUTS, **FAILURE_FIELDS}},
                }
            },
        },
        "_meta": {META_KEY: meta or {"description": "made by ocsf-anomaly opensearch install"}},
    }


def index_template(options: Options) -> dict[str, Any]:
    """Step 4b: ``PUT _index_template/<name>`` over the index patterns, made of the component."""
    return {
        "index_patterns": list(options.index_patterns),
        "composed_of": [options.component_template],
        "priority": 200,
        "_meta": {META_KEY: {"description": "made by ocsf-anomaly opensearch install"}},
    }


def simulate(options: Options, document: dict[str, Any]) -> dict[str, Any]:
    """Step 5: ``POST _ingest/pipeline/<name>/_simulate`` with one document."""
    return {"docs": [{"_index": options.index_patterns[0].replace("*", "test"), "_source": document}]}


@dataclass(frozen=True)
class Step:
    """One REST call: its method, path and body, and what it is for."""

    title: str
    method: str
    path: str
    body: dict[str, Any]

    @property
    def filename(self) -> str:
        """``2a. model group`` → ``2a-model-group.json``: files that sort in the order of the calls."""
        number, _, words = self.title.partition(". ")
        return f"{number}-{words.replace(',', '').replace(' ', '-')}.json"


def steps(
    options: Options,
    *,
    trusted: list[str] | None = None,
    connector_id: str = "<connector_id>",
    model_group_id: str = "<model_group_id>",
    model_id: str = "<model_id>",
    sample: dict[str, Any] | None = None,
) -> list[Step]:
    """Every call of an install, in order (ids not known yet as placeholders)."""
    calls = [
        Step("0. cluster settings", "PUT", "/_cluster/settings", cluster_settings(options, trusted or [])),
        Step("1. connector", "POST", "/_plugins/_ml/connectors/_create", connector(options)),
        Step("2a. model group", "POST", "/_plugins/_ml/model_groups/_register", model_group(options)),
        Step(
            "2b. remote model",
            "POST",
            "/_plugins/_ml/models/_register?deploy=true",
            model(options, connector_id, model_group_id),
        ),
        Step(
            "3. ingest pipeline", "PUT", f"/_ingest/pipeline/{options.pipeline}", pipeline(options, model_id)
        ),
        Step(
            "4a. component template",
            "PUT",
            f"/_component_template/{options.component_template}",
            component_template(options),
        ),
        Step("4b. index template", "PUT", f"/_index_template/{options.template}", index_template(options)),
    ]
    if sample is not None:
        calls.append(
            Step(
                "5. test",
                "POST",
                f"/_ingest/pipeline/{options.pipeline}/_simulate",
                simulate(options, sample),
            )
        )
    return calls
