"""Tunables of the scheduler, with the reasons for their defaults."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SchedulerConfig:
    """Knobs of :class:`~peer.scheduler.Scheduler`. Times in seconds, rates in bytes/s."""

    #: Rate assumed for a source not yet measured: small, so first requests are short
    #: and the first chunks arrive quickly (fast start).
    initial_rate: float = 2 * 1024 * 1024
    #: Latency assumed for a source not yet measured.
    initial_latency: float = 0.05
    #: Weight of a new sample in the throughput/latency moving averages.
    ewma_alpha: float = 0.3
    #: Throughput is sampled over windows at least this long (a rate over a few ms is noise).
    rate_window: float = 0.2
    #: A request aims to keep its source busy this long: longer means fewer requests
    #: (what servers want, libtorrent #1405), shorter means faster reaction.
    request_seconds: float = 2.0
    #: Largest single ranged request in bytes.
    max_request_bytes: int = 256 * 1024 * 1024
    #: Keep at least this many seconds of a source's rate requested beyond what is
    #: received, on top of two round trips (its bandwidth-delay product).
    pipeline_seconds: float = 0.5
    #: Never more requests in flight per source than this.
    max_requests_per_source: int = 4
    #: This many first chunks are picked among the most common (a quick first success)
    #: rather than the rarest.
    fast_start_chunks: int = 4
    #: No byte for this long (or ``stall_latencies`` latencies if longer): the request
    #: stalled; cancel it and re-issue its chunks elsewhere.
    stall_timeout: float = 3.0
    stall_latencies: float = 8.0
    #: First back-off after a failure; doubles per consecutive failure up to ``max_backoff``.
    base_backoff: float = 0.5
    max_backoff: float = 60.0
    #: End-game: an idle source duplicates the last chunk in flight elsewhere only if it
    #: would finish it at least this fraction sooner than the source now carrying it.
    endgame_gain: float = 0.3
    #: A source whose measured rate is below this fraction of the sum of all measured
    #: rates costs more than it brings (kiwix #408) and gets no new requests while
    #: faster sources can serve its chunks; it is re-measured every ``probe_interval``.
    slow_fraction: float = 0.03
    probe_interval: float = 30.0
    #: NeedMoreSources / FallBackToMirrors are repeated at most this often.
    advice_interval: float = 5.0
