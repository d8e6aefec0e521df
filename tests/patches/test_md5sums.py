"""A .deb's control md5sums rebuilt from the data tar instead of shipped (recipe op MD5SUMS)."""

from __future__ import annotations

import hashlib
import lzma
from pathlib import Path

import pytest

from patches import archive
from patches import format as fmt
from patches.apply import apply_patch
from patches.create import create_patch
from patches.errors import PatchFormatError
from tests.patches.conftest import mutate, text_blob
from tests.patches.test_roundtrip import make_ar, make_tar

FILES = {f"./usr/share/x/f{i}.txt": text_blob(40 + i, 3_000) for i in range(40)}


def md5sums(files: dict[str, bytes], order: str = "sorted") -> bytes:
    names = sorted(files) if order == "sorted" else list(files)
    return b"".join(
        hashlib.md5(files[n], usedforsecurity=False).hexdigest().encode()
        + b"  "
        + n.removeprefix("./").encode()
        + b"\n"
        for n in names
    )


def deb(files: dict[str, bytes], sums: bytes) -> bytes:
    control = {"./control": b"Package: x\n", "./md5sums": sums}
    return make_ar(
        {
            "debian-binary": b"2.0\n",
            "control.tar.xz": lzma.compress(make_tar(control)),
            "data.tar.xz": lzma.compress(make_tar(files)),
        }
    )


def _patch(tmp_path: Path, old: bytes, new: bytes) -> tuple[Path, Path, int]:
    a, b, p, out = (tmp_path / n for n in ("old.deb", "new.deb", "p.wsp", "out.deb"))
    a.write_bytes(old)
    b.write_bytes(new)
    info = create_patch(a, b, p)
    apply_patch(a, p, out)
    assert out.read_bytes() == new and info.transform == "archive"
    return a, p, info.size


@pytest.mark.parametrize("order", ["sorted", "tar"])
def test_md5sums_derived_and_round_trip(tmp_path: Path, order: str) -> None:
    old_files = dict(reversed(FILES.items())) if order == "tar" else FILES
    new_files = {k: mutate(v, 3) for k, v in old_files.items()}
    new = deb(new_files, md5sums(new_files, order))
    ops = archive.expand(new, probe=True).ops
    [op] = [o for o in ops if o.kind == archive.MD5SUMS]
    assert op.p1 == (archive.MD5SUMS_SORTED if order == "sorted" else archive.MD5SUMS_TAR_ORDER)
    _, _, size = _patch(tmp_path, deb(old_files, md5sums(old_files, order)), new)
    # The same release whose md5sums cannot be derived (one line wrong) ships them: larger.
    bad = md5sums(new_files, order).replace(b"f1", b"g1", 1)
    ops = archive.expand(deb(new_files, bad), probe=True).ops
    assert not any(o.kind == archive.MD5SUMS for o in ops)
    _, _, bigger = _patch(tmp_path, deb(old_files, md5sums(old_files, order)), deb(new_files, bad))
    assert size + 500 < bigger


def _forge(patch: bytes, ops: list[archive.Op]) -> bytes:
    """The same patch with another recipe (body digest recomputed)."""
    h = fmt.Header.decode(patch)
    body = patch[fmt.HEADER.size + h.recipe_len :]
    recipe = fmt.compress(archive.encode_recipe(ops))
    new_body = recipe + body
    from dataclasses import replace

    h2 = replace(h, recipe_len=len(recipe), body_sha256=hashlib.sha256(new_body).digest())
    return h2.encode() + new_body


