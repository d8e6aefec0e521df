"""Bencoding (BEP 3): encoder, and a bounded strict decoder for round-trip checks."""

from __future__ import annotations

import itertools
import re
from typing import Any

from webseed.errors import WebseedError


class BencodeError(WebseedError):
    """Bytes are not valid, canonical bencoding."""


def bencode(value: Any) -> bytes:
    """Encode ints, bytes/str, lists and dicts (keys sorted as raw bytes)."""
    out: list[bytes] = []
    _encode(value, out)
    return b"".join(out)


def _encode(value: Any, out: list[bytes]) -> None:
    if isinstance(value, bool):
        raise TypeError("bencode has no booleans")
    if isinstance(value, int):
        out.append(b"i%de" % value)
    elif isinstance(value, str | bytes):
        raw = value.encode() if isinstance(value, str) else value
        out.append(b"%d:" % len(raw))
        out.append(raw)
    elif isinstance(value, list | tuple):
        out.append(b"l")
        for item in value:
            _encode(item, out)
        out.append(b"e")
    elif isinstance(value, dict):
        out.append(b"d")
        items = sorted((k.encode() if isinstance(k, str) else k, v) for k, v in value.items())
        for key, item in items:
            _encode(key, out)
            _encode(item, out)
        out.append(b"e")
    else:
        raise TypeError(f"cannot bencode {type(value).__name__}")


MAX_DEPTH = 64
# Canonical numbers only: int() alone would accept " 1", "+1", "1_0" and "01".
# At most 20 digits: every 64-bit value, and far below int()'s 4300-digit ValueError.
_INT = re.compile(rb"-?(?:0|[1-9][0-9]{0,19})")
_LEN = re.compile(rb"0|[1-9][0-9]{0,19}")


def bdecode(data: bytes) -> Any:
    """Decode canonical bencoding; dict keys come back as ``bytes``."""
    value, end = _decode(data, 0, 0)
    if end != len(data):
        raise BencodeError("trailing bytes after bencoded value")
    return value


def _decode(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    if depth > MAX_DEPTH:
        raise BencodeError("bencoding nested too deeply")
    if pos >= len(data):
        raise BencodeError("truncated bencoding")
    head = data[pos : pos + 1]
    if head == b"i":
        end = data.find(b"e", pos)
        if end < 0:
            raise BencodeError("unterminated integer")
        text = data[pos + 1 : end]
        if not _INT.fullmatch(text) or text == b"-0":
            raise BencodeError("non-canonical integer")
        return int(text), end + 1
    if head in (b"l", b"d"):
        items: list[Any] = []
        pos += 1
        while data[pos : pos + 1] != b"e":
            item, pos = _decode(data, pos, depth + 1)
            items.append(item)
        if head == b"l":
            return items, pos + 1
        if len(items) % 2:
            raise BencodeError("dictionary with a key and no value")
        keys = items[0::2]
        if not all(isinstance(k, bytes) for k in keys) or any(
            a >= b for a, b in itertools.pairwise(keys)
        ):
            raise BencodeError("dictionary keys must be sorted, unique byte strings")
        return dict(zip(keys, items[1::2], strict=True)), pos + 1
    colon = data.find(b":", pos)
    if colon < 0 or not _LEN.fullmatch(data, pos, colon):
        raise BencodeError("bad string length")
    length = int(data[pos:colon])
    end = colon + 1 + length
    if end > len(data):
        raise BencodeError("truncated string")
    return data[colon + 1 : end], end
