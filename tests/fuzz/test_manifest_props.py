"""Manifest.parse on random JSON, random field values and byte mutations of a genuine manifest."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzz import targets
from tests.fuzz.conftest import budget
from webseed.errors import ManifestError, WebseedError
from webseed.manifest import Manifest, canonical_json

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=20,
)
GOOD = json.loads(targets.valid_manifest_bytes())


@budget(150)
@given(st.binary(max_size=600))
def test_random_bytes(data: bytes) -> None:
    targets.manifest(data)


@budget(100)
@given(json_values)
def test_random_json(value: object) -> None:
    targets.manifest(json.dumps(value).encode())
    try:
        raw = canonical_json(value)
    except (ValueError, TypeError):
        return  # not representable canonically (e.g. floats): nothing to parse
    targets.manifest(raw)


@budget(200)
@given(st.sampled_from(sorted(GOOD)), json_values)
def test_one_field_replaced(field: str, value: object) -> None:
    doc = dict(GOOD)
    doc[field] = value
    try:
        raw = canonical_json(doc)
    except (ValueError, TypeError):
        return
    targets.manifest(raw)
    if value != GOOD[field]:
        # A changed field changes the content address: under the signed digest it is refused.
        with pytest.raises(WebseedError):
            Manifest.parse(
                raw, expected_digest=Manifest.parse(targets.valid_manifest_bytes()).digest
            )


@budget(150)
@given(st.binary(min_size=3, max_size=30))
def test_byte_mutations(ops: bytes) -> None:
    good = targets.valid_manifest_bytes()
    mutated = targets._mutate(good, ops)
    targets.manifest(mutated)
    if mutated != good:
        with pytest.raises(WebseedError):
            Manifest.parse(mutated, expected_digest=Manifest.parse(good).digest)


def test_non_canonical_genuine_content_refused() -> None:
    # Same JSON, pretty-printed: the content address would differ, so it is refused.
    with pytest.raises(ManifestError, match="canonical"):
        Manifest.parse(json.dumps(GOOD, indent=1).encode())
