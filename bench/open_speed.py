"""How fast a large corpus opens for writing: with DIR/index.npz against
rebuilding the writer's memory from every text.

Builds a corpus of --n stories (default 100,000) from 200 written by the fake
backend: records, cards and texts repeated with new ids, indexes and card
numbers, each text made unique (so ids, hashes and near-duplicate signatures
differ). Then, twice each, interleaved: resume it by one story with its
index.npz (saved by the resume before) and without one (deleted). Prints the
seconds to the first new story committed, then the seconds to export the
corpus to parquet, each beside the seconds to read the files it needs alone.

    python bench/open_speed.py              # about 10 minutes on 2 cores
    python bench/open_speed.py --n 20000
    python bench/open_speed.py --no-rebuild     # only the runs with index.npz (the first resume still builds it)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import _common  # (also sets sys.path)
import fabula  # noqa: E402
from fabula.store import CORPUS, PLAN, STORIES, read_heads, read_jsonl, text_hash  # noqa: E402


def build(folder: Path, n: int) -> None:
    seedling = Path(tempfile.mkdtemp(prefix="fabula-seedling-"))
    fabula.Corpus(seedling).write(200, backend="fake", seed=1, progress=False, warn=lambda m: None)
    recs = read_jsonl(seedling / CORPUS)
    shutil.copytree(seedling, folder, ignore=shutil.ignore_patterns("index.npz", "index.signatures", "writer.lock", "corpus.jsonl", "plan.jsonl", "stories"))
    (folder / STORIES).mkdir()
    texts = [(seedling / r["file"]).read_text(encoding="utf-8") for r in recs]
    with open(folder / CORPUS, "w", encoding="utf-8") as fc, open(folder / PLAN, "w", encoding="utf-8") as fp:
        for i in range(n):
            r = json.loads(json.dumps(recs[i % len(recs)]))
            text = texts[i % len(texts)] + f"\n\nThe file was closed in the year {1000 + i}."  # unique text
            h = text_hash(text)
            r["index"], r["id"], r["file"] = i, f"{i:06d}_{h}", f"{STORIES}/{i:06d}_{h}.txt"
            r["card"]["id"] = i
            (folder / r["file"]).write_text(text, encoding="utf-8")
            fc.write(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n")  # as fabula writes (store.append_line)
            fp.write(json.dumps(r["card"], ensure_ascii=False, separators=(",", ":")) + "\n")
    shutil.rmtree(seedling)


def resume(folder: Path, target: int) -> tuple[float, object]:
    """Seconds from opening the corpus to its first new story committed (one more than it holds)."""
    t0 = time.perf_counter()
    first = []

    def on_story(s) -> None:
        if s.committed and not first:
            first.append(time.perf_counter() - t0)

    s = fabula.Corpus(folder).write(target, backend="fake", seed=1, progress=False, warn=lambda m: None, on_story=on_story)
    return first[0], s


def read_alone(folder: Path, texts: bool) -> float:
    """Seconds to read the bytes an open needs, and nothing more: corpus.jsonl,
    plan.jsonl and the index (write), or corpus.jsonl and every story (export)."""
    t0 = time.perf_counter()
    names = [CORPUS] + ([r["file"] for r in read_heads(folder / CORPUS)] if texts else [PLAN, "index.npz", "index.signatures"])
    for name in names:
        (folder / name).read_bytes()
    return time.perf_counter() - t0


def export_seconds(folder: Path) -> float:
    out = folder.parent / "export.parquet"
    t0 = time.perf_counter()
    fabula.Corpus(folder).export(out, format="parquet")
    sec = time.perf_counter() - t0
    out.unlink()
    return sec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument(
        "--no-rebuild", action="store_true", help="skip the two runs without index.npz (minutes at 100,000); the files read alone stay the reference"
    )
    args = ap.parse_args()
    cpu = _common.cpu_name()
    base = Path(tempfile.mkdtemp(prefix="fabula-open-"))
    folder = base / "c"
    try:
        t = time.perf_counter()
        build(folder, args.n)
        print(f"CPU: {cpu}, {os.cpu_count()} cores; built {args.n} stories in {time.perf_counter() - t:.0f} s", flush=True)
        target = args.n + 1
        resume(folder, target)  # saves index.npz (and warms the page cache for both sides)
        runs = {"with index.npz": [], "without (rebuild from texts)": []}
        order = ["with index.npz", "without (rebuild from texts)", "without (rebuild from texts)", "with index.npz"]
        for key in [k for k in order if not (args.no_rebuild and k.startswith("without"))]:
            if key.startswith("without"):
                (folder / "index.npz").unlink(missing_ok=True)
            target += 1
            sec, s = resume(folder, target)
            runs[key].append(sec)
            print(f"  {key}: {sec:.1f} s to the first new story (memory: {s.opened_from_index} from the index, {s.opened_from_texts} from texts)", flush=True)
        w = sum(runs["with index.npz"]) / 2
        wo = sum(runs["without (rebuild from texts)"]) / 2 if not args.no_rebuild else float("nan")
        floor_w = read_alone(folder, texts=False)
        ex = export_seconds(folder)
        floor_x = read_alone(folder, texts=True)
        print(f"  export to parquet: {ex:.1f} s (reading corpus.jsonl and every story alone: {floor_x:.1f} s)")
        print(
            f"open {args.n} stories: {w:.1f} s with index.npz, {wo:.1f} s without; ratio {wo / w:.1f}x; "
            f"reading its files alone {floor_w:.1f} s (goal <= 10 s: {'met' if w <= 10 else 'MISSED'})"
        )
        print(f"export {args.n} stories: {ex:.1f} s (goal <= 60 s: {'met' if ex <= 60 else 'MISSED'}); reading its files alone {floor_x:.1f} s")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
