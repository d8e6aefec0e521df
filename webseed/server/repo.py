"""What a peer can serve: a published repository tree plus a store of partial artifacts.

This module answers *what* a URL names (a file, a slice of a file, or bytes
in memory) and with which validators; :mod:`webseed.server.core` turns that
into an HTTP answer. Nothing here reads artifact bytes except to verify a
chunk before the first time it is served by digest.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from webseed.errors import IntegrityError, ManifestError, StorageError, UnsafePathError
from webseed.integrity.merkle import chunk_digest
from webseed.manifest import MAX_MANIFEST_BYTES, Manifest
from webseed.paths import check_repo_path, resolve_under
from webseed.storage import PartialArtifact

WELL_KNOWN = ".well-known/webseed"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_TARGETS_NAME = re.compile(r"(?:(\d{1,12})\.)?targets\.json")
#: How long the targets map is trusted before the metadata directory is looked at again.
TARGETS_TTL = 1.0
#: Most (file, chunk) pairs remembered as verified for the chunks-by-digest endpoint.
MAX_VERIFIED_CHUNKS = 1 << 20


@dataclass(frozen=True)
class Resource:
    """A byte string to serve: ``size`` bytes of ``file`` from ``offset``, or ``data``.

    ``partial`` is set when the bytes come from an incomplete artifact: then only
    ranges inside verified chunks may be sent.
    """

    name: str
    size: int
    etag: str
    file: Path | None = None
    offset: int = 0
    data: bytes | None = None
    last_modified: float | None = None
    manifest: str | None = None
    partial: PartialArtifact | None = None
    content_type: str = "application/octet-stream"
    immutable: bool = False

    def missing_chunks(self, ranges: tuple[tuple[int, int], ...], limit: int = 32) -> list[int]:
        """Chunks of the partial artifact that ``ranges`` touch and that are not verified."""
        if self.partial is None:
            return []
        chunk = self.partial.manifest.chunk_size
        out: list[int] = []
        for start, end in ranges:
            for index in range(start // chunk, (end - 1) // chunk + 1):
                if not self.partial.has(index) and index not in out:
                    out.append(index)
                    if len(out) >= limit:
                        return out
        return out


def file_etag(st: os.stat_result) -> str:
    """Strong validator of a file without a manifest: device, inode, size and mtime (ns)."""
    ident = f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}".encode()
    return '"f-' + hashlib.blake2b(ident, digest_size=12).hexdigest() + '"'


class Repository:
    """A repository directory and a store of partial artifacts, as the server sees them.

    ``store`` holds partial artifacts keyed by manifest digest: ``<digest>`` is
    the data file (``<digest>.journal`` beside it, see :class:`PartialArtifact`)
    and ``<digest>.json`` the canonical manifest. The serving process owns the
    store; an in-process downloader shares its objects through :meth:`add_partial`.
    """

    def __init__(self, root: str | os.PathLike[str], store: str | os.PathLike[str] | None = None):
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise StorageError(f"repository {root} is not a directory")
        self.well_known = self.root / WELL_KNOWN
        self.store = Path(store).resolve() if store is not None else None
        self._lock = threading.RLock()
        self._partials: dict[str, PartialArtifact] = {}
        self._partial_by_path: dict[str, str] = {}
        self._targets: dict[str, dict[str, Any]] = {}
        self._targets_key: tuple[str, int, int] | None = None
        self._targets_checked = 0.0
        self._manifests: OrderedDict[str, Manifest] = OrderedDict()
        self._chunk_index: dict[str, tuple[str, int]] | None = None
        self._chunk_index_key: object = None
        self._verified: set[tuple[int, int, int, int, int]] = set()
        if self.store is not None:
            self.scan_store()

    # -- partial artifacts ---------------------------------------------------------

    def scan_store(self) -> int:
        """Open every ``<digest>.json`` + ``<digest>`` pair in the store; return how many."""
        if self.store is None or not self.store.is_dir():
            return 0
        found = 0
        for entry in sorted(self.store.glob("*.json")):
            digest = entry.stem
            if not _HEX64.fullmatch(digest) or digest in self._partials:
                continue
            try:
                manifest = Manifest.parse(_read_bounded(entry), expected_digest=digest)
            except (OSError, ManifestError, IntegrityError, UnsafePathError):
                continue  # not ours or damaged: never serve from it
            self.add_partial(PartialArtifact(self.store / digest, manifest))
            found += 1
        return found

    def add_partial(self, partial: PartialArtifact) -> None:
        """Serve the verified chunks of ``partial`` (e.g. an in-process download)."""
        digest = partial.manifest.digest
        with self._lock:
            self._partials[digest] = partial
            self._partial_by_path[partial.manifest.path] = digest
            self._remember(partial.manifest)
            self._chunk_index = None

    def remove_partial(self, digest: str) -> None:
        """Stop serving the partial artifact of manifest ``digest``."""
        with self._lock:
            partial = self._partials.pop(digest, None)
            if partial is not None and self._partial_by_path.get(partial.manifest.path) == digest:
                del self._partial_by_path[partial.manifest.path]
            self._chunk_index = None

    def partials(self) -> dict[str, PartialArtifact]:
        """The partial artifacts served, by manifest digest."""
        with self._lock:
            return dict(self._partials)

    # -- the signed index (read for validators only: clients verify signatures) ------

    def targets(self) -> dict[str, dict[str, Any]]:
        """Repository path -> TUF target entry, from the newest targets metadata."""
        now = time.monotonic()
        with self._lock:
            if now - self._targets_checked < TARGETS_TTL:
                return self._targets
            self._targets_checked = now
            best: tuple[int, Path] | None = None
            metadata = self.well_known / "metadata"
            try:
                names = os.listdir(metadata)
            except OSError:
                names = []
            for name in names:
                m = _TARGETS_NAME.fullmatch(name)
                if m:
                    version = int(m.group(1) or 0)
                    if best is None or version > best[0]:
                        best = (version, metadata / name)
            if best is None:
                self._targets, self._targets_key = {}, None
                return self._targets
            try:
                st = best[1].stat()
                key = (best[1].name, st.st_mtime_ns, st.st_size)
                if key != self._targets_key:
                    signed = json.loads(_read_bounded(best[1], 256 * 1024 * 1024))["signed"]
                    targets = signed.get("targets", {})
                    self._targets = {p: t for p, t in targets.items() if isinstance(t, dict)}
                    self._targets_key = key
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                self._targets, self._targets_key = {}, None
            return self._targets

    @property
    def targets_file(self) -> Path | None:
        """The targets metadata file :meth:`targets` last read (None if there is none)."""
        key = self._targets_key
        return self.well_known / "metadata" / key[0] if key is not None else None

    def manifest_digest_for(self, path: str) -> str | None:
        """The manifest digest the index lists for ``path``, if any."""
        entry = self.targets().get(path)
        custom = entry.get("custom") if entry else None
        digest = custom.get("manifest") if isinstance(custom, dict) else None
        return digest if isinstance(digest, str) and _HEX64.fullmatch(digest) else None

    def manifest_file(self, digest: str) -> Path:
        """Where the repository keeps manifest ``digest``."""
        return self.well_known / "manifests" / f"{digest}.json"

    def manifest(self, digest: str) -> Manifest | None:
        """Manifest ``digest`` (checked against its digest), from the repository or the store."""
        with self._lock:
            cached = self._manifests.get(digest)
            if cached is not None:
                self._manifests.move_to_end(digest)
                return cached
            partial = self._partials.get(digest)
        if partial is not None:
            return partial.manifest
        try:
            manifest = Manifest.parse(
                _read_bounded(self.manifest_file(digest)), expected_digest=digest
            )
        except (OSError, ManifestError, IntegrityError, UnsafePathError):
            return None
        with self._lock:
            self._remember(manifest)
        return manifest

    def _remember(self, manifest: Manifest) -> None:
        self._manifests[manifest.digest] = manifest
        while len(self._manifests) > 64:
            self._manifests.popitem(last=False)

    # -- artifacts -------------------------------------------------------------------

    def artifact(self, path: str) -> Resource | None:
        """The artifact at repository ``path``: the complete file, else a partial one.

        Raises :class:`UnsafePathError` for a path that is not a safe repository
        path (the caller answers 400). Hidden segments and files reached through
        a symlink leaving the repository are treated as absent (404).
        """
        check_repo_path(path)
        if any(part.startswith(".") for part in path.split("/")):
            return None
        try:
            file = resolve_under(self.root, path)
            st = file.stat()
        except (UnsafePathError, OSError):
            st = None
        if st is not None and file.is_file():
            return Resource(
                name=path,
                size=st.st_size,
                etag=self._content_etag(path, st) or file_etag(st),
                file=file,
                last_modified=st.st_mtime,
                manifest=self.manifest_digest_for(path),
            )
        with self._lock:
            digest = self._partial_by_path.get(path)
            partial = self._partials.get(digest) if digest else None
        return self.partial_resource(partial) if partial is not None else None

    def partial_resource(self, partial: PartialArtifact) -> Resource:
        """A partial artifact as a resource (its validator is its manifest digest)."""
        manifest_file = self.store / f"{partial.manifest.digest}.json" if self.store else None
        try:
            last_modified = manifest_file.stat().st_mtime if manifest_file else None
        except OSError:
            last_modified = None
        return Resource(
            name=partial.manifest.path,
            size=partial.manifest.size,
            etag=f'"{partial.manifest.digest}"',
            file=partial.data_path,
            last_modified=last_modified,
            manifest=partial.manifest.digest,
            partial=partial,
        )

    def _content_etag(self, path: str, st: os.stat_result) -> str | None:
        """``"<manifest digest>"`` if the file is plausibly the one the index describes.

        Plausible = the signed length equals the file's size and the file was
        not modified after its manifest was written. Otherwise the caller falls
        back to :func:`file_etag`, which is strong for this file but not shared
        by other peers.
        """
        digest = self.manifest_digest_for(path)
        if digest is None:
            return None
        length = self.targets().get(path, {}).get("length")
        if length != st.st_size:
            return None
        try:
            if self.manifest_file(digest).stat().st_mtime_ns < st.st_mtime_ns:
                return None
        except OSError:
            return None
        return f'"{digest}"'

    # -- well-known files ------------------------------------------------------------

    def metadata_file(self, name: str) -> Resource | None:
        """A TUF metadata file of the repository, served as a static file."""
        if not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}", name):
            return None
        file = self.well_known / "metadata" / name
        try:
            st = file.stat()
        except OSError:
            return None
        if not file.is_file():
            return None
        return Resource(
            name=f"metadata/{name}",
            size=st.st_size,
            etag=file_etag(st),
            file=file,
            last_modified=st.st_mtime,
            content_type="application/json"
            if name.endswith(".json")
            else "application/octet-stream",
        )

    def manifest_resource(self, digest: str) -> Resource | None:
        """Manifest ``digest`` as canonical bytes (verified against the digest)."""
        if not _HEX64.fullmatch(digest):
            return None
        manifest = self.manifest(digest)
        if manifest is None:
            return None
        data = manifest.encode()
        return Resource(
            name=f"manifests/{digest}.json",
            size=len(data),
            etag=f'"{digest}"',
            data=data,
            content_type="application/json",
            immutable=True,
        )

    def bitfield(self, digest: str) -> tuple[bytes, int] | None:
        """The verified-chunk bitfield (MSB first) of manifest ``digest`` and its chunk count."""
        if not _HEX64.fullmatch(digest):
            return None
        with self._lock:
            partial = self._partials.get(digest)
        if partial is not None:
            return partial.bitfield(), partial.manifest.chunk_count
        manifest = self.manifest(digest)
        if manifest is None:
            return None
        resource = self._complete(manifest)
        if resource is None:
            return None
        return _all_ones(manifest.chunk_count), manifest.chunk_count

    def _complete(self, manifest: Manifest) -> Resource | None:
        """The repository's complete file for ``manifest``, if the index lists it there."""
        if self.manifest_digest_for(manifest.path) != manifest.digest:
            return None
        try:
            resource = self.artifact(manifest.path)
        except UnsafePathError:
            return None
        if resource is None or resource.partial is not None or resource.size != manifest.size:
            return None
        return resource

    # -- chunks by digest ------------------------------------------------------------

    def _chunks(self) -> dict[str, tuple[str, int]]:
        """Chunk digest -> (manifest digest, chunk index), over the index and the store."""
        targets = self.targets()
        with self._lock:
            key = (self._targets_key, tuple(self._partials))
            if self._chunk_index is not None and self._chunk_index_key == key:
                return self._chunk_index
            partials = list(self._partials.values())
        index: dict[str, tuple[str, int]] = {}
        manifests = [p.manifest for p in partials]
        for path in targets:
            digest = self.manifest_digest_for(path)
            m = self.manifest(digest) if digest else None
            if m is not None:
                manifests.append(m)
        for m in manifests:
            for i, c in enumerate(m.chunks):
                index.setdefault(c, (m.digest, i))
        with self._lock:
            self._chunk_index, self._chunk_index_key = index, key
        return index

    def chunk(self, digest: str) -> Resource | None:
        """Chunk ``digest``'s bytes: only verified chunks, from a partial or a complete file."""
        if not _HEX64.fullmatch(digest):
            return None
        where = self._chunks().get(digest)
        if where is None:
            return None
        manifest_digest, index = where
        with self._lock:
            partial = self._partials.get(manifest_digest)
        manifest = partial.manifest if partial else self.manifest(manifest_digest)
        if manifest is None:
            return None
        start, end = manifest.chunk_range(index)
        if partial is not None:
            if not partial.has(index):
                return None
            file = partial.data_path
        else:
            resource = self._complete(manifest)
            if resource is None or resource.file is None:
                return None
            file = resource.file
            if not self._verify_chunk(file, manifest, index):
                return None
        return Resource(
            name=f"chunks/{digest}",
            size=end - start,
            etag=f'"{digest}"',
            file=file,
            offset=start,
            immutable=True,
            manifest=manifest.digest,
        )

    def _verify_chunk(self, file: Path, manifest: Manifest, index: int) -> bool:
        """Hash a complete file's chunk once before it is served under its digest.

        Content-addressed URLs are cached for a year by anyone in between, so a
        file changed behind the index's back must never answer under an old
        digest. The check is remembered per (file identity, chunk).
        """
        try:
            st = file.stat()
        except OSError:
            return False
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, index)
        with self._lock:
            if key in self._verified:
                return True
        start, end = manifest.chunk_range(index)
        with open(file, "rb") as fh:
            data = os.pread(fh.fileno(), end - start, start)
        if chunk_digest(data, manifest.chunk_size).hex() != manifest.chunks[index]:
            return False
        with self._lock:
            if len(self._verified) >= MAX_VERIFIED_CHUNKS:
                self._verified.clear()
            self._verified.add(key)
        return True

    def close(self) -> None:
        """Close the partial artifacts this repository opened."""
        with self._lock:
            partials = list(self._partials.values())
            self._partials.clear()
            self._partial_by_path.clear()
        for p in partials:
            p.close()


def _all_ones(count: int) -> bytes:
    out = bytearray(b"\xff" * ((count + 7) // 8))
    if count % 8:
        out[-1] = (0xFF << (8 - count % 8)) & 0xFF
    return bytes(out)


def _read_bounded(path: Path, limit: int = MAX_MANIFEST_BYTES) -> bytes:
    with open(path, "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise ManifestError(f"{path} larger than {limit} bytes")
    return data
