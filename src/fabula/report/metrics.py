"""Diversity metrics over a folder of .txt stories (any folder, not only fabula's).

Definitions (each also one line in the README):
- compression_ratio: bytes of the stories joined by spaces / bytes of its gzip
  (Shaib et al. 2024); higher = more repetitive.
- self_repetition_4: mean over stories of ln(1 + Σ over the story's distinct
  4-grams of the number of *other* stories holding that 4-gram) (Salkar et al.
  2022, as implemented by Shaib et al. 2024); 0 = no 4-gram shared.
- distinct_n: distinct n-grams / all n-grams over the corpus (Li et al. 2016).
- self_bleu_4: mean BLEU-4 of each story against all others as references
  (Zhu et al. 2018), on a seeded sample of at most 150 stories; add-one
  smoothing for n > 1.
- seq_rep_4: mean within-story share of repeated 4-grams (Welleck et al. 2019).
- near_duplicate_pairs: pairs with MinHash-estimated Jaccard >= 0.5 on word 5-gram shingles.
- stock_phrases_per_1k_words: matches of the stock-phrase list per 1,000 words.
Words are lower-cased runs of letters (see fabula.checks.words).
"""

from __future__ import annotations

import gzip
import math
import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fabula.checks import NearDuplicates, phrase_pattern, repeated_ngram_share, words

SELF_BLEU_SAMPLE = 150
# Stock phrases of model-written spy fiction, counted in every folder so two
# folders are measured with the same ruler (the spy pack bans the same ones).
STOCK_PHRASES = (
    "rain-soaked", "cryptic message", "vanished into the night", "vanishes into the night",
    "into the night", "shadows", "shrouded in mystery", "cat and mouse", "web of deceit",
    "no turning back", "the game was far from over", "piercing eyes", "steely gaze",
    "sent shivers", "little did", "a ghost from the past", "tangled web", "neon lights",
    "calculating gaze", "heart pounding", "only time will tell", "testament to",
)
_NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b([A-Z][a-zà-ÿ]+(?:-[A-Z][a-z]+)?)\b")


@dataclass
class Story:
    id: str
    text: str
    card: dict | None = None


def load_folder(folder: Path) -> list[Story]:
    """Stories of a folder: a fabula corpus (with cards) or any *.txt files."""
    folder = Path(folder)
    corpus = folder / "corpus.jsonl"
    if corpus.exists():
        from fabula.store import read_jsonl

        return [Story(r["id"], (folder / r["file"]).read_text(encoding="utf-8"), r.get("card")) for r in read_jsonl(corpus)]
    files = sorted(folder.glob("*.txt")) or sorted(folder.glob("stories/*.txt"))
    return [Story(p.stem, p.read_text(encoding="utf-8", errors="replace")) for p in files]


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


def near_duplicate_pairs(stories: list[Story], threshold: float = 0.5) -> list[tuple[str, str]]:
    nd = NearDuplicates(threshold=threshold)
    pairs = []
    for s in stories:
        m = nd.minhash(s.text)
        pairs += [(k, s.id) for k in nd._lsh.query(m)]
        nd._lsh.insert(s.id, m)
    return pairs


def _top(counter: Counter, n_stories: int, k: int = 10) -> list[dict]:
    return [{"value": v, "share": round(c / n_stories, 4)} for v, c in counter.most_common(k)]


def recurrence(stories: list[Story]) -> dict[str, list[dict]]:
    """Share of stories holding each value, top 10 per field.

    From the cards when every story has one (fabula corpora); otherwise from
    the text: capitalised words that are not sentence openers (names, places).
    """
    n = len(stories)
    out: dict[str, Counter] = {}
    if stories and all(s.card for s in stories):
        for s in stories:
            c = s.card
            out.setdefault("first_name", Counter()).update({c["hero"]["first"], c["other"]["first"]})
            out.setdefault("surname", Counter()).update({c["hero"]["last"], c["other"]["last"]})
            for slot in ("city", "venue", "weather", "summons", "ending"):
                if slot in c.get("choices", {}):
                    out.setdefault(slot, Counter())[c["choices"][slot]] += 1
    else:
        for s in stories:
            out.setdefault("name", Counter()).update(set(_NAME.findall(s.text)) - _COMMON_CAPS)
    return {k: _top(v, n) for k, v in out.items()}


_COMMON_CAPS = set("The A An He She It They His Her Their Then But And As In On At When For With This That There What Who How If So Mr Mrs I".split())


def stock_phrase_stats(stories: list[Story], total_words: int) -> tuple[float, float, list[dict]]:
    pat = phrase_pattern(STOCK_PHRASES)
    hits, holding, per = 0, 0, Counter()
    for s in stories:
        found = [m.group(0).lower() for m in pat.finditer(s.text)]
        hits += len(found)
        holding += bool(found)
        per.update(set(found))
    n = len(stories) or 1
    return (hits * 1000 / total_words if total_words else 0.0), holding / n, _top(per, n)


def measure(folder: Path, first_words: int | None = None) -> dict[str, Any]:
    """Every metric for one folder; ``first_words`` truncates each story first
    (published human references use the first 250 words)."""
    stories = load_folder(folder)
    if first_words:
        for s in stories:
            s.text = " ".join(s.text.split()[:first_words])
    toks = [[w.lower() for w in words(s.text)] for s in stories]
    lens = [len(t) for t in toks]
    total = sum(lens)
    spk, sp_share, sp_top = stock_phrase_stats(stories, total)
    rec = recurrence(stories)
    top_name_field = "first_name" if "first_name" in rec else "name"
    m: dict[str, Any] = {
        "folder": str(folder),
        "stories": len(stories),
        "words_mean": round(total / len(stories), 1) if stories else 0,
        "words_min": min(lens, default=0),
        "words_max": max(lens, default=0),
        "compression_ratio": round(compression_ratio([s.text for s in stories]), 4),
        "self_repetition_4": round(self_repetition(toks, 4), 4),
        **{f"distinct_{n}": round(distinct(toks, n), 4) for n in (1, 2, 3, 4)},
        "self_bleu_4": round(self_bleu(toks, 4), 4),
        "seq_rep_4": round(sum(repeated_ngram_share(t, 4) for t in toks) / len(toks), 4) if toks else 0.0,
        "near_duplicate_pairs": len(near_duplicate_pairs(stories)),
        "mean_cosine": None,
        "vendi_per_n": None,
        "top_name": (rec.get(top_name_field) or [{"value": None, "share": 0.0}])[0],
        "stock_phrases_per_1k_words": round(spk, 3),
        "stock_phrase_story_share": round(sp_share, 4),
        "stock_phrases_top": sp_top,
        "recurrence": rec,
        "length_histogram": _histogram(lens),
    }
    return m


def _histogram(lens: list[int], width: int = 50) -> dict[str, int]:
    h = Counter((x // width) * width for x in lens)
    return {f"{k}-{k + width - 1}": h[k] for k in sorted(h)}
