"""GeoIP proximity: place the client and each mirror, then compare the places.

Lookups use :mod:`geoip2` on any MaxMind-format ``.mmdb`` file (City or Country
type). Which file: an explicit path, else ``$WEBSEED_GEOIP_DB`` (a user's own
GeoLite2/GeoIP2 file), else the country-level DB-IP data shipped by the
``python-geoacumen`` package when it is installed; if none is available the
ranking works from measured performance alone.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import math
import os
from dataclasses import dataclass
from pathlib import Path

from geo.continents import continent_of
from geo.errors import GeoDatabaseError

ENV_DATABASE = "WEBSEED_GEOIP_DB"
EARTH_RADIUS_KM = 6371.0088


@dataclass(frozen=True)
class Place:
    """Where an address is, as far as the database (or the publisher) says."""

    country: str | None = None
    continent: str | None = None
    lat: float | None = None
    lon: float | None = None
    network: str | None = None  # the database block holding the address, e.g. "198.18.0.0/15"

    @property
    def has_coordinates(self) -> bool:
        return self.lat is not None and self.lon is not None


def normalize_ip(address: str) -> str | None:
    """Canonical text of an IP address; IPv4-mapped IPv6 becomes plain IPv4.

    ``None`` for anything that is not an IP literal (host names, garbage).
    Brackets and IPv6 zone ids are dropped.
    """
    text = address.strip().strip("[]").split("%", 1)[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in kilometres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


# Tiers, nearest first: used when coordinates are missing on either side.
TIER_NETWORK, TIER_COUNTRY, TIER_CONTINENT, TIER_FAR, TIER_UNKNOWN = range(5)
#: A stand-in distance per tier so that places with and without coordinates compare.
TIER_KM = {
    TIER_NETWORK: 0.0,
    TIER_COUNTRY: 500.0,
    TIER_CONTINENT: 2500.0,
    TIER_FAR: 9000.0,
    TIER_UNKNOWN: 5000.0,
}


@dataclass(frozen=True)
class Proximity:
    """How near a mirror is to the client: a tier and an (estimated) distance."""

    tier: int
    distance_km: float
    measured_by: str  # "coordinates" or "tier"


def proximity(client: Place | None, mirror: Place | None) -> Proximity:
    """Compare two places: same network, then coordinates, then country / continent."""
    if client is None or mirror is None:
        return Proximity(TIER_UNKNOWN, TIER_KM[TIER_UNKNOWN], "tier")
    if client.network is not None and client.network == mirror.network:
        tier = TIER_NETWORK
    elif client.country is not None and client.country == mirror.country:
        tier = TIER_COUNTRY
    elif client.continent is not None and client.continent == mirror.continent:
        tier = TIER_CONTINENT
    elif client.country is None and client.continent is None and not client.has_coordinates:
        tier = TIER_UNKNOWN
    else:
        tier = TIER_FAR
    if client.has_coordinates and mirror.has_coordinates:
        assert client.lat is not None and client.lon is not None
        assert mirror.lat is not None and mirror.lon is not None
        km = haversine_km(client.lat, client.lon, mirror.lat, mirror.lon)
        if tier == TIER_NETWORK:
            km = 0.0
        return Proximity(tier, km, "coordinates")
    return Proximity(tier, TIER_KM[tier], "tier")


def merge_places(declared: Place | None, looked_up: Place | None) -> Place | None:
    """A mirror's place: what the publisher declared wins, the lookup fills the gaps."""
    if declared is None:
        return looked_up
    if looked_up is None:
        return declared
    lat, lon = (
        (declared.lat, declared.lon) if declared.has_coordinates else (looked_up.lat, looked_up.lon)
    )
    country = declared.country or looked_up.country
    return Place(
        country=country,
        continent=declared.continent or looked_up.continent or continent_of(country),
        lat=lat,
        lon=lon,
        network=looked_up.network,
    )


class GeoLocator:
    """A geoip2 ``Reader`` on one ``.mmdb`` file; City and Country databases both work."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import geoip2.database  # the [geo] extra; imported here so the core client stays small
        import maxminddb

        self.path = Path(path)
        try:
            self._reader = geoip2.database.Reader(str(self.path))
        except (OSError, maxminddb.InvalidDatabaseError, ValueError) as exc:
            raise GeoDatabaseError(f"cannot open GeoIP database {self.path}: {exc}") from exc
        self.database_type: str = self._reader.metadata().database_type
        self._city = "City" in self.database_type

    def close(self) -> None:
        self._reader.close()

    def __enter__(self) -> GeoLocator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def locate(self, address: str) -> Place | None:
        """Place an IP address; ``None`` if it is not an IP or not in the database."""
        import geoip2.errors

        ip = normalize_ip(address)
        if ip is None:
            return None
        try:
            rec = self._reader.city(ip) if self._city else self._reader.country(ip)
        except geoip2.errors.AddressNotFoundError:
            return None
        country = rec.country.iso_code
        lat = lon = None
        if self._city:
            loc = rec.location  # type: ignore[attr-defined]
            lat, lon = loc.latitude, loc.longitude
        network = rec.traits.network
        return Place(
            country=country,
            continent=rec.continent.code or continent_of(country),
            lat=lat,
            lon=lon,
            network=str(network) if network is not None else None,
        )


def shipped_database() -> Path | None:
    """The ``.mmdb`` of the ``python-geoacumen`` package, if installed (not imported:
    its metadata pins an old ``maxminddb``, so it is installed without dependencies)."""
    spec = importlib.util.find_spec("geoacumen")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "db" / "Geoacumen-Country.mmdb"
    return path if path.is_file() else None


def database_path(setting: str | os.PathLike[str] | None = None) -> Path | None:
    """Which database to use: ``setting``, else ``$WEBSEED_GEOIP_DB``, else the shipped one."""
    if setting:
        return Path(setting)
    env = os.environ.get(ENV_DATABASE)
    if env:
        return Path(env)
    return shipped_database()


def open_locator(setting: str | os.PathLike[str] | None = None) -> GeoLocator | None:
    """Open the chosen database, or ``None`` when there is none (ranking still works).

    An explicitly named file that cannot be opened is an error, not a silent fallback.
    """
    path = database_path(setting)
    if path is None:
        return None
    return GeoLocator(path)
