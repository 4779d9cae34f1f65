"""`fabula verify`: every fault found with its own line; --repair, then write,
ends with exactly N whole stories; readers run beside a writer."""

import json
import subprocess
import sys
import time

import pytest

from fabula.store import read_jsonl, text_hash
from fabula.verify import verify
from tests.conftest import run_cli

N = 6
WRITE = ("write", "-n", str(N), "--backend", "fake", "--seed", "3", "--words", "300", "-q")


@pytest.fixture
def corpus(tmp_path):
    out = tmp_path / "c"
    r = run_cli(*WRITE, "--out", str(out))
    assert r.returncode == 0, r.stderr
    return out


def files(out):
    return sorted(p.name for p in (out / "stories").iterdir())


def assert_whole(out, n):
    recs = read_jsonl(out / "corpus.jsonl")
    assert len(recs) == n and len({r["id"] for r in recs}) == n and len({r["index"] for r in recs}) == n
    assert files(out) == sorted(r["file"].split("/")[1] for r in recs)
    for r in recs:
        assert r["id"].endswith(text_hash((out / r["file"]).read_text()))
    check = verify(out)
    assert check.faults == [] and check.stories == n


def test_a_whole_corpus_verifies_clean(corpus):
    r = run_cli("verify", str(corpus))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip() == f"{corpus}: {N} whole stories, {N} records, {N} story files, 0 faults"


def test_each_fault_is_found_with_its_own_line_and_repair_then_write_makes_n_whole_stories(corpus):
    names = files(corpus)
    (corpus / "stories" / names[0]).unlink()  # deleted
    with open(corpus / "stories" / names[1], "a") as f:  # edited by hand
        f.write("One more line, added by hand.\n")
    lines = (corpus / "corpus.jsonl").read_text().splitlines(keepends=True)
    with open(corpus / "corpus.jsonl", "a") as f:
        f.write(lines[2])  # a record duplicated
        f.write('{"id":"00')  # a record torn mid-write
    (corpus / "stories" / "zz_notes.txt").write_text("mine")  # a file nobody recorded

    r = run_cli("verify", str(corpus))
    assert r.returncode == 1
    out = r.stdout.splitlines()
    assert f"missing: stories/{names[0]}:1: story {names[0][:-4]} is recorded but its file is gone" in out
    assert any(x.startswith(f"edited: stories/{names[1]}:2: ") for x in out)
    assert any(x.startswith(f"duplicate: corpus.jsonl:{N + 1}: ") for x in out)
    assert "torn: corpus.jsonl: the last line has no newline: a write was cut off" in out
    assert "stray: stories/zz_notes.txt: no record names this file" in out
    assert out[-1] == f"{corpus}: {N - 2} whole stories, {N + 1} records, {N} story files, 5 faults"
    assert "--repair" in r.stderr

    # A writer refuses the folder rather than count stories that are not there.
    w = run_cli(*WRITE, "--out", str(corpus))
    assert w.returncode == 2 and "does not add up" in w.stderr and "fabula verify" in w.stderr

    r = run_cli("verify", str(corpus), "--repair")
    assert r.returncode == 0, r.stdout + r.stderr
    q = corpus / "quarantine"
    assert (q / names[1]).read_text().endswith("added by hand.\n")  # moved, never deleted
    log = read_jsonl(q / "quarantine.jsonl")
    assert {x["reason"] for x in log} >= {"missing", "edited"}
    assert (q / "zz_notes.txt").read_text() == "mine"  # a stray: moved aside, never deleted

    w = run_cli(*WRITE, "--out", str(corpus))
    assert w.returncode == 0, w.stderr
    assert "written 2 (corpus now 6/6)" in w.stdout
    assert_whole(corpus, N)
    recs = read_jsonl(corpus / "corpus.jsonl")
    rewritten = [r for r in recs if r["index"] in (0, 1)]
    assert all(r["attempt"] >= 1 for r in rewritten)  # new drafts, not the lost text again
    assert run_cli("verify", str(corpus)).returncode == 0


