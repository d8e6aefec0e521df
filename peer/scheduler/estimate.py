"""Moving estimates of a source's throughput and latency."""

from __future__ import annotations


class Ewma:
    """Exponentially weighted moving average; ``value`` is ``None`` until the first sample."""

    __slots__ = ("alpha", "value")

    def __init__(self, alpha: float) -> None:
        self.alpha = alpha
        self.value: float | None = None

    def add(self, sample: float) -> float:
        """Fold in ``sample`` and return the new average."""
        if self.value is None:
            self.value = sample
        else:
            self.value += self.alpha * (sample - self.value)
        return self.value

    def get(self, default: float) -> float:
        """The average, or ``default`` before any sample."""
        return default if self.value is None else self.value


class RateMeter:
    """Bytes per second while busy, sampled over windows of at least ``window`` seconds.

    The window opens when bytes start flowing (not when a request is sent, so
    latency is not mistaken for slowness) and closes after ``window`` seconds;
    each closed window is one sample of the moving average.
    """

    __slots__ = ("_bytes", "_start", "avg", "window")

    def __init__(self, alpha: float, window: float) -> None:
        self.avg = Ewma(alpha)
        self.window = window
        self._start: float | None = None
        self._bytes = 0

    def open(self, now: float) -> None:
        """Start a window at ``now`` unless one is open."""
        if self._start is None:
            self._start = now
            self._bytes = 0

    def close(self) -> None:
        """Drop the open window (the source went idle; idle time is not slowness)."""
        self._start = None
        self._bytes = 0

    def add(self, n: int, now: float) -> None:
        """``n`` bytes arrived at ``now``."""
        if self._start is None:
            # Bytes without a start: count them from now on (first data of a response).
            self.open(now)
            return
        self._bytes += n
        elapsed = now - self._start
        if elapsed >= self.window:
            self.avg.add(self._bytes / elapsed)
            self._start = now
            self._bytes = 0

    def stalled_sample(self, now: float) -> None:
        """Fold in the open window's rate so far (used when a request stalls: it *is* slow)."""
        if self._start is not None and now > self._start:
            self.avg.add(self._bytes / (now - self._start))
            self._start = now
            self._bytes = 0
