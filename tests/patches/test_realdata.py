"""Round trips on real consecutive releases (small ones; the big ones are in bench/patches)."""

from __future__ import annotations

from pathlib import Path

import pytest

from patches.apply import apply_patch
from patches.create import create_patch
from tests.patches.conftest import apt_pair, pip_pair


def _check(old: Path, new: Path, tmp_path: Path, minimum: float) -> None:
    patch, out = tmp_path / "p.wsp", tmp_path / "out"
    info = create_patch(old, new, patch)
    apply_patch(old, patch, out)
    assert out.read_bytes() == new.read_bytes()
    reduction = 1 - info.size / new.stat().st_size
    assert info.transform == "archive"
    assert reduction >= minimum, f"{new.name}: only {reduction:.1%}"


def test_pure_python_wheel(tmp_path: Path) -> None:
    _check(*pip_pair("idna==3.7", "idna==3.8", True, "idna-*.whl"), tmp_path, 0.9)


def test_sdist_targz(tmp_path: Path) -> None:
    _check(*pip_pair("idna==3.7", "idna==3.8", False, "idna-*.tar.gz"), tmp_path, 0.95)


@pytest.mark.slow
def test_deb(tmp_path: Path) -> None:
    old, new = apt_pair("libexpat1")
    _check(old, new, tmp_path, 0.3)
