"""A small file system to fill, for what a full disk does (a tmpfs: mounting it takes root)."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def small_file_system(path: Path, size: str, inodes: int | None = None) -> Iterator[Path]:
    """A tmpfs of ``size`` (and ``inodes`` files) at ``path`` (skipped where it cannot be mounted: it
    takes root)."""
    path.mkdir()
    options = f"size={size},mode=1777" + (f",nr_inodes={inodes}" if inodes else "")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(
            f"a small file system to fill needs mounting a tmpfs, which took root: {mounted.stderr.strip()}"
        )
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=True)


def fill(directory: Path) -> None:
    """Write a file into ``directory`` until its file system has no room left."""
    name = next(f"filler-{n}" for n in range(1_000) if not (directory / f"filler-{n}").exists())
    with (directory / name).open("wb") as filler, contextlib.suppress(OSError):  # ENOSPC: full
        while True:
            filler.write(b"\0" * 65536)
            filler.flush()


def fill_inodes(directory: Path) -> None:
    """Make empty files in ``directory`` until its file system can make no more."""
    with contextlib.suppress(OSError):  # ENOSPC: no inode left
        for n in range(1_000_000):
            (directory / f"empty-{n}").touch()
