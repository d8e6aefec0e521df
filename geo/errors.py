"""Errors raised by the mirrors package (all are :class:`webseed.errors.WebseedError`)."""

from __future__ import annotations

from webseed.errors import WebseedError


class MirrorListError(WebseedError):
    """A mirror list, Metalink file or mirror record is malformed or unsafe to parse."""


class GeoDatabaseError(WebseedError):
    """A GeoIP database cannot be opened or is not a MaxMind-format file."""


class NoMirrorError(WebseedError):
    """No mirror could serve the requested bytes; ``failures`` says why each was skipped."""

    def __init__(self, message: str, failures: dict[str, str] | None = None) -> None:
        self.failures: dict[str, str] = dict(failures or {})
        detail = "; ".join(f"{url}: {why}" for url, why in self.failures.items())
        super().__init__(f"{message} ({detail})" if detail else message)
