"""The Python API: the README's examples run, and the API and the CLI agree."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import fabula
from fabula.errors import FabulaError, UsageError
from tests.conftest import run_cli

README = Path(__file__).resolve().parent.parent / "README.md"
ARGS = dict(seed=4, words=300)


def python_blocks() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## From Python") :]
    section = section[: section.index("\n## ", 4)]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_every_python_example_of_the_readme_runs_and_returns_what_it_says(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = python_blocks()
    assert len(blocks) == 5
    ns: dict = {}
    for block in blocks:
        # The fake backend where an example names a model (no model, no server, in a unit test).
        code = re.sub(r"fabula\.EmbeddedModel\([^)]*\)", "fabula.FakeModel()", block)
        code = re.sub(r"fabula\.Server\((?:[^()]|\([^)]*\))*\)", "fabula.FakeModel()", code)
        exec(compile(code, "README.md", "exec"), ns)
    assert ns["summary"].written == 3 and ns["summary"].already == 0
    assert len(ns["corpus"]) == 3
    first = ns["first"]
    assert isinstance(first, fabula.Story) and first.index == 0 and first.card.hero.first in first.text
    assert first.record["id"] == first.id and first.text == (tmp_path / "corpus" / first.record["file"]).read_text()
    assert len(fabula.Corpus("served")) == 3
    assert ns["local"]["stories"] == 3 and ns["served"]["stories"] == 3
    ds = ns["ds"]
    assert len(ds) == 3 and ds.column_names[:4] == ["id", "index", "text", "title"]
    assert len(ns["spies"]) == sum(s.card.hero.gender == "female" for s in fabula.Corpus("corpus"))
    assert 0 < ns["local"]["self_bleu_4"] <= 1


def test_every_example_of_the_extending_page_runs_and_does_what_it_says(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    page = (README.parent / "docs" / "extending.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", page, re.S)
    assert len(blocks) == 4
    ns: dict = {}
    for block in blocks:
        exec(compile(block, "docs/extending.md", "exec"), ns)
    echo = ns["EchoBackend"]()  # the backend example: a Backend that completes a request
    assert isinstance(echo, fabula.backends.Backend) and echo.complete(None).text.strip()
    for name in ("corpus", "unbanned", "scored"):
        assert len(fabula.Corpus(name)) == 20
    assert not any(ns["no_weather"](s.text, s.card) is False or not ns["no_weather"](s.text, s.card)[0] for s in fabula.Corpus("corpus"))
    checks = {c["check"] for r in fabula.Corpus("unbanned").records() for c in r["checks"]}
    assert "stock-phrases" not in checks and "length" in checks


def test_the_api_and_the_cli_write_the_same_corpus_and_report_the_same_figures(tmp_path):
    api = fabula.Corpus(tmp_path / "api")
    api.write(4, backend=fabula.FakeModel(), progress=False, **ARGS)
    r = run_cli("write", "-n", "4", "--backend", "fake", "--seed", "4", "--words", "300", "--out", str(tmp_path / "cli"), "-q")
    assert r.returncode == 0, r.stderr
    files = {p.name: p.read_bytes() for p in (tmp_path / "api" / "stories").iterdir()}
    assert files == {p.name: p.read_bytes() for p in (tmp_path / "cli" / "stories").iterdir()} and len(files) == 4
    rep = run_cli("report", str(tmp_path / "cli"), "--no-semantic", "--json", str(tmp_path / "r.json"))
    assert rep.returncode == 0, rep.stderr
    from_cli = json.loads((tmp_path / "r.json").read_text())[0]
    from_api = fabula.report(tmp_path / "cli", semantic=False)[0]
    assert {k: v for k, v in from_api.items() if k != "folder"} == {k: v for k, v in from_cli.items() if k != "folder"}


def test_a_resumed_write_continues_and_reports_what_it_did(tmp_path):
    c = fabula.Corpus(tmp_path / "c")
    assert c.write(2, backend="fake", progress=False, **ARGS).written == 2
    s = c.write(5, backend="fake", progress=False, **ARGS)
    assert (s.already, s.written, len(c)) == (2, 3, 5)
    assert [x.index for x in c] == list(range(5))


def test_library_errors_are_fabula_errors_never_exits(tmp_path):
    c = fabula.Corpus(tmp_path / "c")
    with pytest.raises(UsageError, match="unknown backend 'gpt'"):
        c.write(1, backend="gpt", progress=False)
    with pytest.raises(UsageError, match="needs a URL and a model"):
        c.write(1, backend="openai", progress=False)
    with pytest.raises(FabulaError, match="no built-in pack named .nope."):
        c.write(1, pack="nope", backend="fake", progress=False)
    with pytest.raises(UsageError, match="holds no .txt stories"):
        fabula.report(tmp_path)
    with pytest.raises(UsageError, match="nope: no such folder"):
        list(fabula.Corpus(tmp_path / "nope"))
    assert not (tmp_path / "c").exists()  # nothing written by a refused call


def test_a_user_check_and_a_user_scorer_term_shape_what_is_kept(tmp_path):
    """A check of one's own drops drafts under its own reason, and a scorer
    term of one's own steers the choice among candidates (fake backend: its
    filler holds "tram" a few times a story, more in some)."""
    from fabula.score import Scorer, Term

    seen = []

    def trams(text):
        return re.findall(r"\btram\b", text.lower()).__len__()

    def no_trams(text, card):
        seen.append(card.id)
        return (trams(text) <= 3, "trams")

    c = fabula.Corpus(tmp_path / "checked")
    s = c.write(6, backend="fake", progress=False, best_of=1, checks=[no_trams], **ARGS)
    assert seen and s.dropped["trams"] > 0
    kept = [st.text for st in c]
    assert len(kept) == 6 and max(map(trams, kept)) <= 3
    assert all(r["checks"][-2]["check"] == "no-trams" for r in c.records())  # before the near-duplicate check

    tram_term = Term("tram", lambda text, card: trams(text), weight=10)
    plain, steered = fabula.Corpus(tmp_path / "plain"), fabula.Corpus(tmp_path / "steered")
    plain.write(4, backend="fake", progress=False, best_of=4, **ARGS)
    steered.write(4, backend="fake", progress=False, best_of=4, scorer=Scorer(terms=(tram_term,)), **ARGS)
    assert sum(trams(st.text) for st in steered) < sum(trams(st.text) for st in plain)


def test_a_bad_check_or_scorer_is_refused_before_anything_is_written(tmp_path):
    c = fabula.Corpus(tmp_path / "c")
    with pytest.raises(UsageError, match="checks: .*is not a check"):
        c.write(1, backend="fake", progress=False, checks=["no rain"])
    with pytest.raises(UsageError, match="give a fabula.score.Scorer"):
        c.write(1, backend="fake", progress=False, scorer={"aside": 0})
    with pytest.raises(ValueError, match="no such term"):
        fabula.score.Scorer(weights={"rain": 1})
    assert not (tmp_path / "c").exists()


def test_the_api_checks_what_the_cli_checks_before_anything_is_written(tmp_path):
    """Out-of-range options are one-line UsageErrors, not a run that records
    temperature -1 or turns best_of 0 into 4 (fabula.config.resolve)."""
    c = fabula.Corpus(tmp_path / "c")
    for options, message in (
        (dict(temperature=-1), "temperature = -1: use a value from 0 to 2"),
        (dict(top_p=0), "top_p = 0: use a value above 0 and at most 1"),
        (dict(repeat_penalty=0.5), "repeat_penalty = 0.5"),
        (dict(best_of=0), "best_of = 0: use a whole number of 1 or more"),
        (dict(max_attempts=0), "max_attempts = 0"),
        (dict(words=0), "words = 0"),
        (dict(ban_common=2), "ban_common = 2"),
    ):
        with pytest.raises(UsageError, match=re.escape(message)):
            c.write(1, backend="fake", progress=False, **options)
    assert not (tmp_path / "c").exists()


def test_a_python_writer_and_a_cli_writer_on_one_folder_at_once(tmp_path):
    out = tmp_path / "c"
    n = 120
    code = f"import fabula; fabula.Corpus({str(out)!r}).write({n}, backend='fake', seed=9, words=300, progress=False)"
    py = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
    cli = subprocess.Popen(
        [sys.executable, "-m", "fabula", "write", "-n", str(n), "--backend", "fake", "--seed", "9", "--words", "300", "--out", str(out), "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _, py_err = py.communicate(timeout=300)
    _, cli_err = cli.communicate(timeout=300)
    lock_line = "is being written by process"
    assert py.returncode == 0 or (lock_line in py_err and "StoreError" in py_err), py_err
    assert cli.returncode == 0 or (cli.returncode == 2 and lock_line in cli_err), cli_err
    check = fabula.Corpus(out).verify()
    assert check.faults == [] and check.stories == n


def test_report_puts_the_reference_first_and_marks_it(tmp_path):
    for name, town in (("ours", "Riga"), ("humans", "Porto")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "0.txt").write_text(f"Agnieszka waited in {town} for the ferry.\n")
    rs = fabula.report(tmp_path / "ours", semantic=False, reference=tmp_path / "humans")
    assert [(r["folder"], r["reference"]) for r in rs] == [(str(tmp_path / "humans"), True), (str(tmp_path / "ours"), False)]
    r = run_cli("report", str(tmp_path / "ours"), "--reference", str(tmp_path / "humans"), "--no-semantic")
    assert r.returncode == 0 and f"{tmp_path / 'humans'} (reference)" in r.stdout.splitlines()[0], r.stdout


def test_a_resumed_run_with_other_settings_is_refused_unless_mixed(tmp_path):
    """Only the pack name and seed were checked: an edited pack file, another
    backend or model, another --words were appended silently."""
    from fabula.backends.fake import FakeBackend

    out = tmp_path / "c"
    assert run_cli("write", "-n", "2", "--backend", "fake", "--seed", "4", "--words", "300", "--out", str(out), "-q").returncode == 0
    before = (out / "corpus.jsonl").read_bytes()
    r = run_cli("write", "-n", "3", "--backend", "fake", "--seed", "4", "--words", "320", "--out", str(out), "-q")
    assert r.returncode == 2 and "was written with --words 300 (now 320)" in r.stderr and "--mixed" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and (out / "corpus.jsonl").read_bytes() == before  # nothing written
    with pytest.raises(fabula.StoreError, match="model 'fake' \\(now 'fake-2'\\)"):
        fabula.Corpus(out).write(3, backend=FakeBackend(model="fake-2"), seed=4, words=300, progress=False)
    pack = tmp_path / "spy.toml"
    pack.write_text((Path(fabula.__file__).parent / "packs" / "spy.toml").read_text() + "\n# edited\n")
    r = run_cli("write", "-n", "3", "--backend", "fake", "--seed", "4", "--words", "300", "--pack", str(pack), "--out", str(out), "-q")
    assert r.returncode == 2 and "the pack file of digest" in r.stderr, r.stderr
    r = run_cli("write", "-n", "3", "--backend", "fake", "--seed", "4", "--words", "320", "--mixed", "--out", str(out), "-q")
    assert r.returncode == 0, r.stderr
    assert [x.record["target_words"] for x in fabula.Corpus(out)] == [300, 300, 320]


def test_an_adapter_puts_the_card_before_each_prompt_and_goes_to_the_engine(tmp_path):
    from fabula.config import CARD_PROMPT_WORDS, resolve

    (tmp_path / "a.gguf").write_bytes(b"GGUF")
    cfg = resolve(3, backend=fabula.EmbeddedModel(adapter=str(tmp_path / "a.gguf")), exemplar=True)
    assert cfg.settings.card_prompt and cfg.settings.exemplars == ()
    assert cfg.backend_options["adapter"] == str(tmp_path / "a.gguf") and cfg.backend_options["prefix_words"] == CARD_PROMPT_WORDS
    assert not resolve(3, backend=fabula.EmbeddedModel()).settings.card_prompt
    r = run_cli("write", "-n", "1", "--backend", "fake", "--adapter", "a.gguf", "--out", str(tmp_path / "c"))
    assert r.returncode == 2 and "--adapter applies to the embedded and gguf backends" in r.stderr and not (tmp_path / "c").exists()
    r = run_cli("write", "-n", "1", "--adapter", str(tmp_path / "none.gguf"), "--out", str(tmp_path / "c"))
    assert r.returncode == 2 and "no such file" in r.stderr and r.stderr.count("\n") == 1 and not (tmp_path / "c").exists()
