"""Torrent and Metalink export, checked by real clients: aria2c and libtorrent."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import write_random
from tests.ecosystem.conftest import libtorrent_download
from tests.prereq import needs
from webseed.cli import app
from webseed.errors import RepositoryIndexError
from webseed.export.bencode import BencodeError, bdecode, bencode
from webseed.export.metalink import NS, MirrorRef, metalink_xml, piece_hashes
from webseed.export.torrent import torrent_bytes, torrent_dict
from webseed.index.client import local_root_key
from webseed.manifest import build_manifest

runner = CliRunner()


@pytest.fixture
def published(tmp_path: Path) -> tuple[Path, Path]:
    src = tmp_path / "src"
    write_random(src / "releases" / "big-3.0.iso", 3 * 1024 * 1024 + 4321, seed=5)
    runner.invoke(app, ["keygen", "--out", str(tmp_path / "k")])
    (tmp_path / "mirrors.json").write_text('[{"url": "http://127.0.0.1:9/dead", "country": "NL"}]')
    res = runner.invoke(
        app,
        [
            "publish",
            str(src),
            "--repo",
            str(tmp_path / "repo"),
            "--key",
            str(tmp_path / "k" / "webseed.key"),
            "--mirrors",
            str(tmp_path / "mirrors.json"),
        ],
    )
    assert res.exit_code == 0, res.stderr
    return tmp_path / "repo", tmp_path / "k" / "webseed.pub"


def test_bencode_roundtrip_and_rejects() -> None:
    value = {"b": [1, -2, b"x"], "a": {"": 0}, "c": "é"}
    raw = bencode(value)
    assert raw == b"d1:ad0:i0ee1:bli1ei-2e1:xe1:c2:\xc3\xa9e"
    assert bdecode(raw) == {b"a": {b"": 0}, b"b": [1, -2, b"x"], b"c": "é".encode()}
    for bad in (
        b"",
        b"i01e",
        b"i-0e",
        b"ie",
        b"i1",
        b"5:ab",
        b"x",
        b"d1:bi1e1:ai2ee",
        b"di1ei2ee",
        b"d1:ae",
        b"i1ei2e",
        b"l" * 100 + b"e" * 100,
        b"iabce",
    ):
        with pytest.raises(BencodeError):
            bdecode(bad)
    for bad_value in (True, 1.5, None):
        with pytest.raises(TypeError):
            bencode(bad_value)


def test_torrent_from_manifest_matches_libtorrent(tmp_path: Path) -> None:
    import libtorrent as lt

    f = write_random(tmp_path / "data" / "x.bin", 1_000_000, seed=3)
    m = build_manifest(f, "pub/x.bin", chunk_size=64 * 1024)
    ours = bdecode(torrent_bytes(m, ["http://a/", "http://b"]))
    fs = lt.file_storage()
    lt.add_files(fs, str(f))
    ct = lt.create_torrent(fs, 64 * 1024, flags=lt.create_torrent.v2_only)
    lt.set_piece_hashes(ct, str(f.parent))
    theirs = ct.generate()
    assert bencode(ours[b"info"]) == bencode(theirs[b"info"])
    assert ours[b"piece layers"] == theirs[b"piece layers"]
    assert ours[b"url-list"] == [b"http://a/pub/", b"http://b/pub/"]
    info = lt.torrent_info(torrent_bytes(m))
    assert info.info_hashes().has_v2()
    empty = write_random(tmp_path / "e", 0)
    d = torrent_dict(build_manifest(empty, "e"))
    assert "pieces root" not in d["info"]["file tree"]["e"][""]  # type: ignore[index]


def test_metalink_document(tmp_path: Path) -> None:
    f = write_random(tmp_path / "x.bin", 700_000, seed=4)
    m = build_manifest(f, "r/x-1.0.bin", version="1.0")
    pieces = piece_hashes(f, m)
    assert pieces[0] == hashlib.sha256(f.read_bytes()[: m.chunk_size]).hexdigest()
    doc = ET.fromstring(
        metalink_xml(m, [MirrorRef("http://m1/", "DE", 1), MirrorRef("http://m2")], pieces)
    )
    urls = doc.findall(f".//{{{NS}}}url")
    assert [u.text for u in urls] == ["http://m1/r/x-1.0.bin", "http://m2/r/x-1.0.bin"]
    assert urls[0].get("location") == "de" and urls[0].get("priority") == "1"
    assert doc.find(f".//{{{NS}}}hash[@type='sha-256']").text == m.digests["sha256"]  # type: ignore[union-attr]
    assert len(doc.findall(f".//{{{NS}}}pieces/{{{NS}}}hash")) == m.chunk_count
    with pytest.raises(ValueError):
        metalink_xml(m, [], pieces[:1])


@needs(shutil.which("aria2c") is None, "Debian aria2 not installed")
def test_aria2c_downloads_with_exported_metalink(
    tmp_path: Path, published: tuple[Path, Path], static_server
) -> None:
    repo, pub = published
    a, b = static_server(repo), static_server(repo)
    out = tmp_path / "x.meta4"
    res = runner.invoke(
        app,
        [
            "export",
            "releases/big-3.0.iso",
            "--repo",
            str(repo),
            "--root-key",
            str(pub),
            "--mirror",
            a,
            "--mirror",
            b,
            "-o",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.stderr
    assert b"http://127.0.0.1:9/dead/releases/big-3.0.iso" in out.read_bytes()  # from the index
    dl = tmp_path / "dl"
    proc = subprocess.run(
        [
            "aria2c",
            "--no-conf",
            "-q",
            "-d",
            str(dl),
            "-M",
            str(out),
            "--connect-timeout=2",
            "--max-tries=2",
            "--retry-wait=0",
            "--check-integrity=true",
            "--allow-overwrite=true",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (dl / "big-3.0.iso").read_bytes() == (repo / "releases" / "big-3.0.iso").read_bytes()


def test_libtorrent_downloads_from_web_seeds(
    tmp_path: Path, published: tuple[Path, Path], nginx_mirror
) -> None:
    repo, _pub = published
    url = nginx_mirror(repo)  # web seeds need Range support, which http.server lacks
    out = tmp_path / "x.torrent"
    res = runner.invoke(
        app,
        [
            "export",
            "releases/big-3.0.iso",
            "--repo",
            str(repo),
            "--format",
            "torrent",
            "--mirror",
            url,
            "-o",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.stderr
    want = (repo / "releases" / "big-3.0.iso").read_bytes()
    libtorrent_download(out.read_bytes(), tmp_path / "bt", "big-3.0.iso", want)


def test_local_root_key_errors(tmp_path: Path) -> None:
    with pytest.raises(RepositoryIndexError, match="no usable root key"):
        local_root_key(tmp_path)
