"""Diversity of a real corpus: N stories from the embedded model, reported
beside the reference seeds (the reference, measured in the same run), on the
first 250 words of each story as the published human references use.

    python bench/diversity.py --n 100                    # writes bench/out/diversity-100 (resumable)
    python bench/diversity.py --n 100 --seeds PATH       # reference folder (default ../shared/reference/seeds)
    python bench/diversity.py --pack bedtime --n 100     # another pack: bench/out/diversity-bedtime-100

Prints the side-by-side table, the ratio corpus / reference for each lexical
metric, every goal with met / missed, and the card-based recurrence.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from fabula.checks import holds_word, words  # noqa: E402
from fabula.genre import Genre  # noqa: E402
from fabula.packs import load_pack  # noqa: E402
from fabula.records import Card  # noqa: E402
from fabula.reporting.metrics import compression_ratio, iter_folder, measure, self_bleu, self_repetition  # noqa: E402
from fabula.score import TERMS, coverage, story_slips  # noqa: E402
from fabula.store import iter_records  # noqa: E402

HERE = Path(__file__).resolve().parent
# (key, label, goal, lower is better)
GOALS = [
    # What a 7B model reaches writing to 64 different human prompts (issue 9).
    ("compression_ratio", "compression ratio", 2.55),
    ("self_repetition_4", "self-repetition (4-grams)", 1.8),
    ("self_bleu_4", "self-BLEU-4", 0.10),
    ("mean_cosine", "mean pairwise cosine", 0.40),
    ("near_duplicate_pairs", "near-duplicate pairs", 0),
    ("stock_phrase_story_share", "stories with a stock phrase", 0.02),
]


def recur_goals(pack, n: int) -> list[tuple[str, float]]:
    """The top share each recurrence may reach: the pack's caps (first names,
    every slot), a count cap (>= 1) as its share of n."""
    return [(k, c if c < 1 else c / n) for k, c in [("first_name", pack.cap("first_name"))] + [(s, pack.cap(s)) for s in pack.slots]]


def at_size(texts: list[str], tokens: list[list[str]], size: int, draws: int = 20) -> dict[str, float] | None:
    """The lexical metrics of ``draws`` random ``size``-story subsets
    (seeded), averaged: each grows with the number of stories (self-BLEU
    matches a story against all the others, self-repetition counts the other
    stories that share its 4-grams, gzip finds more repeats in more text),
    so corpora of different sizes are compared at one size. ``tokens``: each
    text's lower-cased words (``lowered_words``)."""
    import random

    if len(texts) < size:
        return None
    rng = random.Random(0)
    sums = {"compression_ratio": 0.0, "self_repetition_4": 0.0, "self_bleu_4": 0.0}
    for _ in range(draws):
        sub = rng.sample(range(len(texts)), size)
        sums["compression_ratio"] += compression_ratio([texts[i] for i in sub])
        sums["self_repetition_4"] += self_repetition([tokens[i] for i in sub])
        sums["self_bleu_4"] += self_bleu([tokens[i] for i in sub])
    return {k: v / draws for k, v in sums.items()}


def lowered_words(texts: list[str]) -> list[list[str]]:
    return [[w.lower() for w in words(t)] for t in texts]


