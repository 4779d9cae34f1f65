"""fabula's own cost per story: the driver (plan, requests, scorer, checks,
near-duplicates, commit) with an instant backend, so no model is timed.

    python bench/driver.py                    # 10,000 stories at best of 1 and 4
    python bench/driver.py --stories 2000 --best-of 4 --profile
    python bench/driver.py --http             # also through HTTP, concurrency 64 and 256

Each row writes a new corpus folder with ``fabula.Corpus.write`` and the fake
backend (filler text; in steer mode every paragraph opens with the card's
opener, so the drafts name the card's people and city and pass the checks), as
``fabula write --backend fake`` does. Stages are timed by wrapping the
functions that do them (exclusive time: a stage called inside another counts
once); "fake backend" is the filler text's own cost, not fabula's.

With ``--http``, the same again through the openai backend (instruct mode,
best of 1, one request a story: a server run's defaults) against
bench/instant_server.py, a local OpenAI-compatible server that answers at
once, at each ``--concurrency``; beside it bare async loops send the same
requests (the first cards' instruct prompts) at the same concurrency to the
same server: one aiohttp session (fabula's own client, so the client's
ceiling on this machine, which the server's own work shares) and, where httpx
is installed, one httpx client (the issue's reference). For each concurrency
the runs go aiohttp, httpx, fabula, fabula, httpx, aiohttp, and each side
pools its two runs, so a drift in machine speed hits all alike.

The reference, measured in the same run, is a fixed piece of plain Python
(tokenise a 450-word text and count its word 4-grams, 1,000 times): the
driver's cost is also printed in those units, so figures from different or
busy machines can be compared.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import platform
import pstats
import re
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from contextlib import contextmanager

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

import fabula  # noqa: E402
from _common import cpu_name  # noqa: E402
from fabula import check_ahead, index, pipeline, plan, plan_ahead, store, write  # noqa: E402
from fabula.backends import fake  # noqa: E402
from fabula.checks import NearDuplicates  # noqa: E402


def reference_ms() -> float:
    """Milliseconds for the fixed plain-Python workload (best of 5)."""
    import random

    text = fake.filler(random.Random(0), 450)
    word = re.compile(r"[A-Za-z'-]+")
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(1000):
            toks = [w.lower() for w in word.findall(text)]
            Counter(zip(toks, toks[1:], toks[2:], toks[3:]))
        best = min(best, time.perf_counter() - t0)
    return best * 1000


class Stages:
    """Exclusive wall time per stage, from wrapped functions."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.stack: list[list] = []
        self.undo: list = []

    def wrap(self, owner, attr: str, stage: str) -> None:
        fn = getattr(owner, attr)
        stages = self

        def timed(*a, **k):
            frame = [0.0]  # time spent in stages called from inside this one
            stages.stack.append(frame)
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                dt = time.perf_counter() - t0
                stages.stack.pop()
                stages.seconds[stage] += dt - frame[0]
                if stages.stack:
                    stages.stack[-1][0] += dt

        setattr(owner, attr, timed)
        self.undo.append((owner, attr, fn))

    def restore(self) -> None:
        for owner, attr, fn in reversed(self.undo):
            setattr(owner, attr, fn)
        self.undo.clear()


@contextmanager
def timed_stages():
    s = Stages()
    s.wrap(plan.Planner, "next", "plan")
    s.wrap(plan_ahead.PlanAhead, "next", "plan (from its process)")
    s.wrap(plan_ahead.PlanAhead, "__init__", "plan (from its process)")
    s.wrap(write.StoryJob, "request", "requests")
    s.wrap(write.StoryJob, "feed", "score (best of k)")
    s.wrap(pipeline, "run_checks", "checks")
    s.wrap(check_ahead.CheckAhead, "__init__", "checks (to and from their process)")
    s.wrap(check_ahead.CheckAhead, "submit", "checks (to and from their process)")
    s.wrap(check_ahead.CheckAhead, "verdicts", "checks (to and from their process)")
    s.wrap(NearDuplicates, "check", "near-duplicates")
    s.wrap(index.Memory, "add", "memory (add a story)")
    s.wrap(store.Store, "accept", "commit")
    s.wrap(store.Store, "plan", "commit")
    s.wrap(store.Store, "reject", "commit")
    s.wrap(store.Store, "flush", "commit")
    s.wrap(index, "save", "index save")
    s.wrap(fake.FakeBackend, "complete", "fake backend")
    try:
        yield s
    finally:
        s.restore()


