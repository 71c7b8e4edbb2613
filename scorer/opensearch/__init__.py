"""OpenSearch: score every OCSF document at ingest through the service (an ML Commons remote
connector and the ``ml_inference`` ingest processor).

    definitions.py  the REST bodies, built from a few options
    installer.py    applies them to a cluster, idempotently, and removes them (opensearch-py)
    dashboards.py   OpenSearch Dashboards saved objects (NDJSON) over the anomaly.* fields
"""

# Where the command line takes the two secrets from: a flag, else the environment (a command line
# is readable by every user of the machine: ps, /proc/PID/cmdline; a container's, from its host).
# Kept here, beside nothing that takes long to import, for the command line and the installer's errors.
TOKEN_VARIABLE = "OCSF_ANOMALY_API_TOKEN"  # noqa: S105 - a variable's name: the one the service reads
AUTH_VARIABLE = "OCSF_ANOMALY_OPENSEARCH_AUTH"
TOKEN_GIVEN = f"--scorer-token (or ${TOKEN_VARIABLE})"
AUTH_GIVEN = f"--auth USER:PASSWORD (or ${AUTH_VARIABLE})"
