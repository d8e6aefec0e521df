"""One byte-level fuzz target per parser: arbitrary bytes in, only documented errors out.

Each target feeds ``data`` to one parser that reads untrusted input and checks
two properties:

* nothing escapes but the project's documented errors
  (:class:`webseed.errors.WebseedError` and its subclasses); any other
  exception propagates and fails the fuzzer;
* nothing unverified is accepted: when the parser accepts, the result is the
  genuine object (a re-encoding gives the same bytes, a signature still binds
  it, an output matches the digest the input promised).

Fixtures that need keys or files are built once per process (``_setup_*``).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import random
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from webseed.errors import IntegrityError, WebseedError

DOCUMENTED: tuple[type[BaseException], ...] = (WebseedError,)


def _scratch() -> Path:
    return Path(tempfile.mkdtemp(prefix="webseed-fuzz-"))


# -- manifests -----------------------------------------------------------------------


@functools.cache
def valid_manifest_bytes() -> bytes:
    """A genuine manifest (three chunks, one patch link) to mutate."""
    from webseed.manifest import build_manifest

    d = _scratch()
    f = d / "foo-1.0.iso"
    f.write_bytes(random.Random(1).randbytes(40_000))
    m = build_manifest(f, "releases/foo-1.0.iso", chunk_size=16 * 1024)
    shutil.rmtree(d)
    return m.encode()


def manifest(data: bytes) -> None:
    """``Manifest.parse``: accepted bytes are canonical and content-addressed."""
    from webseed.manifest import Manifest

    try:
        m = Manifest.parse(data)
    except DOCUMENTED:
        return
    assert m.encode() == data
    assert m.digest == hashlib.sha256(data).hexdigest()
    # With the signed digest of something else, the same bytes are refused first.
    try:
        Manifest.parse(data, expected_digest="0" * 64)
    except IntegrityError:
        pass
    else:
        raise AssertionError("manifest accepted under the wrong signed digest")


# -- range headers -------------------------------------------------------------------


def ranges(data: bytes) -> None:
    """``webseed.server.ranges.decide``: never raises; ranges sorted, disjoint, in bounds."""
    from webseed.server.ranges import Outcome, decide

    size = int.from_bytes(data[:6].ljust(6, b"\0"), "big") >> (data[0] % 48 if data else 0)
    header = data[6:].decode("latin-1")
    d = decide(header, size)
    if d.outcome is Outcome.PARTIAL:
        assert d.ranges
        total = 0
        prev_end = -1
        for start, end in d.ranges:
            assert 0 <= start < end <= size, (header, size, d)
            assert start > prev_end, d  # sorted, neither overlapping nor adjacent
            prev_end = end
            total += end - start
        assert total <= size
    else:
        assert not d.ranges


# -- bencode, torrent and metalink export --------------------------------------------


def bencode(data: bytes) -> None:
    """``bdecode``: accepted input is canonical (re-encodes to the same bytes)."""
    from webseed.export.bencode import bdecode
    from webseed.export.bencode import bencode as benc

    try:
        value = bdecode(data)
    except DOCUMENTED:
        return
    assert benc(value) == data, data


def export_roundtrip(data: bytes) -> None:
    """Manifest bytes -> ``.torrent`` and Metalink: decoded back, every field matches."""
    import xml.etree.ElementTree as ET

    from webseed.export.bencode import bdecode
    from webseed.export.metalink import NS, MirrorRef, metalink_xml
    from webseed.export.torrent import torrent_bytes
    from webseed.manifest import Manifest

    try:
        m = Manifest.parse(data)
    except DOCUMENTED:
        return
    seeds = ["http://127.0.0.1:8470", "https://mirror.example/debian/"]
    t = bdecode(torrent_bytes(m, seeds))
    name = m.path.rsplit("/", 1)[-1].encode()
    info = t[b"info"]
    assert info[b"name"] == name and info[b"piece length"] == m.chunk_size
    assert info[b"file tree"][name][b""][b"length"] == m.size
    if m.size > m.chunk_size:
        layer = t[b"piece layers"][bytes.fromhex(m.pieces_root)]
        assert layer.hex() == "".join(m.chunks)
    root = ET.fromstring(metalink_xml(m, [MirrorRef(s, "de", 1) for s in seeds]))
    file_el = root.find(f"{{{NS}}}file")
    assert file_el is not None and file_el.get("name") == name.decode()
    assert file_el.findtext(f"{{{NS}}}size") == str(m.size)
    urls = [u.text for u in file_el.findall(f"{{{NS}}}url")]
    assert urls == [f"{s.rstrip('/')}/{m.path}" for s in seeds]


# -- patches -------------------------------------------------------------------------


@functools.cache
def _patch_fixture() -> tuple[Path, bytes, bytes]:
    """(directory holding base ``old``, a valid patch's bytes, the target's bytes)."""
    from patches.create import create_patch

    d = _scratch()
    rnd = random.Random(2)
    old = rnd.randbytes(30_000)
    new = bytearray(old)
    for _ in range(20):
        p = rnd.randrange(len(new) - 50)
        new[p : p + 10] = rnd.randbytes(rnd.randrange(1, 30))
    (d / "old").write_bytes(old)
    (d / "new").write_bytes(bytes(new))
    create_patch(d / "old", d / "new", d / "valid.patch")
    return d, (d / "valid.patch").read_bytes(), bytes(new)


def valid_patch_bytes() -> bytes:
    """A genuine patch from the fixture's base to its target."""
    return _patch_fixture()[1]