def run(n: int, best_of: int, seed: int, folder: str, stages: bool = True) -> tuple[float, dict, object]:
    corpus = fabula.Corpus(folder)
    if stages:
        with timed_stages() as s:
            summary = corpus.write(n, backend="fake", best_of=best_of, seed=seed, progress=False)
        return summary.seconds, dict(s.seconds), summary
    summary = corpus.write(n, backend="fake", best_of=best_of, seed=seed, progress=False)
    return summary.seconds, {}, summary


def start_instant_server():
    import socket
    import subprocess

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(__file__), "instant_server.py"), str(port)], stdout=subprocess.PIPE, text=True)
    if proc.stdout.readline().strip() != "ready":
        sys.exit("bench/instant_server.py did not start")
    return proc, f"http://127.0.0.1:{port}/v1"


def bare_client(url: str, payloads: list[dict], concurrency: int, kind: str) -> float:
    """Requests/s of a plain async loop sending the same payloads, no fabula:
    kind "aiohttp" (one session of ``concurrency`` connections: fabula's own
    client, so its ceiling) or "httpx" (one client: the issue's reference)."""
    import asyncio
    import json

    async def go() -> float:
        todo = iter(payloads)
        if kind == "aiohttp":
            import aiohttp

            session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency))

            async def post(body: dict) -> str:
                async with session.post(url + "/chat/completions", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}) as r:
                    r.raise_for_status()
                    return json.loads(await r.read())["choices"][0]["message"]["content"]

            close = session.close
        else:
            import httpx

            limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
            client = httpx.AsyncClient(timeout=60, limits=limits)

            async def post(body: dict) -> str:
                r = await client.post(url + "/chat/completions", json=body)
                r.raise_for_status()
                return r.json()["choices"][0]["message"]["content"]

            close = client.aclose

        async def worker() -> None:
            for body in todo:
                await post(body)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        rate = len(payloads) / (time.perf_counter() - t0)
        await close()
        return rate

    return asyncio.run(go())


