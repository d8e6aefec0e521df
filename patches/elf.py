"""Executable-aware diffs of x86-64 ELF files: predict the new file's addresses from the old.

When a shared library is rebuilt after a source change, code and data move, and every
instruction or table entry that refers to a moved address changes too: a call's rel32,
a RIP-relative operand, a pointer in ``.data.rel.ro``, a relocation, an ``.eh_frame``
entry. To bsdiff these are thousands of scattered byte changes. Here (in the spirit of
Courgette and Zucchini, written from their published descriptions):

1. :func:`references` finds the address-carrying fields of an image: rel32 branches and
   RIP-relative operands in executable sections (a heuristic scan for the usual opcodes,
   kept only when the target lands inside the image), relocation entries and the
   pointers they relocate, ``.eh_frame``/``.eh_frame_hdr`` tables, symbol values,
   ``.dynamic`` pointers, section and program headers.
2. The creator zeroes those fields in both images and runs bsdiff on the results: the
   control triples it finds are an alignment of old and new that does not care where
   things point (:func:`diff`).
3. :func:`adjust` rewrites every field of the *old* image to what it would be if its
   target had moved the way the alignment says (old offset -> new offset, through the
   new image's load segments, which the patch carries), and the diff and extra bytes
   are taken against this adjusted old image using the same triples.

So a field whose target merely moved costs a zero diff byte. Applying repeats step 3
from the old image and the patch's triples alone, then runs bsdiff's patch step; the
result is byte-exact whatever the heuristics found, because the diff bytes are taken
against exactly what the applier rebuilds. Everything here works on untrusted bytes:
any parse problem means "no references" (on both sides alike), never an exception.
"""

from __future__ import annotations

import bisect
import contextlib
import re
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import bsdiff4.core

from patches.format import decode_triples

# A reference: (file offset of the field, kind, parameter).
REL32 = 0  # target = vaddr(field) + param + int32 value   (param: bytes from field to insn end)
ABS64 = 1  # target = uint64 value (a virtual address)
DATAREL32 = 2  # target = param + int32 value             (param: table base vaddr)
OFF64 = 3  # value is a file offset
INDEX32 = 4  # uint32 index into a table (param: table file offset * 64 + entry size)
Ref = tuple[int, int, int]
Load = tuple[int, int, int]  # (file offset, virtual address, size in memory)

MAX_LOADS = 64
MAX_IMAGES = 64  # per unit
_MAX_TABLE = 1 << 16  # entries per jump table
_MAX_PROBES = 1024  # ELF magic numbers looked at per unit
_MAGIC = b"\x7fELF\x02\x01"
_EM_X86_64 = 62
_SHF_EXECINSTR = 4
_SHT_SYMTAB, _SHT_RELA, _SHT_DYNSYM = 2, 4, 11
_R_RELATIVE, _R_IRELATIVE = 8, 37
# .dynamic tags whose value is an address.
_DT_PTRS = frozenset(
    {3, 4, 5, 6, 7, 12, 13, 17, 23, 25, 26, 32, 0x6FFFFEF5, 0x6FFFFFFE, 0x6FFFFFF0, 0x6FFFFFFC}
)

# Candidate instructions, leftmost first: call/jmp rel32, jcc rel32, and RIP-relative
# operands (ModRM mod=00 rm=101) of common one- and two-byte opcodes. The 4 bytes after
# the match are the field.
_MODRM_RIP = b"\x05\x0d\x15\x1d\x25\x2d\x35\x3d"
_OPS1 = bytes.fromhex(
    "01 03 09 0b 21 23 29 2b 31 33 39 3b 63"  # ALU ops, movsxd
    "84 85 87 88 89 8a 8b 8d ff"  # test, xchg, mov, lea, call/jmp/push [rip]
    "80 81 83 c6 c7 f6 f7"  # with an immediate after the displacement
)
_OPS2 = bytes.fromhex(  # after 0x0f: SSE moves and arithmetic, movzx/movsx
    "10 11 12 13 16 17 28 29 2a 2e 2f 54 57 58 59 5a 5b 5c 5e 6e 6f 7e 7f d6 b6 b7 be bf"
)
_INT32 = struct.Struct("<i")
_IMM8 = frozenset({0x80, 0x83, 0xC6, 0xF6})  # operand bytes after the displacement
_IMM32 = frozenset({0x81, 0xC7, 0xF7})


