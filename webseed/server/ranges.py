"""The peer's range policy: which ``Range`` headers it serves, coalesces or refuses.

RFC 9110 §14.2 and §17.15 let a server ignore, coalesce or reject egregious
range requests. This module is that policy, applied before any byte is read,
in one pass over a header whose length is capped first (so its cost is bounded
whatever the client sends):

* A header longer than :attr:`RangePolicy.max_header` bytes is refused (416).
* A unit other than ``bytes`` makes the header ignored (the whole file is
  served, as RFC 9110 requires for units a server does not understand).
* Every range-spec must be ``first-last``, ``first-`` or ``-suffix`` with at
  most 20 decimal digits per number (bounds checked on Python ints: no
  overflow, the CVE-2017-7529 pattern). Anything else is refused (416).
* More than :attr:`RangePolicy.max_ranges` range-specs are refused (416): the
  CVE-2011-3192 pattern of thousands of small ranges.
* Ranges starting at or past the end are dropped; ``last`` past the end is
  clamped. If nothing is left, 416 with ``Content-Range: bytes */size``.
* More than :attr:`RangePolicy.max_overlaps` overlapping pairs (after sorting),
  or a requested total above the file size, is refused (416).
* What is left is sorted and coalesced (overlapping or adjacent ranges become
  one), so every byte is sent at most once per response.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

#: Longest decimal number accepted in a range-spec (covers every 64-bit size).
MAX_DIGITS = 20


@dataclass(frozen=True)
class RangePolicy:
    """Limits on ``Range`` headers. The defaults are what ``webseed serve`` uses."""

    max_header: int = 1024
    max_ranges: int = 16
    max_overlaps: int = 1


DEFAULT_POLICY = RangePolicy()


class Outcome(Enum):
    """What to do with a request's ``Range`` header."""

    FULL = "full"  # no usable Range: send the whole representation (200)
    PARTIAL = "partial"  # send these ranges (206)
    REFUSE = "refuse"  # 416 with Content-Range: bytes */size


@dataclass(frozen=True)
class RangeDecision:
    """The policy's verdict: an outcome, the ranges (``[start, end)``, sorted) and why."""

    outcome: Outcome
    ranges: tuple[tuple[int, int], ...] = ()
    reason: str = ""


_DIGITS = frozenset("0123456789")


def _number(text: str) -> int | None:
    if not text or len(text) > MAX_DIGITS or not set(text) <= _DIGITS:
        return None
    return int(text)


def decide(header: str | None, size: int, policy: RangePolicy = DEFAULT_POLICY) -> RangeDecision:
    """Apply the policy to a ``Range`` header for a representation of ``size`` bytes."""
    if header is None:
        return RangeDecision(Outcome.FULL)
    if len(header) > policy.max_header:
        return RangeDecision(Outcome.REFUSE, reason=f"Range header over {policy.max_header} bytes")
    unit, sep, spec = header.partition("=")
    if not sep:
        return RangeDecision(Outcome.REFUSE, reason="Range header has no '='")
    if unit.strip().lower() != "bytes":
        return RangeDecision(Outcome.FULL, reason="unknown range unit ignored")
    parts = spec.split(",")
    if len(parts) > policy.max_ranges:
        return RangeDecision(Outcome.REFUSE, reason=f"more than {policy.max_ranges} ranges")
    wanted: list[tuple[int, int]] = []
    total = 0
    for raw in parts:
        part = raw.strip(" \t")
        first_text, dash, last_text = part.partition("-")
        if not dash:
            return RangeDecision(Outcome.REFUSE, reason=f"malformed range {part[:40]!r}")
        if first_text:
            first = _number(first_text)
            last = _number(last_text) if last_text else first
            if first is None or last is None or last < first:
                return RangeDecision(Outcome.REFUSE, reason=f"malformed range {part[:40]!r}")
            if first >= size:
                continue  # unsatisfiable range-spec: dropped (RFC 9110 §14.1.1)
            if not last_text:
                last = size - 1
            start, end = first, min(last, size - 1) + 1
        else:
            suffix = _number(last_text)
            if suffix is None:
                return RangeDecision(Outcome.REFUSE, reason=f"malformed range {part[:40]!r}")
            if suffix == 0 or size == 0:
                continue
            start, end = max(size - suffix, 0), size
        total += end - start
        wanted.append((start, end))
    if not wanted:
        return RangeDecision(Outcome.REFUSE, reason="no satisfiable range")
    if total > size:
        return RangeDecision(Outcome.REFUSE, reason="ranges ask for more than the file")
    wanted.sort()
    merged: list[tuple[int, int]] = [wanted[0]]
    overlaps = 0
    for start, end in wanted[1:]:
        last_start, last_end = merged[-1]
        if start < last_end:
            overlaps += 1
            if overlaps > policy.max_overlaps:
                return RangeDecision(Outcome.REFUSE, reason="too many overlapping ranges")
        if start <= last_end:
            merged[-1] = (last_start, max(last_end, end))
        else:
            merged.append((start, end))
    return RangeDecision(Outcome.PARTIAL, tuple(merged))
