"""Fixtures for fault tests: a small tmpfs that can fill up and then grow."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.prereq import missing


class SmallDisk:
    """A tmpfs of a few MiB mounted at ``path``; :meth:`grow` frees space (remount bigger)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def grow(self, size: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(self.path)], check=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[object]:
    """Mount ``size`` of tmpfs (root only; skipped with the reason otherwise)."""
    mounted: list[Path] = []

    def make(size: str) -> SmallDisk:
        if os.geteuid() != 0 or shutil.which("mount") is None:
            missing("disk-full tests mount a small tmpfs: needs root and mount(8)")
        mnt = tmp_path / f"disk{len(mounted)}"
        mnt.mkdir()
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
            capture_output=True,
            text=True,
        )
        if proc.returncode:
            missing(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
        mounted.append(mnt)
        return SmallDisk(mnt)

    yield make
    for mnt in mounted:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
