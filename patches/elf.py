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
import hashlib
import re
import struct
import zlib
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from itertools import chain, compress, repeat, starmap
from operator import add, itemgetter, lt
from re import Match

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


_U32, _U64 = struct.Struct("<I"), struct.Struct("<Q")
_TWO_U32 = _WIDE = struct.Struct("<II")
_RELA = struct.Struct("<QQ8x")  # r_offset, r_info (r_addend skipped)


def _scanner(prefix: bytes) -> re.Pattern[bytes]:
    """A pattern for an instruction prefix followed by a 4-byte field (not consumed)."""
    return re.compile(prefix + b"(?=....)", re.DOTALL)


# The candidates by class: (pattern, translation table or None, bytes before the field,
# bytes from the field to the instruction's end, whether a branch). Patterns with a
# literal first byte scan fast; the other one-byte opcodes followed by a RIP ModRM are
# found in a copy of the code translated to opcode class (1, 3, 4) and ModRM (2) bytes.
# No class's match can start inside another match of the same class, so finditer finds
# them all; where classes overlap, the leftmost one found in the data is taken.
def _table(classes: dict[int, bytes]) -> bytes:
    table = bytearray(256)
    for code, chars in classes.items():
        for c in chars:
            table[c] = code
    return bytes(table)


_OPS_IMM8 = bytes(sorted(_IMM8))
_OPS_IMM32 = bytes(sorted(_IMM32))
_OPS_PLAIN = bytes(c for c in _OPS1 if c not in _IMM8 and c not in _IMM32 and c != 0x8D)
_OPCODES = _table({1: _OPS_IMM8, 3: _OPS_IMM32, 4: _OPS_PLAIN, 2: _MODRM_RIP})
_CLASSES = (
    (_scanner(b"\\xe8"), None, 1, 4, True),  # call
    (_scanner(b"\\xe9"), None, 1, 4, True),  # jmp
    (_scanner(b"\\x0f[\\x80-\\x8f]"), None, 2, 4, True),  # jcc
    (_scanner(b"\\x0f" + _class(_OPS2) + _class(_MODRM_RIP)), None, 3, 4, False),
    (_scanner(b"\\x8d" + _class(_MODRM_RIP)), None, 2, 4, False),  # lea
    (_scanner(b"\\x01\\x02"), _OPCODES, 2, 5, False),  # an imm8 after the field
    (_scanner(b"\\x03\\x02"), _OPCODES, 2, 8, False),  # an imm32 after the field
    (_scanner(b"\\x04\\x02"), _OPCODES, 2, 4, False),
)
_LEA = 4
_PLEN = [c[2] for c in _CLASSES]
_TAIL = [c[3] for c in _CLASSES]


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
    return _scan(data, image)[0]


# Bytes a field of each kind covers.
_WIDTH = (4, 8, 4, 8, 4)
_WIDE_KINDS = (ABS64, OFF64)
# The references of an image, one list per kind (indexed by kind), each in file order.
Kinds = list[list[Ref]]


