"""Real clients against `webseed serve` (a subprocess): curl, aria2c, httpx over TLS + HTTP/2."""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.prereq import missing
from tests.server.helpers import parse_multipart, publish, rand

DATA = rand(2 * 1024 * 1024 + 77, seed=11)
WEBSEED = str(Path(sys.executable).parent / "webseed")


def start_serve(repo: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        # Own state dir: never the user's identity/ledger under $HOME.
        [WEBSEED, "serve", str(repo), "--port", "0", "--state-dir", tempfile.mkdtemp(), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "webseed: serving REPO at URL"
    m = re.search(r"(https?://\S+)", line)
    if not m:
        proc.kill()
        raise AssertionError(
            f"no URL printed: {line!r} {proc.stderr.read() if proc.stderr else ''}"
        )
    return proc, m.group(1)


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> int:
    proc.send_signal(sig)
    try:
        return proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("clients")
    publish(root, "pool/main/x.deb", DATA)
    return root


@pytest.fixture(scope="module")
def served(repo: Path) -> Iterator[str]:
    proc, url = start_serve(repo)
    yield url
    assert stop(proc) == 0


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        missing(f"{tool} is not installed (.ci/system-deps.sh installs it as root)")
    return path


def test_done_when_curl_multipart(served: str, tmp_path: Path) -> None:
    """The issue's acceptance check: curl -r 0-99,200-299 gets a correct multipart answer."""
    curl = need("curl")
    out = subprocess.run(
        [curl, "-sS", "-D", "-", "-r", "0-99,200-299", f"{served}/pool/main/x.deb"],
        capture_output=True,
        timeout=30,
        check=True,
    ).stdout
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 206")
    ctype = re.search(rb"content-type: (.*)\r", head, re.I).group(1).decode()  # type: ignore[union-attr]
    parts = parse_multipart(ctype, body)
    size = len(DATA)
    assert parts == [(f"bytes 0-99/{size}", DATA[:100]), (f"bytes 200-299/{size}", DATA[200:300])]


def test_curl_full_and_resume(served: str, tmp_path: Path) -> None:
    curl = need("curl")
    dest = tmp_path / "x.deb"
    dest.write_bytes(DATA[:12345])  # an interrupted download
    subprocess.run(
        [curl, "-sSf", "-C", "-", "-o", str(dest), f"{served}/pool/main/x.deb"],
        timeout=30,
        check=True,
    )
    assert dest.read_bytes() == DATA
    h2 = subprocess.run(
        [
            curl,
            "-sSf",
            "--http2-prior-knowledge",
            "-o",
            "-",
            "-w",
            "%{http_version}",
            "-r",
            "100-199",
            f"{served}/pool/main/x.deb",
        ],
        capture_output=True,
        timeout=30,
        check=True,
    ).stdout
    assert h2 == DATA[100:200] + b"2"


def test_aria2c_segmented_download(served: str, tmp_path: Path) -> None:
    aria2c = need("aria2c")
    subprocess.run(
        [
            aria2c,
            "-q",
            "-x4",
            "-s4",
            "-k1M",
            "--min-split-size=1M",
            "--allow-overwrite=true",
            "-d",
            str(tmp_path),
            "-o",
            "got.deb",
            f"{served}/pool/main/x.deb",
        ],
        timeout=60,
        check=True,
    )
    assert (tmp_path / "got.deb").read_bytes() == DATA


def test_sigint_stops_cleanly(repo: Path) -> None:
    proc, url = start_serve(repo, "--slots", "2", "--rate", "50M")
    assert httpx.get(f"{url}/pool/main/x.deb").content == DATA
    assert httpx.get(f"{url}/.well-known/webseed/stats").json()["slots"]["capacity"] == 2
    assert stop(proc, signal.SIGINT) == 0


def test_usage_errors(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from webseed.cli import app

    def code(*args: str) -> int:
        return CliRunner().invoke(app, ["serve", *args]).exit_code

    assert code(str(tmp_path / "nope")) == 2
    assert code(str(tmp_path), "--tls-cert", "x.pem") == 2
    assert code(str(tmp_path), "--slots", "-1") == 2
    assert code(str(tmp_path), "--rate", "fast") == 2
    assert code(str(tmp_path), "--rate", "-1") == 2


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    os.chmod(key_path, 0o600)
    return cert_path, key_path


def test_tls_with_http2_alpn(repo: Path, tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    proc, url = start_serve(repo, "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        assert url.startswith("https://")
        with httpx.Client(http2=True, verify=ssl.create_default_context(cafile=str(cert))) as c:
            r = c.get(f"{url}/pool/main/x.deb", headers={"Range": "bytes=0-99,-100"})
            assert r.http_version == "HTTP/2"
            parts = parse_multipart(r.headers["content-type"], r.content)
            assert [p[1] for p in parts] == [DATA[:100], DATA[-100:]]
        started = time.perf_counter()
    finally:
        code = stop(proc)
    assert code == 0
    assert time.perf_counter() - started < 10


def test_sigterm_during_a_download_exits_within_the_grace_time(repo: Path) -> None:
    proc, url = start_serve(repo, "--rate", "256K")  # the 2 MiB answer would take ~7 s
    with httpx.Client(timeout=20) as c, c.stream("GET", f"{url}/pool/main/x.deb") as r:
        assert r.status_code == 200
        next(r.iter_bytes())
        start = time.perf_counter()
        code = stop(proc)
        elapsed = time.perf_counter() - start
    assert code == 0
    assert elapsed < 6, elapsed  # 3 s graceful time-out, then the answer is cut
