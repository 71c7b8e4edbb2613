"""OpenSearch: score every OCSF document at ingest through the service (an ML Commons remote
connector and the ``ml_inference`` ingest processor).

    definitions.py  the REST bodies, built from a few options
    installer.py    applies them to a cluster, idempotently, and removes them (opensearch-py)
    dashboards.py   OpenSearch Dashboards saved objects (NDJSON) over the anomaly.* fields
"""
