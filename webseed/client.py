"""High-level download API: signed index → manifest → verified swarm download.

    report = asyncio.run(get_artifact(
        "releases/foo-1.2.iso", root_key=Path("publisher.pub"), out=Path("foo.iso"),
        peers=["http://10.0.0.5:8000"], mirrors=["https://mirror.example/pub"]))

The index is verified against the pinned root key (TUF rules: signatures,
expiry, rollback), the artifact's manifest is fetched from any source and
checked against the digest the index signs, then the swarm engine fetches the
chunks, verifying each before it counts. Interrupted downloads resume from
``<out>.part`` and its journal.

With an ``identity`` every request to a peer is signed (``Webseed-Peer``), so
peers with incentives on credit and prioritise us; mirrors get plain requests.
With ``discover``, peers found by peer exchange join the running download
(:class:`peer.engine.more_sources.PexFinder`: the download's own peers, the
``bootstrap`` peers and the peers remembered in ``discovery_dir`` are asked),
and the peers that served it are remembered there for the next run.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from peer.discovery.bootstrap import load_last_served, save_last_served
from peer.engine import DownloadReport, SourceSpec, download
from peer.engine.driver import Progress
from peer.engine.identity import SwarmAuth
from peer.engine.more_sources import PexFinder
from peer.incentives.identity import PeerIdentity
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


def open_first_index(
    bases: Sequence[str], key: Ed25519PublicKey, state_dir: Path | None
) -> TrustedIndex:
    """The signed index from the first of ``bases`` that serves a trustworthy one.

    Any peer or mirror can serve the index; an unreachable or blocked one is
    skipped (connect time-outs are short), a forged or stale one too, and the
    last error is raised when none works.
    """
    last: WebseedError = RepositoryIndexError("no source to fetch the index from")
    for base in dict.fromkeys(bases):
        try:
            return open_index(base, key, state_dir=state_dir)
        except (RepositoryIndexError, IntegrityError) as exc:
            last = exc
    raise last


def choose_index_mirrors(
    index: TrustedIndex,
    given: Sequence[str],
    *,
    limit: int = 4,
    client_ip: str | None = None,
) -> tuple[list[str], list[dict[str, Any]]]:
    """Which of the index's signed mirrors join the download, and why the others do not.

    With the ``[geo]`` extra the mirrors are ranked by proximity to ``client_ip``
    (GeoIP) and announced capacity; once the download runs, measured rates decide
    how much each one serves. Without it, the index's order is kept.
    """
    taken = {g.rstrip("/") for g in given}
    records = [m for m in index.mirrors if str(m["url"]).rstrip("/") not in taken]
    if not records:
        return [], []
    try:
        from geo.discovery import mirrors_from_index
        from geo.policy import MirrorPolicy
        from geo.proximity import open_locator
    except ImportError:  # the bootstrap install: no ranking, index order
        urls = [str(m["url"]) for m in records]
        skipped = [{"url": u, "why": f"beyond the first {limit} (no [geo] extra)"} for u in urls]
        return urls[:limit], skipped[limit:]
    place = None
    if client_ip:
        locator = open_locator(None)
        if locator is not None:
            with locator:
                place = locator.locate(client_ip)
    policy = MirrorPolicy(mirrors_from_index(records), client=place)
    chosen = [m.url.rstrip("/") for m in policy.candidates(0.0, limit)]
    skipped = [
        {"url": str(row["url"]), "why": f"ranked {row['rank']}, below the top {limit}"}
        for row in policy.report(0.0)
        if str(row["url"]).rstrip("/") not in chosen
    ]
    return chosen, skipped


def _hash_sha256(file: Path) -> str:
    from webseed.integrity.digests import hash_file

    return hash_file(file, 1 << 22, ["sha256"]).digests["sha256"]


async def _patch_route(
    index: TrustedIndex, manifest: Manifest, have: str, bases: Sequence[str]
) -> list[Any]:
    """Cheapest patch route from the file with sha256 ``have`` to ``manifest`` (may be empty).

    Walks back from the target through the index: a link's base is found by its
    sha256 among the index entries, whose manifests hold their own links (chains).
    """
    from patches.chain import plan_route

    by_sha = {index.lookup(p).sha256: p for p in index.paths()}
    links: dict[str, tuple[Any, ...]] = {manifest.digests["sha256"]: manifest.patches}
    frontier = [manifest]
    fetched = 0
    while frontier and fetched < 16:
        current = frontier.pop()
        for link in current.patches:
            base_path = by_sha.get(link.base_digest)
            if base_path is None or link.base_digest in links or link.base_digest == have:
                continue
            base_manifest = await asyncio.to_thread(
                fetch_manifest, index, index.lookup(base_path), bases
            )
            fetched += 1
            links[link.base_digest] = base_manifest.patches
            frontier.append(base_manifest)
    route = plan_route({have}, manifest.digests["sha256"], manifest.size, links)
    return list(route.patches)


async def update_from(
    index: TrustedIndex,
    manifest: Manifest,
    old_file: Path,
    sources: Sequence[SourceSpec],
    out: Path,
    **kwargs: Any,
) -> DownloadReport | None:
    """Rebuild ``manifest``'s artifact from ``old_file`` with patches from the swarm.

    Returns ``None`` when no patch route is cheaper than the full download (the
    caller then downloads the artifact). Each patch is an ordinary artifact: signed
    in the index, fetched chunk-verified from the same sources; the rebuilt file is
    verified against ``manifest`` before it replaces ``out``.
    """
    try:
        from patches.client import rebuild
    except ImportError:
        return None
    have = await asyncio.to_thread(_hash_sha256, old_file)
    bases = [s.base for s in sources]
    route = await _patch_route(index, manifest, have, bases)
    if not route:
        return None
    t0 = time.perf_counter()
    reports = []
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.patches-") as tmp:
        files = []
        for i, link in enumerate(route):
            pentry = index.lookup(link.path)
            pmanifest = await asyncio.to_thread(fetch_manifest, index, pentry, bases)
            if pmanifest.digest != link.manifest:
                raise ManifestError(f"patch {link.path}: manifest is not the one linked")
            dest = Path(tmp) / f"{i}.wsp"
            reports.append(await download(pmanifest, sources, dest, **kwargs))
            files.append(dest)
        await asyncio.to_thread(rebuild, old_file, files, manifest, out)
    report = reports[-1]
    patch_bytes = sum(link.size for link in route)
    report.path, report.size, report.output = manifest.path, manifest.size, str(out)
    report.fetched_bytes = sum(r.fetched_bytes for r in reports)
    report.elapsed = time.perf_counter() - t0
    report.notes["patch"] = {
        "from_sha256": have,
        "chain": [
            {"path": link.path, "from_version": link.from_version, "size": link.size}
            for link in route
        ],
        "patch_bytes": patch_bytes,
        "full_bytes": manifest.size,
        "saved_bytes": manifest.size - patch_bytes,
        "saved_pct": round(100.0 * (1 - patch_bytes / manifest.size), 2) if manifest.size else 0.0,
    }
    return report


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
    index_mirrors: int = 4,
    client_ip: str | None = None,
    from_file: Path | None = None,
    identity: PeerIdentity | None = None,
    discover: bool = False,
    bootstrap: Sequence[str] = (),
    discovery_dir: Path | None = None,
) -> DownloadReport:
    """Download repository ``path`` to ``out``, every byte verified; return the report.

    ``index_url`` defaults to the first peer, else the first mirror. Up to
    ``index_mirrors`` of the mirrors signed into the index join the download
    (ranked by :func:`choose_index_mirrors`). With ``from_file`` (an earlier
    version), the cheapest patch route is used when one exists. ``identity``,
    ``discover``, ``bootstrap`` and ``discovery_dir``: see the module docstring
    (``bootstrap`` implies ``discover``; without ``discovery_dir`` nothing is
    remembered).
    """
    sources = sources_from(peers, mirrors)
    if not sources and not index_url:
        raise NoSourcesError("give at least one --peer, --mirror or --index")
    t0 = time.perf_counter()
    key = load_public_key(root_key)
    index = await asyncio.to_thread(
        open_first_index, [index_url] if index_url else [s.base for s in sources], key, state_dir
    )
    index_base = index.base
    chosen, skipped = choose_index_mirrors(
        index, [s.base for s in sources], limit=index_mirrors, client_ip=client_ip
    )
    sources += [SourceSpec(u, "mirror") for u in chosen]
    if not sources:
        # The index's own location serves the static tree: it is a mirror too.
        sources = [SourceSpec(index_base, "mirror")]
    entry = index.lookup(path)
    manifest = await asyncio.to_thread(fetch_manifest, index, entry, [s.base for s in sources])
    index_s = time.perf_counter() - t0
    kwargs: dict[str, Any] = {
        "seed": seed,
        "config": config,
        "give_up_after": give_up_after,
        "on_progress": on_progress,
    }
    mirror_bases = [s.base for s in sources if s.kind == "mirror"]
    if identity is not None:
        kwargs["auth"] = SwarmAuth(identity, unsigned=mirror_bases)
    finder = None
    if discover or bootstrap:
        remembered = load_last_served(discovery_dir) if discovery_dir is not None else []
        finder = PexFinder(
            manifest.digest,
            bootstrap=bootstrap,
            candidates=[p["url"] for p in remembered],
            self_id=identity.peer_id if identity is not None else "",
        )
    report = None
    if out.exists() and not Path(f"{out}.part").exists():
        # Finished before (perhaps killed after the final rename): check, do not re-fetch.
        from webseed.integrity.verify import verify_file

        if (await asyncio.to_thread(verify_file, out, manifest)).ok:
            report = DownloadReport(path=manifest.path, size=manifest.size, output=str(out))
            report.resumed_chunks = manifest.chunk_count
            report.notes["already_complete"] = True
    if report is None and from_file is not None:
        report = await update_from(index, manifest, from_file, sources, out, **kwargs)
    if report is None:
        report = await download(manifest, sources, out, finder=finder, **kwargs)
    report.phases["index"] = index_s
    report.notes["index_mirrors"] = {"used": chosen, "skipped": skipped}
    report.notes["identity"] = identity.peer_id if identity is not None else None
    if finder is not None:
        report.notes["discovery"] = finder.report()
        served = {s.url: s.bytes for s in report.sources if s.kind == "peer" and s.bytes > 0}
        if discovery_dir is not None and served:
            await asyncio.to_thread(save_last_served, discovery_dir, served)
    return report
