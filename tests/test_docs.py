"""The manual site (mkdocs.yml): it builds in strict mode, and its CLI and API
reference pages are generated from the code."""

import html
import re
import shutil
import subprocess
import sys

import click

from fabula.cli import main
from tests.conftest import REPO


def build(config, site):
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config), "--site-dir", str(site)],
        capture_output=True,
        text=True,
        timeout=300,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin", "HOME": str(site.parent)},
    )


def text_of(page) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", page.read_text(encoding="utf-8")))


def test_the_manual_builds_in_strict_mode_with_generated_references(tmp_path):
    r = build(REPO / "mkdocs.yml", tmp_path / "site")
    assert r.returncode == 0, r.stderr[-3000:]
    cli = text_of(tmp_path / "site" / "reference" / "cli" / "index.html")
    for name, command in main.commands.items():  # every command, with its options, as click knows them
        assert f"fabula {name}" in cli, name
        for p in command.params:
            if isinstance(p, click.Option):
                assert p.opts[-1] in cli, (name, p.opts)
    api = text_of(tmp_path / "site" / "reference" / "api" / "index.html")
    from fabula.api import Corpus

    opening = " ".join(Corpus.write.__doc__.split()[:4])  # "Continue the folder to": rendered, not read from a file
    assert opening in api and "publish" in api and "default_checks" in api


def test_a_broken_link_fails_the_build(tmp_path):
    """Strict mode is what makes the build a test: one link to a page that
    does not exist, and it fails."""
    shutil.copytree(REPO / "docs", tmp_path / "docs")
    shutil.copy(REPO / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copytree(REPO / "src", tmp_path / "src")  # the API reference reads the code from here
    page = tmp_path / "docs" / "export.md"
    page.write_text(page.read_text() + "\nSee [the old page](no-such-page.md).\n")
    r = build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert r.returncode != 0 and "no-such-page.md" in r.stderr, r.stderr[-2000:]
