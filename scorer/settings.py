"""The service's settings: one object, read once at the entry point and passed down.

Every field is read from the environment with the prefix ``OCSF_ANOMALY_`` (``OCSF_ANOMALY_PORT``,
``OCSF_ANOMALY_MODEL_NAME`` …), or from a TOML file given with ``--config FILE``. Precedence:
command-line flags over the environment over the file over the defaults.
"""

from __future__ import annotations

import difflib
import functools
import ipaddress
import os
import re
import socket
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict
from yarl import URL

from scorer.errors import UserError, origin, without_credentials
from scorer.paths import default_registry_uri
from scorer.threads import most_processes

DEMO_MODEL = "ocsf-anomaly-demo"

MiB = 1024 * 1024
MIN_POLL_SECONDS = 0.1
MAX_RESOLVE_SECONDS = 365 * 86_400  # an alert's endsAt at most a year out: a date ends at the year 9999
BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")  # a % that starts no escape: a URL parser refuses it
PRINTABLE_ASCII = r"^[!-~]*$"  # what a bearer token may hold: no spaces, nothing a client cannot send
HTTP_URL = r"^https?://[^\s]+$"
HOST_NAMES = r"^[A-Za-z0-9._:*,\[\] -]+$"  # allowed_hosts: names and addresses, comma-separated
# what a pattern asks for, said to a user rather than as the regular expression
PATTERNS = {
    PRINTABLE_ASCII: "printable ASCII without spaces (it is sent in an HTTP header)",
    HTTP_URL: "an http:// or https:// URL without spaces",
}


class SettingsError(UserError, ValueError):
    """Settings that cannot be used, with what is wrong."""


ENV_PREFIX = "OCSF_ANOMALY_"


