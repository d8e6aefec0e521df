"""The fluid lower bound on P2P distribution time (Kumar and Ross, 2006)."""

from __future__ import annotations

from collections.abc import Sequence


def kumar_ross(
    size: float, origin_up: float, uploads: Sequence[float], downloads: Sequence[float]
) -> float:
    """``T_min = max(F/u_s, F/d_min, N·F/(u_s + Σu_i))`` in seconds.

    ``size`` F in bytes, ``origin_up`` u_s the origin's upload (seeds plus
    mirrors, bytes/s), ``uploads``/``downloads`` the N downloaders' capacities.
    No schedule, however clever, gets every downloader the file sooner.
    """
    if not downloads:
        return 0.0
    if origin_up <= 0:
        return float("inf")
    n = len(downloads)
    return max(size / origin_up, size / min(downloads), n * size / (origin_up + sum(uploads)))
