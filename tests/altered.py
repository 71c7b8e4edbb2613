"""A bundle altered after it was written, as every command must refuse it."""

from __future__ import annotations

import shutil
from pathlib import Path


def altered_bundle(bundle: Path, copy: Path) -> Path:
    """A copy of ``bundle`` at ``copy`` whose weights.npz has its last byte flipped: refused by the
    digests, with weights.npz named."""
    shutil.copytree(bundle, copy)
    weights = copy / "weights.npz"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    return copy
