"""The embedded backend on the real Gemma 3 270M model (short outputs)."""

import numpy as np
import pytest

from fabula.backends.base import Request
from fabula.errors import BackendError

pytestmark = pytest.mark.model

PROMPT = (
    "From a collection of literary short stories about former Cold War spies.\n\nThe Exchange\n\n"
    "In 1994, Arnolds Balodis repaired pianos for churches and schools in Marseille, and nobody there knew that he had once served the KGB."
)


@pytest.fixture(scope="module")
def model():
    from fabula.backends.embedded import EmbeddedBackend

    return EmbeddedBackend.load(words=120)


def test_same_seed_same_text_and_new_seed_new_text(model):
    req = Request(prompt=PROMPT, max_tokens=40, min_tokens=10, seed=11)
    a, b = model.complete(req), model.complete(req)
    assert a.text == b.text and a.tokens == b.tokens
    c = model.complete(Request(prompt=PROMPT, max_tokens=40, min_tokens=10, seed=12))
    assert c.text != a.text


def test_paragraph_stops_at_newline_but_not_before_min_tokens(model):
    c = model.complete(Request(prompt=PROMPT, max_tokens=60, min_tokens=30, seed=3))
    assert c.tokens >= 30 and "\n" not in c.text
    assert c.finish in ("stop", "length")


def test_banned_phrase_is_undone_by_backtracking(model):
    greedy = model.complete(Request(prompt=PROMPT, max_tokens=40, min_tokens=40, seed=1, temperature=0, repeat_penalty=1.0))
    words = greedy.text.split()
    phrase = " ".join(words[3:5]).strip(".,;:\"'").lower()  # two words the model certainly writes
    banned = model.complete(Request(prompt=PROMPT, max_tokens=40, min_tokens=40, seed=1, temperature=0, repeat_penalty=1.0, ban=(phrase,)))
    assert banned.backtracks >= 1
    assert phrase not in " ".join(banned.text.lower().split())


def test_common_grams_are_kept_out_while_sampling(model):
    """The corpus's common 4-grams (ban_grams): the greedy text's own 4-grams,
    banned, are undone where they close and never reach the completion."""
    from fabula.checks import words

    req = Request(prompt=PROMPT, max_tokens=40, min_tokens=40, seed=1, temperature=0, repeat_penalty=1.0)
    greedy = model.complete(req)
    w = [x.lower() for x in words(greedy.text)]
    grams = frozenset(" ".join(w[i : i + 4]) for i in range(2, 8))  # 4-grams the model certainly writes
    banned = model.complete(Request(**{**req.__dict__, "ban_grams": grams}))
    assert banned.backtracks >= 1
    b = [x.lower() for x in words(banned.text)]
    assert not grams & {" ".join(b[i : i + 4]) for i in range(len(b) - 4)}  # the last word may still be open


def test_missing_model_file_is_a_clear_error(tmp_path):
    from fabula.backends import make_backend

    with pytest.raises(BackendError, match="no such file"):
        make_backend(f"gguf:{tmp_path}/none.gguf")


class _Job:
    """A job of one request that records when it was fed."""

    log: list = []

    def __init__(self, name, max_tokens, seed):
        self.name, self.req, self.result = name, Request(prompt=PROMPT, max_tokens=max_tokens, min_tokens=max_tokens, stop_at_newline=False, seed=seed), None

    def request(self):
        return self.req if self.result is None else None

    def feed(self, c):
        self.result = c


def test_a_sequence_that_stops_early_frees_its_slot_for_the_next():
    from fabula.backends.embedded import EmbeddedBackend

    be = EmbeddedBackend.load(batch=2, words=120)
    jobs = [_Job("short", 4, 1), _Job("long", 40, 2), _Job("next", 4, 3), _Job("last", 4, 4)]
    order = [j.name for j in be.run(iter(jobs))]
    # "next" and "last" run in the slot "short" freed while "long" is still decoding
    assert order == ["short", "next", "last", "long"]
    assert [j.result.tokens for j in jobs] == [4, 40, 4, 4]


def test_batched_decoding_is_deterministic_and_per_sequence_seeded():
    from fabula.backends.embedded import EmbeddedBackend

    be = EmbeddedBackend.load(batch=4, words=120)

    def texts():
        jobs = [_Job(str(i), 24, seed) for i, seed in enumerate([5, 6, 5, 7])]
        list(be.run(iter(jobs)))
        return [j.result.text for j in jobs]

    a, b = texts(), texts()
    assert a == b
    assert len(set(a)) >= 3  # different seeds, different continuations


def test_an_impossible_batch_is_refused_up_front():
    from fabula.backends.embedded import EmbeddedBackend

    with pytest.raises(BackendError, match="out of range"):
        EmbeddedBackend.load(batch=65)
    with pytest.raises(BackendError, match="KV cache"):
        EmbeddedBackend.load(batch=64, words=40000)


def test_special_tokens_are_never_sampled(model):

    L = model.L
    ids = []
    for special in ("<start_of_image>", "<unused0>", "<start_of_turn>", "<h2>"):
        data = special.encode()
        buf = (L.llama_token * 8)()
        n = L.llama_tokenize(model.vocab, data, len(data), buf, 8, False, True)  # parse_special: one token
        assert n == 1, special
        ids.append(buf[0])
    never = set(model._never_np.tolist())
    assert set(ids) <= never
    assert not never & model._eog  # the end of text stays sampleable
    assert model.tokenize("\n\n", bos=False)[0] not in never  # whitespace tokens stay


