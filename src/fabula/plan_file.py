"""The plan file: every card planned, one JSON line each, in plan order.

A folder holds ``plan.jsonl.gz``: gzip members (RFC 1952) one after another,
one a commit of plan lines, each holding whole lines. ``zcat``, ``gzip.open``
and pandas read it as one stream. A card's line is ~3.9 KB of JSON and ~1.1 KB
compressed (zlib level 1, 32 cards a member: 3.6x; one card alone: 2.7x), so
at 10^6 cards the plan is ~1 GB, not 3.9 GB.

Each member's header carries an extra field ``FB`` holding the member's whole
size in bytes (as BGZF's blocks carry theirs), so a reader steps from member to
member and starts at any member; a writer killed mid-append leaves a last
member shorter than its size says, or one whose CRC fails, and that member is
cut like a torn JSONL line. The header's first 16 bytes are always the same,
so the last whole member is found from the file's end.

Folders written before hold ``plan.jsonl`` (plain lines): they are read and
appended as they are. A position (``pos``) is a byte offset where whole lines
start: a line's start in plan.jsonl, a member's start in plan.jsonl.gz.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path
from typing import Any, Generator, Iterator

from fabula.errors import StoreError

PLAN = "plan.jsonl"  # folders written before the plan was compressed
PLAN_GZ = "plan.jsonl.gz"
LEVEL = 1  # zlib level: 40 us a card; level 6 packs 20 % tighter for 3x the time
# ID1 ID2 CM=deflate FLG=FEXTRA, MTIME 0, XFL 0, OS unknown, XLEN 8, subfield "FB" of 4 bytes
_SIG = b"\x1f\x8b\x08\x04\x00\x00\x00\x00\x00\xff\x08\x00FB\x04\x00"
HEAD = len(_SIG) + 4  # then the member's size, uint32 little-endian
MAX_MEMBER = 1 << 30  # bytes of lines a member holds at most (the size field is 32 bits)


def plan_path(root: Path) -> Path:
    """The plan file of a folder: plan.jsonl.gz, or plan.jsonl where an older folder holds one."""
    gz = root / PLAN_GZ
    return root / PLAN if not gz.exists() and (root / PLAN).exists() else gz


def is_gz(path: Path) -> bool:
    return path.name.endswith(".gz")


def member(data: bytes) -> bytes:
    """One gzip member holding ``data`` (whole lines)."""
    c = zlib.compressobj(LEVEL, zlib.DEFLATED, -15)
    body = c.compress(data) + c.flush()
    return _SIG + struct.pack("<I", HEAD + len(body) + 8) + body + struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF)


def _inflate(blob: bytes) -> bytes | None:
    """The lines a whole member holds; None for a member cut short or damaged."""
    if len(blob) < HEAD + 8 or not blob.startswith(_SIG) or struct.unpack_from("<I", blob, len(_SIG))[0] != len(blob):
        return None
    d = zlib.decompressobj(-15)
    try:
        data = d.decompress(blob[HEAD:-8])
    except zlib.error:
        return None
    crc, size = struct.unpack_from("<II", blob, len(blob) - 8)
    if not d.eof or d.unused_data or zlib.crc32(data) != crc or len(data) & 0xFFFFFFFF != size:
        return None
    return data


def append_lines(path: Path, lines: list[bytes]) -> list[int]:
    """Append whole lines (one write, then fsync); returns each line's position."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        at = os.lseek(fd, 0, os.SEEK_END)  # the writer holds the folder's lock: no one else appends
        out: list[int] = []
        if is_gz(path):
            blob, i = bytearray(), 0
            while i < len(lines):
                j, size = i, 0
                while j < len(lines) and (j == i or size + len(lines[j]) <= MAX_MEMBER):
                    size += len(lines[j])
                    j += 1
                out += [at + len(blob)] * (j - i)
                blob += member(b"".join(lines[i:j]))
                i = j
        else:
            blob = bytearray(b"".join(lines))
            for line in lines:
                out.append(at)
                at += len(line)
        view = memoryview(blob)
        while view:  # os.write may write less than asked
            view = view[os.write(fd, view) :]
        os.fsync(fd)
        return out
    finally:
        os.close(fd)


