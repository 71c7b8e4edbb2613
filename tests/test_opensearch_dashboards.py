"""The OpenSearch Dashboards saved objects: a file the import API takes (every line an object, every
JSON-string attribute JSON, every reference resolved inside the file), over fields that exist the way
the visualisations use them (``anomaly.*`` and ``time`` as the component template maps them, OCSF
strings through ``.keyword`` as OpenSearch maps them dynamically, checked against demo and real
vendor events), the committed file as rendered, and ids that follow ``--name``.

No Dashboards instance can run here: the format is the one read from OpenSearch Dashboards' source
(sample data sets, saved-object migrations, an export fixture).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scorer.opensearch import dashboards, definitions
from scorer.opensearch.definitions import Options
from scorer.paths import shared_data_dir

Event = dict[str, Any]

COMMITTED = Path(__file__).resolve().parent.parent / "integrations/opensearch/dashboards/ocsf-anomaly.ndjson"
# The attributes Dashboards stores as JSON text, by where they sit in an object's attributes.
JSON_STRINGS = (
    ("visState",),
    ("uiStateJSON",),
    ("panelsJSON",),
    ("optionsJSON",),
    ("fields",),
    ("fieldFormatMap",),
    ("kibanaSavedObjectMeta", "searchSourceJSON"),
)
GRID_COLUMNS = 48  # the dashboard grid's width
KQL_FIELD = re.compile(r"([A-Za-z_@][\w.@]*)\s*:")


def _objects(options: Options) -> list[dict[str, Any]]:
    """The objects as the import API reads them: one JSON document a line."""
    text = dashboards.ndjson(options).decode()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def _json_string(obj: dict[str, Any], path: tuple[str, ...]) -> Any:
    """The parsed JSON-string attribute at ``path`` (None when the object has none)."""
    value: Any = obj["attributes"]
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    assert isinstance(value, str), f"{obj['id']}: {'.'.join(path)} must be a JSON string"
    return json.loads(value)


def _mapped_fields() -> dict[str, str]:
    """Every field the component template maps, with subfields, → its type."""
    fields: dict[str, str] = {}

    def walk(properties: dict[str, Any], prefix: str) -> None:
        for name, mapping in properties.items():
            path = prefix + name
            if "properties" in mapping:
                walk(mapping["properties"], path + ".")
                continue
            fields[path] = mapping["type"]
            for sub, sub_mapping in mapping.get("fields", {}).items():
                fields[f"{path}.{sub}"] = sub_mapping["type"]

    walk(definitions.component_template(Options())["template"]["mappings"]["properties"], "")
    return fields


def _aggs(obj: dict[str, Any]) -> list[dict[str, Any]]:
    vis_state = _json_string(obj, ("visState",))
    return list(vis_state["aggs"]) if vis_state else []


def _queries(obj: dict[str, Any]) -> Iterator[str]:
    """Every KQL query of an object: its search source's and those of filters aggregations."""
    source = _json_string(obj, ("kibanaSavedObjectMeta", "searchSourceJSON"))
    if source and source.get("query"):
        assert source["query"]["language"] == "kuery"
        yield source["query"]["query"]
    for agg in _aggs(obj):
        for kql in agg["params"].get("filters", []):
            assert kql["input"]["language"] == "kuery"
            yield kql["input"]["query"]


def _aggregated(objects: list[dict[str, Any]]) -> set[str]:
    return {agg["params"]["field"] for obj in objects for agg in _aggs(obj) if "field" in agg["params"]}


def _used_fields(objects: list[dict[str, Any]]) -> set[str]:
    """Every field aggregated, queried, shown as a column or sorted on."""
    fields = _aggregated(objects)
    for obj in objects:
        for query in _queries(obj):
            fields |= set(KQL_FIELD.findall(query))
        fields |= set(obj["attributes"].get("columns", []))
        fields |= {field for field, _ in obj["attributes"].get("sort", [])}
    return fields


