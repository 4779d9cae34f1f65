"""Diversity of a real corpus: N stories from the embedded model, reported
beside the reference seeds (the reference, measured in the same run), on the
first 250 words of each story as the published human references use.

    python bench/diversity.py --n 100                    # writes bench/out/diversity-100 (resumable)
    python bench/diversity.py --n 100 --seeds PATH       # reference folder (default ../shared/reference/seeds)

Prints the side-by-side table, the ratio corpus / reference for each lexical
metric, every goal with met / missed, and the card-based recurrence.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from fabula.report.metrics import measure  # noqa: E402

HERE = Path(__file__).resolve().parent
# (key, label, goal, lower is better)
GOALS = [
    ("compression_ratio", "compression ratio", 2.45),
    ("self_repetition_4", "self-repetition (4-grams)", 0.6),
    ("self_bleu_4", "self-BLEU-4", 0.08),
    ("mean_cosine", "mean pairwise cosine", 0.45),
    ("near_duplicate_pairs", "near-duplicate pairs", 0),
    ("stock_phrase_story_share", "stories with a stock phrase", 0.02),
]
RECUR_GOALS = [("first_name", 0.02), ("city", 0.10), ("weather", 0.15), ("venue", 0.15), ("summons", 0.15), ("ending", 0.15)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--seeds", type=Path, default=HERE.parent.parent / "shared" / "reference" / "seeds")
    ap.add_argument("--first-words", type=int, default=250)
    a = ap.parse_args()
    out = a.out or HERE / "out" / f"diversity-{a.n}"
    cmd = [sys.executable, "-m", "fabula", "write", "-n", str(a.n), "--seed", str(a.seed), "--out", str(out)]
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
    for field, goal in RECUR_GOALS:
        top = (corpus["recurrence"].get(field) or [{"value": None, "share": 0.0}])[0]
        ok = top["share"] <= goal
        missed += [] if ok else [f"top {field}"]
        print(f"{'top ' + field:<30}{top['share']:>10.0%}{'':>10}{'':>8}{goal:>8.0%}  {'met' if ok else 'MISSED'}  ({top['value']})")
    print(f"{'distinct-2':<30}{corpus['distinct_2']:>10.3f}{ref['distinct_2']:>10.3f}{corpus['distinct_2'] / ref['distinct_2']:>8.2f}")
    print(f"{'stories / words mean':<30}{corpus['stories']:>5}/{corpus['words_mean']:<4.0f}{ref['stories']:>5}/{ref['words_mean']:<4.0f}")
    print(f"goals missed: {', '.join(missed) if missed else 'none'}")


if __name__ == "__main__":
    main()
