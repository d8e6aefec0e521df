"""Finding peers without a tracker: signed self-announcements, gossip, LAN, relays.

* :mod:`.announce` — the signed self-announcement and its validation.
* :mod:`.store` — the bounded, eclipse-resistant gossip store (also the server's ``PexSource``).
* :mod:`.exchange` — the sans-I/O state machine deciding whom to ask and what to send.
* :mod:`.client` — the asyncio/httpx driver (proxies honoured).
* :mod:`.asgi` — the ASGI endpoints (``/.well-known/webseed/pex``, relay) as a wrapper.
* :mod:`.bootstrap` — where first contacts come from, and the persisted last-served peers.
* :mod:`.lan` — BEP 14-style UDP multicast discovery (off by default).
* :mod:`.relay` — how outbound-only peers still serve chunks.
"""
