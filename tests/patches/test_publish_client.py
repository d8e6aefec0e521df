"""patches.publish (patches from previous versions at publish time) and patches.client."""

from __future__ import annotations

import lzma
from pathlib import Path

import pytest

from patches import publish
from patches.client import rebuild, verify_against
from patches.errors import PatchBaseMismatchError, PatchError, PatchTargetMismatchError
from tests.patches.conftest import mutate
from tests.patches.test_roundtrip import SRC, make_tar
from webseed.manifest import Manifest, PatchLink, build_manifest


def release(tmp_path: Path, version: str, seed: int) -> tuple[str, Path, Manifest]:
    src = SRC if seed == 0 else {k: mutate(v, seed, 2) for k, v in SRC.items()}
    path = f"releases/pkg-{version}.tar.xz"
    file = tmp_path / "src" / path
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_bytes(lzma.compress(make_tar(src)))
    return path, file, build_manifest(file, path, version=version)


def test_version_order_and_family() -> None:
    ordered = ["1.0rc1", "1.0", "1.0.post1", "1.0.1", "1.10", "2.0a1", "2.0"]
    assert sorted(reversed(ordered), key=publish.version_key) == ordered
    deb = ["3.0.20-1~deb12u2", "3.0.22-1~deb12u1", "3.0.22-1"]
    assert sorted(deb, key=publish.version_key) == deb
    assert publish.family("r/pkg-1.0.tar.gz", "1.0") == publish.family("r/pkg-1.1.tar.gz", "1.1")
    assert publish.family("pkg", "") == "pkg"


def test_make_patches_and_rebuild(tmp_path: Path) -> None:
    releases = [release(tmp_path, v, s) for v, s in (("1.0", 0), ("1.1", 1), ("1.2", 2))]
    other = release(tmp_path, "9.9", 3)
    other = (
        "releases/other-9.9.tar.xz",
        other[1],
        build_manifest(other[1], "releases/other-9.9.tar.xz", version="9.9"),
    )
    _path, new_file, new_manifest = releases[2]
    out = tmp_path / "repo"
    made = publish.make_patches(
        [releases[0], releases[1], other, releases[2]], new_file, new_manifest, out
    )
    assert [m["from_version"] for m in made] == ["1.1", "1.0"]  # newest first, own family only
    for m in made:
        assert m["path"] == "patches/releases_pkg-.tar.xz/" + f"{m['from_version']}_1.2.wsp"
        assert (out / m["path"]).stat().st_size == m["size"] < new_manifest.size // 5
        assert m["patch_manifest"].digest == m["manifest"]
    links = publish.to_links(made)
    assert all(isinstance(link, PatchLink) for link in links)
    hook = publish.manifest_hook(made)
    assert (
        hook(build_manifest(made[0]["file"], made[0]["path"]), made[0]["file"])
        is made[0]["patch_manifest"]
    )
    assert hook(new_manifest, new_file) is new_manifest
    amended = releases[0][2]
    inner = publish.manifest_hook([], lambda m, f: amended)
    assert inner(new_manifest, new_file) is amended

    # The client: one patch, then a chain 1.0 -> 1.1 -> 1.2.
    dest = tmp_path / "got"
    rebuild(releases[1][1], out / made[0]["path"], new_manifest, dest)
    assert dest.read_bytes() == new_file.read_bytes()
    to_11 = publish.make_patches([releases[0]], releases[1][1], releases[1][2], out)
    dest.unlink()
    rebuild(releases[0][1], [out / to_11[0]["path"], out / made[0]["path"]], new_manifest, dest)
    assert dest.read_bytes() == new_file.read_bytes()

    # Wrong base, wrong target, nothing to apply: errors, nothing written or replaced.
    dest.write_bytes(b"previous")
    with pytest.raises(PatchBaseMismatchError):
        rebuild(releases[0][1], out / made[0]["path"], new_manifest, dest)
    with pytest.raises(PatchBaseMismatchError, match="expected version"):
        rebuild(releases[1][1], out / made[0]["path"], releases[1][2], dest)
    with pytest.raises(PatchError):
        rebuild(releases[1][1], [], new_manifest, dest)
    assert dest.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["got", "repo", "src"]


def test_no_patches_when_useless_or_unversioned(tmp_path: Path) -> None:
    a = release(tmp_path, "1.0", 0)
    b = release(tmp_path, "2.0", 5)
    out = tmp_path / "repo"
    assert publish.make_patches([a], b[1], b[2], out, max_ratio=0.0) == []
    assert not list(out.rglob("*.wsp"))
    unversioned = build_manifest(b[1], "releases/pkg.tar.xz")
    assert publish.make_patches([a], b[1], unversioned, out) == []
    assert publish.make_patches([b], a[1], a[2], out) == []


def test_verify_against(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"x" * 1000)
    m = build_manifest(f, "f")
    verify_against(f, m)
    f.write_bytes(b"y" * 1000)
    with pytest.raises(PatchTargetMismatchError, match="manifest"):
        verify_against(f, m)
    f.write_bytes(b"y")
    with pytest.raises(PatchTargetMismatchError, match="size"):
        verify_against(f, m)
