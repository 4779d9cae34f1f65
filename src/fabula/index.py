"""The writer's memory of a corpus, kept beside it in ``DIR/index.npz``.

To go on writing, the pipeline needs three things about every story already
kept: its MinHash signature (near-duplicates are checked corpus-wide), its
word 4-grams in the scorer's bit set (novelty), and the per-gram story counts
behind the common-4-gram ban. Rebuilt from the texts that is about 3 ms a
story - five minutes at 100,000 - so the writer saves it here every
``SAVE_EVERY`` stories and at the end of every run, and a resumed run loads
it and reads only the stories after it.

Two files. ``DIR/index.signatures`` holds the signatures, 128 little-endian
uint32 a story in corpus order, and only ever grows: a save appends the rows
of the stories kept since the last one (fsynced), so saving costs the same
at 10 stories or 10^6. ``DIR/index.npz`` is then written whole under a
temporary name and renamed into place, so it is either the old one or the
new one: a header (format version, what the arrays depend on, how many
stories it covers, a sha256 of their ids, the 4-gram ban's limit) and the
arrays - the novelty bit set and the gram counts (both sparse while few of
their bytes are set) and the grams already common. Its count says how many
rows of index.signatures are its own; rows after them (a run killed between
the two writes) are cut at the next save. It is used only when the header
matches this fabula and its ids are exactly the first ids of corpus.jsonl,
in order; anything else - a missing or damaged file, records dropped by
``fabula verify --repair``, a lower ban limit than the one it was saved
with - rebuilds it from the texts. The index is a cache: deleting both files
loses nothing.

Beside them, ``DIR/index.heads`` caches corpus.jsonl's heads (store.heads_of),
brought up to date at every save.

It also holds the planner's state (its tallies of every card planned, see
Planner.state) with the length of the plan file it was counted from and a hash
of that length's last 4 KiB: a resumed run restores it and parses only the
cards planned after it (and any still waiting for their story), instead of the
whole plan. If the plan no longer starts with what was counted, the planner is
rebuilt from every card.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from fabula.checks import NearDuplicates, Prints
from fabula.plan_file import is_gz, plan_path
from fabula.score import CommonGrams, NgramSet, gram_hashes
from fabula.store import INDEX, SIGNATURES, TMP_SUFFIX, Heads, read_story, save_heads
from fabula.text import tokens

VERSION = 3  # 2: signatures in their own append-only file, ids as a digest; 3: fabula.text hashes
SAVE_EVERY = 1000  # stories between saves: a killed run re-reads at most this many texts


@dataclass
class Memory:
    """Near-duplicates, novelty and common grams of the stories kept so far."""

    near: NearDuplicates
    corpus: NgramSet
    counts: CommonGrams  # always counted; the ban uses it only when ``ban`` is set
    ban: bool
    loaded: int = 0  # stories that came from the saved index
    read: int = 0  # stories whose text was read to rebuild it
    unsaved: int = 0  # stories added since the last save
    signature_rows: int = 0  # leading rows of index.signatures known to be these stories' signatures
    ids: "hashlib._Hash" = field(default_factory=hashlib.sha256)  # running sha256 of the ids, each + "\n"
    last_signature: str = ""  # _last_signature of the stories' last row, as index.npz saved it

    @property
    def common(self) -> CommonGrams | None:
        return self.counts if self.ban else None

    def add(self, rid: str, text: str, prints: Prints | None = None) -> None:
        """Remember a kept story (``prints``: its Prints, when the checks' process worked them out)."""
        if prints is not None:
            self.near.prime(text, prints.signature)
            toks, hashes = None, prints.grams
        else:
            toks = tokens(text)  # one tokenisation and one hash per 4-gram for both sets
            hashes = gram_hashes(text, toks)
        self.near.add(rid, text)
        self.ids.update(rid.encode() + b"\n")
        self.corpus.add(text, hashes)
        self.counts.add(text, toks, hashes)
        self.unsaved += 1

    def _header(self) -> dict:
        return {
            "version": VERSION,
            "stories": len(self.near),
            "ids": self.ids.hexdigest(),
            "minhash": self.near.minhash_scheme(),
            "threshold": self.near.threshold,
            "ngram_bits": NgramSet.BITS,
            "count_bits": CommonGrams.BITS,
            "limit": self.counts.limit,
        }


def ban_limit(ban_common: float, n: int) -> int:
    """Stories a 4-gram must stand in to be kept out of sampling (at least 2)."""
    return max(2, math.ceil(ban_common * n)) if ban_common > 0 else 1 << 30


def open_memory(root: Path, heads: Heads, near_threshold: float, ban_common: float, n: int) -> Memory:
    """The memory of the stories ``heads`` (corpus.jsonl's, already read)
    names: from the saved index where it holds, the rest from the story texts."""
    limit = ban_limit(ban_common, n)
    mem = _load(root / INDEX, heads.ids, near_threshold, limit)
    if mem is None:
        mem = Memory(NearDuplicates(threshold=near_threshold), NgramSet(), CommonGrams(limit), ban=ban_common > 0)
    mem.ban = ban_common > 0
    for i in range(mem.loaded, len(heads)):
        mem.add(heads.ids[i], read_story(root, {"file": heads.files[i]}))
        mem.read += 1
    return mem


def _load(path: Path, ids: list[str], near_threshold: float, limit: int) -> Memory | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(bytes(z["header"]).decode())
            mem = Memory(NearDuplicates(threshold=near_threshold), NgramSet(), CommonGrams(limit), ban=True)
            if header != {**mem._header(), **{k: header.get(k) for k in ("stories", "ids", "limit", "last_signature")}}:
                return None  # another format, MinHash scheme or size
            if limit < header["limit"]:
                return None  # grams below the saved limit were not kept as text
            sigs = _vouched(path.with_name(SIGNATURES), header, ids, mem.near.num_perm, mem.ids)
            if sigs is None:
                return None
            n = len(sigs)
            mem.near.add_signatures(ids[:n], sigs)
            mem.corpus.bits = _dense(z, "ngram_bits", mem.corpus.bits)
            mem.counts.counts = _dense(z, "counts", mem.counts.counts)
            saved_common = bytes(z["common"]).decode().split("\n") if len(z["common"]) else []
    except (OSError, KeyError, ValueError, TypeError, zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError):
        return None
    mem.counts.keep(saved_common)
    mem.loaded = mem.signature_rows = n
    mem.last_signature = header["last_signature"]
    mem.near.drop_signatures()  # they are in index.signatures: not held in memory too
    return mem


def signatures(root: Path, mem: Memory) -> np.ndarray:
    """Every signature of ``mem``'s stories: those saved (index.signatures),
    then those not yet saved (memory holds no others; see save)."""
    width = mem.near.num_perm
    saved = np.fromfile(Path(root) / SIGNATURES, dtype="<u4", count=mem.signature_rows * width) if mem.signature_rows else np.zeros(0, "<u4")
    return np.concatenate([saved.reshape(-1, width).astype(np.uint32), mem.near.signatures_since(mem.signature_rows)])


def saved_signatures(root: Path, ids: list[str], near: NearDuplicates) -> np.ndarray:
    """The signatures index.npz vouches for, for a reader of the folder (the
    shards' join): the rows of its first stories, when its header names
    ``near``'s MinHash scheme and exactly those ids; else none."""
    width = near.num_perm
    none = np.zeros((0, width), dtype=np.uint32)
    try:
        with np.load(Path(root) / INDEX, allow_pickle=False) as z:
            header = json.loads(bytes(z["header"]).decode())
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, UnicodeDecodeError):
        return none
    if header.get("minhash") != near.minhash_scheme():
        return none
    sigs = _vouched(Path(root) / SIGNATURES, header, ids, width, hashlib.sha256())
    return none if sigs is None else sigs