def shared_shares(tokens: list[list[str]], top: int = 4) -> dict[int, float]:
    """For n = 1..top: the share of a story's word n-grams (with repeats)
    that at least one other story holds, averaged over the stories; what
    self-BLEU's n-gram precisions count before clipping."""
    out = {}
    for n in range(1, top + 1):
        grams = [Counter(tuple(t[i : i + n]) for i in range(len(t) - n + 1)) for t in tokens]
        df = Counter(g for c in grams for g in c)
        shares = [sum(v for g, v in c.items() if df[g] > 1) / sum(c.values()) for c in grams if c]
        out[n] = sum(shares) / len(shares) if shares else 0.0
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--pack", default="spy", help="built-in pack name or a .toml path")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--seeds", type=Path, default=HERE.parent.parent / "shared" / "reference" / "seeds")
    ap.add_argument("--first-words", type=int, default=250)
    ap.add_argument("extra", nargs="*", help="more options for fabula write (after --), e.g. -- --mode beats")
    a = ap.parse_args()
    pack = load_pack(a.pack)
    out = a.out or HERE / "out" / (f"diversity-{a.n}" if a.pack == "spy" else f"diversity-{pack.name}-{a.n}")
    cmd = [sys.executable, "-m", "fabula", "write", "-n", str(a.n), "--seed", str(a.seed), "--pack", a.pack, "--out", str(out), *a.extra]
    print("$", " ".join(cmd[2:]), flush=True)
    subprocess.run(cmd, check=True)

    corpus = measure(out, first_words=a.first_words)
    ref = measure(a.seeds, first_words=a.first_words)
    print(f"\nfirst {a.first_words} words of each story")
    print(f"{'metric':<30}{'fabula':>10}{'seeds':>10}{'ratio':>8}{'goal':>8}  verdict")
    missed = []
    for key, label, goal in GOALS:
        c, r = corpus[key], ref[key]
        ratio = f"{c / r:.2f}" if isinstance(c, (int, float)) and isinstance(r, (int, float)) and r else "-"
        ok = c is not None and c <= goal
        missed += [] if ok else [label]
        show = lambda v: "n/a" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))  # noqa: E731
        print(f"{label:<30}{show(c):>10}{show(r):>10}{ratio:>8}{goal:>8}  {'met' if ok else 'MISSED'}")
    for field, goal in recur_goals(pack, a.n):
        top = (corpus["recurrence"].get(field) or [{"value": None, "share": 0.0}])[0]
        ok = top["share"] <= goal
        missed += [] if ok else [f"top {field}"]
        print(f"{'top ' + field:<30}{top['share']:>10.0%}{'':>10}{'':>8}{goal:>8.0%}  {'met' if ok else 'MISSED'}  ({top['value']})")
    firsts = [" ".join(st.text.split()[: a.first_words]) for st in iter_folder(out)]  # what measure() reads
    first_tokens = lowered_words(firsts)
    print(
        "n-grams of a story that another story also holds (mean share; BLEU-4 is about their geometric mean): "
        + ", ".join(f"{n}-grams {v:.3f}" for n, v in shared_shares(first_tokens).items())
    )
    for size, why in ((ref["stories"], "the seeds' size"), (64, "the goal's corpora")):
        m = at_size(firsts, first_tokens, size)
        if m is not None:
            print(f"at {size} stories ({why}; mean of 20 random subsets): " + ", ".join(f"{label} {m[key]:.3f}" for key, label, _ in GOALS if key in m))
    print(f"{'distinct-2':<30}{corpus['distinct_2']:>10.3f}{ref['distinct_2']:>10.3f}{corpus['distinct_2'] / ref['distinct_2']:>8.2f}")
    print(f"{'stories / words mean':<30}{corpus['stories']:>5}/{corpus['words_mean']:<4.0f}{ref['stories']:>5}/{ref['words_mean']:<4.0f}")
    held, planned, slips, n, whole = 0, 0, {t: 0 for t in TERMS}, 0, 0
    genre = Genre.of(pack)
    pasted_df: Counter = Counter()  # stories holding each word 4-gram that the pack wrote (opener or beat sentence)
    for rec in iter_records(out):
        card = Card.from_dict(rec["card"])
        paragraphs = [p for p in (out / rec["file"]).read_text(encoding="utf-8").split("\n\n") if p.strip()]
        pasted = []
        for i, para in enumerate(paragraphs):
            for cand in ((card.openers[i : i + 1] or [""])[0], card.beats[i] if i < len(card.beats) else ""):
                if cand and para.startswith(cand):
                    pasted.append(cand)
                    break
        toks = [w.lower() for w in words(" ".join(pasted))]
        pasted_df.update({tuple(toks[i : i + 4]) for i in range(len(toks) - 3)})
        whole += all(holds_word(" ".join(paragraphs), card.slots[k]) for k in card.required)
        h, p = coverage(paragraphs, card)
        held, planned, n = held + h, planned + p, n + 1
        for k, v in story_slips(paragraphs, card, genre).items():
            slips[k] += v
    cov = held / planned if planned else 0.0
    missed += [] if cov >= 0.9 else ["plan coverage"]
    print(f"{'plan coverage':<30}{cov:>10.0%}{'':>10}{'':>8}{0.9:>8.0%}  {'met' if cov >= 0.9 else 'MISSED'}")
    if pack.required:
        ok = whole == n
        missed += [] if ok else ["required words"]
        print(
            f"{'stories with every required word':<30}{whole / max(n, 1):>10.0%}{'':>10}{'':>8}{1:>8.0%}  {'met' if ok else 'MISSED'}  ({', '.join(pack.required)})"
        )
    gram, df = min(pasted_df.items(), key=lambda kv: (-kv[1], kv[0]), default=((), 0))  # ties: the first in order
    ok = df / max(n, 1) <= 0.10
    missed += [] if ok else ["pack 4-grams"]
    print(f"{'top pack-written 4-gram':<30}{df / max(n, 1):>10.0%}{'':>10}{'':>8}{0.10:>8.0%}  {'met' if ok else 'MISSED'}  ({' '.join(gram)})")
    total = sum(v for k, v in slips.items() if k != "missing")
    print(f"{'slips per story':<30}{total / max(n, 1):>10.2f}  (" + ", ".join(f"{k} {v / max(n, 1):.2f}" for k, v in slips.items() if k != "missing") + ")")
    print(f"goals missed: {', '.join(missed) if missed else 'none'}")


if __name__ == "__main__":
    main()
