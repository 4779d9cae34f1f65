import random

import numpy as np
import pytest

from fabula import index
from fabula.backends.fake import FakeBackend, filler
from fabula.check_ahead import LAG, CheckAhead, movable
from fabula.checks import NearDuplicates, default_checks, run_checks
from fabula.pipeline import write_corpus
from fabula.plan import Planner
from fabula.score import gram_hashes
from fabula.store import Store, read_jsonl
from fabula.text import tokens, word_hashes
from fabula.write import WriteSettings
from tests.conftest import plan_lines


def _sometimes_long(request):
    """The fake's own paragraph, one in twenty with 60 more words: drafts the length check drops."""
    text = FakeBackend().complete(request).text
    rng = random.Random(request.seed)
    return text + (" " + filler(rng, 60) if rng.random() < 0.05 else "")


def _write(root, spy, n, apart, **kw):
    store = Store.open(root, {"pack": "spy", "seed": 4})
    backend = FakeBackend(responder=_sometimes_long)
    return write_corpus(store, spy, backend, n, 4, WriteSettings(words=300), max_attempts=3, avoid=spy.avoid_phrases, check_ahead=apart, **kw)


def _stories(root):
    return {r["card"]["id"]: (root / r["file"]).read_text() for r in read_jsonl(root / "corpus.jsonl")}


def test_checking_in_a_process_of_its_own_keeps_the_same_stories_and_is_the_same_twice(tmp_path, spy, monkeypatch):
    monkeypatch.setattr(index, "SAVE_EVERY", 7)  # index saves while stories are out at the checker
    roots = {}
    for name, apart in (("here", False), ("apart", True), ("apart again", True)):
        roots[name] = tmp_path / name
        s = _write(roots[name], spy, 40, apart)
        assert s.written == 40 and s.committed == 40
        assert sum(s.dropped.values()) > 0  # drafts were dropped and drawn again while others were out
    # Each card's story depends on the card and attempt alone (fake backend,
    # best of 1): the same stories, planned the same; only the order they
    # were kept in may differ, by at most the lag.
    assert plan_lines(roots["apart"]) == plan_lines(roots["here"])
    assert _stories(roots["apart"]) == _stories(roots["here"])
    # And the same run twice is the same, byte for byte.
    assert (roots["apart"] / "corpus.jsonl").read_bytes() == (roots["apart again"] / "corpus.jsonl").read_bytes()
    _write(roots["apart"], spy, 50, True)  # a resume goes on from the saved state
    assert len(read_jsonl(roots["apart"] / "corpus.jsonl")) == 50


def test_the_checks_process_gives_the_verdicts_checks_give_here(spy):
    lo, hi = spy.word_range(300)
    checks = default_checks(spy, lo, hi, spy.avoid_phrases)
    assert movable(checks) and not movable([*checks, lambda text, card: True])
    planner = Planner(spy, 2, 20)
    rng = random.Random(5)
    cards = [planner.next() for _ in range(LAG + 3)]
    texts = [f"{c.hero.full} came to {c.slots.get('city', 'the city')}. {filler(rng, rng.choice([150, 290]))}" for c in cards]
    ahead = CheckAhead(checks)
    try:
        for text, card in zip(texts, cards):
            ahead.submit(text, card)
        got = [ahead.verdicts() for _ in cards]
    finally:
        ahead.close()
    assert [vs for vs, _ in got] == [run_checks(t, c, checks) for t, c in zip(texts, cards)]
    assert {all(v.keep for v in vs) for vs, _ in got} == {True, False}  # drafts kept and dropped alike
    near = NearDuplicates()
    for text, (vs, p) in zip(texts, got):  # a kept story's prints are the hashes the writer would work out
        if not all(v.keep for v in vs):
            assert p is None
            continue
        assert np.array_equal(p.signature, near.signature_of(word_hashes(tokens(text))))
        assert np.array_equal(p.grams, gram_hashes(text))


def test_a_checks_process_that_ends_is_a_clear_error(spy):
    lo, hi = spy.word_range(300)
    ahead = CheckAhead(default_checks(spy, lo, hi))
    try:
        ahead._child.proc.kill()
        ahead._child.proc.wait()
        with pytest.raises(RuntimeError, match="the checks' process ended"):
            ahead.submit("A story.", Planner(spy, 1, 5).next())
            ahead.verdicts()
    finally:
        ahead.close()


def test_long_stories_sent_faster_than_they_are_checked_never_deadlock_the_pipes(spy):
    """The writer sends LAG long stories before it reads a verdict, and each
    verdict carries the story's 4-gram hashes: more than a pipe holds in both
    directions at once. The checks' process reads its input in a thread of its
    own, so neither side waits for the other for ever."""
    import threading

    card = Planner(spy, 1, 1).next()
    rng = random.Random(1)
    text = "\n\n".join(f"{opener} {filler(rng, 280)}." for opener in card.openers)  # ~2,000 words, ~12 KB: it passes
    ahead = CheckAhead(default_checks(spy, 100, 5000))
    got: list = []

    def writer() -> None:
        for _ in range(4):
            for _ in range(LAG):
                ahead.submit(text, card)
            got.extend(ahead.verdicts() for _ in range(LAG))

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    t.join(60)
    try:
        assert not t.is_alive(), "the writer and the checks' process wait on each other"
        assert len(got) == 4 * LAG and all(p is not None and len(p.grams) > 1000 for _, p in got)
    finally:
        if t.is_alive():
            ahead._child.proc.kill()
        else:
            ahead.close()
