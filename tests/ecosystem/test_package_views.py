"""pip and apt fetch through a webseed repository served by a plain static mirror."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import write_random
from tests.prereq import missing, needs
from webseed.cli import app
from webseed.ecosystem.debian import DebError, read_control, write_apt_metadata
from webseed.ecosystem.pypi import DistFile, normalize, project_of, simple_pages

runner = CliRunner()


def make_wheel(directory: Path, name: str = "demo_pkg", version: str = "1.0") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"VERSION = {version!r}\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = (
        "".join(
            f"{n},sha256={__import__('base64').urlsafe_b64encode(hashlib.sha256(c.encode()).digest()).rstrip(b'=').decode()},{len(c)}\n"
            for n, c in files.items()
        )
        + f"{info}/RECORD,,\n"
    )
    with zipfile.ZipFile(path, "w") as z:
        for n, c in files.items():
            z.writestr(n, c)
        z.writestr(f"{info}/RECORD", record)
    return path


def make_deb(directory: Path, name: str = "webseed-demo", version: str = "1.0-1") -> Path:
    root = directory / "build" / name
    (root / "DEBIAN").mkdir(parents=True)
    (root / "usr" / "share" / "doc" / name).mkdir(parents=True)
    (root / "usr" / "share" / "doc" / name / "README").write_text("demo\n")
    (root / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: all\n"
        "Maintainer: webseed <dev@example.org>\nDescription: webseed test package\n"
    )
    out = directory / "pool" / "main" / "w" / f"{name}_{version}_all.deb"
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["dpkg-deb", "--build", "--root-owner-group", str(root), str(out)],
        check=True,
        capture_output=True,
    )
    shutil.rmtree(directory / "build")
    return out


def apt_options(apt: Path) -> list[str]:
    for d in ("lists/partial", "cache/archives/partial", "etc/sources.list.d", "etc/preferences.d"):
        (apt / d).mkdir(parents=True, exist_ok=True)
    (apt / "status").write_text("")
    return [
        f"-oDir::Etc::SourceList={apt}/etc/sources.list",
        f"-oDir::Etc::SourceParts={apt}/etc/sources.list.d",
        f"-oDir::Etc::Preferences={apt}/etc/preferences",
        f"-oDir::Etc::PreferencesParts={apt}/etc/preferences.d",
        f"-oDir::State::Lists={apt}/lists",
        f"-oDir::Cache={apt}/cache",
        f"-oDir::State::status={apt}/status",
        "-oAPT::Sandbox::User=root",
        "-oDebug::NoLocking=1",
        "-oAPT::Architecture=amd64",
        "-oAcquire::Languages=none",
    ]


def pip_install(index_url: str, target: Path, name: str) -> subprocess.CompletedProcess[str]:
    """Run the real pip (the system one: the venv has none) against ``index_url``."""
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INPUT": "1"}
    return subprocess.run(
        [shutil.which("python3") or sys.executable, "-m", "pip", "install", "--isolated",
         "--no-cache-dir", "--no-deps", "--disable-pip-version-check", "--index-url",
         index_url, "--target", str(target), name],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip


def test_project_names_and_pages() -> None:
    assert normalize("Foo.Bar_baz") == "foo-bar-baz"
    assert project_of("demo_pkg-1.0-py3-none-any.whl") == "demo-pkg"
    assert project_of("Foo-Bar-2.0.tar.gz") == "foo-bar"
    assert project_of("README") is None and project_of("x-y.whl") is None
    assert project_of("notaversion-abc.tar.gz") is None
    pages = simple_pages(
        [
            DistFile("p/demo_pkg-1.0-py3-none-any.whl", "ab" * 32, 10),
            DistFile("p/other.iso", "cd" * 32, 5),
        ]
    )
    assert set(pages) == {
        "simple/index.html",
        "simple/index.json",
        "simple/demo-pkg/index.html",
        "simple/demo-pkg/index.json",
    }
    assert (
        b"../../p/demo_pkg-1.0-py3-none-any.whl#sha256=" + b"ab" * 32
        in pages["simple/demo-pkg/index.html"]
    )
    doc = json.loads(pages["simple/demo-pkg/index.json"])
    assert doc["files"][0]["hashes"]["sha256"] == "ab" * 32


def test_pip_installs_through_a_mirror(tmp_path: Path, static_server) -> None:
    src = tmp_path / "src"
    make_wheel(src / "wheels")
    write_random(src / "releases" / "x-1.0.iso", 1000)
    runner.invoke(app, ["keygen", "--out", str(tmp_path / "k")])
    res = runner.invoke(
        app,
        [
            "publish",
            str(src),
            "--repo",
            str(tmp_path / "repo"),
            "--key",
            str(tmp_path / "k" / "webseed.key"),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["pypi_projects"] == 1
    # Re-publishing does not pick up the generated simple/ tree as artifacts.
    res = runner.invoke(
        app,
        [
            "publish",
            str(tmp_path / "repo"),
            "--repo",
            str(tmp_path / "repo"),
            "--key",
            str(tmp_path / "k" / "webseed.key"),
            "--json",
        ],
    )
    assert json.loads(res.stdout)["added"] == []
    url = static_server(tmp_path / "repo")
    proc = pip_install(f"{url}/simple/", tmp_path / "site", "demo-pkg")
    if "No module named pip" in proc.stderr:
        missing("no pip available to run")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "site" / "demo_pkg" / "__init__.py").read_text() == "VERSION = '1.0'\n"


@needs(shutil.which("dpkg-deb") is None, "dpkg-deb not installed")
def test_control_parsing_and_bad_debs(tmp_path: Path) -> None:
    deb = make_deb(tmp_path)
    assert "Package: webseed-demo" in read_control(deb)
    for bad in (
        b"not a deb",
        b"!<arch>\n" + b"x" * 70,
        b"!<arch>\ndebian-binary   0     0     0     100644  99999     `\n",
    ):
        (tmp_path / "bad.deb").write_bytes(bad)
        with pytest.raises(DebError):
            read_control(tmp_path / "bad.deb")
    assert write_apt_metadata(tmp_path, []) == 0
    from webseed.ecosystem.debian import DebFile

    assert write_apt_metadata(tmp_path, [DebFile("bad.deb", "00" * 32, 3)]) == 0


@needs(
    shutil.which("dpkg-deb") is None or shutil.which("apt-get") is None or os.geteuid() != 0,
    "needs dpkg-deb, apt-get and root (apt's own sandbox)",
)
def test_apt_get_download_through_a_mirror(tmp_path: Path, static_server) -> None:
    src = tmp_path / "src"
    deb = make_deb(src)
    runner.invoke(app, ["keygen", "--out", str(tmp_path / "k")])
    res = runner.invoke(
        app,
        [
            "publish",
            str(src),
            "--repo",
            str(tmp_path / "repo"),
            "--key",
            str(tmp_path / "k" / "webseed.key"),
            "--json",
        ],
    )
    assert res.exit_code == 0 and json.loads(res.stdout)["apt_packages"] == 1
    url = static_server(tmp_path / "repo")
    apt = tmp_path / "apt"
    opts = apt_options(apt)
    (apt / "etc" / "sources.list").write_text(f"deb [trusted=yes] {url} stable main\n")
    up = subprocess.run(["apt-get", *opts, "update"], capture_output=True, text=True, timeout=120)
    assert up.returncode == 0, up.stdout + up.stderr
    (tmp_path / "dl").mkdir()
    dl = subprocess.run(
        ["apt-get", *opts, "download", "webseed-demo"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path / "dl",
    )
    assert dl.returncode == 0, dl.stdout + dl.stderr
    got = list((tmp_path / "dl").glob("*.deb"))
    assert len(got) == 1 and got[0].read_bytes() == deb.read_bytes()
