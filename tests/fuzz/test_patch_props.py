"""Patch files: arbitrary bytes, mutated genuine patches (with and without a re-fixed body checksum)."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from fuzz import targets
from patches.format import HEADER, Header
from tests.fuzz.conftest import budget


@budget(100)
@given(st.binary(max_size=400))
def test_arbitrary_bytes(data: bytes) -> None:
    targets.patch(data)


@budget(100)
@given(st.binary(min_size=3, max_size=20))
def test_mutated(ops: bytes) -> None:
    targets.patch(targets._mutate(targets.valid_patch_bytes(), ops))


@budget(150)
@given(st.binary(min_size=3, max_size=20))
def test_mutated_body_with_valid_checksum(ops: bytes) -> None:
    # Re-seal the body checksum so the mutation reaches the section, part and method parsers.
    good = targets.valid_patch_bytes()
    header = Header.decode(good)
    body = targets._mutate(good[HEADER.size :], ops)
    sealed = Header(**{**header.__dict__, "body_sha256": hashlib.sha256(body).digest()})
    targets.patch(sealed.encode() + body)


@budget(150)
@given(st.sampled_from(list(Header.__dataclass_fields__)[1:12]), st.integers(0, 2**64 - 1))
def test_header_field_values(field: str, value: int) -> None:
    good = targets.valid_patch_bytes()
    header = Header.decode(good)
    old = getattr(header, field)
    if isinstance(old, tuple):
        new: object = (value, old[1]) if value % 2 else (old[0], value)
    elif isinstance(old, bytes):
        new = value.to_bytes(8, "big") * 4
    else:
        new = value
    try:
        raw = Header(**{**header.__dict__, field: new}).encode()
    except Exception:  # the value does not fit the field's width: not a patch anyone can write
        return
    targets.patch(raw + good[HEADER.size :])


def test_genuine_patch_applies() -> None:
    # The property tests above would pass vacuously if the fixture patch were broken.
    d, good, new = targets._patch_fixture()
    targets.patch(good)
    from patches.apply import apply_patch

    apply_patch(d / "old", d / "valid.patch", d / "check")
    assert (d / "check").read_bytes() == new
