"""The corpus folder: append-only, atomic, resumable.

    DIR/fabula.json        manifest: pack (name + digest) and seed; written once
    DIR/plan.jsonl.gz      every card planned, in order, as JSON lines in gzip members
                           (fabula.plan_file; older folders: plan.jsonl, plain)
    DIR/stories/NNN_<hash16>.txt   accepted stories; hash16 = sha256(text)[:16]
    DIR/corpus.jsonl       one record per accepted story, in index order
    DIR/rejects.jsonl      cards whose every draft failed a check, with reasons
    DIR/failed.jsonl       cards the backend gave up on (server faults); a rerun retries them

One writer at a time. ``open()`` takes an exclusive OS lock (``flock``) on
``DIR/writer.lock`` for the life of the process, so a second writer (another
terminal, an overlapping cron job) is refused at once with the holder's PID;
the OS drops the lock when the holder exits or is killed, so no stale lock is
ever left. Readers (``report``, ``plan``) never open a Store and never block.

Crash safety. A story's commit point is its line in corpus.jsonl: the text
file is written to a temporary name, fsynced and renamed into place first, and
only then is the record appended (one write, then fsync). ``open()`` repairs
whatever a SIGKILL can leave: a last line without its newline is cut off,
temporary files are removed and story files that no record names are moved to
quarantine/. So a killed run resumes with every committed story intact and
nothing half-written.

Group commit. A writer that keeps stories faster than fsync can (a fast server,
the fake backend) sets ``group`` above 1: ``plan()`` and ``accept()`` then hold
their lines and texts in memory and ``flush()`` commits them together - the
plan lines (one write, fsync), every story file (written, made durable,
renamed), the folder (fsync), then all the records in one write and one fsync.
A group of ``SYNCFS_MIN`` stories or more is made durable by one syncfs(2) of
the folder's file system rather than an fsync per file (Linux; ~0.5 ms a
story less on ext4); elsewhere, or if it fails, each file is fsynced. The order is the one
above, story by story, so a kill at any moment still leaves whole stories only;
what was held and not yet flushed is simply not committed (its card is planned
again, the same card, on resume). ``committed`` counts the stories on disk for
good: the only count a progress display may promise. A store flushes by itself
when ``group`` stories wait, when the oldest has waited ``GROUP_SECONDS``, or
when stories come slower than ``GROUP_GAP`` apart (then one fsync a story costs
nothing that matters); ``reject()``, ``fail()`` and the writer's end flush first.
A full group (or one held ``GROUP_SECONDS``) is committed behind the writer,
in a thread: the writer goes on (its HTTP client, its checks) while the disk
syncs, and only one group is ever on its way, so the next waits for it.
``committed`` counts a group once its thread is done and the writer has seen
it; ``flush()`` and whatever reads the folder wait for it first.
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Container, Iterator, Mapping, cast

from fabula import plan_file
from fabula.errors import StoreError
from fabula.plan_file import PLAN, PLAN_GZ, cut_torn, is_torn, plan_path  # noqa: F401 - cut_torn, is_torn: any JSONL file too
from fabula.records import Card, Record

MANIFEST = "fabula.json"
# What a resumed run must share with the folder unless it is told to mix
# (manifest key -> how the refusal names it).
SETTINGS = {"pack_digest": "the pack file of digest", "backend": "backend", "model": "model", "words": "--words"}
CORPUS = "corpus.jsonl"
REJECTS = "rejects.jsonl"
FAILED = "failed.jsonl"
STORIES = "stories"
TMP_SUFFIX = ".tmp"
LOCK = "writer.lock"
QUARANTINE = "quarantine"  # damaged or unrecorded stories, moved aside (never deleted); see fabula.verify
QUARANTINE_LOG = "quarantine.jsonl"
INDEX = "index.npz"  # the near-duplicate index (fabula.index); rebuilt from the stories when missing
SIGNATURES = "index.signatures"
HEADS = "index.heads"  # the heads cache (see heads_of)
GROUP_SECONDS = 1.0  # the longest a kept story waits in memory for its group's commit
GROUP_GAP = 0.05  # seconds: stories further apart than this are committed one by one
SYNCFS_MIN = 8  # stories in a group that one syncfs makes durable, not an fsync each

# Locks this process holds, by folder: flock excludes other processes; within
# one process a folder reopened (a resumed run in the same Python session)
# keeps the lock it has.
_HELD: dict[Path, int] = {}


def lock_folder(root: Path) -> None:
    """Hold the folder's writer lock until the process ends, or refuse."""
    key = root.resolve()
    if key in _HELD:
        return
    fd = os.open(root / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "another process"
        os.close(fd)
        raise StoreError(
            f"{root} is being written by process {holder}; wait for it to finish (or stop it), "
            "or write to another --out; `fabula report` can read the folder meanwhile"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _HELD[key] = fd


def writer_pid(root: Path) -> int | None:
    """The PID of another process writing ``root``, read without locking (readers
    never take the lock): the PID in DIR/writer.lock if that process is alive.
    (A reused PID can make a finished run look alive; readers only use this
    to tell a writer's in-flight files from leftovers.)"""
    try:
        pid = int((Path(root) / LOCK).read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None
    if pid == os.getpid():
        return None  # this process (verify --repair holds the lock to repair)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, another user's
        pass
    return pid


def unlock_folder(root: Path) -> None:
    """Release the writer lock early (tests; the OS releases it at exit)."""
    fd = _HELD.pop(Path(root).resolve(), None)
    if fd is not None:
        os.close(fd)


def start_over(root: Path) -> None:
    """Delete what fabula wrote in a corpus folder whose writer lock this
    process holds (``write --fresh``), leaving other files (a report the user
    wrote there). The records go first and the manifest last, so a kill
    midway leaves a corpus that a rerun with --fresh empties, never stories
    counted without their files."""
    for name in (CORPUS, PLAN, PLAN_GZ, REJECTS, FAILED, INDEX, SIGNATURES, HEADS):
        (root / name).unlink(missing_ok=True)
    for sub in (STORIES, QUARANTINE):
        shutil.rmtree(root / sub, ignore_errors=True)
    for p in root.glob("*" + TMP_SUFFIX):
        p.unlink()
    (root / MANIFEST).unlink()
    _fsync_dir(root)


def _foreign_files(root: Path) -> list[Path]:
    """What in ``root`` fabula did not put there before its manifest exists.
    A writer that has the lock but not yet its manifest leaves only the lock
    file and the manifest's temporary file: a second writer that sees them
    must wait for the lock (and be refused by it), not call the folder foreign."""
    own = {STORIES, LOCK, QUARANTINE, MANIFEST + TMP_SUFFIX}
    return [p for p in root.iterdir() if p.name not in own]


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _load_syncfs() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.syncfs
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
    return cast(Callable[[int], int], fn)


_SYNCFS = _load_syncfs()


def sync_files(folder: Path, paths: list[Path]) -> None:
    """Make the written ``paths`` (all in ``folder``, closed) durable: one
    syncfs(2) of the file system when there are several and the platform has
    it, else an fsync each. (syncfs also writes out other programs' pending
    data on that file system; Linux reports write errors through it since 5.8.)"""
    if len(paths) >= SYNCFS_MIN and _SYNCFS is not None:
        fd = os.open(folder, os.O_RDONLY)
        try:
            if _SYNCFS(fd) == 0:
                return
        finally:
            os.close(fd)
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomic(path: Path, data: str) -> None:
    """Write a whole file under a temporary name, fsync, rename into place."""
    tmp = path.with_name(path.name + TMP_SUFFIX)
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def jsonl_line(record: dict[str, Any]) -> bytes:
    """One record as a JSONL line: compact, keys in order (read_heads relies on it)."""
    return (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def append_bytes(path: Path, data: bytes) -> None:
    """Append whole lines with a single write and fsync them."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def append_line(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line with a single write and fsync it."""
    append_bytes(path, jsonl_line(record))


def _whole_lines(path: Path, repair: bool = False) -> list[bytes]:
    """The complete lines of a JSONL file. A torn last line (no newline: the
    process died mid-write) is dropped, and with ``repair`` cut from the file."""
    return _whole_bytes(path, repair).split(b"\n")[:-1]


def _whole_bytes(path: Path, repair: bool = False, start: int = 0) -> bytes:
    """A JSONL file's bytes from ``start`` up to the end of its last complete line (see _whole_lines)."""
    if not path.exists():
        return b""
    with open(path, "rb") as f:
        f.seek(start)
        raw = f.read()
    keep = raw if raw.endswith(b"\n") or not raw else raw[: raw.rfind(b"\n") + 1]
    if repair and keep != raw:
        with open(path, "r+b") as f:
            f.truncate(start + len(keep))  # the file up to start stays as it is
            os.fsync(f.fileno())
    return keep


def _loads(path: Path, i: int, line: bytes) -> dict[str, Any]:
    try:
        return json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise StoreError(f"{path}, line {i}: not valid JSON; the file was edited by hand: restore it or move the folder aside") from None


def read_jsonl(path: Path, repair: bool = False) -> list[dict[str, Any]]:
    """Records of a JSONL file (a torn last line dropped; see _whole_lines)."""
    return [_loads(path, i, line) for i, line in enumerate(_whole_lines(path, repair), 1) if line.strip()]


def iter_jsonl(path: Path, end: int | None = None) -> Iterator[tuple[int, bytes]]:
    """(line number, line) of every whole, non-blank line of a JSONL file,
    read line by line (a torn last line is left out); ``end``: of its first
    ``end`` bytes only (what it held at some moment while a writer appends)."""
    if not path.exists():
        return
    at = 0
    with open(path, "rb") as f:
        for i, line in enumerate(f, 1):
            at += len(line)
            if end is not None and at > end:
                return
            if line.endswith(b"\n") and line.strip():
                yield i, line


def _card_id(path: Path, pos: int, line: bytes) -> int:
    """A plan line's card id, from the line's head (parsed only when written otherwise)."""
    m = _CARD_ID.match(line)
    return int(m[1]) if m else int(plan_file.loads(path, pos, line)["id"])


def planned_ids(root: Path) -> set[int]:
    """The id of every card of the folder's plan (no card is parsed)."""
    path = plan_path(root)
    return {_card_id(path, pos, line) for pos, line in plan_file.lines(path)}


def scan_jsonl(path: Path) -> tuple[list[tuple[int, dict[str, Any]]], bool]:
    """(line number, record) of every whole line of a JSONL file, and whether
    its last line is torn: the one line reader (verify names lines by it)."""
    if not path.exists():
        return [], False
    raw = path.read_bytes()
    lines = raw.split(b"\n")[:-1]
    return [(i, _loads(path, i, line)) for i, line in enumerate(lines, 1) if line.strip()], bool(raw) and not raw.endswith(b"\n")


def iter_records(root: Path, cards: bool = True, only: Container[str] | None = None) -> Iterator[Record]:
    """The records of the stories a reader sees, streamed: committed (a torn
    last line is not yet), file present, each once, in corpus.jsonl's order.
    The Corpus API, the report and export read a folder through this; verify
    reports what it leaves out.

    A record names its card by id; the card itself is stored once, in
    the plan file. With ``cards`` each record comes with its whole card read
    from there (older folders hold it in the record, and it is used as is);
    a record whose card the plan does not hold is left out (verify:
    ``unplanned``), with or without ``cards``. ``only``: the ids wanted (the
    others are not parsed: a report's sample of a large corpus)."""
    root = Path(root)
    path, seen = root / CORPUS, set()
    if not path.exists():
        return
    plan = plan_file.Cards(plan_path(root), _card_id)
    try:
        with open(path, "rb") as f:
            for i, line in enumerate(f, 1):
                if not line.endswith(b"\n") or not line.strip():
                    continue
                if only is not None:
                    m = _HEAD.match(line)
                    if m is not None and m[1].decode() not in only:
                        continue
                r = cast(Record, _loads(path, i, line))
                if only is not None and r.get("id") not in only:
                    continue
                if r["id"] in seen or not (root / r["file"]).is_file():
                    continue
                card = r.get("card")
                # A record's card is whole in the record (older folders) or stored once in the plan.
                if not isinstance(card, dict) or (len(card) == 1 and card.get("id") not in plan):
                    continue
                if cards and len(card) == 1:
                    r["card"] = plan.get(card["id"]) or card
                seen.add(r["id"])
                yield r
    finally:
        plan.close()


def visible_records(root: Path, cards: bool = True) -> list[Record]:
    """iter_records, as a list."""
    return list(iter_records(root, cards))


class Undecodable(StoreError):
    """A story file that is not UTF-8 text (damaged, or edited with another encoding)."""


def read_story(root: Path, record: Mapping[str, Any]) -> str:
    """A recorded story's text; Undecodable (one line, with the way out) when
    the file is not UTF-8 text."""
    path = Path(root) / record["file"]
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Undecodable(
            f"{path} is not UTF-8 text (byte {e.start}: {data[e.start : e.start + 1]!r}); it is left out; "
            f"`fabula verify --repair {root}` moves it to quarantine/ and the next write rewrites its card"
        ) from None


def stories(root: Path, warn: Callable[[str], None] | None = None, only: Container[str] | None = None) -> Iterator[tuple[Record, str]]:
    """(record, text) of every story a reader sees (visible_records; ``only``:
    of those ids); a file that is not UTF-8 text is skipped with one warning
    (``warn``, default: the ``fabula`` logger)."""
    for r in iter_records(root, only=only):
        try:
            yield r, read_story(root, r)
        except Undecodable as e:
            (warn or logging.getLogger("fabula").warning)(str(e))


# The head of a corpus.jsonl line as append_line writes it (compact JSON, keys
# in this order): enough to open a corpus for writing without parsing the
# rest (a record is ~4.6 KB, its card most of it: 100,000 lines of json.loads
# cost ~7 s). Any other line is parsed whole.
_HEAD = re.compile(rb'\{"id":"([^"\\]+)","index":(\d+),"file":"([^"\\]+)","card":\{"id":(\d+)[,}]')
_CARD_ID = re.compile(rb'\{"id":(\d+)[,}]')  # a plan line (a card) as jsonl_line writes it
_REJECT_CARD_ID = re.compile(rb'\{"card":\{"id":(\d+)[,}]')  # a rejects.jsonl line


_HEAD_LINE = re.compile(b"\n" + _HEAD.pattern)  # the same, at a line's start: matched on "\n" + the file


class Heads:
    """id, index, file and card id of every committed record, in order, as
    four columns, not a dict a record (two more dicts and their keys a
    record, 10^6 of them on a resume at 10^6 stories)."""

    __slots__ = ("ids", "indexes", "files", "cards")

    def __init__(self, ids: list[str], indexes: list[int], files: list[str], cards: list[int]):
        self.ids, self.indexes, self.files, self.cards = ids, indexes, files, cards

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: slice) -> "Heads":
        return Heads(self.ids[i], self.indexes[i], self.files[i], self.cards[i])

    def record(self, i: int) -> dict[str, Any]:
        return {"id": self.ids[i], "index": self.indexes[i], "file": self.files[i], "card": {"id": self.cards[i]}}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self.record(i) for i in range(len(self)))

    def __add__(self, other: "Heads") -> "Heads":
        return Heads(self.ids + other.ids, self.indexes + other.indexes, self.files + other.files, self.cards + other.cards)

    def __eq__(self, other: object) -> bool:
        return list(self) == list(other) if isinstance(other, (Heads, list)) else NotImplemented


def read_heads(path: Path, repair: bool = False) -> Heads:
    """id, index, file and card id of every corpus.jsonl record, in order."""
    return _parse_heads(path, _whole_bytes(path, repair))


def _parse_heads(path: Path, raw: bytes, first_line: int = 1) -> Heads:
    """The heads of ``raw``, whole lines of ``path`` from line ``first_line`` on."""
    # One pass of _HEAD over the whole file where every line has the form
    # fabula writes (not a match a line): each match starts a line, so as many
    # matches as lines is every line. At 10^6 records (732 MB) the pass took
    # 2.1 s and the columns 3.4 s under cProfile: the largest part of a resume
    # (which reads the heads cache instead: see heads_of).
    heads = _HEAD_LINE.findall(b"\n" + raw)
    if len(heads) == raw.count(b"\n"):
        if not heads:
            return Heads([], [], [], [])
        ids, indexes, files, cards = zip(*heads)
        return Heads([x.decode() for x in ids], list(map(int, indexes)), [x.decode() for x in files], list(map(int, cards)))
    lines = raw.split(b"\n")[:-1]
    out: list[tuple[Any, Any, str, Any]] = []
    for i, line in enumerate(lines, first_line):
        m = _HEAD.match(line)
        if m:
            out.append((m[1].decode(), int(m[2]), m[3].decode(), int(m[4])))
        elif line.strip():
            r = _loads(path, i, line)
            out.append((r.get("id"), r.get("index"), r["file"], r.get("card", {}).get("id")))
    if not out:
        return Heads([], [], [], [])
    a, b, c, d = (list(col) for col in zip(*out))
    return Heads(a, b, c, d)


# The heads cache, DIR/index.heads: the heads of corpus.jsonl's first records
# as fixed rows (index, card id, id; the file is stories/<id>.txt), so a resume
# at 10^6 stories reads 48 MB of rows instead of parsing 730 MB of JSON. A
# header (JSON, space-padded to HEADS_TOP bytes) names how many rows are
# vouched for and the corpus.jsonl bytes they cover, with a hash of that
# length's last 4 KiB: the rows are used only while corpus.jsonl still starts
# with those bytes (`fabula verify --repair` rewrites it: then the heads are
# read from corpus.jsonl, and the next save writes the cache again). The
# writer appends rows (fsynced) before it rewrites the header, and a header
# that does not hash to its own "sum" is no header, so a kill at any moment
# leaves a cache that is right or unused. Like index.npz it is a cache:
# deleting it loses nothing. Written by save_heads (fabula.index.save).
HEADS_TOP = 512
HEADS_FORMAT = 1
HEADS_TAIL = 4096  # bytes of corpus.jsonl before the covered length that must still match
_ID_BYTES = 32


def _heads_row():
    import numpy as np

    return np.dtype([("index", "<i8"), ("card", "<i8"), ("id", f"S{_ID_BYTES}")])


def _heads_sum(top: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps({k: top[k] for k in sorted(top) if k != "sum"}).encode()).hexdigest()[:16]


def _corpus_tail(f, end: int) -> str:
    f.seek(max(0, end - HEADS_TAIL))
    return hashlib.sha256(f.read(end - max(0, end - HEADS_TAIL))).hexdigest()[:16]


def _heads_top(root: Path) -> dict[str, Any] | None:
    """The cache's header when it is whole and still describes corpus.jsonl's start; else None."""
    try:
        with open(root / HEADS, "rb") as f:
            top = json.loads(f.read(HEADS_TOP))
        if not isinstance(top, dict) or top.get("format") != HEADS_FORMAT or top.get("sum") != _heads_sum(top):
            return None
        end, rows = top["corpus_bytes"], top["records"]
        if not (isinstance(end, int) and isinstance(rows, int) and 0 <= rows and 0 <= end):
            return None
        with open(root / CORPUS, "rb") as f:
            if f.seek(0, os.SEEK_END) < end or _corpus_tail(f, end) != top["corpus_tail"]:
                return None
        return top
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None


def heads_of(root: Path) -> Heads:
    """The heads of every corpus.jsonl record (as read_heads), from the heads
    cache where it holds and from corpus.jsonl after it."""
    root = Path(root)
    top = _heads_top(root)
    if top is None:
        return read_heads(root / CORPUS)
    import numpy as np

    n, end = top["records"], top["corpus_bytes"]
    rows = np.fromfile(root / HEADS, dtype=_heads_row(), count=n, offset=HEADS_TOP)
    if len(rows) != n:
        return read_heads(root / CORPUS)
    ids = [x.decode() for x in rows["id"].tolist()]
    cached = Heads(ids, rows["index"].tolist(), [f"{STORIES}/{x}.txt" for x in ids], rows["card"].tolist())
    return cached + _parse_heads(root / CORPUS, _whole_bytes(root / CORPUS, start=end), first_line=n + 1)


def save_heads(root: Path) -> None:
    """Bring the heads cache up to corpus.jsonl's last whole line (the
    writer's, under its lock): rows for the records after those it holds,
    fsynced, then its header. A record it cannot hold as a row (an id over
    32 bytes, a file not stories/<id>.txt) ends the cache there for good
    ("off"), until corpus.jsonl is rewritten."""
    import numpy as np

    root = Path(root)
    top = _heads_top(root)
    if top is not None and top.get("off"):
        return
    n, end = (top["records"], top["corpus_bytes"]) if top else (0, 0)
    rest = _whole_bytes(root / CORPUS, start=end)
    new = _parse_heads(root / CORPUS, rest, first_line=n + 1)
    if top is not None and not len(new):
        return
    fits = 0
    if rest.count(b"\n") == len(new):  # a record a line (no blank lines): rows map to bytes
        for rid, idx, file, card in zip(new.ids, new.indexes, new.files, new.cards):
            if not (
                type(idx) is int and type(card) is int and isinstance(rid, str) and rid.isascii() and len(rid) <= _ID_BYTES and file == f"{STORIES}/{rid}.txt"
            ):
                break
            fits += 1
    rows = np.zeros(fits, dtype=_heads_row())
    rows["index"], rows["card"], rows["id"] = new.indexes[:fits], new.cards[:fits], [x.encode() for x in new.ids[:fits]]
    covered = end + _line_ends(rest, fits)
    fd = os.open(root / HEADS, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if top is None:  # rows are rewritten from the first: no header may name them meanwhile
            _pwrite_all(fd, b" " * HEADS_TOP, 0)
        os.ftruncate(fd, HEADS_TOP + n * rows.itemsize)  # rows a killed save appended after the header's
        _pwrite_all(fd, rows.tobytes(), HEADS_TOP + n * rows.itemsize)
        os.fsync(fd)
        with open(root / CORPUS, "rb") as f:
            tail = _corpus_tail(f, covered)
        head = {"format": HEADS_FORMAT, "records": n + fits, "corpus_bytes": covered, "corpus_tail": tail, "off": fits < len(new)}
        _pwrite_all(fd, json.dumps({**head, "sum": _heads_sum(head)}).encode().ljust(HEADS_TOP, b" "), 0)
        os.fsync(fd)
    finally:
        os.close(fd)


def _line_ends(raw: bytes, k: int) -> int:
    """Bytes of ``raw`` up to the end of its k-th line."""
    if k == raw.count(b"\n"):
        return len(raw)
    at = 0
    for _ in range(k):
        at = raw.index(b"\n", at) + 1
    return at


def _pwrite_all(fd: int, data: bytes, at: int) -> None:
    view = memoryview(data)
    while view:  # pwrite may write less than asked
        done = os.pwrite(fd, view, at)
        view, at = view[done:], at + done


def _rejected_ids(path: Path) -> set[int]:
    """The card id of every line of rejects.jsonl, without parsing the cards."""
    out = set()
    for i, line in enumerate(_whole_lines(path), 1):
        m = _REJECT_CARD_ID.match(line)
        if m:
            out.add(int(m[1]))
        elif line.strip():
            out.add(int(_loads(path, i, line)["card"]["id"]))
    return out


@dataclass
class Store:
    root: Path
    # The heads of corpus.jsonl's records (see read_heads), read when the
    # folder is opened and dropped at the first commit (see flush).
    _heads: Heads | None = None
    opened_with: int = 0  # records in corpus.jsonl when the folder was opened
    _files: set | None = None  # the names in stories/ that records name, as repair() found them
    _unlisted: int = 0  # records' story files repair() did not find in stories/
    _strays: list = field(default_factory=list)  # story files no record names (repair quarantines them)
    _tmps: list = field(default_factory=list)  # temporary files a killed run left
    group: int = 1  # stories committed together (see "Group commit" above); 1: each at once
    committed: int = 0  # stories this Store committed for good (flushed)
    _plans: list = field(default_factory=list)  # plan lines held for the next flush
    _plan_ids: list = field(default_factory=list)  # their cards' ids
    # Card id -> its position in the plan, for every card planned (flushed)
    # whose story is neither committed nor rejected: where a resume must
    # start reading the plan (see waiting_from).
    unfinished: dict = field(default_factory=dict)
    _plan_file: Path | None = None

    @property
    def plan_file(self) -> Path:
        """The folder's plan file (plan.jsonl.gz, or an older folder's plan.jsonl), found once."""
        if self._plan_file is None:
            self._plan_file = plan_path(self.root)
        return self._plan_file

    _held: list = field(default_factory=list)  # (file name, text, record line, card id) held for the next flush
    _first_held: float = 0.0  # time.monotonic() when the oldest held story was accepted
    _last_accept: float = float("-inf")
    _behind: tuple | None = None  # (group, its commit's Future): the group being committed in a thread
    _committer: ThreadPoolExecutor | None = None

    @property
    def stories_dir(self) -> Path:
        return self.root / STORIES

    # -- opening -------------------------------------------------------------
    @classmethod
    def open(cls, root: str | Path, manifest: dict[str, Any], mixed: bool = False, fresh: bool = False) -> "Store":
        """Create or reopen a corpus folder written with the same manifest:
        the same pack and seed always; the same pack file (digest), backend,
        model and target words unless ``mixed`` (then each story's record
        keeps its own, and the manifest keeps the first run's). ``fresh``
        empties a corpus folder first (see start_over); files fabula did
        not write stay."""
        root = Path(root)
        if root.exists() and not root.is_dir():
            raise StoreError(f"{root} is a file, not a folder; choose another --out")
        store = cls(root)
        man_path = root / MANIFEST
        not_corpus = StoreError(f"{root} exists and is not a fabula corpus; choose an empty or new folder for --out")
        if root.exists() and not man_path.exists() and _foreign_files(root):
            raise not_corpus
        root.mkdir(parents=True, exist_ok=True)
        # The lock comes before the manifest is read or written and before
        # repair: another writer's temporary files are not ours to sweep.
        lock_folder(root)
        if fresh and man_path.exists():
            start_over(root)
        elif not man_path.exists() and _foreign_files(root):
            unlock_folder(root)
            raise not_corpus
        if man_path.exists():
            have = json.loads(man_path.read_text(encoding="utf-8"))
            for key in ("pack", "seed"):
                if have.get(key) != manifest.get(key):
                    unlock_folder(root)  # refused: this process writes nothing here
                    raise StoreError(
                        f"{root} holds a corpus written with {key} {have.get(key)!r}, not {manifest.get(key)!r}; "
                        f"run with the same --{key} to continue it, choose a new --out, or pass --fresh to start the folder over"
                    )
            # Folders written before a key was recorded do not hold it: nothing to compare.
            changed = [
                f"{what} {have[key]!r} (now {manifest.get(key)!r})"
                for key, what in SETTINGS.items()
                if key in have and key in manifest and have[key] != manifest[key]
            ]
            if changed and not mixed:
                unlock_folder(root)
                raise StoreError(
                    f"{root} was written with {', '.join(changed)}; continue with the same settings, choose a new --out, "
                    "pass --fresh to start the folder over, or pass --mixed (Corpus.write(mixed=True)) to go on with mixed settings, each story's record keeping its own"
                )
        else:
            write_atomic(man_path, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
        store.stories_dir.mkdir(exist_ok=True)
        store._survey()
        try:
            store.check_whole()
        except StoreError:
            unlock_folder(root)  # refused before anything was cleaned: the folder is as it was
            raise
        store._clean()
        return store

    def repair(self) -> None:
        """Undo what a killed run can leave behind (see the module docstring)."""
        self._survey()
        self._clean()

    def _survey(self) -> None:
        """What repair would do, doing nothing yet: the whole records (a torn
        last line left out), the story files they name, the strays and the
        temporary files. Store.open checks the survey before it cleans, so a
        refused run leaves the folder as it found it."""
        self._heads = heads_of(self.root)
        self.opened_with = len(self._heads) - self.committed  # repair() surveys again after commits
        # Set operations on the names, not a loop a name: at 10^6 stories the
        # loop was a fifth of a resume.
        prefix = STORIES + "/"
        named = {f[len(prefix) :] for f in self._heads.files if f.startswith(prefix)}
        listed = set(os.listdir(self.stories_dir))
        self._files = listed & named  # names in stories/ that a record names
        self._unlisted = len(named) - len(self._files)
        rest = sorted(listed - named)
        self._tmps = list(self.root.glob("*" + TMP_SUFFIX)) + [self.stories_dir / n for n in rest if n.endswith(TMP_SUFFIX)]
        self._strays = [self.stories_dir / n for n in rest if not n.endswith(TMP_SUFFIX)]

    def _clean(self) -> None:
        for path in (self.plan_file, self.root / REJECTS, self.root / FAILED, self.root / CORPUS):
            cut_torn(path)
        for p in self._tmps:
            p.unlink(missing_ok=True)
        for p in self._strays:
            # Renamed into place but never recorded (killed between the two),
            # or put there by hand: not a story of the corpus, and not ours to
            # delete either.
            q = self.root / QUARANTINE
            q.mkdir(exist_ok=True)
            os.replace(p, q / p.name)
            append_line(q / QUARANTINE_LOG, {"file": f"{STORIES}/{p.name}", "moved_to": f"{QUARANTINE}/{p.name}", "reason": "stray"})
        self._tmps, self._strays = [], []

    def check_whole(self) -> None:
        """The cheap half of `fabula verify`: every record's file is there,
        once; else refuse rather than count stories that are not there."""
        files = self._files  # names in stories/ (repair()'s one listing, not 100,000 stats)
        assert files is not None, "repair() lists the stories first"
        heads = self.heads()
        prefix = STORIES + "/"
        if len(set(heads.ids)) == len(heads) == len(set(heads.indexes)) and not self._unlisted and all(f.startswith(prefix) for f in heads.files):
            return  # the usual case, in set operations (10^6 records: a loop a record took seconds)
        ids, indexes = set(), set()
        for rid, index, file in zip(heads.ids, heads.indexes, heads.files):
            twice = rid in ids or index in indexes
            if twice or not file.startswith(prefix) or file[len(prefix) :] not in files:
                what = "is recorded twice" if twice else f"has no file ({file})"
                raise StoreError(f"{self.root}: story {rid} {what}, so the corpus does not add up; run `fabula verify {self.root} --repair`, then write again")
            ids.add(rid)
            indexes.add(index)

    # -- reading -------------------------------------------------------------
    def stored(self) -> int:
        """Records in corpus.jsonl now: those it held when opened, and those committed since."""
        return self.opened_with + self.committed

    def heads(self) -> Heads:
        """id, index, file and card id of every committed record (see read_heads)."""
        self._catch_up()
        if self._heads is None:
            return read_heads(self.root / CORPUS)
        return self._heads[:]

    def records(self) -> list[dict[str, Any]]:
        """Every committed record, whole: corpus.jsonl parsed, each with its
        card from the plan (see iter_records)."""
        self._catch_up()
        out = read_jsonl(self.root / CORPUS)
        plan = plan_file.Cards(self.plan_file, _card_id)
        try:
            for r in out:
                card = r.get("card")
                if isinstance(card, dict) and len(card) == 1 and isinstance(card.get("id"), int):
                    r["card"] = plan.get(card["id"]) or card
        finally:
            plan.close()
        return out

    def rejects(self) -> list[dict[str, Any]]:
        return read_jsonl(self.root / REJECTS)

    def cards(self) -> list[Card]:
        path = self.plan_file
        return [Card.from_dict(plan_file.loads(path, pos, line)) for pos, line in plan_file.lines(path)]

    def plan_since(self, start: int, finished: set[int], count: Callable[[Card], None], read_from: int | None = None, counted: int = 0) -> list[Card]:
        """From the plan, read a line (or member) at a time: ``count`` each
        card from position ``start`` on, in plan order, as it is read (a list
        of them would hold ~13 KB a card: 3.8 GB for a 280,000-card plan
        counted from 0), and return every card whose story is not ``finished``.
        A line before ``start`` is parsed only when its card still waits for
        its story; the others give just their id.

        ``read_from`` (a saved waiting_from: no card before it was waiting
        then) skips the plan before it while every card there is still
        finished: card ids count up from 0 in plan order, so those are the
        ids below the first one read there (``counted``, the cards up to
        ``start``, where nothing follows). After ``verify --repair`` dropped
        a story, its card waits again and the whole plan is read."""
        path = self.plan_file
        at = min(read_from, start) if read_from is not None else 0
        if at:
            with closing(plan_file.lines(path, at)) as rest:
                head = next(rest, None)
            before = _card_id(path, *head) if head else counted
            if any(i not in finished for i in range(before)):
                at = 0
        waiting: list[tuple[int, Card]] = []
        for pos, line in plan_file.lines(path, at):
            if pos < start:
                m = _CARD_ID.match(line)
                if m and int(m[1]) in finished:
                    continue
            card = Card.from_dict(plan_file.loads(path, pos, line))
            if pos >= start:
                count(card)
            if card.id not in finished:
                waiting.append((pos, card))
        self.unfinished.update((card.id, pos) for pos, card in waiting)
        return [card for _, card in waiting]

    def waiting_from(self) -> int:
        """Where the plan's first card still waiting for its story stands
        (the plan's end when none does), once flushed: saved with the
        planner's state, a resume reads the plan from there, not from 0."""
        self._catch_up()
        path = self.plan_file
        end = path.stat().st_size if path.exists() else 0
        return min(self.unfinished.values(), default=end)

    def rejected_card_ids(self) -> set[int]:
        return _rejected_ids(self.root / REJECTS)

    # -- writing -------------------------------------------------------------
    def plan(self, card: Card) -> None:
        self._plans.append(jsonl_line(card.to_dict()))
        self._plan_ids.append(card.id)
        if self.group <= 1:
            self.flush()

    def accept(self, index: int, text: str, record: dict[str, Any]) -> dict[str, Any]:
        """Keep a story as number ``index`` (committed at once, or with its
        group: see ``group``); returns its record."""
        h = text_hash(text)
        name = f"{index:03d}_{h}.txt"
        rec = {"id": f"{index:03d}_{h}", "index": index, "file": f"{STORIES}/{name}", **record}
        now = time.monotonic()
        if not self._held:
            self._first_held = now
        self._held.append((name, text, jsonl_line(rec), record.get("card", {}).get("id")))
        slow = now - self._last_accept > GROUP_GAP
        self._last_accept = now
        if self.group <= 1 or slow:  # a story after a quiet spell is committed at once: nothing waits on it
            self.flush()
        elif len(self._held) >= self.group or now - self._first_held >= GROUP_SECONDS:
            self._commit_behind()
        return rec

    @property
    def held(self) -> int:
        """Stories kept but not yet committed (held, or on their way in a thread)."""
        return len(self._held) + (len(self._behind[0][2]) if self._behind else 0)

    def flush(self) -> None:
        """Commit every held plan line and story (see "Group commit"), now."""
        self._catch_up()
        group = self._take()
        if group is not None:
            self._committed(group, self._commit(group))

    def close(self) -> None:
        """Commit what is held and stop the committing thread."""
        try:
            self.flush()
        finally:
            if self._committer is not None:
                self._committer.shutdown()
                self._committer = None

    def _commit_behind(self) -> None:
        """Start committing what is held in the committing thread, once the
        group before it is on disk."""
        self._catch_up()
        group = self._take()
        if group is None:
            return
        if self._committer is None:
            self._committer = ThreadPoolExecutor(1, thread_name_prefix="fabula-commit")
        self._behind = (group, self._committer.submit(self._commit, group))

    def _catch_up(self) -> None:
        """Wait for the group on its way, if any, and count it (its error, if
        it failed, is raised here)."""
        if self._behind is not None:
            group, future = self._behind
            try:
                at = cast(Future, future).result()
            except Exception:  # not counted: its stories are whole or absent, and the run ends here
                self._behind = None
                raise
            # A Ctrl-C while waiting leaves it in place: the writer's close waits for it again.
            self._behind = None
            self._committed(group, at)

    def _take(self) -> tuple[list, list, list] | None:
        """What is held, handed over: (plan lines, their card ids, stories)."""
        if not self._plans and not self._held:
            return None
        group = (self._plans, self._plan_ids, self._held)
        self._plans, self._plan_ids, self._held = [], [], []
        return group

    def _commit(self, group: tuple) -> list[int]:
        """The disk's part of a commit (any thread): the plan lines, then the
        stories, whole, then their records; returns the plan lines' offsets."""
        plans, _, held = group
        at = plan_file.append_lines(self.plan_file, plans) if plans else []
        if not held:
            return at
        folder = self.stories_dir
        tmps = [folder / (name + TMP_SUFFIX) for name, _, _, _ in held]
        for tmp, (_, text, _, _) in zip(tmps, held):
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
        sync_files(folder, tmps)
        for tmp, (name, _, _, _) in zip(tmps, held):
            os.replace(tmp, folder / name)
        _fsync_dir(folder)
        append_bytes(self.root / CORPUS, b"".join(line for _, _, line, _ in held))
        return at

    def _committed(self, group: tuple, at: list[int]) -> None:
        """The writer's part of a commit, once the disk's is done."""
        _, plan_ids, held = group
        self.unfinished.update(zip(plan_ids, at))
        if not held:
            return
        # The heads and files open() listed served its checks; kept up to date
        # they would hold ~1 KB a story for the whole run. heads() reads
        # corpus.jsonl again if asked after the first commit.
        self._heads = self._files = None
        for _, _, _, card_id in held:
            self.unfinished.pop(card_id, None)
        self.committed += len(held)

    def reject(self, record: dict[str, Any]) -> None:
        self.flush()  # its card's plan line first
        append_line(self.root / REJECTS, record)
        self.unfinished.pop((record.get("card") or {}).get("id"), None)

    def fail(self, record: dict[str, Any]) -> None:
        self.flush()
        append_line(self.root / FAILED, record)