def _vouched(path: Path, header: dict, ids: list[str], width: int, digest: "hashlib._Hash") -> np.ndarray | None:
    """The first header["stories"] rows of the signatures file at ``path``,
    when ``ids`` begin with the stories the header's digest names (``digest``
    is fed their ids) and the file holds them whole; else None."""
    n = header.get("stories")
    if not isinstance(n, int) or not 0 <= n <= len(ids):
        return None
    for rid in ids[:n]:
        digest.update(rid.encode() + b"\n")
    if digest.hexdigest() != header.get("ids"):
        return None  # records dropped or reordered since (verify --repair), or another folder's index
    sigs = np.fromfile(path, dtype="<u4", count=n * width)
    if sigs.size != n * width:
        return None  # the signatures file is shorter than the index says
    sigs = sigs.reshape(n, width).astype(np.uint32, copy=False)
    return sigs if _last_signature(sigs) == header.get("last_signature") else None


def _last_signature(sigs: np.ndarray) -> str:
    """A digest of the last row: a signatures file from another corpus (or cut
    and rewritten) does not pass for this one's."""
    return hashlib.sha256(sigs[-1].astype("<u4").tobytes()).hexdigest()[:16] if len(sigs) else ""


def _sparse(name: str, arr: np.ndarray) -> dict[str, np.ndarray]:
    """``arr`` as saved: whole, or while under a fifth of its bytes are set
    (a young corpus) its non-zero positions and values, so a 3-story corpus
    saves kilobytes, not the 32 MB of its fixed-size bit sets."""
    if 5 * np.count_nonzero(arr) >= arr.size:  # a position (4 bytes) and a value (1) per set byte
        return {name: arr}  # (counted first: flatnonzero of a dense 16 MB array was a tenth of a writer's time)
    at = np.flatnonzero(arr)
    return {f"{name}_at": at.astype(np.uint32), f"{name}_values": arr[at], f"{name}_size": np.array([arr.size], dtype=np.int64)}


def _dense(z, name: str, like: np.ndarray) -> np.ndarray:
    """The array ``_sparse`` saved, whole again (shape and type of ``like``)."""
    if name in z.files:
        out = np.array(z[name])
    else:
        out = np.zeros(int(z[f"{name}_size"][0]), dtype=like.dtype)
        out[z[f"{name}_at"]] = z[f"{name}_values"]
    if out.shape != like.shape or out.dtype != like.dtype:
        raise ValueError(f"{name}: saved with another size")
    return out


