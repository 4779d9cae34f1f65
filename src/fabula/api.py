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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Union

from fabula.backends.base import Backend
from fabula.errors import UsageError
from fabula.records import Card
from fabula.reporting import measure_folders, report  # noqa: F401  (fabula.report; the CLI's report)

log = logging.getLogger("fabula")

DEFAULT_BATCH = 32  # sequences decoded together: on 2 cores B = 32 and 64 run 3 % faster than 16 (bench/embedded.py)
# Best of 4 in steer and beats modes: on 16 stories (seed 1) the scorer's slips
# fell from 3.38 per story at k = 1 (1.62 at k = 2) to 0.06, for 3.1x the time.
# A server (where every candidate is paid for) and instruct mode (a chat model
# writing whole stories) default to 1.
DEFAULT_BEST_OF = 4
DEFAULT_BAN_COMMON = 0.02  # share of the corpus; see score.CommonGrams and the README's diversity bench


@dataclass(frozen=True)
class EmbeddedModel:
    """A local GGUF model run by llama.cpp in this process: the embedded Gemma 3
    270M (``path=None``) or any GGUF file."""

    path: str | None = None
    threads: int | None = None  # CPU threads [all cores]
    batch: int | None = None  # sequences decoded together [min(32, N x best_of)]

    @property
    def spec(self) -> str:
        return "embedded" if self.path is None else f"gguf:{self.path}"


@dataclass(frozen=True)
class Server:
    """An OpenAI-compatible server (vLLM, llama-server, Ollama, a hosted API),
    or several serving the same model: ``base_url`` a list of API roots."""

    base_url: str | tuple[str, ...]
    model: str
    api_key_env: str = "OPENAI_API_KEY"  # the variable that holds the key; never stored
    concurrency: int = 8
    timeout: float = 120.0
    max_retries: int = 6

    spec = "openai"


@dataclass(frozen=True)
class FakeModel:
    """Filler text, no model: for trying the pipeline and for tests."""

    spec = "fake"


@dataclass(frozen=True)
class RayCluster:
    """Run the embedded or GGUF model on Ray workers (`--executor ray`): each
    worker is an actor that loads the model once and runs the batched engine
    with the ``EmbeddedModel``'s threads and batch; this process keeps the
    planner, the checks and the store."""

    address: str | None = None  # None: start a local Ray; "auto": join the running cluster; or host:port
    workers: int = 2
    runtime_env: dict | None = None  # passed to ray.init, e.g. {"pip": ["fabula[ray]"]}


@dataclass(frozen=True)
class Plugin:
    """A backend of another package (the ``fabula.backends`` entry point
    group) or one ``fabula.backends.register`` added, by its spec: ``name`` or
    ``name:ARG``."""

    spec: str


BackendLike = Union[str, EmbeddedModel, Server, FakeModel, Plugin, Backend]


def as_backend(backend: BackendLike) -> EmbeddedModel | Server | FakeModel | Plugin | Backend:
    """A backend option object from itself or a spec (embedded, gguf:PATH,
    fake, a plug-in's name); a Backend instance is used as it is."""
    from fabula.backends import backend_names

    if isinstance(backend, (EmbeddedModel, Server, FakeModel, Plugin, Backend)):
        return backend
    if backend == "embedded":
        return EmbeddedModel()
    if isinstance(backend, str) and backend.startswith("gguf:"):
        return EmbeddedModel(path=backend[len("gguf:") :])
    if backend == "fake":
        return FakeModel()
    if backend == "openai":
        raise UsageError("backend 'openai' needs a URL and a model: pass fabula.Server(base_url=..., model=...)")
    if isinstance(backend, str) and backend.partition(":")[0] in backend_names():
        return Plugin(backend)
    names = ", ".join(n + (":PATH" if n == "gguf" else "") for n in backend_names())
    raise UsageError(f"unknown backend {backend!r}; use one of: {names} (`fabula backends` lists them), or from Python a fabula.Server or a Backend instance")


