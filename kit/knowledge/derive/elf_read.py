"""The shared libraries an ELF file needs (DT_NEEDED), from the first bytes of the file only.

A compiled kernel is hundreds of MB; its dynamic section usually lies after the code, out of reach of
a bounded prefix, while the dynamic string table (.dynstr, which holds the needed libraries' names)
lies in the first loadable segment, near the start. So, in order:

  "dynamic"       PT_DYNAMIC and the string table it points at lie within the prefix: the DT_NEEDED
                  entries, exactly.
  "section-scan"  the section headers lie within the prefix: the .dynstr section (sh_link of .dynsym)
                  scanned for library names; a superset only if a symbol were named like a library.
  "segment-scan"  neither: the first PT_LOAD segment (where linkers put .dynstr) scanned for
                  NUL-terminated strings that are library file names. `complete` says whether the
                  whole segment was in the prefix.

Only 64-bit little-endian ELF (x86_64, aarch64) is read.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field

PT_LOAD, PT_DYNAMIC = 1, 2
DT_NULL, DT_NEEDED, DT_STRTAB, DT_STRSZ = 0, 1, 5, 10
SHT_DYNSYM = 11
# A needed library as it appears in .dynstr: libfoo.so, libfoo.so.1, libcudart.so.12, ld-linux-x86-64.so.2
LIBRARY_NAME = re.compile(rb"^(?:lib[\w.+-]*|ld-linux[\w.-]*)\.so(?:\.\d+)*$")


class NotElf(Exception):
    """The bytes do not start a 64-bit little-endian ELF file."""


@dataclass
class Needed:
    needed: list[str] = field(default_factory=list)
    method: str = ""
    complete: bool = False

    def as_dict(self) -> dict:
        return {"needed": self.needed, "method": self.method, "complete": self.complete}


@dataclass(frozen=True)
class Header:
    segments: list[tuple[int, int, int, int]]  # (type, offset, vaddr, filesz)
    shoff: int
    shentsize: int
    shnum: int

    @property
    def dynamic(self) -> tuple[int, int] | None:
        return next(((off, size) for t, off, _, size in self.segments if t == PT_DYNAMIC), None)

    @property
    def first_load_end(self) -> int | None:
        return next((off + size for t, off, _, size in self.segments if t == PT_LOAD), None)

    def file_offset(self, vaddr: int) -> int | None:
        for t, off, va, size in self.segments:
            if t == PT_LOAD and va <= vaddr < va + size:
                return vaddr - va + off
        return None


def header(buf: bytes) -> Header | None:
    """The program headers, or None while the prefix is too short to hold them."""
    if len(buf) < 64:
        return None
    if buf[:4] != b"\x7fELF" or buf[4] != 2 or buf[5] != 1:
        raise NotElf("not a 64-bit little-endian ELF file")
    phoff, shoff = struct.unpack_from("<QQ", buf, 0x20)
    phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", buf, 0x36)
    if phoff + phnum * phentsize > len(buf):
        return None
    segs = []
    for i in range(phnum):
        p_type, _flags, off, vaddr, _paddr, filesz = struct.unpack_from("<IIQQQQ", buf, phoff + i * phentsize)
        segs.append((p_type, off, vaddr, filesz))
    return Header(segs, shoff, shentsize, shnum)


def _cstr(buf: bytes, at: int) -> str:
    end = buf.index(b"\0", at)
    return buf[at:end].decode("utf-8", "replace")


def from_dynamic(buf: bytes, h: Header) -> Needed | None:
    dyn = h.dynamic
    if dyn is None or dyn[0] + dyn[1] > len(buf):
        return None
    entries, strtab, strsz = [], None, None
    for pos in range(dyn[0], dyn[0] + dyn[1] - 15, 16):
        tag, val = struct.unpack_from("<qQ", buf, pos)
        if tag == DT_NULL:
            break
        if tag == DT_NEEDED:
            entries.append(val)
        elif tag == DT_STRTAB:
            strtab = h.file_offset(val)
        elif tag == DT_STRSZ:
            strsz = val
    if strtab is None or strsz is None or strtab + strsz > len(buf):
        return None
    return Needed([_cstr(buf, strtab + e) for e in entries], "dynamic", True)


def _scan(region: bytes) -> list[str]:
    names = {s.decode() for s in region.split(b"\0") if LIBRARY_NAME.match(s)}
    return sorted(names)


def from_sections(buf: bytes, h: Header) -> Needed | None:
    if h.shnum == 0 or h.shoff + h.shnum * h.shentsize > len(buf):
        return None
    sections = [struct.unpack_from("<IIQQQQI", buf, h.shoff + i * h.shentsize) for i in range(h.shnum)]
    for _name, sh_type, _flags, _addr, _off, _size, link in sections:
        if sh_type == SHT_DYNSYM and link < len(sections):
            off, size = sections[link][4], sections[link][5]
            if off + size <= len(buf):
                return Needed(_scan(buf[off : off + size]), "section-scan", True)
    return None


def needed(buf: bytes, whole: bool) -> Needed:
    """What a prefix of an ELF file shows of its DT_NEEDED (whole: buf is the entire file)."""
    h = header(buf)
    if h is None:
        raise NotElf("the prefix is too short to hold the program headers")
    found = from_dynamic(buf, h) or from_sections(buf, h)
    if found:
        return found
    end = h.first_load_end or len(buf)
    return Needed(_scan(buf[:end]), "segment-scan", whole or end <= len(buf))


def enough(buf: bytes, dynamic_reach: int) -> bool:
    """Whether a growing prefix already answers: the dynamic section (if it lies within dynamic_reach)
    and its string table are in, or (if it lies beyond) the first loadable segment is."""
    try:
        h = header(buf)
    except NotElf:
        return True
    if h is None:
        return False
    dyn = h.dynamic
    if dyn is not None and dyn[0] + dyn[1] <= dynamic_reach:
        return from_dynamic(buf, h) is not None
    end = h.first_load_end
    return end is not None and end <= len(buf)
