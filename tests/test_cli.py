import json
import re

from tests.conftest import run_cli


def test_write_with_fake_backend_prints_a_summary(tmp_path):
    out = tmp_path / "c"
    r = run_cli("write", "-n", "3", "--backend", "fake", "--words", "300", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "written 3 (corpus now 3/3), rejected cards 0" in r.stdout
    assert "tokens/s" in r.stdout
    assert "story" in r.stderr  # the progress bar
    assert len(list((out / "stories").glob("*.txt"))) == 3


def test_plan_is_deterministic_and_writes_nothing(tmp_path):
    a = run_cli("plan", "-n", "3", "--seed", "4", "--json", cwd=tmp_path)
    b = run_cli("plan", "-n", "3", "--seed", "4", "--json", cwd=tmp_path)
    assert a.returncode == 0 and a.stdout == b.stdout
    cards = [json.loads(x) for x in a.stdout.splitlines()]
    assert [c["id"] for c in cards] == [0, 1, 2]
    assert list(tmp_path.iterdir()) == []


def test_bad_inputs_get_one_line_errors_and_exit_2(tmp_path):
    cases = [
        (("write", "--avoid", str(tmp_path / "missing.txt"), "--backend", "fake", "--out", str(tmp_path / "a")), "--avoid"),
        (("write", "--backend", "gguf:/nope/model.gguf", "--out", str(tmp_path / "b")), "gguf:/nope/model.gguf: no such file"),
        (("write", "--backend", "magic", "--out", str(tmp_path / "c")), "unknown backend 'magic'"),
        (("write", "--pack", "westerns", "--out", str(tmp_path / "d")), "no built-in pack named 'westerns'"),
        (("write", "--words", "100", "--mode", "beats", "--backend", "fake", "--out", str(tmp_path / "e")), "the beat sentences of pack spy alone take"),
        (("write", "--mode", "instruct", "--out", str(tmp_path / "f")), "instruct mode needs a chat model"),
        (("write", "--workers", "2", "--backend", "fake", "--out", str(tmp_path / "g")), "--ray-address and --workers are for --executor ray"),
        (("write", "--executor", "ray", "--backend", "fake", "--out", str(tmp_path / "h")), "--executor ray runs the embedded or a gguf:PATH model"),
        (("write", "--executor", "ray", "--ray-address", "127.0.0.1:1", "--out", str(tmp_path / "i")), "nothing answers at --ray-address 127.0.0.1:1"),
        (("write", "--executor", "ray", "--ray-address", "headnode", "--out", str(tmp_path / "j")), "give auto or HOST:PORT"),
    ]
    for args, expect in cases:
        r = run_cli(*args)
        assert r.returncode == 2, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("fabula: error:") and expect in lines[0], r.stderr
    assert not any((tmp_path / d).exists() for d in "abcdefghij")


def test_paths_the_system_refuses_are_one_line_and_exit_2(tmp_path):
    """No traceback for a bad --out, --to, --json or --html (issue 26, rows 4
    and 10); report checks its outputs before it measures."""
    (tmp_path / "afile.txt").write_text("x")
    corpus = tmp_path / "c"
    assert run_cli("write", "-n", "1", "--backend", "fake", "--words", "300", "--out", str(corpus), "-q").returncode == 0
    cases = [
        (("write", "-n", "1", "--backend", "fake", "--out", str(tmp_path / "afile.txt" / "sub"), "-q"), "not a directory"),
        (("write", "-n", "1", "--backend", "fake", "--out", "/proc/fabula-test", "-q"), "/proc/fabula-test: no such file or directory"),
        (("export", str(corpus), "--to", str(tmp_path / "no" / "x.parquet")), f"--to {tmp_path / 'no' / 'x.parquet'}: the folder"),
        (("export", str(corpus), "--to", str(tmp_path / "out.csv")), "export writes a .parquet or .jsonl file"),
        (("report", str(corpus), "--no-semantic", "--json", str(tmp_path / "no" / "r.json")), "does not exist"),
        (("report", str(corpus), "--no-semantic", "--html", str(tmp_path / "no" / "r.html")), "does not exist"),
        (("report", str(corpus), "--no-semantic", "--json", str(tmp_path / "afile.txt")), "exists and is not a fabula report"),
        (("report", str(corpus), "--no-semantic", "--html", str(tmp_path / "afile.txt")), "exists and is not a fabula report"),
    ]
    for args, expect in cases:
        r = run_cli(*args)
        assert r.returncode == 2 and "Traceback" not in r.stderr, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("fabula: error:") and expect in lines[0], (args, r.stderr)
        assert "metric" not in r.stdout  # refused before the report was measured
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "no").exists()
    assert (tmp_path / "afile.txt").read_text() == "x"
    # A report the last run wrote is replaced (make demo reruns the same command).
    for _ in range(2):
        r = run_cli("report", str(corpus), "--no-semantic", "--json", str(tmp_path / "r.json"), "--html", str(tmp_path / "r.html"))
        assert r.returncode == 0, r.stderr


