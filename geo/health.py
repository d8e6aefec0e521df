"""Health of one mirror: up / degraded / down, with exponential back-off and recovery.

Pure state: every method takes ``now`` (seconds, any monotonic origin) from the
caller; nothing here reads a clock or does I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class State(enum.Enum):
    UP = "up"
    DEGRADED = "degraded"
    DOWN = "down"


class Failure(enum.Enum):
    """Why a request to a mirror failed."""

    CONNECT = "connect"  # refused, unreachable, DNS, TLS
    TIMEOUT = "timeout"
    HTTP_5XX = "http-5xx"
    HTTP_STATUS = "http-status"  # 4xx or an unexpected 2xx/3xx (e.g. 200 to a Range request)
    TRUNCATED = "truncated"  # the connection ended before the promised bytes
    WRONG_LENGTH = "wrong-length"  # Content-Length / Content-Range disagree with the request
    WRONG_CONTENT = "wrong-content"  # bytes do not match the expected digest
    HTML_PAGE = "html-page"  # an HTML error page served with a success status
    PROTOCOL = "protocol"  # anything else the HTTP layer rejected
    SLOW = "slow"  # abandoned because it was far slower than the others

    @property
    def is_content(self) -> bool:
        """A mirror that serves bad bytes is worse than one that is unreachable."""
        return self in (Failure.WRONG_CONTENT, Failure.HTML_PAGE, Failure.WRONG_LENGTH)


@dataclass
class HealthConfig:
    """Thresholds of the health state machine."""

    degraded_after: int = 1  # consecutive transport failures before DEGRADED
    down_after: int = 3  # consecutive transport failures before DOWN
    backoff_base: float = 2.0  # seconds before the first retry of a DOWN mirror
    backoff_factor: float = 2.0
    backoff_max: float = 600.0
    content_backoff_base: float = 60.0  # bad bytes: stay away longer
    ewma_alpha: float = 0.3  # weight of the newest RTT / rate sample


@dataclass
class MirrorHealth:
    """Health and measured performance of one mirror."""

    config: HealthConfig = field(default_factory=HealthConfig)
    state: State = State.UP
    consecutive_failures: int = 0
    successes: int = 0
    failures: int = 0
    last_failure: Failure | None = None
    last_detail: str = ""
    down_since: float | None = None
    retry_at: float = 0.0
    rtt: float | None = None  # seconds, EWMA of time to first byte
    rate: float | None = None  # bytes/s, EWMA of transfer throughput
    bytes_served: int = 0

    def _ewma(self, old: float | None, sample: float) -> float:
        a = self.config.ewma_alpha
        return sample if old is None else (1 - a) * old + a * sample

    def record_success(
        self, now: float, *, rtt: float | None = None, nbytes: int = 0, seconds: float = 0.0
    ) -> None:
        """A request succeeded; a DOWN or DEGRADED mirror recovers to UP."""
        del now  # success needs no time, kept for a uniform event signature
        self.successes += 1
        self.consecutive_failures = 0
        self.state = State.UP
        self.down_since = None
        self.retry_at = 0.0
        if rtt is not None:
            self.rtt = self._ewma(self.rtt, max(rtt, 0.0))
        self.record_transfer(nbytes, seconds)

    def record_transfer(self, nbytes: int, seconds: float) -> None:
        """Bytes arrived from this mirror in ``seconds`` (probes and the download's own traffic)."""
        if nbytes <= 0:
            return
        self.bytes_served += nbytes
        if seconds > 0:
            self.rate = self._ewma(self.rate, nbytes / seconds)

    def record_failure(self, now: float, kind: Failure, detail: str = "") -> None:
        """A request failed: degrade, or go DOWN with an exponentially growing back-off."""
        cfg = self.config
        self.failures += 1
        self.consecutive_failures += 1
        self.last_failure = kind
        self.last_detail = detail
        if kind.is_content or self.consecutive_failures >= cfg.down_after:
            base = cfg.content_backoff_base if kind.is_content else cfg.backoff_base
            # Back-off grows with every failure after going down (including failed retries).
            exponent = (
                self.consecutive_failures - 1
                if kind.is_content
                else self.consecutive_failures - cfg.down_after
            )
            delay = min(cfg.backoff_max, base * cfg.backoff_factor ** max(0, exponent))
            if self.state is not State.DOWN:
                self.down_since = now
            self.state = State.DOWN
            self.retry_at = now + delay
        elif self.consecutive_failures >= cfg.degraded_after:
            self.state = State.DEGRADED

    def usable(self, now: float) -> bool:
        """UP and DEGRADED mirrors are usable; a DOWN one once its back-off has passed."""
        return self.state is not State.DOWN or now >= self.retry_at

    def describe(self) -> str:
        """One line for reports: state, and why if not up."""
        if self.state is State.UP or self.last_failure is None:
            return self.state.value
        why = self.last_failure.value + (f": {self.last_detail}" if self.last_detail else "")
        return f"{self.state.value} ({why})"
