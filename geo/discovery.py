"""Mirror discovery: user mirror lists, Metalink 4 files, the signed index, peers.

Every parser here takes untrusted bytes. They are bounded in size and count, and
the XML parser refuses any document type declaration, so entity expansion
("billion laughs", external entities) cannot happen at all: a Metalink file
never needs a DTD.
"""

from __future__ import annotations

import json
import xml.parsers.expat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from xml.etree.ElementTree import Element, TreeBuilder

from geo.errors import MirrorListError
from geo.mirror import Mirror

MAX_LIST_BYTES = 16 * 1024 * 1024
MAX_MIRRORS = 100_000
MAX_XML_ELEMENTS = 200_000
METALINK_NS = "urn:ietf:params:xml:ns:metalink"


def _check_size(data: bytes | str) -> bytes:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if len(raw) > MAX_LIST_BYTES:
        raise MirrorListError(f"mirror list larger than {MAX_LIST_BYTES} bytes")
    return raw


def parse_mirror_list(data: bytes | str) -> list[Mirror]:
    """Parse a user mirror list: JSON or plain text.

    JSON: a list of URLs or of mirror records (``{"url", "country", "lat",
    "lon", "capacity", "protocols", "priority"}``), or ``{"mirrors": [...]}``.
    Text: one mirror per line, ``URL [COUNTRY] [priority=N]``; ``#`` starts a
    comment. Order is kept: a list's own order becomes the priority when none
    is given, so ``curl``-style "first is preferred" lists rank as written.
    """
    raw = _check_size(data)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MirrorListError("mirror list is not UTF-8") from exc
    stripped = text.lstrip()
    if stripped.startswith(("[", "{")):
        mirrors = _parse_json_list(stripped)
    else:
        mirrors = _parse_text_list(text)
    return _bounded(mirrors)


def _parse_json_list(text: str) -> list[Mirror]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MirrorListError(f"mirror list is not valid JSON: {exc}") from exc
    if isinstance(doc, dict):
        doc = doc.get("mirrors")
    if not isinstance(doc, list):
        raise MirrorListError("JSON mirror list must be a list or {'mirrors': [...]}")
    out = []
    for pos, item in enumerate(doc, start=1):
        if isinstance(item, str):
            out.append(Mirror(url=item, priority=pos, source="list"))
        elif isinstance(item, Mapping):
            record = dict(item)
            record.setdefault("priority", pos)
            out.append(Mirror.from_dict(record, source="list"))
        else:
            raise MirrorListError(f"mirror list entry {pos} is neither a URL nor an object")
    return out


def _parse_text_list(text: str) -> list[Mirror]:
    out: list[Mirror] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        url, *rest = line.split()
        country = None
        priority = len(out) + 1
        for word in rest:
            if word.startswith("priority="):
                try:
                    priority = int(word.removeprefix("priority="))
                except ValueError as exc:
                    raise MirrorListError(f"line {lineno}: bad priority {word!r}") from exc
            elif len(word) == 2 and word.isalpha():
                country = word
            else:
                raise MirrorListError(f"line {lineno}: unexpected field {word!r}")
        out.append(Mirror(url=url, country=country, priority=priority, source="list"))
    return out


def _bounded(mirrors: list[Mirror]) -> list[Mirror]:
    if len(mirrors) > MAX_MIRRORS:
        raise MirrorListError(f"more than {MAX_MIRRORS} mirrors listed")
    return mirrors


# --------------------------------------------------------------------------- Metalink


@dataclass(frozen=True)
class MetalinkFile:
    """One ``<file>`` of a Metalink 4 document."""

    name: str
    size: int | None
    hashes: dict[str, str] = field(default_factory=dict)
    mirrors: tuple[Mirror, ...] = ()