def test_continuing_with_another_seed_is_refused(tmp_path):
    out = tmp_path / "c"
    assert run_cli("write", "-n", "1", "--backend", "fake", "--words", "300", "--out", str(out), "-q").returncode == 0
    r = run_cli("write", "-n", "2", "--backend", "fake", "--seed", "9", "--out", str(out), "-q")
    assert r.returncode == 2 and "run with the same --seed" in r.stderr
    assert len(list((out / "stories").iterdir())) == 1


def test_avoid_file_adds_phrases(tmp_path):
    avoid = tmp_path / "avoid.txt"
    avoid.write_text("# my list\nthe\n")  # 'the' is in every filler draft
    r = run_cli("write", "-n", "1", "--backend", "fake", "--words", "300", "--max-attempts", "1", "--avoid", str(avoid), "--out", str(tmp_path / "c"), "-q")
    assert r.returncode == 2 and "stock-phrase" in r.stderr


STORIES = [
    "Marta Kowalska fed the pigeons in Lyon every morning. The rain-soaked square was empty when the letter came. "
    "She read it twice, folded it, and went to the station without her coat.",
    "In Antwerp, Jiri Novak mended clocks for a living. A stranger left a ticket on his bench, and he knew the hand. "
    "He closed the shop at noon and walked to the harbour to wait.",
    "Ilse Brandt had not heard from Vienna in twenty years. The telephone rang at four, and a voice she had buried "
    "said her old code name. She laughed, and then she packed a bag.",
]


def test_report_on_a_folder_of_plain_stories(tmp_path):
    folder = tmp_path / "stories"
    folder.mkdir()
    for i, text in enumerate(STORIES):
        (folder / f"{i:03d}.txt").write_text(text + "\n")
    j, h = tmp_path / "r.json", tmp_path / "r.html"
    r = run_cli("report", str(folder), "--json", str(j), "--html", str(h))
    assert r.returncode == 0, r.stderr
    # Issue 26, row 7: the slow part is named, with what it took and how to skip it.
    assert re.search(r"\(time: [\d.]+ s reading and lexical metrics, [\d.]+ s semantic metrics on 3 stories embedded; --no-semantic skips them\)", r.stdout), (
        r.stdout
    )
    assert "semantic metrics: embedding 3 stories (--no-semantic skips this)" in r.stderr and "Loading weights" not in r.stderr
    (m,) = json.loads(j.read_text())
    assert m["stories"] == 3 and m["stock_phrases_per_1k_words"] > 0
    for key in (
        "words_mean",
        "compression_ratio",
        "self_repetition_4",
        "self_bleu_4",
        "distinct_2",
        "near_duplicate_pairs",
        "mean_cosine",
        "vendi_per_n",
        "top_name",
    ):
        assert key in m
    assert "<svg" in h.read_text()


def test_help_teaches():
    r = run_cli("write", "--help")
    assert r.returncode == 0 and "Examples:" in r.stdout and "--words" in r.stdout