def _scan(data: bytes, image: Image) -> tuple[list[Ref], Kinds]:
    """:func:`references`, and the same references split by kind."""
    kinds: Kinds = [[] for _ in _WIDTH]
    rel32, abs64, datarel32, _, index32 = kinds
    leas: set[int] = set()
    _header_refs(image, kinds)
    code = _merged([(s.addr, s.addr + s.size) for s in image.sections if s.flags & _SHF_EXECINSTR])
    spans = _merged([(v, v + size) for _, v, size in image.loads])
    v2o = _v2o_map(image.loads)
    for sec in image.sections:
        if sec.type == 8 or not sec.size:
            continue
        if sec.flags & _SHF_EXECINSTR:
            _code_refs(data, sec, code, spans, rel32, leas)
            if sec.name == b".plt":  # lazy stubs push their own index
                for p in range(sec.offset + 16, sec.offset + sec.size - 15, 16):
                    if data[p + 6] == 0x68:
                        index32.append((p + 7, INDEX32, (sec.offset + 16) * 64 + 16))
        elif sec.type == _SHT_RELA:
            _rela_refs(data, image, sec, v2o, kinds)
        elif sec.type in (_SHT_SYMTAB, _SHT_DYNSYM):
            abs64 += zip(
                range(sec.offset + 8, sec.offset + sec.size - 15, 24), repeat(ABS64), repeat(0)
            )
        elif sec.name == b".dynamic":
            for p in range(sec.offset, sec.offset + sec.size - 15, 16):
                if struct.unpack_from("<q", data, p)[0] in _DT_PTRS:
                    abs64.append((p + 8, ABS64, 0))
        elif sec.name == b".eh_frame_hdr":
            _eh_frame_hdr_refs(data, sec, rel32, datarel32)
        elif sec.name == b".eh_frame":
            _eh_frame_refs(data, sec, rel32)
    _jump_table_refs(data, image, code, leas, datarel32)
    for refs in kinds:
        refs.sort()
    # Drop overlaps (a relocated pointer inside a scanned code range, ...): left to right,
    # a reference is kept when it starts after the last one kept and ends inside the data.
    every = sorted(chain.from_iterable(kinds))
    fields = list(map(itemgetter(0), every))
    stops = list(map(add, fields, map(_WIDTH.__getitem__, map(itemgetter(1), every))))
    dropped = _overlapping(fields, stops, len(data))
    if dropped:
        gone = Counter(every[i] for i in dropped)
        for k, refs in enumerate(kinds):
            if any(r[1] == k for r in gone):
                kinds[k] = _without(refs, gone)
        keep = bytearray(b"\x01") * len(every)
        for i in dropped:
            keep[i] = 0
        every = list(compress(every, keep))
    return every, kinds


def _without(refs: list[Ref], gone: Counter[Ref]) -> list[Ref]:
    """``refs`` less as many copies of each reference as ``gone`` counts."""
    out = []
    for ref in refs:
        if gone[ref] > 0:
            gone[ref] -= 1
        else:
            out.append(ref)
    return out


def _overlapping(starts: list[int], stops: list[int], limit: int) -> list[int]:
    """Indices of the intervals dropped when, left to right (``starts`` ascending), one is
    kept if it starts at or after the stop of the last one kept and stops by ``limit``.

    Only the intervals that overlap their predecessor or pass ``limit`` can be dropped, so
    the walk jumps from one of those to the next (real images have few).
    """
    n = len(starts)
    suspects = sorted(
        {
            *compress(range(1, n), map(lt, starts[1:], stops)),
            *(i for i in range(bisect.bisect_left(starts, limit - 8), n) if stops[i] > limit),
        }
    )
    dropped: list[int] = []
    end = pos = 0  # the stop of the last interval kept; everything before pos is decided
    for first in suspects:
        if first < pos:
            continue
        if first > pos:  # pos .. first-1 overlap nothing: all kept
            end = stops[first - 1]
        i = first
        while i < n:
            if starts[i] >= end and stops[i] <= limit:
                end = stops[i]
                i += 1
                break
            dropped.append(i)
            i += 1
        pos = i
    return dropped


def _header_refs(image: Image, kinds: Kinds) -> None:
    abs64, off64 = kinds[ABS64], kinds[OFF64]
    abs64.append((24, ABS64, 0))  # e_entry
    off64 += [(32, OFF64, 0), (40, OFF64, 0)]  # e_phoff, e_shoff
    for i in range(image.phnum):
        p = image.phoff + 56 * i
        off64.append((p + 8, OFF64, 0))
        abs64 += [(p + 16, ABS64, 0), (p + 24, ABS64, 0)]
    for i in range(len(image.sections)):
        p = image.shoff + 64 * i
        abs64.append((p + 16, ABS64, 0))
        off64.append((p + 24, OFF64, 0))


