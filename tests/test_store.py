import json
import os
import threading
import time

import pytest

from fabula.errors import StoreError
from fabula.store import Store, lock_folder, read_jsonl, text_hash, unlock_folder
from tests.conftest import plan_cards, run_cli

MAN = {"pack": "spy", "seed": 1}


def test_accept_names_files_like_the_seeds(tmp_path):
    s = Store.open(tmp_path / "c", MAN)
    rec = s.accept(0, "Hello story.\n", {"words": 2})
    h = text_hash("Hello story.\n")
    assert rec["file"] == f"stories/000_{h}.txt"
    assert len(text_hash("x")) == 16
    assert (tmp_path / "c" / rec["file"]).read_text() == "Hello story.\n"
    assert s.records() == [rec]


def test_repair_cuts_a_torn_line_and_orphans(tmp_path):
    s = Store.open(tmp_path / "c", MAN)
    s.accept(0, "One.\n", {})
    corpus = tmp_path / "c" / "corpus.jsonl"
    with open(corpus, "ab") as f:
        f.write(b'{"id":"001_x","file":"stories/001_x.tx')  # killed mid-write
    (tmp_path / "c" / "stories" / "001_deadbeefdeadbeef.txt").write_text("orphan")  # renamed, never recorded
    (tmp_path / "c" / "stories" / "002_x.txt.tmp").write_text("half")
    s2 = Store.open(tmp_path / "c", MAN)
    assert len(s2.records()) == 1
    assert corpus.read_bytes().endswith(b"\n")
    assert sorted(p.name for p in (tmp_path / "c" / "stories").iterdir()) == [s2.records()[0]["file"].split("/")[1]]


def test_a_different_seed_or_pack_is_refused(tmp_path):
    Store.open(tmp_path / "c", MAN)
    with pytest.raises(StoreError, match="written with seed 1, not 2; run with the same --seed"):
        Store.open(tmp_path / "c", {"pack": "spy", "seed": 2})


def test_a_foreign_folder_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="is not a fabula corpus"):
        Store.open(tmp_path, MAN)


def test_fresh_starts_a_corpus_over_and_nothing_else(tmp_path):
    """write --fresh: what fabula wrote goes, the user's files stay; a folder
    that is not a corpus, or one another process writes, is refused untouched."""
    s = Store.open(tmp_path / "c", MAN)
    s.accept(0, "One.\n", {})
    (tmp_path / "c" / "rejects.jsonl").write_text("{}\n")
    (tmp_path / "c" / "quarantine").mkdir()
    (tmp_path / "c" / "quarantine" / "old.txt").write_text("x")
    (tmp_path / "c" / "notes.md").write_text("mine")
    unlock_folder(tmp_path / "c")
    s2 = Store.open(tmp_path / "c", {"pack": "bedtime", "seed": 2}, fresh=True)  # another pack and seed: a new corpus
    assert s2.heads() == [] and not list((tmp_path / "c" / "stories").iterdir())
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["fabula.json", "notes.md", "stories", "writer.lock"]
    unlock_folder(tmp_path / "c")

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="is not a fabula corpus"):
        Store.open(tmp_path / "mine", MAN, fresh=True)
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]

    out = tmp_path / "busy"
    Store.open(out, MAN).accept(0, "Kept.\n", {})  # this process holds the writer lock
    try:
        r = run_cli("write", "-n", "1", "--backend", "fake", "--words", "300", "--out", str(out), "--fresh")
        assert r.returncode == 2 and "is being written by process" in r.stderr
        assert len(read_jsonl(out / "corpus.jsonl")) == 1
    finally:
        unlock_folder(out)


def test_hand_edited_jsonl_is_a_clear_error(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"a": 1}\nnot json\n')
    with pytest.raises(StoreError, match="x.jsonl, line 2: not valid JSON"):
        read_jsonl(p)


