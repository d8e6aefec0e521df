"""Publishing a repository: manifests for every artifact and the TUF-signed index.

The index is python-tuf metadata (root, targets, snapshot, timestamp) with
consistent snapshots: each repository path is a TUF target whose signed
``custom`` field carries the manifest digest, chunk size, pieces root and
version. Publishing is incremental: a file whose size and modification time
have not changed keeps its manifest without being hashed again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tuf.api.metadata import (
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

from webseed.errors import KeyFileError, RepositoryIndexError, UnsafePathError
from webseed.index.keys import RoleKeys
from webseed.index.layout import METADATA_DIR, PUBLISH_CACHE, WELL_KNOWN, manifest_relpath
from webseed.manifest import Manifest, build_manifest
from webseed.paths import check_repo_path

_VERSION_RE = re.compile(r"[-_]v?(\d+(?:\.\d+)*(?:[.-]?(?:rc|a|b|post|dev)\d*)?)")
KEEP_VERSIONS = 3


#: Field of the signed targets metadata that lists the repository's HTTP mirrors.
MIRRORS_FIELD = "x-webseed-mirrors"
_MIRROR_KEYS = {"url", "country", "continent", "lat", "lon", "capacity", "protocols", "priority"}


def _check_mirrors(mirrors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for m in mirrors:
        if not isinstance(m, dict) or not isinstance(m.get("url"), str):
            raise RepositoryIndexError(f"mirror entry without a url: {m!r}")
        if not m["url"].startswith(("http://", "https://")):
            raise RepositoryIndexError(f"mirror url must be http(s): {m['url']!r}")
        unknown = set(m) - _MIRROR_KEYS
        if unknown:
            raise RepositoryIndexError(f"mirror entry has unknown fields {sorted(unknown)}")
        entry = {**m, "url": m["url"].rstrip("/")}
        # TUF's canonical JSON has no floats: coordinates are signed as decimal strings.
        for axis, limit in (("lat", 90.0), ("lon", 180.0)):
            if axis in entry:
                try:
                    value = float(entry[axis])
                except (TypeError, ValueError):
                    raise RepositoryIndexError(f"mirror {axis} is not a number") from None
                if not -limit <= value <= limit:
                    raise RepositoryIndexError(f"mirror {axis} out of range: {value}")
                entry[axis] = f"{value:.6f}"
        out.append(entry)
    return out


def guess_version(path: str) -> str:
    """A version guessed from a file name (``foo-1.2.3.tar.gz`` gives ``1.2.3``), else ``""``."""
    match = _VERSION_RE.search(path.rsplit("/", 1)[-1])
    return match.group(1) if match else ""


@dataclass(frozen=True)
class Expiry:
    """How long each role's signature stays valid."""

    root: timedelta = timedelta(days=365)
    targets: timedelta = timedelta(days=90)
    snapshot: timedelta = timedelta(days=30)
    timestamp: timedelta = timedelta(days=7)


@dataclass
class PublishReport:
    """What a publish run did."""

    index_version: int
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    hashed_bytes: int = 0


