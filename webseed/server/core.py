"""The peer's HTTP semantics, independent of ASGI or WSGI.

:meth:`Peer.plan` turns (method, path, headers) into a :class:`Plan`: a status,
headers, and a body made of in-memory bytes and file slices. The ASGI app and
the WSGI middleware only carry plans out (reading files in large blocks), so
both forms answer exactly alike. See ``docs/protocol.md`` for the surface.
"""

from __future__ import annotations

import json
import mimetypes
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path

from webseed.errors import UnsafePathError
from webseed.server.capacity import RateLimiter, Requester, SlotPool
from webseed.server.exports import Exports, export_target
from webseed.server.incentives import (
    CONTRIBUTION,
    MAX_RECEIPTS_BODY,
    RECEIPTS,
    Authenticator,
    PeerIncentives,
)
from webseed.server.metrics import CONTENT_TYPE as METRICS_TYPE
from webseed.server.metrics import PeerMetrics
from webseed.server.pex import MAX_ANNOUNCEMENTS, MemoryPexStore, PexSource
from webseed.server.ranges import DEFAULT_POLICY, Outcome, RangePolicy, decide
from webseed.server.repo import WELL_KNOWN, Repository, Resource
from webseed.server.stats import Stats
from webseed.server.views import directory_index

#: Header a peer sends to identify itself (for stats and the upload policy).
PEER_HEADER = "webseed-peer"
#: Default size of one read (and one send) in the serving hot path.
READ_SIZE = 1024 * 1024
IMMUTABLE = "public, max-age=31536000, immutable"


@dataclass(frozen=True)
class Part:
    """``prefix`` bytes, then ``length`` bytes of the plan's file from ``offset``."""

    prefix: bytes
    offset: int
    length: int


