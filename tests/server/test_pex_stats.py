"""Peer exchange hook and the bounded stats tables."""

from __future__ import annotations

from pathlib import Path

import httpx

from webseed.server.app import create_app
from webseed.server.pex import MAX_ANNOUNCEMENTS, MemoryPexStore, PexSource
from webseed.server.standalone import running
from webseed.server.stats import ANONYMOUS, OTHER, Stats


def test_memory_pex_store_is_bounded_and_newest_first() -> None:
    store = MemoryPexStore(capacity=3)
    assert isinstance(store, PexSource)
    for i in range(5):
        store.add(f"peer{i}", {"peer": f"peer{i}", "sig": "..."})
    store.add("peer3", {"peer": "peer3", "sig": "newer"})
    assert [a["peer"] for a in store.announcements(10)] == ["peer3", "peer4", "peer2"]
    assert store.announcements(1) == [{"peer": "peer3", "sig": "newer"}]


def test_pex_endpoint_publishes_the_hook_bounded(tmp_path: Path) -> None:
    store = MemoryPexStore(capacity=500)
    for i in range(200):
        store.add(f"k{i}", {"peer": f"k{i}", "url": f"http://198.18.0.{i}:8470"})
    with running(create_app(tmp_path, pex=store)) as url:
        body = httpx.get(f"{url}/.well-known/webseed/pex").json()
    assert len(body["announcements"]) == MAX_ANNOUNCEMENTS
    assert body["announcements"][0]["peer"] == "k199"


def test_stats_tables_are_bounded() -> None:
    stats = Stats(limit=2)
    stats.served("a", "p1", 10)
    stats.served("b", "", 5)
    stats.served("c", "p3", 1)  # a third key of each table lands in (other)
    snap = stats.snapshot()
    assert snap["per_artifact"] == {"a": 10, "b": 5, OTHER: 1}
    assert snap["per_peer"] == {"p1": 10, ANONYMOUS: 5, OTHER: 1}
    assert snap["bytes_served"] == 16
