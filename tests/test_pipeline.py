import pytest

from fabula.backends.fake import FakeBackend
from fabula.pipeline import TooManyRejects, write_corpus
from fabula.store import Store
from fabula.write import WriteSettings

SETTINGS = WriteSettings(words=300)


def run(tmp_path, spy, n, backend=None, seed=1, **kw):
    store = Store.open(tmp_path / "c", {"pack": "spy", "seed": seed})
    backend = backend or FakeBackend()
    summary = write_corpus(store, spy, backend, n, seed, SETTINGS, max_attempts=kw.pop("max_attempts", 3), avoid=kw.pop("avoid", spy.avoid_phrases), **kw)
    return store, summary


def snapshot(root):
    return {p.name: p.read_bytes() for p in (root / "stories").iterdir()}


def test_writes_n_valid_stories_with_full_records(tmp_path, spy):
    store, s = run(tmp_path, spy, 4)
    recs = store.records()
    assert s.written == 4 and [r["index"] for r in recs] == [0, 1, 2, 3]
    for r in recs:
        text = (store.root / r["file"]).read_text()
        assert r["card"]["cast"]["hero"]["first"] in text and r["card"]["slots"]["city"] in text
        assert {"card", "pack", "backend", "model", "sampling", "seed", "tokens", "seconds", "checks", "words"} <= r.keys()
        assert all(c["keep"] for c in r["checks"])


def test_rerun_continues_and_extends_without_touching_finished_stories(tmp_path, spy):
    store, _ = run(tmp_path, spy, 3)
    before = snapshot(store.root)
    _, again = run(tmp_path, spy, 3)
    assert again.written == 0 and snapshot(store.root) == before
    store, more = run(tmp_path, spy, 5)
    after = snapshot(store.root)
    assert more.written == 2 and len(after) == 5
    assert all(after[k] == v for k, v in before.items())
    cards = [r["card"]["id"] for r in store.records()]
    assert len(set(cards)) == 5


def test_same_seed_same_corpus(tmp_path, spy):
    a, _ = run(tmp_path / "a", spy, 3)
    b, _ = run(tmp_path / "b", spy, 3)
    assert snapshot(a.root) == snapshot(b.root)


def _filler(req, extra=""):
    import random

    from fabula.backends.fake import filler

    return " " + filler(random.Random(req.seed), 16) + extra


def test_failing_drafts_are_rewritten_then_rejected_and_replaced(tmp_path, spy):
    from fabula.plan import Planner

    first = Planner(spy, 1, 2).next()

    # every draft of the first card holds a banned phrase; other cards are fine
    def responder(req):
        return _filler(req, " The rain-soaked street was empty." if req.prompt.endswith(first.beats[0]) else "")

    store, s = run(tmp_path, spy, 2, backend=FakeBackend(responder=responder))
    assert s.written == 2 and s.rejected == 1 and s.dropped == {"stock-phrase": 3}
    (rej,) = store.rejects()
    assert rej["reason"] == "stock-phrase" and rej["attempts"] == 3 and "rain-soaked" in rej["last_draft"]
    assert rej["card"]["id"] == first.id
    assert first.id not in {r["card"]["id"] for r in store.records()}


def test_near_duplicates_are_dropped(tmp_path, spy):
    same = " ".join(["He counted the steps to the harbour again and kept the ticket folded in his glove."] * 1)
    fake = FakeBackend(responder=lambda req: " " + same + " The tram was late; the clerk read a paper; the lamp hummed over the counter.")
    with pytest.raises(TooManyRejects, match="rejects.jsonl"):
        run(tmp_path, spy, 30, backend=fake, max_attempts=1, near_threshold=0.3)


def test_a_broken_model_stops_with_a_clear_error(tmp_path, spy):
    fake = FakeBackend(responder=lambda req: _filler(req, " Chapter 1 began."))
    with pytest.raises(TooManyRejects, match=r"cards failed all 2 drafts, so the run stops \(drafts dropped: meta-text \d+; last: meta-text") as e:
        run(tmp_path, spy, 3, backend=fake, max_attempts=2)
    assert "then try --words or the pack's sampling settings, or a stronger model" in str(e.value)


def test_drafts_too_long_for_the_window_point_to_a_larger_words(tmp_path, spy):
    fake = FakeBackend(responder=lambda req: _filler(req, " The tram was late." * 400))
    with pytest.raises(TooManyRejects, match=r"drafts dropped: too-long \d+.*then try a larger --words"):
        run(tmp_path, spy, 3, backend=fake, max_attempts=2)


def test_a_draft_with_a_special_token_never_reaches_the_store(tmp_path, spy):
    """The first draft carries Gemma's <start_of_image>; it is dropped as markup and redrawn."""
    import random

    from fabula.backends.fake import filler

    calls = []

    def responder(req):
        calls.append(req)
        text = " " + filler(random.Random(req.seed), int(req.min_tokens * 0.75) + 2)
        return text + " <start_of_image> He left." if len(calls) == 1 else text

    store, s = run(tmp_path, spy, 1, backend=FakeBackend(responder=responder))
    assert s.written == 1 and s.dropped["markup"] == 1
    for r in store.records():
        assert "<start_of_image>" not in (store.root / r["file"]).read_text()


def test_instruct_mode_stops_early_when_a_base_model_answers_with_template_debris(tmp_path, spy):
    from fabula.pipeline import BaseModelInInstructMode

    debris = FakeBackend(responder=lambda req: "[INST] [INST] <h2>Story</h2> [INST] " * 20)
    store = Store.open(tmp_path / "c", {"pack": "spy", "seed": 1})
    with pytest.raises(BaseModelInInstructMode, match="--mode steer"):
        write_corpus(store, spy, debris, 5, 1, WriteSettings(words=300, mode="instruct"), max_attempts=4)
    assert len(debris.history) == 6  # stopped at the sixth draft, not after 5 x 4
    assert store.records() == []


@pytest.mark.parametrize("bans", [True, False])
def test_the_corpus_common_grams_go_to_a_backend_that_bans_them_and_to_no_other(tmp_path, spy, bans):
    """Request.ban_grams is worked out only for a backend that keeps them out
    while sampling (Backend.bans_grams); for any other it stays empty."""
    seen: list[frozenset] = []

    class Recording(FakeBackend):
        bans_grams = bans

        def complete(self, request):
            seen.append(request.ban_grams)
            return super().complete(request)

    store = Store.open(tmp_path / "c", {"pack": "spy", "seed": 1})
    s = write_corpus(store, spy, Recording(), 30, 1, WriteSettings(words=300, ban_common=0.05), max_attempts=3)
    assert s.written == 30 and seen
    assert any(seen) == bans
