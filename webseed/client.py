"""High-level download API: signed index → manifest → verified swarm download.

    report = asyncio.run(get_artifact(
        "releases/foo-1.2.iso", root_key=Path("publisher.pub"), out=Path("foo.iso"),
        peers=["http://10.0.0.5:8000"], mirrors=["https://mirror.example/pub"]))

The index is verified against the pinned root key (TUF rules: signatures,
expiry, rollback), the artifact's manifest is fetched from any source and
checked against the digest the index signs, then the swarm engine fetches the
chunks, verifying each before it counts. Interrupted downloads resume from
``<out>.part`` and its journal.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

from peer.engine import DownloadReport, SourceSpec, download
from peer.engine.driver import Progress
from peer.scheduler import SchedulerConfig
from webseed.errors import IntegrityError, ManifestError, RepositoryIndexError, WebseedError
from webseed.index.client import IndexEntry, TrustedIndex, open_index
from webseed.integrity.keys import load_public_key
from webseed.manifest import Manifest


class NoSourcesError(WebseedError):
    """No peer or mirror was given to download from."""


def sources_from(peers: Sequence[str], mirrors: Sequence[str]) -> list[SourceSpec]:
    """Peers then mirrors as engine sources."""
    return [SourceSpec(u, "peer") for u in peers] + [SourceSpec(u, "mirror") for u in mirrors]


def fetch_manifest(index: TrustedIndex, entry: IndexEntry, bases: Sequence[str]) -> Manifest:
    """``entry``'s manifest from the first base that serves a genuine one.

    A source serving a forged or wrong manifest is skipped; if none serves a
    genuine one, the last error is raised.
    """
    last: WebseedError = RepositoryIndexError(f"no source to fetch the manifest of {entry.path}")
    for base in dict.fromkeys([index.base, *bases]):
        try:
            return index.fetch_manifest(entry, base)
        except (RepositoryIndexError, IntegrityError, ManifestError) as exc:
            last = exc
    raise last


async def get_artifact(
    path: str,
    *,
    root_key: Path,
    out: Path,
    peers: Sequence[str] = (),
    mirrors: Sequence[str] = (),
    index_url: str | None = None,
    state_dir: Path | None = None,
    seed: int | None = None,
    config: SchedulerConfig | None = None,
    give_up_after: float = 30.0,
    on_progress: Progress | None = None,
) -> DownloadReport:
    """Download repository ``path`` to ``out``, every byte verified; return the report.

    ``index_url`` defaults to the first peer, else the first mirror.
    """
    sources = sources_from(peers, mirrors)
    if not sources:
        raise NoSourcesError("give at least one --peer or --mirror")
    index_base = index_url or sources[0].base
    t0 = time.perf_counter()
    key = load_public_key(root_key)
    index = await asyncio.to_thread(open_index, index_base, key, state_dir=state_dir)
    entry = index.lookup(path)
    manifest = await asyncio.to_thread(fetch_manifest, index, entry, [s.base for s in sources])
    index_s = time.perf_counter() - t0
    report = await download(
        manifest,
        sources,
        out,
        seed=seed,
        config=config,
        give_up_after=give_up_after,
        on_progress=on_progress,
    )
    report.phases["index"] = index_s
    return report