def test_a_second_writer_is_refused_with_the_holders_pid(tmp_path):
    out = tmp_path / "c"
    Store.open(out, {"pack": "spy", "seed": 1})  # this process now holds the writer lock
    try:
        r = run_cli("write", "-n", "1", "--backend", "fake", "--words", "300", "--seed", "1", "--out", str(out))
        assert r.returncode == 2
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and f"is being written by process {os.getpid()}" in lines[0]
        assert not (out / "corpus.jsonl").exists() and not list((out / "stories").iterdir())
    finally:
        unlock_folder(out)
    r = run_cli("write", "-n", "1", "--backend", "fake", "--words", "300", "--seed", "1", "--out", str(out), "-q")
    assert r.returncode == 0, r.stderr  # released: the next writer goes ahead


def test_second_writer_caught_between_lock_and_manifest_is_told_to_wait(tmp_path):
    """The race CI once hit: the first writer holds the lock and is writing its
    manifest (only writer.lock and fabula.json.tmp exist). The second must be
    refused by the lock, not told the folder is not a corpus."""
    out = tmp_path / "c"
    out.mkdir()
    lock_folder(out)
    (out / "fabula.json.tmp").write_text("{")
    try:
        r = run_cli("write", "-n", "1", "--backend", "fake", "--words", "300", "--seed", "1", "--out", str(out))
        assert r.returncode == 2
        assert "is being written by process" in r.stderr, r.stderr
    finally:
        unlock_folder(out)


