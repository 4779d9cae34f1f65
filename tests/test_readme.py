"""The README a newcomer reads: short, every link of it and of the manual
resolves, and every `fabula` command it shows works with the CLI as it is."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli

README = REPO / "README.md"
DOCS = REPO / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
MAX_LINES = 250

# The rule for what this test runs. A command runs in full when it uses the
# fake backend, or its subcommand never loads a model (and, for one that reads
# a corpus, the folder is not one that only a model writes). Every other
# command (write with a model or a server, doctor, or a reader of such a
# folder) runs with --help appended: click rejects an unknown subcommand or
# option before it prints help, so its spelling is still checked, and
# nothing is loaded. Lines that do not start with `fabula` (make, pip, vllm,
# ollama, ...) are not fabula commands.
MODEL_FREE = {"plan", "packs", "backends", "report", "export", "verify", "publish"}
READERS = {"report", "export", "verify"}
MODEL_WRITTEN = {"corpus"}  # what `make demo` writes; plus the --out of every write without --backend fake
SHELL_OPERATORS = {"|", "||", ";", "&", "<", ">>", "2>", "2>&1"}
# The Python examples run in order in one folder; where one names a model or
# a server, the fake backend stands in (the shell rule's counterpart).
PYTHON_STANDINS = {"backend=fabula.EmbeddedModel()": 'backend="fake"', "backend=server": 'backend="fake"'}


def prose(text: str) -> str:
    """Markdown without its code: fenced blocks and inline code."""
    return re.sub(r"`[^`\n]*`", "", re.sub(r"```.*?```", "", text, flags=re.S))


def relative_links(page: Path) -> list[str]:
    """The targets of [text](target) and ![alt](target) that are paths:
    no scheme (http:, mailto:), not an anchor of the same page."""
    targets = re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", prose(page.read_text(encoding="utf-8")))
    return [t for t in targets if not re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:", t) and not t.startswith("#")]


def shell_lines(text: str) -> list[str]:
    """Every line of every ```sh and ```bash block, continuations joined,
    comments (a # after whitespace) cut."""
    lines = []
    for block in re.findall(r"^```(?:sh|bash)\n(.*?)^```", text, flags=re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"(^|\s)#.*$", "", line).strip()
            if line:
                lines.append(line)
    return lines


def fabula_commands(text: str) -> list[tuple[dict[str, str], list[str], str | None]]:
    """(environment, arguments after `fabula`, file stdout goes to) of every
    `fabula ...` command in the README's shell blocks, in order; `a && b` is
    two commands."""
    commands = []
    for line in shell_lines(text):
        words = shlex.split(line)
        while words:
            cut = words.index("&&") if "&&" in words else len(words)
            command, words = words[:cut], words[cut + 1 :]
            env = {}
            while command and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", command[0]):
                key, _, value = command.pop(0).partition("=")
                env[key] = value
            if not command or command[0] != "fabula":
                continue
            args, stdout = command[1:], None
            if ">" in args:
                i = args.index(">")
                args, stdout = args[:i] + args[i + 2 :], args[i + 1]
            assert not SHELL_OPERATORS & set(args), f"README: shell syntax this test does not run: {line}"
            commands.append((env, args, stdout))
    return commands


def option(args: list[str], name: str) -> str | None:
    for i, word in enumerate(args):
        if word == name and i + 1 < len(args):
            return args[i + 1]
        if word.startswith(name + "="):
            return word.split("=", 1)[1]
    return None


def folder(word: str) -> str:
    return word.rstrip("/")


def runs_in_full(args: list[str], model_written: set[str]) -> bool:
    """The rule above: True to run the command, False to check its options only."""
    if "--help" in args or "-h" in args or option(args, "--backend") == "fake":
        return True
    sub = args[0] if args else ""
    if sub == "publish":
        return "--dry-run" in args  # a real publish needs a token and the network
    if sub not in MODEL_FREE:
        return False  # write with a model or a server, doctor
    return not (sub in READERS and any(folder(w) in model_written for w in args[1:]))


def in_tmp(word: str, tmp: Path) -> str:
    """/tmp/x of the README becomes tmp/x: the commands run in a fresh folder."""
    return str(tmp / word[len("/tmp/") :]) if word.startswith("/tmp/") else word


def test_the_readme_is_short():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_LINES, f"README.md has {len(lines)} lines, at most {MAX_LINES}: move the rest to docs/"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_relative_link_of_the_readme_and_the_manual_points_to_a_file(page):
    broken = [t for t in relative_links(page) if not (page.parent / t.split("#", 1)[0]).exists()]
    assert not broken, f"{page.relative_to(REPO)}: links to files that do not exist: {broken}"


def test_the_manual_contents_list_every_page():
    listed = {(DOCS / t.split("#", 1)[0]).resolve() for t in relative_links(DOCS / "index.md")}
    missing = [p.name for p in DOCS.glob("*.md") if p.name != "index.md" and p.resolve() not in listed]
    assert not missing, f"docs/index.md does not list: {missing}"


def test_every_fabula_command_of_the_readme_works_with_the_cli(tmp_path):
    commands = fabula_commands(README.read_text(encoding="utf-8"))
    assert len(commands) >= 10 and any(option(a, "--backend") == "fake" for _, a, _ in commands)
    model_written = MODEL_WRITTEN | {folder(option(a, "--out") or "corpus") for _, a, _ in commands if a[:1] == ["write"] and option(a, "--backend") != "fake"}
    for env, args, stdout in commands:
        shown = "fabula " + shlex.join(args)
        args = [in_tmp(w, tmp_path) for w in args]
        if not runs_in_full(args, model_written):
            args = [*args, "--help"]
        r = run_cli(*args, cwd=tmp_path, env=env, timeout=300)
        assert r.returncode == 0, f"README: `{shown}` exited {r.returncode}:\n{r.stderr[-2000:]}"
        if stdout:
            (tmp_path / in_tmp(stdout, tmp_path)).write_text(r.stdout, encoding="utf-8")


def test_every_python_example_of_the_readme_runs(tmp_path):
    blocks = re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), flags=re.S | re.M)
    assert len(blocks) >= 4
    for block in blocks:
        code = block
        for model, fake in PYTHON_STANDINS.items():
            code = code.replace(model, fake)
        r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, f"README example failed:\n{block}\n{r.stderr[-2000:]}"


