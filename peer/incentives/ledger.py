"""Per-identity, per-artifact accounting of bytes exchanged, with exponential decay.

``up`` counts bytes *we* uploaded to a peer, ``down`` bytes it uploaded to us
(its direct contribution to us). Both decay with a half-life (default 7 days),
so a peer cannot live forever on one old contribution: after ``k`` half-lives
only ``2**-k`` of it is left. Decay is applied lazily: each entry stores its
values as of ``stamp`` and is brought forward on access.

The ledger is bounded (``max_entries``): a flood of fresh identities pushes out
the smallest entries, never the big contributors. It persists to one JSON file
replaced atomically (:mod:`.store`), so a crash leaves the previous or the new
state, never a torn one. All methods take ``now`` (unix seconds) from the
caller; the ledger reads no clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import log
from .store import read_json, write_json

DAY = 86400.0
FORMAT = "webseed-ledger-v1"


@dataclass
class Entry:
    """Decayed byte counts as of ``stamp``."""

    up: float = 0.0
    down: float = 0.0
    stamp: float = 0.0

    def at(self, now: float, half_life: float) -> Entry:
        """This entry decayed forward to ``now`` (never backward: clocks can step back)."""
        dt = max(0.0, now - self.stamp)
        f = math.exp2(-dt / half_life) if dt else 1.0
        return Entry(self.up * f, self.down * f, max(now, self.stamp))


class Ledger:
    """Up/down bytes per (peer id, artifact), decaying, bounded, optionally persisted."""

    def __init__(
        self,
        path: Path | None = None,
        *,
        half_life: float = 7 * DAY,
        max_entries: int = 100_000,
    ) -> None:
        if half_life <= 0 or max_entries <= 0:
            raise ValueError("half_life and max_entries must be positive")
        self.path = path
        self.half_life = half_life
        self.max_entries = max_entries
        self._entries: dict[tuple[str, str], Entry] = {}
        if path is not None:
            self._load(path)

    def _load(self, path: Path) -> None:
        data = read_json(path)
        if data is None:
            return
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            log.warning("ledger %s has an unknown format; ignored", path)
            return
        for row in data.get("entries", []):
            try:
                peer, artifact, up, down, stamp = row
                entry = Entry(float(up), float(down), float(stamp))
            except (TypeError, ValueError):
                log.warning("ledger %s: skipped malformed row", path)
                continue
            ok = all(math.isfinite(v) and v >= 0 for v in (entry.up, entry.down, entry.stamp))
            if ok and isinstance(peer, str) and isinstance(artifact, str):
                self._entries[(peer, artifact)] = entry

    def save(self) -> None:
        """Write the ledger to its file atomically (no-op for an in-memory ledger)."""
        if self.path is None:
            return
        rows = [[p, a, e.up, e.down, e.stamp] for (p, a), e in sorted(self._entries.items())]
        write_json(self.path, {"format": FORMAT, "half_life": self.half_life, "entries": rows})

    def _touch(self, peer: str, artifact: str, now: float) -> Entry:
        key = (peer, artifact)
        entry = self._entries.get(key)
        entry = entry.at(now, self.half_life) if entry else Entry(stamp=now)
        self._entries[key] = entry
        if len(self._entries) > self.max_entries:
            self._prune(now, keep=key)
        return entry

    def _prune(self, now: float, keep: tuple[str, str]) -> None:
        # Drop the smallest tenth at once so pruning is amortised O(1) per insert.
        def size(item: tuple[tuple[str, str], Entry]) -> float:
            e = item[1].at(now, self.half_life)
            return e.up + e.down

        ranked = sorted(self._entries.items(), key=size)
        for key, _ in ranked[: max(1, self.max_entries // 10)]:
            if key != keep:
                del self._entries[key]

    def record_upload(self, peer: str, artifact: str, nbytes: int, now: float) -> None:
        """We sent ``nbytes`` of ``artifact`` to ``peer``."""
        if nbytes < 0:
            raise ValueError("negative byte count")
        self._touch(peer, artifact, now).up += nbytes

    def record_download(self, peer: str, artifact: str, nbytes: int, now: float) -> None:
        """``peer`` sent us ``nbytes`` of ``artifact`` (verified bytes only, please)."""
        if nbytes < 0:
            raise ValueError("negative byte count")
        self._touch(peer, artifact, now).down += nbytes

    def get(self, peer: str, artifact: str, now: float) -> Entry:
        """Decayed counts for one peer and artifact (zeros if unknown)."""
        entry = self._entries.get((peer, artifact))
        return entry.at(now, self.half_life) if entry else Entry(stamp=now)

    def totals(self, peer: str, now: float) -> Entry:
        """Decayed counts for one peer over all artifacts."""
        total = Entry(stamp=now)
        for (p, _), entry in self._entries.items():
            if p == peer:
                e = entry.at(now, self.half_life)
                total.up += e.up
                total.down += e.down
        return total

    def credit(self, peer: str, now: float) -> float:
        """Direct contribution of ``peer`` to us: decayed bytes it uploaded to us."""
        return self.totals(peer, now).down

    def peers(self) -> set[str]:
        """Every peer id with an entry."""
        return {p for p, _ in self._entries}

    def summary(self, now: float) -> dict[str, Any]:
        """Totals per artifact and overall, for stats output."""
        per: dict[str, dict[str, float]] = {}
        for (_, artifact), entry in self._entries.items():
            e = entry.at(now, self.half_life)
            row = per.setdefault(artifact, {"up": 0.0, "down": 0.0})
            row["up"] += e.up
            row["down"] += e.down
        up = sum(r["up"] for r in per.values())
        down = sum(r["down"] for r in per.values())
        return {"peers": len(self.peers()), "up": up, "down": down, "artifacts": per}
