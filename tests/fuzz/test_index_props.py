"""open_index over mutated TUF metadata: a documented error, or exactly the publisher's index."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from fuzz import targets
from tests.fuzz.conftest import budget
from webseed.index.layout import METADATA_DIR

NAMES = targets.index_files()
leaf = st.none() | st.booleans() | st.integers(-(2**40), 2**70) | st.text(max_size=30)


@budget(40)
@given(st.integers(0, len(NAMES) - 1), st.binary(min_size=3, max_size=15))
def test_byte_mutations(which: int, ops: bytes) -> None:
    targets.index(bytes([which]) + (ops if ops[:1] != b"{" else b"\0" + ops))


@budget(40)
@given(st.integers(0, len(NAMES) - 1), st.data())
def test_json_leaf_replaced(which: int, data: st.DataObject) -> None:
    d, _, _ = targets._index_fixture()
    doc = json.loads((d / "repo" / METADATA_DIR / NAMES[which]).read_bytes())
    # Walk to a random leaf (through dicts and lists) and replace it.
    node, key = doc, None
    parent = None
    for _ in range(8):
        if isinstance(node, dict) and node:
            parent, key = node, data.draw(st.sampled_from(sorted(node)))
        elif isinstance(node, list) and node:
            parent, key = node, data.draw(st.integers(0, len(node) - 1))
        else:
            break
        node = parent[key]
    if parent is None:
        return
    parent[key] = data.draw(leaf)
    targets.index(bytes([which]) + json.dumps(doc).encode())


def test_whitespace_only_change_still_the_same_index() -> None:
    # Signatures cover the canonical form: re-indented metadata is the genuine index.
    d, _, _ = targets._index_fixture()
    which = NAMES.index("timestamp.json")
    doc = json.loads((d / "repo" / METADATA_DIR / "timestamp.json").read_bytes())
    targets.index(bytes([which]) + json.dumps(doc, indent=3).encode())
