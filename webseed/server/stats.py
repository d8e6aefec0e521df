"""Upload statistics: bytes served per artifact and per requesting peer, bounded in size."""

from __future__ import annotations

import threading
from typing import Any

#: Key under which traffic beyond the table bound is counted.
OTHER = "(other)"
#: Key for requests without a (valid) peer identity header.
ANONYMOUS = "(anonymous)"


class _Counter:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.table: dict[str, int] = {}

    def add(self, key: str, nbytes: int) -> None:
        if key not in self.table and len(self.table) >= self.limit:
            key = OTHER  # a flood of fresh identities cannot grow memory
        self.table[key] = self.table.get(key, 0) + nbytes


class Stats:
    """Thread-safe counters of uploaded bytes; at most ``limit`` keys per table."""

    def __init__(self, limit: int = 1024) -> None:
        self._lock = threading.Lock()
        self._artifacts = _Counter(limit)
        self._peers = _Counter(limit)
        self.requests = 0
        self.refused = 0
        self.bytes_total = 0

    def served(self, artifact: str, peer: str, nbytes: int) -> None:
        """Count ``nbytes`` of ``artifact`` sent to ``peer``."""
        with self._lock:
            self._artifacts.add(artifact, nbytes)
            self._peers.add(peer or ANONYMOUS, nbytes)
            self.bytes_total += nbytes

    def request(self, *, refused: bool = False) -> None:
        """Count one artifact request (and whether capacity refused it)."""
        with self._lock:
            self.requests += 1
            self.refused += refused

    def snapshot(self) -> dict[str, Any]:
        """The counters as JSON-ready data."""
        with self._lock:
            return {
                "bytes_served": self.bytes_total,
                "requests": self.requests,
                "refused_over_capacity": self.refused,
                "per_artifact": dict(self._artifacts.table),
                "per_peer": dict(self._peers.table),
            }