def _class(chars: bytes) -> bytes:
    return b"[" + b"".join(b"\\x%02x" % c for c in chars) + b"]"


_CANDIDATE = re.compile(
    b"(?:[\\xe8\\xe9]|\\x0f[\\x80-\\x8f]|"
    + _class(_OPS1)
    + _class(_MODRM_RIP)
    + b"|\\x0f"
    + _class(_OPS2)
    + _class(_MODRM_RIP)
    + b")....",
    re.DOTALL,
)


@dataclass(frozen=True)
class _Section:
    name: bytes
    type: int
    flags: int
    addr: int
    offset: int
    size: int
    link: int


@dataclass(frozen=True)
class Image:
    """What :func:`references` needs of an ELF file."""

    loads: list[Load]
    sections: list[_Section]
    phoff: int
    phnum: int
    shoff: int
    size: int  # bytes of the file that belong to the image (an image may sit in a tar)


def is_elf(data: bytes | memoryview) -> bool:
    """An ELF64 little-endian x86-64 file (the only kind transformed)."""
    return (
        len(data) >= 64
        and data[:6] == _MAGIC
        and struct.unpack_from("<H", data, 18)[0] == _EM_X86_64
    )


def has_elf(data: bytes) -> bool:
    """Whether ``data`` may contain an ELF image (cheap pre-check for :func:`diff`)."""
    return _MAGIC in data


def parse(data: bytes | memoryview) -> Image | None:
    """The load segments and sections of an x86-64 ELF file, or None if it is not one."""
    if not is_elf(data):
        return None
    try:
        phoff, shoff = struct.unpack_from("<QQ", data, 32)
        phentsize, phnum, shentsize, shnum, shstrndx = struct.unpack_from("<HHHHH", data, 54)
        loads: list[Load] = []
        extent = max(64, phoff + 56 * phnum, shoff + 64 * shnum)
        if phentsize != 56 or phnum > 256 or phoff + 56 * phnum > len(data):
            return None
        for i in range(phnum):
            p_type, _, p_offset, p_vaddr, _, _, p_memsz = struct.unpack_from(
                "<IIQQQQQ", data, phoff + 56 * i
            )
            if p_type == 1:  # PT_LOAD
                loads.append((p_offset, p_vaddr, p_memsz))
                extent = max(
                    extent, p_offset + struct.unpack_from("<Q", data, phoff + 56 * i + 32)[0]
                )
        if not loads or len(loads) > MAX_LOADS:
            return None
        sections: list[_Section] = []
        if shnum and (shentsize != 64 or shoff + 64 * shnum > len(data) or shstrndx >= shnum):
            return None
        raw = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + 64 * i) for i in range(shnum)]
        strtab = raw[shstrndx] if shnum else None
        for name, typ, flags, addr, offset, size, link, *_ in raw:
            if typ != 8:  # SHT_NOBITS has no file bytes
                extent = max(extent, offset + size)
                if offset + size > len(data):
                    return None
            label = b""
            if strtab is not None:
                start = strtab[4] + name
                label = bytes(data[start : start + 64]).split(b"\0", 1)[0]
            sections.append(_Section(label, typ, flags, addr, offset, size, link))
        if extent > len(data):
            return None
        return Image(sorted(loads), sections, phoff, phnum, shoff, extent)
    except (struct.error, IndexError):
        return None


