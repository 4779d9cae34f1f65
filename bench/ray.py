"""What Ray costs, what it buys, and where the driver stops keeping up.

1. The same stories (seed 1, 16 by default, --words 250, the other settings
   at their defaults: steer mode, best of 4) written by
     A  the local executor, --threads T (all cores)
     B  --executor ray --workers 1 --threads T   (Ray's cost: B / A)
     C  --executor ray --workers 2 --threads T/2 (two engines of half the threads)
   in the order A B C B A, on a local Ray this script's runs start. Stories
   per second count the writing loop (model loaded, Ray up); start-up (Ray,
   model load) is printed apart. A and B pool their two runs each, so a drift
   in machine speed hits both alike.
2. The driver's own work per story - planning, the scorer on every candidate,
   the checks (near-duplicate lookup included), the commit - measured with
   the fake backend (text for free) on a corpus that grows to --driver-n
   stories, per story in the first and the last quarter.

    python bench/ray.py                 # about 20 minutes on 2 cores
    python bench/ray.py --n 8 --driver-n 200
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

import _common  # (also sets sys.path)
import fabula  # noqa: E402

# This file is named ray.py: with bench/ first on sys.path, `import ray` would import it.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]


def write(folder: str, n: int, words: int, threads: int, executor) -> tuple[float, float, int, int, int]:
    """(writing seconds, start-up seconds, stories, tokens, drafts dropped) for one run into a fresh folder."""
    shutil.rmtree(folder, ignore_errors=True)
    t0 = time.perf_counter()
    s = fabula.Corpus(folder).write(n, seed=1, words=words, backend=fabula.EmbeddedModel(threads=threads), executor=executor, progress=False)
    total = time.perf_counter() - t0
    assert s.written == n, s.lines()
    return s.seconds, total - s.seconds, s.written, s.tokens, sum(s.dropped.values()) + s.rejected


def driver(n: int) -> tuple[float, float]:
    """Seconds of driver work per story in the first and the last quarter of n."""
    stamps: list[float] = []

    def on_story(s) -> None:
        while len(stamps) < s.written:
            stamps.append(time.perf_counter())

    folder = tempfile.mkdtemp(prefix="fabula-driver-")
    try:
        fabula.Corpus(folder).write(n, seed=1, backend="fake", progress=False, warn=lambda m: None, on_story=on_story)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    q = max(1, n // 4)
    return (stamps[q] - stamps[0]) / q, (stamps[-1] - stamps[-1 - q]) / q


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=16, help="stories per run")
    ap.add_argument("--words", type=int, default=250)
    ap.add_argument("--driver-n", type=int, default=1000, help="stories in the driver measurement")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    cpu = _common.cpu_name()
    print(f"CPU: {cpu}, {cores} cores; {args.n} stories of --words {args.words}, seed 1, best of 4")
    base = tempfile.mkdtemp(prefix="fabula-ray-bench-")
    runs = {"A": [], "B": [], "C": []}
    half = max(1, cores // 2)
    plan = [
        ("A", "local", cores),
        ("B", fabula.RayCluster(workers=1), cores),
        ("C", fabula.RayCluster(workers=2), half),
        ("B", fabula.RayCluster(workers=1), cores),
        ("A", "local", cores),
    ]
    try:
        for key, ex, threads in plan:
            r = write(os.path.join(base, key), args.n, args.words, threads, ex)
            runs[key].append(r)
            sec, start, n, tok, dropped = r
            print(
                f"  run {key}: {n / sec:.4f} stories/s, {tok / sec:.1f} tokens/s ({sec:.1f} s writing, {start:.1f} s start-up, {dropped} drafts dropped)",
                flush=True,
            )
    finally:
        shutil.rmtree(base, ignore_errors=True)

    def rate(key: str) -> float:
        return sum(r[2] for r in runs[key]) / sum(r[0] for r in runs[key])

    def tok_rate(key: str) -> float:
        return sum(r[3] for r in runs[key]) / sum(r[0] for r in runs[key])

    a, b, c = rate("A"), rate("B"), rate("C")
    print()
    ta, tb, tc = tok_rate("A"), tok_rate("B"), tok_rate("C")
    print(f"{'executor':38} {'stories/s':>10} {'ratio':>6} {'tokens/s':>9} {'ratio':>6}")
    for name, r, t in (
        (f"A local, --threads {cores}", a, ta),
        (f"B ray, --workers 1 --threads {cores}", b, tb),
        (f"C ray, --workers 2 --threads {half}", c, tc),
    ):
        print(f"{name:38} {r:10.4f} {r / a:6.2f} {t:9.1f} {t / ta:6.2f}")
    first, last = driver(args.driver_n)
    print(
        f"driver work per story (fake backend, best of 4, corpus growing to {args.driver_n}): "
        f"{first * 1000:.0f} ms in the first quarter, {last * 1000:.0f} ms in the last"
    )
    print(f"ray cost: B/A = {b / a:.2f}; two half-thread workers: C/B = {c / b:.2f}; driver ceiling ~{1 / last:.1f} stories/s at {args.driver_n} stories")


if __name__ == "__main__":
    main()
