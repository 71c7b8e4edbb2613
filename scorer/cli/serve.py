"""``ocsf-anomaly serve`` (the HTTP service) and ``config show`` (the settings it would use)."""

from __future__ import annotations

import argparse
from pathlib import Path

from scorer.cli import CONFIG_HELP, PRECEDENCE, Commands, _existing, _say


def add_serve(commands: Commands) -> None:
    serve = commands.add_parser(
        "serve",
        help="serve a model over HTTP (POST /v1/score, /v1/enrich)",
        description=(
            "Serve the champion of a registered model (default ocsf-anomaly-demo, in the local registry under "
            "data/mlflow, or $OCSF_ANOMALY_HOME/mlflow; another by OCSF_ANOMALY_MODEL_NAME or model_name in --config) or a bundle "
            "directory: POST /v1/score and /v1/enrich take one OCSF event, a JSON array or NDJSON; GET "
            "/healthz, /readyz, /metrics, /v1/models, /openapi.json. A new champion or challenger is swapped "
            "in without a restart (polled, or POST /v1/models/reload). "
            f"{PRECEDENCE} `ocsf-anomaly config show` prints what serve would use without its flags."
        ),
        epilog="""\
examples:
  ocsf-anomaly serve                                         # the demo model's champion on 127.0.0.1:8080
  OCSF_ANOMALY_MODEL_NAME=netflow ocsf-anomaly serve --port 8081 --workers 2
  ocsf-anomaly serve --model models/m1                       # a bundle directory, no registry
  OCSF_ANOMALY_API_TOKEN=... ocsf-anomaly serve --host 0.0.0.0 --config /etc/ocsf-anomaly.toml
""",
    )
    serve.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default 8080)")
    serve.add_argument(
        "--model",
        "-m",
        type=Path,
        default=None,
        help="serve this bundle directory instead of the registry's champion",
    )
    serve.add_argument(
        "--workers",
        "-w",
        type=int,
        default=None,
        help="serving processes sharing the port (default: one per core; each loads the model)",
    )
    serve.add_argument("--config", type=_existing, default=None, help=CONFIG_HELP)
    serve.set_defaults(handler=_serve)


def add_config(commands: Commands) -> None:
    config = commands.add_parser("config", help="settings", description="Inspect the service's settings.")
    config_commands = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    show = config_commands.add_parser(
        "show",
        help="print the resolved settings, secrets masked",
        description=f"What `serve` would use before its own flags. {PRECEDENCE}",
        epilog="""\
examples:
  ocsf-anomaly config show
  OCSF_ANOMALY_WORKERS=2 ocsf-anomaly config show --config /etc/ocsf-anomaly.toml
""",
    )
    show.add_argument("--config", type=_existing, default=None, help=CONFIG_HELP)
    show.set_defaults(handler=_config)


def _serve(args: argparse.Namespace) -> int:
    from scorer.service.workers import serve
    from scorer.settings import Settings, service_url, stray_variables

    settings = Settings.load(
        args.config, host=args.host, port=args.port, model_dir=args.model, workers=args.workers
    )
    for line in stray_variables():
        _say(f"warning: {line}")
    https = settings.tls_cert_file is not None
    url = service_url(settings)
    token = ' -H "Authorization: Bearer $OCSF_ANOMALY_API_TOKEN"' if settings.api_token else ""
    if (settings.api_token or settings.admin_token) and not https and not settings.loopback_only:
        _say(
            f"warning: bearer tokens will cross the network to {settings.host} in clear text: set "
            "OCSF_ANOMALY_TLS_CERT_FILE and OCSF_ANOMALY_TLS_KEY_FILE, or terminate TLS in front"
        )
    what = settings.model_dir or f"the champion of {settings.model_name}"
    processes = f" in {settings.workers} processes" if settings.workers > 1 else ""
    message = (
        f"serving {what} on {url}{processes}; try:\n"
        f"  curl -s{token} -H 'Content-Type: application/json' {url}/v1/score "
        '-d \'{"class_uid": 4001, "dst_endpoint": {"ip": "203.0.113.9", "port": 4444}, '
        '"traffic": {"bytes_out": 912345678}}\''
    )
    # said once every serving process has loaded and verified its model: a bad bundle fails before it
    return serve(settings, lambda: _say(message))


def _config(args: argparse.Namespace) -> int:
    import json

    from scorer.settings import Settings, masked, stray_variables

    print(json.dumps(masked(Settings.load(args.config)), indent=1))
    for line in stray_variables():
        _say(f"warning: {line}")
    return 0
