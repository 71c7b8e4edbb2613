"""Where the project's files live: runtime state under the working directory (or
``$OCSF_ANOMALY_HOME``), third-party evaluation data beside the repository."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

SHARED_DATA_ENV = "OCSF_ANOMALY_SHARED_DATA"
HOME_ENV = "OCSF_ANOMALY_HOME"


def shared_data_dir() -> Path:
    """The third-party evaluation data: ``$OCSF_ANOMALY_SHARED_DATA`` or ``../shared/data`` beside the repo."""
    override = os.environ.get(SHARED_DATA_ENV)
    return Path(override) if override else REPO_ROOT.parent / "shared" / "data"


def state_dir() -> Path:
    """Runtime state (demo data, the local model registry): ``$OCSF_ANOMALY_HOME`` if set, else
    ``data/`` under the working directory (a checkout's gitignored ``data/`` when run from it, as
    `make run` does). Absolute, as the registry's SQLite URI needs."""
    return Path(os.environ.get(HOME_ENV) or "data").resolve()


def default_registry_uri() -> str:
    """The embedded MLflow store: ``sqlite:///<state>/mlflow/mlflow.db``."""
    return f"sqlite:///{state_dir() / 'mlflow' / 'mlflow.db'}"
