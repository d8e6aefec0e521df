"""GeoIP lookups on real .mmdb files written by mmdb-writer (no mocks of geoip2)."""

from __future__ import annotations

import sys
from pathlib import Path

import geoip2.database
import geoip2.errors
import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from geo.continents import continent_of
from geo.errors import GeoDatabaseError
from geo.proximity import (
    ENV_DATABASE,
    TIER_CONTINENT,
    TIER_COUNTRY,
    TIER_FAR,
    TIER_NETWORK,
    TIER_UNKNOWN,
    GeoLocator,
    Place,
    database_path,
    haversine_km,
    merge_places,
    normalize_ip,
    open_locator,
    proximity,
    shipped_database,
)


def test_city_lookup_places_loopback_and_benchmark_networks(city_db: Path) -> None:
    with GeoLocator(city_db) as geo:
        assert geo.database_type == "Test-City"
        here = geo.locate("127.0.0.1")
        assert here == Place("DE", "EU", 50.11, 8.68, "127.0.0.0/10")
        assert geo.locate("127.200.1.2") == Place("US", "NA", 40.71, -74.01, "127.128.0.0/9")
        tokyo = geo.locate("198.19.255.254")
        assert tokyo is not None and tokyo.country == "JP" and tokyo.network == "198.18.0.0/15"
        assert geo.locate("8.8.8.8") is None
        assert geo.locate("not-an-ip") is None


def test_ipv4_mapped_ipv6_is_normalised_before_lookup(city_db: Path) -> None:
    # The raw reader does not find the mapped form: normalising is what makes it work.
    with (
        geoip2.database.Reader(str(city_db)) as raw,
        pytest.raises(geoip2.errors.AddressNotFoundError),
    ):
        raw.city("::ffff:127.0.0.1")
    with GeoLocator(city_db) as geo:
        assert geo.locate("::ffff:127.0.0.1") == geo.locate("127.0.0.1")
        assert geo.locate("[::ffff:198.18.0.1]") == geo.locate("198.18.0.1")
    assert normalize_ip("fe80::1%eth0") == "fe80::1"
    assert normalize_ip("example.org") is None


def test_country_database_uses_the_continent_table(tmp_path: Path) -> None:
    writer = MMDBWriter(ip_version=4, database_type="Test-Country")
    writer.insert_network(IPSet(["127.0.0.0/8"]), {"country": {"iso_code": "FR"}})
    path = tmp_path / "country.mmdb"
    writer.to_db_file(str(path))
    with GeoLocator(path) as geo:
        place = geo.locate("127.1.2.3")
        assert place is not None
        assert (place.country, place.continent, place.lat) == ("FR", "EU", None)
    assert continent_of("jp") == "AS" and continent_of(None) is None and continent_of("ZZ") is None


def test_haversine_and_tiers() -> None:
    assert haversine_km(50.11, 8.68, 50.11, 8.68) == 0
    assert 6200 < haversine_km(50.11, 8.68, 40.71, -74.01) < 6250  # Frankfurt–New York
    fra = Place("DE", "EU", 50.11, 8.68, "127.0.0.0/10")
    ber = Place("DE", "EU", 52.52, 13.40, "127.64.0.0/10")
    assert proximity(fra, fra).tier == TIER_NETWORK and proximity(fra, fra).distance_km == 0
    p = proximity(fra, ber)
    assert p.tier == TIER_COUNTRY and 400 < p.distance_km < 450 and p.measured_by == "coordinates"
    assert proximity(fra, Place("FR", "EU")).tier == TIER_CONTINENT
    far = proximity(fra, Place("US", "NA"))
    assert far.tier == TIER_FAR and far.measured_by == "tier"
    assert proximity(None, fra).tier == TIER_UNKNOWN
    assert proximity(Place(), fra).tier == TIER_UNKNOWN


def test_merge_places_declared_wins() -> None:
    declared = Place(country="SE", lat=59.3, lon=18.1)
    looked = Place("DE", "EU", 50.1, 8.7, "127.0.0.0/10")
    merged = merge_places(declared, looked)
    assert merged == Place("SE", "EU", 59.3, 18.1, "127.0.0.0/10")
    assert merge_places(Place(country="SE"), looked) == Place("SE", "EU", 50.1, 8.7, "127.0.0.0/10")
    assert merge_places(None, looked) is looked and merge_places(declared, None) is declared


def test_database_setting_env_and_errors(
    city_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_DATABASE, str(city_db))
    assert database_path() == city_db
    geo = open_locator()
    assert geo is not None and geo.path == city_db
    geo.close()
    assert database_path(tmp_path / "own.mmdb") == tmp_path / "own.mmdb"
    with pytest.raises(GeoDatabaseError):
        open_locator(tmp_path / "missing.mmdb")
    junk = tmp_path / "junk.mmdb"
    junk.write_bytes(b"not a database" * 100)
    with pytest.raises(GeoDatabaseError):
        GeoLocator(junk)


def test_shipped_database_found_by_package_location(
    city_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stand-in ``geoacumen`` package dir on sys.path, holding a real .mmdb file."""
    monkeypatch.delenv(ENV_DATABASE, raising=False)
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    sys.modules.pop("geoacumen", None)
    pkg = tmp_path / "geoacumen"
    (pkg / "db").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    assert shipped_database() is None  # package without its data file
    (pkg / "db" / "Geoacumen-Country.mmdb").write_bytes(city_db.read_bytes())
    assert shipped_database() == pkg / "db" / "Geoacumen-Country.mmdb"
    assert database_path() == shipped_database()


def test_no_database_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_DATABASE, raising=False)
    (tmp_path / "geoacumen.py").write_text("")  # a module, not a package with data
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    sys.modules.pop("geoacumen", None)
    assert shipped_database() is None
    assert open_locator() is None