@dataclass(frozen=True)
class Story:
    """One committed story of a corpus: its text, its card and its record."""

    id: str
    index: int
    text: str
    card: Card
    record: dict[str, Any]

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
    def records(self) -> list[dict[str, Any]]:
        """The records of the stories a reader sees: committed, file present, once."""
        from fabula.store import CORPUS, read_jsonl

        out, seen = [], set()
        for r in read_jsonl(self.path / CORPUS):
            if r["id"] not in seen and (self.path / r["file"]).is_file():
                seen.add(r["id"])
                out.append(r)
        return out

    def __iter__(self) -> Iterator[Story]:
        for r in self.records():
            yield Story(id=r["id"], index=r["index"], text=(self.path / r["file"]).read_text(encoding="utf-8"), card=Card.from_dict(r["card"]), record=r)

    def __len__(self) -> int:
        return len(self.records())

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
        weights for choosing among candidates."""
        from fabula.backends import make_backend
        from fabula.packs import load_pack
        from fabula.pipeline import write_corpus
        from fabula.plan import Planner
        from fabula.store import Store
        from fabula.version import __version__
        from fabula.write import WriteSettings

        warn = warn or log.warning
        if n < 1:
            raise UsageError(f"n = {n}: a corpus holds at least 1 story")
        be_opts = as_backend(backend)
        if executor == "ray":
            executor = RayCluster()
        elif executor != "local" and not isinstance(executor, RayCluster):
            raise UsageError(f"executor {executor!r}: use local or ray")
        if isinstance(executor, RayCluster) and not isinstance(be_opts, EmbeddedModel):
            raise UsageError("--executor ray runs the embedded or a gguf:PATH model on Ray workers; for model servers give --base-url once per server instead")
        p = load_pack(pack)
        g = p.generation
        _check_plugins(checks, scorer)
        phrases = list(p.avoid_phrases) + list(p.avoid_names) + [a for a in avoid if a.strip()]
        ban = tuple(dict.fromkeys(x.strip().lower() for x in phrases))
        local = isinstance(be_opts, (EmbeddedModel, FakeModel))
        mode = mode or ("instruct" if isinstance(be_opts, Server) else g.mode)  # a plug-in: the pack's mode
        if mode not in ("steer", "beats", "instruct"):
            raise UsageError(f"mode {mode!r}: use steer, beats or instruct")
        settings = WriteSettings(
            words=words or p.words,
            mode=mode,
            frame=g.frame,
            temperature=g.temperature if temperature is None else temperature,
            top_p=g.top_p if top_p is None else top_p,
            repeat_penalty=g.repeat_penalty if repeat_penalty is None else repeat_penalty,
            ban=ban,
            best_of=best_of or (DEFAULT_BEST_OF if mode != "instruct" and local else 1),
            ban_common=ban_common,
        )
        if settings.mode in ("steer", "beats") and p.exemplars and exemplar:
            settings = replace(settings, exemplars=tuple(e.block() for e in p.exemplars))
        planner = Planner(p, seed, n)
        for problem in planner.feasibility():
            warn(problem)
        if settings.mode in ("steer", "beats"):
            lo, hi = p.word_range(settings.words)
            card = planner.next()
            pasted, what = (card.openers, "openers") if settings.mode == "steer" and card.openers else (card.beats, "beat sentences")
            beat_words = len(" ".join(pasted).split())
            if beat_words + 8 * len(p.beats) > hi:
                raise UsageError(
                    f"--words {settings.words} allows at most {hi} words, but the {what} of pack {p.name} alone take "
                    f"about {beat_words}; use --words {int((beat_words + 25 * len(p.beats)) * settings.words / hi) + 1} or more"
                )
        options: dict[str, Any] = {}
        if isinstance(be_opts, EmbeddedModel):
            prefix_words = max((len(x.split()) for x in settings.exemplars), default=0)
            k = settings.best_of
            if be_opts.batch is not None and be_opts.batch < k:
                raise UsageError(f"--batch {be_opts.batch} is smaller than --best-of {k}; each candidate takes one sequence: use --batch {k} or more")
            # Lanes of k sequences: enough for every story to run at once, up to the default batch.
            options.update(words=settings.words, prefix_words=prefix_words, batch=be_opts.batch or max(k, min(DEFAULT_BATCH, n * k) // k * k))
            if be_opts.threads:
                options["threads"] = be_opts.threads
        elif isinstance(be_opts, Server):
            if be_opts.api_key_env != "OPENAI_API_KEY" and not os.environ.get(be_opts.api_key_env):
                raise UsageError(f"--api-key-env {be_opts.api_key_env}: that variable is not set; export it, or leave the option out for a server without keys")
            options = dict(
                base_url=be_opts.base_url,
                model=be_opts.model,
                api_key_env=be_opts.api_key_env,
                concurrency=be_opts.concurrency,
                timeout=be_opts.timeout,
                max_retries=be_opts.max_retries,
            )
        owned = not isinstance(be_opts, Backend)  # a Backend the caller made is the caller's to close
        be: Backend
        if isinstance(executor, RayCluster):
            from fabula.backends.ray_pool import RayBackend

            assert isinstance(be_opts, EmbeddedModel)  # refused above otherwise
            be = RayBackend(path=be_opts.path, workers=executor.workers, address=executor.address, runtime_env=executor.runtime_env, **options)
        elif isinstance(be_opts, Backend):
            be = be_opts
        else:
            be = make_backend(be_opts.spec, **options)  # before the folder: a bad backend leaves nothing behind
        try:
            if settings.mode == "instruct" and not be.chat:
                raise UsageError(
                    f"instruct mode needs a chat model; backend {be.id} writes in steer and beats modes only: use --mode steer or --backend openai"
                )
            be.preflight()  # server there, key accepted, model served: before any story
            store = Store.open(self.path, {"pack": p.name, "pack_digest": p.digest, "seed": seed, "fabula": __version__})
            bar = None
            if progress:
                from tqdm.auto import tqdm

                bar = tqdm(total=n, initial=min(len(store.heads()), n), unit="story", dynamic_ncols=True)

            user_hook = on_story

            def on_story(s) -> None:
                if user_hook is not None:
                    user_hook(s)
                if bar is not None:
                    bar.n = min(s.already + s.committed, n)  # what is on disk for good
                    bar.set_postfix_str(f"{s.tokens_per_second:.1f} tok/s, dropped {sum(s.dropped.values())}", refresh=False)
                    bar.refresh()

            try:
                summary = write_corpus(
                    store, p, be, n, seed, settings, max_attempts or g.max_attempts, avoid=ban, on_story=on_story, checks=checks, scorer=scorer
                )
            except KeyboardInterrupt:
                store.repair()  # a story caught between its file and its record is not kept
                raise
            finally:
                if bar is not None:
                    bar.close()
        finally:
            if owned:
                be.close()
        for line in summary.lines():
            log.info(line)
        return summary


def _check_plugins(checks, scorer) -> None:
    """A user's checks and scorer, refused before anything is written."""
    from fabula.checks import compose
    from fabula.score import Scorer

    try:
        compose([], checks)
    except TypeError as e:
        raise UsageError(f"checks: {e}") from None
    if scorer is not None and not isinstance(scorer, Scorer):
        raise UsageError(f"scorer {scorer!r}: give a fabula.score.Scorer (terms=[Term(...)], weights={{...}})")
