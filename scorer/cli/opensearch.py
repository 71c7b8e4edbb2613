"""``ocsf-anomaly opensearch render | install | uninstall``: score every OCSF document at ingest in
OpenSearch through the service (scorer/opensearch; integrations/opensearch/README.md)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from scorer.cli import CliError, Commands, _alpha, _count, _positive, _require_extra, _say
from scorer.opensearch import AUTH_VARIABLE, TOKEN_VARIABLE

EXAMPLES = """\
examples:
  ocsf-anomaly opensearch render                              # the bodies, for applying by hand
  ocsf-anomaly opensearch render --output-dir defs/ --scorer-url http://scorer.internal:8080
  export OCSF_ANOMALY_OPENSEARCH_AUTH=admin:PASSWORD OCSF_ANOMALY_API_TOKEN=TOKEN   # or --auth, --scorer-token
  ocsf-anomaly opensearch install --opensearch-url https://localhost:9200 \\
      --scorer-url http://10.0.0.5:8080 --dashboards-url http://localhost:5601
  ocsf-anomaly opensearch uninstall --opensearch-url https://localhost:9200
"""


def add_commands(commands: Commands) -> None:
    group = commands.add_parser(
        "opensearch",
        help="score OCSF documents at ingest in OpenSearch (2.14+)",
        description=(
            "Score every OCSF document at ingest in OpenSearch 2.14 or later: an ML Commons remote "
            "connector to this service's POST /v1/integrations/opensearch, a remote model, an ingest "
            "pipeline with the ml_inference processor writing anomaly.*, and an index template that "
            "maps those fields and makes the pipeline the default of your OCSF indices."
        ),
        epilog=EXAMPLES,
    )
    actions = group.add_subparsers(dest="opensearch_command", required=True, metavar="ACTION")
    render = actions.add_parser(
        "render",
        help="print (or write) the REST bodies install would send",
        description=(
            "Print the body of every call install makes (steps 0-4), then a _simulate call that tests "
            "the pipeline (step 5, to run by hand: install does not), in order, each as bare JSON after a "
            "'# N. what: METHOD path' line; ids that only the cluster knows appear as <connector_id>, "
            "<model_group_id> and <model_id>. With --output-dir, one file per call instead."
        ),
        epilog=EXAMPLES,
    )
    _definition_options(render)
    render.add_argument(
        "--output-dir", type=Path, default=None, help="write one NN-step.json file per call into this folder"
    )
    render.set_defaults(handler=_render)

    install = actions.add_parser(
        "install",
        help="apply the definitions to a cluster (idempotent)",
        description=(
            "Apply the cluster settings, the connector, the model group and the deployed remote model, "
            "the ingest pipeline and the index templates to a cluster, and the dashboards with "
            "--dashboards-url. Re-running with the same options changes nothing; changed options "
            "update what they change. Needs opensearch-py: pip install 'ocsf-anomaly[opensearch]'."
        ),
        epilog=EXAMPLES,
    )
    _cluster_options(install)
    _definition_options(install)
    install.add_argument(
        "--check-scorer",
        action=argparse.BooleanOptionalAction,
        default=True,
        help=(
            "before writing to the cluster, post one sample event to the scorer from this machine as "
            "the connector will (same URL, --alpha and token), and stop if it refuses them: an alpha "
            "below the serving model's floor, a wrong token, a URL that is not the scorer's. A scorer "
            "this machine cannot reach (the cluster may reach a name this machine cannot resolve) or "
            "that answers 5xx is only warned about. --no-check-scorer skips it, e.g. to install with "
            "the token's placeholder and set the token later (default: check)"
        ),
    )
    install.set_defaults(handler=_install)

    uninstall = actions.add_parser(
        "uninstall",
        help="remove everything install made",
        description=(
            "Remove the pipeline, the templates, the model, the model group and the connector that "
            "install made under --name, undo its cluster settings, and delete its dashboards with "
            "--dashboards-url. Indices and their documents are left as they are."
        ),
        epilog=EXAMPLES,
    )
    _cluster_options(uninstall)
    _definition_options(uninstall)
    uninstall.set_defaults(handler=_uninstall)


def _definition_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scorer-url",
        default="http://127.0.0.1:8080",
        help="the scoring service as the OpenSearch nodes reach it, without a path (default %(default)s)",
    )
    parser.add_argument(
        "--scorer-token",
        default=None,
        help=(
            "the service's API token, kept as the connector's encrypted credential (install's default: "
            f"${TOKEN_VARIABLE}, the variable the service reads it from, so that it need not be on a "
            "command line; render prints a placeholder unless this flag gives it); without one the "
            "connector carries a placeholder (see the README to set it)"
        ),
    )
    parser.add_argument(
        "--name",
        default="ocsf-anomaly",
        help="name of the connector, model group, model, pipeline and templates (default %(default)s)",
    )
    parser.add_argument(
        "--pipeline-name",
        default=None,
        help="the ingest pipeline's name, if not --name's (the index template makes it the default)",
    )
    parser.add_argument(
        "--index-pattern",
        action="append",
        dest="index_patterns",
        default=None,
        metavar="PATTERN",
        help="indices whose documents are scored (repeatable; default ocsf-*)",
    )
    parser.add_argument(
        "--event-field",
        default="$",
        help="the document field that holds the OCSF event; $ (the default) is the whole document",
    )
    parser.add_argument(
        "--alpha",
        type=_alpha,
        default=None,
        help="false-positive rate of the verdicts (default: the service's)",
    )
    parser.add_argument(
        "--read-timeout",
        type=_positive,
        default=10,
        help="seconds the cluster waits for a verdict (default 10)",
    )
    parser.add_argument(
        "--retries",
        type=_count,
        default=2,
        help="times a failed call is retried before the document is tagged (default 2)",
    )
    parser.add_argument(
        "--private-ip",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=(
            "allow the connector to reach a private or loopback address (OpenSearch 2.15+); default: when "
            "the scorer URL's host looks private"
        ),
    )


def _cluster_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--opensearch-url", required=True, help="the cluster's REST URL, e.g. https://localhost:9200"
    )
    parser.add_argument(
        "--auth",
        default=None,
        metavar="USER:PASSWORD",
        help=f"HTTP basic authentication (default: ${AUTH_VARIABLE}, kept off the command line so)",
    )
    parser.add_argument(
        "--ca-certs", default=None, metavar="FILE", help="CA bundle that signed the cluster's certificate"
    )
    parser.add_argument(
        "--insecure", action="store_true", help="do not verify the cluster's TLS certificate (a test cluster)"
    )
    parser.add_argument(
        "--dashboards-url",
        default=None,
        help="OpenSearch Dashboards, e.g. http://localhost:5601: import (or delete) the saved objects too",
    )


def _options(args: argparse.Namespace, *, token_from_environment: bool = False) -> Any:
    from scorer.opensearch.definitions import Options

    token = args.scorer_token
    if token is None and token_from_environment:
        token = os.environ.get(TOKEN_VARIABLE) or None  # set empty counts as unset
    try:
        return Options(
            scorer_url=args.scorer_url,
            scorer_token=token,
            name=args.name,
            pipeline_name=args.pipeline_name,
            index_patterns=tuple(args.index_patterns or ("ocsf-*",)),
            event_field=args.event_field,
            alpha=args.alpha,
            read_timeout=args.read_timeout,
            max_retry_times=args.retries,
            private_ip=args.private_ip,
        )
    except ValueError as exc:
        raise CliError(str(exc)) from None


def _render(args: argparse.Namespace) -> int:
    from scorer.opensearch.definitions import steps
    from scorer.service.schema import EXAMPLE_EVENT

    calls = steps(_options(args), sample=EXAMPLE_EVENT)
    if args.output_dir is None:
        for call in calls:
            sys.stdout.write(f"# {call.title}: {call.method} {call.path}\n{_pretty(call.body)}\n")
        return 0
    args.output_dir.mkdir(parents=True, exist_ok=True)
    # given the token, the connector's file holds it: readable by its owner alone (as .env is)
    mode = 0o600 if args.scorer_token is not None else 0o666  # the latter less the umask
    for call in calls:
        path = args.output_dir / call.filename
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with open(descriptor, "w", encoding="utf-8") as handle:
            if mode == 0o600:
                os.fchmod(descriptor, mode)  # a file already there keeps its mode through O_CREAT
            handle.write(_pretty(call.body))
        _say(f"{call.method} {call.path}: {path}")
    return 0


def _pretty(body: Any) -> str:
    return json.dumps(body, indent=2, ensure_ascii=False) + "\n"


def _connection(args: argparse.Namespace) -> dict[str, Any]:
    auth = None
    given = args.auth if args.auth is not None else os.environ.get(AUTH_VARIABLE)  # as the token
    if given:
        user, colon, password = given.partition(":")
        if not colon:
            raise CliError(f"--auth (or ${AUTH_VARIABLE}) is USER:PASSWORD")
        auth = (user, password)
    return {
        "auth": auth,
        "verify_tls": not args.insecure,
        "ca_certs": args.ca_certs,
        "dashboards_url": args.dashboards_url,
        "say": _say,
    }


def _install(args: argparse.Namespace) -> int:
    _require_extra("opensearch install", "opensearch", "opensearchpy")
    from scorer.opensearch.installer import SCORER_CHECK, InstallError, install

    said: list[str] = []

    def say(line: str) -> None:
        if not line.startswith(f"{SCORER_CHECK}:"):  # the check of the scorer writes nothing
            said.append(line)
        _say(line)

    try:
        ids = install(
            args.opensearch_url,
            _options(args, token_from_environment=True),
            **{**_connection(args), "say": say},
            check_scorer=args.check_scorer,
        )
    except InstallError:
        if said:  # steps were done before the one that failed: say what to do with them
            _say(
                "the install stopped after the steps above, which stay in place: fix what the error "
                "below says and run this install again (it goes on from what is there), or undo them "
                "with `ocsf-anomaly opensearch uninstall` and the same options"
            )
        raise
    _say(f"installed: {', '.join(f'{k} {v}' for k, v in ids.items())}")
    return 0


def _uninstall(args: argparse.Namespace) -> int:
    _require_extra("opensearch uninstall", "opensearch", "opensearchpy")
    from scorer.opensearch.installer import uninstall

    uninstall(args.opensearch_url, _options(args), **_connection(args))
    _say("uninstalled")
    return 0
