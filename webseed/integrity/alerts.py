"""Tamper alerts: one structured record per failed check, to callbacks, a logger and JSON lines.

Every failed integrity check (chunk digest, whole-file digest, size, manifest
digest, signature, index) becomes a :class:`TamperAlert` naming what failed,
where, from which source, and the expected and actual values. Alerts are only
ever about failures: nothing here can mark data as verified.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import IO

log = logging.getLogger("webseed.tamper")

KINDS = frozenset(
    {"chunk-digest", "file-digest", "size", "manifest-digest", "signature", "index", "missing"}
)


@dataclass(frozen=True)
class TamperAlert:
    """A failed integrity check."""

    kind: str
    artifact: str
    message: str
    chunk: int | None = None
    source: str | None = None
    expected: str | None = None
    actual: str | None = None
    time: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown alert kind {self.kind!r}")

    def to_json(self) -> str:
        """One JSON line (no trailing newline)."""
        return json.dumps(asdict(self), sort_keys=True)


class AlertSink:
    """Fans alerts out to callbacks, the ``webseed.tamper`` logger and a JSON-lines stream."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._callbacks: list[Callable[[TamperAlert], None]] = []
        self._stream = stream
        self._lock = threading.Lock()
        self.alerts: list[TamperAlert] = []

    def subscribe(self, callback: Callable[[TamperAlert], None]) -> None:
        """Call ``callback(alert)`` for every future alert."""
        self._callbacks.append(callback)

    def emit(self, alert: TamperAlert) -> None:
        """Record and deliver one alert."""
        with self._lock:
            self.alerts.append(alert)
            if self._stream is not None:
                self._stream.write(alert.to_json() + "\n")
                self._stream.flush()
        log.warning("tamper: %s %s: %s", alert.kind, alert.artifact, alert.message)
        for callback in list(self._callbacks):
            callback(alert)
