"""The range policy, directly: every rule of webseed.server.ranges."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webseed.server.ranges import Outcome, RangePolicy, decide


def ok(header: str, size: int = 1000) -> tuple[tuple[int, int], ...]:
    d = decide(header, size)
    assert d.outcome is Outcome.PARTIAL, d
    return d.ranges


def refused(header: str, size: int = 1000) -> str:
    d = decide(header, size)
    assert d.outcome is Outcome.REFUSE, d
    return d.reason


def test_single_and_open_and_suffix() -> None:
    assert ok("bytes=0-99") == ((0, 100),)
    assert ok("bytes=900-") == ((900, 1000),)
    assert ok("bytes=-100") == ((900, 1000),)
    assert ok("bytes=-5000") == ((0, 1000),)
    assert ok("bytes=990-5000") == ((990, 1000),)
    assert ok("Bytes = 1-1") == ((1, 2),)  # unit compared case-insensitively


def test_unit_case_and_whitespace() -> None:
    assert ok("BYTES=0-0, 5-5") == ((0, 1), (5, 6))


def test_no_header_and_unknown_unit_serve_full() -> None:
    assert decide(None, 10).outcome is Outcome.FULL
    assert decide("items=0-5", 10).outcome is Outcome.FULL


def test_sorted_and_coalesced() -> None:
    assert ok("bytes=200-299,0-99") == ((0, 100), (200, 300))
    assert ok("bytes=0-99,100-199") == ((0, 200),)  # adjacent coalesced
    assert ok("bytes=0-149,100-199") == ((0, 200),)  # one overlap allowed


def test_unsatisfiable_parts_dropped_or_416() -> None:
    assert ok("bytes=0-9,5000-6000") == ((0, 10),)
    assert "no satisfiable" in refused("bytes=5000-6000")
    assert "no satisfiable" in refused("bytes=1000-")
    assert "no satisfiable" in refused("bytes=-0")
    assert "no satisfiable" in refused("bytes=0-0", size=0)


@pytest.mark.parametrize(
    "header",
    [
        "bytes",
        "bytes=",
        "bytes=abc",
        "bytes=5-1",
        "bytes=--5",
        "bytes=1-2-3",
        "bytes=0x10-20",
        "bytes=+1-2",
        "bytes=1.5-2",
        "bytes=0-99,",
        "bytes=-",
        "bytes=１-２",  # non-ASCII digits: int() would take them, the policy does not
    ],
)
def test_malformed_refused(header: str) -> None:
    refused(header)


def test_integer_bounds_cve_2017_7529() -> None:
    # 20 digits are fine (clamped), 21 are refused; no overflow anywhere.
    assert ok("bytes=0-99999999999999999999") == ((0, 1000),)
    assert "malformed" in refused("bytes=-999999999999999999999")
    assert ok("bytes=-9223372036854775808") == ((0, 1000),)
    assert "more than the file" in refused("bytes=-1000,-1000")


def test_many_ranges_cve_2011_3192() -> None:
    assert "more than 16" in refused("bytes=" + ",".join(f"{i}-{i}" for i in range(17)))
    assert len(ok("bytes=" + ",".join(f"{2 * i}-{2 * i}" for i in range(16)))) == 16
    # The Apache-killer header: thousands of overlapping ranges, refused by the length cap.
    assert "over 1024" in refused("bytes=0-," + ",".join(f"5-{i}" for i in range(1300)))


def test_overlap_piles_and_total() -> None:
    assert "overlapping" in refused("bytes=0-10,5-15,8-20")
    assert "more than the file" in refused("bytes=0-,0-")
    lenient = RangePolicy(max_overlaps=5)
    assert decide("bytes=0-10,5-15,8-20", 1000, lenient).ranges == ((0, 21),)


@given(
    st.lists(st.tuples(st.integers(0, 3000), st.integers(0, 3000)), min_size=1, max_size=16),
    st.integers(0, 2000),
)
def test_partial_ranges_are_sorted_disjoint_and_inside(
    pairs: list[tuple[int, int]], size: int
) -> None:
    header = "bytes=" + ",".join(f"{min(a, b)}-{max(a, b)}" for a, b in pairs)
    d = decide(header, size)
    if d.outcome is Outcome.PARTIAL:
        total = 0
        prev_end = -1
        for start, end in d.ranges:
            assert 0 <= start < end <= size
            assert start > prev_end  # disjoint and not adjacent (coalesced)
            prev_end = end
            total += end - start
        assert total <= size
    else:
        assert d.outcome is Outcome.REFUSE and d.reason