PLAN_TAIL = 4096  # bytes of the plan file, before the length the planner counted, that must still match


STATE_FORMAT = 4  # Planner.state()'s layout; 2: tallies per role ("gender:hero"); 3: grams and names in arrays; 4: name_streak


def _plan_tail(data: bytes, end: int) -> str:
    return hashlib.sha256(data[max(0, end - PLAN_TAIL) : end]).hexdigest()


class SavedPlanner(NamedTuple):
    state: dict  # Planner.state()
    end: int  # bytes of the plan file it counted
    waiting_from: int  # where the first card then waiting for its story stood (store.waiting_from)


def load_planner(root: Path) -> SavedPlanner | None:
    """(planner state, bytes of the plan file it counted, waiting from) when the saved
    state still describes the start of the plan; else None. Only the last
    4 KiB before that length are read and hashed (plan.jsonl.gz: the hash of
    compressed members, each with its CRC, names what they hold); an older
    folder's plan.jsonl is also read in pieces and its lines counted."""
    try:
        with np.load(root / INDEX, allow_pickle=False) as z:
            if "planner" not in z.files:
                return None
            saved = json.loads(bytes(z["planner"]).decode())
            if saved["state"].get("format") != STATE_FORMAT:  # tallies kept under other keys: count the plan again
                return None
            from fabula.plan import Planner

            like = Planner.empty_arrays()
            saved["state"]["arrays"] = {k: _dense(z, f"planner_{k}", v) for k, v in like.items()}
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError):
        return None
    end = saved.get("plan_bytes", -1)
    path = plan_path(root)
    size = path.stat().st_size if path.exists() else 0
    if not isinstance(end, int) or not 0 <= end <= size:
        return None
    waiting = saved.get("waiting_from", 0)  # 0 (the whole plan) in a state saved without it
    if not isinstance(waiting, int) or not 0 <= waiting <= end:
        return None
    if not end:
        return SavedPlanner(saved["state"], 0, 0) if saved["state"]["counted"] == 0 else None
    with open(path, "rb") as f:
        f.seek(max(0, end - PLAN_TAIL))
        tail = f.read(end - max(0, end - PLAN_TAIL))
        if saved.get("plan_tail") != _plan_tail(tail, len(tail)):
            return None
        if is_gz(path):
            return SavedPlanner(saved["state"], end, waiting)
        if tail[-1:] != b"\n":
            return None
        f.seek(0)
        lines, left = 0, end
        while left:
            piece = f.read(min(left, 1 << 24))
            lines += piece.count(b"\n")
            left -= len(piece)
    if lines != saved["state"]["counted"]:
        return None
    return SavedPlanner(saved["state"], end, waiting)


def save(root: Path, mem: Memory, planner=None, waiting_from: int = 0) -> None:
    """Append the new signatures to index.signatures, then write index.npz
    whole (with ``planner``'s state when given, and ``waiting_from``: where
    the plan's first card still waiting for its story stands) and rename it
    into place."""
    path = root / INDEX
    tmp = path.with_name(path.name + TMP_SUFFIX)
    new = mem.near.signatures_since(mem.signature_rows)
    row = mem.near.num_perm * 4
    fd = os.open(root / SIGNATURES, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.ftruncate(fd, mem.signature_rows * row)  # rows a killed run appended after the last index.npz
        data, at = memoryview(new.astype("<u4", copy=False).tobytes()), mem.signature_rows * row
        while data:  # pwrite may write less than asked (over 2 GiB at once)
            done = os.pwrite(fd, data, at)
            data, at = data[done:], at + done
        os.fsync(fd)
    finally:
        os.close(fd)
    mem.signature_rows += len(new)
    last = new[-1:] if len(new) else None
    mem.near.drop_signatures()  # on disk now: not held in memory too
    header = {**mem._header(), "last_signature": _last_signature(last) if last is not None else mem.last_signature}
    mem.last_signature = header["last_signature"]
    extra: dict[str, Any] = {}
    if planner is not None:
        plan_end, size, plan = b"", 0, plan_path(root)
        if plan.exists():
            with open(plan, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(0, size - PLAN_TAIL))
                plan_end = f.read()
        saved = {"plan_bytes": size, "plan_tail": _plan_tail(plan_end, len(plan_end)), "waiting_from": min(waiting_from, size), "state": planner.state()}
        extra["planner"] = np.frombuffer(json.dumps(saved, ensure_ascii=False).encode(), dtype=np.uint8)
        for k, v in planner.arrays().items():
            extra.update(_sparse(f"planner_{k}", v))
    with open(tmp, "wb") as f:
        arrays: dict[str, Any] = {
            "header": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
            **_sparse("ngram_bits", mem.corpus.bits),
            **_sparse("counts", mem.counts.counts),
            "common": np.frombuffer("\n".join(sorted(mem.counts.common)).encode(), dtype=np.uint8),
            **extra,
        }
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    mem.unsaved = 0
    save_heads(root)  # the heads cache, up to the records committed now (store.heads_of)