def patch(data: bytes) -> None:
    """``apply_patch``: refused with a PatchError, or the output matches the header's digest."""
    from patches.apply import apply_patch
    from patches.format import HEADER, Header

    d, _, _ = _patch_fixture()
    work = Path(tempfile.mkdtemp(dir=d))
    try:
        (work / "p").write_bytes(data)
        try:
            apply_patch(d / "old", work / "p", work / "out")
        except DOCUMENTED:
            assert not (work / "out").exists(), "refused patch left an output"
            assert sorted(os.listdir(work)) == ["p"], "refused patch left a temp file"
            return
        out = (work / "out").read_bytes()
        header = Header.decode(data[: HEADER.size])
        assert hashlib.sha256(out).digest() == header.target_sha256
        assert len(out) == header.target_size
    finally:
        shutil.rmtree(work)


# -- peer identity headers and receipts ----------------------------------------------


@functools.cache
def _identities() -> tuple[Any, Any]:
    from peer.incentives.identity import PeerIdentity

    return PeerIdentity.generate(), PeerIdentity.generate()


NOW = 1_800_000_000.0


def auth_header(data: bytes) -> None:
    """``Webseed-Peer`` header: ``AuthError``, or a header the one key holder signed."""
    from peer.incentives.auth import RequestVerifier, parse_header

    text = data.decode("utf-8", "replace")
    with contextlib.suppress(*DOCUMENTED):
        parse_header(text)
    try:
        who = RequestVerifier().verify(text, "GET", "peer.example", "/a.iso", "bytes=0-9", now=NOW)
    except DOCUMENTED:
        return
    # Only identity 0 ever signed anything (valid_auth_header): nobody else can pass.
    assert who == _identities()[0].peer_id, f"an unsigned header was accepted: {text!r}"


@functools.cache
def valid_auth_header() -> str:
    """A genuine header for ``GET peer.example /a.iso bytes=0-9`` at :data:`NOW`."""
    from peer.incentives.auth import sign_request

    return sign_request(_identities()[0], "GET", "peer.example", "/a.iso", "bytes=0-9", now=NOW)


def auth_mutated(data: bytes) -> None:
    """A genuine header with bytes changed: accepted only if it names the same signer."""
    from peer.incentives.auth import RequestVerifier

    text = _mutate(valid_auth_header().encode(), data).decode("utf-8", "replace")
    try:
        who = RequestVerifier().verify(text, "GET", "peer.example", "/a.iso", "bytes=0-9", now=NOW)
    except DOCUMENTED:
        return
    assert who == _identities()[0].peer_id


@functools.cache
def valid_receipt() -> Any:
    """A genuine receipt issued by identity 0 to identity 1."""
    from peer.incentives.receipts import ReceiptIssuer

    issuer = ReceiptIssuer(_identities()[0])
    issuer.received(_identities()[1].peer_id, "releases/a.iso", 123_456)
    return issuer.issue(_identities()[1].peer_id, "releases/a.iso", NOW)


def receipt(data: bytes) -> None:
    """``Receipt.decode`` + signature: refused, or exactly the genuine receipt's fields."""
    from peer.incentives.receipts import Receipt

    good = valid_receipt()
    raw = _mutate(good.encode(), data) if data[:1] != b"{" else data
    try:
        r = Receipt.decode(raw)
        r.check_signature()
    except DOCUMENTED:
        return
    assert r.body() == good.body(), "a receipt with changed fields verified"


# -- the signed index (TUF metadata) -------------------------------------------------


