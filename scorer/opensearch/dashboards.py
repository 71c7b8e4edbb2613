"""OpenSearch Dashboards saved objects over the ``anomaly.*`` fields: what an analyst opens to see
what the ingest pipeline flagged, as one NDJSON file for ``POST /api/saved_objects/_import``
(``install --dashboards-url`` posts it; by hand: Dashboards Management → Saved objects → Import).

In it, with ids derived from ``Options.name`` so that importing again (with overwrite) replaces the
objects instead of adding copies, and titles that start with ``[<name>]``:

- an index pattern over the options' index patterns (comma-separated), time field ``time``;
- visualisations: scoring at a glance (scored, anomalous, failed), anomalies over time split by
  class, anomalies by class, anomalies by entity (source IP, user, host; one table each, as an
  event often lacks one of them), the distribution of ``anomaly.score`` (anomalous and normal
  documents stacked) and the fields the reasons name;
- a saved search of the anomalous documents, highest score first;
- a dashboard of them all.

Written for OpenSearch Dashboards 2.x (and 3.x: the saved-object format has not changed since
1.0), as read from its source: each object carries the ``migrationVersion`` of its type's latest
migration (visualization 7.10.0, search and dashboard 7.9.3, index-pattern 7.6.0), so the import
stores it as it is rather than running the old-format migrations on it; ``visState``,
``uiStateJSON``, ``panelsJSON`` and ``searchSourceJSON`` are JSON *strings*; a visualisation or
search names its index pattern through ``indexRefName`` and a reference, a dashboard its panels
through ``panelRefName`` (``panel_0`` …), as an export writes them. The index pattern holds no field
list (``fields: "[]"``): Dashboards reads the fields from the cluster the first time it is opened.
No Dashboards instance could run where this was written: tests/test_opensearch_dashboards.py checks
the file's structure, its references and its fields, not an import.

Fields: ``anomaly.*`` and ``time`` are mapped by the component template
(:func:`scorer.opensearch.definitions.component_template`); the OCSF fields are mapped dynamically,
strings as text with a ``.keyword`` subfield, so they are aggregated through ``<field>.keyword``
(numbers such as ``class_uid`` directly). A visualisation over an OCSF field that no document of the
index pattern has yet shows an error until one does.
"""

from __future__ import annotations

import json
from typing import Any

from scorer.opensearch.definitions import Options

# Each type at its latest migration in OpenSearch Dashboards' source (1.0 to 3.x): nothing to migrate.
MIGRATION_VERSIONS = {
    "index-pattern": "7.6.0",
    "visualization": "7.10.0",
    "search": "7.9.3",
    "dashboard": "7.9.3",
}
# The Dashboards version a panel says it was saved by, as an export writes its own; the dashboard
# app rewrites only panels of Kibana 6.x shape or version, and leaves this one as it is.
PANEL_VERSION = "2.14.0"
INDEX_REF = "kibanaSavedObjectMeta.searchSourceJSON.index"

TIME_FIELD = "time"
ANOMALOUS = "anomaly.is_anomaly:true"
# The OCSF fields that name who or what an event is about: (field, the id's suffix, what it is).
ENTITY_FIELDS = (
    ("src_endpoint.ip", "source-ip", "Source IP"),
    ("actor.user.name", "user", "User"),
    ("device.hostname", "host", "Host"),
)
SEARCH_COLUMNS = (
    "anomaly.score",
    "anomaly.p_value",
    "class_name",
    "src_endpoint.ip",
    "actor.user.name",
    "dst_endpoint.port",
    "anomaly.reasons",
)
# Number formats where the default (0,0.[000]) misleads: anomalies' p-values are small and would
# mostly show as 0, and a class id is a name, not a quantity ("4,001").
FIELD_FORMATS = {
    "anomaly.p_value": {"id": "number", "params": {"pattern": "0.[000000]"}},
    "class_uid": {"id": "number", "params": {"pattern": "0"}},
}
SCORE_INTERVAL = 0.5  # the score is a standardised log-distance: most documents lie within ±3


