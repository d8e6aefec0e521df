"""Metalink 4 (RFC 5854) documents from manifests.

Metalink's piece hashes are plain SHA-256 digests of each piece, not BEP 52
merkle roots, so they need one pass over the file: :func:`piece_hashes` does it
in bounded memory, and callers cache the result per manifest digest. Whole-file
hashes use the IANA names (``sha-256``, ``sha-512``); SHA3-256 and BLAKE2b have
no IANA textual name that clients such as aria2 understand, so they are left out.
"""

from __future__ import annotations

import hashlib
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass

from webseed import __version__
from webseed.errors import IntegrityError
from webseed.integrity.merkle import chunk_digest
from webseed.manifest import Manifest

NS = "urn:ietf:params:xml:ns:metalink"
MEDIA_TYPE = "application/metalink4+xml"
_IANA = {"sha256": "sha-256", "sha512": "sha-512"}
# Characters XML 1.0 cannot carry at all (not even escaped); ElementTree writes them
# anyway and the document becomes ill-formed, so they are dropped from free text.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(text: str) -> str:
    return _NOT_XML.sub("", text)


@dataclass(frozen=True)
class MirrorRef:
    """One download location: a repository base URL, its ISO 3166 country, its priority."""

    base: str
    location: str | None = None
    priority: int | None = None


def piece_hashes(file: str | os.PathLike[str], manifest: Manifest) -> list[str]:
    """Plain SHA-256 of each piece of ``file``, one piece in memory at a time.

    Each piece is first checked against the manifest's chunk digest, so a file
    changed behind its manifest never gets piece hashes (:class:`IntegrityError`).
    """
    out = []
    with open(file, "rb", buffering=0) as f:
        for index in range(manifest.chunk_count):
            start, end = manifest.chunk_range(index)
            piece = f.read(end - start)
            if chunk_digest(piece, manifest.chunk_size).hex() != manifest.chunks[index]:
                raise IntegrityError(f"{manifest.path}: chunk {index} does not match its manifest")
            out.append(hashlib.sha256(piece).hexdigest())
    return out


def metalink_xml(
    manifest: Manifest,
    mirrors: Sequence[MirrorRef],
    pieces: Sequence[str] | None = None,
) -> bytes:
    """A Metalink 4 document for ``manifest`` downloadable from ``mirrors``."""
    ET.register_namespace("", NS)
    root = ET.Element(f"{{{NS}}}metalink")
    ET.SubElement(root, f"{{{NS}}}generator").text = f"webseed/{__version__}"
    file_el = ET.SubElement(root, f"{{{NS}}}file", name=manifest.path.rsplit("/", 1)[-1])
    ET.SubElement(file_el, f"{{{NS}}}size").text = str(manifest.size)
    if manifest.version:
        ET.SubElement(file_el, f"{{{NS}}}version").text = _xml_text(manifest.version)
    for name, value in sorted(manifest.digests.items()):
        if name in _IANA:
            ET.SubElement(file_el, f"{{{NS}}}hash", type=_IANA[name]).text = value
    if pieces is not None:
        if len(pieces) != manifest.chunk_count:
            raise ValueError("one piece hash per chunk is needed")
        pieces_el = ET.SubElement(
            file_el, f"{{{NS}}}pieces", length=str(manifest.chunk_size), type="sha-256"
        )
        for digest in pieces:
            ET.SubElement(pieces_el, f"{{{NS}}}hash").text = digest
    for mirror in mirrors:
        attrs = {}
        if mirror.location:
            attrs["location"] = mirror.location.lower()
        if mirror.priority is not None:
            attrs["priority"] = str(max(1, min(999999, mirror.priority)))
        url = ET.SubElement(file_el, f"{{{NS}}}url", attrs)
        url.text = _xml_text(f"{mirror.base.rstrip('/')}/{manifest.path}")
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root) + b"\n"
