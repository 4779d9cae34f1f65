"""Pieces the benchmarks share: prompts from real cards, and timing a backend."""

from __future__ import annotations

import os
import platform
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from fabula.backends.base import Backend, OneShot, Request  # noqa: E402
from fabula.packs import load_pack  # noqa: E402
from fabula.plan import Planner  # noqa: E402


def cpu_name() -> str:
    """The CPU's model name, as every bench prints it beside its figures."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def card_prompts(n: int) -> list[str]:
    """Frame + title + first beat of the first n cards of the spy pack (seed 1)."""
    pack = load_pack("spy")
    planner = Planner(pack, 1, n)
    return [f"{pack.generation.frame}{c.title}\n\n{c.beats[0]}" for c in (planner.next() for _ in range(n))]


def timed_run(backend: Backend, requests: list[Request]) -> tuple[int, float]:
    """(tokens generated, wall seconds) for all requests through backend.run()."""
    jobs = [OneShot(r) for r in requests]
    t0 = time.perf_counter()
    for _ in backend.run(iter(jobs)):
        pass
    return sum(j.result.tokens for j in jobs if j.result), time.perf_counter() - t0
