"""Backends are plug-ins: a distribution of its own adds one through the
``fabula.backends`` entry point group, and a Backend instance goes straight
into Corpus.write."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import fabula
from fabula.backends import Backend, Completion, make_backend, register
from fabula.errors import BackendError, UsageError
from tests.conftest import run_cli

PLUGIN = Path(__file__).parent / "echo_plugin"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """The echo plug-in, installed by pip into a folder of its own (not the
    test environment): the environment a child process runs fabula in."""
    work = tmp_path_factory.mktemp("plugin")
    src, target = work / "src", work / "site"
    shutil.copytree(PLUGIN, src)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-cache-dir", "--target", str(target), str(src)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert any(p.name.startswith("fabula_echo-") and p.suffix == ".dist-info" for p in target.iterdir())
    return {"PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}


def test_an_installed_plug_in_writes_a_corpus_from_the_command_line(installed, tmp_path):
    listed = run_cli("backends", env=installed)
    assert listed.returncode == 0 and "echo" in listed.stdout and "fabula_echo:EchoBackend" in listed.stdout
    out = tmp_path / "c"
    r = run_cli("write", "-n", "3", "--backend", "echo", "--seed", "2", "--out", str(out), "-q", env=installed)
    assert r.returncode == 0, r.stderr
    records = [json.loads(line) for line in (out / "corpus.jsonl").read_text().splitlines()]
    assert len(records) == 3 and {(r["backend"], r["model"]) for r in records} == {("echo", "echo-1")}
    assert run_cli("verify", str(out), env=installed).returncode == 0
    r = run_cli("write", "-n", "1", "--backend", "echo:echo-2", "--seed", "2", "--out", str(tmp_path / "d"), "-q", env=installed)
    assert r.returncode == 0 and json.loads((tmp_path / "d" / "corpus.jsonl").read_text())["model"] == "echo-2"
    gone = run_cli("write", "-n", "1", "--backend", "echo", "--out", str(tmp_path / "e"))  # without the plug-in
    assert gone.returncode == 2 and "unknown backend 'echo'" in gone.stderr and not (tmp_path / "e").exists()


class Counting(Backend):
    """A backend object of the caller's: it writes filler and counts requests."""

    def __init__(self):
        super().__init__(id="counting", model="c-1")
        self.requests, self.closed = 0, False

    def complete(self, request):
        import random

        from fabula.backends.fake import filler

        self.requests += 1
        text = " " + filler(random.Random(request.seed), int((request.min_tokens + request.max_tokens) / 2 * 0.75))
        return Completion(text=text, tokens=request.max_tokens, seconds=0.0)

    def close(self):
        self.closed = True


def test_a_backend_instance_goes_straight_into_corpus_write(tmp_path):
    be = Counting()
    s = fabula.Corpus(tmp_path / "c").write(2, backend=be, seed=3, words=300, progress=False, checks=lambda checks: checks[:1])
    assert s.written == 2 and be.requests >= 2 * 7
    assert not be.closed  # the caller's to close
    assert {r["backend"] for r in fabula.Corpus(tmp_path / "c").records()} == {"counting"}
    with be:
        pass
    assert be.closed  # a backend is a context manager


def test_register_adds_a_name_and_a_factory_must_make_a_backend(tmp_path, monkeypatch):
    import fabula.backends

    monkeypatch.setattr(fabula.backends, "_REGISTERED", {})  # this test's names only
    register("counting", lambda arg, **options: Counting())
    assert make_backend("counting").id == "counting"
    assert fabula.Corpus(tmp_path / "c").write(1, backend="counting", seed=3, words=300, progress=False, checks=lambda checks: checks[:1]).written == 1
    register("broken", lambda arg, **options: "not a backend")
    with pytest.raises(BackendError, match="made a str, not a fabula Backend"):
        make_backend("broken")
    with pytest.raises(UsageError, match="plain name"):
        register("a:b", lambda arg: Counting())
    with pytest.raises(UsageError, match="needs a path"):
        make_backend("gguf")
