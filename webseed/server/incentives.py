"""Seeding incentives in the server: who is asking (authenticated), what we gave, receipts.

This module composes :mod:`peer.incentives` into the HTTP server with a few
hooks (see ``docs/incentives.md``, "In the server"):

* :class:`Authenticator` verifies the ``Webseed-Peer`` request header
  (signature, clock skew, replay cache). A request without a valid header is
  *anonymous*: served like any free rider, never credited, logged.
* :class:`PeerIncentives` holds the peer's identity, ledger, receipt book and
  recognition counters under one lock; it accounts every upload to a verified
  identity and artifact, persists them periodically and on shutdown, answers
  ``POST /.well-known/webseed/receipts``, adds recognition to the stats
  endpoint and signs the ``GET /.well-known/webseed/contribution`` summary.
* :class:`RankByContribution` is the ``UploadPolicy`` the slot queue uses: the
  incentives layer's :class:`~peer.incentives.adapter.IncentiveUploadPolicy`
  ranking, under the lock. Accounting is done by :meth:`PeerIncentives.served`
  whichever policy orders the queue (FIFO included).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from starlette.requests import Request

from peer.incentives.adapter import IncentiveUploadPolicy
from peer.incentives.auth import RequestVerifier
from peer.incentives.errors import AuthError, ReceiptError
from peer.incentives.identity import PeerIdentity, load_or_create
from peer.incentives.ledger import Ledger
from peer.incentives.priority import SlotPolicy
from peer.incentives.receipts import Receipt, ReceiptBook, contribution
from peer.incentives.recognition import Recognition, sign_summary
from peer.incentives.stats import LEDGER_FILE, RECOGNITION_FILE, default_state_dir
from peer.incentives.store import read_json, write_json
from webseed.server.capacity import Requester

log = logging.getLogger("webseed.server.incentives")

#: Request header carrying the signed identity (lower-cased, as the planner sees headers).
AUTH_HEADER = "webseed-peer"
#: Endpoints under ``/.well-known/webseed/``.
RECEIPTS = "receipts"
CONTRIBUTION = "contribution"
#: Largest receipts body accepted (a receipt is at most 1 KiB) and receipts per body.
MAX_RECEIPTS_BODY = 64 * 1024
MAX_RECEIPTS = 64
#: Receipts naming us as uploader we keep to show third peers (best per issuer+artifact).
MAX_HELD = 256
HELD_FILE = "receipts-held.json"
#: At most this many artifacts accrue seeding time per tick (bounds the recognition file).
MAX_SEEDED_ARTIFACTS = 4096


class Authenticator:
    """Turns a request's ``Webseed-Peer`` header into a verified peer id, or ``""``.

    Thread-safe (the WSGI form calls it from many threads). ``target`` is the
    request target the client signed: the raw path with its query, exactly as
    sent on the request line (``/a%20b.bin?x=1``).
    """

    def __init__(
        self, verifier: RequestVerifier | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.verifier = verifier or RequestVerifier()
        self.clock = clock
        self._lock = threading.Lock()
        self.rejected = 0

    def identify(self, headers: Mapping[str, str], method: str, target: str) -> str:
        """The verified peer id, or ``""`` (anonymous) when absent or invalid (logged)."""
        value = headers.get(AUTH_HEADER)
        if value is None:
            return ""
        with self._lock:
            try:
                return self.verifier.verify(
                    value,
                    method,
                    headers.get("host", ""),
                    target,
                    headers.get("range", ""),
                    now=self.clock(),
                )
            except AuthError:
                # RequestVerifier has logged the reason; the request goes on anonymously.
                self.rejected += 1
                return ""


@dataclass
class Reply:
    """A small JSON or text answer of the incentives endpoints."""

    status: int
    body: bytes
    content_type: str = "application/json"
    extra: tuple[tuple[str, str], ...] = ()


def _json_reply(status: int, obj: object) -> Reply:
    return Reply(status, json.dumps(obj, sort_keys=True, separators=(",", ":")).encode())


class PeerIncentives:
    """The server's incentive state: identity, ledger, receipts, recognition; thread-safe.

    ``state_dir`` holds ``ledger.json``, ``recognition.json`` and
    ``receipts-held.json`` (``None``: in memory only). Call :meth:`tick`
    periodically (the ASGI app does, every ``save_interval`` seconds) and
    :meth:`close` on shutdown.
    """

    def __init__(
        self,
        identity: PeerIdentity,
        state_dir: Path | None = None,
        *,
        slots: SlotPolicy | None = None,
        save_interval: float = 60.0,
        clock: Callable[[], float] = time.time,
        artifact_size: Callable[[str], int | None] | None = None,
    ) -> None:
        self.identity = identity
        self.state_dir = state_dir
        self.clock = clock
        self.save_interval = save_interval
        self.lock = threading.RLock()
        self.ledger = Ledger(state_dir / LEDGER_FILE if state_dir else None)
        self.recognition = Recognition(state_dir / RECOGNITION_FILE if state_dir else None)
        self.book = ReceiptBook(self.ledger, artifact_size=artifact_size)
        self.adapter = IncentiveUploadPolicy(
            self.ledger, book=self.book, recognition=self.recognition, slots=slots, clock=clock
        )
        self.auth = Authenticator(clock=clock)
        self.offered: Callable[[], Iterable[str]] = tuple
        self.held: dict[tuple[str, str], Receipt] = {}
        self._load_held()
        now = clock()
        self._last_tick = now
        self._last_save = now
        self._closed = False

    @classmethod
    def open(
        cls,
        state_dir: Path | None = None,
        identity_dir: Path | None = None,
        **kwargs: Any,
    ) -> PeerIncentives:
        """State in ``state_dir`` (default ``$XDG_STATE_HOME/webseed``), identity made on first run.

        The identity lives in ``identity_dir``; by default in ``state_dir``
        when one is given (as ``webseed stats --state-dir`` expects), else in
        ``$XDG_CONFIG_HOME/webseed``.
        """
        directory = state_dir if state_dir is not None else default_state_dir()
        ident_dir = identity_dir if identity_dir is not None else state_dir
        return cls(load_or_create(ident_dir), directory, **kwargs)

    @property
    def peer_id(self) -> str:
        """This peer's id."""
        return self.identity.peer_id

    def upload_policy(self) -> RankByContribution:
        """The upload-queue policy ranking by this peer's ledger and receipts."""
        return RankByContribution(self)

    # -- accounting -----------------------------------------------------------------

    def served(self, requester: Requester, nbytes: int) -> None:
        """``nbytes`` of artifact ``requester.path`` went to ``requester`` (verified id or "")."""
        if nbytes <= 0:
            return
        with self.lock:
            self.adapter.served(requester, nbytes)

    def received(self, peer_id: str, artifact: str, nbytes: int) -> None:
        """We downloaded ``nbytes`` *verified* bytes of ``artifact`` from ``peer_id``.

        The download engine calls this; it learns the uploader's id from the
        uploader's signed ``GET /.well-known/webseed/contribution`` summary.
        This is the peer's direct credit with us.
        """
        if nbytes <= 0 or not peer_id or peer_id == self.peer_id:
            return
        now = self.clock()
        with self.lock:
            self.ledger.record_download(peer_id, artifact, nbytes, now)
            self.recognition.downloaded(artifact, nbytes)

    def rank(self, requester: Requester) -> float:
        """Upload-queue rank (see :class:`RankByContribution`)."""
        with self.lock:
            return self.adapter.rank(requester)

    def credit(self, peer_id: str) -> float:
        """Direct + receipt credit of ``peer_id`` now (bytes)."""
        with self.lock:
            return contribution(self.ledger, self.book, peer_id, self.clock())

    # -- persistence and seeding time ---------------------------------------------------

    def tick(self, *, force: bool = False) -> bool:
        """Add seeding time for the artifacts offered; save if due (or ``force``). True if saved."""
        now = self.clock()
        names = []
        for name in self.offered():
            names.append(name)
            if len(names) >= MAX_SEEDED_ARTIFACTS:
                break
        with self.lock:
            elapsed = max(0.0, now - self._last_tick)
            self._last_tick = now
            if elapsed:
                for name in names:
                    self.recognition.seeded(name, elapsed)
            if not force and now - self._last_save < self.save_interval:
                return False
            self._last_save = now
            self.ledger.save()
            self.recognition.save()
            self._save_held()
            return self.state_dir is not None

    def close(self) -> None:
        """Final tick and save (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self.tick(force=True)

    # -- receipts -------------------------------------------------------------------------

    def _load_held(self) -> None:
        data = read_json(self.state_dir / HELD_FILE) if self.state_dir else None
        for item in data if isinstance(data, list) else []:
            try:
                r = Receipt.from_dict(item)
                r.check_signature()
            except ReceiptError:
                continue
            if r.uploader == self.peer_id:
                self.held[(r.issuer, r.artifact)] = r

    def _save_held(self) -> None:
        if self.state_dir is not None:
            write_json(self.state_dir / HELD_FILE, [r.to_dict() for r in self.held.values()])

    def _hold(self, r: Receipt, now: float) -> None:
        """Keep a receipt a downloader issued *to us*, to show third peers."""
        r.check_signature()
        if r.issuer == r.uploader:
            raise ReceiptError("self-issued receipt")
        if r.expires <= now:
            raise ReceiptError("expired receipt")
        key = (r.issuer, r.artifact)
        old = self.held.get(key)
        if old is not None and (r.seq <= old.seq or r.nbytes < old.nbytes):
            raise ReceiptError("replayed or stale receipt")
        self.held[key] = r
        if len(self.held) > MAX_HELD:
            # Keep the receipts that prove the most; drop the smallest.
            smallest = min(self.held, key=lambda k: (self.held[k].nbytes, self.held[k].expires))
            del self.held[smallest]

    def accept_receipts(self, body: bytes, presenter: str) -> Reply:
        """``POST /.well-known/webseed/receipts``: one receipt, a list, or ``{"receipts": [...]}``.

        A receipt naming *us* as uploader is kept (for our contribution
        summary); any other is evidence presented by its uploader and goes to
        the receipt book, which credits the authenticated presenter. ``400`` if
        the body is not receipts or none of them was accepted (each reason
        listed), ``401`` if a third-party receipt comes without a valid
        ``Webseed-Peer`` header.
        """
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return _json_reply(400, {"error": "body is not JSON receipts"})
        items = data.get("receipts") if isinstance(data, dict) and "receipts" in data else data
        if isinstance(items, dict):
            items = [items]
        if not isinstance(items, list) or not items:
            return _json_reply(400, {"error": "expected a receipt or a list of receipts"})
        if len(items) > MAX_RECEIPTS:
            return _json_reply(400, {"error": f"at most {MAX_RECEIPTS} receipts per request"})
        now = self.clock()
        results: list[dict[str, Any]] = []
        anonymous_third_party = False
        with self.lock:
            for item in items:
                try:
                    r = Receipt.from_dict(item)
                    if r.uploader == self.peer_id:
                        self._hold(r, now)
                        results.append({"held": r.nbytes})
                    elif not presenter:
                        anonymous_third_party = True
                        raise ReceiptError("presenting a receipt needs a valid Webseed-Peer header")
                    else:
                        results.append(
                            {"credited": self.book.accept(r, presenter=presenter, now=now)}
                        )
                except ReceiptError as exc:
                    log.warning("receipt refused (presenter %r): %s", presenter[:12], exc)
                    results.append({"error": str(exc)})
        accepted = sum(1 for r in results if "error" not in r)
        answer = {"accepted": accepted, "results": results}
        if accepted:
            return _json_reply(200, answer)
        if anonymous_third_party:
            reply = _json_reply(401, answer)
            reply.extra = (("www-authenticate", "Webseed-Peer"),)
            return reply
        return _json_reply(400, answer)

    # -- recognition ---------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Level, badges, seeding time, bytes per artifact and overall; ledger totals."""
        now = self.clock()
        with self.lock:
            rec = self.recognition.summary()
            ledger = self.ledger.summary(now)
            held = sum(r.nbytes for r in self.held.values())
        return {
            "peer_id": self.peer_id,
            "level": rec["level"],
            "badges": rec["badges"],
            "seeding_seconds": rec["total"]["seconds"],
            "bytes_served": rec["total"]["served"],
            "bytes_downloaded": rec["total"]["downloaded"],
            "per_artifact": rec["artifacts"],
            "ledger": {"peers": ledger["peers"], "up": ledger["up"], "down": ledger["down"]},
            "receipted_bytes": held,
            "rejected_identity_headers": self.auth.rejected,
        }

    def contribution(self) -> bytes:
        """The signed contribution summary (checked by ``recognition.verify_summary``)."""
        now = self.clock()
        with self.lock:
            return sign_summary(self.identity, self.recognition, now, list(self.held.values()))


