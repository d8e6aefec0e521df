"""The signed index: publishing, the pinned-root client, and the attacks TUF defends against."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.conftest import write_random
from webseed.errors import IntegrityError, KeyFileError, ManifestError, RepositoryIndexError
from webseed.index.client import base_url, open_index
from webseed.index.keys import RoleKeys
from webseed.index.layout import METADATA_DIR, manifest_relpath
from webseed.index.publisher import Expiry, Publisher, guess_version


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def repo(tmp_path: Path, release_tree: Path, key: Ed25519PrivateKey) -> Path:
    Publisher(tmp_path / "repo", RoleKeys.single(key)).publish(release_tree)
    return tmp_path / "repo"


def test_publish_and_open(repo: Path, key: Ed25519PrivateKey, tmp_path: Path) -> None:
    index = open_index(str(repo), key.public_key(), state_dir=tmp_path / "state")
    assert index.version == 1
    assert index.paths() == [
        "pool/main/b/bar_2.1_amd64.deb",
        "releases/foo-1.0.tar.gz",
        "releases/foo-1.0.tar.gz.asc",
    ]
    entry = index.lookup("/releases/foo-1.0.tar.gz")
    assert entry.size == 1_300_000 and entry.version == "1.0"
    manifest = index.fetch_manifest(entry)
    assert manifest.digest == entry.manifest_digest
    assert (repo / manifest_relpath(entry.manifest_digest)).exists()
    with pytest.raises(RepositoryIndexError, match="not in the signed index"):
        index.lookup("releases/nope")


def test_incremental_publish(
    tmp_path: Path, release_tree: Path, key: Ed25519PrivateKey, repo: Path
) -> None:
    pub = Publisher(repo, RoleKeys.single(key))
    again = pub.publish(release_tree)
    assert again.hashed_bytes == 0 and again.index_version == 2 and not again.added
    write_random(release_tree / "releases" / "foo-1.0.tar.gz.asc", 400, seed=7)
    (release_tree / "pool" / "main" / "b" / "bar_2.1_amd64.deb").unlink()
    write_random(release_tree / "releases" / "foo-1.1.tar.gz", 5000, seed=8)
    report = pub.publish(release_tree)
    assert report.changed == ["releases/foo-1.0.tar.gz.asc"]
    assert report.added == ["releases/foo-1.1.tar.gz"]
    assert report.removed == ["pool/main/b/bar_2.1_amd64.deb"]
    assert report.hashed_bytes == 5400 and report.index_version == 3
    index = open_index(str(repo), key.public_key(), state_dir=tmp_path / "s")
    assert index.version == 3 and index.lookup("releases/foo-1.1.tar.gz").version == "1.1"
    for _ in range(3):
        pub.publish(release_tree)
    versions = sorted(p.name for p in (repo / METADATA_DIR).glob("*.targets.json"))
    assert versions == ["4.targets.json", "5.targets.json", "6.targets.json"]


def test_in_place_publish_and_bad_source(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    write_random(tmp_path / "r" / "a-2.0.bin", 10)
    report = Publisher(tmp_path / "r", RoleKeys.single(key)).publish()
    assert report.added == ["a-2.0.bin"]
    with pytest.raises(RepositoryIndexError, match="not a directory"):
        Publisher(tmp_path / "r", RoleKeys.single(key)).publish(tmp_path / "missing")


def test_http_mirror_is_complete(
    repo: Path, key: Ed25519PrivateKey, tmp_path: Path, static_server
) -> None:
    url = static_server(repo)
    index = open_index(url, key.public_key(), state_dir=tmp_path / "state")
    entry = index.lookup("releases/foo-1.0.tar.gz")
    assert index.fetch_manifest(entry).size == entry.size
    with httpx.Client() as client:
        index2 = open_index(url, key.public_key(), state_dir=tmp_path / "s2", client=client)
        assert index2.version == 1
    with pytest.raises(RepositoryIndexError, match="cannot fetch"):
        open_index(url + "/nothing", key.public_key(), state_dir=tmp_path / "s3")
    (repo / manifest_relpath(entry.manifest_digest)).unlink()
    with pytest.raises(RepositoryIndexError, match="cannot fetch manifest"):
        index.fetch_manifest(entry)


def test_unreachable_source(key: Ed25519PrivateKey, tmp_path: Path) -> None:
    with pytest.raises(RepositoryIndexError, match="cannot fetch"):
        open_index("http://127.0.0.1:9", key.public_key(), state_dir=tmp_path / "s")
    with pytest.raises(RepositoryIndexError, match="cannot fetch"):
        open_index(str(tmp_path / "empty"), key.public_key(), state_dir=tmp_path / "s")


def test_wrong_pinned_key(repo: Path, tmp_path: Path) -> None:
    other = Ed25519PrivateKey.generate()
    with pytest.raises(RepositoryIndexError, match="not for the pinned key"):
        open_index(str(repo), other.public_key(), state_dir=tmp_path / "s")


def test_garbage_and_forged_root(repo: Path, key: Ed25519PrivateKey, tmp_path: Path) -> None:
    root = repo / METADATA_DIR / "root.json"
    good = root.read_bytes()
    root.write_bytes(b"{not json")
    with pytest.raises(RepositoryIndexError, match="malformed"):
        open_index(str(repo), key.public_key(), state_dir=tmp_path / "s1")
    doc = json.loads(good)
    doc["signed"]["expires"] = "2099-01-01T00:00:00Z"  # changed after signing
    root.write_bytes(json.dumps(doc).encode())
    with pytest.raises(IntegrityError, match="does not verify"):
        open_index(str(repo), key.public_key(), state_dir=tmp_path / "s2")
    doc = json.loads(good)
    doc["signatures"] = []
    root.write_bytes(json.dumps(doc).encode())
    with pytest.raises(RepositoryIndexError, match="not signed by the pinned key"):
        open_index(str(repo), key.public_key(), state_dir=tmp_path / "s3")


def test_forged_targets_refused(repo: Path, key: Ed25519PrivateKey, tmp_path: Path) -> None:
    tfile = repo / METADATA_DIR / "1.targets.json"
    doc = json.loads(tfile.read_bytes())
    target = doc["signed"]["targets"]["releases/foo-1.0.tar.gz"]
    target["custom"]["manifest"] = "00" * 32
    tfile.write_bytes(json.dumps(doc).encode())
    # Snapshot pins only the version, so the forged file gets as far as its signature check.
    with pytest.raises(IntegrityError, match="signature"):
        open_index(str(repo), key.public_key(), state_dir=tmp_path / "s")


def test_rollback_refused(
    tmp_path: Path, repo: Path, release_tree: Path, key: Ed25519PrivateKey
) -> None:
    old = tmp_path / "old-mirror"
    shutil.copytree(repo, old)
    Publisher(repo, RoleKeys.single(key)).publish(release_tree)
    state = tmp_path / "state"
    assert open_index(str(repo), key.public_key(), state_dir=state).version == 2
    with pytest.raises(RepositoryIndexError, match="rollback"):
        open_index(str(old), key.public_key(), state_dir=state)


def test_expired_index_refused(tmp_path: Path, release_tree: Path, key: Ed25519PrivateKey) -> None:
    past = datetime.now(UTC) - timedelta(days=30)
    Publisher(
        tmp_path / "r",
        RoleKeys.single(key),
        expiry=Expiry(timestamp=timedelta(days=1)),
        now=lambda: past,
    ).publish(release_tree)
    with pytest.raises(RepositoryIndexError, match="expired"):
        open_index(str(tmp_path / "r"), key.public_key(), state_dir=tmp_path / "s")


def test_mix_and_match_manifest(repo: Path, key: Ed25519PrivateKey, tmp_path: Path) -> None:
    index = open_index(str(repo), key.public_key(), state_dir=tmp_path / "s")
    foo = index.lookup("releases/foo-1.0.tar.gz")
    bar = index.lookup("pool/main/b/bar_2.1_amd64.deb")
    raw_bar = (repo / manifest_relpath(bar.manifest_digest)).read_bytes()
    with pytest.raises(IntegrityError, match="digest mismatch"):
        index.check_manifest(foo, raw_bar)
    # A genuine manifest presented under an entry forged to carry its digest.
    from dataclasses import replace

    forged = replace(foo, manifest_digest=bar.manifest_digest)
    with pytest.raises(ManifestError, match="does not describe"):
        index.check_manifest(forged, raw_bar)


def test_split_roles_threshold_and_authorisation(tmp_path: Path, release_tree: Path) -> None:
    r1, r2, online = (Ed25519PrivateKey.generate() for _ in range(3))
    keys = RoleKeys.from_assignments(
        [(["root"], r1), (["root"], r2), (["targets", "snapshot", "timestamp"], online)],
        {"root": 2},
    )
    Publisher(tmp_path / "r", keys).publish(release_tree)
    assert open_index(str(tmp_path / "r"), r2.public_key(), state_dir=tmp_path / "s").version == 1
    intruder = RoleKeys.single(Ed25519PrivateKey.generate())
    with pytest.raises(KeyFileError, match="not authorised"):
        Publisher(tmp_path / "r", intruder).publish(release_tree)
    with pytest.raises(KeyFileError, match="threshold"):
        RoleKeys.from_assignments([(["root", "targets", "snapshot", "timestamp"], r1)], {"root": 2})
    with pytest.raises(KeyFileError, match="no key for role"):
        RoleKeys.from_assignments([(["root"], r1)])
    with pytest.raises(KeyFileError, match="unknown role"):
        RoleKeys.from_assignments([(["admin"], r1)])


def test_root_rotation_followed(
    tmp_path: Path, repo: Path, release_tree: Path, key: Ed25519PrivateKey
) -> None:
    state = tmp_path / "state"
    open_index(str(repo), key.public_key(), state_dir=state)
    new = Ed25519PrivateKey.generate()
    pub = Publisher(repo, RoleKeys.single(new))
    assert pub.rotate_root(RoleKeys.single(key)) == 2
    pub.publish(release_tree)
    index = open_index(str(repo), key.public_key(), state_dir=state)
    assert index.version == 2
    # A fresh client pinning the new key bootstraps from the latest root directly.
    assert open_index(str(repo), new.public_key(), state_dir=tmp_path / "n").version == 2


def test_helpers() -> None:
    assert guess_version("releases/foo-1.2.3.tar.gz") == "1.2.3"
    assert guess_version("numpy-2.1.0rc1-cp311.whl") == "2.1.0rc1"
    assert guess_version("README") == ""
    assert guess_version("tool-1.0.bin") == "1.0"
    assert guess_version("pool/main/t/tzdata_2026b-0+deb12u1_all.deb") == "2026b-0+deb12u1"
    assert guess_version("x-2.0.post1.tar.gz") == "2.0.post1"
    assert base_url("http://x/y/") == "http://x/y"
    assert base_url("/tmp").startswith("file:///")


def test_tampered_snapshot_and_missing_timestamp(
    repo: Path, key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    snap = repo / METADATA_DIR / "1.snapshot.json"
    good = snap.read_bytes()
    snap.write_bytes(good + b" ")  # the timestamp pins the snapshot's length and hash
    with pytest.raises(RepositoryIndexError, match=r"not trustworthy|cannot fetch"):
        open_index(str(repo), key.public_key(), state_dir=tmp_path / "s1")
    snap.write_bytes(good)
    (repo / METADATA_DIR / "timestamp.json").unlink()
    with pytest.raises(RepositoryIndexError, match="cannot fetch"):
        open_index(str(repo), key.public_key(), state_dir=tmp_path / "s2")


def test_corrupt_local_state(repo: Path, key: Ed25519PrivateKey, tmp_path: Path) -> None:
    state = tmp_path / "state"
    open_index(str(repo), key.public_key(), state_dir=state)
    (state / "root.json").write_bytes(b"garbage")
    with pytest.raises(RepositoryIndexError):
        open_index(str(repo), key.public_key(), state_dir=state)


def test_unreadable_metadata_file(repo: Path, key: Ed25519PrivateKey, tmp_path: Path) -> None:
    (repo / METADATA_DIR / "root.json").unlink()
    (repo / METADATA_DIR / "root.json").mkdir()  # a directory where a file should be
    with pytest.raises(RepositoryIndexError, match="cannot fetch"):
        open_index(str(repo), key.public_key(), state_dir=tmp_path / "s")


def test_default_state_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from webseed.index.client import default_state_dir

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert default_state_dir() == tmp_path / "webseed" / "trust"


def test_entry_without_webseed_fields(repo: Path, key: Ed25519PrivateKey) -> None:
    from tuf.api.metadata import Metadata, TargetFile, Targets

    from webseed.index.client import Fetcher, TrustedIndex

    md = Metadata(Targets(version=1))
    md.signed.targets = {"x": TargetFile(length=1, hashes={"sha256": "00" * 32}, path="x")}
    with pytest.raises(RepositoryIndexError, match="lacks webseed fields"):
        TrustedIndex("file:///", md, Fetcher())


def test_publish_hook_symlinks_and_unsafe_names(
    tmp_path: Path, release_tree: Path, key: Ed25519PrivateKey
) -> None:
    import os
    from dataclasses import replace

    os.symlink("/etc/passwd", release_tree / "releases" / "passwd-link")
    seen: list[str] = []

    def hook(manifest, file):  # type: ignore[no-untyped-def]
        seen.append(manifest.path)
        return replace(manifest, version="hooked")

    report = Publisher(tmp_path / "r", RoleKeys.single(key)).publish(
        release_tree, manifest_hook=hook
    )
    assert "releases/passwd-link" not in report.added and len(seen) == 3
    index = open_index(str(tmp_path / "r"), key.public_key(), state_dir=tmp_path / "s")
    assert index.lookup("releases/foo-1.0.tar.gz").version == "hooked"
    write_random(release_tree / "bad\nname", 3)
    with pytest.raises(RepositoryIndexError, match="cannot publish"):
        Publisher(tmp_path / "r", RoleKeys.single(key)).publish(release_tree)


def test_signed_mirror_list(tmp_path: Path, release_tree: Path, key: Ed25519PrivateKey) -> None:
    pub = Publisher(tmp_path / "r", RoleKeys.single(key))
    mirrors = [
        {"url": "https://m1.example/repo/", "country": "DE", "lat": 50.1, "lon": 8.7},
        {"url": "http://m2.example"},
    ]
    pub.publish(release_tree, mirrors=mirrors)
    pub.publish(release_tree)  # keeps the list
    index = open_index(str(tmp_path / "r"), key.public_key(), state_dir=tmp_path / "s")
    assert [m["url"] for m in index.mirrors] == ["https://m1.example/repo", "http://m2.example"]
    assert index.mirrors[0]["lat"] == 50.1 and "lat" not in index.mirrors[1]
    for bad in (
        [{"nourl": 1}],
        [{"url": "ftp://x"}],
        [{"url": "http://x", "evil": 1}],
        ["x"],
        [{"url": "http://x", "lat": "north"}],
        [{"url": "http://x", "lon": 200}],
    ):
        with pytest.raises(RepositoryIndexError):
            pub.publish(release_tree, mirrors=bad)  # type: ignore[arg-type]


def test_publish_cli_mirrors(tmp_path: Path, release_tree: Path) -> None:
    from typer.testing import CliRunner

    from webseed.cli import app

    runner = CliRunner()
    runner.invoke(app, ["keygen", "--out", str(tmp_path / "k")])
    (tmp_path / "m.json").write_text(
        '["http://a.example", {"url": "http://b.example", "country": "FR"}]'
    )
    args = [
        "publish",
        str(release_tree),
        "--repo",
        str(tmp_path / "r"),
        "--key",
        str(tmp_path / "k" / "webseed.key"),
    ]
    assert runner.invoke(app, [*args, "--mirrors", str(tmp_path / "m.json")]).exit_code == 0
    (tmp_path / "bad.json").write_text("{")
    res = runner.invoke(app, [*args, "--mirrors", str(tmp_path / "bad.json")])
    assert res.exit_code == 1 and "not JSON" in res.stderr
    (tmp_path / "obj.json").write_text("{}")
    assert runner.invoke(app, [*args, "--mirrors", str(tmp_path / "obj.json")]).exit_code == 1
