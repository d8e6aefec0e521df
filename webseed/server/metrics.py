"""Prometheus metrics of one peer, and structured access logs.

Every app has its own :class:`PeerMetrics` (its own ``CollectorRegistry``, so
several peers in one process never mix their numbers), exposed as text at
``GET /.well-known/webseed/metrics``. The ASGI :class:`MetricsMiddleware`
counts what the server actually sent: status codes and body bytes by kind,
including ``503`` answers of the capacity queue. The download engine and the
mirror layer feed the other counters through the ``record_*`` hooks (reach them
as ``app.state.peer.metrics``). Every metric is described in
``docs/observability.md``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Media type of the text exposition format.
CONTENT_TYPE = CONTENT_TYPE_LATEST
#: Kinds of served bytes (label ``kind`` of ``webseed_bytes_served_total``).
KINDS = ("artifact", "chunk", "manifest", "metadata", "export", "api")
#: Kinds of sources bytes come from (label ``source_kind``).
SOURCE_KINDS = ("peer", "mirror", "cdn", "origin")
#: Most distinct mirrors with a health series; more are dropped (bounded cardinality).
MAX_MIRRORS = 256
_WELL_KNOWN = "/.well-known/webseed/"
_WK_KINDS = {"chunks": "chunk", "manifests": "manifest", "metadata": "metadata"}
#: Logger of the per-request access records (JSON with ``webseed serve --log-json``).
ACCESS_LOG = logging.getLogger("webseed.access")


class SlotSource(Protocol):
    """What the slots gauge reads (:class:`webseed.server.capacity.SlotPool`)."""

    @property
    def slots(self) -> int: ...
    @property
    def in_use(self) -> int: ...
    @property
    def waiting(self) -> int: ...


class _Slots(Collector):
    """Reads the upload slots at scrape time (no bookkeeping on the hot path)."""

    def __init__(self, pool: SlotSource | None) -> None:
        self.pool = pool

    def collect(self) -> Iterator[GaugeMetricFamily]:
        g = GaugeMetricFamily(
            "webseed_upload_slots",
            "Upload slots by state (capacity 0 = unlimited)",
            labels=["state"],
        )
        if self.pool is not None:
            g.add_metric(["capacity"], self.pool.slots)
            g.add_metric(["in_use"], self.pool.in_use)
            g.add_metric(["waiting"], self.pool.waiting)
        yield g


def source_kind(kind: str) -> str:
    """``kind`` if it is a known source kind, else ``"other"`` (bounded label values)."""
    return kind if kind in SOURCE_KINDS else "other"


class PeerMetrics:
    """The counters of one peer, in their own registry."""

    def __init__(self, pool: SlotSource | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.bytes_served = Counter(
            "webseed_bytes_served", "Body bytes sent, by kind", ["kind"], registry=r
        )
        self.requests = Counter(
            "webseed_http_requests", "Answers sent, by status code", ["status"], registry=r
        )
        self.range_requests = Counter(
            "webseed_range_requests", "Requests that carried a Range header", registry=r
        )
        self.over_capacity = Counter(
            "webseed_over_capacity", "Requests answered 503 (upload slots exhausted)", registry=r
        )
        self.bytes_received = Counter(
            "webseed_bytes_received",
            "Verified bytes downloaded, by source kind",
            ["source_kind"],
            registry=r,
        )
        self.verification_failures = Counter(
            "webseed_verification_failures",
            "Chunks that failed verification, by source kind",
            ["source_kind"],
            registry=r,
        )
        self.bans = Counter("webseed_bans", "Sources banned, by reason", ["reason"], registry=r)
        self.mirror_up = Gauge(
            "webseed_mirror_up", "1 if the mirror's last probe succeeded", ["mirror"], registry=r
        )
        self.mirror_rate = Gauge(
            "webseed_mirror_rate_bytes_per_second",
            "Last measured download rate from the mirror",
            ["mirror"],
            registry=r,
        )
        self.mirror_probes = Counter(
            "webseed_mirror_probes", "Mirror probes, by result", ["result"], registry=r
        )
        self.exports = Counter(
            "webseed_exports", "Metalink/torrent documents built, by format", ["format"], registry=r
        )
        r.register(_Slots(pool))
        self._mirrors: set[str] = set()
        self._refused_503: Any = None
        # Every label value exists from the start, so a scrape shows zeros, not gaps.
        for kind in KINDS:
            self.bytes_served.labels(kind)
        for sk in SOURCE_KINDS:
            self.bytes_received.labels(sk)
            self.verification_failures.labels(sk)

    # -- what the server counts ----------------------------------------------------------

    def answered(self, status: int, kind: str, nbytes: int, *, ranged: bool) -> None:
        """One answer: ``status``, ``nbytes`` of body of ``kind``; ``ranged`` if it had Range.

        Only successful (2xx) bodies count as served bytes; error texts do not.
        """
        self.requests.labels(str(status)).inc()
        if nbytes and 200 <= status < 300:
            self.bytes_served.labels(kind if kind in KINDS else "api").inc(nbytes)
        if ranged:
            self.range_requests.inc()
        if status == 503:
            self.over_capacity.inc()

    def refused(self, *, ranged: bool) -> None:
        """One ``503`` of the over-capacity fast path (label children bound once)."""
        if self._refused_503 is None:
            self._refused_503 = self.requests.labels("503")
        self._refused_503.inc()
        self.over_capacity.inc()
        if ranged:
            self.range_requests.inc()

    # -- hooks for the download engine and the mirror layer --------------------------------

    def record_received(self, kind: str, nbytes: int) -> None:
        """``nbytes`` verified bytes arrived from a source of ``kind`` (peer/mirror/cdn/origin)."""
        self.bytes_received.labels(source_kind(kind)).inc(nbytes)

    def record_verification_failure(self, kind: str) -> None:
        """A chunk from a source of ``kind`` did not match its digest."""
        self.verification_failures.labels(source_kind(kind)).inc()

    def record_ban(self, reason: str) -> None:
        """A source was banned; ``reason`` is a short fixed word (corrupt, slow, refused...)."""
        self.bans.labels(reason[:32] or "unknown").inc()

    def record_mirror_health(self, mirror: str, up: bool, rate: float | None = None) -> None:
        """The result of probing ``mirror`` (its base URL) and its measured rate in bytes/s."""
        self.mirror_probes.labels("ok" if up else "fail").inc()
        if mirror not in self._mirrors and len(self._mirrors) >= MAX_MIRRORS:
            return
        self._mirrors.add(mirror)
        self.mirror_up.labels(mirror).set(1 if up else 0)
        if rate is not None:
            self.mirror_rate.labels(mirror).set(rate)

    def record_export(self, fmt: str) -> None:
        """A ``.meta4`` (``metalink``) or ``.torrent`` document was built."""
        self.exports.labels(fmt).inc()

    def render(self) -> bytes:
        """The text exposition of every metric."""
        return generate_latest(self.registry)


def kind_of(path: str) -> str:
    """What a request path names: artifact, chunk, manifest, metadata, export or api."""
    at = path.find(_WELL_KNOWN)
    if at >= 0:
        segment = path[at + len(_WELL_KNOWN) :].split("/", 1)[0]
        return _WK_KINDS.get(segment, "api")
    if path.endswith((".meta4", ".torrent")):
        return "export"
    return "artifact"


class MetricsMiddleware:
    """ASGI middleware: counts every answer into ``metrics`` and logs it to ``webseed.access``.

    It sees the status of ``http.response.start`` and sums the body messages, so
    the counts are what was sent (a client that leaves early is counted for what
    it got). One call per body message (1 MiB by default): no per-block work.
    """

    def __init__(self, app: ASGIApp, metrics: PeerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status = 0
        sent = 0

        async def counting_send(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            path: str = scope.get("path", "")
            ranged = any(k == b"range" for k, _ in scope.get("headers", ()))
            self.metrics.answered(status or 500, kind_of(path), sent, ranged=ranged)
            if ACCESS_LOG.isEnabledFor(logging.INFO):
                client = scope.get("client") or ("", 0)
                ACCESS_LOG.info(
                    "%s %s %d",
                    scope.get("method", ""),
                    path,
                    status,
                    extra={
                        "http": {
                            "method": scope.get("method", ""),
                            "path": path,
                            "status": status,
                            "bytes": sent,
                            "range": ranged,
                            "client": client[0],
                            "duration_ms": round((time.monotonic() - started) * 1000, 3),
                        }
                    },
                )


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "http", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, separators=(",", ":"), default=str)


def configure_json_logs(stream: Any = None) -> logging.Handler:
    """Send the ``webseed.*`` logs (access records included) to ``stream`` as JSON lines."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("webseed")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return handler


