"""On-the-fly ``.meta4`` and ``.torrent`` for every artifact, MirrorBrain-style.

``GET /<path>.meta4`` answers a Metalink 4 document and ``GET /<path>.torrent``
a BitTorrent v2 torrent for the artifact at ``<path>``, listing, in this order:
the peer itself (its base URL as the client reached it, mount prefix
included), the mirrors signed into the index, then up to :data:`MAX_PEERS`
other peers from peer exchange. Both are translations of the manifest
(:mod:`webseed.export`); only the Metalink's plain SHA-256 piece hashes need a
pass over the file, done once per manifest digest and kept in a bounded LRU.
While hashing, each piece is also checked against the manifest's BEP 52 chunk
digest, so a file changed behind the index never yields piece hashes.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from webseed.errors import IntegrityError
from webseed.export.metalink import MEDIA_TYPE as METALINK_TYPE
from webseed.export.metalink import MirrorRef, metalink_xml, piece_hashes
from webseed.export.torrent import MEDIA_TYPE as TORRENT_TYPE
from webseed.export.torrent import torrent_bytes
from webseed.manifest import Manifest
from webseed.server.pex import PexSource
from webseed.server.repo import Repository

#: URL suffixes answered by this module, and their media types.
SUFFIXES = {".meta4": METALINK_TYPE, ".torrent": TORRENT_TYPE}
#: Most other peers (from peer exchange) listed in one export.
MAX_PEERS = 16
#: Most mirrors from the index listed in one export.
MAX_MIRRORS = 64
#: Manifests whose Metalink piece hashes are remembered.
PIECE_CACHE = 128


@dataclass(frozen=True)
class Export:
    """A document to send: its bytes and media type."""

    body: bytes
    media_type: str


def export_target(rel: str) -> tuple[str, str] | None:
    """``("releases/x.iso", ".meta4")`` for ``releases/x.iso.meta4``; None for other paths."""
    for suffix in SUFFIXES:
        if rel.endswith(suffix) and len(rel) > len(suffix):
            return rel[: -len(suffix)], suffix
    return None


def _peer_urls(announcement: Mapping[str, Any]) -> list[str]:
    """Base URLs a peer-exchange announcement advertises (``url`` or ``urls``)."""
    raw = announcement.get("urls", announcement.get("url"))
    candidates = raw if isinstance(raw, list) else [raw]
    return [
        u
        for u in candidates
        if isinstance(u, str) and u.startswith(("http://", "https://")) and len(u) < 2048
    ]


class Exports:
    """Builds the ``.meta4`` / ``.torrent`` answers of one peer."""

    def __init__(self, repo: Repository, pex: PexSource, *, cache_size: int = PIECE_CACHE) -> None:
        self.repo = repo
        self.pex = pex
        self.cache_size = cache_size
        self._pieces: OrderedDict[str, list[str]] = OrderedDict()
        self._lock = threading.Lock()
        self._hashing: dict[str, threading.Lock] = {}
        self._mirrors: list[dict[str, Any]] = []
        self._mirrors_key: object = None
        #: Piece passes that found a file not matching its manifest (never exported).
        self.mismatches = 0

    # -- sources -----------------------------------------------------------------------

    def mirrors(self) -> list[dict[str, Any]]:
        """The mirror list signed into the newest targets metadata (read, not verified:
        clients check the signature; the peer only repeats what it publishes)."""
        self.repo.targets()  # refreshes the choice of the newest targets file
        file = self.repo.targets_file
        key: object = None
        if file is not None:
            try:
                st = file.stat()
                key = (file, st.st_mtime_ns, st.st_size)
            except OSError:
                file = None
        with self._lock:
            if key == self._mirrors_key:
                return self._mirrors
        mirrors: list[dict[str, Any]] = []
        if file is not None:
            try:
                raw = json.loads(file.read_bytes())["signed"].get("x-webseed-mirrors", [])
                if isinstance(raw, list):
                    mirrors = [
                        m for m in raw if isinstance(m, dict) and isinstance(m.get("url"), str)
                    ][:MAX_MIRRORS]
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                mirrors = []
        with self._lock:
            self._mirrors, self._mirrors_key = mirrors, key
        return mirrors

    def sources(self, self_url: str) -> list[MirrorRef]:
        """This peer, the index's mirrors, then known peers; deduplicated, prioritised."""
        refs: list[MirrorRef] = []
        seen: set[str] = set()

        def add(url: str, location: str | None = None) -> None:
            base = url.rstrip("/")
            if base and base not in seen:
                seen.add(base)
                refs.append(MirrorRef(base, location, len(refs) + 1))

        if self_url:
            add(self_url)
        for m in self.mirrors():
            country = m.get("country")
            add(str(m["url"]), country if isinstance(country, str) and len(country) == 2 else None)
        peers = 0
        for ann in self.pex.announcements(MAX_PEERS):
            for url in _peer_urls(ann):
                if peers < MAX_PEERS:
                    add(url)
                    peers += 1
        return refs

    # -- documents ---------------------------------------------------------------------

    def manifest_for(self, path: str) -> tuple[Manifest, Path | None] | None:
        """The manifest of the artifact at ``path`` and its complete file (if held whole)."""
        resource = self.repo.artifact(path)  # UnsafePathError propagates (400)
        if resource is None or resource.manifest is None:
            return None
        if resource.partial is not None:
            return resource.partial.manifest, None
        manifest = self.repo.manifest(resource.manifest)
        if manifest is None or manifest.size != resource.size:
            return None
        # Only a file the index plausibly describes (its content ETag) is hashed.
        whole = resource.file if resource.etag == f'"{manifest.digest}"' else None
        return manifest, whole

    def build(self, path: str, suffix: str, self_url: str) -> Export | None:
        """The export of artifact ``path`` (``suffix`` ``.meta4``/``.torrent``), or None."""
        found = self.manifest_for(path)
        if found is None:
            return None
        manifest, whole = found
        refs = self.sources(self_url)
        if suffix == ".torrent":
            return Export(torrent_bytes(manifest, [r.base for r in refs]), TORRENT_TYPE)
        pieces = self.piece_hashes(manifest, whole) if whole is not None else None
        return Export(metalink_xml(manifest, refs, pieces), METALINK_TYPE)

    def piece_hashes(self, manifest: Manifest, file: Path) -> list[str] | None:
        """Plain SHA-256 per chunk of ``file``, checked against ``manifest``; cached."""
        digest = manifest.digest
        with self._lock:
            cached = self._pieces.get(digest)
            if cached is not None:
                self._pieces.move_to_end(digest)
                return cached
            # One pass per manifest even when many clients ask at once.
            gate = self._hashing.setdefault(digest, threading.Lock())
        with gate:
            with self._lock:
                cached = self._pieces.get(digest)
            if cached is not None:
                return cached
            pieces = self._hash(manifest, file)
            with self._lock:
                self._hashing.pop(digest, None)
                if pieces is not None:
                    self._pieces[digest] = pieces
                    while len(self._pieces) > self.cache_size:
                        self._pieces.popitem(last=False)
            return pieces

    def _hash(self, manifest: Manifest, file: Path) -> list[str] | None:
        try:
            return piece_hashes(file, manifest)
        except (OSError, IntegrityError):
            with self._lock:
                self.mismatches += 1
            return None
