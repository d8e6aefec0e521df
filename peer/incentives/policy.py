"""Seeding policy of the standalone peer: keep seeding after completion until a goal is met.

By default a completed artifact keeps being offered until the peer has uploaded
``ratio`` times its size (default 2.0) **or** has seeded it for ``seconds``
(default 7 days), whichever comes first, and never less than ``min_seconds``
(default 1 hour) so that just-finished peers help the swarm that just helped
them. ``ratio=None`` and ``seconds=None`` mean "seed forever". Pure: the
caller passes the counters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DAY = 86400.0


@dataclass(frozen=True)
class SeedingPolicy:
    """When to stop seeding a completed artifact."""

    ratio: float | None = 2.0
    seconds: float | None = 7 * DAY
    min_seconds: float = 3600.0

    def __post_init__(self) -> None:
        if self.ratio is not None and self.ratio < 0:
            raise ValueError("ratio goal must be >= 0")
        if self.seconds is not None and self.seconds < 0:
            raise ValueError("time goal must be >= 0")
        if self.min_seconds < 0:
            raise ValueError("min_seconds must be >= 0")

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SeedingPolicy:
        """From a config mapping with optional ``ratio``, ``seconds``/``days``, ``min_seconds``.

        A value of ``"forever"`` or ``None`` disables that goal.
        """

        def goal(value: Any) -> float | None:
            return None if value in (None, "forever", "inf") else float(value)

        seconds = config.get("seconds", cls.seconds)
        if "days" in config:
            days = goal(config["days"])
            seconds = None if days is None else days * DAY
        return cls(
            ratio=goal(config.get("ratio", cls.ratio)),
            seconds=goal(seconds),
            min_seconds=float(config.get("min_seconds", cls.min_seconds)),
        )

    def decide(self, *, size: int, uploaded: int, seeded_seconds: float) -> tuple[bool, str]:
        """(keep seeding?, why)."""
        if seeded_seconds < self.min_seconds:
            return True, "minimum seeding time not reached"
        if self.ratio is not None and size > 0 and uploaded >= self.ratio * size:
            return False, f"ratio goal {self.ratio:g} reached"
        if self.seconds is not None and seeded_seconds >= self.seconds:
            return False, f"time goal {self.seconds / DAY:g} days reached"
        return True, "goal not reached"

    def keep_seeding(self, *, size: int, uploaded: int, seeded_seconds: float) -> bool:
        """True while the artifact should still be offered."""
        return self.decide(size=size, uploaded=uploaded, seeded_seconds=seeded_seconds)[0]
