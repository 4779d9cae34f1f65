"""DIR/index.npz: the writer's memory of a corpus, saved and loaded instead of
rebuilt from every text; rebuilt whenever it does not match the records."""

import numpy as np
import pytest

import fabula
from fabula import index
from fabula.store import read_heads, read_jsonl
from tests.conftest import plan_lines


def write(folder, n, **kw):
    return fabula.Corpus(folder).write(n, backend="fake", seed=3, progress=False, **kw)


def memory(folder, n=40, ban_common=0.02):
    return index.open_memory(folder, read_heads(folder / "corpus.jsonl"), 0.5, ban_common, n)


def same_state(a, b, folder, a_signatures=None):
    """``a_signatures``: a's, read before the folder's signatures file changed."""
    assert a.near.keys == b.near.keys
    want = index.signatures(folder, a) if a_signatures is None else a_signatures
    assert np.array_equal(want, index.signatures(folder, b))
    assert np.array_equal(a.corpus.bits, b.corpus.bits)
    assert np.array_equal(a.counts.counts, b.counts.counts)
    assert a.counts.common == b.counts.common


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "c"
    write(folder, 30)
    return folder


def test_a_run_saves_the_index_and_a_resume_loads_it_instead_of_the_texts(corpus):
    assert (corpus / "index.npz").is_file()
    loaded = memory(corpus)
    assert (loaded.loaded, loaded.read) == (30, 0)
    (corpus / "index.npz").unlink()
    rebuilt = memory(corpus)
    assert (rebuilt.loaded, rebuilt.read) == (0, 30)
    same_state(loaded, rebuilt, corpus)  # the saved memory is exactly what the texts give
    s = write(corpus, 40)
    assert (s.opened_from_index, s.opened_from_texts) == (0, 30)  # no index: read every text once
    s = write(corpus, 45)
    assert (s.opened_from_index, s.opened_from_texts) == (40, 0)


def test_a_loaded_index_still_finds_near_duplicates_of_old_stories(corpus):
    mem = memory(corpus)
    first = read_jsonl(corpus / "corpus.jsonl")[0]
    text = (corpus / first["file"]).read_text()
    v = mem.near.check(text.replace(" the ", " a ", 1))
    assert not v.keep and v.reason == "near-duplicate" and first["id"] in v.detail


def test_stories_after_the_last_save_are_read_from_their_texts(corpus):
    mem = memory(corpus)
    mem_signatures = index.signatures(corpus, mem)
    recs = read_heads(corpus / "corpus.jsonl")
    # An index saved at story 20 (a run killed between saves): the last 10 come from the texts.
    part = index.open_memory(corpus, recs[:20], 0.5, 0.02, 40)
    index.save(corpus, part)
    again = memory(corpus)
    assert (again.loaded, again.read) == (20, 10)
    same_state(mem, again, corpus, mem_signatures)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "repair", "lower-limit", "signatures-short", "signatures-other"])
def test_an_index_that_does_not_match_is_rebuilt_from_the_texts(corpus, damage):
    path = corpus / "index.npz"
    n, ban = 40, 0.02
    if damage == "garbage":
        path.write_bytes(b"not an npz file")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:5000])
    elif damage == "repair":  # a story lost and its record dropped: the ids no longer match
        recs = read_jsonl(corpus / "corpus.jsonl")
        (corpus / recs[3]["file"]).unlink()
        from fabula.verify import repair, verify

        repair(corpus, verify(corpus))
    elif damage == "lower-limit":  # saved for N = 400 (ban at 8 stories); a run for N = 40 bans at 2
        index.save(corpus, index.open_memory(corpus, read_heads(corpus / "corpus.jsonl"), 0.5, 0.02, 400))
    elif damage == "signatures-short":  # the signatures file lost its last row
        sig = corpus / index.SIGNATURES
        sig.write_bytes(sig.read_bytes()[:-512])
    elif damage == "signatures-other":  # another corpus's signatures file, as long
        sig = corpus / index.SIGNATURES
        sig.write_bytes(sig.read_bytes()[512:] + sig.read_bytes()[:512])
    mem = memory(corpus, n, ban)
    recs = read_jsonl(corpus / "corpus.jsonl")
    if damage != "lower-limit":
        assert (mem.loaded, mem.read) == (0, len(recs))
    else:
        assert mem.loaded == 0 and mem.counts.limit == 2
    path.unlink(missing_ok=True)
    same_state(mem, memory(corpus, n, ban), corpus)


def test_a_higher_ban_limit_reuses_the_index_and_keeps_only_grams_common_enough(corpus):
    low = memory(corpus, 40, 0.02)  # limit 2
    high = memory(corpus, 400, 0.02)  # limit 8
    assert high.loaded == 30 and high.counts.limit == 8
    (corpus / "index.npz").unlink()
    assert high.counts.common == memory(corpus, 400, 0.02).counts.common
    assert high.counts.common <= low.counts.common


