"""Repository paths: validation and safe resolution under a repository root.

A repository path is a relative POSIX path such as ``releases/foo-1.2.iso``.
Anything that could name a file outside the repository, or that different
systems would read differently, is refused with :class:`UnsafePathError`.
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

from webseed.errors import UnsafePathError

MAX_PATH_LENGTH = 1024
RESERVED_PREFIX = ".well-known"


def check_repo_path(path: str) -> str:
    """Return ``path`` if it is a safe repository path, else raise :class:`UnsafePathError`."""
    if not isinstance(path, str) or not path:
        raise UnsafePathError("repository path is empty")
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_LENGTH:
        raise UnsafePathError(f"repository path longer than {MAX_PATH_LENGTH} bytes")
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in path):
        raise UnsafePathError(f"repository path has a control character: {path!r}")
    if "\\" in path:
        raise UnsafePathError(f"repository path has a backslash: {path!r}")
    if path.startswith("/"):
        raise UnsafePathError(f"repository path is absolute: {path!r}")
    if len(path) >= 2 and path[1] == ":":
        raise UnsafePathError(f"repository path has a drive letter: {path!r}")
    parts = path.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise UnsafePathError(f"repository path has an empty, '.' or '..' segment: {path!r}")
    if parts[0] == RESERVED_PREFIX:
        raise UnsafePathError(f"repository path is under the reserved {RESERVED_PREFIX}/")
    return path


def resolve_under(root: str | os.PathLike[str], path: str) -> Path:
    """The file for repository ``path`` under ``root``, refusing any escape (symlinks too)."""
    check_repo_path(path)
    base = Path(root).resolve()
    target = (base / path).resolve()
    if target != base and base not in target.parents:
        raise UnsafePathError(f"repository path leaves the repository: {path!r}")
    return target
