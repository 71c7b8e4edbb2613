"""``ocsf-anomaly stream``: score a stream of OCSF events in-process and write them back, enriched,
losing nothing on a crash (scorer/stream)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import re
import signal
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from scorer.cli import (
    CONFIG_HELP,
    CliError,
    Commands,
    _alpha,
    _port,
    _positive,
    _require_extra,
    _say,
    _seconds,
)

# Kafka's names (aiokafka's too), here so that `--help` imports no client
PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
KAFKA_SECURITY = (
    "security_protocol",
    "sasl_mechanism",
    "sasl_username",
    "ssl_cafile",
    "ssl_certfile",
    "ssl_keyfile",
)
KAFKA_ONLY = ("bootstrap_servers", *KAFKA_SECURITY)
REDIS_ONLY = ("redis_url", "claim_idle_seconds", "max_len")
# Kafka's legal topic names (its Topic.validate): up to 249 of these characters, and not "." or ".."
TOPIC = re.compile(r"[a-zA-Z0-9._-]{1,249}")

if TYPE_CHECKING:
    from scorer.service.models import ModelSource
    from scorer.settings import Settings
    from scorer.stream.kafka import KafkaSecurity, KafkaTopics
    from scorer.stream.redis_streams import RedisStreams

EXAMPLES = """\
examples:
  ocsf-anomaly stream --source redis --redis-url redis://127.0.0.1:6379/0 --input ocsf:events \\
      --output ocsf:enriched --alerts ocsf:anomalies --dead-letter ocsf:dead --group scorers
  ocsf-anomaly stream --source kafka --bootstrap-servers kafka:9092 --input ocsf.events \\
      --output ocsf.enriched --alerts ocsf.anomalies --dead-letter ocsf.dead --group scorers
  OCSF_ANOMALY_STREAM_REDIS_URL=redis://:PASSWORD@cache:6379/0 ocsf-anomaly stream --source redis \\
      --input ocsf:events --output ocsf:enriched --alerts ocsf:anomalies --dead-letter ocsf:dead \\
      --group scorers --model models/m1 --metrics-port 9108
  OCSF_ANOMALY_KAFKA_PASSWORD=... ocsf-anomaly stream --source kafka --bootstrap-servers b-1:9096 \\
      --sasl-mechanism SCRAM-SHA-512 --sasl-username scorer --input ocsf.events \\
      --output ocsf.enriched --alerts ocsf.anomalies --dead-letter ocsf.dead --group scorers

A Redis stream entry carries the OCSF event as JSON in its field 'event'; so does every entry
written (the enriched event, with the anomaly object added; a dead letter adds 'error'). A Kafka
message's value is the event JSON (a dead letter says why in its header 'error').
SIGTERM or Ctrl-C finishes the batch in hand, acknowledges it and exits 0.

When Redis or the brokers go away mid-stream, each read, write and commit is tried again (after
0.5 s, doubling up to 30 s) with the batch in hand held; a source unreachable at start, or one that
refuses what is asked for good (a key of the wrong type, a login), is one line and exit status 2.
Redis over TLS: a rediss:// URL, e.g. rediss://cache:6380/0?ssl_ca_certs=/etc/ssl/redis-ca.pem.

