"""Embedded throughput: fabula's batched llama.cpp engine against a plain loop.

(a) reference: llama-cpp-python's high-level ``Llama.create_completion``, one
    prompt after another (what a user's own script, or distilabel's
    LlamaCppLLM, does);
(b) fabula's embedded backend at B = 1, 2, 4, 8, 16, 32, 64 sequences per decode;
(c) the ceiling at each B: a bare loop written here (``ceiling``), one
    llama_decode per step for B sequences and the cheapest sampling, nothing
    else: how much of what llama.cpp can do here fabula keeps.

Same model, prompts (frame + title + first beat of real cards), sampling
(temperature 0.8, top-k 64, top-p 0.92, repeat penalty 1.18), thread count and
length (``--tokens`` per prompt: fabula and the ceiling never end a sequence
before it, so both decode the same shape, with no half-empty batch at the end;
the plain loop may stop earlier at end-of-text, which it seldom does):
tokens/s = tokens generated / wall time, prompt processing included. A run at
B <= 16 has 16 prompts, one at larger B has B (one full batch). Runs
interleave: every fabula measurement is preceded by a reference measurement
(16 prompts; it runs them one after another, so its rate does not depend on
how many), and ratios are taken against the mean of the references.

Best of k, two ways, at the default batch:
- candidate words: the same B prompts with k = 4 candidates per prompt (B/4
  lanes of 4 sequences, each prompt decoded once and copied) against k = 1,
  sequences ending where the model ends them, no checks: the words of the
  candidate a prompt keeps, per second. This is the raw price of k samples.
- accepted words: ``fabula write -n STORIES --seed 1`` (8 by default) into a
  fresh folder at --best-of 1 and 4, each at its default batch, checks and
  redrafts included: the words of the stories kept, per second of wall time.
  This is what a user gets: at k = 1 more drafts fail the checks (a name not
  on the card, a paragraph running long) and are written again.

    python bench/embedded.py                  # B = 1..64 and best of k (about 20 min on 2 cores)
    python bench/embedded.py --quick          # B = 1 and 16 (about 2 min)
    python bench/embedded.py --only-best-of   # the best-of rows alone
    python bench/embedded.py --adapter A.gguf # the adapter row alone: with a LoRA adapter against without

With ``--adapter``: fabula's engine at the default batch on the same prompts
and token count with and without the adapter (runs interleave: without, with,
with, without), tokens/s and their ratio: the price of the adapter's extra
matrix products alone.

``--quick`` keeps the full bench's prompts and token count (96 new tokens
after a real first paragraph's prompt) and runs only B = 1 and 16, so its
ratios predict the full bench's.
"""

from __future__ import annotations

import argparse
import os
import time

from _common import card_prompts, cpu_name, timed_run  # noqa: E402 (sets sys.path)
from fabula.api import DEFAULT_BATCH  # noqa: E402
from fabula.backends.base import Request  # noqa: E402
from fabula.backends.embedded import EmbeddedBackend, default_model_path  # noqa: E402

TEMP, TOP_P, TOP_K, PENALTY = 0.8, 0.92, 64, 1.18
PROMPTS = 16  # per run at B <= 16; a run at larger B has B prompts (one full batch)


def reference(llm, texts: list[str], tokens: int) -> tuple[int, float]:
    t0, total = time.perf_counter(), 0
    for i, p in enumerate(texts):
        out = llm.create_completion(p, max_tokens=tokens, temperature=TEMP, top_p=TOP_P, top_k=TOP_K, repeat_penalty=PENALTY, seed=i)
        total += out["usage"]["completion_tokens"]
    return total, time.perf_counter() - t0


def ceiling(backend: EmbeddedBackend, texts: list[str], tokens: int, b: int) -> tuple[int, float]:
    """The bare loop: the same prompts, b at a time, one llama_decode per step
    for all b sequences, top-k then temperature sampled in numpy; no checks,
    bans, penalties or bookkeeping. What llama.cpp itself does on this
    machine for this shape, with the least Python around it."""
    import numpy as np

    L, model = backend.L, backend.lmodel
    prompts = [backend.tokenize(t) for t in texts]
    cp = L.llama_context_default_params()
    cp.n_ctx = (max(map(len, prompts)) + tokens + 8) * b
    cp.n_batch, cp.n_ubatch, cp.n_seq_max = cp.n_ctx, min(512, cp.n_ctx), b
    cp.n_threads = cp.n_threads_batch = backend.threads
    ctx = L.llama_init_from_model(model, cp)
    batch = L.llama_batch_init(cp.n_batch, 0, 1)
    mem, n_vocab, rng = L.llama_get_memory(ctx), backend.n_vocab, np.random.default_rng(0)
    eog = np.array(sorted(backend._eog))

    def add(tok: int, pos: int, seq: int, logits: bool) -> None:
        n = batch.n_tokens
        batch.token[n], batch.pos[n], batch.n_seq_id[n], batch.logits[n] = tok, pos, 1, logits
        batch.seq_id[n][0] = seq
        batch.n_tokens = n + 1

    total, t0 = 0, time.perf_counter()
    for g in range(0, len(prompts), b):
        group = prompts[g : g + b]
        L.llama_memory_clear(mem, True)
        batch.n_tokens = 0
        at = []  # batch index of each live sequence's last token (its logits)
        for s, toks in enumerate(group):
            for i, t in enumerate(toks):
                add(t, i, s, i == len(toks) - 1)
            at.append(batch.n_tokens - 1)
        pos = [len(t) for t in group]
        for _ in range(tokens):
            L.llama_decode(ctx, batch)
            batch.n_tokens = 0
            for s, row in enumerate(at):
                x = np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, row), shape=(n_vocab,))
                x[eog] = -np.inf  # every sequence runs to the length limit, as fabula's do here
                top = np.argpartition(x, -TOP_K)[-TOP_K:]
                p = np.exp((x[top] - x[top].max()) / TEMP)
                add(int(top[rng.choice(TOP_K, p=p / p.sum())]), pos[s], s, True)
                pos[s] += 1
            total += len(group)
            at = list(range(len(group)))
    sec = time.perf_counter() - t0
    L.llama_batch_free(batch)
    L.llama_free(ctx)
    return total, sec


