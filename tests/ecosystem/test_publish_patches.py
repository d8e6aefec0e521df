"""`webseed publish` makes patches from earlier versions and links them from the new manifest."""

from __future__ import annotations

import json
import random
from pathlib import Path

from typer.testing import CliRunner

from webseed.cli import app
from webseed.index.client import open_index
from webseed.integrity.keys import load_public_key

runner = CliRunner()


def test_publish_links_patches_and_rebuild_matches(tmp_path: Path) -> None:
    from patches.client import rebuild

    rng = random.Random(7)
    v1 = rng.randbytes(600_000)
    v2 = bytearray(v1)
    for i in range(0, len(v2), 50_000):
        v2[i : i + 20] = rng.randbytes(20)
    src = tmp_path / "src" / "releases"
    src.mkdir(parents=True)
    (src / "tool-1.0.bin").write_bytes(v1)
    runner.invoke(app, ["keygen", "--out", str(tmp_path / "k")])
    args = [
        "publish",
        str(tmp_path / "src"),
        "--repo",
        str(tmp_path / "repo"),
        "--key",
        str(tmp_path / "k" / "webseed.key"),
        "--json",
    ]
    assert runner.invoke(app, args).exit_code == 0
    (src / "tool-1.1.bin").write_bytes(bytes(v2))
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.stderr
    report = json.loads(res.stdout)
    patch_paths = [p for p in report["added"] if p.startswith("patches/")]
    assert len(patch_paths) == 1 and "releases/tool-1.1.bin" in report["added"]
    index = open_index(
        str(tmp_path / "repo"),
        load_public_key(tmp_path / "k" / "webseed.pub"),
        state_dir=tmp_path / "s",
    )
    new = index.fetch_manifest(index.lookup("releases/tool-1.1.bin"))
    (link,) = new.patches
    assert link.from_version == "1.0" and link.path == patch_paths[0]
    assert link.size < len(v2) // 10
    patch_entry = index.lookup(link.path)
    assert patch_entry.manifest_digest == link.manifest  # the patch is a signed artifact too
    out = tmp_path / "rebuilt.bin"
    rebuild(
        tmp_path / "repo" / "releases" / "tool-1.0.bin", tmp_path / "repo" / link.path, new, out
    )
    assert out.read_bytes() == bytes(v2)
    # Publishing again makes no new patch and leaves the links in place.
    again = json.loads(runner.invoke(app, args).stdout)
    assert again["added"] == [] and again["changed"] == []
