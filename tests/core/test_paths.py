from __future__ import annotations

import os
from pathlib import Path

import pytest

from webseed.errors import UnsafePathError
from webseed.paths import check_repo_path, resolve_under

HOSTILE = [
    "",
    "../../etc/passwd",
    "a/../../b",
    "/etc/passwd",
    "a//b",
    "./a",
    "a/./b",
    "a/..",
    "a\\..\\b",
    "C:/windows",
    "a\x00b",
    "a\nb",
    ".well-known/webseed/metadata/root.json",
    "x" * 2000,
]


@pytest.mark.parametrize("path", HOSTILE)
def test_hostile_paths_refused(path: str) -> None:
    with pytest.raises(UnsafePathError):
        check_repo_path(path)


def test_good_paths() -> None:
    assert check_repo_path("releases/foo-1.2.iso") == "releases/foo-1.2.iso"
    assert check_repo_path("pool/main/é/x.deb")
    assert check_repo_path("a/.hidden")


def test_resolve_refuses_symlink_escape(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (tmp_path / "secret").write_text("s")
    os.symlink(tmp_path / "secret", repo / "link")
    with pytest.raises(UnsafePathError):
        resolve_under(repo, "link")
    (repo / "ok").write_text("x")
    assert resolve_under(repo, "ok") == (repo / "ok").resolve()
