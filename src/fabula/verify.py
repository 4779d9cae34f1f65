"""fsck for a corpus folder: does every record have its whole story, once?

``verify(root)`` reads a corpus folder without locking it and lists every
fault, one ``Fault`` each:

- ``missing``     a record whose story file is gone
- ``edited``      a story file whose text no longer matches the hash in its name and record
- ``undecodable`` a story file that is not UTF-8 text (damaged, or saved in another encoding)
- ``duplicate``   a story id or index recorded twice
- ``torn``        a last line of a JSONL file with no newline, or a last part of
                  plan.jsonl.gz cut short (a write was cut off)
- ``unplanned``   a record whose card is not in the plan
- ``other-pack``  a record written with another pack than the manifest's
- ``stray``       a file in stories/ that no record names
- ``temporary``   a leftover ``*.tmp`` file

``repair(root, faults)`` (the writer lock held) makes the folder whole again
without deleting anything a user may want: damaged and orphaned files move to
``quarantine/`` (with a line in ``quarantine/quarantine.jsonl`` each), their
records are dropped from corpus.jsonl, and the next ``fabula write`` rewrites
those cards with new attempts.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fabula import plan_file
from fabula.errors import StoreError
from fabula.plan_file import plan_path
from fabula.store import (
    CORPUS,
    FAILED,
    MANIFEST,
    QUARANTINE,
    QUARANTINE_LOG,
    REJECTS,
    STORIES,
    TMP_SUFFIX,
    Undecodable,
    _loads,
    append_line,
    is_torn,
    iter_jsonl,
    planned_ids,
    read_jsonl,
    read_story,
    scan_jsonl,
    text_hash,
    write_atomic,
    writer_pid,
)


@dataclass(frozen=True)
class Fault:
    kind: str
    path: str  # relative to the corpus folder
    detail: str
    line: int | None = None  # corpus.jsonl line of the record at fault (1-based)

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{self.kind}: {where}: {self.detail}"


@dataclass
class Check:
    stories: int  # whole stories: recorded once, file present, text matching its hash
    records: int
    files: int  # .txt files in stories/
    faults: list[Fault]
    writer: int | None = None  # PID of a writer at work on the folder
    in_flight: list[Fault] = field(default_factory=list)  # its uncommitted files: not faults while it runs


def verify(root: str | Path, hashes: bool = True) -> Check:
    """Every fault of the folder; ``hashes`` False skips reading the texts
    (the cheap check a writer runs when it opens the folder)."""
    root = Path(root)
    if not (root / MANIFEST).exists():
        raise StoreError(f"{root} is not a fabula corpus (no {MANIFEST}); give the folder `fabula write --out` wrote")
    # Asked before reading and again after: a writer that commits its last
    # story and exits in between still counts as at work for what it left in flight.
    writer_before = writer_pid(root)
    manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    faults: list[Fault] = []
    # Streamed, so that memory grows only with the ids and file names kept
    # (~0.3 KB a story), not with the records and cards (~20 KB a story parsed).
    plan = plan_path(root)
    if plan_file.is_torn(plan):
        what = "the last part is cut short" if plan_file.is_gz(plan) else "the last line has no newline"
        faults.append(Fault("torn", plan.name, f"{what}: a write was cut off"))
    for name in (CORPUS, REJECTS, FAILED):
        if is_torn(root / name):
            faults.append(Fault("torn", name, "the last line has no newline: a write was cut off"))
    # corpus.jsonl as long as it is now, read after the plan: a writer appends
    # a card's plan line before its story's record, so every record read has
    # its card in the plan read (records appended after are a commit in flight).
    corpus_end = (root / CORPUS).stat().st_size if (root / CORPUS).exists() else 0
    planned = planned_ids(root)
    ids: Counter = Counter()
    indexes: Counter = Counter()
    named: set[str] = set()
    whole = records = 0
    for line, raw in iter_jsonl(root / CORPUS, end=corpus_end):
        r = _loads(root / CORPUS, line, raw)
        records += 1
        rel = r.get("file", "")
        named.add(rel)
        ids[r.get("id")] += 1
        indexes[r.get("index")] += 1
        if ids[r.get("id")] > 1 or indexes[r.get("index")] > 1:
            faults.append(Fault("duplicate", CORPUS, f"story {r.get('id')} (index {r.get('index')}) is recorded more than once", line))
            continue
        ok = True
        card_id = (r.get("card") or {}).get("id")
        if card_id not in planned:
            faults.append(Fault("unplanned", CORPUS, f"story {r.get('id')} was written from card {card_id}, which {plan.name} does not hold", line))
            ok = False
        pack = (r.get("pack") or {}).get("name")
        if pack is not None and pack != manifest.get("pack"):
            faults.append(Fault("other-pack", CORPUS, f"story {r.get('id')} was written with pack {pack!r}, the folder with {manifest.get('pack')!r}", line))
            ok = False
        path = root / rel
        if not rel or not path.is_file():
            faults.append(Fault("missing", rel or CORPUS, f"story {r.get('id')} is recorded but its file is gone", line))
            continue
        if hashes:
            try:
                h = text_hash(read_story(root, r))
            except Undecodable:
                faults.append(Fault("undecodable", rel, "the file is not UTF-8 text (damaged, or saved in another encoding)", line))
                continue
            if not str(r.get("id", "")).endswith("_" + h) or not path.stem.endswith("_" + h):
                faults.append(Fault("edited", rel, "the text no longer matches the hash in its name and record (edited or damaged)", line))
                continue
        whole += ok
    files = 0
    stories = root / STORIES
    if stories.is_dir():
        for p in sorted(stories.iterdir()):
            rel = f"{STORIES}/{p.name}"
            if p.name.endswith(TMP_SUFFIX):
                faults.append(Fault("temporary", rel, "a temporary file a killed run left"))
                continue
            files += p.suffix == ".txt"
            if rel not in named:
                faults.append(Fault("stray", rel, "no record names this file"))
    for p in sorted(root.iterdir()):
        if p.name.endswith(TMP_SUFFIX):
            faults.append(Fault("temporary", p.name, "a temporary file a killed run left"))
    writer = writer_pid(root) or writer_before
    if writer is None:
        return Check(stories=whole, records=records, files=files, faults=faults)
    # A writer at work: its temporary file, its story renamed into place but
    # not yet recorded, its record half appended are a commit in progress.
    moving = [f for f in faults if f.kind in ("temporary", "stray", "torn")]
    return Check(
        stories=whole,
        records=records,
        files=files - sum(f.kind == "stray" for f in moving),
        faults=[f for f in faults if f not in moving],
        writer=writer,
        in_flight=moving,
    )


def repair(root: str | Path, check: Check) -> list[str]:
    """Make the folder whole (see the module docstring); returns one line per
    action. The caller holds the writer lock."""
    root = Path(root)
    q = root / QUARANTINE
    actions: list[str] = []

    def quarantine(rel: str, reason: str, record: dict[str, Any] | None = None) -> None:
        src = root / rel
        q.mkdir(exist_ok=True)
        dst = q / src.name
        n = 1
        while dst.exists():  # never overwrite an earlier quarantined file
            dst = q / f"{src.stem}.{n}{src.suffix}"
            n += 1
        shutil.move(str(src), dst)
        append_line(q / QUARANTINE_LOG, {"file": rel, "moved_to": f"{QUARANTINE}/{dst.name}", "reason": reason, **({"record": record} if record else {})})
        actions.append(f"moved {rel} to {QUARANTINE}/{dst.name} ({reason})")

    plan = plan_path(root)
    if any(f.kind == "torn" and f.path == plan.name for f in check.faults) and plan_file.cut_torn(plan):
        actions.append(f"cut the torn {'last part' if plan_file.is_gz(plan) else 'last line'} of {plan.name}")
    for name in (CORPUS, REJECTS, FAILED):
        if any(f.kind == "torn" and f.path == name for f in check.faults):
            read_jsonl(root / name, repair=True)
            actions.append(f"cut the torn last line of {name}")
    drop = {f.line for f in check.faults if f.line and f.kind in ("duplicate", "missing", "edited", "undecodable", "unplanned", "other-pack")}
    records, _ = scan_jsonl(root / CORPUS)
    for line, r in records:
        if line not in drop:
            continue
        kind = next(f.kind for f in check.faults if f.line == line)
        if kind != "duplicate" and (root / r["file"]).is_file():
            quarantine(r["file"], kind, r)
        elif kind == "missing":  # nothing to move; the log still says which draft was lost
            q.mkdir(exist_ok=True)
            append_line(q / QUARANTINE_LOG, {"file": r.get("file"), "moved_to": None, "reason": kind, "record": r})
        if kind == "duplicate":
            actions.append(f"dropped line {line} of {CORPUS}, a second record of story {r.get('id')}")
        else:
            actions.append(f"dropped the record of story {r.get('id')} ({kind}); the next write rewrites its card")
    if drop:
        kept = [r for line, r in records if line not in drop]
        write_atomic(root / CORPUS, "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in kept))
        still = {r.get("file") for r in kept}
        for line, r in records:  # a duplicate index with its own text: that file is now unrecorded
            if line in drop and r.get("file") not in still and (root / r["file"]).is_file():
                quarantine(r["file"], "duplicate", r)
    for f in check.faults:
        if f.kind in ("stray", "temporary") and (root / f.path).exists():
            quarantine(f.path, f.kind)
    return actions


def quarantined_attempts(root: str | Path) -> dict[int, int]:
    """Card id → the next attempt to use for a card whose story was quarantined
    (so the rewrite is a new draft, not the same text again)."""
    out: dict[int, int] = {}
    for r in read_jsonl(Path(root) / QUARANTINE / QUARANTINE_LOG):
        rec = r.get("record") or {}
        cid = (rec.get("card") or {}).get("id")
        if cid is not None:
            out[cid] = max(out.get(cid, 0), int(rec.get("attempt", 0)) + 1)
    return out
