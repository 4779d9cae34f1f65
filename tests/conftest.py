from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """The real console entry point in a child process (exit codes, stderr)."""
    return subprocess.run(
        [sys.executable, "-m", "fabula", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )


def plan_lines(folder: Path) -> list[bytes]:
    """The lines of a folder's plan.jsonl.gz, read by the standard library's
    gzip (the file is plain gzip: members one after another)."""
    import gzip

    return gzip.decompress((folder / "plan.jsonl.gz").read_bytes()).splitlines()


def plan_cards(folder: Path) -> list[dict]:
    import json

    return [json.loads(x) for x in plan_lines(folder)]


@pytest.fixture
def spy():
    from fabula.packs import load_pack

    return load_pack("spy")


def recast(card, **people):
    """``card`` with some of its people replaced, by role: recast(card, other=...)."""
    from dataclasses import replace

    return replace(card, cast={**card.cast, **people})
