"""Debian repository metadata (``dists/<suite>/Release`` and ``Packages``) for the .debs in a tree.

The .debs stay at their repository paths (``pool/...`` by convention); this
writes ``dists/<suite>/<component>/binary-<arch>/Packages{,.gz}`` and an
unsigned ``dists/<suite>/Release`` with SHA-256 sums. apt then needs
``[trusted=yes]`` in its sources entry, or the operator signs Release with
their own archive key: the webseed signature covers the .debs themselves.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import os
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path

from webseed.ecosystem import GENERATED_MARKER
from webseed.errors import WebseedError

log = logging.getLogger("webseed.ecosystem")
DISTS_DIR = "dists"
#: Control archives larger than this are refused (a .deb's control.tar is a few KiB).
MAX_CONTROL = 16 * 1024 * 1024


class DebError(WebseedError):
    """A file is not a readable .deb package."""


@dataclass(frozen=True)
class DebFile:
    """A .deb in the repository, with its checksums."""

    path: str
    sha256: str
    size: int


def _ar_members(data: bytes) -> Iterable[tuple[str, bytes]]:
    if not data.startswith(b"!<arch>\n"):
        raise DebError("not an ar archive")
    pos = 8
    while pos + 60 <= len(data):
        header = data[pos : pos + 60]
        name = header[:16].decode("ascii", "replace").strip().rstrip("/")
        try:
            size = int(header[48:58].decode().strip())
        except ValueError:
            raise DebError("bad ar member size") from None
        start = pos + 60
        if start + size > len(data):
            raise DebError("truncated ar member")
        yield name, data[start : start + size]
        pos = start + size + (size & 1)


def _untar_control(name: str, blob: bytes) -> bytes:
    if name.endswith(".zst"):
        import zstandard

        blob = zstandard.ZstdDecompressor().decompress(blob, max_output_size=MAX_CONTROL)
        mode = "r:"
    else:
        found = {"control.tar.gz": "r:gz", "control.tar.xz": "r:xz", "control.tar": "r:"}.get(name)
        if found is None:
            raise DebError(f"unsupported control member {name}")
        mode = found
    with tarfile.open(fileobj=io.BytesIO(blob), mode=mode) as tar:  # type: ignore[call-overload]
        for member in tar:
            if member.name in ("./control", "control") and member.isfile():
                if member.size > MAX_CONTROL:
                    raise DebError("control file too large")
                extracted = tar.extractfile(member)
                assert extracted is not None
                return bytes(extracted.read())
    raise DebError("no control file in the control archive")


def read_control(file: str | os.PathLike[str]) -> str:
    """The ``control`` paragraph of a .deb (reads only the small control member)."""
    with open(file, "rb") as f:
        head = f.read(MAX_CONTROL)
    for name, blob in _ar_members(head):
        if name.startswith("control.tar"):
            try:
                text = _untar_control(name, blob).decode("utf-8")
            except (tarfile.TarError, OSError, EOFError, UnicodeDecodeError) as exc:
                raise DebError(f"unreadable control archive: {exc}") from None
            return text.strip("\n")
    raise DebError("no control archive in the .deb")


def _field(control: str, key: str) -> str | None:
    for line in control.splitlines():
        if line.lower().startswith(key.lower() + ":"):
            return line.split(":", 1)[1].strip()
    return None


def write_apt_metadata(
    repo_dir: str | os.PathLike[str],
    debs: Iterable[DebFile],
    *,
    suite: str = "stable",
    component: str = "main",
) -> int:
    """Write ``dists/`` for the .debs; returns how many packages were listed."""
    repo = Path(repo_dir)
    stanzas: dict[str, list[str]] = {}
    count = 0
    for deb in sorted(debs, key=lambda d: d.path):
        try:
            control = read_control(repo / deb.path)
        except DebError as exc:
            # A file named .deb that is not one stays an artifact; apt just does not list it.
            log.warning("not listing %s in dists/: %s", deb.path, exc)
            continue
        arch = _field(control, "Architecture") or "all"
        stanza = f"{control}\nFilename: {deb.path}\nSize: {deb.size}\nSHA256: {deb.sha256}\n"
        stanzas.setdefault(arch, []).append(stanza)
        count += 1
    if not count:
        return 0
    arches = sorted(a for a in stanzas if a != "all") or ["amd64"]
    base = repo / DISTS_DIR / suite
    base.mkdir(parents=True, exist_ok=True)
    (repo / DISTS_DIR / GENERATED_MARKER).write_text("written by webseed publish\n")
    sums: list[str] = []
    for arch in arches:
        text = "\n".join(stanzas.get(arch, []) + stanzas.get("all", [])).encode()
        rel_dir = f"{component}/binary-{arch}"
        (base / rel_dir).mkdir(parents=True, exist_ok=True)
        for name, blob in (("Packages", text), ("Packages.gz", gzip.compress(text, mtime=0))):
            (base / rel_dir / name).write_bytes(blob)
            sums.append(f" {hashlib.sha256(blob).hexdigest()} {len(blob)} {rel_dir}/{name}")
    release = (
        f"Origin: webseed\nLabel: webseed\nSuite: {suite}\nCodename: {suite}\n"
        f"Date: {formatdate(usegmt=True)}\nArchitectures: {' '.join(arches)}\n"
        f"Components: {component}\nDescription: published with webseed\nSHA256:\n"
        + "\n".join(sums)
        + "\n"
    )
    (base / "Release").write_text(release)
    return count