class WsgiCount:
    """Counts one WSGI answer of the peer (the WSGI form of :class:`MetricsMiddleware`).

    Pass :meth:`start_response` to the peer; :meth:`wrap` its body. The count is
    taken when the server closes the body, so it is what was sent.
    """

    def __init__(self, metrics: PeerMetrics, environ: dict[str, Any], start_response: Any) -> None:
        self.metrics = metrics
        self.path = str(environ.get("PATH_INFO", ""))
        self.ranged = "HTTP_RANGE" in environ
        self._start_response = start_response
        self.status = 0
        self.sent = 0
        self._body: Any = None
        self._done = False

    def start_response(self, status: str, headers: Any, exc_info: Any = None) -> Any:
        """Remember the status code, then start the answer."""
        self.status = int(status.split(" ", 1)[0])
        if exc_info is None:  # as the peer called it: two arguments
            return self._start_response(status, headers)
        return self._start_response(status, headers, exc_info)

    def wrap(self, body: Any) -> WsgiCount:
        """This object as the body: iterates ``body``, counts it, closes it."""
        self._body = body
        return self

    def __iter__(self) -> Iterator[bytes]:
        for data in self._body:
            self.sent += len(data)
            yield data

    def close(self) -> None:
        """Close the wrapped body and count the answer (once)."""
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            if not self._done:
                self._done = True
                self.metrics.answered(
                    self.status, kind_of(self.path), self.sent, ranged=self.ranged
                )
