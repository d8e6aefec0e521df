"""Route planning over patch links: direct, chained, or full download."""

from __future__ import annotations

import pytest

from patches.chain import plan_route
from patches.errors import RouteError
from webseed.manifest import PatchLink

D = {v: f"{i:064x}" for i, v in enumerate(["1.0", "1.1", "1.2", "1.3", "2.0"], start=1)}


def link(frm: str, size: int) -> PatchLink:
    return PatchLink(
        from_version=frm, base_digest=D[frm], path=f"p/{frm}.wsp", size=size, manifest="ab" * 32
    )


def test_direct_vs_chain_vs_full() -> None:
    links = {
        D["1.3"]: [link("1.2", 100), link("1.0", 900)],
        D["1.2"]: [link("1.1", 100)],
        D["1.1"]: [link("1.0", 100)],
    }
    route = plan_route([D["1.0"]], D["1.3"], 10_000, links)
    assert [p.from_version for p in route.patches] == ["1.0", "1.1", "1.2"]
    assert route.bytes_to_fetch == 300 and route.hops == 3 and not route.full_download
    assert plan_route([D["1.0"]], D["1.3"], 10_000, links, max_hops=1).bytes_to_fetch == 900
    # The full file is cheaper than any chain: download it.
    full = plan_route([D["1.0"]], D["1.3"], 250, links)
    assert full.full_download and full.bytes_to_fetch == 250 and not full.patches
    # Several held versions: the nearest wins.
    assert plan_route([D["1.0"], D["1.2"]], D["1.3"], 10_000, links).bytes_to_fetch == 100
    assert plan_route([D["1.3"]], D["1.3"], 10_000, links).bytes_to_fetch == 0


def test_missing_link_means_full_download() -> None:
    links = {D["1.3"]: [link("1.2", 100)]}  # 1.1 -> 1.2 missing
    route = plan_route([D["1.1"]], D["1.3"], 5_000, links)
    assert route.full_download and route.bytes_to_fetch == 5_000


def test_cycles_and_bad_input() -> None:
    links = {D["1.1"]: [link("1.2", 10)], D["1.2"]: [link("1.1", 10)], D["2.0"]: [link("1.2", 50)]}
    assert plan_route([D["1.1"]], D["2.0"], 1_000, links).bytes_to_fetch == 60
    with pytest.raises(RouteError):
        plan_route([D["1.0"]], D["2.0"], -1, links)
    with pytest.raises(RouteError):
        plan_route([D["1.0"]], D["2.0"], 100, {D["2.0"]: [link("1.2", -5)]})
