"""Read a wheel (a zip) on a web server through HTTP range requests, never the whole file.

The zip format puts its directory at the end: the end-of-central-directory record (and, for big
archives, the zip64 record and locator) gives where the central directory lies; each central entry
gives a member's compression, sizes and the offset of its local header; the member's bytes follow that
local header. So a member's first blocks cost: one tail read, one directory read (often inside the
tail), and a few ranges from the local header on, decompressed incrementally.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from .fetch import Fetcher

TAIL = 64 * 1024
CHUNK = 1024 * 1024
STORED, DEFLATED = 0, 8


class ZipFormatError(Exception):
    """The bytes are not the zip this module expects."""


@dataclass(frozen=True)
class Member:
    name: str
    method: int
    compressed_size: int
    size: int
    header_offset: int


def _zip64_extra(extra: bytes, csize: int, usize: int, offset: int) -> tuple[int, int, int]:
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, pos)
        body = extra[pos + 4 : pos + 4 + length]
        if tag == 0x0001:
            vals = list(struct.unpack_from(f"<{len(body) // 8}Q", body))
            if usize == 0xFFFFFFFF and vals:
                usize = vals.pop(0)
            if csize == 0xFFFFFFFF and vals:
                csize = vals.pop(0)
            if offset == 0xFFFFFFFF and vals:
                offset = vals.pop(0)
        pos += 4 + length
    return csize, usize, offset


def _entry(data: bytes, pos: int) -> tuple[Member, int]:
    """The central-directory entry at pos, and where the next one starts."""
    method = struct.unpack_from("<H", data, pos + 10)[0]
    csize, usize = struct.unpack_from("<II", data, pos + 20)
    nlen, elen, clen = struct.unpack_from("<HHH", data, pos + 28)
    offset = struct.unpack_from("<I", data, pos + 42)[0]
    name = data[pos + 46 : pos + 46 + nlen].decode("utf-8", "replace")
    extra = data[pos + 46 + nlen : pos + 46 + nlen + elen]
    csize, usize, offset = _zip64_extra(extra, csize, usize, offset)
    return Member(name, method, csize, usize, offset), pos + 46 + nlen + elen + clen


def parse_central_directory(data: bytes) -> dict[str, Member]:
    members: dict[str, Member] = {}
    pos = 0
    while pos + 46 <= len(data) and data[pos : pos + 4] == b"PK\x01\x02":
        m, pos = _entry(data, pos)
        members[m.name] = m
    return members


def locate_central_directory(tail: bytes, tail_start: int) -> tuple[int, int]:
    """(offset, size) of the central directory, from the last bytes of the archive."""
    at = tail.rfind(b"PK\x05\x06")
    if at < 0:
        raise ZipFormatError("no end-of-central-directory record in the last bytes")
    cd_size, cd_offset = struct.unpack_from("<II", tail, at + 12)
    if cd_offset == 0xFFFFFFFF or cd_size == 0xFFFFFFFF:
        loc = at - 20
        if loc < 0 or tail[loc : loc + 4] != b"PK\x06\x07":
            raise ZipFormatError("zip64 archive without its locator")
        rec = struct.unpack_from("<Q", tail, loc + 8)[0] - tail_start
        if rec < 0 or tail[rec : rec + 4] != b"PK\x06\x06":
            raise ZipFormatError("zip64 end record outside the tail read")
        cd_size, cd_offset = struct.unpack_from("<QQ", tail, rec + 40)
    return cd_offset, cd_size


class RemoteZip:
    """The members of a zip at url (size bytes long), read by range requests through fetcher."""

    def __init__(self, fetcher: Fetcher, url: str, size: int):
        self.fetcher, self.url, self.size = fetcher, url, size
        self._members: dict[str, Member] | None = None
        self._tail_bytes: tuple[bytes, int] | None = None
        self._known: dict[str, Member] = {}

    def _tail(self) -> tuple[bytes, int]:
        if self._tail_bytes is None:
            start = max(0, self.size - TAIL)
            self._tail_bytes = (self.fetcher.range(self.url, start, self.size), start)
        return self._tail_bytes

    def members(self) -> dict[str, Member]:
        if self._members is None:
            tail, start = self._tail()
            cd_offset, cd_size = locate_central_directory(tail, start)
            if cd_offset >= start:
                cd = tail[cd_offset - start : cd_offset - start + cd_size]
            else:
                cd = self.fetcher.range(self.url, cd_offset, cd_offset + cd_size)
            self._members = parse_central_directory(cd)
        return self._members

    def find_in_tail(self, pattern: re.Pattern[str]) -> Member | None:
        """A member whose central-directory entry lies in the tail already read (wheels write their
        .dist-info last), found without reading the whole directory; None if not there."""
        tail, _ = self._tail()
        at = tail.find(b"PK\x01\x02")
        while 0 <= at <= len(tail) - 46:
            m, _ = _entry(tail, at)
            if pattern.match(m.name) and m.header_offset + m.compressed_size <= self.size:
                self._known[m.name] = m
                return m
            at = tail.find(b"PK\x01\x02", at + 4)
        return None

    def stream(self, name: str, cap: int) -> Iterator[bytes]:
        """The member's decompressed bytes, chunk by chunk, downloading at most cap compressed bytes."""
        m = self._known.get(name) or self.members()[name]
        if m.method not in (STORED, DEFLATED):
            raise ZipFormatError(f"{name}: compression method {m.method} is not read here")
        head = self.fetcher.range(self.url, m.header_offset, min(self.size, m.header_offset + 30 + 1024 + min(m.compressed_size, cap, CHUNK)))
        if head[:4] != b"PK\x03\x04" or head[30 : 30 + len(name.encode())] != name.encode():
            raise ZipFormatError(f"{name}: no local header at {m.header_offset}")
        nlen, elen = struct.unpack_from("<HH", head, 26)
        data_start = m.header_offset + 30 + nlen + elen
        end = data_start + min(m.compressed_size, cap)
        inflate = zlib.decompressobj(-15) if m.method == DEFLATED else None
        pos = data_start
        chunk = head[30 + nlen + elen :][: end - pos]
        while True:
            pos += len(chunk)
            if chunk:
                out = inflate.decompress(chunk) if inflate else chunk
                if out:
                    yield out
            if pos >= end or not chunk:
                return
            chunk = self.fetcher.range(self.url, pos, min(end, pos + CHUNK))

    def read(self, name: str, cap: int = 4 * 1024 * 1024) -> bytes:
        """A small member whole (a wheel's METADATA)."""
        return b"".join(self.stream(name, cap))