@dataclass
class Plan:
    """An HTTP answer to carry out."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""
    file: Path | None = None
    parts: tuple[Part, ...] = ()
    trailer: bytes = b""
    upload: str | None = None  # artifact name when this answer sends artifact bytes
    head: bool = False

    @property
    def length(self) -> int:
        """Bytes of body the full (GET) answer carries."""
        return (
            len(self.body) + sum(len(p.prefix) + p.length for p in self.parts) + len(self.trailer)
        )


def _text(status: int, message: str, headers: list[tuple[str, str]] | None = None) -> Plan:
    body = (message + "\n").encode()
    return Plan(
        status,
        [
            ("content-type", "text/plain; charset=utf-8"),
            ("content-length", str(len(body))),
            *(headers or []),
        ],
        body,
    )


def _json(obj: object, *, cache: str = "no-cache") -> Plan:
    body = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    return Plan(
        200,
        [
            ("content-type", "application/json"),
            ("content-length", str(len(body))),
            ("cache-control", cache),
        ],
        body,
    )


def _json_bytes(body: bytes) -> Plan:
    return Plan(
        200,
        [
            ("content-type", "application/json"),
            ("content-length", str(len(body))),
            ("cache-control", "no-cache"),
        ],
        body,
    )


class Peer:
    """A peer's serving state: repository, stats, peer exchange, capacity, range policy."""

    def __init__(
        self,
        repo: Repository,
        *,
        pool: SlotPool | None = None,
        limiter: RateLimiter | None = None,
        pex: PexSource | None = None,
        stats: Stats | None = None,
        range_policy: RangePolicy = DEFAULT_POLICY,
        read_size: int = READ_SIZE,
        incentives: PeerIncentives | None = None,
    ) -> None:
        self.repo = repo
        self.incentives = incentives
        # Identities are always verified; without incentives nobody is credited anyway.
        self.auth = incentives.auth if incentives is not None else Authenticator()
        self.pool = pool or SlotPool(0)
        self.limiter = limiter or RateLimiter(0)
        self.pex: PexSource = pex if pex is not None else MemoryPexStore()
        self.stats = stats or Stats()
        self.range_policy = range_policy
        self.metrics = PeerMetrics(self.pool)
        self.exports = Exports(repo, self.pex)
        rate_block = self.limiter.block_size
        self.read_size = min(read_size, rate_block) if rate_block else read_size

    def requester(
        self,
        headers: Mapping[str, str],
        host: str,
        path: str,
        *,
        method: str = "GET",
        target: str | None = None,
    ) -> Requester:
        """Who is asking (verified peer id or ``""``), for the upload policy and the stats.

        ``target`` is the raw request target (path and query) the client
        signed; ``path`` what to account the upload to (the artifact).
        """
        peer = self.auth.identify(headers, method, target if target is not None else path)
        return Requester(peer=peer, host=host, path=path)

    def post(self, path: str, body: bytes | None, requester: Requester) -> Plan:
        """Answer a POST (only the receipts endpoint takes one); ``None`` body: too large."""
        if self.incentives is None or not self.is_post_target(path):
            return _text(405, "method not allowed", [("allow", "GET, HEAD")])
        if body is None:
            return _text(413, f"receipts body over {MAX_RECEIPTS_BODY} bytes")
        reply = self.incentives.accept_receipts(body, requester.peer)
        return Plan(
            reply.status,
            [
                ("content-type", reply.content_type),
                ("content-length", str(len(reply.body))),
                *reply.extra,
            ],
            reply.body,
        )

    def is_post_target(self, path: str) -> bool:
        """Whether ``path`` (decoded, with leading ``/``) takes a POST."""
        return self.incentives is not None and path == f"/{WELL_KNOWN}/{RECEIPTS}"

    def plan(self, method: str, path: str, headers: Mapping[str, str], base: str = "") -> Plan:
        """The answer to ``method path`` with (lower-cased) ``headers``; ``path`` is decoded.

        ``base`` is the URL this peer was reached at (scheme, host, mount prefix),
        listed as the first source of on-the-fly ``.meta4``/``.torrent`` exports.
        """
        if method not in ("GET", "HEAD"):
            return _text(405, "method not allowed", [("allow", "GET, HEAD")])
        plan = self._route(path, headers, base)
        plan.head = method == "HEAD"
        return plan

    def _route(self, path: str, headers: Mapping[str, str], base: str = "") -> Plan:
        if "\x00" in path:
            return _text(400, "path has a NUL byte")
        rel = path[1:] if path.startswith("/") else path
        if not rel:
            return _text(404, "not found")
        if rel.startswith(WELL_KNOWN + "/"):
            return self._well_known(rel[len(WELL_KNOWN) + 1 :], headers)
        index = directory_index(rel, headers.get("accept", ""))
        if index is not None:
            return self._directory(index[0], index[1], headers)
        try:
            resource = self.repo.artifact(rel)
        except UnsafePathError as exc:
            return _text(400, f"bad path: {exc}")
        if resource is None:
            target = export_target(rel)
            return self._export(*target, base) if target else _text(404, "not found")
        return self.serve(resource, headers)

    def _directory(self, index: str, ctype: str | None, headers: Mapping[str, str]) -> Plan:
        """A directory URL of a package view: its index page (see :mod:`.views`)."""
        try:
            resource = self.repo.artifact(index)
        except UnsafePathError as exc:
            return _text(400, f"bad path: {exc}")
        if resource is None:
            return _text(404, "not found")
        if ctype is not None:
            resource = replace(resource, content_type=ctype)
        plan = self.serve(resource, headers)
        if index.startswith("simple/"):
            plan.headers.append(("vary", "accept"))
        return plan

    def _export(self, path: str, suffix: str, base: str) -> Plan:
        """``<path>.meta4`` / ``<path>.torrent`` of an artifact (see :mod:`.exports`)."""
        try:
            doc = self.exports.build(path, suffix, base)
        except UnsafePathError as exc:
            return _text(400, f"bad path: {exc}")
        if doc is None:
            return _text(404, "not found")
        self.metrics.record_export("torrent" if suffix == ".torrent" else "metalink")
        return Plan(
            200,
            [
                ("content-type", doc.media_type),
                ("content-length", str(len(doc.body))),
                ("cache-control", "no-cache"),
            ],
            doc.body,
        )

    def _well_known(self, rest: str, headers: Mapping[str, str]) -> Plan:
        kind, _, arg = rest.partition("/")
        resource: Resource | None = None
        if kind == "metadata":
            resource = self.repo.metadata_file(arg)
        elif kind == "manifests" and arg.endswith(".json"):
            resource = self.repo.manifest_resource(arg[: -len(".json")])
        elif kind == "chunks":
            resource = self.repo.chunk(arg)
        elif kind == "bitfield":
            found = self.repo.bitfield(arg)
            if found is not None:
                bits, count = found
                return Plan(
                    200,
                    [
                        ("content-type", "application/octet-stream"),
                        ("content-length", str(len(bits))),
                        ("cache-control", "no-cache"),
                        ("webseed-chunks", str(count)),
                    ],
                    bits,
                )
        elif kind == CONTRIBUTION and not arg and self.incentives is not None:
            return _json_bytes(self.incentives.contribution())
        elif kind == RECEIPTS and not arg and self.incentives is not None:
            return _text(405, "POST receipts here", [("allow", "POST")])
        elif kind == "pex" and not arg:
            return _json({"announcements": self.pex.announcements(MAX_ANNOUNCEMENTS)})
        elif kind == "metrics" and not arg:
            body = self.metrics.render()
            return Plan(
                200,
                [
                    ("content-type", METRICS_TYPE),
                    ("content-length", str(len(body))),
                    ("cache-control", "no-cache"),
                ],
                body,
            )
        elif kind == "stats" and not arg:
            snap = self.stats.snapshot()
            snap["slots"] = {
                "capacity": self.pool.slots,
                "in_use": self.pool.in_use,
                "waiting": self.pool.waiting,
            }
            snap["rate_limit"] = self.limiter.rate
            if self.incentives is not None:
                snap["incentives"] = self.incentives.stats()
            return _json(snap)
        if resource is None:
            return _text(404, "not found")
        return self.serve(resource, headers)

    def serve(self, r: Resource, headers: Mapping[str, str]) -> Plan:
        """Answer a GET/HEAD for resource ``r`` under the range policy."""
        base: list[tuple[str, str]] = [("accept-ranges", "bytes"), ("etag", r.etag)]
        if r.last_modified is not None:
            base.append(("last-modified", formatdate(r.last_modified, usegmt=True)))
        if r.immutable:
            base.append(("cache-control", IMMUTABLE))
        if r.manifest:
            base.append(("webseed-manifest", r.manifest))
        ctype = r.content_type
        if r.file is not None and r.data is None and ctype == "application/octet-stream":
            ctype = mimetypes.guess_type(r.name)[0] or ctype
        if _none_match(headers.get("if-none-match"), r.etag):
            return Plan(304, base)
        range_header = headers.get("range")
        if range_header is not None and not _if_range_holds(headers.get("if-range"), r, base):
            range_header = None
        decision = decide(range_header, r.size, self.range_policy)
        if decision.outcome is Outcome.REFUSE:
            return _text(
                416,
                f"range not satisfiable: {decision.reason}",
                [*base, ("content-range", f"bytes */{r.size}")],
            )
        ranges = decision.ranges if decision.outcome is Outcome.PARTIAL else ((0, r.size),)
        missing = r.missing_chunks(ranges)
        if missing:
            return _text(
                416,
                "range touches chunks this peer has not verified yet",
                [
                    *base,
                    ("content-range", f"bytes */{r.size}"),
                    ("webseed-missing", ",".join(map(str, missing))),
                ],
            )
        if decision.outcome is Outcome.FULL:
            return self._body(r, 200, [*base, ("content-type", ctype)], [Part(b"", 0, r.size)])
        if len(ranges) == 1:
            start, end = ranges[0]
            return self._body(
                r,
                206,
                [
                    *base,
                    ("content-type", ctype),
                    ("content-range", f"bytes {start}-{end - 1}/{r.size}"),
                ],
                [Part(b"", start, end - start)],
            )
        boundary = secrets.token_hex(12)
        parts = []
        for i, (start, end) in enumerate(ranges):
            prefix = (
                ("\r\n" if i else "")
                + f"--{boundary}\r\ncontent-type: {ctype}\r\n"
                + f"content-range: bytes {start}-{end - 1}/{r.size}\r\n\r\n"
            )
            parts.append(Part(prefix.encode("latin-1"), start, end - start))
        return self._body(
            r,
            206,
            [*base, ("content-type", f"multipart/byteranges; boundary={boundary}")],
            parts,
            trailer=f"\r\n--{boundary}--\r\n".encode("latin-1"),
        )

    def _body(
        self,
        r: Resource,
        status: int,
        headers: list[tuple[str, str]],
        parts: list[Part],
        trailer: bytes = b"",
    ) -> Plan:
        if r.data is not None:
            # Small in-memory resources (manifests): materialise the body.
            body = b"".join(p.prefix + r.data[p.offset : p.offset + p.length] for p in parts)
            plan = Plan(status, headers, body + trailer)
        else:
            shifted = tuple(Part(p.prefix, r.offset + p.offset, p.length) for p in parts)
            plan = Plan(status, headers, file=r.file, parts=shifted, trailer=trailer, upload=r.name)
        plan.headers.append(("content-length", str(plan.length)))
        return plan


def _none_match(value: str | None, etag: str) -> bool:
    if not value:
        return False
    if value.strip() == "*":
        return True
    # Weak comparison (RFC 9110 §13.1.2): W/ prefixes do not matter.
    tags = {t.strip().removeprefix("W/") for t in value.split(",")}
    return etag in tags


def _if_range_holds(value: str | None, r: Resource, base: list[tuple[str, str]]) -> bool:
    """RFC 9110 §13.1.5: the Range applies only if the validator matches strongly."""
    if value is None:
        return True
    value = value.strip()
    if value.startswith('"'):
        return value == r.etag
    if value.startswith("W/") or r.last_modified is None:
        return False
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return False
    # A date is only a strong validator if it is exactly our Last-Modified.
    return dict(base).get("last-modified") == formatdate(when, usegmt=True)