def test_two_writers_at_once_leave_exactly_n_stories(tmp_path):
    """The issue's scenario: two `fabula write` on one folder at the same time.
    Whichever starts second is refused (or, if the first has finished, finds
    nothing left to do); the folder holds N stories, each recorded once."""
    import subprocess
    import sys

    out = tmp_path / "c"
    cmd = [sys.executable, "-m", "fabula", "write", "-n", "40", "--backend", "fake", "--seed", "9", "--words", "300", "--out", str(out), "-q"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
    for _stdout, stderr, rc in results:
        assert rc == 0 or (rc == 2 and "is being written by process" in stderr), stderr
    recs = read_jsonl(out / "corpus.jsonl")
    assert len(recs) == 40 and len({r["id"] for r in recs}) == 40 and len({r["index"] for r in recs}) == 40
    assert sorted(p.name for p in (out / "stories").iterdir()) == sorted(r["file"].split("/")[1] for r in recs)


def test_cut_torn_cuts_only_a_last_line_without_its_newline(tmp_path):
    from fabula.store import cut_torn

    p = tmp_path / "x.jsonl"
    whole = b'{"a": 1}\n' + b'{"b": "' + b"x" * 200_000 + b'"}\n'
    for content, expect in [
        (whole, whole),  # whole: untouched
        (whole + b'{"c": "' + b"y" * 100_000, whole),  # a torn line longer than the 64 KiB step
        (b'{"c": 1', b""),  # only a torn line
        (b"", b""),
    ]:
        p.write_bytes(content)
        cut_torn(p)
        assert p.read_bytes() == expect
    cut_torn(tmp_path / "missing.jsonl")  # nothing to cut


def test_a_group_is_held_in_memory_until_flushed_then_committed_in_order(tmp_path, spy):
    from fabula.plan import Planner

    s = Store.open(tmp_path / "c", MAN)
    s.group = 8
    cards = [Planner(spy, 1, 3).next() for _ in range(1)]
    s.plan(cards[0])
    for i in range(3):
        s.accept(i, f"Story {i}.\n", {"card": {"id": cards[0].id}})
    # The first story came after a long quiet (committed at once); the next two wait.
    assert (s.committed, s.held) == (1, 2)
    assert len(read_jsonl(tmp_path / "c" / "corpus.jsonl")) == 1
    assert len(list((tmp_path / "c" / "stories").iterdir())) == 1
    s.flush()
    assert (s.committed, s.held) == (3, 0)
    recs = read_jsonl(tmp_path / "c" / "corpus.jsonl")
    assert [r["index"] for r in recs] == [0, 1, 2]
    assert [c["id"] for c in plan_cards(tmp_path / "c")] == [cards[0].id]
    assert sorted(p.name for p in (tmp_path / "c" / "stories").iterdir()) == sorted(r["file"][8:] for r in recs)


def test_a_full_group_is_committed_behind_the_writer_and_counted_once_on_disk(tmp_path, monkeypatch):
    """A full group goes to the committing thread: it is counted as committed
    only once that thread is done and the writer has seen it; flush() and the
    readers wait for it; a commit that fails there is raised in the writer,
    counted as nothing, and leaves no part of its group in the records."""
    from fabula import store

    s = Store.open(tmp_path / "c", MAN)
    s.group = 2
    started, release = threading.Event(), threading.Event()
    real_sync, real_append = store.sync_files, store.append_bytes

    def slow_sync(folder, paths):  # holds the committing thread until the test lets it go
        started.set()
        assert release.wait(10)
        real_sync(folder, paths)

    monkeypatch.setattr(store, "sync_files", slow_sync)

    def accept(i: int) -> None:
        s._last_accept = time.monotonic()  # never after a quiet spell (that commits at once)
        s.accept(i, f"Story {i}.\n", {})

    accept(0)
    accept(1)  # the group is full: on its way
    assert started.wait(10)
    assert (s.committed, s.held) == (0, 2)
    assert not (tmp_path / "c" / "corpus.jsonl").exists() or read_jsonl(tmp_path / "c" / "corpus.jsonl") == []
    accept(2)  # held while the first group commits
    release.set()
    s.flush()  # waits for the first group, then commits the third story
    assert (s.committed, s.held) == (3, 0)
    assert [r["index"] for r in s.records()] == [0, 1, 2]

    def broken(path, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "append_bytes", broken)
    accept(3)
    accept(4)
    with pytest.raises(OSError, match="No space left"):
        s.flush()
    assert s.committed == 3 and s.held == 0
    monkeypatch.setattr(store, "append_bytes", real_append)
    s.close()
    assert [r["index"] for r in s.records()] == [0, 1, 2]


def test_reject_and_fail_commit_the_held_plan_lines_first(tmp_path, spy):
    from fabula.plan import Planner

    s = Store.open(tmp_path / "c", MAN)
    s.group = 8
    card = Planner(spy, 1, 3).next()
    s.plan(card)
    assert not (tmp_path / "c" / "plan.jsonl.gz").exists()
    s.reject({"card": card.to_dict(), "reason": "too-short"})
    assert [c["id"] for c in plan_cards(tmp_path / "c")] == [card.id]


def test_a_group_is_made_durable_by_one_syncfs_and_by_an_fsync_each_without_it(tmp_path, monkeypatch):
    from fabula import store

    paths = []
    for i in range(store.SYNCFS_MIN):
        paths.append(tmp_path / f"{i}.txt")
        paths[-1].write_text("x")
    calls: list = []
    monkeypatch.setattr(store.os, "fsync", lambda fd: calls.append("fsync"))
    monkeypatch.setattr(store, "_SYNCFS", lambda fd: calls.append("syncfs") or 0)
    store.sync_files(tmp_path, paths)
    assert calls == ["syncfs"]
    calls.clear()
    store.sync_files(tmp_path, paths[:-1])  # a small group: an fsync each
    assert calls == ["fsync"] * (len(paths) - 1)
    calls.clear()
    monkeypatch.setattr(store, "_SYNCFS", lambda fd: calls.append("syncfs") or -1)  # it fails: an fsync each
    store.sync_files(tmp_path, paths)
    assert calls == ["syncfs"] + ["fsync"] * len(paths)
    calls.clear()
    monkeypatch.setattr(store, "_SYNCFS", None)  # not Linux
    store.sync_files(tmp_path, paths)
    assert calls == ["fsync"] * len(paths)


def test_syncfs_is_found_on_linux():
    import sys

    from fabula import store

    assert (store._SYNCFS is not None) == sys.platform.startswith("linux")


# A writer in a child process that prints, after every finished draft, how many
# stories are on disk for good (committed) and how many it has kept; the parent
# kills it with SIGKILL the moment the acknowledged count passes a mark.
_ACK_WRITER = """
import sys
import fabula
def say(s):
    print(s.already + s.committed, s.already + s.written, flush=True)
fabula.Corpus(sys.argv[1]).write(int(sys.argv[2]), backend="fake", best_of=1, seed=3, progress=False, on_story=say)
"""


def test_group_commit_loses_nothing_a_commit_acknowledged(tmp_path):
    import signal
    import subprocess
    import sys

    from fabula.verify import verify

    out, n = tmp_path / "c", 400
    held_seen = False
    for mark in (40, 150, 290):
        p = subprocess.Popen([sys.executable, "-c", _ACK_WRITER, str(out), str(n)], stdout=subprocess.PIPE, text=True)
        acked = 0
        try:
            for line in p.stdout:
                acked, kept = map(int, line.split())
                held_seen |= kept > acked
                if acked >= mark:
                    p.send_signal(signal.SIGKILL)
                    break
        finally:
            p.kill()
            p.wait()
        assert acked >= mark, "the writer ended before it was killed"
        s = Store.open(out, {"pack": "spy", "seed": 3})  # repairs what the kill left
        assert len(s.heads()) >= acked
        unlock_folder(out)
        check = verify(out)
        assert check.faults == [] and check.stories == len(s.heads())
    assert held_seen, "no story was ever held for a group commit: this test tested nothing"
    done = subprocess.run([sys.executable, "-c", _ACK_WRITER, str(out), str(n)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert verify(out).stories == n


def test_a_card_is_stored_once_and_every_reader_gets_it_whole(tmp_path):
    """Issue 25: a record names its card by id; the card is in plan.jsonl."""
    import json

    import fabula
    from fabula.store import visible_records

    out = tmp_path / "c"
    fabula.Corpus(out).write(3, backend="fake", words=300, progress=False)
    plan = {c["id"]: c for c in plan_cards(out)}
    raw = [json.loads(x) for x in (out / "corpus.jsonl").read_text().splitlines()]
    assert all(set(r["card"]) == {"id"} for r in raw)
    assert [r["card"] for r in visible_records(out)] == [plan[r["card"]["id"]] for r in raw]
    assert [s.card.to_dict() for s in fabula.Corpus(out)] == [plan[r["card"]["id"]] for r in raw]
    # A folder written before: the card inside the record, used as it is.
    old = [{**r, "card": {**plan[r["card"]["id"]], "title": "Kept as written"}} for r in raw]
    (out / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old))
    assert [r["card"]["title"] for r in visible_records(out)] == ["Kept as written"] * 3
    # A record whose card the plan does not hold is not a whole story: left out (verify says unplanned).
    (out / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in raw[:2]) + json.dumps({**raw[2], "card": {"id": 999}}) + "\n")
    assert [r["id"] for r in visible_records(out)] == [r["id"] for r in raw[:2]]
    assert len(fabula.Corpus(out)) == 2  # counted as read, without parsing a card


def test_read_heads_reads_records_of_any_key_order_and_leaves_a_torn_line_out(tmp_path):
    from fabula.store import read_heads

    path = tmp_path / "corpus.jsonl"
    fast = {"id": "000_aa", "index": 0, "file": "stories/000_aa.txt", "card": {"id": 4}, "words": 3}
    other_order = {"index": 1, "id": "001_bb", "file": "stories/001_bb.txt", "card": {"id": 7, "seed": 1}}
    want = [{k: r[k] for k in ("id", "index", "file")} | {"card": {"id": r["card"]["id"]}} for r in (fast, other_order, fast)]
    for rows in ([fast, fast], [fast, other_order, fast]):  # every line in fabula's form (one pass), and not
        path.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows) + '{"id":"002_cc","ind')
        assert read_heads(path) == ([want[0], want[0]] if len(rows) == 2 else want)


