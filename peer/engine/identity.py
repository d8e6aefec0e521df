"""The download engine's requests signed with the peer identity, so serving peers credit us.

:class:`SwarmAuth` is an ``httpx.Auth`` for the engine's client: every request
to a peer carries a fresh ``Webseed-Peer`` header (:class:`peer.incentives.client.PeerAuth`),
so a peer with incentives on accounts the bytes it serves to our identity and,
when saturated, serves us by our contribution. Requests under the ``unsigned``
base URLs (the mirrors: plain HTTP servers that credit nobody) go out without
it, so mirrors never learn a stable identity of ours. A server that does not
know the header ignores it (nginx does), so signing is never a reason to fail.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterable

import httpx

from peer.incentives.client import PeerAuth
from peer.incentives.identity import PeerIdentity


class SwarmAuth(httpx.Auth):
    """Sign requests with ``identity``, except those under the ``unsigned`` base URLs."""

    def __init__(
        self,
        identity: PeerIdentity,
        unsigned: Iterable[str] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.identity = identity
        self.signer = PeerAuth(identity, clock)
        self.unsigned = tuple(u.rstrip("/") + "/" for u in unsigned)

    @property
    def peer_id(self) -> str:
        """Our peer id."""
        return self.identity.peer_id

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Sign ``request`` unless it goes to a mirror."""
        if str(request.url).startswith(self.unsigned):
            yield request
            return
        yield from self.signer.auth_flow(request)
