"""bencode decoding is strict and canonical; torrent and Metalink exports round-trip."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzz import targets
from tests.fuzz.conftest import budget
from webseed.export.bencode import BencodeError, bdecode, bencode
from webseed.manifest import Manifest

bvalues = st.recursive(
    st.integers(-(2**63), 2**63) | st.binary(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.binary(max_size=8), inner, max_size=5)
    ),
    max_leaves=25,
)


@budget(200)
@given(bvalues)
def test_roundtrip(value: object) -> None:
    assert bdecode(bencode(value)) == value


@budget(300)
@given(st.binary(max_size=200))
def test_arbitrary_bytes(data: bytes) -> None:
    targets.bencode(data)


@budget(200)
@given(bvalues, st.binary(min_size=3, max_size=15))
def test_mutated_encodings(value: object, ops: bytes) -> None:
    targets.bencode(targets._mutate(bencode(value), ops))


@pytest.mark.parametrize(
    "raw",
    [
        b"i 1e",
        b"i+1e",
        b"i1_0e",
        b"i\t1\ne",
        b"i-0e",
        b"i01e",
        b"01:a",
        b"d1:ai1e1:ai2ee",
        b"i" + b"1" * 5000 + b"e",
        b"1" * 5000 + b":",
    ],
)
def test_non_canonical_refused(raw: bytes) -> None:
    # Found by test_arbitrary_bytes: int() accepted whitespace, '+', '_' and leading
    # zeros, duplicate keys passed the sort check, and 5000 digits raised ValueError.
    with pytest.raises(BencodeError):
        bdecode(raw)


hexd = st.binary(min_size=32, max_size=32).map(bytes.hex)


@st.composite
def manifests(draw: st.DrawFn) -> bytes:
    chunk_size = 1 << draw(st.integers(14, 22))
    size = draw(st.integers(0, chunk_size * 6))
    count = -(-size // chunk_size)
    name = draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._+~-]{0,20}", fullmatch=True))
    digests = {
        "sha256": draw(hexd),
        "sha3-256": draw(hexd),
        "blake2b": draw(st.binary(min_size=64, max_size=64)).hex(),
    }
    m = Manifest(
        path=f"releases/{name}",
        size=size,
        chunk_size=chunk_size,
        chunks=tuple(draw(hexd) for _ in range(count)),
        pieces_root=draw(hexd),
        digests=digests,
        version=draw(st.text(max_size=10)),
        patches=(),
    )
    return m.encode()


@budget(150)
@given(manifests())
def test_export_roundtrip(raw: bytes) -> None:
    try:
        Manifest.parse(raw)
    except Exception as exc:  # the strategy should only make valid manifests
        pytest.fail(f"strategy made an invalid manifest: {exc}")
    targets.export_roundtrip(raw)