def _stored(root, first, n):
    """n stories (indexes first..first+n-1, card ids 100+index) committed to the corpus at ``root``."""
    s = Store.open(root, MAN)
    for i in range(first, first + n):
        s.accept(i, f"Story number {i}.\n", {"card": {"id": 100 + i}})
    unlock_folder(root)


def test_the_heads_cache_gives_the_heads_corpus_jsonl_holds_and_reads_only_what_follows_it(tmp_path, monkeypatch):
    from fabula import store
    from fabula.store import heads_of, read_heads, save_heads

    root = tmp_path / "c"
    _stored(root, 0, 5)
    save_heads(root)
    _stored(root, 5, 3)  # committed after the cache's save: read from corpus.jsonl
    corpus = root / "corpus.jsonl"
    want = read_heads(corpus)
    parsed = []
    real = store._parse_heads
    monkeypatch.setattr(store, "_parse_heads", lambda path, raw, first_line=1: parsed.append(len(raw)) or real(path, raw, first_line))
    got = heads_of(root)
    assert got == want and len(got) == 8 and got.cards[-1] == 107
    assert 0 < parsed[0] < corpus.stat().st_size / 2  # the three records after the cache, not the file
    save_heads(root)
    parsed.clear()
    assert heads_of(root) == want and parsed == [0]


