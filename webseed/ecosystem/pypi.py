"""A PEP 503 simple index (and PEP 691 JSON) for the wheels and sdists in a repository."""

from __future__ import annotations

import html
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from webseed.ecosystem import GENERATED_MARKER

SIMPLE_DIR = "simple"
JSON_MEDIA_TYPE = "application/vnd.pypi.simple.v1+json"
_SDIST = (".tar.gz", ".zip", ".tar.bz2")


@dataclass(frozen=True)
class DistFile:
    """A distribution file in the repository."""

    path: str
    sha256: str
    size: int


def normalize(name: str) -> str:
    """PEP 503 name normalisation."""
    return re.sub(r"[-_.]+", "-", name).lower()


def project_of(filename: str) -> str | None:
    """The normalised project a wheel or sdist file name belongs to, else ``None``."""
    if filename.endswith(".whl"):
        parts = filename[:-4].split("-")
        return normalize(parts[0]) if len(parts) in (5, 6) else None
    for ext in _SDIST:
        if filename.endswith(ext):
            stem = filename[: -len(ext)]
            name, sep, version = stem.rpartition("-")
            return normalize(name) if sep and name and version[:1].isdigit() else None
    return None


def simple_pages(files: Iterable[DistFile]) -> dict[str, bytes]:
    """Relative path → content of every page of the index (HTML and JSON)."""
    projects: dict[str, list[DistFile]] = {}
    for f in files:
        project = project_of(f.path.rsplit("/", 1)[-1])
        if project:
            projects.setdefault(project, []).append(f)
    pages: dict[str, bytes] = {}
    links = "".join(f'<a href="{p}/">{p}</a>\n' for p in sorted(projects))
    pages[f"{SIMPLE_DIR}/index.html"] = _html("Simple index", links)
    pages[f"{SIMPLE_DIR}/index.json"] = json.dumps(
        {"meta": {"api-version": "1.0"}, "projects": [{"name": p} for p in sorted(projects)]},
        sort_keys=True,
    ).encode()
    for project, dists in sorted(projects.items()):
        dists.sort(key=lambda d: d.path)
        # Relative links, so the same page works from every mirror and peer.
        anchors = "".join(
            f'<a href="../../{html.escape(d.path)}#sha256={d.sha256}">'
            f"{html.escape(d.path.rsplit('/', 1)[-1])}</a><br/>\n"
            for d in dists
        )
        pages[f"{SIMPLE_DIR}/{project}/index.html"] = _html(f"Links for {project}", anchors)
        pages[f"{SIMPLE_DIR}/{project}/index.json"] = json.dumps(
            {
                "meta": {"api-version": "1.0"},
                "name": project,
                "files": [
                    {
                        "filename": d.path.rsplit("/", 1)[-1],
                        "url": f"../../{d.path}",
                        "hashes": {"sha256": d.sha256},
                        "size": d.size,
                    }
                    for d in dists
                ],
            },
            sort_keys=True,
        ).encode()
    return pages


def _html(title: str, body: str) -> bytes:
    return (
        '<!DOCTYPE html>\n<html><head><meta name="pypi:repository-version" content="1.0">'
        f"<title>{html.escape(title)}</title></head><body>\n{body}</body></html>\n"
    ).encode()


def write_simple_index(repo_dir: str | os.PathLike[str], files: Iterable[DistFile]) -> int:
    """Write the index under ``REPO/simple/``; returns the number of projects (0: nothing)."""
    pages = simple_pages(files)
    count = len(pages) // 2 - 1
    if count <= 0:
        return 0
    root = Path(repo_dir) / SIMPLE_DIR
    root.mkdir(parents=True, exist_ok=True)
    (root / GENERATED_MARKER).write_text("written by webseed publish; not an artifact\n")
    for rel, data in pages.items():
        target = Path(repo_dir) / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, target)
    return count