class RankByContribution:
    """``UploadPolicy``: rank waiting requests by contribution (PropShare + optimistic slots).

    Accounting is not done here but in :meth:`PeerIncentives.served` (called
    by the server for every upload whatever the policy), so it also happens
    with FIFO.
    """

    def __init__(self, incentives: PeerIncentives) -> None:
        self.incentives = incentives

    def rank(self, requester: Requester) -> float:
        """Larger is served first."""
        return self.incentives.rank(requester)

    def served(self, requester: Requester, nbytes: int) -> None:
        """Nothing: :meth:`PeerIncentives.served` accounts."""


def request_target(scope: Mapping[str, Any]) -> str:
    """The request target as the client sent (and signed) it: raw path and query."""
    raw = scope.get("raw_path")
    if isinstance(raw, bytes) and raw:
        path = raw.decode("latin-1")
    else:
        path = urllib.parse.quote(str(scope.get("root_path", "")) + str(scope.get("path", "")))
    query = scope.get("query_string", b"")
    return f"{path}?{query.decode('latin-1')}" if query else path


def wsgi_target(environ: Mapping[str, Any]) -> str:
    """:func:`request_target` for WSGI: ``RAW_URI``/``REQUEST_URI`` if the server gives one."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if isinstance(raw, str) and raw.startswith("/"):
        return raw
    # PEP 3333: SCRIPT_NAME and PATH_INFO are the decoded URL bytes as latin-1; re-encode them.
    path = urllib.parse.quote(
        (environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")).encode("latin-1"),
        safe="/:@!$&'()*+,;=~",
    )
    query = environ.get("QUERY_STRING", "")
    return f"{path}?{query}" if query else path


async def read_body(request: Request, limit: int = MAX_RECEIPTS_BODY) -> bytes | None:
    """The request body, or ``None`` if it exceeds ``limit`` (checked before and while reading)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def lifespan(
    incentives: PeerIncentives,
) -> Callable[[Any], contextlib.AbstractAsyncContextManager[None]]:
    """A Starlette lifespan: tick (seeding time, periodic save) while serving, save on shutdown."""

    @contextlib.asynccontextmanager
    async def run(app: Any) -> AsyncIterator[None]:
        async def ticker() -> None:
            while True:
                await anyio.sleep(min(incentives.save_interval, 60.0))
                await anyio.to_thread.run_sync(incentives.tick)

        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker)
            try:
                yield
            finally:
                tg.cancel_scope.cancel()
        await anyio.to_thread.run_sync(incentives.close)

    return run
