"""The verifying client side of the signed index: pinned root key, TUF's update rules.

:func:`open_index` fetches the index from any peer or mirror (HTTP(S) URL or
local directory), accepts only a root signed by the pinned key, then follows
python-tuf's client workflow: root rotation, rollback and freeze protection,
snapshot/targets consistency, size limits. The last versions seen are kept in
a per-key state directory, so an older index is refused on every later run.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlparse

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from tuf.api import exceptions as tuf_exc
from tuf.api.metadata import Metadata, Root, Targets
from tuf.ngclient import FetcherInterface, Updater, UpdaterConfig

from webseed.errors import IntegrityError, ManifestError, RepositoryIndexError
from webseed.index.keys import tuf_key
from webseed.index.layout import METADATA_DIR, manifest_relpath
from webseed.manifest import Manifest

#: Size limits for metadata (endless-data defence); targets grows ~400 bytes per artifact.
CONFIG = UpdaterConfig(
    root_max_length=512 * 1024,
    timestamp_max_length=16 * 1024,
    snapshot_max_length=4 * 1024 * 1024,
    targets_max_length=64 * 1024 * 1024,
)
_CHUNK = 64 * 1024


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/webseed/trust`` (``~/.local/state/webseed/trust``)."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return Path(base) / "webseed" / "trust"


def base_url(source: str) -> str:
    """A repository base as a URL: local directories become ``file://`` URLs."""
    if "://" in source:
        return source.rstrip("/")
    return Path(source).resolve().as_uri()


class Fetcher(FetcherInterface):
    """Fetches metadata over HTTP(S) (httpx, proxies from the environment) or from files."""

    def __init__(self, client: httpx.Client | None = None, timeout: float = 30.0) -> None:
        self._client = client
        self._timeout = timeout

    def _fetch(self, url: str) -> Iterator[bytes]:
        parsed = urlparse(url)
        if parsed.scheme == "file":
            path = Path(unquote(parsed.path))
            try:
                f = open(path, "rb")  # noqa: SIM115 (closed by the generator)
            except FileNotFoundError:
                raise tuf_exc.DownloadHTTPError(f"{url}: not found", 404) from None
            except OSError as exc:
                raise tuf_exc.DownloadError(f"{url}: {exc.strerror}") from None
            return self._file_chunks(f)
        return self._http_chunks(url)

    @staticmethod
    def _file_chunks(f: BinaryIO) -> Iterator[bytes]:
        with f:
            while chunk := f.read(_CHUNK):
                yield chunk

    def _http_chunks(self, url: str) -> Iterator[bytes]:
        # A short connect time-out: a blocked source must not hold the index up.
        timeout = httpx.Timeout(self._timeout, connect=min(3.0, self._timeout))
        client = self._client or httpx.Client(timeout=timeout, follow_redirects=True)
        try:
            with client.stream("GET", url) as response:
                if response.status_code != 200:
                    raise tuf_exc.DownloadHTTPError(
                        f"{url}: HTTP {response.status_code}", response.status_code
                    )
                yield from response.iter_bytes(_CHUNK)
        except httpx.HTTPError as exc:
            raise tuf_exc.DownloadError(f"{url}: {exc}") from None
        finally:
            if self._client is None:
                client.close()


@dataclass(frozen=True)
class IndexEntry:
    """One artifact as the signed index describes it."""

    path: str
    size: int
    sha256: str
    manifest_digest: str
    chunk_size: int
    pieces_root: str
    version: str


def _entry(target: object) -> IndexEntry:
    custom = getattr(target, "custom", {}) or {}
    try:
        return IndexEntry(
            path=str(getattr(target, "path")),  # noqa: B009
            size=int(getattr(target, "length")),  # noqa: B009
            sha256=str(getattr(target, "hashes")["sha256"]),  # noqa: B009
            manifest_digest=str(custom["manifest"]),
            chunk_size=int(custom["chunk_size"]),
            pieces_root=str(custom["pieces_root"]),
            version=str(custom.get("version", "")),
        )
    except (KeyError, TypeError, ValueError):
        raise RepositoryIndexError(
            f"index entry for {getattr(target, 'path', '?')} lacks webseed fields"
        ) from None


def _mirror(entry: dict[str, object]) -> dict[str, object]:
    out = dict(entry)
    for axis in ("lat", "lon"):
        if axis in out:
            try:
                out[axis] = float(str(out[axis]))
            except ValueError:
                del out[axis]
    return out


