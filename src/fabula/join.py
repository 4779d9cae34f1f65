"""Shards written by several drivers, joined into one dataset.

One driver feeds a handful of GPU servers (docs/servers.md); past that, each
driver writes a shard of its own (``--out shard1 --seed 1``, ``--out shard2
--seed 2``, ...). Each shard's writer kept its stories apart from each other
(MinHash LSH, ``fabula.checks.NearDuplicates``); nothing compared one shard's
stories with another's. The join does, with the same signatures, bands and
threshold: the shards in the order given, each story of a later shard against
every story kept from the shards before it. A story that shares a band with
one of them is left out of the join, as the writer would have refused it.

The signatures come from each shard's ``index.signatures`` where its
``index.npz`` vouches for them (the ids it covers are the shard's first
stories, in order), and from the texts for the rest (~1 ms a story).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from fabula import index
from fabula.checks import NearDuplicates
from fabula.errors import UsageError
from fabula.store import MANIFEST, iter_records, read_story


@dataclass
class Shard:
    root: Path
    name: str  # the shard column of the joined rows: the folder as given
    ids: list[str]  # the stories a reader sees, in corpus order
    saved: int = 0  # of them, those whose signature came from index.signatures
    like: dict[str, str] = field(default_factory=dict)  # a story left out -> "shard/id" it is a near-duplicate of


def check_shards(folders: list[Path]) -> list[dict[str, Any]]:
    """Each folder's manifest, or a UsageError (one line) when the folders
    cannot be joined: not a corpus, given twice, another pack, or the same
    pack and seed as another shard (the same cards: every story a repeat)."""
    manifests: list[dict[str, Any]] = []
    seen: dict[Path, Path] = {}
    for folder in folders:
        path = folder / MANIFEST
        if not path.is_file():
            raise UsageError(f"{folder} is not a fabula corpus (no {MANIFEST}); give the folders `fabula write --out` wrote")
        real = folder.resolve()
        if real in seen:
            raise UsageError(f"{folder} is given twice (as {seen[real]} too); give each shard once")
        seen[real] = folder
        try:
            m = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise UsageError(f"{path}: cannot be read ({e}); `fabula verify {folder}` tells what is wrong") from None
        for other, om in zip(folders, manifests):
            if m.get("pack") != om.get("pack"):
                raise UsageError(
                    f"{folder} holds pack {m.get('pack')!r} stories and {other} pack {om.get('pack')!r}; "
                    "join shards of one pack (their columns differ), and export the others on their own"
                )
            if m.get("seed") == om.get("seed"):
                raise UsageError(
                    f"{folder} and {other} were both written with --seed {m.get('seed')}: their cards are the same; write each shard with a --seed of its own"
                )
        manifests.append(m)
    return manifests


def signatures(root: Path, ids: list[str], near: NearDuplicates, records: list[dict[str, Any]]) -> tuple[np.ndarray, int]:
    """((len(ids), num_perm) signatures of a folder's stories, how many of
    them came from index.signatures)."""
    width = near.num_perm
    out = np.empty((len(ids), width), dtype=np.uint32)
    saved = index.saved_signatures(root, ids, near)
    out[: len(saved)] = saved
    for i in range(len(saved), len(ids)):
        out[i] = near.signature(read_story(root, records[i]))
    return out, len(saved)


def cross_duplicates(folders: list[Path], progress: Callable[[str], None] | None = None) -> list[Shard]:
    """Every folder as a Shard, its ``like`` naming the stories that are
    near-duplicates of a story kept from the folders before it."""
    check_shards(folders)
    near = NearDuplicates()
    shards = []
    for k, folder in enumerate(folders):
        records = [{"id": r["id"], "file": r["file"]} for r in iter_records(folder, cards=False)]
        ids = [r["id"] for r in records]
        shard = Shard(folder, str(folder), ids)
        sigs, shard.saved = signatures(folder, ids, near, records)
        del records
        keep = np.ones(len(ids), dtype=bool)
        if k:
            for i, sig in enumerate(sigs):
                hits = near.candidates(sig)
                if hits:
                    shard.like[ids[i]] = min(hits)
                    keep[i] = False
        near.add_signatures([f"{shard.name}/{rid}" for rid, kept in zip(ids, keep) if kept], sigs[keep])
        near.drop_signatures()  # the band index finds them; 512 bytes a story not held twice
        del sigs
        shards.append(shard)
        if progress:
            left = f", {len(shard.like)} near-duplicates of the shards before it" if k else ""
            progress(f"{folder}: {len(ids)} stories ({shard.saved} signatures from its index){left}")
    return shards


def rows(shards: list[Shard]) -> Iterator[dict[str, Any]]:
    """The export rows (fabula.export.rows) of every shard in order, less the
    stories left out, each with a ``shard`` column."""
    from fabula.api import Corpus
    from fabula.export import rows as corpus_rows

    for shard in shards:
        for row in corpus_rows(Corpus(shard.root)):
            if row["id"] not in shard.like:
                yield {"shard": shard.name, **row}