def test_every_line_is_a_saved_object_and_its_json_strings_parse() -> None:
    objects = _objects(Options())
    assert {obj["type"] for obj in objects} == {"index-pattern", "visualization", "search", "dashboard"}
    for obj in objects:
        assert set(obj) == {"type", "id", "attributes", "references", "migrationVersion"}, obj["id"]
        # at the type's latest migration: the import stores the object as it is
        assert obj["migrationVersion"] == {obj["type"]: dashboards.MIGRATION_VERSIONS[obj["type"]]}
        assert obj["attributes"]["title"], obj["id"]
        for path in JSON_STRINGS:
            _json_string(obj, path)  # raises unless a string that parses
        vis_state = _json_string(obj, ("visState",))
        if vis_state is not None:
            assert vis_state["title"] == obj["attributes"]["title"]
            ids = [agg["id"] for agg in vis_state["aggs"]]
            assert len(ids) == len(set(ids)), f"{obj['id']}: aggregation ids repeat"
            assert any(agg["schema"] == "metric" for agg in vis_state["aggs"]), obj["id"]


def test_ids_are_unique() -> None:
    ids = [obj["id"] for obj in _objects(Options())]
    assert len(ids) == len(set(ids))


def test_every_reference_resolves_within_the_file_and_every_named_reference_exists() -> None:
    objects = _objects(Options())
    present = {(obj["type"], obj["id"]) for obj in objects}
    (index_pattern,) = [obj for obj in objects if obj["type"] == "index-pattern"]
    for obj in objects:
        references = {ref["name"]: (ref["type"], ref["id"]) for ref in obj["references"]}
        assert len(references) == len(obj["references"]), f"{obj['id']}: reference names repeat"
        for target in references.values():
            assert target in present, f"{obj['id']} refers to {target}, which the file lacks"
        source = _json_string(obj, ("kibanaSavedObjectMeta", "searchSourceJSON"))
        named = set()
        if obj["type"] in ("visualization", "search"):
            assert "index" not in source, "an index pattern is named by indexRefName, not by id"
            named.add(source["indexRefName"])
            assert references[source["indexRefName"]] == ("index-pattern", index_pattern["id"])
        for panel in _json_string(obj, ("panelsJSON",)) or []:
            named.add(panel["panelRefName"])
        assert named == set(references), f"{obj['id']}: references and the names that use them differ"


def test_the_dashboard_lays_out_every_visualisation_and_the_search_without_overlap() -> None:
    objects = _objects(Options())
    (dashboard,) = [obj for obj in objects if obj["type"] == "dashboard"]
    panels = _json_string(dashboard, ("panelsJSON",))
    refs = {ref["name"]: (ref["type"], ref["id"]) for ref in dashboard["references"]}
    assert [panel["panelRefName"] for panel in panels] == [f"panel_{i}" for i in range(len(panels))]
    shown = {refs[panel["panelRefName"]] for panel in panels}
    assert shown == {
        (obj["type"], obj["id"]) for obj in objects if obj["type"] in ("visualization", "search")
    }
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridData"]
        assert grid["i"] == panel["panelIndex"]
        assert min(grid["x"], grid["y"]) >= 0
        assert min(grid["w"], grid["h"]) > 0
        assert grid["x"] + grid["w"] <= GRID_COLUMNS, f"panel {grid['i']} runs off the grid"
        area = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not area & cells, f"panel {grid['i']} overlaps another"
        cells |= area


def test_anomaly_fields_and_time_are_fields_the_component_template_maps() -> None:
    objects = _objects(Options())
    mapped = _mapped_fields()
    used = _used_fields(objects)
    anomaly = {field for field in used if field.startswith("anomaly.")}
    assert {"anomaly.is_anomaly", "anomaly.score", "anomaly.reason_fields", "anomaly.error"} <= anomaly
    assert anomaly - mapped.keys() == set(), "fields the template does not map"
    # aggregations need doc values: no text field (reasons, error) is aggregated but by its keyword
    assert {f for f in _aggregated(objects) if f.startswith("anomaly.") and mapped[f] == "text"} == set()

    (index_pattern,) = [obj for obj in objects if obj["type"] == "index-pattern"]
    time_field = index_pattern["attributes"]["timeFieldName"]
    assert mapped[time_field] == "date"
    histograms = [agg for obj in objects for agg in _aggs(obj) if agg["type"] == "date_histogram"]
    assert histograms
    assert {agg["params"]["field"] for agg in histograms} == {time_field}
    formatted = json.loads(index_pattern["attributes"]["fieldFormatMap"])
    assert {f for f in formatted if f.startswith("anomaly.")} <= mapped.keys()


def _values(events: list[Event], dotted: str) -> list[Any]:
    values = []
    for event in events:
        value: Any = event
        for part in dotted.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None:
            values.append(value)
    return values