def _atomic_write(path: Path, data: bytes, *, durable: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


def _atomic_copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    shutil.copyfile(src, tmp)
    shutil.copystat(src, tmp)
    os.replace(tmp, dest)


class Publisher:
    """Publishes a source tree into a repository directory and signs its index."""

    def __init__(
        self,
        repo_dir: str | os.PathLike[str],
        keys: RoleKeys,
        *,
        expiry: Expiry = Expiry(),
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.repo = Path(repo_dir)
        self.meta = self.repo / METADATA_DIR
        self.keys = keys
        self.expiry = expiry
        self._now = now
        self._serializer = JSONSerializer(compact=True)

    # -- metadata files -----------------------------------------------------------

    def _expires(self, delta: timedelta) -> datetime:
        return (self._now() + delta).replace(microsecond=0)

    def _sign_and_write(self, md: Metadata[Any], role: str, names: list[str]) -> bytes:
        md.signatures.clear()
        for signer in self.keys.signers[role]:
            md.sign(signer, append=True)
        data = md.to_bytes(self._serializer)
        for name in names:
            _atomic_write(self.meta / name, data)
        return data

    def _load_root(self) -> Metadata[Root]:
        path = self.meta / "root.json"
        if path.exists():
            root = Metadata[Root].from_file(str(path))
            for role in ("targets", "snapshot", "timestamp"):
                allowed = set(root.signed.roles[role].keyids)
                for key in self.keys.public_keys(role):
                    if key.keyid not in allowed:
                        raise KeyFileError(
                            f"key {key.keyid[:16]} is not authorised for role {role} "
                            "by this repository's root"
                        )
            return root
        root = self._new_root(1)
        self._sign_and_write(root, "root", ["1.root.json", "root.json"])
        return root

    def _new_root(self, version: int) -> Metadata[Root]:
        root = Metadata(
            Root(version=version, expires=self._expires(self.expiry.root), consistent_snapshot=True)
        )
        for role in ("root", "targets", "snapshot", "timestamp"):
            for key in self.keys.public_keys(role):
                root.signed.add_key(key, role)
            root.signed.roles[role].threshold = self.keys.thresholds[role]
        return root

    def _load_targets(self) -> Metadata[Targets] | None:
        ts_path = self.meta / "timestamp.json"
        if not ts_path.exists():
            return None
        ts = Metadata[Timestamp].from_file(str(ts_path))
        snap_v = ts.signed.snapshot_meta.version
        snap = Metadata[Snapshot].from_file(str(self.meta / f"{snap_v}.snapshot.json"))
        targets_v = snap.signed.meta["targets.json"].version
        return Metadata[Targets].from_file(str(self.meta / f"{targets_v}.targets.json"))

    def rotate_root(self, old: RoleKeys) -> int:
        """Replace the repository's keys with ``self.keys``; returns the new root version.

        The new root is signed by the old root keys (``old``) and the new ones, so
        a client that trusts the old root follows the rotation (TUF's rules).
        Publish afterwards to re-sign the other roles with the new keys.
        """
        current = Metadata[Root].from_file(str(self.meta / "root.json"))
        version = current.signed.version + 1
        root = self._new_root(version)
        for signer in old.signers["root"] + self.keys.signers["root"]:
            root.sign(signer, append=True)
        data = root.to_bytes(self._serializer)
        for name in (f"{version}.root.json", "root.json"):
            _atomic_write(self.meta / name, data)
        return version

    # -- the run ------------------------------------------------------------------

    def publish(
        self,
        src_dir: str | os.PathLike[str] | None = None,
        *,
        manifest_hook: Callable[[Manifest, Path], Manifest] | None = None,
        mirrors: list[dict[str, Any]] | None = None,
    ) -> PublishReport:
        """Publish every file under ``src_dir`` (default: the repository itself).

        ``manifest_hook(manifest, file)`` may return an amended manifest (for
        example with patch links) before it is written and signed. ``mirrors``
        replaces the signed mirror list (dicts with at least ``url``; optional
        ``country``, ``lat``, ``lon``, ``capacity``, ``protocols``); ``None``
        keeps the previous list.
        """
        src = Path(src_dir) if src_dir is not None else self.repo
        in_place = src.resolve() == self.repo.resolve()
        self._load_root()
        previous = self._load_targets()
        old_targets: dict[str, TargetFile] = dict(previous.signed.targets) if previous else {}
        cache = self._load_cache()
        new_cache: dict[str, Any] = {}
        new_targets: dict[str, TargetFile] = {}
        report = PublishReport(index_version=0)

        for file, path in self._walk(src):
            st = file.stat()
            stamp = [st.st_size, st.st_mtime_ns]
            cached = cache.get(path)
            manifest: Manifest | None = None
            if cached and cached.get("stamp") == stamp:
                mpath = self.repo / manifest_relpath(cached["manifest"])
                if mpath.exists():
                    manifest = Manifest.parse(
                        mpath.read_bytes(), expected_digest=cached["manifest"]
                    )
            if manifest is None:
                manifest = build_manifest(file, path, version=guess_version(path))
                report.hashed_bytes += manifest.size
            if manifest_hook is not None:
                manifest = manifest_hook(manifest, file)
            digest = manifest.digest
            mfile = self.repo / manifest_relpath(digest)
            if not mfile.exists():
                # Content-addressed and checked on every read: a torn one is re-made, not trusted.
                _atomic_write(mfile, manifest.encode(), durable=False)
            if not in_place:
                dest = self.repo / path
                dst = dest.stat() if dest.exists() else None
                if dst is None or [dst.st_size, dst.st_mtime_ns] != stamp:
                    _atomic_copy(file, dest)
            new_cache[path] = {"stamp": stamp, "manifest": digest}
            new_targets[path] = TargetFile(
                length=manifest.size,
                hashes={"sha256": manifest.digests["sha256"]},
                path=path,
                unrecognized_fields={
                    "custom": {
                        "manifest": digest,
                        "chunk_size": manifest.chunk_size,
                        "pieces_root": manifest.pieces_root,
                        "version": manifest.version,
                    }
                },
            )
            old = old_targets.get(path)
            if old is None:
                report.added.append(path)
            elif old.custom.get("manifest") != digest:
                report.changed.append(path)
            else:
                report.unchanged.append(path)
        report.removed = sorted(set(old_targets) - set(new_targets))

        # Every run is a new index version, so a re-publish also refreshes every expiry.
        version = previous.signed.version + 1 if previous else 1
        targets = Metadata(Targets(version=version, expires=self._expires(self.expiry.targets)))
        targets.signed.targets = dict(sorted(new_targets.items()))
        if mirrors is None and previous is not None:
            mirrors = previous.signed.unrecognized_fields.get(MIRRORS_FIELD)
        if mirrors:
            targets.signed.unrecognized_fields[MIRRORS_FIELD] = _check_mirrors(mirrors)
        self._sign_and_write(targets, "targets", [f"{version}.targets.json"])
        report.index_version = version

        snap_version = version
        snapshot = Metadata(
            Snapshot(version=snap_version, expires=self._expires(self.expiry.snapshot))
        )
        snapshot.signed.meta = {"targets.json": MetaFile(version=version)}
        snap_bytes = self._sign_and_write(snapshot, "snapshot", [f"{snap_version}.snapshot.json"])

        ts_version = snap_version
        timestamp = Metadata(
            Timestamp(
                version=ts_version,
                expires=self._expires(self.expiry.timestamp),
                snapshot_meta=MetaFile(
                    version=snap_version,
                    length=len(snap_bytes),
                    hashes={"sha256": hashlib.sha256(snap_bytes).hexdigest()},
                ),
            )
        )
        # The timestamp goes last: until it is replaced, mirrors see the old, whole index.
        self._sign_and_write(timestamp, "timestamp", ["timestamp.json"])
        self._prune(version)
        _atomic_write(self.repo / PUBLISH_CACHE, json.dumps(new_cache, sort_keys=True).encode())
        return report

    def _walk(self, src: Path) -> list[tuple[Path, str]]:
        found: list[tuple[Path, str]] = []
        if not src.is_dir():
            raise RepositoryIndexError(f"{src} is not a directory")
        for dirpath, dirnames, filenames in os.walk(src):
            rel_dir = Path(dirpath).relative_to(src).as_posix()
            if rel_dir == ".":
                dirnames[:] = [d for d in dirnames if d != WELL_KNOWN.split("/")[0]]
            dirnames.sort()
            for name in sorted(filenames):
                file = Path(dirpath) / name
                if file.is_symlink() or (name.startswith(".") and ".tmp-" in name):
                    continue
                path = name if rel_dir == "." else f"{rel_dir}/{name}"
                try:
                    check_repo_path(path)
                except UnsafePathError as exc:
                    raise RepositoryIndexError(f"cannot publish {file}: {exc}") from None
                found.append((file, path))
        return found

    def _load_cache(self) -> dict[str, Any]:
        path = self.repo / PUBLISH_CACHE
        try:
            data = json.loads(path.read_bytes())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _prune(self, current: int) -> None:
        # Mirrors that sync mid-publish may still need the previous few versions.
        for pattern in ("*.targets.json", "*.snapshot.json"):
            for f in self.meta.glob(pattern):
                head = f.name.split(".", 1)[0]
                if head.isdigit() and int(head) <= current - KEEP_VERSIONS:
                    f.unlink(missing_ok=True)