# -- the planner's state ---------------------------------------------------------


def test_a_resume_restores_the_planner_from_the_index_and_plans_what_a_full_recount_plans(tmp_path, monkeypatch):
    """Two copies of a 30-story corpus resume to 40: one restores the planner's
    tallies from index.npz (and parses no card planned before it), the other
    has no planner state and counts every card. Same plan, same stories."""
    import shutil

    from fabula.records import Card

    a = tmp_path / "a"
    write(a, 30)
    b = tmp_path / "b"
    shutil.copytree(a, b)
    saved = index.load_planner(a)
    assert saved is not None and saved[0]["counted"] == 30 and saved[1] == (a / "plan.jsonl.gz").stat().st_size
    parsed = []
    real = Card.from_dict
    monkeypatch.setattr(Card, "from_dict", staticmethod(lambda d: parsed.append(d["id"]) or real(d)))
    write(a, 40)
    assert not [i for i in parsed if i < 30]  # no card of the saved plan was parsed to resume
    monkeypatch.setattr(index, "load_planner", lambda root: None)  # b: counted from the plan
    write(b, 40)
    assert plan_lines(a) == plan_lines(b)  # the lines; members follow the commits' timing
    assert (a / "corpus.jsonl").read_bytes() == (b / "corpus.jsonl").read_bytes()


@pytest.mark.parametrize("edit", ["rewrite", "truncate", "append"])
def test_a_planner_state_is_used_only_while_the_plan_starts_with_what_it_counted(corpus, edit):
    from fabula.plan_file import member, members

    path = corpus / "plan.jsonl.gz"
    data = path.read_bytes()
    last, lines = list(members(path))[-1]
    if edit == "rewrite":  # the last part written again, one card changed
        at = lines.rfind(b'"pack":"spy"')
        edited = data[:last] + member(lines[:at] + b'"pack":"spz"' + lines[at + 12 :])
    elif edit == "truncate":  # the last card gone
        cut = lines[: lines.rfind(b"\n", 0, len(lines) - 1) + 1]
        edited = data[:last] + (member(cut) if cut else b"")
    else:  # a card planned after the save: counted from the card, the state still used
        edited = data + member(lines.split(b"\n")[0] + b"\n")
    assert index.load_planner(corpus) is not None
    path.write_bytes(edited)
    assert (index.load_planner(corpus) is not None) == (edit == "append")


def test_an_older_folders_plain_plan_jsonl_is_read_and_continued(tmp_path):
    """A folder written before the plan was compressed holds plan.jsonl: a
    resume reads it, counts it, and appends its new cards there."""
    import gzip

    old, new = tmp_path / "old", tmp_path / "new"
    write(old, 12)
    write(new, 20)
    (old / "plan.jsonl").write_bytes(gzip.decompress((old / "plan.jsonl.gz").read_bytes()))
    (old / "plan.jsonl.gz").unlink()
    assert index.load_planner(old) is None  # the saved state hashed other bytes: the planner is recounted
    write(old, 20)
    assert not (old / "plan.jsonl.gz").exists() and index.load_planner(old) is not None
    assert (old / "plan.jsonl").read_bytes() == gzip.decompress((new / "plan.jsonl.gz").read_bytes())
    assert (old / "corpus.jsonl").read_bytes() == (new / "corpus.jsonl").read_bytes()


def test_a_card_planned_before_the_saved_state_and_still_waiting_is_written(tmp_path, monkeypatch):
    """A card whose story is not in corpus.jsonl (here: its record removed by
    hand) sits in the counted part of the plan: the resume finds it by its id,
    parses that card alone, and writes it."""
    import json

    from fabula.records import Card

    folder = tmp_path / "c"
    write(folder, 12)
    lines = (folder / "corpus.jsonl").read_bytes().split(b"\n")[:-1]
    dropped = json.loads(lines[3])
    (folder / "corpus.jsonl").write_bytes(b"\n".join(lines[:3] + lines[4:]) + b"\n")
    (folder / dropped["file"]).unlink()
    assert index.load_planner(folder).state["counted"] == 12
    parsed = []
    real = Card.from_dict
    monkeypatch.setattr(Card, "from_dict", staticmethod(lambda d: parsed.append(d["id"]) or real(d)))
    s = write(folder, 12)
    assert parsed[:1] == [dropped["card"]["id"]] and s.written == 1
    recs = read_jsonl(folder / "corpus.jsonl")
    assert len(recs) == 12 and dropped["card"]["id"] in {r["card"]["id"] for r in recs}


