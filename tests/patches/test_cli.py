"""``webseed diff`` / ``webseed patch`` through the real CLI app."""

from __future__ import annotations

import os
from pathlib import Path

from typer.testing import CliRunner

from tests.patches.conftest import mutate
from webseed.cli import app


def test_diff_and_patch(tmp_path: Path) -> None:
    old, new = tmp_path / "a", tmp_path / "b"
    old.write_bytes(os.urandom(50_000))
    new.write_bytes(mutate(old.read_bytes(), 9))
    runner = CliRunner()
    r = runner.invoke(app, ["diff", str(old), str(new), "-o", str(tmp_path / "p")])
    assert r.exit_code == 0, r.output
    assert "smaller than NEW" in r.output
    r = runner.invoke(app, ["patch", str(old), str(tmp_path / "p"), "-o", str(tmp_path / "c")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "c").read_bytes() == new.read_bytes()
    # Wrong base: integrity exit code, nothing written.
    r = runner.invoke(app, ["patch", str(new), str(tmp_path / "p"), "-o", str(tmp_path / "d")])
    assert r.exit_code == 1 and "another base" in r.output
    assert not (tmp_path / "d").exists()
    # Unwritable destination: I/O exit code.
    r = runner.invoke(app, ["patch", str(old), str(tmp_path / "p"), "-o", str(tmp_path / "no/x")])
    assert r.exit_code == 4
    r = runner.invoke(app, ["diff", str(old), str(new), "-o", str(tmp_path / "no/p")])
    assert r.exit_code == 4
