"""Diversity metrics over a folder of .txt stories (any folder, not only fabula's).

Definitions (each also one line in the README):
- compression_ratio: bytes of the stories joined by spaces / bytes of its gzip
  (Shaib et al. 2024); higher = more repetitive.
- self_repetition_4: mean over stories of ln(1 + Σ over the story's distinct
  4-grams of the number of *other* stories holding that 4-gram) (Salkar et al.
  2022, as implemented by Shaib et al. 2024); 0 = no 4-gram shared. Over a
  seeded sample of at most 20,000 stories (self_repetition_stories says how
  many): every story of a smaller corpus.
- distinct_n: distinct n-grams / all n-grams over the corpus (Li et al. 2016);
  exact up to 2^22 distinct n-grams, past that estimated by adaptive distinct
  sampling (Gibbons 2001: relative error ~0.1 %; distinct_estimated says so).
- self_bleu_4: mean BLEU-4 of each story against all others as references
  (Zhu et al. 2018), on a seeded sample of at most 150 stories; add-one
  smoothing for n > 1.
- seq_rep_4: mean within-story share of repeated 4-grams (Welleck et al. 2019).
- near_duplicate_pairs: pairs with MinHash-estimated Jaccard >= 0.5 on word 5-gram shingles.
- stock_phrases_per_1k_words: matches of the stock-phrase list per 1,000 words
  (a pack's ``[report] stock_phrases``: see stock_ruler).
Words are lower-cased runs of letters (see fabula.text.words).

A folder of more than ``TEXT_SAMPLE`` stories (``--sample``) is measured on a
seeded sample of that many: the stories whose ids hash lowest (blake2b), the
same whatever the order or the run; ``stories`` is the folder's count and
``measured_stories`` the sample's, and every other figure is the sample's.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import random
import re
import sys
import time
import zlib
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from fabula.checks import NearDuplicates
from fabula.text import PhraseGate, word_hashes, words
from fabula.text import _mix as mix64  # a bijection of 64-bit values that spreads them evenly: a share of them is a fair sample

SELF_BLEU_SAMPLE = 150
READING_SAMPLE = 50  # stories in the HTML reading pane (seeded sample when more)
DEFAULT_RULER = "spy"  # the default pack: its stock phrases measure folders that name no pack


def stock_ruler(folders) -> tuple[str, tuple[str, ...]]:
    """(pack name, phrases): the ``[report] stock_phrases`` of the pack the
    first fabula corpus among ``folders`` was written with (its fabula.json),
    else of the default pack. One ruler for every folder of a report, so two
    folders are measured alike."""
    from fabula.packs import builtin_names, load_pack

    name = DEFAULT_RULER
    for folder in folders:
        try:
            pack = json.loads((Path(folder) / "fabula.json").read_text(encoding="utf-8")).get("pack")
        except (OSError, ValueError, AttributeError):
            continue
        if pack in builtin_names():
            name = pack
            break
    return name, load_pack(name).stock_phrases


_NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b([A-Z][a-zà-ÿ]+(?:-[A-Z][a-z]+)?)\b")
# Capitalised words that are not names: sentence glue and demonyms.
_COMMON_CAPS = set(
    "The A An He She It They His Her Their Then But And As In On At When For With This That There What Who How If So "
    "Mr Mrs I We You My Our Its One No Not Yes After Before Years Every Nothing Nobody Slowly Afterwards "
    "Russian Soviet Ukrainian Latvian Lithuanian Estonian Georgian Polish Czech Slovak Hungarian Romanian Bulgarian "
    "German English British American French Italian Spanish Swedish Finnish Dutch Turkish Western Eastern".split()
)


@lru_cache(maxsize=1)  # ~40,000 names: once, not once a story
def _person_names() -> frozenset[str]:
    from fabula.score import NAME_WORDS, known_first_names

    return known_first_names() - NAME_WORDS


TEXT_SAMPLE = 100_000  # stories a report measures at most (a seeded sample of a larger folder: ~5 min on 2 cores)
SEMANTIC_SAMPLE = 2000  # stories embedded at most (seeded sample); the rest of the report uses all
SELF_REP_SAMPLE = 20_000  # stories whose 4-grams self-repetition compares (seeded sample: 4 KB each)
DISTINCT_CAP = 1 << 22  # distinct n-gram hashes kept per n (32 MiB) before distinct_n is estimated
_P = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit multiplier for n-gram hashes


@dataclass
class Story:
    id: str
    text: str
    card: dict | None = None


def iter_folder(folder: Path, only: set[str] | None = None) -> Iterator[Story]:
    """Stories of a folder, one at a time: a fabula corpus (with cards, in
    index order) or any *.txt files (sorted by name); ``only``: those ids."""
    from fabula.store import CORPUS, stories

    folder = Path(folder)
    if (folder / CORPUS).exists():
        # What a reader sees (fabula.store.stories: committed, file present,
        # once, UTF-8); `fabula report` warns when records say otherwise.
        for r, text in stories(folder, only=only):
            yield Story(r["id"], text, r.get("card"))
        return
    for p in _txt_files(folder):
        if only is None or p.stem in only:
            yield Story(p.stem, p.read_text(encoding="utf-8", errors="replace"))


def _txt_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.txt")) or sorted(folder.glob("stories/*.txt"))


def folder_ids(folder: Path) -> list[str]:
    """The ids of a folder's stories, without reading them (a fabula corpus:
    its records' heads, each once; else the .txt files' names)."""
    from fabula.store import CORPUS, read_heads

    folder = Path(folder)
    if (folder / CORPUS).exists():
        return list(dict.fromkeys(read_heads(folder / CORPUS).ids))
    return [p.stem for p in _txt_files(folder)]


def sample_ids(ids: list[str], k: int) -> set[str]:
    """The ``k`` ids whose blake2b-64 hashes are lowest: a uniform sample
    that depends on the ids alone (not their order, the run or the machine)."""
    if len(ids) <= k:
        return set(ids)
    h = np.fromiter((int.from_bytes(hashlib.blake2b(i.encode(), digest_size=8).digest(), "little") for i in ids), dtype=np.uint64, count=len(ids))
    keep = np.argpartition(h, k - 1)[:k]
    return {ids[j] for j in keep.tolist()}


def ngrams(toks: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)]


def compression_ratio(texts: list[str]) -> float:
    raw = " ".join(texts).encode("utf-8")
    return len(raw) / len(gzip.compress(raw)) if raw else 0.0


def self_repetition(token_lists: list[list[str]], n: int = 4) -> float:
    docs = [set(ngrams(t, n)) for t in token_lists]
    df = Counter(g for d in docs for g in d)
    if not docs:
        return 0.0
    return sum(math.log(1 + sum(df[g] - 1 for g in d)) for d in docs) / len(docs)


def distinct(token_lists: list[list[str]], n: int) -> float:
    total, seen = 0, set()
    for t in token_lists:
        g = ngrams(t, n)
        total += len(g)
        seen.update(g)
    return len(seen) / total if total else 0.0


def self_bleu(token_lists: list[list[str]], n: int = 4, sample: int = SELF_BLEU_SAMPLE, seed: int = 0) -> float:
    """Mean BLEU-n of each story against all the others (references)."""
    docs = list(token_lists)
    if len(docs) > sample:
        docs = random.Random(seed).sample(docs, sample)
    if len(docs) < 2:
        return 0.0
    counts = [[Counter(ngrams(d, k)) for k in range(1, n + 1)] for d in docs]
    # For clipping: the two largest counts of every n-gram across docs, so the
    # max over "all other docs" is found without an N x N loop per n-gram.
    top2: list[dict] = []
    for k in range(n):
        best: dict[tuple, list] = {}
        for i, c in enumerate(counts):
            for g, v in c[k].items():
                b = best.setdefault(g, [(0, -1), (0, -1)])
                if v > b[0][0]:
                    b[1], b[0] = b[0], (v, i)
                elif v > b[1][0]:
                    b[1] = (v, i)
        top2.append(best)
    lengths = [len(d) for d in docs]
    scores = []
    for i, d in enumerate(docs):
        if not d:
            continue
        logp = 0.0
        for k in range(n):
            hyp = counts[i][k]
            total = sum(hyp.values())
            match = 0
            for g, v in hyp.items():
                b = top2[k][g]
                ref = b[0][0] if b[0][1] != i else b[1][0]
                match += min(v, ref)
            if k == 0:
                p = match / total if total else 0.0
            else:
                p = (match + 1) / (total + 1)
            if p == 0:
                logp = -math.inf
                break
            logp += math.log(p) / n
        others = [lengths[j] for j in range(len(docs)) if j != i]
        ref_len = min(others, key=lambda r: (abs(r - len(d)), r))
        bp = 1.0 if len(d) > ref_len else math.exp(1 - ref_len / len(d))
        scores.append(0.0 if logp == -math.inf else bp * math.exp(logp))
    return sum(scores) / len(scores) if scores else 0.0


def _top(counter: Counter, n_stories: int, k: int = 10) -> list[dict]:
    return [{"value": v, "share": round(c / n_stories, 4)} for v, c in counter.most_common(k)]


class _Reservoir:
    """A seeded uniform sample of at most k items from a stream (Algorithm R)."""

    def __init__(self, k: int, seed: int = 0):
        self.k, self.rng, self.seen = k, random.Random(seed), 0
        self.items: list = []

    def add(self, item) -> None:
        self.seen += 1
        if len(self.items) < self.k:
            self.items.append(item)
        else:
            j = self.rng.randrange(self.seen)
            if j < self.k:
                self.items[j] = item


def _uniq(a: np.ndarray) -> np.ndarray:
    """np.unique of a 1-d array, by sorting (numpy 2's hash-based unique took
    ~1.4 s on 2.5 million uint64 here, a sort 0.2 s)."""
    if len(a) < 2:
        return a.copy()
    s = np.sort(a)
    keep = np.empty(len(s), dtype=bool)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]


def _gram_hashes(ids: np.ndarray, n: int) -> np.ndarray:
    """64-bit hashes of the n-grams of an array of word hashes (polynomial, wrapping)."""
    if len(ids) < n:
        return np.empty(0, dtype=np.uint64)
    h = np.zeros(len(ids) - n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(n):
            h = h * _P + ids[k : len(ids) - n + 1 + k]
    return h


class _Distinct:
    """How many distinct values among the hashes added: exact while at most
    ``cap`` are distinct; past that, adaptive distinct sampling (Gibbons 2001)
    keeps only the mixed hashes below 2^(64-level), raising the level each
    time they pass ``cap``, and counts them x 2^level. Memory: ~2 x cap
    hashes, whatever the corpus size."""

    def __init__(self, cap: int = DISTINCT_CAP):
        self.cap, self.level, self.total = cap, 0, 0
        self.kept = np.empty(0, dtype=np.uint64)
        self.pending: list[np.ndarray] = []
        self.waiting = 0

    def add(self, hashes: np.ndarray) -> None:
        self.total += len(hashes)
        m = mix64(hashes)
        if self.level:
            m = m[m < np.uint64(1 << (64 - self.level))]
        self.pending.append(m)
        self.waiting += len(m)
        if self.waiting >= self.cap:
            self._merge()

    def _merge(self) -> None:
        if self.pending:
            self.kept = _uniq(np.concatenate([self.kept, *self.pending]))
            self.pending, self.waiting = [], 0
        while len(self.kept) > self.cap:
            self.level += 1
            self.kept = self.kept[self.kept < np.uint64(1 << (64 - self.level))]

    @property
    def estimated(self) -> bool:
        self._merge()
        return self.level > 0

    def share(self) -> float:
        """distinct / all."""
        self._merge()
        return len(self.kept) * 2**self.level / self.total if self.total else 0.0


def measure(
    folder: Path,
    first_words: int | None = None,
    semantic: bool = True,
    sample: int = READING_SAMPLE,
    ruler: tuple[str, tuple[str, ...]] | None = None,
    progress: bool = False,
    most: int | None = TEXT_SAMPLE,
    stories: set[str] | None = None,
) -> dict[str, Any]:
    """Every metric for one folder, in one streaming pass, in memory that
    stops growing with N (bar the near-duplicate index, ~0.8 KB a story):
    distinct_n from at most DISTINCT_CAP hashes per n; self-repetition,
    self-BLEU, the semantic metrics and the reading pane on seeded samples.
    ``first_words`` truncates each story first (human references use 250);
    ``ruler``: the stock phrases counted (stock_ruler; default: this folder's).
    ``progress``: bars on stderr while reading and while embedding (the
    slow part); ``_seconds`` in the result says what each part took.
    ``most``: a folder of more stories is measured on a seeded sample of
    this many (sample_ids; None or 0: every story). ``stories``: measure
    only the stories of these ids (a bench comparing two folders on the
    cards both hold)."""
    started = time.perf_counter()
    story_ids = folder_ids(folder) if most else []
    only = sample_ids(story_ids, most) if most and len(story_ids) > most else None
    if stories is not None:
        only = set(stories) if only is None else only & set(stories)
    ruler = ruler or stock_ruler([folder])
    distinct = {n: _Distinct() for n in (1, 2, 3, 4)}
    doc4 = _Reservoir(SELF_REP_SAMPLE, seed=0)  # sampled stories' distinct 4-gram hashes (for self-repetition)
    lens: list[int] = []
    seq_rep = 0.0
    gz = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip format, gzip.compress's level
    raw_bytes = gz_bytes = 0
    bleu = _Reservoir(SELF_BLEU_SAMPLE, seed=0)
    sem_sample = _Reservoir(SEMANTIC_SAMPLE, seed=0)
    reading = _Reservoir(sample, seed=0)
    nd = NearDuplicates(threshold=0.5)
    near_pairs = 0
    stock = PhraseGate(ruler[1])  # no phrases: never a match
    stock_hits, stock_stories, stock_per = 0, 0, Counter[str]()
    rec: dict[str, Counter] = {}
    labels: dict[tuple[str, str], str] = {}
    all_cards = True
    n = 0
    label = f"reading {folder}" + (f" (a sample of {len(only):,} of {len(story_ids):,} stories)" if only is not None else "")
    for st in _bar(iter_folder(folder, only), progress, label, "story", total=len(only) if only is not None else None):
        text = st.text if not first_words else " ".join(st.text.split()[:first_words])
        toks = [w.lower() for w in words(text)]
        ids = word_hashes(toks)  # each distinct word hashed once per process; the MinHash below shares them
        hashes = {k: _gram_hashes(ids, k) for k in distinct}
        for k, d in distinct.items():
            d.add(hashes[k])
        g4 = hashes[4]
        u4 = _uniq(g4)
        doc4.add(u4)
        seq_rep += 1.0 - len(u4) / len(g4) if len(g4) else 0.0
        lens.append(len(toks))
        chunk = (" " if n else "").encode() + text.encode("utf-8")
        raw_bytes += len(chunk)
        gz_bytes += len(gz.compress(chunk))
        bleu.add(toks)
        sem_sample.add(text)
        reading.add(Story(st.id, text, st.card))
        sig = nd.signature_of(ids)
        near_pairs += len(nd.candidates(sig))
        nd.add_signatures([f"{n}:{st.id}"], sig[None, :])
        found = [x.group(0).lower() for x in stock.finditer(text)]
        stock_hits += len(found)
        stock_stories += bool(found)
        stock_per.update(set(found))
        all_cards = all_cards and bool(st.card)
        _recur(rec, st, text, labels)
        n += 1
    gz_bytes += len(gz.flush())
    total = sum(lens)
    if n:
        docs = doc4.items
        all4 = np.concatenate(docs)
        _, inverse, counts = np.unique(all4, return_inverse=True, return_counts=True)
        shared = counts[inverse] - 1  # other stories holding each of a story's distinct 4-grams
        bounds = np.cumsum([0] + [len(d) for d in docs])
        self_rep = float(np.mean([math.log(1 + int(shared[a:b].sum())) for a, b in zip(bounds[:-1], bounds[1:])]))
    else:
        self_rep = 0.0
    if not (all_cards and n):  # card fields only where every story has its card
        rec = {"name": rec.get("name", Counter())}
    rec_top = {k: _top(v, n) for k, v in rec.items()}
    top_field = "first_name" if "first_name" in rec_top else "name"
    result: dict[str, Any] = {
        "folder": str(folder),
        "stories": len(story_ids) if only is not None and stories is None else n,
        "measured_stories": n,
        "words_mean": round(total / n, 1) if n else 0,
        "words_min": min(lens, default=0),
        "words_max": max(lens, default=0),
        "compression_ratio": round(raw_bytes / gz_bytes, 4) if raw_bytes else 0.0,
        "self_repetition_4": round(self_rep, 4),
        "self_repetition_stories": len(doc4.items),
        **{f"distinct_{k}": round(d.share(), 4) for k, d in distinct.items()},
        "distinct_estimated": any(d.estimated for d in distinct.values()),
        "self_bleu_4": round(self_bleu(bleu.items, 4, sample=SELF_BLEU_SAMPLE), 4),
        "seq_rep_4": round(seq_rep / n, 4) if n else 0.0,
        "near_duplicate_pairs": near_pairs,
        "mean_cosine": None,
        "vendi_per_n": None,
        "semantic_stories": 0,
        "top_name": (rec_top.get(top_field) or [{"value": None, "share": 0.0}])[0],
        "stock_phrases_per_1k_words": round(stock_hits * 1000 / total, 3) if total else 0.0,
        "stock_phrases_of": ruler[0],
        "stock_phrase_story_share": round(stock_stories / n, 4) if n else 0.0,
        "stock_phrases_top": _top(stock_per, n or 1),
        "recurrence": rec_top,
        "length_histogram": _histogram(lens),
    }
    result["_reading"] = reading.items  # for the HTML pane; not written to JSON
    result["_lengths"] = lens  # words per story, for the length plot
    result["_vectors"] = None  # story embeddings (semantic sample), for the map
    result["_seconds"] = {"lexical": time.perf_counter() - started, "semantic": 0.0}
    if semantic and n:
        from fabula.reporting import semantic as sem

        started = time.perf_counter()  # torch's import and the model's load count as the semantic part's
        if sem.available():
            label = f"semantic metrics: embedding {len(sem_sample.items)} stories (--no-semantic skips this)"
            with _bar(None, progress, label, "story", total=len(sem_sample.items)) as bar:
                x = sem.story_vectors(sem_sample.items, on_done=bar.update)
            result["_seconds"]["semantic"] = time.perf_counter() - started
            result["mean_cosine"] = round(sem.mean_cosine(x), 4)
            result["vendi_per_n"] = round(sem.vendi_per_n(x), 4)
            result["semantic_stories"] = len(sem_sample.items)
            result["_vectors"] = x
    return result


def _bar(items, on: bool, label: str, unit: str, total: int | None = None):
    """A progress bar on stderr (tqdm), or none; off a terminal one line every 30 s."""
    from tqdm.auto import tqdm

    interval = 0.1 if sys.stderr.isatty() else 30.0
    return tqdm(items, total=total, desc=label, unit=unit, disable=not on, mininterval=interval, leave=False, dynamic_ncols=True)


def _recur(rec: dict[str, Counter], st: Story, text: str, labels: dict[tuple[str, str], str]) -> None:
    """``labels``: (slot, motif) -> the wording shown for it, per measure() call."""
    c = st.card
    if c:
        # sorted: a set's order changes with each process's hash seed, and
        # ties in the top-10 lists keep insertion order (same corpus, same report)
        cast = list(c["cast"].values()) if "cast" in c else [c["hero"], c["other"]]  # plans before roles: hero, other
        rec.setdefault("first_name", Counter()).update(sorted({ch["first"] for ch in cast}))
        rec.setdefault("surname", Counter()).update(sorted({ch["last"] for ch in cast if ch["last"]}))
        for slot, raw in c.get("choices", {}).items():
            # Counted by motif (the pack value the caps count); shown as a
            # reader saw it: the story's own wording of the first story
            # that used it (a value may hold grammar and placeholders).
            label = labels.setdefault((slot, raw), c.get("slots", {}).get(slot, raw))
            rec.setdefault(slot, Counter())[label] += 1
    # People, not places: a capitalised word counts as a name when the first-name
    # lists of every locale fabula draws from hold it (Faker's), so "Tokyo" in
    # every seed is not the "most common name"; words that are also common
    # nouns or months ("May", "Rose", "Paris") are left out.
    people = _person_names()
    rec.setdefault("name", Counter()).update(sorted({w for w in _NAME.findall(text) if w in people} - _COMMON_CAPS))


def _histogram(lens: list[int], width: int = 50) -> dict[str, int]:
    h = Counter((x // width) * width for x in lens)
    return {f"{k}-{k + width - 1}": h[k] for k in sorted(h)}