def _dumps(value: Any) -> str:
    """Compact JSON, as Dashboards writes its JSON-string attributes."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def index_pattern_id(options: Options) -> str:
    return f"{options.name}-index-pattern"


def dashboard_id(options: Options) -> str:
    return f"{options.name}-dashboard"


def search_id(options: Options) -> str:
    return f"{options.name}-anomalous-events"


def _title(options: Options, text: str) -> str:
    return f"[{options.name}] {text}"


def _search_source(query: str, **extra: Any) -> str:
    """A searchSourceJSON whose index pattern is the reference named ``INDEX_REF``."""
    return _dumps(
        {"query": {"query": query, "language": "kuery"}, "filter": [], **extra, "indexRefName": INDEX_REF}
    )


def _index_reference(options: Options) -> list[dict[str, str]]:
    return [{"name": INDEX_REF, "type": "index-pattern", "id": index_pattern_id(options)}]


def _agg(agg_id: str, agg_type: str, schema: str, **params: Any) -> dict[str, Any]:
    return {"id": agg_id, "enabled": True, "type": agg_type, "schema": schema, "params": params}


def _count(label: str) -> dict[str, Any]:
    return _agg("1", "count", "metric", customLabel=label)


def _max_score() -> dict[str, Any]:
    return _agg("2", "max", "metric", field="anomaly.score", customLabel="Highest score")


def _terms(
    agg_id: str, schema: str, field: str, size: int, label: str, *, missing: str | None = None
) -> dict[str, Any]:
    """The most frequent values of ``field`` by document count (the count agg is ``1``); with
    ``missing``, documents without the field get a bucket of that name."""
    return _agg(
        agg_id,
        "terms",
        schema,
        field=field,
        orderBy="1",
        order="desc",
        size=size,
        otherBucket=False,
        otherBucketLabel="Other",
        missingBucket=missing is not None,
        missingBucketLabel=missing or "Missing",
        customLabel=label,
    )


def _bar_params(vis_type: str, *, horizontal: bool = False, value_title: str = "Count") -> dict[str, Any]:
    """The params the editor saves for a vislib bar chart, stacked, counting documents."""
    category_position, value_position = ("left", "bottom") if horizontal else ("bottom", "left")
    return {
        "type": vis_type,
        "grid": {"categoryLines": False},
        "categoryAxes": [
            {
                "id": "CategoryAxis-1",
                "type": "category",
                "position": category_position,
                "show": True,
                "style": {},
                "scale": {"type": "linear"},
                "labels": {
                    "show": True,
                    "rotate": 0,
                    "filter": not horizontal,
                    "truncate": 200 if horizontal else 100,
                },
                "title": {},
            }
        ],
        "valueAxes": [
            {
                "id": "ValueAxis-1",
                "name": "BottomAxis-1" if horizontal else "LeftAxis-1",
                "type": "value",
                "position": value_position,
                "show": True,
                "style": {},
                "scale": {"type": "linear", "mode": "normal"},
                "labels": {"show": True, "rotate": 0, "filter": False, "truncate": 100},
                "title": {"text": value_title},
            }
        ],
        "seriesParams": [
            {
                "show": True,
                "type": "histogram",
                "mode": "stacked",
                "data": {"label": value_title, "id": "1"},
                "valueAxis": "ValueAxis-1",
                "drawLinesBetweenPoints": True,
                "lineWidth": 2,
                "showCircles": True,
            }
        ],
        "addTooltip": True,
        "addLegend": True,
        "legendPosition": "right",
        "times": [],
        "addTimeMarker": False,
        "labels": {"show": False},
        "thresholdLine": {"show": False, "value": 10, "width": 1, "style": "full", "color": "#E7664C"},
    }


TABLE_PARAMS: dict[str, Any] = {
    "perPage": 10,
    "showPartialRows": False,
    "showMetricsAtAllLevels": False,
    "sort": {"columnIndex": None, "direction": None},
    "showTotal": False,
    "totalFunc": "sum",
    "percentageCol": "",
}

METRIC_PARAMS: dict[str, Any] = {
    "addTooltip": True,
    "addLegend": False,
    "type": "metric",
    "metric": {
        "percentageMode": False,
        "useRanges": False,
        "colorSchema": "Green to Red",
        "metricColorMode": "None",
        "colorsRange": [{"from": 0, "to": 10000}],
        "labels": {"show": True},
        "invertColors": False,
        "style": {"bgFill": "#000", "bgColor": False, "labelColor": False, "subText": "", "fontSize": 36},
    },
}


def _visualization(
    options: Options,
    slug: str,
    title: str,
    description: str,
    vis_type: str,
    params: dict[str, Any],
    aggs: list[dict[str, Any]],
    query: str,
) -> dict[str, Any]:
    full_title = _title(options, title)
    return {
        "type": "visualization",
        "id": f"{options.name}-{slug}",
        "attributes": {
            "title": full_title,
            "description": description,
            "visState": _dumps({"title": full_title, "type": vis_type, "params": params, "aggs": aggs}),
            "uiStateJSON": "{}",
            "version": 1,
            "kibanaSavedObjectMeta": {"searchSourceJSON": _search_source(query)},
        },
        "references": _index_reference(options),
        "migrationVersion": {"visualization": MIGRATION_VERSIONS["visualization"]},
    }


def _visualizations(options: Options) -> list[dict[str, Any]]:
    """The dashboard's charts and tables, in the order of its panels."""

    def kql_filter(query: str, label: str) -> dict[str, Any]:
        return {"input": {"query": query, "language": "kuery"}, "label": label}

    entity_tables = [
        _visualization(
            options,
            f"anomalies-by-{slug}",
            f"Anomalies by {label}",
            f"The values of {field} with the most anomalous documents, and their highest score.",
            "table",
            TABLE_PARAMS,
            [_count("Anomalies"), _max_score(), _terms("3", "bucket", f"{field}.keyword", 10, label)],
            ANOMALOUS,
        )
        for field, slug, label in ENTITY_FIELDS
    ]
    return [
        _visualization(
            options,
            "scoring-summary",
            "Scoring at a glance",
            "Documents scored, flagged anomalous, and indexed unscored because scoring failed "
            "(anomaly.error says why).",
            "metric",
            METRIC_PARAMS,
            [
                _count("Documents"),
                _agg(
                    "2",
                    "filters",
                    "group",
                    filters=[
                        kql_filter("anomaly.score:*", "Scored"),
                        kql_filter(ANOMALOUS, "Anomalous"),
                        kql_filter("anomaly.error:*", "Not scored (anomaly.error)"),
                    ],
                ),
            ],
            "",
        ),
        _visualization(
            options,
            "anomalies-over-time",
            "Anomalies over time",
            "Anomalous documents over time, stacked by OCSF class (class_uid).",
            "histogram",
            _bar_params("histogram", value_title="Anomalies"),
            [
                _count("Anomalies"),
                _agg(
                    "2",
                    "date_histogram",
                    "segment",
                    field=TIME_FIELD,
                    useNormalizedOpenSearchInterval=True,
                    scaleMetricValues=False,
                    interval="auto",
                    drop_partials=False,
                    min_doc_count=1,
                    extended_bounds={},
                ),
                _terms("3", "group", "class_uid", 10, "Class (class_uid)"),
            ],
            ANOMALOUS,
        ),
        _visualization(
            options,
            "anomalies-by-class",
            "Anomalies by class",
            "Anomalous documents per OCSF class, with the class's name where the events carry one.",
            "table",
            TABLE_PARAMS,
            [
                _count("Anomalies"),
                _max_score(),
                _terms("3", "bucket", "class_uid", 20, "class_uid"),
                _terms("4", "bucket", "class_name.keyword", 1, "class_name", missing="(no class_name)"),
            ],
            ANOMALOUS,
        ),
        _visualization(
            options,
            "score-distribution",
            "Score distribution",
            "How anomaly.score is distributed over the scored documents, anomalous ones stacked apart: "
            "the flagged tail should stand clear of the bulk.",
            "histogram",
            _bar_params("histogram", value_title="Documents"),
            [
                _count("Documents"),
                _agg(
                    "2",
                    "histogram",
                    "segment",
                    field="anomaly.score",
                    interval=SCORE_INTERVAL,
                    min_doc_count=False,
                    has_extended_bounds=False,
                    extended_bounds={"min": "", "max": ""},
                    customLabel="anomaly.score",
                ),
                _terms("3", "group", "anomaly.is_anomaly", 2, "Anomalous"),
            ],
            "anomaly.score:*",
        ),
        _visualization(
            options,
            "top-reason-fields",
            "Top reasons",
            "The OCSF fields the reasons of anomalous documents name most often (anomaly.reason_fields).",
            "horizontal_bar",
            _bar_params("histogram", horizontal=True, value_title="Anomalies"),
            [_count("Anomalies"), _terms("2", "segment", "anomaly.reason_fields", 15, "Field")],
            ANOMALOUS,
        ),
        *entity_tables,
    ]


