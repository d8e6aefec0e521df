"""Manifests: what an artifact is, chunk by chunk, in a canonical signed-over form.

A manifest names an artifact's repository path, size, chunk size, the BEP 52
digest of every chunk, the file's BEP 52 pieces root, whole-file digests in
several algorithms, a version, and links to patches from earlier versions. Its
encoding is canonical JSON (sorted keys, no spaces, UTF-8), and the manifest is
addressed by the SHA-256 of that encoding. The signed index carries that digest.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from webseed.errors import IntegrityError, ManifestError
from webseed.integrity import digests as _digests
from webseed.integrity.digests import DEFAULT_POLICY, HashPolicy
from webseed.integrity.merkle import BLOCK_SIZE
from webseed.paths import check_repo_path

FORMAT = "webseed-manifest/1"
MIN_CHUNK = 256 * 1024
MAX_CHUNK = 64 * 1024 * 1024
TARGET_CHUNKS = 2048
#: A manifest larger than this is refused unread (endless-data defence).
MAX_MANIFEST_BYTES = 32 * 1024 * 1024
_FIELDS = {
    "format",
    "path",
    "size",
    "chunk_size",
    "chunks",
    "pieces_root",
    "digests",
    "version",
    "patches",
}


def default_chunk_size(size: int) -> int:
    """Power-of-two chunk size giving at most ~2,048 chunks (256 KiB .. 64 MiB)."""
    want = -(-size // TARGET_CHUNKS)
    chunk = MIN_CHUNK
    while chunk < want and chunk < MAX_CHUNK:
        chunk *= 2
    return chunk


def canonical_json(obj: Any) -> bytes:
    """Deterministic JSON: sorted keys, no whitespace, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class PatchLink:
    """A patch from an earlier version: apply ``path`` to ``base_digest``'s file to get this."""

    from_version: str
    base_digest: str
    path: str
    size: int
    manifest: str

    def to_dict(self) -> dict[str, Any]:
        """The link as it appears in the manifest."""
        return {
            "from_version": self.from_version,
            "base_digest": self.base_digest,
            "path": self.path,
            "size": self.size,
            "manifest": self.manifest,
        }


