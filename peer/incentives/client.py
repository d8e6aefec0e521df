"""Client side of authenticated peer requests: sign every request the download engine sends.

The download engine uses an ``httpx`` client with :class:`PeerAuth`::

    identity = load_or_create()                     # peer.incentives.identity
    client = httpx.AsyncClient(auth=PeerAuth(identity))
    await client.get(url, headers={"Range": "bytes=0-1048575"})

:class:`PeerAuth` signs each request (also each redirect hop and retry, since
httpx runs the auth flow per request) with the ``Range`` and ``Host`` it
actually carries, so the serving peer can credit and prioritise it
(:mod:`.auth`). Without httpx, :func:`sign_request` gives the header value for
one request: ``headers["Webseed-Peer"] = sign_request(identity, "GET", url, range_)``.

A header is valid for one use within the verifier's clock-skew window
(default ±120 s): sign right before sending, never reuse a header.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator

import httpx

from .auth import HEADER
from .auth import sign_request as _sign
from .identity import PeerIdentity


def _target(url: httpx.URL) -> str:
    # raw_path is the request-line target: percent-encoded path plus query.
    return url.raw_path.decode("ascii")


def sign_request(
    identity: PeerIdentity,
    method: str,
    url: str | httpx.URL,
    range_: str = "",
    *,
    now: float | None = None,
) -> str:
    """The ``Webseed-Peer`` header value for ``method url`` with ``Range: range_`` (or none).

    The signed host is the URL's authority as the ``Host`` header carries it
    (port omitted when it is the scheme's default), the signed target its raw
    path and query.
    """
    u = httpx.URL(url)
    host = u.netloc.decode("ascii")
    return _sign(
        identity,
        method,
        host,
        _target(u),
        range_,
        now=time.time() if now is None else now,
    )


class PeerAuth(httpx.Auth):
    """``httpx`` authentication that adds a fresh ``Webseed-Peer`` header to every request."""

    def __init__(self, identity: PeerIdentity, clock: Callable[[], float] = time.time) -> None:
        self.identity = identity
        self.clock = clock

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Sign ``request`` as it will be sent (its Host header, target and Range)."""
        host = request.headers.get("host") or request.url.netloc.decode("ascii")
        request.headers[HEADER] = _sign(
            self.identity,
            request.method,
            host,
            _target(request.url),
            request.headers.get("range", ""),
            now=self.clock(),
        )
        yield request
