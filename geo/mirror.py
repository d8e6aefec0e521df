"""The :class:`Mirror` record shared by every discovery source.

A mirror is a plain HTTP(S) server holding the whole repository (``url`` is its
root and always ends with ``/``; artifacts are below it at their repository
paths) or, from a Metalink file, one artifact (``file_url`` is true and ``url``
is the file itself). It is trusted for
bytes only, never for content: the engine verifies every chunk.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from geo.errors import MirrorListError

#: Where a mirror was learned from; used in reports and as a tie-breaker.
SOURCES = ("index", "list", "metalink", "peer")
ALLOWED_SCHEMES = ("http", "https")


@dataclass(frozen=True)
class Mirror:
    """One HTTP mirror.

    ``priority`` follows Metalink: 1 is most preferred, larger is less; ``None``
    when unknown. ``capacity`` is the announced upload capacity in bytes/s.
    """

    url: str
    country: str | None = None
    continent: str | None = None
    lat: float | None = None
    lon: float | None = None
    capacity: float | None = None
    protocols: tuple[str, ...] = ("http",)
    priority: int | None = None
    source: str = "list"
    file_url: bool = False

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ALLOWED_SCHEMES or not parts.hostname:
            raise MirrorListError(f"not an http(s) mirror URL: {self.url!r}")
        if parts.query or parts.fragment:
            raise MirrorListError(f"mirror URL with a query or fragment: {self.url!r}")
        if not self.file_url and not self.url.endswith("/"):
            # A repository root: the signed index stores it without the slash.
            object.__setattr__(self, "url", self.url + "/")
        if self.source not in SOURCES:
            raise MirrorListError(f"unknown mirror source {self.source!r}")
        if self.country is not None:
            if len(self.country) != 2 or not self.country.isalpha():
                raise MirrorListError(f"country must be an ISO 3166 alpha-2 code: {self.country!r}")
            object.__setattr__(self, "country", self.country.upper())
        if (self.lat is None) != (self.lon is None):
            raise MirrorListError(f"{self.url}: give both lat and lon or neither")
        if (
            self.lat is not None
            and self.lon is not None
            and not (-90.0 <= self.lat <= 90.0 and -180.0 <= self.lon <= 180.0)
        ):
            raise MirrorListError(f"{self.url}: coordinates out of range")
        if self.capacity is not None and not (math.isfinite(self.capacity) and self.capacity > 0):
            raise MirrorListError(f"{self.url}: capacity must be a positive number")

    @property
    def host(self) -> str:
        """The mirror's host name or IP literal (brackets stripped)."""
        host = urlsplit(self.url).hostname
        assert host is not None  # checked in __post_init__
        return host

    def url_for(self, path: str) -> str:
        """The URL of repository ``path`` on this mirror (the file URL itself for Metalink)."""
        if self.file_url:
            return self.url
        return self.url + quote(path.lstrip("/"), safe="/-._~")

    @classmethod
    def from_dict(cls, record: Mapping[str, Any], source: str = "index") -> Mirror:
        """Build from the dict form used by the signed index and peer announcements.

        Keys: ``url`` (required, the repository root), ``country``,
        ``continent``, ``lat``, ``lon`` (numbers or decimal strings, as the
        signed index carries them), ``capacity``, ``protocols``, ``priority``.
        Unknown keys are ignored so that newer publishers can add fields.
        """
        if not isinstance(record, Mapping):
            raise MirrorListError(f"mirror record must be an object, got {type(record).__name__}")
        url = record.get("url")
        if not isinstance(url, str):
            raise MirrorListError("mirror record without a string 'url'")
        protocols = record.get("protocols", ("http",))
        if isinstance(protocols, str) or not all(isinstance(p, str) for p in protocols):
            raise MirrorListError(f"{url}: protocols must be a list of strings")
        try:
            return cls(
                url=url,
                country=_opt_str(record.get("country")),
                continent=_opt_str(record.get("continent")),
                lat=_opt_float(record.get("lat")),
                lon=_opt_float(record.get("lon")),
                capacity=_opt_float(record.get("capacity")),
                protocols=tuple(protocols),
                priority=_opt_int(record.get("priority")),
                source=source,
            )
        except (TypeError, ValueError) as exc:
            raise MirrorListError(f"{url}: bad mirror record: {exc}") from exc


def _opt_str(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


def _opt_float(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


def _opt_int(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError(f"expected an integer, got {value!r}")
    return int(value)
