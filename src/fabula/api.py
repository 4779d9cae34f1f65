"""The Python API: everything `fabula write`, `report` and `verify` do.

    import fabula

    corpus = fabula.Corpus("corpus")
    summary = corpus.write(10, seed=1)            # the embedded model; resumable, locked, checked
    for story in corpus:                          # committed stories, in index order
        print(story.id, story.card.hero.full, story.text[:60])
    figures = fabula.report("corpus", "other/")   # the same dicts as `fabula report --json`

Backends are small option objects (``EmbeddedModel``, ``Server``,
``FakeModel``); the model itself is loaded when a write starts, sized for that
write (batch, context), and closed when it ends. The CLI is a thin layer over
this module: no behaviour only the command line can reach.

Library manners: errors are ``FabulaError`` subclasses with one-line messages
(never ``sys.exit``); progress is a ``tqdm.auto`` bar (a widget in a notebook),
off with ``progress=False``; Ctrl-C keeps every committed story and re-raises
``KeyboardInterrupt``.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from fabula.config import (  # noqa: F401  (the option objects are this module's API too)
    DEFAULT_BAN_COMMON,
    DEFAULT_BATCH,
    DEFAULT_BEST_OF,
    BackendLike,
    EmbeddedModel,
    FakeModel,
    Plugin,
    RayCluster,
    Server,
    WriteConfig,
    as_backend,
)
from fabula.errors import UsageError
from fabula.records import Card, Record
from fabula.reporting import measure_folders, report  # noqa: F401  (fabula.report; the CLI's report)

log = logging.getLogger("fabula")


@dataclass(frozen=True)
class Story:
    """One committed story of a corpus: its text, its card and its record."""

    id: str
    index: int
    text: str
    card: Card
    record: Record  # its corpus.jsonl line

    @property
    def title(self) -> str:
        return self.card.title


class Corpus:
    """A corpus folder: read it (only committed stories) and write it."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"Corpus({str(self.path)!r})"

    # -- reading ---------------------------------------------------------------
    def records(self) -> list[Record]:
        """The records of the stories a reader sees: committed, file present, once."""
        from fabula.store import visible_records

        self._exists()
        return visible_records(self.path)

    def __iter__(self) -> Iterator[Story]:
        """Each story a reader sees, with its card and record; a story file
        that is not UTF-8 text is left out with a warning (fabula.store.stories)."""
        from fabula.store import stories

        self._exists()
        for r, text in stories(self.path):
            yield Story(id=r["id"], index=r["index"], text=text, card=Card.from_dict(r["card"]), record=r)

    def _exists(self) -> None:
        if not self.path.is_dir():
            raise UsageError(f"{self.path}: no such folder; give a corpus folder (`fabula write --out` makes one)")

    def __len__(self) -> int:
        from fabula.store import visible_records

        self._exists()
        return len(visible_records(self.path, cards=False))

    # -- as data (the export extra: pip install 'fabula[export]') ---------------
    def rows(self) -> Iterator[dict[str, Any]]:
        """One flat row per committed story (see ``fabula.export``)."""
        from fabula.export import rows

        return rows(self)

    def to_pandas(self):
        """A pandas DataFrame, one row per committed story."""
        from fabula.export import to_pandas

        return to_pandas(self)

    def to_dataset(self):
        """A Hugging Face ``datasets.Dataset``, one row per committed story."""
        from fabula.export import to_dataset

        return to_dataset(self)

    def export(self, to: str | os.PathLike[str], format: str = "parquet") -> int:
        """Write parquet, jsonl or a ``datasets`` folder with a dataset card; returns the rows written."""
        from fabula.export import export

        return export(self, to, format)

    def verify(self):
        """Every fault of the folder (`fabula verify`): a ``fabula.verify.Check``."""
        from fabula.verify import verify

        return verify(self.path)

    def report(self, first_words: int | None = None, semantic: bool = True) -> dict[str, Any]:
        return report(self.path, first_words=first_words, semantic=semantic)[0]

    # -- writing ---------------------------------------------------------------
    def write(
        self,
        n: int,
        *,
        pack: str | os.PathLike[str] = "spy",
        backend: BackendLike = "embedded",
        seed: int = 1,
        words: int | None = None,
        mode: str | None = None,
        best_of: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        repeat_penalty: float | None = None,
        max_attempts: int | None = None,
        avoid: tuple[str, ...] | list[str] = (),
        ban_common: float = DEFAULT_BAN_COMMON,
        exemplar: bool = False,
        executor: str | RayCluster = "local",
        progress: bool = True,
        warn=None,
        on_story=None,
        checks=None,
        scorer=None,
        mixed: bool = False,
        fresh: bool = False,
    ):
        """Continue the folder to ``n`` stories, with every guarantee of `fabula
        write` (one writer, resume, checks, rejects); returns the run's
        ``fabula.pipeline.Summary``. Options and defaults are those of the CLI
        (see `fabula write --help`); ``avoid`` adds phrases to keep out.
        ``warn`` receives warnings as one-line strings (default: the logger).
        ``executor``: "local" (this process) or a ``RayCluster`` ("ray": a local
        Ray with two workers). ``on_story`` is called with the run's
        ``Summary`` after every finished draft (kept, dropped or failed); its
        ``committed`` counts the stories already on disk for good (a fast run
        commits kept stories in groups), ``written`` those kept.
        ``checks``: checks of your own, added to the pack's (functions
        ``(text, card) -> bool`` or ``(False, reason)``, or fabula.checks
        objects), or a function of the pack's list that returns the list to
        run; ``scorer``: a ``fabula.score.Scorer`` with your own terms and
        weights for choosing among candidates. A folder is continued only with
        the pack file, backend, model and words it was written with, unless
        ``mixed`` (each story's record keeps its own). ``fresh`` deletes the
        stories and records a previous run wrote in the folder first, so the
        corpus starts over (files fabula did not write stay)."""
        from fabula.config import resolve

        cfg = resolve(
            n,
            pack=pack,
            backend=backend,
            seed=seed,
            words=words,
            mode=mode,
            best_of=best_of,
            temperature=temperature,
            top_p=top_p,
            repeat_penalty=repeat_penalty,
            max_attempts=max_attempts,
            avoid=avoid,
            ban_common=ban_common,
            exemplar=exemplar,
            executor=executor,
            checks=checks,
            scorer=scorer,
            warn=warn or log.warning,
        )
        return self._run(cfg, progress, on_story, mixed, fresh)

    def _run(self, cfg: WriteConfig, progress: bool, on_story, mixed: bool = False, fresh: bool = False):
        """A resolved write: the backend made, checked, run over the folder, closed."""
        from fabula.pipeline import write_corpus
        from fabula.store import Store
        from fabula.version import __version__

        n = cfg.n
        be, owned = cfg.open_backend()  # before the folder: a bad backend leaves nothing behind
        try:
            be.preflight()  # server there, key accepted, model served: before any story
            store = Store.open(self.path, cfg.manifest(__version__, be), mixed=mixed, fresh=fresh)
            bar = None
            if progress:
                from tqdm.auto import tqdm

                # Off a terminal (a log file, CI) a line every 30 s, not one per story.
                interval = 0.1 if sys.stderr.isatty() else 30.0
                bar = tqdm(total=n, initial=min(store.stored(), n), unit="story", dynamic_ncols=True, mininterval=interval)

            user_hook = on_story

            def on_story(s) -> None:
                if user_hook is not None:
                    user_hook(s)
                if bar is not None:
                    bar.n = min(s.already + s.committed, n)  # what is on disk for good
                    bar.set_postfix_str(f"{s.tokens_per_second:.1f} tok/s, dropped {sum(s.dropped.values())}", refresh=False)
                    bar.update(0)  # redrawn at most every mininterval

            try:
                summary = write_corpus(
                    store,
                    cfg.pack,
                    be,
                    n,
                    cfg.seed,
                    cfg.settings,
                    cfg.max_attempts,
                    avoid=cfg.settings.ban,
                    on_story=on_story,
                    checks=cfg.checks,
                    scorer=cfg.scorer,
                )
            except KeyboardInterrupt:
                store.repair()  # a story caught between its file and its record is not kept
                raise
            finally:
                if bar is not None:
                    bar.n = min(store.stored(), n)  # what is on disk for good, now that all is flushed
                    bar.close()
        finally:
            if owned:
                be.close()
        for line in summary.lines():
            log.info(line)
        return summary
