"""`fabula report`: diversity metrics for folders of stories, side by side."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fabula.errors import UsageError
from fabula.reporting.metrics import TEXT_SAMPLE, measure, stock_ruler

__all__ = ["measure", "measure_folders", "report"]


def report(
    *paths: str | os.PathLike[str],
    first_words: int | None = None,
    semantic: bool = True,
    reference: str | os.PathLike[str] | None = None,
    sample: int | None = TEXT_SAMPLE,
) -> list[dict[str, Any]]:
    """The figures of `fabula report --json`, one dict per folder (a fabula
    corpus or any folder of .txt stories); ``reference`` (human-written
    stories) comes first, with ``"reference": true``; ``sample``: a folder of
    more stories is measured on a seeded sample of this many (None or 0: all)."""
    rs = measure_folders(paths, first_words, semantic, reference, sample=sample)
    return [{k: v for k, v in r.items() if not k.startswith("_")} for r in rs]


def measure_folders(
    paths,
    first_words: int | None = None,
    semantic: bool = True,
    reference: str | os.PathLike[str] | None = None,
    progress: bool = False,
    sample: int | None = TEXT_SAMPLE,
) -> list[dict[str, Any]]:
    """Every metric per folder, with the private keys the HTML report draws from
    (``progress``: bars on stderr, see metrics.measure)."""
    paths = ([Path(reference)] if reference else []) + [Path(f) for f in paths if not reference or Path(f) != Path(reference)]
    if not paths:
        raise UsageError("report needs at least one folder")
    out: list[dict[str, Any]] = []
    ruler = stock_ruler(paths)
    for f in paths:
        r = measure(f, first_words=first_words, semantic=semantic, ruler=ruler, progress=progress, most=sample)
        if r["stories"] == 0:
            raise UsageError(f"{f} holds no .txt stories; give a folder of .txt files or a fabula corpus")
        r["reference"] = r["_reference"] = bool(reference) and not out
        out.append(r)
    return out