@functools.cache
def _index_fixture() -> tuple[Path, Any, list[str]]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from webseed.index.client import open_index
    from webseed.index.keys import RoleKeys
    from webseed.index.publisher import Publisher

    d = _scratch()
    src = d / "src"
    (src / "releases").mkdir(parents=True)
    (src / "releases" / "a-1.0.bin").write_bytes(random.Random(3).randbytes(50_000))
    (src / "releases" / "b-2.0.bin").write_bytes(b"b" * 100)
    key = Ed25519PrivateKey.generate()
    Publisher(d / "repo", RoleKeys.single(key)).publish(src)
    good = open_index(str(d / "repo"), key.public_key(), state_dir=d / "state0")
    return d, key.public_key(), good.paths()


def index_files() -> list[str]:
    """The metadata files of the fixture repository (the ones a mutation may replace)."""
    from webseed.index.layout import METADATA_DIR

    d, _, _ = _index_fixture()
    return sorted(p.name for p in (d / "repo" / METADATA_DIR).iterdir())


def index(data: bytes) -> None:
    """``open_index`` over a repository with one metadata file replaced or mutated."""
    from webseed.index.client import open_index
    from webseed.index.layout import METADATA_DIR

    d, pinned, paths = _index_fixture()
    names = index_files()
    name = names[data[0] % len(names)] if data else names[0]
    work = Path(tempfile.mkdtemp(dir=d))
    try:
        repo = work / "repo"
        shutil.copytree(d / "repo", repo)
        meta = repo / METADATA_DIR / name
        original = meta.read_bytes()
        body = data[1:]
        meta.write_bytes(body if body[:1] in (b"{", b"") else _mutate(original, body))
        try:
            got = open_index(str(repo), pinned, state_dir=work / "state")
        except DOCUMENTED:
            return
        # Accepted: it must be the publisher's index (e.g. only JSON whitespace changed).
        assert got.paths() == paths, "mutated metadata produced another index"
    finally:
        shutil.rmtree(work)


# -- the storage journal -------------------------------------------------------------


@functools.cache
def _journal_fixture() -> tuple[Path, Any, bytes]:
    from webseed.manifest import build_manifest

    d = _scratch()
    content = random.Random(4).randbytes(5 * 16 * 1024 + 100)
    (d / "orig").write_bytes(content)
    return d, build_manifest(d / "orig", "a.bin", chunk_size=16 * 1024), content


def journal(data: bytes) -> None:
    """Reopen a partial artifact over a garbage journal and half-garbage data.

    The first byte picks which chunks hold genuine data; the journal is the
    genuine header (or not, per the second byte) followed by garbage. Every chunk
    reported verified must really verify on disk.
    """
    from webseed.integrity.merkle import chunk_digest
    from webseed.storage import _MAGIC, PartialArtifact

    d, m, content = _journal_fixture()
    work = Path(tempfile.mkdtemp(dir=d))
    try:
        genuine = data[0] if data else 0
        buf = bytearray(random.Random(len(data)).randbytes(m.size))
        for i in range(m.chunk_count):
            if genuine >> i & 1:
                s, e = m.chunk_range(i)
                buf[s:e] = content[s:e]
        (work / "a.bin").write_bytes(bytes(buf))
        head = _MAGIC + bytes.fromhex(m.digest) if data[1:2] != b"\0" else b""
        (work / "a.bin.journal").write_bytes(head + data[2:])
        try:
            part = PartialArtifact(work / "a.bin", m)
        except DOCUMENTED:
            return
        with part:
            for i in range(m.chunk_count):
                if part.has(i):
                    s, e = m.chunk_range(i)
                    chunk = part.read(s, e - s)
                    assert chunk_digest(chunk, m.chunk_size).hex() == m.chunks[i]
        # Reopening what we just repaired gives the same verdict.
        with PartialArtifact(work / "a.bin", m) as again:
            assert again.bitfield() == part.bitfield()
    finally:
        shutil.rmtree(work)


# -- helpers -------------------------------------------------------------------------


def _mutate(original: bytes, ops: bytes) -> bytes:
    """Apply byte-level edits described by ``ops`` (pairs: position, new byte) to ``original``."""
    out = bytearray(original)
    for i in range(0, len(ops) - 2, 3):
        kind, pos = ops[i] % 4, int.from_bytes(ops[i + 1 : i + 3], "big")
        if not out:
            break
        pos %= len(out)
        if kind == 0:
            out[pos] = ops[i] ^ out[pos] or 1
        elif kind == 1:
            del out[pos]
        elif kind == 2:
            out.insert(pos, ops[i])
        else:
            del out[pos:]
    return bytes(out)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "manifest": manifest,
    "ranges": ranges,
    "bencode": bencode,
    "export": export_roundtrip,
    "patch": patch,
    "auth": auth_header,
    "auth_mutated": auth_mutated,
    "receipt": receipt,
    "index": index,
    "journal": journal,
}

__all__ = ["DOCUMENTED", "TARGETS", "json"]