def fabula(backend: EmbeddedBackend, texts: list[str], tokens: int) -> tuple[int, float]:
    return timed_run(
        backend,
        [
            Request(prompt=p, max_tokens=tokens, min_tokens=tokens, stop_at_newline=False, seed=i, temperature=TEMP, top_p=TOP_P, repeat_penalty=PENALTY)
            for i, p in enumerate(texts)
        ],
    )


def kept_words(backend: EmbeddedBackend, texts: list[str], tokens: int, k: int) -> tuple[float, float]:
    """(words kept per second, tokens per second) with k candidates per prompt."""
    from fabula.backends.base import OneShot

    jobs = [
        OneShot(Request(prompt=p, max_tokens=tokens, min_tokens=0, stop_at_newline=False, seed=i, temperature=TEMP, top_p=TOP_P, repeat_penalty=PENALTY, n=k))
        for i, p in enumerate(texts)
    ]
    t0 = time.perf_counter()
    for _ in backend.run(iter(jobs)):
        pass
    s = time.perf_counter() - t0
    return sum(len(j.result.text.split()) for j in jobs) / s, sum(j.result.tokens for j in jobs) / s


def accepted_words(k: int, stories: int, threads: int) -> tuple[float, float, int, int, bool]:
    """`fabula write -n STORIES --seed 1 --best-of K` into a fresh folder, at
    the default batch for that N and K, checks and redrafts included:
    (words of the stories kept per second of wall time, tokens per second,
    drafts dropped, cards rejected, whether the run stopped early because
    more cards were rejected than it allows)."""
    import tempfile
    from pathlib import Path

    from fabula.api import Corpus, EmbeddedModel
    from fabula.pipeline import TooManyRejects

    last = {}
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        try:
            Corpus(d).write(
                stories, seed=1, best_of=k, backend=EmbeddedModel(threads=threads), progress=False, on_story=lambda summary: last.update(summary=summary)
            )
            stopped = False
        except TooManyRejects:
            stopped = True
        s = time.perf_counter() - t0
        words = sum(len(p.read_text(encoding="utf-8").split()) for p in Path(d, "stories").glob("*.txt"))
    summary = last.get("summary")
    if summary is None:  # no story was kept before the run stopped: nothing to count but the time
        return words / s, 0.0, 0, 0, stopped
    return words / s, summary.tokens / s, sum(summary.dropped.values()), summary.rejected, stopped


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="B = 1 and 16 only, no best-of rows")
    ap.add_argument("--tokens", type=int, default=96)
    ap.add_argument("--batches", default="1,2,4,8,16,32,64")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--stories", type=int, default=8, help="stories per accepted-words row (0: no such rows)")
    ap.add_argument("--only-best-of", action="store_true", help="the best-of rows only (no reference, no B rows)")
    ap.add_argument("--adapter", default=None, help="only this row: a LoRA adapter (fabula tune's adapter.gguf) against the plain engine")
    a = ap.parse_args()
    if a.quick:
        a.batches = "1,16"
    batches = [int(b) for b in a.batches.split(",")]
    texts = card_prompts(max(PROMPTS, *batches, DEFAULT_BATCH))
    if a.adapter:
        adapter_rows(a, texts)
        return
    if not a.only_best_of:
        batch_rows(a, batches, texts)
    if a.quick:
        return
    bk = DEFAULT_BATCH
    print(f"\n{'best of k':<22}{'tokens/s':>10}")
    backend = EmbeddedBackend.load(threads=a.threads, batch=bk, words=120)
    w1, t1 = kept_words(backend, texts[:bk], a.tokens, 1)
    w4, t4 = kept_words(backend, texts[:bk], a.tokens, 4)
    print(f"{'k=1, ' + str(bk) + ' prompts':<22}{t1:>10.1f}   {w1:6.1f} candidate words kept/s")
    print(f"{'k=4, ' + str(bk) + ' prompts':<22}{t4:>10.1f}   {w4:6.1f} candidate words kept/s   ratio {w4 / w1:.2f}", flush=True)
    if a.stories:
        rows = {}
        for k in (1, 4):
            rows[k] = accepted_words(k, a.stories, a.threads)
            w, t, dropped, rejected, stopped = rows[k]
            print(
                f"{'k=' + str(k) + ', ' + str(a.stories) + ' stories':<22}{t:>10.1f}   {w:6.1f} accepted words/s"
                + (f"   ratio {w / rows[1][0]:.2f}" if k > 1 else "")
                + f"   ({dropped} drafts dropped, {rejected} cards rejected"
                + (", stopped: too many cards rejected)" if stopped else ")"),
                flush=True,
            )


