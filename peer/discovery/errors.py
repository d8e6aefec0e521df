"""Errors of the discovery layer."""

from __future__ import annotations

from webseed.errors import SignatureError, WebseedError


class AnnouncementError(SignatureError):
    """An announcement is malformed, oversized, forged, stale or expired."""


class DiscoveryError(WebseedError):
    """A peer-exchange or relay exchange failed (network, protocol, size)."""
