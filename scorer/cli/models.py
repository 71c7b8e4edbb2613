"""``ocsf-anomaly models list``, ``promote`` and ``rollback``: the registered versions of a model and
the aliases (champion, challenger) that say which serve."""

from __future__ import annotations

import argparse
import time
from typing import Any

from scorer.cli import CONFIG_HELP, CliError, Commands, _existing, _registry, _say


def add_commands(commands: Commands) -> None:
    models = commands.add_parser(
        "models",
        help="list, promote and roll back registered model versions",
        description=(
            "The registry (OCSF_ANOMALY_REGISTRY_URI or MLFLOW_TRACKING_URI; default: the local store under "
            "data/mlflow, or $OCSF_ANOMALY_HOME/mlflow when that is set). The version with the alias "
            "`champion` serves; the one with `challenger` is compared with it (A/B split or shadow, see "
            "`serve`). A running service picks up a change within model_poll_seconds, or at once on POST "
            "/v1/models/reload."
        ),
    )
    model_commands = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    listing = model_commands.add_parser(
        "list",
        help="the versions of a model, newest first",
        description="The versions of a model.",
        epilog="""\
examples:
  ocsf-anomaly models list                       # ocsf-anomaly-demo's
  ocsf-anomaly models list --name netflow --json
""",
    )
    promote = model_commands.add_parser(
        "promote",
        help="give an alias (champion by default) to a version",
        description=(
            "Give ALIAS to VERSION; the version that held it is remembered for `rollback`. The champion and "
            "the challenger are never one version: a champion given the challenger's version takes its "
            "place (the challenger alias is removed, the comparison stops), and the challenger is never "
            "given the champion's version."
        ),
        epilog="""\
examples:
  ocsf-anomaly models promote 3 --name netflow                       # version 3 serves
  ocsf-anomaly models promote 4 --name netflow --alias challenger    # compared with it (A/B or shadow)
""",
    )
    promote.add_argument("version", metavar="VERSION", help="version number, as `models list` shows")
    rollback = model_commands.add_parser(
        "rollback",
        help="give an alias back to the version that held it before",
        description=(
            "Give ALIAS back to its previous holder. A challenger with none, or whose previous holder is the "
            "champion now, is removed (the comparison stops); a champion given back the challenger's version "
            "takes its place, as with `promote`."
        ),
        epilog="""\
examples:
  ocsf-anomaly models rollback --name netflow                        # the champion before serves again
  ocsf-anomaly models rollback --name netflow --alias challenger
""",
    )
    for command in (listing, promote, rollback):
        command.add_argument(
            "--name", default=None, help="registered model (default: model_name, ocsf-anomaly-demo)"
        )
        command.add_argument("--config", type=_existing, default=None, help=CONFIG_HELP)
    for command in (promote, rollback):
        command.add_argument(
            "--alias",
            choices=("champion", "challenger"),
            default="champion",
            help="the alias to move (default champion)",
        )
    listing.add_argument("--json", action="store_true", help="print JSON")
    models.set_defaults(handler=_models)


def _models(args: argparse.Namespace) -> int:
    import json

    from scorer.settings import Settings

    settings = Settings.load(args.config)
    if args.name is not None and not args.name.strip():  # `--name "$MODEL"` with MODEL unset: not the default
        raise CliError("--name is empty: name a registered model (`ocsf-anomaly models list --name NAME`)")
    name = args.name if args.name is not None else settings.model_name
    registry = _registry(args.config)
    if args.models_command == "list":
        versions = registry.versions(name)
        rows: list[dict[str, Any]] = [
            {
                "version": v.version,
                "aliases": list(v.aliases),
                "bundle_version": v.bundle_version,
                "registered": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(v.created_ms / 1000)),
                "metrics": registry.metrics(v),
            }
            for v in versions
        ]
        if args.json:
            print(json.dumps({"name": name, "registry": registry.uri, "versions": rows}, indent=1))
            return 0
        print(f"{name} in {registry.uri}")
        print(f"{'version':>7}  {'aliases':<20}  {'bundle':<12}  {'registered (UTC)':<19}    fit s  recall@k")
        for row in rows:
            metrics = row["metrics"]
            seconds = metrics.get("fit_seconds")
            recall = metrics.get("index_embedding_recall_at_k")
            print(
                f"{row['version']:>7}  {','.join(row['aliases']) or '-':<20}  {row['bundle_version']:<12}  "
                f"{row['registered']:<19}  {f'{seconds:.0f}' if seconds is not None else '-':>7}  "
                f"{f'{recall:.3f}' if recall is not None else '-':>8}"
            )
        return 0
    later = (
        f"a running service swaps it in within {settings.model_poll_seconds:g} s or on POST /v1/models/reload"
        if settings.model_poll_seconds
        else "a running service swaps it in on POST /v1/models/reload"
    )
    move = (
        registry.promote(name, args.version, args.alias)
        if args.models_command == "promote"
        else registry.rollback(name, args.alias)
    )
    was = f"version {move.before.version}" if move.before is not None else "none"
    now = f"version {move.after.version}" if move.after is not None else "removed"
    if was == now:  # promoted to what it holds: nothing for a service to swap
        _say(f"{name}@{args.alias}: already {now}; nothing changed")
    else:
        _say(f"{name}@{args.alias}: {was} → {now}; {later}")
    if move.retired is not None:
        _say(
            f"{name}@challenger: version {move.retired.version} → removed, as it is the champion now "
            "(the comparison stops; promote another version with --alias challenger to start one)"
        )
    return 0