def references(data: bytes, image: Image) -> list[Ref]:
    """Every address-carrying field found in ``data``, in file order, not overlapping."""
    refs: list[Ref] = []
    leas: set[int] = set()
    _header_refs(data, image, refs)
    for sec in image.sections:
        if sec.type == 8 or not sec.size:
            continue
        if sec.flags & _SHF_EXECINSTR:
            _code_refs(data, image, sec, refs, leas)
            if sec.name == b".plt":  # lazy stubs push their own index
                for p in range(sec.offset + 16, sec.offset + sec.size - 15, 16):
                    if data[p + 6] == 0x68:
                        refs.append((p + 7, INDEX32, (sec.offset + 16) * 64 + 16))
        elif sec.type == _SHT_RELA:
            _rela_refs(data, image, sec, refs)
        elif sec.type in (_SHT_SYMTAB, _SHT_DYNSYM):
            refs.extend(
                (p + 8, ABS64, 0) for p in range(sec.offset, sec.offset + sec.size - 23, 24)
            )
        elif sec.name == b".dynamic":
            for p in range(sec.offset, sec.offset + sec.size - 15, 16):
                if struct.unpack_from("<q", data, p)[0] in _DT_PTRS:
                    refs.append((p + 8, ABS64, 0))
        elif sec.name == b".eh_frame_hdr":
            _eh_frame_hdr_refs(data, sec, refs)
        elif sec.name == b".eh_frame":
            _eh_frame_refs(data, sec, refs)
    _jump_table_refs(data, image, leas, refs)
    refs.sort()
    out: list[Ref] = []
    end = 0
    size = len(data)
    for ref in refs:  # drop overlaps (a relocated pointer inside a scanned code range, ...)
        stop = ref[0] + (8 if ref[1] == ABS64 or ref[1] == OFF64 else 4)
        if ref[0] >= end and stop <= size:
            out.append(ref)
            end = stop
    return out


def _header_refs(data: bytes, image: Image, refs: list[Ref]) -> None:
    refs += [(24, ABS64, 0), (32, OFF64, 0), (40, OFF64, 0)]  # e_entry, e_phoff, e_shoff
    for i in range(image.phnum):
        p = image.phoff + 56 * i
        refs += [(p + 8, OFF64, 0), (p + 16, ABS64, 0), (p + 24, ABS64, 0)]
    for i in range(len(image.sections)):
        p = image.shoff + 64 * i
        refs += [(p + 16, ABS64, 0), (p + 24, OFF64, 0)]


