"""Identity headers and receipts: random, structured and mutated; only signed ones pass."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from fuzz import targets
from peer.incentives.auth import RequestVerifier
from peer.incentives.receipts import Receipt
from tests.fuzz.conftest import budget
from webseed.errors import WebseedError

fields = st.sampled_from(["id", "ts", "nonce", "sig", "x", "", "id ", "ID"])
values = st.text(max_size=90) | st.sampled_from(["", "1800000000", "AAAA", "=" * 10])


@budget(200)
@given(st.binary(max_size=600))
def test_arbitrary_header_bytes(data: bytes) -> None:
    targets.auth_header(data)


@budget(200)
@given(st.lists(st.tuples(fields, values), max_size=6), st.sampled_from([",", ", ", ",,"]))
def test_structured_headers(pairs: list[tuple[str, str]], joiner: str) -> None:
    targets.auth_header(joiner.join(f"{k}={v}" for k, v in pairs).encode())


@budget(200)
@given(st.binary(min_size=3, max_size=12))
def test_mutated_genuine_header(ops: bytes) -> None:
    targets.auth_mutated(ops)


def test_genuine_header_accepted_once() -> None:
    v = RequestVerifier()
    header = targets.valid_auth_header()
    who = v.verify(header, "GET", "peer.example", "/a.iso", "bytes=0-9", now=targets.NOW)
    assert who == targets._identities()[0].peer_id
    try:
        v.verify(header, "GET", "peer.example", "/a.iso", "bytes=0-9", now=targets.NOW)
    except WebseedError:
        pass
    else:
        raise AssertionError("replay accepted")


json_leaf = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=20) | st.floats()
)


@budget(200)
@given(st.sampled_from(sorted(json.loads(targets.valid_receipt().encode()))), json_leaf)
def test_receipt_field_replaced(field: str, value: object) -> None:
    doc = json.loads(targets.valid_receipt().encode())
    doc[field] = value
    targets.receipt(json.dumps(doc).encode())


@budget(200)
@given(st.binary(min_size=1, max_size=15))
def test_receipt_mutations_and_garbage(data: bytes) -> None:
    targets.receipt(data)


def test_genuine_receipt_verifies() -> None:
    r = Receipt.decode(targets.valid_receipt().encode())
    r.check_signature()
    targets.receipt(b"\x00")  # an empty mutation: the genuine receipt, accepted
