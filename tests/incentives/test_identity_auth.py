"""Identity files and authenticated request headers, including hostile headers."""

from __future__ import annotations

import logging
import os
import stat

import pytest

from peer.incentives import auth
from peer.incentives.errors import AuthError, IdentityError
from peer.incentives.identity import (
    PeerIdentity,
    b64d,
    b64e,
    default_dir,
    is_peer_id,
    load_or_create,
    public_key_of,
    verify,
)
from webseed.errors import SignatureError

NOW = 1_800_000_000.0


def test_identity_created_once_with_0600(tmp_path):
    a = load_or_create(tmp_path / "cfg")
    key = tmp_path / "cfg" / "identity"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    b = load_or_create(tmp_path / "cfg")
    assert a.peer_id == b.peer_id and is_peer_id(a.peer_id)
    assert not list((tmp_path / "cfg").glob(".*tmp"))


def test_identity_xdg_default(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert default_dir() == tmp_path / "webseed"
    ident = load_or_create()
    assert (tmp_path / "webseed" / "identity").exists()
    assert load_or_create().peer_id == ident.peer_id
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/ignored")
    assert default_dir().name == "webseed" and default_dir().is_absolute()


def test_identity_refuses_unsafe_or_bad_files(tmp_path):
    ident = load_or_create(tmp_path)
    key = tmp_path / "identity"
    os.chmod(key, 0o644)
    with pytest.raises(IdentityError, match="accessible by others"):
        load_or_create(tmp_path)
    key.write_bytes(b"not a key")
    os.chmod(key, 0o600)
    with pytest.raises(IdentityError, match="not a PEM"):
        load_or_create(tmp_path)
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    key.write_bytes(other)
    with pytest.raises(IdentityError, match="not an Ed25519"):
        load_or_create(tmp_path)
    key.unlink()
    with pytest.raises(IdentityError, match="cannot read"):
        from peer.incentives.identity import load

        load(key)
    assert ident.peer_id


def test_identity_race_loser_uses_winner(tmp_path, monkeypatch):
    winner = PeerIdentity.generate()
    real_link = os.link

    # Simulate the race: the key appears between the existence check and the link.
    def racing_link(src, dst):
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(winner.private_pem())
        return real_link(src, dst)

    monkeypatch.setattr(os, "link", racing_link)
    got = load_or_create(tmp_path)
    assert got.peer_id == winner.peer_id


def test_domain_separation_and_bad_ids():
    ident = PeerIdentity.generate()
    sig = ident.sign("webseed-a-v1", b"msg")
    verify(ident.peer_id, "webseed-a-v1", b"msg", sig)
    with pytest.raises(SignatureError):
        verify(ident.peer_id, "webseed-b-v1", b"msg", sig)
    with pytest.raises(SignatureError):
        verify(ident.peer_id, "webseed-a-v1", b"msG", sig)
    with pytest.raises(SignatureError, match="malformed"):
        public_key_of("!!!")
    with pytest.raises(SignatureError, match="32-byte"):
        public_key_of(b64e(b"x" * 31))
    with pytest.raises(ValueError):
        ident.sign("", b"x")
    assert not is_peer_id(123) and not is_peer_id("A" * 42 + "=")
    assert not is_peer_id("_" * 43)  # 43 chars but stray bits: non-canonical
    for bad in ("a=", "é", "a"):
        with pytest.raises(ValueError):
            b64d(bad)


def _hdr(ident, **kw):
    args = {"method": "GET", "host": "peer.example:8080", "path": "/r/a.iso", "range_": "bytes=0-9"}
    args.update(kw)
    return auth.sign_request(
        ident, args["method"], args["host"], args["path"], args["range_"], now=NOW
    )


def test_valid_header_verifies_once():
    ident = PeerIdentity.generate()
    v = auth.RequestVerifier()
    h = _hdr(ident)
    assert v.verify(h, "GET", "PEER.example:8080", "/r/a.iso", "bytes=0-9", now=NOW + 5) == (
        ident.peer_id
    )
    with pytest.raises(AuthError, match="replayed"):
        v.verify(h, "GET", "peer.example:8080", "/r/a.iso", "bytes=0-9", now=NOW + 6)


@pytest.mark.parametrize(
    ("field", "value"),
    [("method", "HEAD"), ("host", "other:8080"), ("path", "/r/b.iso"), ("range_", "bytes=0-99")],
)
def test_header_does_not_match_other_request(field, value, caplog):
    ident = PeerIdentity.generate()
    req = {"method": "GET", "host": "peer.example:8080", "path": "/r/a.iso", "range_": "bytes=0-9"}
    h = _hdr(ident)
    req[field] = value
    with (
        caplog.at_level(logging.WARNING, logger="peer.incentives"),
        pytest.raises(AuthError, match="does not match"),
    ):
        auth.RequestVerifier().verify(
            h, req["method"], req["host"], req["path"], req["range_"], now=NOW
        )
    assert "rejected request identity" in caplog.text


def test_claimed_identity_of_someone_else_is_rejected():
    victim, thief = PeerIdentity.generate(), PeerIdentity.generate()
    h = _hdr(thief).replace(thief.peer_id, victim.peer_id)
    with pytest.raises(AuthError, match="does not match"):
        auth.RequestVerifier().verify(
            h, "GET", "peer.example:8080", "/r/a.iso", "bytes=0-9", now=NOW
        )


@pytest.mark.parametrize("skew", [-1000, 1000])
def test_stale_or_future_header(skew):
    h = _hdr(PeerIdentity.generate())
    with pytest.raises(AuthError, match="timestamp"):
        auth.RequestVerifier(skew=120).verify(
            h, "GET", "peer.example:8080", "/r/a.iso", "bytes=0-9", now=NOW + skew
        )


@pytest.mark.parametrize(
    "mangle",
    [
        lambda h: None,
        lambda h: h[: len(h) // 2],  # truncated
        lambda h: h + ", x=1",
        lambda h: h.replace("ts=", "ts=-"),
        lambda h: h.replace("sig=", "sig=AAAA"),
        lambda h: h.replace("nonce=", "nonce=*"),
        lambda h: h.split(", sig=")[0] + ", sig=" + b64e(b"s" * 10),
        lambda h: (
            h.split(", nonce=")[0] + ", nonce=" + b64e(b"n" * 2) + ", sig=" + h.split("sig=")[1]
        ),
        lambda h: "id",
        lambda h: h + " " * 600,
        lambda h: h.replace("ts=", "ts=ts="),
    ],
)
def test_malformed_headers(mangle):
    h = mangle(_hdr(PeerIdentity.generate()))
    with pytest.raises(AuthError):
        auth.RequestVerifier().verify(
            h, "GET", "peer.example:8080", "/r/a.iso", "bytes=0-9", now=NOW
        )


def test_newline_injection_refused():
    with pytest.raises(AuthError, match="newline"):
        auth.sign_request(PeerIdentity.generate(), "GET", "h", "/a\nb", now=NOW)


def test_replay_cache_bounded_with_floor():
    ident = PeerIdentity.generate()
    v = auth.RequestVerifier(skew=100, cache_size=3)
    heads = []
    for i in range(5):
        h = auth.sign_request(ident, "GET", "h", "/p", now=NOW + i)
        heads.append(h)
        v.verify(h, "GET", "h", "/p", now=NOW + i)
    assert len(v._seen) <= 3
    # The evicted (oldest) headers stay refused because of the floor.
    for h in heads[:2]:
        with pytest.raises(AuthError, match="replayed"):
            v.verify(h, "GET", "h", "/p", now=NOW + 5)
    # Much later, old entries expire from the cache.
    late = auth.sign_request(ident, "GET", "h", "/p", now=NOW + 1000)
    v.verify(late, "GET", "h", "/p", now=NOW + 1000)
    assert len(v._seen) == 1
    with pytest.raises(ValueError):
        auth.RequestVerifier(skew=0)