def http_rows(n: int, seed: int, root: str, concurrencies: list[int]) -> None:
    from fabula.api import Server
    from fabula.packs import load_pack
    from fabula.write import TOKENS_PER_WORD, instruction

    pack = load_pack("spy")
    words = pack.words
    planner = plan.Planner(pack, seed, n)
    payloads = [
        {
            "model": "instant",
            "max_tokens": int(words * TOKENS_PER_WORD * 1.4),
            "temperature": 0.8,
            "top_p": 0.95,
            "seed": i,
            "messages": [{"role": "user", "content": instruction(planner.next(), words)}],
        }
        for i in range(n)
    ]
    proc, url = start_instant_server()
    try:
        print(f"\nthrough HTTP (instruct mode, best of 1, bench/instant_server.py): {n} stories a run")
        try:
            import httpx  # noqa: F401  (not a dependency of fabula; the issue's reference client)

            kinds = ["aiohttp", "httpx"]
        except ImportError:
            kinds = ["aiohttp"]
            print("  (httpx is not installed: no httpx row)")
        for c in concurrencies:
            rates: dict[str, list[float]] = defaultdict(list)
            dropped = 0
            for side in [*kinds, "fabula", "fabula", *reversed(kinds)]:
                if side != "fabula":
                    rates[side].append(bare_client(url, payloads, c, side))
                    continue
                folder = os.path.join(root, f"http-{c}-{len(rates[side])}")
                shutil.rmtree(folder, ignore_errors=True)
                summary = fabula.Corpus(folder).write(
                    n, backend=Server(base_url=url, model="instant", concurrency=c), mode="instruct", best_of=1, seed=seed, progress=False
                )
                rates[side].append(summary.written / summary.seconds)
                dropped += sum(summary.dropped.values())
            f = sum(rates["fabula"]) / 2
            bare = "; ".join(f"bare {k} loop {sum(rates[k]) / 2:7.1f} requests/s (ratio {f / (sum(rates[k]) / 2):.2f})" for k in kinds)
            print(f"  concurrency {c:4d}: fabula {f:7.1f} stories/s; {bare}; drafts dropped {dropped // 2} a run")
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stories", type=int, default=10_000)
    ap.add_argument("--best-of", type=int, nargs="*", default=[1, 4], help="in-process rows (none: --best-of alone)")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--profile", action="store_true", help="also print cProfile's top entries (a separate run)")
    ap.add_argument("--profile-stories", type=int, default=200)
    ap.add_argument("--keep", help="write the corpora under this folder (kept) instead of a temporary one")
    ap.add_argument("--http", action="store_true", help="also time fabula through HTTP against bare aiohttp and httpx loops")
    ap.add_argument("--http-stories", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--checks-in-writer", action="store_true", help="run the checks in the writer's process (as before fabula.check_ahead), for an A/B")
    a = ap.parse_args()
    if a.checks_in_writer:
        from fabula.backends import fake, openai

        fake.FakeBackend.checks_apart = openai.OpenAIBackend.checks_apart = False

    print(f"CPU: {cpu_name()} ({os.cpu_count()} logical CPUs); Python {platform.python_version()}; fabula {fabula.__version__}")
    ref = reference_ms()
    print(f"reference (fixed plain-Python workload): {ref:.1f} ms")
    root = a.keep or tempfile.mkdtemp(prefix="fabula-driver-")
    try:
        for k in a.best_of:
            folder = os.path.join(root, f"best-of-{k}")
            shutil.rmtree(folder, ignore_errors=True)
            t0 = time.perf_counter()
            seconds, st, summary = run(a.stories, k, a.seed, folder)
            total = time.perf_counter() - t0
            n = summary.written
            own = seconds - st.get("fake backend", 0.0)
            print(
                f"\nbest of {k}: {n} stories in {seconds:.1f} s of writing ({total:.1f} s with start-up), "
                f"dropped {sum(summary.dropped.values())}, rejected {summary.rejected}"
            )
            print(
                f"  {n / seconds:8.1f} stories/s; fabula's own work {1000 * own / n:.2f} ms/story "
                f"= {own / n * 1000 / ref:.3f} reference units/story ({n / own:.0f} stories/s without the fake backend)"
            )
            timed = sum(st.values())
            for stage, sec in sorted(st.items(), key=lambda x: -x[1]):
                print(f"  {stage:24s} {1000 * sec / n:7.3f} ms/story  {100 * sec / seconds:5.1f} %")
            print(f"  {'(the rest: loop, records)':24s} {1000 * (seconds - timed) / n:7.3f} ms/story  {100 * (seconds - timed) / seconds:5.1f} %")
            size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(folder) for f in fs)
            text = sum(os.path.getsize(os.path.join(folder, "stories", f)) for f in os.listdir(os.path.join(folder, "stories")))
            print(f"  folder: {size / 1e6:.1f} MB, stories' text {text / 1e6:.1f} MB, bookkeeping {(size - text) / max(text, 1):.2f}x the text")
            import resource

            print(f"  peak RSS of this process so far: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
        if a.http:
            http_rows(a.http_stories, a.seed, root, a.concurrency)
        if a.profile:
            for k in a.best_of:
                folder = os.path.join(root, f"profile-{k}")
                shutil.rmtree(folder, ignore_errors=True)
                prof = cProfile.Profile()
                prof.enable()
                run(a.profile_stories, k, a.seed, folder, stages=False)
                prof.disable()
                buf = io.StringIO()
                pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(15)
                print(f"\nprofile, best of {k}, {a.profile_stories} stories (top 15 by own time):")
                print("\n".join(ln for ln in buf.getvalue().splitlines() if ln.strip())[:6000])
    finally:
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
