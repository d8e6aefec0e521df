"""Actions the :class:`~peer.scheduler.Scheduler` asks its driver to carry out."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Request:
    """GET bytes ``start .. end`` (end exclusive) from ``source``: chunks ``first .. last``.

    Adjacent chunks from one source are coalesced into one ranged request, so
    ``first <= last`` and ``start``/``end`` are the chunks' byte boundaries. The
    driver reports progress with ``RequestStarted``/``BytesReceived`` (body
    bytes in order), ``ChunkVerified``/``ChunkCorrupt`` for each chunk as its
    bytes complete, then ``RequestDone`` or ``RequestFailed``.
    """

    id: int
    source: str
    first: int
    last: int
    start: int
    end: int

    @property
    def chunks(self) -> range:
        """The chunk indexes this request carries."""
        return range(self.first, self.last + 1)

    @property
    def length(self) -> int:
        """Bytes requested."""
        return self.end - self.start


@dataclass(frozen=True)
class Cancel:
    """Abort request ``id``: its chunks are verified elsewhere, it stalled, or its source is out.

    The scheduler has already forgotten the request; further events about it are ignored.
    """

    id: int
    source: str
    reason: str


@dataclass(frozen=True)
class Ban:
    """Never use ``source`` again in this download (it sent corrupt data)."""

    source: str
    reason: str


@dataclass(frozen=True)
class NeedMoreSources:
    """Some missing chunks have no usable source; ``missing`` is how many chunks lack one."""

    missing: int
    reason: str


@dataclass(frozen=True)
class FallBackToMirrors:
    """The peers alone cannot finish (or are too slow): add mirrors if any are held back."""

    reason: str


@dataclass(frozen=True)
class Finished:
    """Every chunk is verified. Emitted once."""


Action = Request | Cancel | Ban | NeedMoreSources | FallBackToMirrors | Finished
