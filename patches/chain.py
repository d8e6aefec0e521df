"""Version chains: the cheapest way from the version we hold to the one we want.

A pure function over the patch links the index publishes (``webseed.manifest.PatchLink``):
Dijkstra over versions, edge cost = patch bytes, plus the full download as a
fallback edge. Each link says "apply ``path`` to the file whose sha256 is
``base_digest`` to get this artifact".
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from patches.errors import RouteError
from webseed.manifest import PatchLink


@dataclass(frozen=True)
class Route:
    """The chosen route: patches to apply in order (empty = full download) and its cost."""

    patches: tuple[PatchLink, ...]
    bytes_to_fetch: int
    full_download: bool

    @property
    def hops(self) -> int:
        """Number of patches to apply."""
        return len(self.patches)


def plan_route(
    have: Iterable[str],
    target_digest: str,
    target_size: int,
    links: Mapping[str, Iterable[PatchLink]],
    *,
    max_hops: int = 16,
) -> Route:
    """Cheapest route to ``target_digest`` from any base digest in ``have``.

    ``links`` maps an artifact's sha256 (hex) to the patch links of its manifest
    (patches that produce it). Costs are bytes to fetch; a full download costs
    ``target_size``; ties prefer fewer hops. Routes longer than ``max_hops`` are ignored.
    """
    if target_size < 0 or max_hops < 0:
        raise RouteError("negative size or hop limit")
    held = set(have)
    if target_digest in held:
        return Route((), 0, False)
    # Search backwards from the target: we know which links produce each digest.
    best: dict[str, tuple[int, int]] = {target_digest: (0, 0)}
    via: dict[str, tuple[PatchLink, str]] = {}
    heap: list[tuple[int, int, str]] = [(0, 0, target_digest)]
    found: tuple[int, int, str] | None = None
    while heap:
        cost, hops, digest = heapq.heappop(heap)
        if (cost, hops) != best.get(digest):
            continue
        if digest in held:
            found = (cost, hops, digest)
            break
        if hops >= max_hops:
            continue
        for link in links.get(digest, ()):
            if link.size < 0:
                raise RouteError(f"patch {link.path} has a negative size")
            nxt = (cost + link.size, hops + 1)
            if nxt < best.get(link.base_digest, (1 << 62, 0)):
                best[link.base_digest] = nxt
                via[link.base_digest] = (link, digest)
                heapq.heappush(heap, (*nxt, link.base_digest))
    if found is None or found[0] >= target_size:
        return Route((), target_size, True)
    chain: list[PatchLink] = []
    digest = found[2]
    while digest != target_digest:
        link, digest = via[digest]
        chain.append(link)
    return Route(tuple(chain), found[0], False)