def _merged(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Ranges with gaps of up to 64 bytes (alignment padding) closed."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 64:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _values(fmt: struct.Struct, data: bytes, fields: list[int]) -> list[int]:
    """The integer (``fmt``: one little-endian field) at each offset."""
    unpack = fmt.unpack_from
    return [unpack(data, f)[0] for f in fields]


_int32s = partial(_values, _INT32)
_uint32s = partial(_values, struct.Struct("<I"))
_uint64s = partial(_values, struct.Struct("<Q"))


def _code_refs(
    data: bytes,
    sec: _Section,
    code: list[tuple[int, int]],
    spans: list[tuple[int, int]],
    refs: list[Ref],
    leas: set[int],
) -> None:
    """rel32 branches and RIP-relative operands; ``leas`` gets the targets of ``lea``s.

    ``code`` and ``spans`` are the image's merged executable sections and load segments.
    Leftmost first, a candidate instruction (see :data:`_CLASSES`) whose target lands in
    the image (a branch's: in code) is taken, and the scan resumes after its field. Every
    candidate is found and checked at once per class; only the taking is sequential.
    """
    base = sec.addr - sec.offset  # field vaddr = file offset + base
    lowest, highest = spans[0][0], spans[-1][1]
    # Inside merged ranges (sorted, apart) = an odd number of their bounds at or below.
    # A single range is not checked (it was not, and patches depend on what is found).
    code_bounds = [x for r in code for x in r] if len(code) > 1 else [lowest, highest]
    span_bounds = [x for r in spans for x in r]
    lo, hi = sec.offset, sec.offset + sec.size
    unpack, inside = _INT32.unpack_from, bisect.bisect_right
    keys: list[int] = []  # instruction start * 8 + class, of the candidates that hold
    translated = b""
    for cls, (pattern, table, plen, tail, branch) in enumerate(_CLASSES):
        if table is None:
            fields = list(map(Match.end, pattern.finditer(data, lo, hi)))
        else:  # scanned in a translated copy of the section
            translated = translated or data[lo:hi].translate(table)
            fields = list(map(add, map(Match.end, pattern.finditer(translated)), repeat(lo)))
        bounds = code_bounds if branch else span_bounds
        c, d = base + tail, cls - (plen << 3)
        keys += [
            (f << 3) + d
            for f in fields
            if lowest <= (t := f + c + unpack(data, f)[0]) < highest and inside(bounds, t) & 1
        ]
    keys.sort()
    pos = 0  # the end of the last field taken
    append = refs.append
    for key in keys:
        start = key >> 3
        if start >= pos:
            cls = key & 7
            field = start + _PLEN[cls]
            append((field, REL32, _TAIL[cls]))
            if cls == _LEA:
                leas.add(field + base + 4 + unpack(data, field)[0])
            pos = field + 4


def _jump_table_refs(
    data: bytes, image: Image, code: list[tuple[int, int]], leas: set[int], refs: list[Ref]
) -> None:
    """Switch jump tables: int32 entries, each a code address relative to the table start.

    Position-independent code loads a table's address with ``lea`` and adds the entry
    to it; the table (in .rodata) changes whenever code inside the function moves
    (libexpat's tokenizer: ~4,800 changed bytes of its patch). A table is taken to be
    the run of entries from a ``lea`` target for which table + entry lands in code.
    """
    bounds = [x for r in code for x in r]
    inside = bisect.bisect_right
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
        shift = sec.offset - sec.addr
        while at + 4 <= stop and at - table < (_MAX_TABLE << 2):
            if not inside(bounds, table + unpack(data, at + shift)[0]) & 1:
                break
            refs.append((at + shift, DATAREL32, table))
            at += 4


def _rela_refs(data: bytes, image: Image, sec: _Section, v2o: _Map, kinds: Kinds) -> None:
    symtab = image.sections[sec.link].offset if 0 < sec.link < len(image.sections) else 0
    abs64 = kinds[ABS64]
    first, count = sec.offset, sec.size // 24
    places = range(first, first + 24 * count, 24)
    entries = list(_RELA.iter_unpack(data[first : first + 24 * count]))
    abs64 += zip(places, repeat(ABS64), repeat(0))
    if symtab:  # the symbol index: symbols get inserted too
        param = symtab * 64 + 24
        kinds[INDEX32] += [
            (p + 12, INDEX32, param)
            for p, (_, info) in zip(places, entries, strict=True)
            if info >> 32
        ]
    abs64 += [
        (p + 16, ABS64, 0)
        for p, (_, info) in zip(places, entries, strict=True)
        if info & 0xFFFFFFFF in (_R_RELATIVE, _R_IRELATIVE)
    ]
    # The pointer relocated, when it lies in the file part of a load (and in the data).
    ends = _file_ends(image.loads)
    size = len(data)
    abs64 += [
        (w, ABS64, 0)
        for w in v2o.many(list(map(itemgetter(0), entries)))
        if w < _UNDEF and w + 8 <= min(size, ends(w))
    ]


def _file_ends(loads: list[Load]) -> Callable[[int], int]:
    """For a file offset: the end of the first load (by offset) holding it, else 0."""
    points = sorted({p for o, _, size in loads for p in (o, o + size)})
    ends = [0] + [next((o + s for o, _, s in loads if o <= p < o + s), 0) for p in points]
    return lambda x: ends[bisect.bisect_right(points, x)]


def _eh_frame_hdr_refs(data: bytes, sec: _Section, rel32: list[Ref], datarel32: list[Ref]) -> None:
    # version 1, eh_frame_ptr pcrel|sdata4, fde_count udata4, table datarel|sdata4
    if sec.size < 12 or data[sec.offset : sec.offset + 4] != b"\x01\x1b\x03\x3b":
        return
    rel32.append((sec.offset + 4, REL32, 0))
    count = struct.unpack_from("<I", data, sec.offset + 8)[0]
    count = min(count, (sec.size - 12) // 8)
    first = sec.offset + 12
    datarel32 += zip(range(first, first + 4 * (2 * count), 4), repeat(DATAREL32), repeat(sec.addr))


def _eh_frame_refs(data: bytes, sec: _Section, rel32: list[Ref]) -> None:
    # Each FDE's pc_begin, assumed pcrel|sdata4 (what GCC and Clang emit on x86-64).
    p, end = sec.offset, sec.offset + sec.size
    unpack = _TWO_U32.unpack_from
    while p + 12 <= end:
        length, cie = unpack(data, p)
        if length == 0 or length == 0xFFFFFFFF:
            break
        if cie:
            rel32.append((p + 8, REL32, 0))
        p += 4 + length


# A piecewise shift (see _Map) is undefined where its shift is _NONE: the values it yields
# there are at least _UNDEF, beyond any field's range, and stay so through later shifts
# (every real shift is below 2**66 in size), so "undefined" needs no test per value.
_NONE = 1 << 100
_UNDEF = 1 << 99


class _Map:
    """x -> x + shifts[bisect_right(bounds, x)] for every integer x (len(shifts) = len(bounds) + 1).

    The address maps (file offset <-> virtual address, old offset -> new offset) are
    all of this form, and so are their compositions (:meth:`then`): a list of values
    goes through one in a few C-level passes (:meth:`many`, :meth:`ascending`).
    """

    __slots__ = ("bounds", "shifts")

    def __init__(self, bounds: list[int], shifts: list[int]) -> None:
        self.bounds, self.shifts = bounds, shifts

    def __call__(self, x: int) -> int:
        return x + self.shifts[bisect.bisect_right(self.bounds, x)]

    def many(self, xs: list[int]) -> list[int]:
        """The map of each of ``xs``."""
        bounds, shifts, find = self.bounds, self.shifts, bisect.bisect_right
        return [x + shifts[find(bounds, x)] for x in xs]

    def ascending(self, xs: list[int]) -> list[int]:
        """The map of each of ``xs`` (sorted): one bisection per piece, not per value."""
        out: list[int] = []
        lo = 0
        for shift, bound in zip(self.shifts, self.bounds, strict=False):
            hi = bisect.bisect_left(xs, bound, lo)
            out += map(add, xs[lo:hi], repeat(shift))
            lo = hi
        out += map(add, xs[lo:], repeat(self.shifts[-1]))
        return out

    def then(self, after: _Map) -> _Map:
        """``after`` applied to this map's results."""
        fb, fs, gb, gs = self.bounds, self.shifts, after.bounds, after.shifts
        bounds: list[int] = []
        shifts: list[int] = []
        for j, s in enumerate(fs):
            if j:
                bounds.append(fb[j - 1])
            if s >= _UNDEF:
                shifts.append(_NONE)
                continue
            # after's pieces met by [fb[j-1], fb[j]) shifted by s
            k = bisect.bisect_right(gb, fb[j - 1] + s) if j else 0
            stop = bisect.bisect_left(gb, fb[j] + s) if j < len(fb) else len(gb)
            shifts.append(_NONE if gs[k] >= _UNDEF else gs[k] + s)
            for c in range(k, stop):
                bounds.append(gb[c] - s)
                shifts.append(_NONE if gs[c + 1] >= _UNDEF else gs[c + 1] + s)
        return _Map(bounds, shifts)


def _o2v_map(loads: list[Load]) -> _Map:
    """Virtual address of a file offset, for one list of loads (sorted, not empty):
    through the last load starting at or before it (the first load before any)."""
    shifts = [v - o for o, v, _ in loads]
    return _Map([o for o, _, _ in loads], [shifts[0], *shifts])


def _v2o_map(loads: list[Load]) -> _Map:
    """File offset of a virtual address, for one list of loads (the last containing load
    wins; past the file part too: .bss maps after .data); undefined outside loads."""
    spans = [(v, v + size, o - v) for o, v, size in reversed(loads)]
    points = sorted({p for lo, hi, _ in spans for p in (lo, hi)})
    shifts = [_NONE]
    for p in points:
        shifts.append(next((s for lo, hi, s in spans if lo <= p < hi), _NONE))
    return _Map(points, shifts)


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
        # Before the first match: undefined.
        self.as_map = _Map(starts, [_NONE, *deltas])

    def map(self, offset: int) -> int | None:
        """Where ``offset`` went (outside matches: as the nearest match before it moved)."""
        i = bisect.bisect_right(self._starts, offset) - 1
        return None if i < 0 else offset + self._deltas[i]


_I32_LO, _I32_HI = -(1 << 31), 1 << 31


def adjust(
    out: bytearray,
    at: int,
    data: bytes,
    image: Image,
    kinds: Kinds,
    new_loads: list[Load],
    align: Alignment,
) -> None:
    """Rewrite the fields of ``data`` (an image at ``out[at:]``) to where their targets moved.

    ``align`` maps an offset in the old image to an offset in the new one. A field whose
    new value is undefined (its target is outside the old loads or before any match) is
    left as it is; one whose new value is out of its range is zeroed (what this did when
    it let ``struct.pack_into`` fail: CPython clears the bytes first, and patches made
    then rely on it).
    """
    al, new_o2v = align.as_map, _o2v_map(new_loads)
    moved = _v2o_map(image.loads).then(al).then(new_o2v)  # old vaddr -> new vaddr
    bounds, shifts, find = moved.bounds, moved.shifts, bisect.bisect_right
    u, lo32, hi32 = _UNDEF, _I32_LO, _I32_HI
    get32, put32 = _INT32.unpack_from, _INT32.pack_into
    get64, put64 = _U64.unpack_from, _U64.pack_into
    # REL32: moved target - (new vaddr of the field + param)
    fields, params = _split(kinds[REL32])
    old_vaddrs = _o2v_map(image.loads).ascending(fields)
    heres = al.then(new_o2v).ascending(fields)
    for f, p, o, h in zip(fields, params, old_vaddrs, heres, strict=True):
        v = get32(data, f)[0]
        x = o + p + v
        t = x + shifts[find(bounds, x)]
        if t < u and h < u and (n := t - h - p) != v:
            put32(out, at + f, n if lo32 <= n < hi32 else 0)
    # ABS64: the moved address (0 stays 0)
    for f, _, _ in kinds[ABS64]:
        v = get64(data, f)[0]
        if v and (n := v + shifts[find(bounds, v)]) < u and n != v:
            put64(out, at + f, n if 0 <= n < 1 << 64 else 0)
    # OFF64: the aligned offset (0 stays 0)
    for f, _, _ in kinds[OFF64]:
        v = get64(data, f)[0]
        if v and (n := al(v)) < u and n != v:
            put64(out, at + f, n if 0 <= n < 1 << 64 else 0)
    # DATAREL32: moved target - moved table base
    for f, _, p in kinds[DATAREL32]:
        v = get32(data, f)[0]
        b = p + shifts[find(bounds, p)]
        x = p + v
        t = x + shifts[find(bounds, x)]
        if t < u and b < u and (n := t - b) != v:
            put32(out, at + f, n if lo32 <= n < hi32 else 0)
    # INDEX32: the distance between the aligned table and entry, in entries
    changes = []
    for field, param in zip(*_split(kinds[INDEX32]), strict=True):
        value = _U32.unpack_from(data, field)[0]
        table, size = param >> 6, param & 63
        if size:
            new_table, new_entry = al(table), al(table + value * size)
            if new_table < u and new_entry < u:
                new = (new_entry - new_table) // size
                if new != value:
                    changes.append((at + field, new if 0 <= new < 1 << 32 else 0))
    _write(_U32, out, changes)


def _split(refs: list[Ref]) -> tuple[list[int], list[int]]:
    """The fields and the params of some references."""
    return list(map(itemgetter(0), refs)), list(map(itemgetter(2), refs))


def _write(fmt: struct.Struct, out: bytearray, changes: list[tuple[int, int]]) -> None:
    """Pack each (offset, value) of ``changes`` into ``out``."""
    deque(starmap(partial(fmt.pack_into, out), changes), 0)


@dataclass(frozen=True)
class Found:
    """An ELF image inside a unit (a whole file, or a member of a tar)."""

    start: int
    image: Image
    kinds: Kinds  # its references, by kind (see _scan)


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
        body = data if start == 0 and image.size == len(data) else data[start : start + image.size]
        found.append(Found(start, image, _scan(body, image)[1]))
        pos = start + image.size
    return found


def _targets(data: bytes, image: Image, kinds: Kinds) -> list[tuple[list[int], list[int]]]:
    """Per kind: the fields of the references and the file offsets they point to (at or
    above _UNDEF: outside the loads)."""
    o2v, v2o = _o2v_map(image.loads), _v2o_map(image.loads)
    fields, params = _split(kinds[REL32])
    vaddrs = map(add, map(add, o2v.ascending(fields), params), _int32s(data, fields))
    out = [(fields, v2o.many(list(vaddrs)))]
    fields = list(map(itemgetter(0), kinds[ABS64]))
    out.append((fields, v2o.many(_uint64s(data, fields))))
    fields, params = _split(kinds[DATAREL32])
    out.append((fields, v2o.many(list(map(add, params, _int32s(data, fields))))))
    fields = list(map(itemgetter(0), kinds[OFF64]))
    out.append((fields, _uint64s(data, fields)))
    fields, params = _split(kinds[INDEX32])
    values = _uint32s(data, fields)
    out.append((fields, [(p >> 6) + v * (p & 63) for p, v in zip(params, values, strict=True)]))
    return out


def _slot_names(data: bytes, image: Image) -> dict[int, bytes]:
    """File offset of each relocated slot naming a symbol -> a digest of the symbol's name.

    GOT and PLT slots are otherwise indistinguishable (zeros), so a library that imports
    one more function would have all its PLT calls aligned one stub off.
    """
    found: dict[int, bytes] = {}
    secs = image.sections
    v2o = _v2o_map(image.loads)
    names: dict[int, bytes] = {}
    for sec in secs:
        if sec.type != _SHT_RELA or not 0 < sec.link < len(secs):
            continue
        symtab = secs[sec.link]
        if not 0 < symtab.link < len(secs):
            continue
        strtab = secs[symtab.link]
        names.clear()
        count = sec.size // 24
        entries = list(_RELA.iter_unpack(data[sec.offset : sec.offset + 24 * count]))
        wheres = v2o.many(list(map(itemgetter(0), entries)))
        for (_, r_info), where in zip(entries, wheres, strict=True):
            sym = r_info >> 32
            if not sym or where >= _UNDEF or (sym + 1) * 24 > symtab.size:
                continue
            name = names.get(sym)
            if name is None:
                at = strtab.offset + _U32.unpack_from(data, symtab.offset + 24 * sym)[0]
                text = data[at : at + 256].split(b"\0", 1)[0]
                name = names[sym] = zlib.crc32(text).to_bytes(4, "little") * 2
            found[where] = name
    return found


def _labelled(data: bytes, images: list[Found]) -> bytes:
    """``data`` with each reference replaced by a digest of what it points to.

    Two versions' images then agree wherever code is the same and calls the same
    (unchanged) code, however far it moved; zeros alone would make tables of
    references (.eh_frame_hdr, the PLT, .got.plt) all alike and misalign them.
    The digest is the CRC-32 of 16 bytes at the target, with every field zeroed and
    relocated slots named (a slot's symbol name says more than its value).
    """
    zeroed = bytearray(data)
    # struct.pack_into writes a field several times faster than a slice assignment.
    for img in images:
        start = img.start
        for kind, refs in enumerate(img.kinds):
            clear = _U64.pack_into if kind in _WIDE_KINDS else _U32.pack_into
            for field, _, _ in refs:
                clear(zeroed, start + field, 0)
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
        body = data if start == 0 and size == len(data) else data[start : start + size]
        for kind, (fields, targets) in enumerate(_targets(body, img.image, img.kinds)):
            wide = kind in _WIDE_KINDS
            for field, target in zip(fields, targets, strict=True):
                at = start + field
                if 0 <= target < size and at not in named:
                    t = start + target
                    label = crc(zeroed[t : t + 16])
                    if wide:  # the digest twice
                        _WIDE.pack_into(out, at, label, label)
                    else:
                        _U32.pack_into(out, at, label)
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
        adjust(out, img.start, data, img.image, img.kinds, new_loads, align)
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


def diff_both(base: bytes, target: bytes) -> tuple[bytes, bytes, bytes, bytes, bytes, bytes] | None:
    """(image pairing, control, diff vs re-aimed base, diff vs base, extra, re-aimed
    base), or None.

    None when either side holds no x86-64 ELF image. The control triples align the two
    units with the references of their images labelled (see :func:`_labelled`); the
    first diff stream is taken against the re-aimed base (:func:`adjusted_base`), the
    second against the base as it is: the same triples then make a plain bsdiff part,
    so one suffix sort yields both candidates.

    The re-aimed base is what :func:`adjusted_base` gives for the returned pairing and
    control bytes: the pairing is decoded from its own encoding first, so the two run
    the same code on the same inputs (the creator's self-check relies on it, see
    :func:`aimed_key`).
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
    pairing_raw = encode_pairing(pairing)
    adjusted = _adjust_all(base, old_images, decode_pairing(pairing_raw, len(old_images)), segs)
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
        pairing_raw,
        ctrl,
        b"".join(aimed),
        b"".join(plain),
        b"".join(extras),
        adjusted,
    )


def aimed_key(base: bytes, pairing_raw: bytes, ctrl: bytes) -> bytes:
    """A digest naming the inputs of :func:`adjusted_base`.

    The creator keeps the re-aimed bases it computed under this key, and checking its
    own patch then reuses them instead of re-aiming every image a second time.
    """
    h = hashlib.sha256()
    for part in (base, pairing_raw, ctrl):
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.digest()


def adjusted_base(base: bytes, pairing_raw: bytes, ctrl: bytes) -> bytes:
    """The base the ELF method's diff bytes apply to (the applier's half of :func:`diff`).

    Raises ValueError when the pairing does not fit the base's images.
    """
    images = find_images(base)
    pairing = decode_pairing(pairing_raw, len(images))
    return _adjust_all(base, images, pairing, _segments(decode_triples(ctrl)))
