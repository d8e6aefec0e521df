"""``webseed mirrors rank`` against real mirrors and a real test GeoIP database."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.geo.servers import PATH, MirrorServer, free_refused_port
from webseed.cli import app

Factory = Callable[..., MirrorServer]
runner = CliRunner()


def test_rank_list_with_geoip_and_probes(
    mirror_factory: Factory, city_db: Path, tmp_path: Path
) -> None:
    near = mirror_factory("good", host="127.0.0.2")
    far = mirror_factory("good", host="127.200.0.1")
    dead = f"http://127.0.0.1:{free_refused_port()}/"
    listing = tmp_path / "mirrors.txt"
    listing.write_text(f"{dead}\n{far.url} US\n{near.url}\n")
    args = ["mirrors", "rank", "--list", str(listing), "--path", PATH]
    geo = ["--geoip-db", str(city_db), "--client-ip", "127.0.0.1"]
    result = runner.invoke(app, [*args, *geo, "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["geoip_db"] == str(city_db)
    rows = {row["url"]: row for row in doc["mirrors"]}
    assert rows[dead]["state"] == "degraded" and rows[dead]["probe"].startswith("connect")
    assert rows[near.url]["probe"].startswith("ok") and rows[near.url]["country"] == "DE"
    assert doc["mirrors"][-1]["url"] == dead
    text = runner.invoke(app, [*args, *geo, "--no-probe"])
    assert text.exit_code == 0 and "GeoIP database:" in text.output
    assert text.output.index(near.url) < text.output.index(far.url)  # nearest first, unmeasured


def test_rank_metalink_and_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dead = f"http://127.0.0.1:{free_refused_port()}/data.bin"
    meta = tmp_path / "f.meta4"
    meta.write_text(
        '<metalink xmlns="urn:ietf:params:xml:ns:metalink"><file name="data.bin">'
        f'<url priority="1">{dead}</url></file></metalink>'
    )
    monkeypatch.delenv("WEBSEED_GEOIP_DB", raising=False)
    result = runner.invoke(app, ["mirrors", "rank", "--metalink", str(meta)])
    # One mirror, refused: still usable (degraded) after one failure.
    assert result.exit_code == 0, result.output
    assert "degraded" in result.output
    bad = runner.invoke(app, ["mirrors", "rank"])
    assert bad.exit_code == 2 and "exactly one" in bad.output
    missing = runner.invoke(app, ["mirrors", "rank", "--list", str(tmp_path / "nope")])
    assert missing.exit_code == 2
    junk = tmp_path / "junk.mmdb"
    junk.write_bytes(b"junk")
    listing = tmp_path / "l.txt"
    listing.write_text("http://127.0.0.1:1/\n")
    nodb = runner.invoke(app, ["mirrors", "rank", "--list", str(listing), "--geoip-db", str(junk)])
    assert nodb.exit_code == 2 and "GeoIP" in nodb.output
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    none = runner.invoke(app, ["mirrors", "rank", "--list", str(empty), "--no-probe"])
    assert none.exit_code == 3