def adapter_rows(a, texts: list[str]) -> None:
    """Tokens/s of the engine at the default batch with and without the adapter."""
    bk = DEFAULT_BATCH
    plain = EmbeddedBackend.load(threads=a.threads, batch=bk, words=120)
    tuned = EmbeddedBackend.load(threads=a.threads, batch=bk, words=120, adapter=a.adapter)
    prompts = texts[: max(PROMPTS, bk)]
    print(f"{cpu_name()}, {os.cpu_count()} cores; adapter {a.adapter}: B={bk}, {len(prompts)} prompts x {a.tokens} tokens, {a.threads} threads", flush=True)
    fabula(plain, prompts[:1], 4)  # warm-up
    fabula(tuned, prompts[:1], 4)
    rates: dict[str, list[float]] = {"without": [], "with": []}
    for side, backend in (("without", plain), ("with", tuned), ("with", tuned), ("without", plain)):
        n, s = fabula(backend, prompts, a.tokens)
        rates[side].append(n / s)
        print(f"  {side:<8} the adapter: {n / s:7.1f} tokens/s", flush=True)
    w, wo = sum(rates["with"]) / 2, sum(rates["without"]) / 2
    print(f"{'with the adapter':<22}{w:>10.1f} tokens/s, without {wo:.1f}: ratio {w / wo:.2f}\n", flush=True)


def batch_rows(a, batches: list[int], texts: list[str]) -> None:
    """The reference, fabula and the ceiling at each B."""
    from llama_cpp import Llama

    ref_texts = texts[:PROMPTS]
    path = default_model_path()
    llm = Llama(model_path=path, n_ctx=1024, n_batch=512, n_threads=a.threads, n_threads_batch=a.threads, verbose=False)
    print(
        f"{cpu_name()}, {os.cpu_count()} cores; model {os.path.basename(path)}, max({PROMPTS}, B) prompts x {a.tokens} tokens, {a.threads} threads", flush=True
    )
    reference(llm, texts[:1], 4)  # warm-up
    refs, rows = [], []
    for b in batches:
        n, s = reference(llm, ref_texts, a.tokens)
        refs.append(n / s)
        print(f"  reference run: {n / s:7.1f} tokens/s", flush=True)
        backend = EmbeddedBackend.load(threads=a.threads, batch=b, words=120)
        fabula(backend, texts[:1], 4)  # warm-up
        n, s = fabula(backend, texts[: max(PROMPTS, b)], a.tokens)
        cn, cs = ceiling(backend, texts[: max(PROMPTS, b)], a.tokens, b)
        rows.append((b, n / s, cn / cs))
        print(f"  fabula B={b:<2}:    {n / s:7.1f} tokens/s   ceiling {cn / cs:7.1f}", flush=True)
    ref = sum(refs) / len(refs)
    best = max(rows, key=lambda r: r[1])
    print()
    print(f"{'run':<22}{'tokens/s':>10}{'ratio':>8}{'ceiling':>10}{'of ceiling':>12}")
    print(f"{'reference (mean)':<22}{ref:>10.1f}{1.0:>8.2f}")
    for b, tps, ceil in rows:
        mark = "  <- best" if b == best[0] else ""
        print(f"{'fabula B=' + str(b):<22}{tps:>10.1f}{tps / ref:>8.2f}{ceil:>10.1f}{tps / ceil:>12.2f}{mark}")
    b1 = next((tps for b, tps, _ in rows if b == 1), None)
    b1_text = f"{b1 / ref:.2f}" if b1 else "n/a"
    low = min(rows, key=lambda r: r[1] / r[2])
    print(f"lowest share of the ceiling: {low[1] / low[2]:.2f} at B={low[0]}")
    print(f"best ratio: {best[1] / ref:.2f} at B={best[0]}; B=1 ratio: {b1_text}; ceiling ratio at B={best[0]}: {best[1] / best[2]:.2f}", flush=True)


if __name__ == "__main__":
    main()