class Settings(BaseSettings):
    """Everything the scoring service can be told."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
        populate_by_name=True,
        # a variable set empty is unset, as MLflow and compose's `${VAR:-}` have it: an empty
        # OCSF_ANOMALY_REGISTRY_URI hid MLFLOW_TRACKING_URI, and MLflow took it for its default store
        env_ignore_empty=True,
        # "inf" (or 1e309) passed every bound `ge` sets: config show printed Infinity, which is not
        # JSON, and /v1/models answered a poll_seconds of null against its own schema
        allow_inf_nan=False,
    )

    host: str = "127.0.0.1"
    """Address to listen on. Admin calls without an admin token are only accepted on loopback."""
    port: int = Field(8080, ge=1, le=65535)
    """TCP port to listen on."""
    tls_cert_file: Path | None = None
    """PEM certificate chain to serve HTTPS with (with `tls_key_file`). Unset: plain HTTP, for
    loopback or behind a proxy that terminates TLS; bearer tokens sent over a network need one or
    the other."""
    tls_key_file: Path | None = None
    """PEM private key of `tls_cert_file` (unencrypted: the service starts unattended)."""
    registry_uri: str = Field(
        default_factory=default_registry_uri,
        validation_alias=AliasChoices("OCSF_ANOMALY_REGISTRY_URI", "MLFLOW_TRACKING_URI", "registry_uri"),
    )
    """MLflow registry (`OCSF_ANOMALY_REGISTRY_URI`, else `MLFLOW_TRACKING_URI`): the local SQLite store
    under data/mlflow by default, or an MLflow server (http://…)."""
    model_name: str = Field(DEMO_MODEL, min_length=1)
    """Registered model to serve: its `champion` version answers, its `challenger` version (if any)
    is compared with it (A/B split or shadow)."""
    model_poll_seconds: float = Field(30.0, ge=0)
    """How often the service checks the aliases (or the bundle directories) for a new version and
    swaps it in; 0: only on `POST /v1/models/reload`. At least 0.1 otherwise (each check is a
    registry call)."""
    model_dir: Path | None = None
    """Serve this bundle directory (written by `ocsf-anomaly train --output`) instead of the registry."""
    challenger_model_dir: Path | None = None
    """With `model_dir`: a second bundle directory to compare with the first (A/B split or shadow)."""
    challenger_split: float = Field(0.0, ge=0, le=1)
    """Share of entities whose events the challenger scores and answers for (A/B), by a stable hash."""
    shadow: bool = False
    """The challenger scores every event too, in the background; only its agreement is recorded."""
    entity_key: str = Field("src_endpoint.ip", min_length=1)
    """Dotted path of the entity that always meets the same variant (e.g. actor.user.name); events
    without it are routed by a digest of the whole event."""
    alpha: float = Field(0.01, gt=0, lt=1)
    """Default target false-positive rate; a request may override it with `?alpha=`."""
    anomaly_field: str = Field("anomaly", min_length=1)
    """Name of the object `/v1/enrich` adds to each event."""
    max_body_bytes: int = Field(16 * MiB, ge=1024)
    """Largest request body accepted (413 above it). A Vector batch is up to 10 MB."""
    body_timeout_seconds: float = Field(30.0, gt=0, le=3600)
    """A request body that has not arrived this many seconds after its headers is answered 408 and
    its connection closed (a client that declares more than it sends holds nothing for long); an
    answer its client has not read this many seconds after it was ready is given up, its connection
    closed (a client that reads nothing holds its body's share of the budget no longer)."""
    max_events: int = Field(10_000, ge=1)
    """Most events accepted in one request (413 above it)."""
    max_pending_body_bytes: int = Field(128 * MiB, ge=1024)
    """Most bytes of request bodies held at once across requests, from their first byte until they
    are answered (at least `max_body_bytes`): a body declared (or, compressed, inflated) past it is
    answered 503 with `Retry-After`; a body without `Content-Length` counts as `max_body_bytes`."""
    max_pending_events: int = Field(20_000, ge=1)
    """Most events admitted at once across requests, queued or being scored (at least `max_events`):
    a request that would pass it is answered 503 with `Retry-After` at once, not queued."""
    batch_max_size: int = Field(1024, ge=1)
    """Micro-batching: most events merged into one model and index call (1: every request alone)."""
    batch_max_wait_us: int = Field(3000, ge=0, le=1_000_000)
    """Micro-batching: at most how long a free worker waits for more requests to join before it
    starts, in microseconds. It waits only while requests come at least twice in that time, stops at
    a pause of twice their usual gap, and holds off after a wait that found nobody; under light load
    a request starts at once. 0: never wait (requests that arrive while every worker is busy are
    merged anyway). The default, 3 ms, took the CPU of a single-event request at 2,500 requests/s
    from 0.71 to 0.48–0.50 ms (BENCHMARKS.md)."""
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    """Serving processes sharing the port, one per core by default: one Python process cannot use
    more than about one core (the GIL), so each scores on its own core. Each loads the model (memory
    grows with them); 1: a single process; at most four a core."""
    threads: int = Field(1, ge=1)
    """Scoring threads in each serving process that run the model and the index (each
    single-threaded in torch and faiss), off the event loop."""
    redis_url: str | None = Field(
        None, validation_alias=AliasChoices("OCSF_ANOMALY_REDIS_URL", "REDIS_URL", "redis_url")
    )
    """Redis for the shared embedding cache (`OCSF_ANOMALY_REDIS_URL`, else `REDIS_URL`); unset: in-process cache only."""
    stream_redis_url: str | None = Field(
        None, validation_alias=AliasChoices("OCSF_ANOMALY_STREAM_REDIS_URL", "stream_redis_url")
    )
    """Redis of `stream --source redis` when its --redis-url is not given (a password kept off the
    command line): its own, not the cache's, whose eviction of the least recently used keys would
    drop what a stream holds."""
    redis_timeout_ms: int = Field(50, ge=1)
    """Longest a Redis lookup may take before the cache answers from its local tier."""
    cache_items: int = Field(10_000, ge=0)
    """Embeddings kept in the in-process cache tier (about 0.5 KB each). Replayed traffic hits it
    rarely (0.8% of NSL-KDD's training file in file order at 10,000, 3.0% at 100,000), and a hit
    saves about 60 µs of one event's network: repeats further apart are Redis's to serve."""
    cache_ttl_seconds: int = Field(86_400, ge=1)
    """Lifetime of an embedding in Redis."""
    vector_downstream_url: str | None = Field(None, pattern=HTTP_URL)
    """Where `POST /v1/integrations/vector` forwards each enriched batch: a Vector `http_server`
    source, e.g. http://127.0.0.1:8687/v1/enriched. Unset: that endpoint answers 503 (Vector keeps
    the batch and retries)."""
    vector_downstream_timeout_seconds: float = Field(10.0, gt=0)
    """How long a forward to the Vector downstream may take before the batch is answered 503."""
    vector_dedupe_seconds: float = Field(600.0, ge=0, le=86_400)
    """A batch forwarded within this many seconds is not scored or forwarded again when Vector sends
    it again (its answer was lost): 0 turns that off; at most a day (an infinite window could not be
    given to Redis as an expiry, which turned the sharing between processes off without a word)."""
    alerts_url: str | None = Field(None, pattern=HTTP_URL)
    """Where alerts go: Prometheus Alertmanager's base URL (e.g. http://127.0.0.1:9093;
    `/api/v2/alerts` is added to its path, before its query), or a webhook's full URL with `alerts_kind = "webhook"`. Unset: no
    alerts. They are sent in the background: a slow or down receiver never slows scoring."""
    alerts_kind: Literal["alertmanager", "webhook"] = "alertmanager"
    """`alertmanager` (its API v2) or `webhook` (a POST of `{"version": "1", "alerts": [...]}`)."""
    alerts_p_value: float = Field(0.001, gt=0, lt=1)
    """Events at or below this p-value alert; at most `alpha`: every anomaly stays in the enriched
    output for hunting, only the rarest page someone."""
    alerts_dedupe_seconds: float = Field(600.0, ge=0)
    """An entity (`entity_key`) alerts at most once in this window; 0: every qualifying event alerts."""
    alerts_resolve_seconds: float = Field(1800.0, gt=0, le=MAX_RESOLVE_SECONDS)
    """An alert resolves this long after it was sent unless its entity alerts again (at most a year)."""
    alerts_queue_size: int = Field(10_000, ge=1)
    """Most alerts waiting while the receiver is down or slow; beyond it they are dropped and counted."""
    alerts_token: str | None = Field(None, pattern=PRINTABLE_ASCII)
    """Bearer token sent to the alert receiver (a webhook, or an Alertmanager behind a proxy)."""
    alerts_generator_url: str | None = Field(None, pattern=HTTP_URL)
    """Link put in every alert (`generatorURL`), e.g. a dashboard of the anomalies."""
    kafka_password: str | None = None
    """`stream --source kafka`: the SASL password of `--sasl-username` (an environment variable or the
    config file, never a flag that `ps` would show)."""
    api_token: str | None = Field(None, pattern=PRINTABLE_ASCII)
    """Bearer token required on scoring calls (printable ASCII); unset: scoring is open."""
    admin_token: str | None = Field(None, pattern=PRINTABLE_ASCII)
    """Bearer token required on admin calls (printable ASCII); unset: admin calls only on a loopback
    address, and with the API token when one is set."""
    allowed_hosts: str | None = Field(None, pattern=HOST_NAMES)
    """While the service listens on loopback only, the names a request may give in its Host header
    besides loopback's own (localhost, 127.0.0.1, ::1, this machine's name), comma-separated: the
    name a proxy on this machine passes on; `*` any. Other names are refused (403): a web page whose
    name was made to resolve to 127.0.0.1 (DNS rebinding) would give its own."""

    @field_validator("alerts_url", "vector_downstream_url", "alerts_generator_url")
    @classmethod
    def _a_url_a_request_can_go_to(cls, url: str | None) -> str | None:
        """A port out of range, a broken address or a bare % in the path passes the pattern, and then
        fails every request (or, as the alerts' link, makes Alertmanager refuse every alert: 422)."""
        if url is not None:
            try:
                URL(url)
            except ValueError as exc:
                raise ValueError(f"not a URL a request can go to ({without_credentials(str(exc))})") from None
            parts = urlsplit(url)
            if BAD_ESCAPE.search(parts.path + parts.fragment):
                raise ValueError(
                    "not a URL a request can go to: a % in its path starts two hex digits (%25: %)"
                )
        return url

    @field_validator("allowed_hosts")
    @classmethod
    def _names_or_any(cls, names: str | None) -> str | None:
        for name in (names or "").split(","):
            if "*" in host_name(name) and host_name(name) != "*":
                raise ValueError(
                    f"{name.strip()!r}: give names or addresses, or * alone for any (no patterns)"
                )
        return names

    @field_validator("anomaly_field")
    @classmethod
    def _a_field_apart_from_what_is_kept(cls, name: str) -> str:
        """What is not an event is kept beside its anomaly object under ``_raw`` (/v1/enrich) or
        ``message`` (the Vector hop): an anomaly field of that name left it nowhere to go."""
        if name in ("_raw", "message"):
            raise ValueError(
                f"{name!r} is where what is not an event is kept beside its anomaly object (_raw by "
                "/v1/enrich, message by the Vector hop, as Vector holds text): choose another name"
            )
        if name in ("time", "class_uid", "metadata"):  # a scored event's day, group and uid
            raise ValueError(
                f"{name!r} is a field of the event the verdict would replace, one read after scoring "
                "(report's day, the calibration group, the event's uid): choose another name"
            )
        return name

    @field_validator("redis_url", "stream_redis_url")
    @classmethod
    def _a_redis_url_read_as_written(cls, url: str | None) -> str | None:
        return None if url is None else redis_url(url)

    @field_validator("registry_uri")
    @classmethod
    def _a_registry_is_named(cls, uri: str) -> str:
        if not uri.strip():  # MLflow would take it for its default: a new store in the working directory
            raise ValueError(
                "empty: leave registry_uri unset for the local store under data/mlflow, or name one "
                "(sqlite:////PATH/mlflow.db, http://HOST:5000)"
            )
        return uri

    @model_validator(mode="after")
    def _a_full_request_can_be_admitted(self) -> Settings:
        if self.max_pending_body_bytes < self.max_body_bytes:
            raise ValueError(
                f"max_pending_body_bytes ({self.max_pending_body_bytes:,}) must be at least max_body_bytes "
                f"({self.max_body_bytes:,}): a request within the limits could never be admitted"
            )
        if self.max_pending_events < self.max_events:
            raise ValueError(
                f"max_pending_events ({self.max_pending_events:,}) must be at least max_events "
                f"({self.max_events:,}): a request within the limits could never be admitted"
            )
        return self

    def answers_to(self, host: str) -> bool:
        """Whether a request naming ``host`` (its Host header) is answered:
        any while the service listens beyond loopback; else loopback's names and ``allowed_hosts``."""
        return not self.loopback_only or _a_local_name(host, self.allowed_hosts)

    @property
    def loopback_only(self) -> bool:
        """Whether the service listens on loopback only: then admin calls need no admin token of their
        own, and a request must name a loopback host (:meth:`answers_to`)."""
        return _loopback(self.host)

    @model_validator(mode="after")
    def _a_poll_the_registry_can_take(self) -> Settings:
        if 0 < self.model_poll_seconds < MIN_POLL_SECONDS:
            raise ValueError(
                f"model_poll_seconds ({self.model_poll_seconds:g}) is 0 (no polling) or at least "
                f"{MIN_POLL_SECONDS:g}: each poll asks the registry"
            )
        return self

    @model_validator(mode="after")
    def _workers_the_cores_can_use(self) -> Settings:
        most = most_processes()
        if self.workers > most:
            raise ValueError(f"workers ({self.workers:,}) on {os.cpu_count()} cores: at most {most}")
        return self

    @model_validator(mode="after")
    def _tls_has_both_halves(self) -> Settings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together: set both for HTTPS, or neither")
        return self

    @model_validator(mode="after")
    def _alerts_are_stricter_than_alpha(self) -> Settings:
        if self.alerts_url is not None and self.alerts_p_value > self.alpha:
            raise ValueError(
                f"alerts_p_value ({self.alerts_p_value}) must be at most alpha ({self.alpha}): alerts are "
                "the rarest of the anomalies"
            )
        return self

    @model_validator(mode="after")
    def _alerts_as_the_sender_takes_them(self) -> Settings:
        """The alert sender's own checks, at start rather than at its first alert (a URL with a
        password and alerts_token too: two Authorization headers, and the sender died)."""
        if self.alerts_url is not None:
            from scorer.alerts import config_from  # it imports this module; only when alerts are set

            config_from(self)  # ValueError saying what is wrong
        return self

    @model_validator(mode="after")
    def _challenger_needs_a_champion_dir(self) -> Settings:
        if self.challenger_model_dir is not None and self.model_dir is None:
            from scorer.registry import promoting  # MLflow is imported only when the registry is used

            raise ValueError(
                "challenger_model_dir needs model_dir; with the registry, the challenger is the version "
                f"with the alias challenger ({promoting(self.model_name, alias='challenger')})"
            )
        return self

    @classmethod
    def load(cls, config_file: Path | None = None, **overrides: Any) -> Settings:
        """The settings: ``overrides`` (command-line flags; None: not given) over the environment over
        the TOML file over the defaults, validated together (a value in the file may complete one in
        the environment, as ``model_dir`` does ``challenger_model_dir``)."""
        values: dict[str, Any] = {}
        if config_file is not None:
            try:
                values = tomllib.loads(Path(config_file).read_text(encoding="utf-8-sig"))  # a BOM: Notepad
            except OSError as exc:
                raise SettingsError(
                    f"cannot read settings file {config_file}: {exc.strerror or exc}"
                ) from exc
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise SettingsError(f"{config_file}: not valid TOML: {exc}") from exc
            # by the settings' names: an environment variable's name (REDIS_URL, which a field
            # takes as an alias) was taken from the file too, and beat the environment
            unknown = sorted(set(values) - set(cls.model_fields))
            if unknown:
                raise SettingsError(
                    f"{config_file}: {', '.join(map(repr, unknown))}: no such setting"
                    f"{_near(unknown[0].lower(), cls.model_fields)}; the file takes the names "
                    "`ocsf-anomaly config show` prints"
                )
        try:
            return cls.model_validate(
                {**values, **_environment(cls), **{k: v for k, v in overrides.items() if v is not None}}
            )
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {_said(e)}" for e in exc.errors()
            )
            raise SettingsError(f"invalid settings: {problems}") from exc