def _merged(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Ranges with gaps of up to 64 bytes (alignment padding) closed."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 64:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _code_refs(data: bytes, image: Image, sec: _Section, refs: list[Ref], leas: set[int]) -> None:
    """rel32 branches and RIP-relative operands; ``leas`` gets the targets of ``lea``s."""
    base = sec.addr - sec.offset  # field vaddr = file offset + base
    code = _merged([(s.addr, s.addr + s.size) for s in image.sections if s.flags & _SHF_EXECINSTR])
    spans = _merged([(v, v + size) for _, v, size in image.loads])
    lowest, highest = min(lo for lo, _ in spans), max(hi for _, hi in spans)
    pos, end = sec.offset, sec.offset + sec.size
    search, unpack, append = _CANDIDATE.search, _INT32.unpack_from, refs.append
    while (m := search(data, pos, end)) is not None:
        start = m.start()
        field = start + len(m[0]) - 4
        op = data[start]
        if op == 0xE8 or op == 0xE9 or (op == 0x0F and 0x80 <= data[start + 1] <= 0x8F):
            tail, ranges = 4, code  # branches stay in code
        else:
            opcode = data[start + 1] if op == 0x0F else op
            tail = 4 + (1 if opcode in _IMM8 else 4 if opcode in _IMM32 and op != 0x0F else 0)
            ranges = spans
        target = field + base + tail + unpack(data, field)[0]
        if lowest <= target < highest and (
            len(ranges) == 1 or any(lo <= target < hi for lo, hi in ranges)
        ):
            append((field, REL32, tail))
            if op == 0x8D:
                leas.add(target)
            pos = field + 4
        else:
            pos = start + 1


def _jump_table_refs(data: bytes, image: Image, leas: set[int], refs: list[Ref]) -> None:
    """Switch jump tables: int32 entries, each a code address relative to the table start.

    Position-independent code loads a table's address with ``lea`` and adds the entry
    to it; the table (in .rodata) changes whenever code inside the function moves
    (libexpat's tokenizer: ~4,800 changed bytes of its patch). A table is taken to be
    the run of entries from a ``lea`` target for which table + entry lands in code.
    """
    code = _merged([(s.addr, s.addr + s.size) for s in image.sections if s.flags & _SHF_EXECINSTR])
    data_secs = [
        s for s in image.sections if s.type != 8 and s.addr and not s.flags & _SHF_EXECINSTR
    ]
    starts = sorted(leas)
    unpack = _INT32.unpack_from
    for n, table in enumerate(starts):
        sec = next((s for s in data_secs if s.addr <= table < s.addr + s.size), None)
        if sec is None:
            continue
        stop = min(sec.addr + sec.size, starts[n + 1] if n + 1 < len(starts) else 1 << 64)
        at = table
        while at + 4 <= stop and at - table < (_MAX_TABLE << 2):
            target = table + unpack(data, sec.offset + at - sec.addr)[0]
            if not any(lo <= target < hi for lo, hi in code):
                break
            refs.append((sec.offset + at - sec.addr, DATAREL32, table))
            at += 4


def _rela_refs(data: bytes, image: Image, sec: _Section, refs: list[Ref]) -> None:
    symtab = image.sections[sec.link].offset if 0 < sec.link < len(image.sections) else 0
    v2o = _v2o_fn(image.loads)
    for p in range(sec.offset, sec.offset + sec.size - 23, 24):
        r_offset, r_info = struct.unpack_from("<QQ", data, p)
        refs.append((p, ABS64, 0))
        if symtab and r_info >> 32:  # the symbol index: symbols get inserted too
            refs.append((p + 12, INDEX32, symtab * 64 + 24))
        if r_info & 0xFFFFFFFF in (_R_RELATIVE, _R_IRELATIVE):
            refs.append((p + 16, ABS64, 0))
        where = v2o(r_offset)
        if where is not None and where + 8 <= min(len(data), _file_end(image.loads, where)):
            refs.append((where, ABS64, 0))


def _file_end(loads: list[Load], offset: int) -> int:
    for o, _, size in loads:
        if o <= offset < o + size:
            return o + size
    return 0


def _eh_frame_hdr_refs(data: bytes, sec: _Section, refs: list[Ref]) -> None:
    # version 1, eh_frame_ptr pcrel|sdata4, fde_count udata4, table datarel|sdata4
    if sec.size < 12 or data[sec.offset : sec.offset + 4] != b"\x01\x1b\x03\x3b":
        return
    refs.append((sec.offset + 4, REL32, 0))
    count = struct.unpack_from("<I", data, sec.offset + 8)[0]
    count = min(count, (sec.size - 12) // 8)
    for i in range(count):
        p = sec.offset + 12 + 8 * i
        refs += [(p, DATAREL32, sec.addr), (p + 4, DATAREL32, sec.addr)]


def _eh_frame_refs(data: bytes, sec: _Section, refs: list[Ref]) -> None:
    # Each FDE's pc_begin, assumed pcrel|sdata4 (what GCC and Clang emit on x86-64).
    p, end = sec.offset, sec.offset + sec.size
    while p + 12 <= end:
        length, cie = struct.unpack_from("<II", data, p)
        if length == 0 or length == 0xFFFFFFFF:
            break
        if cie:
            refs.append((p + 8, REL32, 0))
        p += 4 + length


def _o2v_fn(loads: list[Load]) -> Callable[[int], int]:
    """Virtual address of a file offset, for one list of loads."""
    starts = [o for o, _, _ in loads]
    shift = [v - o for o, v, _ in loads]
    find = bisect.bisect_right

    def o2v(offset: int) -> int:
        i = find(starts, offset) - 1
        return offset + shift[i if i >= 0 else 0]

    return o2v


def _v2o_fn(loads: list[Load]) -> Callable[[int], int | None]:
    """File offset of a virtual address, for one list of loads (the last containing load
    wins; past the file part too: .bss maps after .data)."""
    spans = [(v, v + size, o - v) for o, v, size in reversed(loads)]

    def v2o(vaddr: int) -> int | None:
        for lo, hi, shift in spans:
            if lo <= vaddr < hi:
                return vaddr + shift
        return None

    return v2o


def _segments(triples: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """The (old offset, new offset, length) matches of bsdiff control triples."""
    segs = []
    old = new = 0
    for x, y, z in triples:
        if x > 0:
            segs.append((old, new, x))
        old += x + z
        new += x + y
    return segs


class Alignment:
    """Old offset -> new offset, from (old, new, length) matches (longer ones win overlaps)."""

    def __init__(self, segs: list[tuple[int, int, int]]) -> None:
        starts: list[int] = []
        ends: list[int] = []
        deltas: list[int] = []
        for o, n, x in sorted(segs, key=lambda s: (-s[2], s[0])):
            # Insert the parts of [o, o+x) not yet covered.
            lo, hi = o, o + x
            i = bisect.bisect_right(starts, lo)
            if i and ends[i - 1] > lo:
                lo = ends[i - 1]
            while lo < hi:
                nxt = starts[i] if i < len(starts) else hi
                if nxt > lo:
                    stop = min(hi, nxt)
                    starts.insert(i, lo)
                    ends.insert(i, stop)
                    deltas.insert(i, n - o)
                    i += 1
                if i >= len(starts):
                    break
                lo = ends[i]
                i += 1
        self._starts, self._deltas = starts, deltas

    def map(self, offset: int) -> int | None:
        """Where ``offset`` went (outside matches: as the nearest match before it moved)."""
        i = bisect.bisect_right(self._starts, offset) - 1
        return None if i < 0 else offset + self._deltas[i]


def adjust(
    out: bytearray,
    at: int,
    data: bytes,
    image: Image,
    refs: list[Ref],
    new_loads: list[Load],
    align: Callable[[int], int | None],
) -> None:
    """Rewrite the fields of ``data`` (an image at ``out[at:]``) to where their targets moved.

    ``align`` maps an offset in the old image to an offset in the new one.
    """
    old_o2v, old_v2o, new_o2v = _o2v_fn(image.loads), _v2o_fn(image.loads), _o2v_fn(new_loads)

    def moved(vaddr: int) -> int | None:
        off = old_v2o(vaddr)
        if off is None:
            return None
        new_off = align(off)
        return None if new_off is None else new_o2v(new_off)

    for field, kind, param in refs:
        if kind == ABS64:
            value = struct.unpack_from("<Q", data, field)[0]
            new = moved(value) if value else None
            fmt = "<Q"
        elif kind == OFF64:
            value = struct.unpack_from("<Q", data, field)[0]
            new = align(value) if value else None
            fmt = "<Q"
        elif kind == INDEX32:
            value = struct.unpack_from("<I", data, field)[0]
            fmt = "<I"
            table, size = param >> 6, param & 63
            new_table, new_entry = align(table), align(table + value * size)
            new = (
                (new_entry - new_table) // size
                if new_table is not None and new_entry is not None and size
                else None
            )
        else:
            value = struct.unpack_from("<i", data, field)[0]
            fmt = "<i"
            if kind == REL32:
                new_here, target = align(field), moved(old_o2v(field) + param + value)
                new = (
                    None
                    if new_here is None or target is None
                    else target - (new_o2v(new_here) + param)
                )
            else:
                new_base, target = moved(param), moved(param + value)
                new = None if new_base is None or target is None else target - new_base
        if new is not None and new != value:
            with contextlib.suppress(struct.error):  # out of the field's range: leave it
                struct.pack_into(fmt, out, at + field, new)


@dataclass(frozen=True)
class Found:
    """An ELF image inside a unit (a whole file, or a member of a tar)."""

    start: int
    image: Image
    refs: list[Ref]


def find_images(data: bytes) -> list[Found]:
    """The x86-64 ELF images in ``data``, left to right, not overlapping (at most MAX_IMAGES).

    At most :data:`_MAX_PROBES` magic numbers are looked at, and nothing is copied until
    one parses: a unit stuffed with ELF magic costs little.
    """
    found: list[Found] = []
    view = memoryview(data)
    pos = probes = 0
    while len(found) < MAX_IMAGES and probes < _MAX_PROBES:
        start = data.find(_MAGIC, pos)
        if start < 0:
            break
        probes += 1
        image = parse(view[start:])
        if image is None:
            pos = start + 1
            continue
        found.append(Found(start, image, references(data[start : start + image.size], image)))
        pos = start + image.size
    return found


def _zero_fields(data: bytes, images: list[Found]) -> bytearray:
    out = bytearray(data)
    zero4, zero8 = bytes(4), bytes(8)
    for img in images:
        start = img.start
        for field, kind, _ in img.refs:
            at = start + field
            if kind in (ABS64, OFF64):
                out[at : at + 8] = zero8
            else:
                out[at : at + 4] = zero4
    return out


def _target_fn(data: bytes, image: Image) -> Callable[[Ref], int | None]:
    """For one image: the file offset a reference points to (None: outside the file)."""
    o2v, v2o = _o2v_fn(image.loads), _v2o_fn(image.loads)
    u64, u32, i32 = (
        struct.Struct("<Q").unpack_from,
        struct.Struct("<I").unpack_from,
        _INT32.unpack_from,
    )

    def target(ref: Ref) -> int | None:
        field, kind, param = ref
        if kind == REL32:
            return v2o(o2v(field) + param + i32(data, field)[0])
        if kind == ABS64:
            return v2o(u64(data, field)[0])
        if kind == DATAREL32:
            return v2o(param + i32(data, field)[0])
        if kind == OFF64:
            return int(u64(data, field)[0])
        return (param >> 6) + int(u32(data, field)[0]) * (param & 63)  # INDEX32

    return target


def _slot_names(data: bytes, image: Image) -> dict[int, bytes]:
    """File offset of each relocated slot naming a symbol -> a digest of the symbol's name.

    GOT and PLT slots are otherwise indistinguishable (zeros), so a library that imports
    one more function would have all its PLT calls aligned one stub off.
    """
    found: dict[int, bytes] = {}
    secs = image.sections
    for sec in secs:
        if sec.type != _SHT_RELA or not 0 < sec.link < len(secs):
            continue
        symtab = secs[sec.link]
        if not 0 < symtab.link < len(secs):
            continue
        strtab = secs[symtab.link]
        v2o = _v2o_fn(image.loads)
        for p in range(sec.offset, sec.offset + sec.size - 23, 24):
            r_offset, r_info = struct.unpack_from("<QQ", data, p)
            sym = r_info >> 32
            where = v2o(r_offset)
            if not sym or where is None or (sym + 1) * 24 > symtab.size:
                continue
            name_at = strtab.offset + struct.unpack_from("<I", data, symtab.offset + 24 * sym)[0]
            name = data[name_at : name_at + 256].split(b"\0", 1)[0]
            found[where] = zlib.crc32(name).to_bytes(4, "little") * 2
    return found


def _labelled(data: bytes, images: list[Found]) -> bytes:
    """``data`` with each reference replaced by a digest of what it points to.

    Two versions' images then agree wherever code is the same and calls the same
    (unchanged) code, however far it moved; zeros alone would make tables of
    references (.eh_frame_hdr, the PLT, .got.plt) all alike and misalign them.
    """
    zeroed = _zero_fields(data, images)
    named: set[int] = set()
    for img in images:
        body = data[img.start : img.start + img.image.size]
        for where, name in _slot_names(body, img.image).items():
            named.add(img.start + where)
            if 0 <= where <= img.image.size - 8:
                zeroed[img.start + where : img.start + where + 8] = name
    out = bytearray(zeroed)
    crc = zlib.crc32
    for img in images:
        start, size = img.start, img.image.size
        target = _target_fn(data[start : start + size], img.image)
        for ref in img.refs:
            at = start + ref[0]
            if at in named:  # a slot's symbol name says more than its value
                continue
            t = target(ref)
            if t is None or not 0 <= t < size:
                continue
            label = crc(zeroed[start + t : start + t + 16]).to_bytes(4, "little")
            if ref[1] == ABS64 or ref[1] == OFF64:
                out[at : at + 8] = label + label
            else:
                out[at : at + 4] = label
    return bytes(out)


def _sub_bytes(a: bytes, b: bytes) -> bytes:
    """Byte-wise (a - b) mod 256, lane-parallel on big integers (SWAR)."""
    n = len(a)
    if not n:
        return b""
    high = int.from_bytes(b"\x80" * n, "little")
    x, y = int.from_bytes(a, "little"), int.from_bytes(b, "little")
    mask = (1 << (8 * n)) - 1
    r = ((x | high) - (y & ~high & mask)) ^ ((x ^ ~y) & high)
    return (r & mask).to_bytes(n, "little")


# Where each old image went: (start and size of its new image in the new unit, the new
# image's load segments), or None when no new image corresponds to it.
Pairing = list[tuple[int, int, list[Load]] | None]


def encode_pairing(pairing: Pairing) -> bytes:
    """Per old image a triple (new start + 1 or 0, load count, new size), then its loads."""
    enc = bsdiff4.core.encode_int64
    out = bytearray()
    for pair in pairing:
        if pair is None:
            out += enc(0) + enc(0) + enc(0)
            continue
        start, size, loads = pair
        out += enc(start + 1) + enc(len(loads)) + enc(size)
        out += b"".join(enc(o) + enc(v) + enc(size) for o, v, size in loads)
    return bytes(out)


def decode_pairing(raw: bytes, images: int) -> Pairing:
    """Inverse of :func:`encode_pairing`; ValueError if it does not describe ``images``."""
    triples = decode_triples(raw)
    pairing: Pairing = []
    i = 0
    while i < len(triples):
        start, count, size = triples[i]
        i += 1
        if start < 0 or size < 0 or not 0 <= count <= MAX_LOADS or (start == 0) != (count == 0):
            raise ValueError("bad image pairing")
        loads = triples[i : i + count]
        i += count
        if len(loads) != count or any(v < 0 for load in loads for v in load):
            raise ValueError("bad load segment")
        pairing.append((start - 1, size, sorted(loads)) if start else None)
    if len(pairing) != images:
        raise ValueError("image pairing does not match the base")
    return pairing


def _adjust_all(
    base: bytes, images: list[Found], pairing: Pairing, segs: list[tuple[int, int, int]]
) -> bytes:
    out = bytearray(base)
    for img, pair in zip(images, pairing, strict=True):
        if pair is None:
            continue
        new_start, new_size, new_loads = pair
        # Only matches from this image into its new image: in a tar of similar libraries
        # bsdiff also matches across them, which would send references astray.
        old_end, new_end = img.start + img.image.size, new_start + new_size
        align = Alignment(
            [
                (o - img.start, n - new_start, x)
                for o, n, x in segs
                if img.start <= o < old_end and new_start <= n < new_end
            ]
        )
        data = base[img.start : old_end]
        adjust(out, img.start, data, img.image, img.refs, new_loads, align.map)
    return bytes(out)


def _pair(img: Found, new_images: list[Found], segs: list[tuple[int, int, int]]) -> Found | None:
    """The new image that received most of ``img``'s matched bytes."""
    votes = [0] * len(new_images)
    starts = [n.start for n in new_images]
    for o, n, x in segs:
        if img.start <= o < img.start + img.image.size:
            i = bisect.bisect_right(starts, n) - 1
            if i >= 0 and n < starts[i] + new_images[i].image.size:
                votes[i] += x
    best = max(range(len(votes)), key=votes.__getitem__)
    return new_images[best] if votes[best] else None


def diff(base: bytes, target: bytes) -> tuple[bytes, bytes, bytes, bytes] | None:
    """(image pairing, control, diff, extra) of the ELF method, or None if not applicable."""
    made = diff_both(base, target)
    return None if made is None else (made[0], made[1], made[2], made[4])


def diff_both(base: bytes, target: bytes) -> tuple[bytes, bytes, bytes, bytes, bytes] | None:
    """(image pairing, control, diff vs re-aimed base, diff vs base, extra), or None.

    None when either side holds no x86-64 ELF image. The control triples align the two
    units with the references of their images labelled (see :func:`_labelled`); the
    first diff stream is taken against the re-aimed base (:func:`adjusted_base`), the
    second against the base as it is: the same triples then make a plain bsdiff part,
    so one suffix sort yields both candidates.
    """
    old_images, new_images = find_images(base), find_images(target)
    if not old_images or not new_images:
        return None
    ctrl, _, _ = bsdiff4.core.diff(_labelled(base, old_images), _labelled(target, new_images))
    triples = decode_triples(ctrl)
    segs = _segments(triples)
    pairing: Pairing = []
    for img in old_images:
        match = _pair(img, new_images, segs)
        pairing.append(
            None if match is None else (match.start, match.image.size, match.image.loads)
        )
    adjusted = _adjust_all(base, old_images, pairing, segs)
    aimed, plain, extras = [], [], []
    old = new = 0
    for x, y, z in triples:
        wanted = target[new : new + x]
        aimed.append(_sub_bytes(wanted, adjusted[old : old + x]))
        plain.append(_sub_bytes(wanted, base[old : old + x]))
        extras.append(target[new + x : new + x + y])
        old += x + z
        new += x + y
    return (
        encode_pairing(pairing),
        ctrl,
        b"".join(aimed),
        b"".join(plain),
        b"".join(extras),
    )


def adjusted_base(base: bytes, pairing_raw: bytes, ctrl: bytes) -> bytes:
    """The base the ELF method's diff bytes apply to (the applier's half of :func:`diff`).

    Raises ValueError when the pairing does not fit the base's images.
    """
    images = find_images(base)
    pairing = decode_pairing(pairing_raw, len(images))
    return _adjust_all(base, images, pairing, _segments(decode_triples(ctrl)))