def test_a_story_that_is_not_utf8_is_a_fault_readers_skip_with_one_warning_and_repair_quarantines(corpus, tmp_path):
    """One byte that is not UTF-8 appended to a story: verify names it
    (undecodable), the report, export and the Corpus API leave it out with one
    warning instead of a traceback, and --repair moves it to quarantine/."""
    import warnings

    import fabula

    bad = files(corpus)[2]
    with open(corpus / "stories" / bad, "ab") as f:
        f.write(b"\xff")
    r = run_cli("verify", str(corpus))
    assert r.returncode == 1 and f"undecodable: stories/{bad}:3: the file is not UTF-8 text" in r.stdout, r.stdout
    rep = run_cli("report", str(corpus), "--no-semantic", "--json", str(tmp_path / "r.json"))
    assert rep.returncode == 0, rep.stderr
    assert json.loads((tmp_path / "r.json").read_text())[0]["stories"] == N - 1
    assert sum("is not UTF-8 text" in line for line in rep.stderr.splitlines()) == 1 and "Traceback" not in rep.stderr
    ex = run_cli("export", str(corpus), "--to", str(tmp_path / "c.jsonl"))
    assert ex.returncode == 0 and len((tmp_path / "c.jsonl").read_text().splitlines()) == N - 1, ex.stderr
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning through the logger, not a Python warning
        assert len(list(fabula.Corpus(corpus))) == N - 1
    fix = run_cli("verify", str(corpus), "--repair")
    assert fix.returncode == 0, fix.stdout + fix.stderr
    assert (corpus / "quarantine" / bad).read_bytes().endswith(b"\xff")
    assert run_cli("verify", str(corpus)).returncode == 0
    assert run_cli(*WRITE, "--out", str(corpus)).returncode == 0 and len(fabula.Corpus(corpus)) == N


def test_a_refused_write_leaves_the_folder_as_it_found_it(corpus):
    """Issue 26, row 5: a write refused for a missing story used to cut a torn
    line, delete a temporary file and move a stray file before refusing."""
    (corpus / "stories" / files(corpus)[0]).unlink()
    from fabula.plan_file import member

    with open(corpus / "plan.jsonl.gz", "ab") as f:
        f.write(member(b'{"id": 99}\n')[:-5])  # torn
    (corpus / "stories" / "000_x.txt.tmp").write_text("half a story")
    (corpus / "stories" / "notes.txt").write_text("mine")

    def snapshot():
        return {str(p.relative_to(corpus)): p.read_bytes() for p in sorted(corpus.rglob("*")) if p.is_file() and "lock" not in p.name}

    before = snapshot()
    w = run_cli(*WRITE, "--out", str(corpus))
    assert w.returncode == 2 and "does not add up" in w.stderr
    assert snapshot() == before


def test_verify_of_a_folder_that_is_not_a_corpus_is_one_clear_line(tmp_path):
    r = run_cli("verify", str(tmp_path))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"fabula: error: {tmp_path} is not a fabula corpus (no fabula.json); give the folder `fabula write --out` wrote"]


def test_report_counts_the_stories_a_reader_sees_and_says_when_records_disagree(corpus, tmp_path):
    (corpus / "stories" / files(corpus)[0]).unlink()
    r = run_cli("report", str(corpus), "--no-semantic", "--json", str(tmp_path / "r.json"))
    assert r.returncode == 0, r.stderr
    assert "the records and the story files disagree (1 missing)" in r.stderr
    assert json.loads((tmp_path / "r.json").read_text())[0]["stories"] == N - 1


def test_report_and_verify_run_while_a_writer_writes_and_see_only_committed_stories(tmp_path):
    out = tmp_path / "c"
    n = 150
    writer = subprocess.Popen(
        [sys.executable, "-m", "fabula", "write", "-n", str(n), "--backend", "fake", "--seed", "5", "--words", "300", "--out", str(out), "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        seen_writer = 0
        deadline = time.time() + 120
        while writer.poll() is None and time.time() < deadline:
            if not (out / "fabula.json").exists():
                time.sleep(0.05)
                continue
            v = run_cli("verify", str(out))
            last = [x for x in v.stdout.splitlines() if "whole stories" in x]
            assert v.returncode == 0, v.stdout + v.stderr  # in-flight files are a commit, not a fault
            seen_writer += "is writing this folder" in v.stdout
            rep = run_cli("report", str(out), "--no-semantic", "--json", str(tmp_path / "r.json"))
            if rep.returncode == 0:  # (no story committed yet: report says so and exits 2)
                assert "disagree" not in rep.stderr
                assert json.loads((tmp_path / "r.json").read_text())[0]["stories"] <= n
            assert last
        assert seen_writer >= 1  # the readers ran while the writer was at work
    finally:
        _, err = writer.communicate(timeout=300)
    assert writer.returncode == 0, err
    assert_whole(out, n)
