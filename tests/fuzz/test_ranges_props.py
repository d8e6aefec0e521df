"""The range policy on grammar-shaped and arbitrary headers: never raises, output always sane."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from fuzz import targets
from tests.fuzz.conftest import budget
from webseed.server.ranges import Outcome, decide

numbers = st.one_of(
    st.integers(0, 2000).map(str),
    st.integers(0, 2**64 + 5).map(str),
    st.sampled_from(["", "-1", "99999999999999999999999", "0x10", "1e3", " 5", "٣"]),
)
specs = st.builds(
    lambda a, sep, b: f"{a}{sep}{b}", numbers, st.sampled_from(["-", "", "--", "="]), numbers
)
headers = st.builds(
    lambda unit, eq, parts, joiner: unit + eq + joiner.join(parts),
    st.sampled_from(["bytes", "BYTES", " bytes ", "items", ""]),
    st.sampled_from(["=", "", "=="]),
    st.lists(specs, max_size=40),
    st.sampled_from([",", ", ", " ,\t", ";"]),
)


@budget(400)
@given(headers, st.integers(0, 2**63))
def test_grammar_shaped(header: str, size: int) -> None:
    d = decide(header, size)
    if d.outcome is Outcome.PARTIAL:
        covered = sum(e - s for s, e in d.ranges)
        assert 0 < covered <= size
        assert all(0 <= s < e <= size for s, e in d.ranges)
        assert all(a[1] < b[0] for a, b in zip(d.ranges, d.ranges[1:], strict=False))


@budget(300)
@given(st.binary(max_size=200))
def test_arbitrary_bytes(data: bytes) -> None:
    targets.ranges(data)


@budget(200)
@given(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(1, 10**6))
def test_single_range_matches_rfc(first: int, last: int, size: int) -> None:
    d = decide(f"bytes={first}-{last}", size)
    if last < first or first >= size:
        assert d.outcome is Outcome.REFUSE
    else:
        assert d.ranges == ((first, min(last, size - 1) + 1),)
