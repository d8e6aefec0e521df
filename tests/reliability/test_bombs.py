"""Decompression bombs in patches and archives: refused fast, in bounded memory (own process).

tests/patches/test_roundtrip.py::test_zip_bomb_falls_back covers a zip member bomb
when creating patches; here a patch whose compressed sections expand far beyond
what its header declares, and a multi-member gzip claiming 512 MiB, are applied /
expanded in a child process whose peak RSS is measured.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHILD = r"""
import hashlib, resource, sys, time, zlib, gzip
import zstandard
from pathlib import Path
from patches import archive
from patches.apply import apply_patch
from patches.format import HEADER, Header
from patches.errors import PatchError

d = Path(sys.argv[1])
GiB = 1 << 30
zeros = b"\0" * (64 << 20)
results = []

def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024

def refused(fn):
    before = peak()
    t = time.monotonic()
    try:
        fn()
    except PatchError as exc:
        return [type(exc).__name__, round(time.monotonic() - t, 2), peak() - before]
    return ["ACCEPTED", 0, 0]

# 1. A patch whose control stream is a zstd frame of 256 MiB of zeros, header says 1000 bytes.
good = (d / "p").read_bytes()
h = Header.decode(good)
for declared in (True, False):
    cctx = zstandard.ZstdCompressor(level=1, write_content_size=declared)
    w = cctx.compressobj()
    bomb = b"".join(w.compress(zeros) for _ in range(4)) + w.flush()
    body = bomb
    del w, cctx
    hdr = Header(**{**h.__dict__, "ctrl_len": (1000, len(bomb)), "diff_len": (0, 0),
                   "extra_len": (0, 0), "recipe_len": 0, "part_count": 0,
                   "body_sha256": hashlib.sha256(body).digest()})
    (d / "bomb.patch").write_bytes(hdr.encode() + body)
    results.append(refused(lambda: apply_patch(d / "old", d / "bomb.patch", d / "out")))

# 2. A .tar.gz made of 8 gzip members of 64 MiB zeros each (512 MiB claimed, 0.5 MiB on disk).
member = gzip.compress(zeros, compresslevel=9)
tgz = member * 8
del zeros
peak_before = peak()
results.append(refused(lambda: archive.expand(tgz, probe=True)))
print(results, len(tgz))
"""


def test_bombs_refused_in_bounded_memory(tmp_path: Path) -> None:
    from patches.create import create_patch

    (tmp_path / "old").write_bytes(b"a" * 100_000)
    (tmp_path / "new").write_bytes(b"a" * 50_000 + b"b" * 50_000)
    create_patch(tmp_path / "old", tmp_path / "new", tmp_path / "p")
    r = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    results_text, tgz_len = r.stdout.strip().rsplit(" ", 1)
    results = eval(results_text)  # our own child's repr: [name, seconds, peak RSS growth MiB]
    assert [row[0] for row in results] == ["PatchFormatError", "PatchFormatError", "ArchiveError"]
    assert all(seconds < 5 for _, seconds, _ in results), results
    # Patch sections: never more than the declared size is decompressed.
    assert results[0][2] < 16 and results[1][2] < 16, results
    # Archives: expansion stops at MAX_RATIO x the compressed size (here 0.5 MiB -> 100 MiB).
    from patches.archive import MAX_RATIO

    assert results[2][2] <= MAX_RATIO * int(tgz_len) / 2**20 + 16, results
    assert not (tmp_path / "out").exists()
