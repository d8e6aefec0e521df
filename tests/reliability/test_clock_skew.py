"""Clock skew between peers (real processes under libfaketime): tolerated inside the windows.

* The signed index: a client whose clock runs days ahead of (or behind) the
  publisher's still accepts the index while it has not expired by the client's
  clock, and refuses it once it has (indefinite-freeze defence).
* Peer identity headers: a requester whose clock is off by less than the
  verifier's skew window (120 s) is accepted, by more is refused.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from peer.incentives.auth import RequestVerifier
from peer.incentives.errors import AuthError
from peer.incentives.identity import PeerIdentity
from tests.prereq import needs
from webseed.index.keys import RoleKeys
from webseed.index.publisher import Publisher

pytestmark = needs(
    shutil.which("faketime") is None, "needs faketime (Debian faketime; make system-deps)"
)
ROOT = Path(__file__).resolve().parents[2]


def skewed(offset: str, code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a Python process whose wall clock is shifted by ``offset`` (e.g. +3d)."""
    env = dict(os.environ, FAKETIME_DONT_FAKE_MONOTONIC="1", PYTHONPATH=str(ROOT))
    return subprocess.run(
        ["faketime", "-f", f"{offset} x1", sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


OPEN = """
import sys
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from webseed.errors import WebseedError
from webseed.index.client import open_index
key = load_pem_public_key(open(sys.argv[2], "rb").read())
try:
    print("OK", open_index(sys.argv[1], key, state_dir=sys.argv[3]).version)
except WebseedError as exc:
    print("REFUSED", type(exc).__name__, exc)
"""


def test_index_expiry_window_under_skew(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    key = Ed25519PrivateKey.generate()
    src = tmp_path / "src"
    (src / "r").mkdir(parents=True)
    (src / "r" / "a-1.0.bin").write_bytes(b"a" * 1000)
    Publisher(tmp_path / "repo", RoleKeys.single(key)).publish(src)  # timestamp valid 7 days
    pub = tmp_path / "root.pem"
    pub.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    outcomes = {}
    for offset in ("-2d", "+6d", "+8d"):
        r = skewed(offset, OPEN, str(tmp_path / "repo"), str(pub), str(tmp_path / offset))
        assert r.returncode == 0, r.stderr[-2000:]
        outcomes[offset] = r.stdout
    # Inside the 7-day timestamp window, either way: accepted. Past it: refused as expired.
    assert outcomes["-2d"].startswith("OK 1") and outcomes["+6d"].startswith("OK 1"), outcomes
    assert outcomes["+8d"].startswith("REFUSED") and "expired" in outcomes["+8d"], outcomes


SIGN = """
import sys, time
from pathlib import Path
from peer.incentives.auth import sign_request
from peer.incentives.identity import load
print(sign_request(load(Path(sys.argv[1])), "GET", "peer.example", "/a.iso", "bytes=0-9",
                   now=time.time()))
"""


def test_identity_headers_within_the_skew_window(tmp_path: Path) -> None:
    ident = PeerIdentity.generate()
    keyfile = tmp_path / "id.pem"
    keyfile.write_bytes(ident.private_pem())
    keyfile.chmod(0o600)
    verifier = RequestVerifier(skew=120)
    for offset, accepted in (("+90s", True), ("-200s", False)):
        r = skewed(offset, SIGN, str(keyfile))
        assert r.returncode == 0, r.stderr[-2000:]
        header = r.stdout.strip()
        if accepted:
            who = verifier.verify(
                header, "GET", "peer.example", "/a.iso", "bytes=0-9", now=time.time()
            )
            assert who == ident.peer_id
        else:
            with pytest.raises(AuthError, match="timestamp off by"):
                verifier.verify(
                    header, "GET", "peer.example", "/a.iso", "bytes=0-9", now=time.time()
                )
