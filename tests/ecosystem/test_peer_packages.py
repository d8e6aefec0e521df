"""pip and apt through a real `webseed serve` peer (not only a static mirror).

pip: PEP 691 negotiation on `simple/<project>/` directory URLs. apt: `apt-get
update` + `apt-get download` with Release signed by the operator's own OpenPGP
key (`signed-by=`), and the same without a signature is refused unless the
source is marked `[trusted=yes]`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import httpx

from tests.ecosystem.conftest import keygen, publish_cli
from tests.ecosystem.test_package_views import apt_options, make_deb, make_wheel, pip_install
from tests.prereq import missing, needs
from webseed.server.views import SIMPLE_JSON, directory_index, wants_simple_json

PIP_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, "
    "text/html; q=0.01"
)


def test_accept_negotiation() -> None:
    assert wants_simple_json(PIP_ACCEPT)
    assert not wants_simple_json("")
    assert not wants_simple_json("text/html")
    assert not wants_simple_json("*/*")
    assert wants_simple_json(f"{SIMPLE_JSON};q=0.5, TEXT/HTML;q=0.2")
    assert not wants_simple_json("application/*;q=0.5, text/html;q=0.2")  # a tie: HTML
    assert not wants_simple_json(f"{SIMPLE_JSON};q=0.1, text/*;q=0.9")
    assert not wants_simple_json(f"{SIMPLE_JSON};q=bad")
    assert directory_index("simple/x/", PIP_ACCEPT) == ("simple/x/index.json", SIMPLE_JSON)
    assert directory_index("simple/x/", "text/html") == ("simple/x/index.html", None)
    assert directory_index("docs/", PIP_ACCEPT) == ("docs/index.html", None)
    assert directory_index("simple/x", PIP_ACCEPT) is None


def test_pip_installs_through_a_peer(tmp_path: Path, webseed_peer) -> None:
    src = tmp_path / "src"
    make_wheel(src / "wheels")
    key, _ = keygen(tmp_path / "k")
    publish_cli(src, tmp_path / "repo", key)
    url, _ = webseed_peer(tmp_path / "repo")
    page = httpx.get(f"{url}/simple/demo-pkg/", headers={"accept": PIP_ACCEPT})
    assert page.headers["content-type"] == SIMPLE_JSON and page.headers["vary"] == "accept"
    assert page.json()["name"] == "demo-pkg"
    html = httpx.get(f"{url}/simple/demo-pkg/")
    assert html.headers["content-type"].startswith("text/html") and "demo_pkg" in html.text
    assert httpx.get(f"{url}/simple/nothing/").status_code == 404
    assert httpx.get(f"{url}/a//").status_code == 400
    proc = pip_install(f"{url}/simple/", tmp_path / "site", "demo-pkg")
    if "No module named pip" in proc.stderr:
        missing("no pip available to run")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "site" / "demo_pkg" / "__init__.py").read_text() == "VERSION = '1.0'\n"
    stats = httpx.get(f"{url}/.well-known/webseed/stats").json()
    assert stats["per_artifact"]["wheels/demo_pkg-1.0-py3-none-any.whl"] > 0  # via the peer


def gpg(home: Path, *args: str) -> None:
    subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--yes", "--quiet", *args],
        check=True,
        capture_output=True,
        timeout=60,
    )


@needs(
    any(shutil.which(t) is None for t in ("dpkg-deb", "apt-get", "gpg", "gpgv"))
    or os.geteuid() != 0,
    "needs dpkg-deb, apt-get, gpg and root (apt's own sandbox)",
)
def test_apt_through_a_peer_with_release_signed_by_the_operator(
    tmp_path: Path, webseed_peer
) -> None:
    src = tmp_path / "src"
    deb = make_deb(src)
    key, _ = keygen(tmp_path / "k")
    repo = tmp_path / "repo"
    publish_cli(src, repo, key)
    url, _ = webseed_peer(repo)

    # Unsigned Release: apt refuses the source (that is what [trusted=yes] would override).
    apt = tmp_path / "apt-unsigned"
    opts = apt_options(apt)
    (apt / "etc" / "sources.list").write_text(f"deb {url} stable main\n")
    up = subprocess.run(["apt-get", *opts, "update"], capture_output=True, text=True, timeout=120)
    assert "is not signed" in up.stdout + up.stderr, up.stdout + up.stderr

    # The operator signs dists/stable/Release with their own archive key (after each publish).
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    try:
        gpg(home, "--passphrase", "", "--quick-gen-key", "mirror <apt@example.org>", "ed25519")
        gpg(home, "--output", str(tmp_path / "archive.gpg"), "--export")
        release = repo / "dists" / "stable" / "Release"
        gpg(home, "--clearsign", "--output", str(release.with_name("InRelease")), str(release))
        gpg(home, "--detach-sign", "--armor", "--output", f"{release}.gpg", str(release))
    finally:
        subprocess.run(
            ["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"],
            capture_output=True,
            timeout=30,
        )
    apt = tmp_path / "apt"
    opts = apt_options(apt)
    (apt / "etc" / "sources.list").write_text(
        f"deb [signed-by={tmp_path / 'archive.gpg'}] {url} stable main\n"
    )
    up = subprocess.run(["apt-get", *opts, "update"], capture_output=True, text=True, timeout=120)
    assert up.returncode == 0 and "not signed" not in up.stdout + up.stderr, up.stdout + up.stderr
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
    stats = httpx.get(f"{url}/.well-known/webseed/stats").json()
    assert any(k.endswith(".deb") for k in stats["per_artifact"])  # the .deb came from the peer