@pytest.fixture(scope="module")
def batch4():
    from fabula.backends.embedded import EmbeddedBackend

    return EmbeddedBackend.load(batch=4, words=120)


# How far below the best allowed token a greedy choice may fall when its text is
# decoded again in another batch shape (logits, nats). llama.cpp promises no
# bit-equal logits across batch shapes (kernels and summation orders differ;
# on Intel Xeons with AVX-512 a near tie flipped a greedy token), but the gaps
# stay far below what a missing or wrong prompt gives (several nats).
FORCED_GAP = 0.5


def forced_gaps(be, prompt: str, text: str, stop_at_newline: bool = True) -> list[float]:
    """Decode ``prompt + text`` as the only sequence of a batch (teacher
    forcing) and return, for each token of ``text``, how far its logit falls
    below the best token a greedy sampler under min_tokens could take there."""
    L = be.L
    head = be.tokenize(prompt)
    full = be.tokenize(prompt + text)
    assert full[: len(head)] == head  # the text starts a new token (it starts with a space)
    L.llama_memory_clear(be.mem, True)
    for slot in be.slots:  # the next run() must not trust cells this decode overwrote
        slot.cells.clear()
    be.lbatch.n_tokens = 0
    for pos, tok in enumerate(full[:-1]):
        be._add(tok, pos, 0, pos >= len(head) - 1)
    assert L.llama_decode(be.ctx, be.lbatch) == 0
    gaps = []
    for i, tok in enumerate(full[len(head) :]):
        row = np.array(be._logits(len(head) - 1 + i))  # by batch position
        row[be._never_np] = -np.inf
        row[be._no_end_np if stop_at_newline else be._eog_np] = -np.inf
        gaps.append(float(row.max() - row[tok]))
    L.llama_memory_clear(be.mem, True)
    return gaps


def test_best_of_decodes_the_prompt_once_and_copies_it_to_every_candidate(batch4):
    be = batch4
    n_prompt = len(be.tokenize(PROMPT))
    before = be.prompt_tokens
    greedy = Request(prompt=PROMPT, max_tokens=24, min_tokens=24, seed=5, temperature=0, repeat_penalty=1.0, n=4)
    c = be.complete(greedy)
    assert be.prompt_tokens - before == n_prompt  # once, not four times
    # Greedy, in one batch: four candidates that all see the prompt write the
    # same text (a candidate whose copy of the prompt's KV cells went wrong
    # would not), and the same request in the same batch shape gives the same
    # bytes again.
    assert len(c.candidates) == 4 and len(set(c.candidates)) == 1 and c.tokens == 4 * 24
    assert be.complete(greedy).candidates == c.candidates
    # And the text is the prompt's own greedy continuation: decoded again with
    # the prompt, alone (another batch shape, so logits differ by rounding),
    # every token is the best one or within rounding of it. Text written from
    # a missing, partial or other sequence's prompt is not.
    gaps = forced_gaps(be, PROMPT, c.text)
    assert len(gaps) >= 20 and max(gaps) < FORCED_GAP, gaps


def test_best_of_samples_distinct_candidates_reproducibly(batch4):
    req = Request(prompt=PROMPT, max_tokens=30, min_tokens=30, seed=9, n=4)
    a, b = batch4.complete(req), batch4.complete(req)
    assert a.candidates == b.candidates  # same seed, batch and K: same bytes
    assert len(set(a.candidates)) >= 3


def test_best_of_larger_than_the_batch_is_refused(model):
    with pytest.raises(BackendError, match="--batch 2"):
        model.complete(Request(prompt=PROMPT, max_tokens=4, seed=1, n=2))


def test_default_batch_and_best_of_are_deterministic_and_keep_banned_phrases_out():
    """At the write's defaults (DEFAULT_BATCH sequences, lanes of DEFAULT_BEST_OF
    candidates), twice as many jobs as lanes: the same seeds give the same
    bytes, and a phrase the unbanned run wrote is in no candidate once banned."""
    from fabula.api import DEFAULT_BATCH, DEFAULT_BEST_OF
    from fabula.backends.base import OneShot
    from fabula.backends.embedded import EmbeddedBackend
    from fabula.checks import phrase_pattern, words

    be = EmbeddedBackend.load(batch=DEFAULT_BATCH, words=120)
    lanes = DEFAULT_BATCH // DEFAULT_BEST_OF

    def run(ban=()):
        jobs = [
            OneShot(Request(prompt=PROMPT, max_tokens=16, min_tokens=16, stop_at_newline=False, seed=s, temperature=1.0, n=DEFAULT_BEST_OF, ban=ban))
            for s in range(2 * lanes)
        ]
        list(be.run(iter(jobs)))
        return [c for j in jobs for c in j.result.candidates]

    a, b = run(), run()
    assert a == b and len(a) == 2 * lanes * DEFAULT_BEST_OF and len(set(a)) > len(a) // 2
    w = words(a[0].lower())
    phrase = next(p for p in (f"{x} {y}" for x, y in zip(w[2:], w[3:])) if phrase_pattern([p]).search(a[0]))
    banned = run(ban=(phrase,))  # two words the unbanned run wrote, as it wrote them
    assert banned == run(ban=(phrase,))
    assert banned != a and not [c for c in banned if phrase_pattern([phrase]).search(c)]
