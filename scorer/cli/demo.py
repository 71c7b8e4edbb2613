"""``ocsf-anomaly demo`` (what ``make run`` runs first): synthetic events, a demo model trained and
registered once, the demo file scored and what was found printed."""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from scorer.cli import Commands, _registry, _say


def add_commands(commands: Commands) -> None:
    demo = commands.add_parser(
        "demo",
        help="train and register a demo model on synthetic events (if none yet) and score a demo file",
        description=(
            "Generate seeded synthetic OCSF events with injected anomalies under data/demo/; if the registry has "
            "no champion of ocsf-anomaly-demo, train one and register it; score data/demo/demo.jsonl with it and "
            "print what was found. Under $OCSF_ANOMALY_HOME/demo/ instead when that is set."
        ),
        epilog="""\
examples:
  ocsf-anomaly demo && ocsf-anomaly serve          # what `make run` runs
  OCSF_ANOMALY_HOME=/tmp/oa ocsf-anomaly demo      # files and registry elsewhere
""",
    )
    demo.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    from collections import Counter

    import orjson

    from scorer.batch import score_file
    from scorer.demo import write_demo_files
    from scorer.detector import Detector
    from scorer.evaluate import read_labels_and_types
    from scorer.io import load_events
    from scorer.paths import state_dir
    from scorer.registry import RegistryError
    from scorer.settings import DEMO_MODEL
    from scorer.threads import set_threads

    demo_dir = state_dir() / "demo"
    files = write_demo_files(demo_dir)
    registry = _registry(None, create=True)
    try:
        champion = registry.alias(DEMO_MODEL, "champion")
    except RegistryError:  # no such model yet
        champion = None
    if champion is not None:
        _say(f"using {champion.uri}, the champion in {registry.uri}")
    else:
        _say(
            f"training the demo model on {files.train} (about 20-60 s on 2 cores, longer when other work crowds them) ..."
        )
        set_threads(os.cpu_count() or 1)
        started = time.perf_counter()
        detector = Detector.fit(load_events([files.train]), log=_say)
        with tempfile.TemporaryDirectory(prefix="ocsf-anomaly-demo-") as scratch:
            path = detector.save(Path(scratch) / "bundle", name=DEMO_MODEL)
            champion, _ = registry.register(path, DEMO_MODEL)
        _say(f"trained in {time.perf_counter() - started:.0f} s; registered {champion.uri} in {registry.uri}")
    scored = demo_dir / "scored.jsonl"
    with registry.fetched(champion) as model_dir:
        stats = score_file(model_dir, files.demo, scored, progress=False)
    labels, kinds = read_labels_and_types(files.labels)
    flagged = []
    with scored.open("rb") as handle:
        for line, raw in enumerate(handle, start=1):
            event = orjson.loads(raw)
            if event["anomaly"].get("is_anomaly"):
                flagged.append((line, event))
    hits = sum(labels.get(line, 0) for line, _ in flagged)
    attacks = sum(labels.values())
    print(f"\nscored {stats.lines:,} demo events → {scored}")
    print(f"{len(flagged)} flagged at α = 0.01; {hits} of them injected anomalies ({hits}/{attacks} found)")
    if kinds is not None:  # which kinds of anomaly the model finds, and which it misses
        injected = Counter(kinds[line] for line, label in labels.items() if label)
        found = Counter(kinds[line] for line, _ in flagged if labels.get(line))
        print(
            "found, by kind: " + ", ".join(f"{kind} {found[kind]}/{n}" for kind, n in injected.most_common())
        )
    print()
    flagged.sort(key=lambda item: item[1]["anomaly"]["p_value"])
    for line, event in flagged[:10]:
        anomaly = event["anomaly"]
        why = "; ".join(f"{r['field']}={r['value']!r} (typical {r['typical']!r})" for r in anomaly["reasons"])
        print(f"line {line:>5}  class {event.get('class_uid')}  p={anomaly['p_value']:.4f}  {why}")
    if len(flagged) > 10:
        print(f"... and {len(flagged) - 10} more in {scored}")
    print(
        f"its latest day as an HTML page: `make report`, or `ocsf-anomaly report {scored} --output report.html`"
    )
    return 0
