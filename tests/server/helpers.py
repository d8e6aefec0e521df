"""Helpers for the server tests: a published-like repository tree and multipart parsing."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import time
from pathlib import Path

from webseed.manifest import Manifest, build_manifest

WK = ".well-known/webseed"


def publish(root: Path, path: str, data: bytes, *, chunk_size: int = 256 * 1024) -> Manifest:
    """Write ``data`` at ``root/path`` plus its manifest and a targets entry (the published layout).

    The signing itself is the index's job; the server only reads these files
    for validators and chunk lookups, so the targets file here is unsigned.
    """
    file = root / path
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_bytes(data)
    manifest = build_manifest(file, path, chunk_size=chunk_size)
    mdir = root / WK / "manifests"
    mdir.mkdir(parents=True, exist_ok=True)
    # The manifest is written after the artifact (as publishing does): its mtime is newer.
    time.sleep(0.01)
    (mdir / f"{manifest.digest}.json").write_bytes(manifest.encode())
    meta = root / WK / "metadata"
    meta.mkdir(parents=True, exist_ok=True)
    tfile = meta / "1.targets.json"
    doc = (
        json.loads(tfile.read_bytes())
        if tfile.exists()
        else {
            "signatures": [],
            "signed": {"_type": "targets", "version": 1, "targets": {}},
        }
    )
    doc["signed"]["targets"][path] = {
        "length": len(data),
        "hashes": {"sha256": hashlib.sha256(data).hexdigest()},
        "custom": {"manifest": manifest.digest, "chunk_size": chunk_size},
    }
    tfile.write_text(json.dumps(doc))
    return manifest


def parse_multipart(content_type: str, body: bytes) -> list[tuple[str, bytes]]:
    """(Content-Range, bytes) of each part of a multipart/byteranges body."""
    m = re.search(r"boundary=([^;\s]+)", content_type)
    assert m, content_type
    delim = b"--" + m.group(1).encode()
    assert body.endswith(delim + b"--\r\n"), body[-80:]
    out = []
    for chunk in body.split(delim)[1:-1]:
        head, _, payload = chunk.partition(b"\r\n\r\n")
        assert payload.endswith(b"\r\n")
        payload = payload[:-2]
        headers = dict(line.split(": ", 1) for line in head.decode().strip().split("\r\n") if line)
        out.append((headers["content-range"], payload))
    return out


def raw_request(url: str, request: bytes, *, timeout: float = 10.0, limit: int = 1 << 20) -> bytes:
    """Send raw bytes to the server of ``url``; return what it answers before closing."""
    host, port = re.match(r"https?://([^:/]+):(\d+)", url).groups()  # type: ignore[union-attr]
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(request)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        total = 0
        deadline = time.monotonic() + timeout
        while total < limit and time.monotonic() < deadline:
            try:
                data = s.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not data:
                break
            chunks.append(data)
            total += len(data)
    return b"".join(chunks)


def status_of(response: bytes) -> int:
    """The status code of a raw HTTP/1.1 response."""
    return int(response.split(b" ", 2)[1])


def rand(n: int, seed: int = 1) -> bytes:
    """Deterministic pseudo-random bytes."""
    import random

    return random.Random(seed).randbytes(n)


__all__ = ["os"]
