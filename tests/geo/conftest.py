"""Fixtures: real mirror servers and a small City-type GeoIP database built with mmdb-writer."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from tests.geo.servers import MirrorServer

# Test geography (all on loopback): the client and "near" mirrors sit in Frankfurt,
# 127.128.0.0/9 is New York, 198.18.0.0/15 is Tokyo.
FRANKFURT = {"country": "DE", "continent": "EU", "lat": 50.11, "lon": 8.68}
BERLIN = {"country": "DE", "continent": "EU", "lat": 52.52, "lon": 13.40}
NEW_YORK = {"country": "US", "continent": "NA", "lat": 40.71, "lon": -74.01}
TOKYO = {"country": "JP", "continent": "AS", "lat": 35.68, "lon": 139.69}


def _city(place: dict[str, object]) -> dict[str, object]:
    return {
        "country": {"iso_code": place["country"], "names": {"en": str(place["country"])}},
        "continent": {"code": place["continent"]},
        "location": {"latitude": float(place["lat"]), "longitude": float(place["lon"])},  # type: ignore[arg-type]
    }


def build_city_mmdb(path: Path) -> Path:
    """A GeoLite2-City-shaped database covering 127.0.0.0/8 and 198.18.0.0/15."""
    writer = MMDBWriter(
        ip_version=6,
        ipv4_compatible=True,
        database_type="Test-City",
        languages=["en"],
        description="webseed test geography",
    )
    writer.insert_network(IPSet(["127.0.0.0/10"]), _city(FRANKFURT))
    writer.insert_network(IPSet(["127.64.0.0/10"]), _city(BERLIN))
    writer.insert_network(IPSet(["127.128.0.0/9"]), _city(NEW_YORK))
    writer.insert_network(IPSet(["198.18.0.0/15"]), _city(TOKYO))
    writer.to_db_file(str(path))
    return path


@pytest.fixture(scope="session")
def city_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_city_mmdb(tmp_path_factory.mktemp("geoip") / "test-city.mmdb")


@pytest.fixture
def mirror_factory() -> Iterator[Callable[..., MirrorServer]]:
    started: list[MirrorServer] = []

    def make(mode: str = "good", **kw: object) -> MirrorServer:
        server = MirrorServer(mode, **kw)  # type: ignore[arg-type]
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()