@dataclass(frozen=True)
class Manifest:
    """One artifact's manifest. Build with :func:`build_manifest`, read with :meth:`parse`."""

    path: str
    size: int
    chunk_size: int
    chunks: tuple[str, ...]
    pieces_root: str
    digests: Mapping[str, str]
    version: str = ""
    patches: tuple[PatchLink, ...] = field(default=())

    @property
    def chunk_count(self) -> int:
        """Number of chunks."""
        return len(self.chunks)

    def chunk_range(self, index: int) -> tuple[int, int]:
        """``(start, end)`` byte offsets of chunk ``index``, end exclusive."""
        if not 0 <= index < len(self.chunks):
            raise IndexError(f"chunk {index} out of range")
        start = index * self.chunk_size
        return start, min(start + self.chunk_size, self.size)

    def to_dict(self) -> dict[str, Any]:
        """The manifest as plain JSON data."""
        return {
            "format": FORMAT,
            "path": self.path,
            "size": self.size,
            "chunk_size": self.chunk_size,
            "chunks": list(self.chunks),
            "pieces_root": self.pieces_root,
            "digests": dict(self.digests),
            "version": self.version,
            "patches": [p.to_dict() for p in self.patches],
        }

    def encode(self) -> bytes:
        """Canonical bytes; the manifest's digest is the SHA-256 of these."""
        return canonical_json(self.to_dict())

    @property
    def digest(self) -> str:
        """Hex SHA-256 of the canonical encoding: the manifest's address."""
        return hashlib.sha256(self.encode()).hexdigest()

    @classmethod
    def parse(
        cls,
        data: bytes,
        *,
        expected_digest: str | None = None,
        policy: HashPolicy = DEFAULT_POLICY,
    ) -> Manifest:
        """Parse and validate manifest bytes, refusing anything not canonical or unsafe.

        With ``expected_digest``, the bytes must hash to it (the value from the
        signed index); this check comes first, so forged bytes are never parsed.
        """
        if len(data) > MAX_MANIFEST_BYTES:
            raise ManifestError(f"manifest larger than {MAX_MANIFEST_BYTES} bytes")
        if expected_digest is not None:
            actual = hashlib.sha256(data).hexdigest()
            if actual != expected_digest:
                raise IntegrityError(
                    f"manifest digest mismatch: expected {expected_digest}, got {actual}"
                )
        try:
            obj = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ManifestError(f"manifest is not valid JSON: {exc}") from None
        manifest = cls.from_dict(obj, policy=policy)
        if manifest.encode() != data:
            raise ManifestError("manifest is not in canonical form")
        return manifest

    @classmethod
    def from_dict(cls, obj: Any, *, policy: HashPolicy = DEFAULT_POLICY) -> Manifest:
        """Validate JSON data into a manifest (see :meth:`parse`)."""
        if not isinstance(obj, dict):
            raise ManifestError("manifest is not a JSON object")
        if obj.get("format") != FORMAT:
            raise ManifestError(f"unknown manifest format {obj.get('format')!r}")
        unknown = set(obj) - _FIELDS
        missing = _FIELDS - set(obj)
        if unknown or missing:
            raise ManifestError(
                f"manifest fields wrong: unknown {sorted(unknown)}, missing {sorted(missing)}"
            )
        path = check_repo_path(_typed(obj, "path", str))
        size = _int(obj, "size")
        chunk_size = _int(obj, "chunk_size")
        if chunk_size < BLOCK_SIZE or chunk_size & (chunk_size - 1) or chunk_size > 1 << 30:
            raise ManifestError(f"chunk size {chunk_size} is not a power of two in 16 KiB..1 GiB")
        chunks = _typed(obj, "chunks", list)
        if len(chunks) != -(-size // chunk_size):
            raise ManifestError(f"manifest has {len(chunks)} chunk digests for {size} bytes")
        for c in chunks:
            _hex(c, 32, "chunk digest")
        pieces_root = _hex(obj["pieces_root"], 32, "pieces root")
        raw_digests = _typed(obj, "digests", dict)
        for name, value in raw_digests.items():
            if name in _digests.ALGORITHMS:
                _hex(value, _digests.new_hash(name).digest_size, f"{name} digest")
        policy.check(raw_digests)
        version = _typed(obj, "version", str)
        patches = []
        for p in _typed(obj, "patches", list):
            if not isinstance(p, dict) or set(p) != {
                "from_version",
                "base_digest",
                "path",
                "size",
                "manifest",
            }:
                raise ManifestError("malformed patch link")
            patches.append(
                PatchLink(
                    from_version=_typed(p, "from_version", str),
                    base_digest=_hex(p["base_digest"], 32, "patch base digest"),
                    path=check_repo_path(_typed(p, "path", str)),
                    size=_int(p, "size"),
                    manifest=_hex(p["manifest"], 32, "patch manifest digest"),
                )
            )
        return cls(
            path=path,
            size=size,
            chunk_size=chunk_size,
            chunks=tuple(chunks),
            pieces_root=pieces_root,
            digests=dict(raw_digests),
            version=version,
            patches=tuple(patches),
        )


def _typed(obj: Mapping[str, Any], key: str, kind: type) -> Any:
    value = obj.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ManifestError(f"manifest field {key!r} must be {kind.__name__}")
    return value


def _int(obj: Mapping[str, Any], key: str) -> int:
    value = _typed(obj, key, int)
    if not 0 <= value < 1 << 62:
        raise ManifestError(f"manifest field {key!r} out of range: {value}")
    return int(value)


def _hex(value: Any, length: int, what: str) -> str:
    if not isinstance(value, str) or len(value) != 2 * length:
        raise ManifestError(f"{what} must be {2 * length} hex digits")
    try:
        bytes.fromhex(value)
    except ValueError:
        raise ManifestError(f"{what} is not hex") from None
    if value != value.lower():
        raise ManifestError(f"{what} must be lower-case hex")
    return value


def build_manifest(
    file: str | os.PathLike[str],
    path: str,
    *,
    version: str = "",
    chunk_size: int | None = None,
    algorithms: Sequence[str] = ("sha256", "sha3-256", "blake2b"),
    patches: Sequence[PatchLink] = (),
    on_chunk: Callable[[int, bytes], None] | None = None,
) -> Manifest:
    """Hash ``file`` once (bounded memory, all cores) and describe it as ``path``."""
    check_repo_path(path)
    size = os.path.getsize(file)
    chunk = chunk_size or default_chunk_size(size)
    hashed = _digests.hash_file(file, chunk, algorithms, on_chunk=on_chunk)
    if hashed.size != size:
        raise IntegrityError(f"{file} changed size while it was hashed")
    return Manifest(
        path=path,
        size=size,
        chunk_size=chunk,
        chunks=tuple(c.hex() for c in hashed.chunks),
        pieces_root=hashed.pieces_root.hex(),
        digests=hashed.digests,
        version=version,
        patches=tuple(patches),
    )