def _safe_xml(data: bytes) -> Element:
    """Parse XML with expat, refusing DTDs (hence every entity declaration)."""
    builder = TreeBuilder()
    parser = xml.parsers.expat.ParserCreate(namespace_separator="}")
    count = 0

    def refuse_dtd(*_args: object) -> None:
        raise MirrorListError("Metalink with a document type declaration refused")

    def start(tag: str, attrs: dict[str, str]) -> None:
        nonlocal count
        count += 1
        if count > MAX_XML_ELEMENTS:
            raise MirrorListError(f"Metalink with more than {MAX_XML_ELEMENTS} elements")
        # expat gives "ns}local"; ElementTree's convention is "{ns}local".
        builder.start("{" + tag if "}" in tag else tag, attrs)

    def end(tag: str) -> None:
        builder.end("{" + tag if "}" in tag else tag)

    parser.StartDoctypeDeclHandler = refuse_dtd
    parser.EntityDeclHandler = refuse_dtd
    parser.ExternalEntityRefHandler = refuse_dtd  # type: ignore[assignment]
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(data, True)
        return builder.close()
    except xml.parsers.expat.ExpatError as exc:
        raise MirrorListError(f"Metalink is not well-formed XML: {exc}") from exc


def parse_metalink(data: bytes | str) -> list[MetalinkFile]:
    """Parse a Metalink 4 (RFC 5854) document into its files and their mirrors.

    ``<url location="de" priority="1">`` becomes a :class:`Mirror` with that
    country and priority. Only http(s) URLs are kept (ftp, torrents and
    ``<metaurl>`` are ignored: the engine speaks HTTP).
    """
    root = _safe_xml(_check_size(data))
    ns = "{" + METALINK_NS + "}"
    if root.tag != ns + "metalink":
        raise MirrorListError(f"not a Metalink 4 document (root element {root.tag!r})")
    files = []
    for fel in root.findall(ns + "file"):
        name = fel.get("name")
        if not name:
            raise MirrorListError("Metalink <file> without a name")
        size_el = fel.find(ns + "size")
        size = None
        if size_el is not None:
            try:
                size = int((size_el.text or "").strip())
            except ValueError as exc:
                raise MirrorListError(f"{name}: bad <size>") from exc
            if size < 0:
                raise MirrorListError(f"{name}: negative <size>")
        hashes = {
            (h.get("type") or "").lower(): (h.text or "").strip().lower()
            for h in fel.findall(ns + "hash")
        }
        mirrors = []
        for uel in fel.findall(ns + "url"):
            url = (uel.text or "").strip()
            if not url.lower().startswith(("http://", "https://")):
                continue
            location = uel.get("location")
            prio = uel.get("priority")
            try:
                priority = int(prio) if prio is not None else None
            except ValueError as exc:
                raise MirrorListError(f"{name}: bad priority {prio!r}") from exc
            mirrors.append(
                Mirror(
                    url=url,
                    country=location if location and len(location) == 2 else None,
                    priority=priority,
                    source="metalink",
                    file_url=True,
                )
            )
        files.append(MetalinkFile(name=name, size=size, hashes=hashes, mirrors=tuple(mirrors)))
    if not files:
        raise MirrorListError("Metalink has no <file>")
    return files


# --------------------------------------------------------------------------- index, peers


def mirrors_from_index(records: Iterable[Mapping[str, Any]]) -> list[Mirror]:
    """Mirrors listed in the signed repository index (dict form, see :meth:`Mirror.from_dict`)."""
    return _bounded([Mirror.from_dict(r, source="index") for r in records])


def mirror_from_peer(announcement: Mapping[str, Any]) -> Mirror:
    """A peer that announces itself as a full mirror (same dict form as the index)."""
    return Mirror.from_dict(announcement, source="peer")


#: When one URL is learned from several sources, the more trusted one wins.
_SOURCE_RANK = {"index": 0, "metalink": 1, "list": 2, "peer": 3}


def merge_mirrors(*groups: Sequence[Mirror]) -> list[Mirror]:
    """Merge mirror lists, one entry per URL, keeping the most trusted source's record.

    The signed index beats a Metalink file, which beats a user list, which beats
    a peer's self-announcement. First-seen order is kept.
    """
    chosen: dict[str, Mirror] = {}
    for group in groups:
        for m in group:
            old = chosen.get(m.url)
            if old is None or _SOURCE_RANK[m.source] < _SOURCE_RANK[old.source]:
                chosen[m.url] = m
    return list(chosen.values())
