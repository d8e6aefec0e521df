"""The mypyc build of the scheduler and simulator: real mypyc, real gcc, same results."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from peer.simulate import cli, native
from tests.prereq import missing

SCENARIO = ["--scenario", "malicious-10", "--peers", "60", "--size", "256MiB", "--seed", "5"]


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("gcc") is None:
        missing("gcc (mypyc compiles the simulator with it)")
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").exists():
        missing("Python.h (python3-dev) for mypyc")
    # A private cache: the test builds once per run (about 40 s of CPU on 2 cores).
    return native.build(tmp_path_factory.mktemp("native-cache"))


def test_the_compiled_build_gives_the_interpreted_report(build_dir: Path) -> None:
    assert not native.is_native()  # the test process itself runs the interpreted code
    assert (build_dir / ".built").exists()
    compiled = sorted(p.name.split(".")[0] for p in (build_dir / "peer/scheduler").glob("*.so"))
    assert compiled == ["actions", "config", "core", "estimate", "events"]
    # Started as `--native` would start it: -P, the build first on PYTHONPATH.
    out = subprocess.run(
        [sys.executable, "-P", "-m", "peer.simulate", *SCENARIO, "--json", "--native"],
        env=native.native_env(build_dir),
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    fast = json.loads(out.stdout)
    slow = cli.run("malicious-10", 60, 256 << 20, 5).to_json(series=False)
    assert fast.pop("native") is True
    assert slow.pop("native") is False
    for key in ("wall_s", "cpu_s"):
        fast.pop(key)
        slow.pop(key)
    assert fast == slow
    assert fast["corrupt_accepted"] == 0 and fast["malicious_banned"] > 0


def test_a_cached_build_is_reused(build_dir: Path) -> None:
    stamp = (build_dir / ".built").stat().st_mtime_ns
    assert native.build(build_dir.parent) == build_dir
    assert (build_dir / ".built").stat().st_mtime_ns == stamp


def test_old_builds_are_pruned(build_dir: Path) -> None:
    # Other sources' builds (as left by edits): only the newest KEEP_BUILDS stay.
    cache = build_dir.parent
    olds = []
    for i in range(native.KEEP_BUILDS + 2):
        old = cache / f"old{i}"
        old.mkdir()
        (old / ".built").touch()
        os.utime(old / ".built", ns=(i * 10**9, i * 10**9))
        olds.append(old)
    (cache / "half-built").mkdir()  # no .built stamp: not a build, left alone
    assert native.build(cache) == build_dir
    kept = sorted(p.name for p in olds if p.exists())
    assert kept == [f"old{i}" for i in range(2, native.KEEP_BUILDS + 2)]
    assert (cache / "half-built").exists() and (build_dir / ".built").exists()


def test_the_digest_follows_every_source(tmp_path: Path) -> None:
    (tmp_path / "peer" / "sub").mkdir(parents=True)
    (tmp_path / "peer" / "sub" / "a.py").write_text("x = 1\n")
    first = native.source_digest(tmp_path)
    (tmp_path / "peer" / "sub" / "a.py").write_text("x = 2\n")
    assert native.source_digest(tmp_path) != first


def test_a_failed_build_says_why_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(native, "MODULES", ("peer/no_such_module.py",))
    with pytest.raises(native.NativeBuildError, match="mypyc failed"):
        native.build(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_native_refuses_to_loop_when_the_build_does_not_load(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # As if re-started on a build that then did not shadow the interpreted modules.
    monkeypatch.setenv(native.ENV_FLAG, "1")
    assert cli.main([*SCENARIO, "--native"]) == 2
    assert "did not load" in capsys.readouterr().err


def test_native_reports_a_build_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(native.ENV_FLAG, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(native, "MODULES", ("peer/no_such_module.py",))
    assert cli.main([*SCENARIO, "--native"]) == 2
    assert "mypyc failed" in capsys.readouterr().err
    assert native.default_cache() == tmp_path / "webseed" / "native"
    assert os.environ.get(native.ENV_FLAG) is None