def whole_end(path: Path) -> int:
    """Where the plan's whole lines end: the file's size unless a write was
    cut off (then the start of that last line or member)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return 0
    if not size:
        return 0
    with open(path, "rb") as f:
        if not is_gz(path):
            f.seek(size - 1)
            if f.read(1) == b"\n":
                return size
            end = size
            while end > 0:  # back to the last newline, 64 KiB at a time
                lo = max(0, end - 65536)
                f.seek(lo)
                at = f.read(end - lo).rfind(b"\n")
                if at >= 0:
                    return lo + at + 1
                end = lo
            return 0
        span = 1 << 20
        while True:
            lo = max(0, size - span)
            f.seek(lo)
            buf = f.read(size - lo)
            at = buf.rfind(_SIG)
            while at >= 0:  # the last member that is whole ends the plan
                pos = lo + at
                if pos + HEAD <= size:
                    n = struct.unpack_from("<I", buf, at + len(_SIG))[0] if at + HEAD <= len(buf) else 0
                    if n and pos + n <= size:
                        f.seek(pos)
                        if _inflate(f.read(n)) is not None:
                            return pos + n
                at = buf.rfind(_SIG, 0, at)
            if lo == 0:
                return 0
            span *= 4  # a member longer than the window: look further back


def is_torn(path: Path) -> bool:
    """Whether the last write to the plan (or any JSONL file: not named .gz) was cut off."""
    return path.exists() and whole_end(path) != path.stat().st_size


def cut_torn(path: Path) -> bool:
    """Cut a write that was cut off from the end of the plan (or of any JSONL
    file: a torn last line); whether there was one."""
    if not path.exists():
        return False
    end = whole_end(path)
    with open(path, "r+b") as f:
        if f.seek(0, os.SEEK_END) == end:
            return False
        f.truncate(end)
        os.fsync(f.fileno())
    return True


def members(path: Path, start: int = 0) -> Iterator[tuple[int, bytes]]:
    """(position, lines) of each whole member of a plan.jsonl.gz from byte
    ``start`` (a member's start), in order; a member cut off at the end is
    left out, a damaged one before the end is an error."""
    size = path.stat().st_size
    with open(path, "rb", buffering=1 << 20) as f:
        f.seek(start)
        pos = start
        while pos < size:
            head = f.read(HEAD)
            n = struct.unpack_from("<I", head, len(_SIG))[0] if len(head) == HEAD and head.startswith(_SIG) else 0
            if len(head) < HEAD or (n and pos + n > size):
                return  # a write cut off: repair cuts it
            data = _inflate(head + f.read(n - HEAD)) if n > HEAD else None
            if data is None:
                if pos + n == size and n:
                    return  # the last member, cut off mid-write
                raise StoreError(f"{path}, byte {pos}: not a part of the plan fabula wrote (damaged or edited); restore the file or move the folder aside")
            yield pos, data
            pos += n


def lines(path: Path, start: int = 0) -> Generator[tuple[int, bytes], None, None]:
    """(position, line) of every whole line of the plan from position ``start``,
    in order (a line cut off at the end is left out; blank lines too)."""
    if not path.exists():
        return
    if is_gz(path):
        for pos, data in members(path, start):
            for line in data.split(b"\n")[:-1]:
                if line.strip():
                    yield pos, line
        return
    at = start
    with open(path, "rb", buffering=1 << 20) as f:
        f.seek(start)
        for line in f:
            here, at = at, at + len(line)
            if not line.endswith(b"\n"):
                return
            if line.strip():
                yield here, line[:-1]


def loads(path: Path, pos: int, line: bytes) -> dict[str, Any]:
    """A plan line's card as a dict; a clear error where it is not JSON."""
    try:
        return json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        where = f"the line at byte {pos}" if not is_gz(path) else f"a card of the part at byte {pos}"
        raise StoreError(f"{path}: {where} is not valid JSON; the file was edited by hand: restore it or move the folder aside") from None


class Cards:
    """Cards of the plan by id, read on demand: the position of every line
    is found once (a regex on each line's head, no JSON parse), then a card
    costs one seek and one json.loads (plan.jsonl.gz: one member inflated,
    the last one kept, since records come in about plan order)."""

    def __init__(self, path: Path, card_id):
        self.path = path
        self.at: dict[int, tuple[int, int]] = {}  # id -> (position, offset of the line in its member's lines)
        self._member: tuple[int, bytes] | None = None
        self.file = open(path, "rb") if path.exists() else None
        if self.file is None:
            return
        if is_gz(path):
            for pos, data in members(path):
                off = 0
                for line in data.split(b"\n")[:-1]:
                    if line.strip():
                        self.at[card_id(path, pos, line)] = (pos, off)
                    off += len(line) + 1
        else:
            for pos, line in lines(path):
                self.at[card_id(path, pos, line)] = (pos, 0)

    def __contains__(self, card_id: object) -> bool:
        return card_id in self.at

    def get(self, card_id: int) -> dict[str, Any] | None:
        hit = self.at.get(card_id)
        if hit is None or self.file is None:
            return None
        pos, off = hit
        if not is_gz(self.path):
            self.file.seek(pos)
            return loads(self.path, pos, self.file.readline())
        if self._member is None or self._member[0] != pos:
            self.file.seek(pos)
            n = struct.unpack_from("<I", self.file.read(HEAD), len(_SIG))[0]
            self.file.seek(pos)
            data = _inflate(self.file.read(n))
            if data is None:
                raise StoreError(f"{self.path}, byte {pos}: not a part of the plan fabula wrote (damaged or edited); restore the file or move the folder aside")
            self._member = (pos, data)
        data = self._member[1]
        return loads(self.path, pos, data[off : data.index(b"\n", off)])

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
