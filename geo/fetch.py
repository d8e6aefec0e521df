"""The async I/O half: probe mirrors, place them, fetch ranges with racing and fail-over.

:class:`MirrorFetcher` drives a :class:`~geo.policy.MirrorPolicy` with real
requests: it asks the policy for the best mirrors, races them
(:func:`~geo.race.race_first_byte`), streams the body, feeds every outcome back
(time to first byte, throughput, failures), and when a mirror dies or stalls
mid-way resumes from the last byte received on the next best one.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx

from geo.checks import CheckFailed, check_body
from geo.errors import NoMirrorError
from geo.health import Failure
from geo.mirror import Mirror
from geo.policy import MirrorPolicy
from geo.proximity import GeoLocator, Place, normalize_ip
from geo.race import (
    DEFAULT_STAGGER,
    DEFAULT_TIMEOUT,
    AttemptFailure,
    classify,
    open_range,
    race_first_byte,
)

#: Floor of a probe's body time: a small probe on a fast link arrives "at once".
MIN_BODY_SECONDS = 1e-3


@dataclass
class ProbeResult:
    """The outcome of one small range probe."""

    url: str
    ok: bool
    rtt: float | None = None  # seconds to first body byte
    seconds: float = 0.0  # whole probe
    nbytes: int = 0
    failure: Failure | None = None
    detail: str = ""
    body_seconds: float = 0.0  # first body byte to last

    @property
    def rate(self) -> float | None:
        """Bytes/s of the body, or ``None`` for a failed probe."""
        return self.nbytes / self.body_seconds if self.ok and self.body_seconds > 0 else None


@dataclass
class FetchResult:
    """Bytes of one range and who served them."""

    data: bytes
    first_byte_s: float  # from the call to the first body byte
    total_s: float
    served_by: list[tuple[str, int, int]] = field(default_factory=list)  # url, start, end excl.
    failures: dict[str, str] = field(default_factory=dict)  # url -> why it was skipped


class MirrorFetcher:
    """Fetch byte ranges of repository paths from the mirrors of a policy."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        policy: MirrorPolicy,
        *,
        race_width: int = 3,
        stagger: float = DEFAULT_STAGGER,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        deadline: float = 10.0,
        max_switches: int = 8,
        min_rate: float | None = None,
        slow_grace: float = 1.0,
        sniff_html: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.policy = policy
        self.race_width = race_width
        self.stagger = stagger
        self.timeout = timeout
        self.deadline = deadline
        self.max_switches = max_switches
        self.min_rate = min_rate  # bytes/s below which a transfer is abandoned after slow_grace
        self.slow_grace = slow_grace
        self.sniff_html = sniff_html  # off when the artifacts themselves are HTML
        self.clock = clock

    # ------------------------------------------------------------------ placing

    async def locate(self, locator: GeoLocator | None, client_address: str | None = None) -> None:
        """Place the client (from an address it knows it has) and every mirror's host."""
        if locator is None:
            return
        if client_address is not None:
            self.policy.client = locator.locate(client_address)
        loop = asyncio.get_running_loop()

        async def one(mirror: Mirror) -> tuple[str, Place | None]:
            address = normalize_ip(mirror.host)
            if address is None:
                try:
                    infos = await asyncio.wait_for(
                        loop.getaddrinfo(mirror.host, None, type=socket.SOCK_STREAM), 2.0
                    )
                except (OSError, TimeoutError):
                    return mirror.url, None
                address = str(infos[0][4][0]) if infos else None
            return mirror.url, locator.locate(address) if address else None

        for url, place in await asyncio.gather(*(one(m) for m in self.policy.mirrors)):
            self.policy.set_place(url, place)

    # ------------------------------------------------------------------ probing

    async def probe(
        self,
        mirror: Mirror,
        path: str,
        start: int = 0,
        length: int = 64 * 1024,
        *,
        total_size: int | None = None,
        expected_digest: str | None = None,
        algorithm: str = "sha256",
    ) -> ProbeResult:
        """One small range probe; the outcome is recorded in the policy."""
        end = start + length - 1
        t0 = time.perf_counter()
        try:
            async with await open_range(
                self.client,
                mirror,
                path,
                start,
                end,
                total_size=total_size,
                timeout=self.timeout,
                sniff_html=self.sniff_html,
            ) as stream:
                body = bytearray()
                async for chunk in stream.chunks():
                    body += chunk
                check_body(bytes(body), length, expected_digest, algorithm)
                done = time.perf_counter()
                result = ProbeResult(
                    mirror.url,
                    True,
                    stream.rtt,
                    done - t0,
                    len(body),
                    # Throughput from first byte to last: connection set-up is in rtt.
                    body_seconds=max(done - stream.first_byte_at, MIN_BODY_SECONDS),
                )
        except (CheckFailed, httpx.HTTPError) as exc:
            kind, detail = classify(exc)
            result = ProbeResult(
                mirror.url, False, None, time.perf_counter() - t0, failure=kind, detail=detail
            )
            self.policy.on_failure(mirror.url, kind, self.clock(), detail)
            return result
        self.policy.on_success(
            mirror.url,
            self.clock(),
            rtt=result.rtt,
            nbytes=result.nbytes,
            seconds=result.body_seconds,
        )
        return result

    async def probe_all(
        self,
        path: str,
        start: int = 0,
        length: int = 64 * 1024,
        *,
        total_size: int | None = None,
        expected_digest: str | None = None,
        algorithm: str = "sha256",
        budget: float = 5.0,
    ) -> list[ProbeResult]:
        """Probe every mirror at once (bounded by ``budget`` seconds in all)."""
        mirrors = self.policy.mirrors
        tasks = [
            asyncio.create_task(
                self.probe(
                    m,
                    path,
                    start,
                    length,
                    total_size=total_size,
                    expected_digest=expected_digest,
                    algorithm=algorithm,
                )
            )
            for m in mirrors
        ]
        done, pending = await asyncio.wait(tasks, timeout=budget)
        for task in pending:
            task.cancel()
        results = []
        for mirror, task in zip(mirrors, tasks, strict=True):
            if task in done:
                results.append(task.result())
            else:
                self.policy.on_failure(mirror.url, Failure.TIMEOUT, self.clock(), "probe budget")
                results.append(
                    ProbeResult(mirror.url, False, None, budget, 0, Failure.TIMEOUT, "probe budget")
                )
        if pending:
            await asyncio.wait(pending)
        return results

    # ------------------------------------------------------------------ fetching

    def _record(
        self, failures: Sequence[AttemptFailure], report: dict[str, str], excluded: set[str]
    ) -> None:
        # Quick transport failures (refused, 5xx) are left to the health state, which
        # takes a mirror DOWN after a few; one that served bad bytes or used up a whole
        # race deadline is not asked again during this fetch.
        now = self.clock()
        for f in failures:
            self.policy.on_failure(f.mirror.url, f.kind, now, f.detail)
            report[f.mirror.url] = f"{f.kind.value}: {f.detail}"
            if f.kind.is_content or f.kind is Failure.TIMEOUT:
                excluded.add(f.mirror.url)

    async def fetch_range(
        self,
        path: str,
        start: int,
        end: int,
        *,
        total_size: int | None = None,
        expected_digest: str | None = None,
        algorithm: str = "sha256",
    ) -> FetchResult:
        """Fetch bytes ``start..end`` (inclusive) of ``path``, failing over between mirrors.

        Resumes from the last byte received when a mirror breaks off; with
        ``expected_digest`` a wrong result is blamed on every mirror that
        served part of it and fetched again from others. Raises
        :class:`NoMirrorError` (with each mirror's reason) when none can serve.
        """
        t0 = time.perf_counter()
        first_byte: float | None = None
        buf = bytearray()
        served: list[tuple[str, int, int]] = []
        report: dict[str, str] = {}
        excluded: set[str] = set()
        for _switch in range(self.max_switches):
            pos = start + len(buf)
            candidates = self.policy.candidates(self.clock(), self.race_width, list(excluded))
            if not candidates:
                break
            lost: list[AttemptFailure] = []
            try:
                stream = await race_first_byte(
                    self.client,
                    candidates,
                    path,
                    pos,
                    end,
                    total_size=total_size,
                    stagger=self.stagger,
                    timeout=self.timeout,
                    deadline=self.deadline,
                    failures=lost,
                    sniff_html=self.sniff_html,
                )
            except NoMirrorError:
                self._record(lost, report, excluded)
                continue
            self._record(lost, report, excluded)
            url = stream.mirror.url
            if first_byte is None:
                first_byte = time.perf_counter() - t0
            self.policy.on_success(url, self.clock(), rtt=stream.rtt)
            got_from = len(buf)
            t_body = time.perf_counter()
            try:
                async with stream:
                    async for chunk in stream.chunks():
                        buf += chunk
                        self._check_slow(url, len(buf) - got_from, t_body, excluded)
            except (CheckFailed, httpx.HTTPError) as exc:
                kind, detail = classify(exc)
                self.policy.on_failure(url, kind, self.clock(), detail)
                report[url] = f"{kind.value}: {detail}"
                if kind.is_content or kind is Failure.SLOW:
                    excluded.add(url)
                if len(buf) > got_from:
                    served.append((url, start + got_from, start + len(buf)))
                continue
            finally:
                self.policy.on_transfer(url, len(buf) - got_from, time.perf_counter() - t_body)
            served.append((url, start + got_from, start + len(buf)))
            try:
                check_body(bytes(buf), end - start + 1, expected_digest, algorithm)
            except CheckFailed as exc:
                for bad_url, _, _ in served:
                    self.policy.on_failure(bad_url, exc.kind, self.clock(), exc.detail)
                    report[bad_url] = f"{exc.kind.value}: {exc.detail}"
                    excluded.add(bad_url)
                buf.clear()
                served.clear()
                continue
            return FetchResult(bytes(buf), first_byte, time.perf_counter() - t0, served, report)
        raise NoMirrorError(f"no mirror could serve {path} bytes {start}-{end}", report)

    def _check_slow(self, url: str, nbytes: int, since: float, excluded: set[str]) -> None:
        """Abandon a transfer far below ``min_rate`` once another mirror is available."""
        if self.min_rate is None:
            return
        elapsed = time.perf_counter() - since
        if elapsed < self.slow_grace or nbytes / elapsed >= self.min_rate:
            return
        others = self.policy.candidates(self.clock(), 1, [*excluded, url])
        if others:
            raise CheckFailed(Failure.SLOW, f"{nbytes / elapsed:.0f} B/s after {elapsed:.1f}s")


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    """Hex digest helper for callers that build expected probe digests."""
    return hashlib.new(algorithm, data).hexdigest()
