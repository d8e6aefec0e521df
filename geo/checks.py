"""Content checks on a mirror's answer to a Range request (pure functions).

A mirror is trusted for bytes only. These checks catch the common ways a
mirror lies before the chunk digest does: a 200 with the whole file to a Range
request, a ``Content-Range``/``Content-Length`` that disagrees with what was
asked, an HTML error page served with a success status, and bytes that do not
match an expected digest.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

from geo.health import Failure

_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_HTML_SNIFF = (b"<!doctype html", b"<html", b"<head", b"<body")


class CheckFailed(Exception):
    """A response failed a content check; ``kind`` is the :class:`Failure` to record."""

    def __init__(self, kind: Failure, detail: str) -> None:
        super().__init__(f"{kind.value}: {detail}")
        self.kind = kind
        self.detail = detail


def check_headers(
    status: int,
    headers: Mapping[str, str],
    start: int,
    end: int,
    total_size: int | None = None,
) -> int:
    """Check the status and headers of the answer to ``Range: bytes=start-end`` (inclusive).

    Returns the number of body bytes to expect; raises :class:`CheckFailed`.
    """
    if status >= 500:
        raise CheckFailed(Failure.HTTP_5XX, f"status {status}")
    if status != 206:
        if status == 200 and "html" in headers.get("content-type", "").lower():
            raise CheckFailed(Failure.HTML_PAGE, "HTML page with status 200 to a Range request")
        raise CheckFailed(Failure.HTTP_STATUS, f"status {status}, expected 206")
    want = end - start + 1
    crange = headers.get("content-range", "")
    m = _CONTENT_RANGE.match(crange.strip())
    if m is None:
        raise CheckFailed(Failure.WRONG_LENGTH, f"bad Content-Range {crange!r}")
    got_start, got_end, total = int(m.group(1)), int(m.group(2)), m.group(3)
    if (got_start, got_end) != (start, end):
        raise CheckFailed(
            Failure.WRONG_LENGTH, f"Content-Range {got_start}-{got_end}, asked {start}-{end}"
        )
    if total_size is not None and total != "*" and int(total) != total_size:
        raise CheckFailed(Failure.WRONG_LENGTH, f"file size {total}, expected {total_size}")
    length = headers.get("content-length")
    if length is not None and length.strip() != str(want):
        raise CheckFailed(Failure.WRONG_LENGTH, f"Content-Length {length}, expected {want}")
    if "text/html" in headers.get("content-type", "").lower():
        raise CheckFailed(Failure.HTML_PAGE, "Content-Type text/html for an artifact range")
    return want


def looks_like_html(first_bytes: bytes) -> bool:
    """True when a body starts like an HTML document (error pages served as 206/200)."""
    head = first_bytes[:512].lstrip().lower()
    return head.startswith(_HTML_SNIFF)


def check_body(
    body: bytes, want: int, expected_digest: str | None = None, algorithm: str = "sha256"
) -> None:
    """Check a complete range body: its length and, if given, its digest (hex)."""
    if len(body) < want:
        raise CheckFailed(Failure.TRUNCATED, f"{len(body)} of {want} bytes")
    if len(body) > want:
        raise CheckFailed(Failure.WRONG_LENGTH, f"{len(body)} bytes, expected {want}")
    if expected_digest is not None:
        got = hashlib.new(algorithm, body).hexdigest()
        if got != expected_digest.lower():
            raise CheckFailed(Failure.WRONG_CONTENT, f"{algorithm} {got[:16]}… differs")