def _vendor_events() -> list[Event]:
    path = shared_data_dir() / "ocsf_events" / "events.jsonl"
    if not path.exists():
        pytest.skip(
            f"real vendor OCSF events not found in {shared_data_dir()} (set OCSF_ANOMALY_SHARED_DATA)"
        )
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("source", ["demo", "vendor"])
def test_ocsf_fields_are_aggregated_the_way_opensearch_maps_them_dynamically(
    source: str, demo_events: list[Event]
) -> None:
    """Strings are text with a .keyword subfield (a terms aggregation on the text fails), numbers
    long: each OCSF field a visualisation aggregates must occur in the events, and be a string when
    (and only when) it is aggregated by .keyword."""
    events = demo_events if source == "demo" else _vendor_events()
    ocsf = {f for f in _aggregated(_objects(Options())) if not f.startswith("anomaly.") and f != "time"}
    assert {"class_uid", "class_name.keyword", "src_endpoint.ip.keyword", "actor.user.name.keyword"} <= ocsf
    for field in ocsf:
        base = field.removesuffix(".keyword")
        values = _values(events, base)
        assert values, f"no {source} event has {base}"
        strings = {isinstance(value, str) for value in values}
        if field.endswith(".keyword"):
            assert strings == {True}, f"{base} is aggregated by .keyword but is not always a string"
        else:
            assert strings == {False}, f"{base} holds strings: aggregate {base}.keyword"
            assert all(isinstance(value, int | float) for value in values), f"{base} is not a number"


def test_the_search_and_the_charts_look_at_anomalous_documents() -> None:
    objects = {obj["id"]: obj for obj in _objects(Options())}
    search = objects[dashboards.search_id(Options())]
    assert list(_queries(search)) == ["anomaly.is_anomaly:true"]
    assert {"anomaly.score", "anomaly.reasons", "class_name", "src_endpoint.ip"} <= set(
        search["attributes"]["columns"]
    )
    # the charts of anomalies filter on the verdict; the distribution and the summary see all
    anomalous = {oid for oid, obj in objects.items() if "anomaly.is_anomaly:true" in _queries(obj)}
    name = Options().name
    assert {
        f"{name}-anomalies-over-time",
        f"{name}-top-reason-fields",
        f"{name}-anomalies-by-user",
    } <= anomalous
    assert f"{name}-score-distribution" not in anomalous


def test_the_committed_file_is_what_ndjson_renders() -> None:
    assert COMMITTED.read_bytes() == dashboards.ndjson(Options()), (
        "regenerate: python -c 'import sys; from scorer.opensearch.dashboards import ndjson; "
        "from scorer.opensearch.definitions import Options; sys.stdout.buffer.write(ndjson(Options()))' "
        f"> {COMMITTED.relative_to(COMMITTED.parents[3])}"
    )


def test_name_and_index_patterns_change_ids_titles_and_references_together() -> None:
    default = _objects(Options())
    options = Options(name="soc.ocsf", index_patterns=("ocsf-network-*", "ocsf-auth-*"))
    objects = _objects(options)
    assert dashboards.ndjson(options) == dashboards.ndjson(
        Options(name="soc.ocsf", index_patterns=("ocsf-network-*", "ocsf-auth-*"))
    ), "ids must be stable for a re-import to overwrite"

    assert [obj["type"] for obj in objects] == [obj["type"] for obj in default]
    assert {obj["id"] for obj in objects}.isdisjoint({obj["id"] for obj in default})
    ids = {obj["id"] for obj in objects}
    assert all(oid.startswith("soc.ocsf-") for oid in ids)
    assert all(ref["id"] in ids for obj in objects for ref in obj["references"])
    assert all(
        obj["attributes"]["title"].startswith("[soc.ocsf] ")
        for obj in objects
        if obj["type"] != "index-pattern"
    )
    (index_pattern,) = [obj for obj in objects if obj["type"] == "index-pattern"]
    assert index_pattern["id"] == dashboards.index_pattern_id(options)
    assert index_pattern["attributes"]["title"] == "ocsf-network-*,ocsf-auth-*"
    (dashboard,) = [obj for obj in objects if obj["type"] == "dashboard"]
    assert dashboard["id"] == dashboards.dashboard_id(options)

    # the index patterns alone change the title, not the ids
    patterns_only = _objects(Options(index_patterns=("logs-ocsf-*",)))
    assert [obj["id"] for obj in patterns_only] == [obj["id"] for obj in default]
    assert patterns_only[0]["attributes"]["title"] == "logs-ocsf-*"
    assert default[0]["attributes"]["title"] == "ocsf-*"
