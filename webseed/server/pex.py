"""Peer exchange: the bounded list of other peers' signed self-announcements.

The server only publishes what a :class:`PexSource` holds. Verifying and
collecting announcements is the discovery layer's job; it plugs in its own
source (or feeds :class:`MemoryPexStore`). The server never invents entries.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

#: Most announcements one ``pex`` response carries.
MAX_ANNOUNCEMENTS = 50


@runtime_checkable
class PexSource(Protocol):
    """Where the server gets the announcements it publishes."""

    def announcements(self, limit: int) -> list[Mapping[str, Any]]:
        """At most ``limit`` signed announcements (JSON objects), freshest first."""
        ...


class MemoryPexStore:
    """An in-memory, bounded store: the newest ``capacity`` announcements by key.

    ``add`` expects an announcement already verified by its caller; the key
    (e.g. the announcing peer's public key) replaces that peer's older entry.
    """

    def __init__(self, capacity: int = 256) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, Mapping[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, key: str, announcement: Mapping[str, Any]) -> None:
        """Store ``announcement`` for ``key``, evicting the oldest beyond capacity."""
        with self._lock:
            self._items.pop(key, None)
            self._items[key] = announcement
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def announcements(self, limit: int) -> list[Mapping[str, Any]]:
        """The newest ``limit`` announcements, newest first."""
        with self._lock:
            return list(reversed(self._items.values()))[:limit]