Alerts: with OCSF_ANOMALY_ALERTS_URL set (or alerts_url in --config), the events at or below
OCSF_ANOMALY_ALERTS_P_VALUE (default 0.001) are also sent to Prometheus Alertmanager or a webhook,
in the background, de-duplicated per entity, exactly as the service sends them (README: Alerts).
"""


def add_commands(commands: Commands) -> None:
    stream = commands.add_parser(
        "stream",
        help="score a Redis stream or Kafka topic of OCSF events, at least once",
        description=(
            "Read OCSF events from a stream as a member of a consumer group, score them in-process "
            "(the bundle --model names, or the registry's champion like the service, following "
            "promotions), write every event enriched to --output and the anomalies to --alerts, send "
            "what is no event to --dead-letter with the reason, and only then acknowledge the batch: "
            "a crash anywhere loses nothing (what was not acknowledged is read again)."
        ),
        epilog=EXAMPLES,
    )
    stream.add_argument(
        "--source",
        choices=["redis", "kafka"],
        required=True,
        help="where the events are: Redis Streams or Kafka",
    )
    stream.add_argument(
        "--redis-url",
        type=_redis_url,
        default=None,
        help="--source redis: e.g. redis://127.0.0.1:6379/0 (default: OCSF_ANOMALY_STREAM_REDIS_URL, or "
        "stream_redis_url in --config; give a password there rather than here, where `ps` shows it)",
    )
    stream.add_argument(
        "--bootstrap-servers",
        type=_bootstrap_servers,
        default=None,
        help="--source kafka: HOST:PORT[,HOST:PORT]",
    )
    kafka = stream.add_argument_group(
        "Kafka security",
        "TLS and SASL, named as in Kafka's own client settings (security.protocol, sasl.mechanism). "
        "The SASL password is read from OCSF_ANOMALY_KAFKA_PASSWORD (or kafka_password in --config), "
        "never from a flag, which `ps` would show.",
    )
    kafka.add_argument(
        "--security-protocol",
        choices=PROTOCOLS,
        default=None,
        help="default: SASL_SSL with --sasl-mechanism, SSL with an --ssl-* file, else PLAINTEXT",
    )
    kafka.add_argument("--sasl-mechanism", choices=MECHANISMS, default=None, help="e.g. SCRAM-SHA-512")
    kafka.add_argument("--sasl-username", default=None, help="the SASL user")
    kafka.add_argument(
        "--ssl-cafile",
        type=Path,
        default=None,
        help="PEM of the CA that signed the brokers' certificates (default: the system's CAs)",
    )
    kafka.add_argument("--ssl-certfile", type=Path, default=None, help="PEM client certificate (mutual TLS)")
    kafka.add_argument("--ssl-keyfile", type=Path, default=None, help="PEM private key of --ssl-certfile")
    stream.add_argument(
        "--input",
        required=True,
        help="the stream (topic) to read; it and the three written to are four different streams",
    )
    stream.add_argument(
        "--output", required=True, help="the stream (topic) every enriched event is written to"
    )
    stream.add_argument(
        "--alerts", required=True, help="the stream (topic) the anomalies are also written to"
    )
    stream.add_argument(
        "--dead-letter", required=True, help="the stream (topic) for entries that are no event"
    )
    stream.add_argument("--group", required=True, help="the consumer group (made when missing)")
    stream.add_argument(
        "--consumer",
        default=None,
        help="this consumer's name (default: host and process id). Redis: its name in the group; a "
        "restarted consumer given the same name first re-reads what it held. Kafka: its client id",
    )
    stream.add_argument("--model", type=Path, default=None, help="a bundle directory (default: the registry)")
    stream.add_argument(
        "--alpha", type=_alpha, default=None, help="false-positive rate (default: the settings')"
    )
    stream.add_argument(
        "--batch-size",
        type=_batch_size,
        default=256,
        help=f"entries read at once (default 256, at most {BATCH_MOST:,})",
    )
    stream.add_argument(
        "--claim-idle-seconds",
        type=_claim_idle,
        default=None,
        help="Redis: claim entries another consumer has held unacknowledged this long (it died; default 60)",
    )
    stream.add_argument(
        "--max-len",
        type=_max_len,
        default=None,
        help="Redis: outputs trimmed to about this many entries (default 1,000,000; Kafka: the topics' retention)",
    )
    stream.add_argument(
        "--metrics-port", type=_port, default=0, help="serve Prometheus metrics on this port (default: none)"
    )
    stream.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        help="the address of the metrics port (default: 127.0.0.1; 0.0.0.0 in a container Prometheus scrapes)",
    )
    stream.add_argument("--config", type=Path, default=None, help=CONFIG_HELP)
    stream.set_defaults(handler=_stream)


BATCH_MOST = 100_000  # entries held (and their enriched copies) at once
REDIS_MOST = 2**63 - 1  # Redis's counts and milliseconds are signed 64-bit integers


def _batch_size(text: str) -> int:
    value = _positive(text)
    if value > BATCH_MOST:
        raise argparse.ArgumentTypeError(f"{text!r} is more than {BATCH_MOST:,} entries at once")
    return value


def _max_len(text: str) -> int:
    value = _positive(text)
    if value > REDIS_MOST:
        raise argparse.ArgumentTypeError(f"{text!r} is more than Redis can count ({REDIS_MOST:,})")
    return value


def _claim_idle(text: str) -> float:
    value = _seconds(text)
    if value * 1000 > REDIS_MOST:
        raise argparse.ArgumentTypeError(f"{text!r} is more seconds than Redis can count in milliseconds")
    return value


def _redis_url(text: str) -> str:
    from scorer.settings import redis_url

    try:
        return redis_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _bootstrap_servers(text: str) -> str:
    for server in text.split(","):
        host, colon, port = server.strip().rpartition(":")
        if not colon:  # a host alone: Kafka's port
            host, port = port, "9092"
        if not host or any(c.isspace() for c in host) or not port.isdigit() or not 0 < int(port) < 65536:
            raise argparse.ArgumentTypeError(
                f"{server.strip()!r} is not HOST:PORT (e.g. kafka:9092; several: b-1:9092,b-2:9092)"
            )
    return text


def _check_sources(args: argparse.Namespace) -> None:
    """The flags of the other source, a missing address, and stream names that cannot work: refused
    before the model loads."""
    if args.source == "kafka" and not args.bootstrap_servers:
        raise CliError("--source kafka needs --bootstrap-servers, e.g. 127.0.0.1:9092")
    other = REDIS_ONLY if args.source == "kafka" else KAFKA_ONLY
    given = [f"--{name.replace('_', '-')}" for name in other if getattr(args, name) is not None]
    if given:
        tls = " (Redis: a rediss:// URL for TLS)" if args.source == "redis" else ""
        raise CliError(f"{', '.join(given)}: not for --source {args.source}{tls}")
    if not args.group.strip():  # Kafka deprecates an empty group.id (KIP-289): a broker fails it later
        raise CliError("--group is empty: name the consumer group, e.g. --group ocsf-anomaly")
    names = {"--input": args.input, "--output": args.output, "--alerts": args.alerts}
    names["--dead-letter"] = args.dead_letter
    seen: dict[str, str] = {}
    for flag, name in names.items():
        if name in seen:
            raise CliError(
                f"{seen[name]} and {flag} both name {name!r}: each needs its own stream "
                "(the consumer would read back what it writes without end, or mix what it writes)"
            )
        seen[name] = flag
        if args.source == "kafka" and (not TOPIC.fullmatch(name) or name in (".", "..")):
            raise CliError(
                f"{flag} {name!r} is no Kafka topic name: up to 249 letters, digits, '.', '_' and '-'"
            )


def _stream(args: argparse.Namespace) -> int:
    _check_sources(args)
    if args.source == "kafka":  # before the model loads, which takes a while
        _require_extra("stream --source kafka", "kafka", "aiokafka")
    from scorer.registry import configure_mlflow
    from scorer.service.models import source_for
    from scorer.settings import Settings, stray_variables
    from scorer.threads import set_threads

    settings = Settings.load(args.config, model_dir=args.model, alpha=args.alpha)
    if args.source == "redis" and args.redis_url is None and settings.stream_redis_url is None:
        raise CliError(
            "--source redis needs --redis-url, e.g. redis://127.0.0.1:6379/0 (or "
            "OCSF_ANOMALY_STREAM_REDIS_URL, or stream_redis_url in --config)"
        )
    for line in stray_variables():
        _say(f"warning: {line}")
    security = _security(args, settings) if args.source == "kafka" else None
    if settings.model_dir is None:
        configure_mlflow()
    set_threads(1)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.source == "kafka":
        from scorer.stream.kafka import OncePer

        for handler in logging.getLogger().handlers:
            handler.addFilter(OncePer(30.0))
    consumer = args.consumer or f"{socket.gethostname()}-{os.getpid()}"
    _say(f"loading {settings.model_dir or f'the champion of {settings.model_name}'}")
    source = source_for(settings)
    return asyncio.run(_run(args, settings, source, consumer, security))


async def _run(
    args: argparse.Namespace,
    settings: Settings,
    model_source: ModelSource,
    consumer: str,
    security: KafkaSecurity | None,
) -> int:
    from prometheus_client import start_http_server

    from scorer.alerts import Alerter, AlertMetrics, config_from
    from scorer.stream.loop import Models, SourceFailed, StreamMetrics, consume, describe

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    models = Models(model_source, settings.model_poll_seconds, settings.alpha)
    loaded = await models.current()
    metrics = StreamMetrics()
    if args.metrics_port:
        try:
            start_http_server(args.metrics_port, addr=args.metrics_host, registry=metrics.registry)
        except OSError as exc:
            raise CliError(
                f"--metrics-port {args.metrics_port}: cannot listen on {args.metrics_host}: "
                f"{exc.strerror or exc} (name a free port, or leave the flag out)"
            ) from None
    alert_config = config_from(settings)
    alerter = Alerter(alert_config, AlertMetrics(metrics.registry)) if alert_config is not None else None
    if alerter is not None:
        await alerter.start()
    source = _source(args, settings, consumer, security)
    try:
        started = await _start_unless_stopped(source, stop)
    except Exception as exc:
        with contextlib.suppress(Exception):
            await source.close()
        if alerter is not None:
            await alerter.close()
        advice = source.advice(exc)
        raise CliError(
            f"could not start on {source.where}: {describe(exc)}" + (f" ({advice})" if advice else "")
        ) from None
    if not started:
        with contextlib.suppress(Exception):
            await source.close()
        if alerter is not None:
            await alerter.close()
        _say(f"stopped before {source.where} was joined: nothing was read")
        return 0
    try:
        _say(
            f"consuming {args.input} as {consumer} of {args.group} with {loaded.ref.source}; "
            "SIGTERM or Ctrl-C stops after the batch in hand"
        )
        acknowledged = await consume(
            source,
            models,
            alpha=settings.alpha,
            batch_size=args.batch_size,
            stop=stop,
            metrics=metrics,
            field=settings.anomaly_field,
            alerter=alerter,
        )
    except SourceFailed as exc:
        raise CliError(str(exc)) from None
    finally:
        await source.close()
        if alerter is not None:
            await alerter.close()
    if acknowledged:
        _say("stopped: every batch read was written and acknowledged")
    else:
        _say(
            f"stopped while {source.where} was out of reach: the batch in hand was not acknowledged and will be read again"
        )
    return 0


async def _start_unless_stopped(source: RedisStreams | KafkaTopics, stop: asyncio.Event) -> bool:
    """Start the source, unless a stop comes first (a broker that takes the connection and never
    answers holds a start for its request timeout): then the start is given up. Answers whether
    it started; raises what the start raised."""
    starting = asyncio.ensure_future(source.start())
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if not starting.done():
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await starting
        return False
    starting.result()
    return True


def _security(args: argparse.Namespace, settings: Settings) -> KafkaSecurity:
    from scorer.stream.kafka import KafkaSecurity

    security = KafkaSecurity(
        protocol=args.security_protocol,
        mechanism=args.sasl_mechanism,
        username=args.sasl_username,
        password=settings.kafka_password,
        ca_file=args.ssl_cafile,
        cert_file=args.ssl_certfile,
        key_file=args.ssl_keyfile,
    )
    problems = security.problems()
    if problems:
        raise CliError("; ".join(problems))
    if security.resolved_protocol == "SASL_PLAINTEXT" and security.mechanism == "PLAIN":
        _say("warning: SASL PLAIN over SASL_PLAINTEXT sends the password unencrypted; use SASL_SSL")
    return security


def _source(
    args: argparse.Namespace, settings: Settings, consumer: str, security: KafkaSecurity | None
) -> RedisStreams | KafkaTopics:
    names = {
        "input": args.input,
        "output": args.output,
        "alerts": args.alerts,
        "dead_letter": args.dead_letter,
    }
    if args.source == "kafka":
        from scorer.stream.kafka import KafkaTopics

        return KafkaTopics(
            args.bootstrap_servers,
            **names,
            group=args.group,
            entity_key=settings.entity_key,
            client_id=consumer,
            security=security,
        )
    from scorer.settings import masked_url
    from scorer.stream.redis_streams import RedisStreams, connect

    url, given_as = args.redis_url, "--redis-url"
    if url is None:  # kept off the command line
        url, given_as = settings.stream_redis_url, "OCSF_ANOMALY_STREAM_REDIS_URL or --config"
    return RedisStreams(
        connect(url),
        where=f"Redis at {masked_url(url)}",
        url_given_as=given_as,
        **names,
        group=args.group,
        consumer=consumer,
        **{name: getattr(args, name) for name in ("claim_idle_seconds", "max_len") if getattr(args, name)},
    )