def test_packs_new_writes_a_starter_pack_that_validates_and_writes_stories(tmp_path):
    r = run_cli("packs", "new", "harbour", "--dir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    pack = tmp_path / "harbour.toml"
    assert 'name = "harbour"' in pack.read_text() and pack.read_text().count("\n#") > 5  # commented
    check = run_cli("packs", "--check", str(pack), "--n", "500")
    assert check.returncode == 0, check.stderr
    assert "distinct cards:" in check.stdout and "wordings of one card's paragraphs" in check.stdout
    assert "every cap holds" in check.stdout
    (tmp_path / "small.toml").write_text(pack.read_text().replace('"1979", "1984", ', ""))
    small = run_cli("packs", "--check", str(tmp_path / "small.toml"), "--n", "40")
    assert "caps at 40 stories: year: 6 values x cap 6 = 36 stories < 40" in small.stdout, small.stdout
    w = run_cli("write", "-n", "2", "--backend", "fake", "--pack", str(pack), "--out", str(tmp_path / "c"), "-q")
    assert w.returncode == 0, w.stderr
    assert len(list((tmp_path / "c" / "stories").glob("*.txt"))) == 2
    again = run_cli("packs", "new", "harbour", "--dir", str(tmp_path))
    assert again.returncode == 2 and "already exists" in again.stderr and len(again.stderr.strip().splitlines()) == 1
    bad = run_cli("packs", "new", "Harbour Noir", "--dir", str(tmp_path))
    assert bad.returncode == 2 and "lower-case letters" in bad.stderr
    assert not (tmp_path / "Harbour Noir.toml").exists()


def test_a_pack_author_sees_each_edit_by_rerunning_the_starters_command(tmp_path):
    """Issue 26, row 3: the starter's own command, rerun after an edit, wrote
    nothing ("corpus now 2/2") and the edit never showed."""
    import re
    import shlex

    r = run_cli("packs", "new", "harbour", cwd=tmp_path)
    command = re.findall(r"`(fabula write [^`]+)`", r.stdout)
    assert r.returncode == 0 and len(command) == 1, r.stdout
    args = shlex.split(command[0])[1:] + ["-q"]
    first = run_cli(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    out = tmp_path / args[args.index("--out") + 1]
    (out / "report.html").write_text("the user's own file")
    assert "Brightwater" not in "".join(p.read_text() for p in (out / "stories").glob("*.txt"))

    pack = tmp_path / "harbour.toml"
    text = pack.read_text()
    cities = re.search(r"^city = \[.*\]$", text, re.M)
    assert cities, "the starter names its cities on one line"
    pack.write_text(text.replace(cities.group(0), 'city = ["Brightwater"]'))
    second = run_cli(*args, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    stories = [p.read_text() for p in (out / "stories").glob("*.txt")]
    assert len(stories) == 2 and all("Brightwater" in s for s in stories)  # the edit shows
    assert (out / "report.html").read_text() == "the user's own file"  # --fresh deletes only what fabula wrote


def test_small_surprises_of_the_command_line(tmp_path):
    """Issue 26, rows 6 and 11: `fabula` alone, -n below the corpus's size,
    write --help's examples in order, the progress bar off a terminal."""
    import re
    import shlex

    alone = run_cli()
    assert alone.returncode == 0 and "Commands:" in alone.stdout

    # write --help's examples that name no model, in order, on the fake backend: each must run.
    help_text = run_cli("write", "--help").stdout
    examples = [ln.split("#")[0].strip() for ln in help_text.splitlines() if ln.strip().startswith("fabula write")]
    local = [shlex.split(e)[2:] for e in examples if "--backend" not in e and "--executor" not in e and "my_pack" not in e]
    assert len(local) >= 3
    for args in local:
        r = run_cli("write", *args, "--backend", "fake", "-q", cwd=tmp_path)
        assert r.returncode == 0, (args, r.stderr)

    out = tmp_path / "corpus"  # the examples' folder, 50 stories by now
    r = run_cli("write", "-n", "3", "--backend", "fake", "--out", str(out), "-q")
    assert r.returncode == 0 and "already holds 50 stories (-n 3): nothing to write" in r.stdout, r.stdout

    r = run_cli("write", "-n", "30", "--backend", "fake", "--words", "300", "--out", str(tmp_path / "bar"))
    assert r.returncode == 0
    assert len(re.split(r"[\r\n]+", r.stderr.strip())) <= 4, r.stderr  # not one progress line per story
    assert "30/30" in r.stderr


def test_instruct_mode_can_be_tried_with_the_fake_backend(tmp_path):
    """Issue 26, row 9: every card failed (too-short) and the hint said --words."""
    out = tmp_path / "c"
    r = run_cli("write", "-n", "2", "--backend", "fake", "--mode", "instruct", "--out", str(out), "-q")
    assert r.returncode == 0 and "written 2 (corpus now 2/2)" in r.stdout, r.stdout + r.stderr
    from fabula.store import visible_records

    for rec in visible_records(out):  # each with its card, from plan.jsonl
        text = (out / rec["file"]).read_text()
        assert len(text.split("\n\n")) == len(rec["card"]["beats"])  # a paragraph per line of the plan
        assert rec["card"]["cast"]["hero"]["first"] in text


def test_output_cut_short_by_head_ends_quietly_and_plan_shows_the_openers():
    """A newcomer's trial: `fabula plan | head` said "Broken pipe; check the
    path"; the text plan showed beat sentences a steer pack never sends."""
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-m", "fabula", "plan", "-n", "300"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None and p.stdout.readline().startswith(b"#0 ")
    p.stdout.close()  # what `head -1` does
    _, err = p.communicate(timeout=120)
    assert p.returncode == 141 and err == b"", err
    steer = run_cli("plan", "-n", "1").stdout
    assert steer.count("     opens: ") == 7  # a spy card's paragraphs, each with its opener


def test_report_measures_a_larger_corpus_on_the_sample_it_names(tmp_path):
    out = tmp_path / "c"
    assert run_cli("write", "-n", "6", "--backend", "fake", "--words", "300", "--out", str(out)).returncode == 0
    j, h = tmp_path / "r.json", tmp_path / "r.html"
    r = run_cli("report", str(out), "--sample", "4", "--no-semantic", "--json", str(j), "--html", str(h))
    assert r.returncode == 0, r.stderr
    assert f"({out}: measured on a seeded sample of 4 of its 6 stories; --sample 0 measures every one)" in r.stdout
    (m,) = json.loads(j.read_text())
    assert (m["stories"], m["measured_stories"]) == (6, 4)
    assert "stories measured (a seeded sample" in h.read_text()
    assert len(m["recurrence"]["first_name"]) > 0  # the sampled stories came with their cards
    r = run_cli("report", str(out), "--sample", "0", "--no-semantic")
    assert r.returncode == 0 and "seeded sample" not in r.stdout