def test_hostile_md5sums_entries(tmp_path: Path) -> None:
    new_files = {k: mutate(v, 5) for k, v in FILES.items()}
    new = deb(new_files, md5sums(new_files))
    a, p, _ = _patch(tmp_path, deb(FILES, md5sums(FILES)), new)
    ops = archive.expand(new, probe=True).ops
    at = next(i for i, o in enumerate(ops) if o.kind == archive.MD5SUMS)
    md5 = ops[at]
    tops = sorted(archive._top_indices(ops))
    own = max(i for i in tops if i < at)  # the control tar's own container
    leaf = next(i for i in tops if not ops[i].descendants)
    forged = {
        "out of range": archive.Op(archive.MD5SUMS, 0, md5.out_len, 0, p4=len(ops) + 5),
        "own container": archive.Op(archive.MD5SUMS, 0, md5.out_len, 0, p4=own),
        "not a container": archive.Op(archive.MD5SUMS, 0, md5.out_len, 0, p4=leaf),
        "nested op": archive.Op(archive.MD5SUMS, 0, md5.out_len, 0, p4=own + 1),
        "bad mode": archive.Op(archive.MD5SUMS, 0, md5.out_len, 7, p4=md5.p4),
        "stream bytes": archive.Op(archive.MD5SUMS, 1, md5.out_len, 0, p4=md5.p4),
    }
    out = tmp_path / "never"
    for what, op in forged.items():
        bad = tmp_path / "bad.wsp"
        bad.write_bytes(_forge(p.read_bytes(), [*ops[:at], op, *ops[at + 1 :]]))
        with pytest.raises(PatchFormatError):
            apply_patch(a, bad, out)
        assert not out.exists(), what
    # A well-formed entry naming a tar whose md5sums have another size: refused too.
    wrong = archive.Op(archive.MD5SUMS, 0, md5.out_len + 1, 0, p4=md5.p4)
    with pytest.raises(PatchFormatError):
        list(archive.rebuild([*ops[:at], wrong, *ops[at + 1 :]], b"\0" * 10**6, threads=1))


def test_md5sums_of_rejects_non_tars_and_modes() -> None:
    with pytest.raises(PatchFormatError):
        archive.md5sums_of(b"not a tar at all" * 64, archive.MD5SUMS_SORTED)
    with pytest.raises(PatchFormatError):
        archive.md5sums_of(make_tar({"a": b"x"}), 9)
    # A member claiming more data than the tar holds.
    tar = bytearray(make_tar({"a": b"x" * 2000}))
    with pytest.raises(PatchFormatError):
        archive.md5sums_of(bytes(tar[:1024]), archive.MD5SUMS_SORTED)
    # No ./md5sums in control, or no data tar: nothing derived, still exact.
    plain = make_ar({"control.tar.xz": lzma.compress(make_tar({"./control": b"P\n"}))})
    assert not any(o.kind == archive.MD5SUMS for o in archive.expand(plain, probe=True).ops)
    sums_only = make_ar({"control.tar.xz": lzma.compress(make_tar({"./md5sums": b"x  y\n"}))})
    assert not any(o.kind == archive.MD5SUMS for o in archive.expand(sums_only, probe=True).ops)


class _MinizCompressor:
    """zipfile's compressor interface, writing miniz_oxide's deflate (as maturin's zip crate)."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def compress(self, data: bytes) -> bytes:
        self.buf += data
        return b""

    def flush(self) -> bytes:
        return archive._miniz(bytes(self.buf), 6)


def test_rust_wheel_members_rebuilt_by_miniz(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import zipfile

    from tests.patches.test_roundtrip import SRC, make_zip

    # Python's zlib does not reproduce miniz_oxide's output; real maturin wheels (pydantic_core)
    # went from 2.6% (raw fallback) to 97% reduction with this op.
    monkeypatch.setattr(zipfile, "_get_compressor", lambda *_a, **_k: _MinizCompressor())
    old = make_zip(SRC)
    new = make_zip({k: mutate(v, 9, 2) for k, v in SRC.items()})
    monkeypatch.undo()
    ops = archive.expand(new, probe=True).ops
    assert any(o.kind == archive.MINIZ for o in ops)
    assert not any(o.kind == archive.DEFLATE for o in ops)
    _, _, size = _patch(tmp_path, old, new)
    assert size < len(new) // 10
    with pytest.raises(PatchFormatError):
        archive._recompress(archive.Op(archive.MINIZ, 3, 3, 12), b"abc")
    monkeypatch.setattr(archive, "miniz_deflate", None)
    with pytest.raises(PatchFormatError):
        archive._recompress(archive.Op(archive.MINIZ, 3, 3, 6), b"abc")