@functools.lru_cache(maxsize=16)  # asked on every request (the Host check): 2 µs each
def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# loopback's names in /etc/hosts as Debian and RHEL write it
LOOPBACK_NAMES = frozenset(
    {"localhost", "localhost.localdomain", "localhost4", "localhost6", "ip6-localhost", "ip6-loopback"}
)


@functools.lru_cache(maxsize=256)  # a request's Host: a few names, asked every request (5 µs each)
def _a_local_name(host: str, allowed_hosts: str | None) -> bool:
    """Whether ``host`` (a Host header) is loopback's (localhost, *.localhost, a loopback address, or
    0.0.0.0, which Linux takes to loopback; this machine's name) or one of ``allowed_hosts``
    (comma-separated; ``*``: any). A name is what DNS rebinding needs: no address can be rebound."""
    host = host_name(host)
    allowed = {host_name(name) for name in (allowed_hosts or "").split(",")} - {""}
    if "*" in allowed or host in allowed:
        return True
    if host in LOOPBACK_NAMES or host.endswith(".localhost") or host == host_name(socket.gethostname()):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1
    return address.is_loopback or address.is_unspecified


def host_name(host: str) -> str:
    """A Host header's (or an allowed_hosts entry's) name as compared: without its port, an IPv6
    address's brackets or a final dot, in lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        inside, _, rest = host[1:].partition("]")
        if rest and not rest.startswith(":"):
            return host  # "[::1]x.example": no name (a browser sends no such thing)
        host = inside
    elif host.count(":") == 1:
        host = host.rpartition(":")[0]
    return host.rstrip(".")


def service_url(settings: Settings, *, local: bool = False) -> str:
    """Where ``serve`` answers with ``settings`` (HTTPS once a certificate is set, an IPv6 host
    bracketed); ``local``: as this host reaches it, a wildcard address read as loopback."""
    host = settings.host
    if local and host in ("0.0.0.0", ""):  # noqa: S104 (read, not bound: all interfaces include loopback)
        host = "127.0.0.1"
    elif local and host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if settings.tls_cert_file is not None else 'http'}://{host}:{settings.port}"


def _near(name: str, names: Any, shown: str = "{}") -> str:
    """ " (did you mean X?)" for the closest of ``names`` (written as ``shown`` says), or nothing."""
    close = difflib.get_close_matches(name, list(names), n=1)
    return f" (did you mean {shown.format(close[0])}?)" if close else ""


# read by the tools beside the settings: the data's home and the tests' data, the Vector pipeline's
# scorer URL, the compose file's image version, `opensearch install`'s credentials for the cluster
NOT_SETTINGS = frozenset({"HOME", "SHARED_DATA", "URL", "VERSION", "OPENSEARCH_AUTH"})


def stray_variables(environ: Any = os.environ) -> list[str]:
    """A line for each OCSF_ANOMALY_ variable that is no setting (a misspelt one is ignored, and
    would otherwise go unnoticed), naming the setting it is closest to."""
    settings = sorted(name.upper() for name in Settings.model_fields)
    return [
        f"{variable} is no setting: ignored{_near(name, settings, ENV_PREFIX + '{}')}"
        for variable in sorted(environ)
        if (name := variable.removeprefix(ENV_PREFIX)) != variable
        and name not in settings
        and name not in NOT_SETTINGS
    ]


def _said(error: Any) -> str:
    """A validation error's message as a user reads it: without pydantic's "Value error, ", and a
    pattern said in words."""
    if error["type"] == "string_pattern_mismatch":
        return f"should be {PATTERNS.get(error['ctx']['pattern'], error['msg'])}"
    return str(error["msg"]).removeprefix("Value error, ")


def anomaly_field(config_file: Path | None = None) -> str:
    """The name the verdict is written under (``anomaly_field``: OCSF_ANOMALY_ANOMALY_FIELD, or the
    settings file's), for the commands that write or read scored events without the service's other
    settings (score, score-spark, report): they name it as the service and the stream consumer do.
    Only this setting is read from the environment, unless a settings file is given (then all are,
    as every command given one checks it)."""
    if config_file is not None:
        return Settings.load(config_file).anomaly_field
    name = _environment(Settings).get("anomaly_field", "anomaly")  # set empty: unset, as the service reads it
    try:
        return str(Settings._a_field_apart_from_what_is_kept(name))
    except ValueError as exc:
        raise SettingsError(f"{ENV_PREFIX}ANOMALY_FIELD: {exc}") from None


def _environment(cls: type[Settings]) -> dict[str, Any]:
    """The fields set in the environment, by field name, not yet validated."""
    found = EnvSettingsSource(cls)()  # keyed by the first alias of a field that has aliases
    first = {
        field.validation_alias.choices[0]: name
        for name, field in cls.model_fields.items()
        if isinstance(field.validation_alias, AliasChoices)
    }
    return {first.get(key, key): value for key, value in found.items()}


# URL options that change the shape of every answer (text for bytes, RESP3's maps), which the
# cache and the consumer read as Redis gives it by default; redis-py lets the URL override the code
REPLY_SHAPING = frozenset({"decode_responses", "protocol"})


def redis_url(url: str) -> str:
    """``url`` if redis-py reads it as written, else ValueError saying what is wrong: redis-py itself
    takes a database that is no number (``redis://host:6379/abc``) for database 0, silently."""
    from redis.connection import parse_url

    shown = masked_url(url)  # a password may be in the query too (?password=)
    try:
        parse_url(url)  # type: ignore[no-untyped-call]
    except ValueError as exc:
        raise ValueError(f"{shown}: {exc} (e.g. redis://HOST:6379/0; rediss:// for TLS)") from None
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    database = unquote(parts.path).replace("/", "")
    if parts.scheme != "unix" and database and "db" not in query and not database.isdigit():
        raise ValueError(f"{shown}: the database {database!r} is not a number (e.g. redis://HOST:6379/0)")
    shaping = sorted(REPLY_SHAPING & set(query))
    if shaping:
        raise ValueError(
            f"{shown}: remove {' and '.join(shaping)} from the URL (ocsf-anomaly reads raw replies)"
        )
    return url


SECRETS = frozenset({"api_token", "admin_token", "alerts_token", "kafka_password"})
URLS = frozenset(
    {"redis_url", "stream_redis_url", "registry_uri", "vector_downstream_url", "alerts_generator_url"}
)
# a receiver's URL whose path is often its secret (a Slack, Teams or Discord webhook)
RECEIVERS = frozenset({"alerts_url"})


def masked_url(url: str) -> str:
    """``url`` for display: its user and password as ``***``, its query (``?token=``) as ``?…``."""
    shown = without_credentials(url)
    return shown.split("?", 1)[0] + "?…" if "?" in shown else shown


def masked(settings: Settings) -> dict[str, Any]:
    """The resolved settings for display: tokens shown only as set or not, passwords in URLs hidden."""
    out: dict[str, Any] = {}
    for name, value in settings.model_dump().items():
        if name in SECRETS:
            value = "***" if value else None
        elif name in URLS and value:
            value = masked_url(value)
        elif name in RECEIVERS and value:
            value = origin(value)
        out[name] = str(value) if isinstance(value, Path) else value
    return out