def _saved_search(options: Options) -> dict[str, Any]:
    return {
        "type": "search",
        "id": search_id(options),
        "attributes": {
            "title": _title(options, "Anomalous events"),
            "description": "OCSF documents the scorer flagged (anomaly.is_anomaly), highest score first.",
            "hits": 0,
            "columns": list(SEARCH_COLUMNS),
            "sort": [["anomaly.score", "desc"]],
            "version": 1,
            "kibanaSavedObjectMeta": {
                "searchSourceJSON": _search_source(ANOMALOUS, highlightAll=True, version=True)
            },
        },
        "references": _index_reference(options),
        "migrationVersion": {"search": MIGRATION_VERSIONS["search"]},
    }


# Where each panel sits on the dashboard's 48-column grid: (x, y, w, h), in the panels' order.
LAYOUT = (
    (0, 0, 12, 12),  # scoring at a glance
    (12, 0, 36, 12),  # anomalies over time
    (0, 12, 16, 15),  # by class
    (16, 12, 16, 15),  # score distribution
    (32, 12, 16, 15),  # top reasons
    (0, 27, 16, 15),  # by source IP
    (16, 27, 16, 15),  # by user
    (32, 27, 16, 15),  # by host
    (0, 42, 48, 20),  # the saved search
)


def _dashboard(options: Options, panels: list[dict[str, Any]]) -> dict[str, Any]:
    panels_json = []
    references = []
    for i, (panel, (x, y, w, h)) in enumerate(zip(panels, LAYOUT, strict=True)):
        index = str(i + 1)
        panels_json.append(
            {
                "version": PANEL_VERSION,
                "gridData": {"x": x, "y": y, "w": w, "h": h, "i": index},
                "panelIndex": index,
                "embeddableConfig": {},
                "panelRefName": f"panel_{i}",
            }
        )
        references.append({"name": f"panel_{i}", "type": panel["type"], "id": panel["id"]})
    return {
        "type": "dashboard",
        "id": dashboard_id(options),
        "attributes": {
            "title": _title(options, "OCSF anomalies"),
            "description": (
                "What ocsf-anomaly's ingest pipeline flagged in "
                f"{', '.join(options.index_patterns)}: when, in which classes, for whom, and why."
            ),
            "hits": 0,
            "panelsJSON": _dumps(panels_json),
            "optionsJSON": _dumps({"useMargins": True, "hidePanelTitles": False}),
            "version": 1,
            "timeRestore": False,
            "kibanaSavedObjectMeta": {
                "searchSourceJSON": _dumps({"query": {"query": "", "language": "kuery"}, "filter": []})
            },
        },
        "references": references,
        "migrationVersion": {"dashboard": MIGRATION_VERSIONS["dashboard"]},
    }


def saved_objects(options: Options) -> list[dict[str, Any]]:
    """Every saved object, each before the objects that refer to it."""
    index_pattern = {
        "type": "index-pattern",
        "id": index_pattern_id(options),
        "attributes": {
            "title": ",".join(options.index_patterns),
            "timeFieldName": TIME_FIELD,
            "fields": "[]",
            "fieldFormatMap": _dumps(FIELD_FORMATS),
        },
        "references": [],
        "migrationVersion": {"index-pattern": MIGRATION_VERSIONS["index-pattern"]},
    }
    panels = [*_visualizations(options), _saved_search(options)]
    return [index_pattern, *panels, _dashboard(options, panels)]


def ndjson(options: Options) -> bytes:
    """The saved-objects file (NDJSON) for ``options``' index patterns, as the import API takes it."""
    return "".join(_dumps(obj) + "\n" for obj in saved_objects(options)).encode()
