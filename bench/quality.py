"""The embedded model with and without a tuned adapter, on cards it was never
trained on, in one run: the same N cards (fabula write --seed S) written twice.

    python bench/quality.py --adapter adapters/spy/adapter.gguf --n 100 --best-of 1
    python bench/quality.py --adapter A.gguf --n 20 -- --temperature 0.7   # more write options after --

Writes bench/out/quality-<n>-<seed>-base and -<label> (the adapter's folder name; resumable), then prints
for each: slips a story (the scorer's terms), plan coverage, compression
ratio, self-repetition, self-BLEU-4, mean cosine (with the semantic extra),
drafts written a kept story, and memorisation: the share of the stories'
word 8-grams (less those of the story's own card: openers, beats, slots) that
occur in the training stories (data/tune/<pack> and data/tune/<pack>-*).
The training cards (fabula plan --seed 28001, 28002, 28003) are not those of
--seed 1; the bench checks that no card of the one (hero and city) is in the other.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from _common import cpu_name  # noqa: E402
from fabula.checks import words  # noqa: E402
from fabula.genre import Genre  # noqa: E402
from fabula.packs import load_pack  # noqa: E402
from fabula.records import Card  # noqa: E402
from fabula.reporting.metrics import measure  # noqa: E402
from fabula.score import TERMS, coverage, story_slips  # noqa: E402
from fabula.store import iter_records  # noqa: E402

HERE = Path(__file__).resolve().parent
GRAM = 8


def grams(text: str, n: int = GRAM) -> set[tuple[str, ...]]:
    toks = [w.lower() for w in words(text)]
    return {tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)}


def same(card: Card) -> tuple[str, str]:
    """What makes two cards the same story: the hero and the city (titles recur across seeds)."""
    return card.hero.full, card.slots.get("city", "")


def figures(folder: Path, pack, trained: set, only: set[int] | None = None) -> dict:
    genre = Genre.of(pack)
    held = planned = n = tokens = attempts = 0
    slips = dict.fromkeys(TERMS, 0)
    mine = shared = 0
    for rec in iter_records(folder):
        card = Card.from_dict(rec["card"])
        if only is not None and card.id not in only:
            continue
        text = (folder / rec["file"]).read_text(encoding="utf-8")
        paragraphs = [p for p in text.split("\n\n") if p.strip()]
        h, p = coverage(paragraphs, card)
        held, planned, n = held + h, planned + p, n + 1
        for k, v in story_slips(paragraphs, card, genre).items():
            slips[k] += v
        # the card's own words (openers, beats, notes, slots) recur in training stories by design
        g = grams(text) - grams(" ".join([*card.openers, *card.beats, *card.notes, *card.slots.values()]))
        mine, shared = mine + len(g), shared + len(g & trained)
        tokens += rec.get("tokens") or 0
        attempts += rec.get("attempt", 0) + 1
    m = measure(folder, stories={r["id"] for r in iter_records(folder) if only is None or r["card"]["id"] in only})
    out = {
        "stories": n,
        "slips a story": sum(v for k, v in slips.items() if k != "missing") / max(n, 1),
        "plan coverage": held / planned if planned else 0.0,
        "compression ratio": m["compression_ratio"],
        "self-repetition (4-grams)": m["self_repetition_4"],
        "self-BLEU-4": m["self_bleu_4"],
        "mean cosine": m.get("mean_cosine"),
        f"memorisation ({GRAM}-grams)": shared / max(mine, 1),  # of the 8-grams not in the story's own card
        "drafts a kept story": attempts / max(n, 1),
        "words, mean": m["words_mean"],
    }
    out["slips"] = {k: v / max(n, 1) for k, v in slips.items() if v and k != "missing"}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--adapter", required=True, type=Path)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--pack", default="spy")
    ap.add_argument("--best-of", type=int, default=None)
    ap.add_argument("--minutes", type=float, default=None, help="stop each side's write after this long; compare the cards both sides wrote")
    ap.add_argument("--measure-only", action="store_true", help="write nothing: measure the folders an earlier run left")
    ap.add_argument("--train", type=Path, nargs="+", default=None, help="the training stories' folders [data/tune/<pack> and data/tune/<pack>-*]")
    ap.add_argument("--label", default=None, help="the tuned side's folder: bench/out/quality-N-SEED-LABEL [the adapter's folder name]")
    ap.add_argument("extra", nargs="*", help="more options for fabula write (after --)")
    a = ap.parse_args()
    pack = load_pack(a.pack)
    tune = HERE.parent / "data" / "tune"
    trains = a.train or [tune / pack.name, *sorted(tune.glob(f"{pack.name}-*"))]
    trained: set = set()
    trained_cards: set = set()
    for train in trains:
        for p in (train / "stories").glob("*.txt"):
            trained |= grams(p.read_text(encoding="utf-8"))
        trained_cards |= {same(Card.from_dict(json.loads(line))) for line in (train / "cards.jsonl").read_text(encoding="utf-8").splitlines()}
    print("training stories: " + ", ".join(str(t) for t in trains))
    label = a.label or a.adapter.resolve().parent.name
    rows, folders = {}, {}
    for name, opts in (("base", []), ("tuned", ["--adapter", str(a.adapter)])):
        out = HERE / "out" / f"quality-{a.n}-{a.seed}-{'base' if name == 'base' else label}"
        cmd = [sys.executable, "-m", "fabula", "write", "-n", str(a.n), "--seed", str(a.seed), "--pack", a.pack, "--out", str(out), "-q", *opts]
        cmd += ["--best-of", str(a.best_of)] if a.best_of else []
        cmd += a.extra
        print(("(measured only) " if a.measure_only else "$ ") + " ".join(cmd[2:]), flush=True)
        try:
            if not a.measure_only:
                subprocess.run(cmd, check=True, timeout=a.minutes * 60 if a.minutes else None)
        except subprocess.TimeoutExpired:
            print(f"stopped after {a.minutes} min (the folder keeps what was written; run again to go on)", flush=True)
        overlap = {same(Card.from_dict(r["card"])) for r in iter_records(out)} & trained_cards
        if overlap:
            sys.exit(f"held-out cards are training cards: {sorted(overlap)[:3]}")
        folders[name] = out
    common = set.intersection(*({r["card"]["id"] for r in iter_records(f)} for f in folders.values()))
    for name, out in folders.items():
        rows[name] = figures(out, pack, trained, only=common)
    print(f"\n{len(common)} cards both sides wrote, of {a.n} of --seed {a.seed} ({a.pack}), {os.cpu_count()} cores, {cpu_name()}")
    print(f"{'':<28}{'base':>10}{'tuned':>10}")
    for key in rows["base"]:
        if key == "slips":
            continue
        b, t = rows["base"][key], rows["tuned"][key]
        show = lambda v: "n/a" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))  # noqa: E731
        print(f"{key:<28}{show(b):>10}{show(t):>10}")
    for name in rows:
        print(f"slips by term, {name}: " + ", ".join(f"{k} {v:.2f}" for k, v in rows[name]["slips"].items()))


if __name__ == "__main__":
    main()