def test_the_heads_cache_is_not_used_once_corpus_jsonl_is_rewritten_or_its_header_is_torn(tmp_path):
    from fabula.store import HEADS, heads_of, read_heads, save_heads

    root = tmp_path / "c"
    _stored(root, 0, 6)
    save_heads(root)
    corpus = root / "corpus.jsonl"
    lines = corpus.read_bytes().splitlines(keepends=True)
    corpus.write_bytes(b"".join(lines[:2] + lines[3:]))  # a record dropped (verify --repair)
    _stored(root, 6, 2)  # and two more: corpus.jsonl is longer than the bytes the cache covered
    assert heads_of(root) == read_heads(corpus) and len(heads_of(root)) == 7
    save_heads(root)  # written again from the first record
    assert heads_of(root) == read_heads(corpus)
    cache = root / HEADS
    data = bytearray(cache.read_bytes())
    data[20:40] = b"x" * 20  # a torn header
    cache.write_bytes(bytes(data))
    _stored(root, 8, 2)
    assert heads_of(root) == read_heads(corpus) and len(heads_of(root)) == 9
    with open(cache, "ab") as f:
        f.write(b"\0" * 48 * 3)  # rows a killed save appended
    save_heads(root)
    assert heads_of(root) == read_heads(corpus) and cache.stat().st_size == 512 + 48 * 9
    with open(cache, "ab") as f:
        f.write(b"\1" * 48 * 2)  # again, under a whole header: cut at the next save
    _stored(root, 10, 1)
    save_heads(root)
    assert heads_of(root) == read_heads(corpus) and cache.stat().st_size == 512 + 48 * 10


def test_a_record_the_heads_cache_cannot_hold_ends_it_and_the_heads_stay_right(tmp_path):
    from fabula.store import HEADS, heads_of, read_heads, save_heads

    root = tmp_path / "c"
    _stored(root, 0, 3)
    corpus = root / "corpus.jsonl"
    with open(corpus, "ab") as f:  # an id longer than a row holds
        f.write(
            json.dumps({"id": "003_" + "f" * 40, "index": 3, "file": "stories/003_" + "f" * 40 + ".txt", "card": {"id": 9}}, separators=(",", ":")).encode()
            + b"\n"
        )
    (root / "stories" / ("003_" + "f" * 40 + ".txt")).write_text("Long id.\n")
    save_heads(root)
    top = json.loads((root / HEADS).read_bytes()[:512])
    assert top["records"] == 3 and top["off"] is True
    _stored(root, 4, 2)
    save_heads(root)  # off: not extended
    assert json.loads((root / HEADS).read_bytes()[:512])["records"] == 3
    assert heads_of(root) == read_heads(corpus) and len(heads_of(root)) == 6