def test_a_resume_reads_the_plan_only_from_the_first_card_still_waiting(tmp_path, monkeypatch):
    """Every card before the saved waiting_from had its story then and still
    does: the resume does not read that part of the plan. A card waiting
    there again (its record dropped) makes it read the whole plan."""
    import json

    from fabula import plan_file

    folder = tmp_path / "c"
    write(folder, 20)
    saved = index.load_planner(folder)
    assert saved is not None and saved.waiting_from == saved.end > 0  # a run that ended: nothing waits
    starts = []
    real = plan_file.lines
    monkeypatch.setattr(plan_file, "lines", lambda path, start=0: starts.append(start) or real(path, start))
    write(folder, 24)
    assert starts and min(starts) == saved.end
    lines = (folder / "corpus.jsonl").read_bytes().split(b"\n")[:-1]
    dropped = json.loads(lines[5])
    (folder / "corpus.jsonl").write_bytes(b"\n".join(lines[:5] + lines[6:]) + b"\n")
    (folder / dropped["file"]).unlink()
    starts.clear()
    assert write(folder, 24).written == 1 and 0 in starts
    assert dropped["card"]["id"] in {r["card"]["id"] for r in read_jsonl(folder / "corpus.jsonl")}


def test_waiting_from_is_the_first_card_neither_kept_nor_rejected(tmp_path, spy):
    from fabula.plan import Planner
    from fabula.store import Store

    s = Store.open(tmp_path / "c", {"pack": "spy", "seed": 1})
    planner = Planner(spy, 1, 10)
    cards = [planner.next() for _ in range(3)]
    for c in cards:
        s.plan(c)
    s.accept(0, "Story of card one.\n", {"card": {"id": cards[1].id}})
    s.flush()
    at = {cid: pos for cid, pos in s.unfinished.items()}
    assert set(at) == {cards[0].id, cards[2].id} and s.waiting_from() == at[cards[0].id]
    s.accept(1, "Story of card zero.\n", {"card": {"id": cards[0].id}})
    s.flush()
    assert s.waiting_from() == at[cards[2].id]
    s.reject({"card": {"id": cards[2].id}, "reason": "too-short"})
    assert s.waiting_from() == (tmp_path / "c" / "plan.jsonl.gz").stat().st_size


def test_a_small_corpus_saves_its_bit_sets_sparse_and_a_full_one_whole(tmp_path):
    write(tmp_path / "three", 3)
    folder_bytes = sum(p.stat().st_size for p in (tmp_path / "three").rglob("*") if p.is_file())
    assert folder_bytes < 1_000_000  # the two fixed 16 MiB bit sets would be 33 MB
    with np.load(tmp_path / "three" / "index.npz") as z:
        assert "ngram_bits_at" in z.files and "ngram_bits" not in z.files
    rng = np.random.default_rng(0)
    for share in (0.01, 0.5):  # sparse, then whole
        arr = (rng.random(1 << 16) < share).astype(np.uint8) * rng.integers(1, 255, 1 << 16, dtype=np.uint8)
        saved = index._sparse("a", arr)
        assert ("a" in saved) == (share == 0.5)
        np.savez(tmp_path / "a.npz", **saved)
        with np.load(tmp_path / "a.npz") as z:
            assert np.array_equal(index._dense(z, "a", arr), arr)
            with pytest.raises(ValueError):
                index._dense(z, "a", np.zeros(1 << 15, dtype=np.uint8))  # saved with another size: rebuilt


def test_a_save_appends_only_the_new_signatures_and_a_killed_runs_extra_rows_are_cut(corpus, monkeypatch):
    from fabula.checks import NearDuplicates

    sig = corpus / index.SIGNATURES
    before = sig.read_bytes()
    assert len(before) == 30 * 512
    asked = []
    real = NearDuplicates.signatures_since
    monkeypatch.setattr(NearDuplicates, "signatures_since", lambda self, k: asked.append(k) or real(self, k))
    write(corpus, 45)
    assert asked == [30]  # one save, at the end of the run: the rows after the 30 saved
    after = sig.read_bytes()
    assert len(after) == 45 * 512 and after[: len(before)] == before  # the first 30 rows as they were
    # A run killed after appending rows but before renaming its index.npz into place:
    with open(sig, "ab") as f:
        f.write(b"\x07" * 512 * 8)
    mem = memory(corpus, 60)
    assert (mem.loaded, mem.read) == (45, 0)
    s = write(corpus, 50)
    assert s.opened_from_index == 45
    assert sig.stat().st_size == 50 * 512
    (corpus / "index.npz").unlink()
    sig.unlink()
    same_state(memory(corpus, 60), memory(corpus, 60), corpus)
    rebuilt = memory(corpus, 60)
    assert (rebuilt.loaded, rebuilt.read) == (0, 50)
    index.save(corpus, rebuilt)
    assert sig.read_bytes()[: len(after)] == after  # the same signatures, rebuilt from the texts
