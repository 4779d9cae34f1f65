"""Report speed and memory on a large folder.

Writes N stories (default 10,000) with the fake backend (real cards from the
spy pack, filler prose) as .txt files, then times `fabula report --no-semantic`
on them in a child process and reads its peak memory. The reference, measured
in the same run, is the floor any report pays: reading every file and
splitting it into words. Memory is measured at N/4 and N to show it grows with
the folder, not with N².

    python bench/report_speed.py            # 10,000 stories; goal: report <= 60 s
    python bench/report_speed.py --n 2000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from fabula.backends.fake import FakeBackend  # noqa: E402
from fabula.checks import words  # noqa: E402
from fabula.packs import load_pack  # noqa: E402
from fabula.plan import Planner  # noqa: E402
from fabula.write import StoryJob, WriteSettings  # noqa: E402


def make_folder(folder: Path, n: int) -> None:
    pack = load_pack("spy")
    planner = Planner(pack, 1, n)
    settings = WriteSettings(words=450)
    jobs = (StoryJob(planner.next(), 0, settings) for _ in range(n))
    for i, job in enumerate(FakeBackend().run(jobs)):
        (folder / f"{i:05d}.txt").write_text(job.draft("fake", "fake").text, encoding="utf-8")


def read_and_split(folder: Path) -> float:
    t0 = time.perf_counter()
    for p in sorted(folder.glob("*.txt")):
        words(p.read_text(encoding="utf-8"))
    return time.perf_counter() - t0


def report(folder: Path, out: Path) -> tuple[float, float]:
    """Seconds and peak RSS (MiB) of `fabula report` in a fresh process."""
    code = (
        "import resource, sys, time; from fabula.cli import main; t=time.perf_counter()\n"
        "try: main(sys.argv[1:])\n"
        "except SystemExit: pass\n"
        "print('SECONDS', time.perf_counter()-t); print('RSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    r = subprocess.run([sys.executable, "-c", code, "report", str(folder), "--no-semantic", "--json", str(out)], capture_output=True, text=True, check=True)
    vals = dict(line.split() for line in r.stdout.splitlines() if line.startswith(("SECONDS", "RSS")))
    return float(vals["SECONDS"]), int(vals["RSS"]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        small, big = Path(tmp, "small"), Path(tmp, "big")
        small.mkdir()
        big.mkdir()
        t0 = time.perf_counter()
        make_folder(small, a.n // 4)
        make_folder(big, a.n)
        print(f"made {a.n // 4} + {a.n} fake stories in {time.perf_counter() - t0:.1f} s", flush=True)
        ref = read_and_split(big)
        s_small, rss_small = report(small, Path(tmp, "small.json"))
        secs, rss = report(big, Path(tmp, "big.json"))
        ref2 = read_and_split(big)  # again after, so machine noise hits both sides
        ref = (ref + ref2) / 2
        print(f"{'run':<34}{'seconds':>9}{'peak MiB':>10}")
        print(f"{'reference: read + split words':<34}{ref:>9.1f}{'':>10}")
        print(f"{f'report, {a.n // 4} stories':<34}{s_small:>9.1f}{rss_small:>10.0f}")
        print(f"{f'report, {a.n} stories':<34}{secs:>9.1f}{rss:>10.0f}")
        print(f"memory x{rss / rss_small:.2f} for x4 stories (N^2 would be x16)")
        print(
            f"report: {secs:.1f} s for {a.n} stories (goal <= 60 s: {'met' if secs <= 60 else 'missed'}); "
            f"ratio to read+split: {secs / ref:.2f}; peak {rss:.0f} MiB"
        )


if __name__ == "__main__":
    main()