def test_the_rule_runs_what_needs_no_model_and_checks_the_options_of_the_rest():
    written = MODEL_WRITTEN | {"served"}
    assert runs_in_full(["write", "-n", "5", "--backend", "fake", "--out", "/tmp/try"], written)
    assert runs_in_full(["report", "/tmp/try", "--html", "/tmp/try/report.html"], written)
    assert runs_in_full(["packs", "--show", "spy"], written)
    assert not runs_in_full(["write", "-n", "3", "--out", "corpus"], written)
    assert not runs_in_full(["write", "--backend", "openai", "--model", "m", "--out", "served"], written)
    assert not runs_in_full(["report", "corpus/", "--reference", "human/"], written)
    assert not runs_in_full(["doctor"], written)
    assert runs_in_full(["publish", "/tmp/try_hf", "me/x", "--dry-run"], written)
    assert not runs_in_full(["publish", "/tmp/try_hf", "me/x"], written)
    text = "```sh\nFOO=1 fabula doctor  # a comment\nfabula plan -n 2 --json > cards.jsonl && fabula \\\n  packs\nmake demo\n```\n"
    assert fabula_commands(text) == [({"FOO": "1"}, ["doctor"], None), ({}, ["plan", "-n", "2", "--json"], "cards.jsonl"), ({}, ["packs"], None)]


def test_a_misspelt_option_fails_even_where_only_the_options_are_checked(tmp_path):
    assert run_cli("write", "-n", "3", "--out", "corpus", "--bacend", "fake", "--help", cwd=tmp_path).returncode == 2
    assert run_cli("report", "corpus", "--frist-words", "250", "--help", cwd=tmp_path).returncode == 2