class TrustedIndex:
    """A verified index: look artifacts up, fetch and check their manifests."""

    def __init__(self, base: str, targets: Metadata[Targets], fetcher: Fetcher) -> None:
        self.base = base
        self.version = targets.signed.version
        self.expires: datetime = targets.signed.expires
        self._targets = {path: _entry(t) for path, t in targets.signed.targets.items()}
        raw_mirrors = targets.signed.unrecognized_fields.get("x-webseed-mirrors", [])
        #: Signed mirror list: dicts with ``url`` and optional location/capacity fields.
        self.mirrors: list[dict[str, object]] = (
            [
                _mirror(m)
                for m in raw_mirrors
                if isinstance(m, dict) and isinstance(m.get("url"), str)
            ]
            if isinstance(raw_mirrors, list)
            else []
        )
        self._fetcher = fetcher

    def paths(self) -> list[str]:
        """Every repository path in the index, sorted."""
        return sorted(self._targets)

    def lookup(self, path: str) -> IndexEntry:
        """The signed entry for ``path``; :class:`RepositoryIndexError` if absent."""
        try:
            return self._targets[path.lstrip("/")]
        except KeyError:
            raise RepositoryIndexError(f"{path} is not in the signed index") from None

    def manifest_url(self, entry: IndexEntry, base: str | None = None) -> str:
        """URL of ``entry``'s manifest at ``base`` (default: where the index came from)."""
        return f"{(base or self.base).rstrip('/')}/{manifest_relpath(entry.manifest_digest)}"

    def fetch_manifest(self, entry: IndexEntry, base: str | None = None) -> Manifest:
        """Fetch ``entry``'s manifest and check it against the signed digest and entry."""
        try:
            data = self._fetcher.fetch(self.manifest_url(entry, base)).__iter__()
            raw = b"".join(data)
        except tuf_exc.DownloadError as exc:
            raise RepositoryIndexError(f"cannot fetch manifest of {entry.path}: {exc}") from None
        return self.check_manifest(entry, raw)

    def check_manifest(self, entry: IndexEntry, raw: bytes) -> Manifest:
        """Parse manifest bytes for ``entry``, refusing any that does not match the index."""
        manifest = Manifest.parse(raw, expected_digest=entry.manifest_digest)
        if (manifest.path, manifest.size, manifest.chunk_size) != (
            entry.path,
            entry.size,
            entry.chunk_size,
        ) or manifest.digests.get("sha256") != entry.sha256:
            # Mix-and-match: a genuine manifest of another artifact.
            raise ManifestError(f"manifest {entry.manifest_digest} does not describe {entry.path}")
        return manifest


def _check_pinned_root(raw: bytes, pinned: Ed25519PublicKey) -> None:
    try:
        root = Metadata[Root].from_bytes(raw)
    except Exception as exc:  # python-tuf raises several kinds for garbage
        raise RepositoryIndexError(f"root metadata is malformed: {exc}") from None
    key = tuf_key(pinned)
    if key.keyid not in root.signed.roles[Root.type].keyids:
        raise RepositoryIndexError(f"root metadata is not for the pinned key {key.keyid[:16]}")
    signature = root.signatures.get(key.keyid)
    if signature is None:
        raise RepositoryIndexError("root metadata is not signed by the pinned key")
    try:
        key.verify_signature(signature, root.signed_bytes)
        root.signed.verify_delegate(Root.type, root.signed_bytes, root.signatures)
    except Exception:
        raise IntegrityError("root metadata signature does not verify") from None


def open_index(
    source: str,
    root_key: Ed25519PublicKey,
    *,
    state_dir: str | os.PathLike[str] | None = None,
    client: httpx.Client | None = None,
) -> TrustedIndex:
    """Fetch and verify the index at ``source`` (URL or directory) trusting ``root_key``.

    Raises :class:`RepositoryIndexError` (or :class:`IntegrityError` for bad
    signatures) naming the problem: unreachable, expired, rolled back, forged.
    """
    base = base_url(source)
    fetcher = Fetcher(client)
    pin = tuf_key(root_key).keyid
    state = Path(state_dir) if state_dir is not None else default_state_dir() / pin[:32]
    state.mkdir(parents=True, exist_ok=True)
    metadata_url = f"{base}/{METADATA_DIR}/"
    bootstrap: bytes | None = None
    if not (state / "root.json").exists():
        try:
            bootstrap = fetcher.download_bytes(metadata_url + "root.json", CONFIG.root_max_length)
        except tuf_exc.DownloadError as exc:
            raise RepositoryIndexError(f"cannot fetch the index from {base}: {exc}") from None
        _check_pinned_root(bootstrap, root_key)
    try:
        updater = Updater(
            str(state), metadata_url, fetcher=fetcher, config=CONFIG, bootstrap=bootstrap
        )
        updater.refresh()
    except tuf_exc.ExpiredMetadataError as exc:
        raise RepositoryIndexError(f"the index from {base} has expired: {exc}") from None
    except tuf_exc.BadVersionNumberError as exc:
        raise RepositoryIndexError(
            f"the index from {base} is older than one already seen (rollback refused): {exc}"
        ) from None
    except tuf_exc.UnsignedMetadataError as exc:
        raise IntegrityError(f"index signature check failed for {base}: {exc}") from None
    except tuf_exc.RepositoryError as exc:
        raise RepositoryIndexError(f"the index from {base} is not trustworthy: {exc}") from None
    except tuf_exc.DownloadError as exc:
        raise RepositoryIndexError(f"cannot fetch the index from {base}: {exc}") from None
    except (ValueError, OSError) as exc:
        raise RepositoryIndexError(f"cannot load the index from {base}: {exc}") from None
    # The updater stores each file only after verifying it: this copy is trusted.
    targets = Metadata[Targets].from_file(str(state / "targets.json"))
    return TrustedIndex(base, targets, fetcher)


def open_index_once(
    source: str, root_key: Ed25519PublicKey, *, client: httpx.Client | None = None
) -> TrustedIndex:
    """:func:`open_index` with throw-away trust state, removed afterwards.

    For one-off checks (``webseed verify``, ``export``): the signatures, expiry
    and consistency are checked, but no version is remembered for later runs.
    """
    with tempfile.TemporaryDirectory(prefix="webseed-trust-") as state:
        return open_index(source, root_key, state_dir=state, client=client)


def local_root_key(repo_dir: str | os.PathLike[str]) -> Ed25519PublicKey:
    """The first root key of a local repository (trust on the publisher's own disk)."""
    path = Path(repo_dir) / METADATA_DIR / "root.json"
    try:
        root = Metadata[Root].from_file(str(path))
        keyid = root.signed.roles[Root.type].keyids[0]
        raw = bytes.fromhex(root.signed.keys[keyid].keyval["public"])
        return Ed25519PublicKey.from_public_bytes(raw)
    except Exception as exc:  # missing, malformed, or not an Ed25519 key
        raise RepositoryIndexError(f"no usable root key in {path}: {exc}") from None
