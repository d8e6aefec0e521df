"""From a full artifact URL to the repository that signs it.

Users think in URLs such as ``https://mirror.example/debian/pool/main/w/x.deb``;
webseed needs the repository base (where ``.well-known/webseed/`` lives) and
the repository path. :func:`resolve_url` probes
``<prefix>/.well-known/webseed/metadata/root.json`` for the prefixes of the URL
path, concurrently with short time-outs, and picks the longest prefix that
answers with TUF root metadata (a nested repository wins over an outer one).

This finds the repository; it trusts nothing. The caller then opens the index
with its pinned root key (:func:`webseed.index.client.open_index`) and looks up
the path, so a server that answers a probe with a forged root is refused there.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx

from webseed.errors import RepositoryIndexError
from webseed.index.layout import METADATA_DIR

#: Most prefixes probed for one URL (the shallowest ones: repositories sit near the root).
MAX_PROBES = 12
#: Seconds allowed for each probe (connect and read).
PROBE_TIMEOUT = 3.0
#: Largest root.json accepted by a probe.
MAX_ROOT_BYTES = 512 * 1024


class Resolved(NamedTuple):
    """A repository base URL (no trailing slash) and the artifact's repository path."""

    base_url: str
    repo_path: str


def candidate_prefixes(url: str, max_probes: int = MAX_PROBES) -> list[tuple[str, str]]:
    """``(base_url, repo_path)`` candidates for ``url``, longest base first.

    Only ``http``/``https`` URLs with a non-empty path are accepted; query and
    fragment are dropped; the repository path is percent-decoded.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise RepositoryIndexError(f"{url!r} is not an http(s) URL")
    segments = parts.path.split("/")[1:]
    if not segments or not segments[-1]:
        raise RepositoryIndexError(f"{url!r} does not name a file")
    out = []
    # The base is everything before segment i; the file is never its own base.
    for i in range(min(len(segments) - 1, max_probes - 1), -1, -1):
        prefix = "/".join(segments[:i])
        base = urlunsplit((parts.scheme, parts.netloc, f"/{prefix}" if prefix else "", "", ""))
        try:
            path = unquote("/".join(segments[i:]), errors="strict")
        except UnicodeDecodeError:
            raise RepositoryIndexError(f"{url!r}: path is not UTF-8") from None
        out.append((base, path))
    return out


def _is_root(client: httpx.Client, base: str) -> bool:
    """Does ``base`` serve TUF root metadata? (Shape only; signatures are checked later.)"""
    try:
        with client.stream("GET", f"{base}/{METADATA_DIR}/root.json") as r:
            if r.status_code != 200:
                return False
            data = b""
            for chunk in r.iter_bytes():
                data += chunk
                if len(data) > MAX_ROOT_BYTES:
                    return False
        doc = json.loads(data)
        return isinstance(doc, dict) and doc.get("signed", {}).get("_type") == "root"
    except (httpx.HTTPError, ValueError, AttributeError):
        # Unreachable, not JSON, or a catch-all page: not a repository here.
        return False


def resolve_url(
    url: str,
    *,
    client: httpx.Client | None = None,
    max_probes: int = MAX_PROBES,
    timeout: float = PROBE_TIMEOUT,
) -> Resolved:
    """The repository covering ``url``: ``Resolved(base_url, repo_path)``.

    ``resolve_url("https://m.example/debian/pool/main/w/x.deb")`` →
    ``Resolved("https://m.example/debian", "pool/main/w/x.deb")`` when the
    repository is published at ``/debian``. Probes run concurrently (at most
    ``max_probes``, each bounded by ``timeout`` seconds); raises
    :class:`RepositoryIndexError` when no prefix serves a repository.
    """
    candidates = candidate_prefixes(url, max_probes)
    own = client is None
    http = client or httpx.Client(timeout=timeout, follow_redirects=True)
    try:
        with ThreadPoolExecutor(max_workers=min(8, len(candidates))) as pool:
            found = list(pool.map(lambda c: _is_root(http, c[0]), candidates))
    finally:
        if own:
            http.close()
    for (base, path), ok in zip(candidates, found, strict=True):
        if ok:
            return Resolved(base, path)
    raise RepositoryIndexError(
        f"no webseed repository found for {url} "
        f"(probed {len(candidates)} prefix(es) for /{METADATA_DIR}/root.json)"
    )
