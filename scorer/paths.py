"""Where the project's files live, found from the repository root, never the working directory."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

SHARED_DATA_ENV = "OCSF_ANOMALY_SHARED_DATA"


def shared_data_dir() -> Path:
    """The third-party evaluation data: ``$OCSF_ANOMALY_SHARED_DATA`` or ``../shared/data`` beside the repo."""
    override = os.environ.get(SHARED_DATA_ENV)
    return Path(override) if override else REPO_ROOT.parent / "shared" / "data"


def state_dir() -> Path:
    """Runtime state (demo data, models, registry): the gitignored ``data/`` folder at the repo root."""
    return REPO_ROOT / "data"
