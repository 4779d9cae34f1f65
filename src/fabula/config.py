"""One write configuration: the pack's defaults, the caller's options, the
mode, best of k, the word budget and the backend's options, resolved and
validated in one place before anything is written. The CLI and the API both
go through ``resolve``; ``WriteConfig`` is what a run needs.

The backend option objects (``EmbeddedModel``, ``Server``, ``FakeModel``,
``Plugin``, ``RayCluster``) are small frozen records: the model is loaded when
a write starts (``WriteConfig.open_backend``), sized for that write.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Union

from fabula.backends.base import Backend
from fabula.errors import UsageError
from fabula.packs import Pack
from fabula.write import WriteSettings

DEFAULT_BATCH = 32  # sequences decoded together: on 2 cores B = 32 and 64 run 3 % faster than 16 (bench/embedded.py)
# Best of 4 in steer and beats modes: on 16 stories (seed 1) the scorer's slips
# fell from 3.38 per story at k = 1 (1.62 at k = 2) to 0.06, for 3.1x the time.
# A server (where every candidate is paid for) and instruct mode (a chat model
# writing whole stories) default to 1.
DEFAULT_BEST_OF = 4
CARD_PROMPT_WORDS = 260  # room for write.card_text before each prompt (the spy pack's: 150-210 words)
DEFAULT_BAN_COMMON = 0.02  # share of the corpus; see score.CommonGrams and the README's diversity bench


@dataclass(frozen=True)
class EmbeddedModel:
    """A local GGUF model run by llama.cpp in this process: the embedded Gemma 3
    270M (``path=None``) or any GGUF file."""

    path: str | None = None
    threads: int | None = None  # CPU threads [all cores]
    batch: int | None = None  # sequences decoded together [min(32, N x best_of)]
    adapter: str | None = None  # a GGUF LoRA adapter (`fabula tune` writes one); the card leads every prompt

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


@dataclass(frozen=True)
class WriteConfig:
    """Everything one write needs, resolved and checked (see ``resolve``)."""

    n: int
    seed: int
    pack: Pack
    settings: WriteSettings  # ban: the pack's phrases and names and the caller's, lower-case
    max_attempts: int
    backend: EmbeddedModel | Server | FakeModel | Plugin | Backend
    backend_options: dict[str, Any] = field(default_factory=dict)
    executor: RayCluster | None = None
    checks: Any = None  # fabula.checks.compose's second argument
    scorer: Any = None  # a fabula.score.Scorer, or None

    def manifest(self, version: str, backend: Backend) -> dict[str, Any]:
        """What the corpus folder is opened with (fabula.json): a resumed run
        must match it (store.Store.open)."""
        return {
            "pack": self.pack.name,
            "pack_digest": self.pack.digest,
            "seed": self.seed,
            "fabula": version,
            "backend": backend.id,
            "model": backend.model,
            "words": self.settings.words,
        }

    def open_backend(self) -> tuple[Backend, bool]:
        """(the backend, whether this write made it and so must close it)."""
        from fabula.backends import make_backend

        be_opts, options = self.backend, self.backend_options
        if isinstance(be_opts, Backend):
            be: Backend = be_opts  # the caller's to close
        elif self.executor is not None:
            from fabula.backends.ray_pool import RayBackend

            assert isinstance(be_opts, EmbeddedModel)  # resolve() refused any other
            ex = self.executor
            be = RayBackend(path=be_opts.path, workers=ex.workers, address=ex.address, runtime_env=ex.runtime_env, **options)
        else:
            be = make_backend(be_opts.spec, **options)
        if self.settings.mode == "instruct" and not be.chat:
            if not isinstance(be_opts, Backend):
                be.close()
            raise UsageError(f"instruct mode needs a chat model; backend {be.id} writes in steer and beats modes only: use --mode steer or --backend openai")
        return be, not isinstance(be_opts, Backend)


def resolve(
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
    checks: Any = None,
    scorer: Any = None,
    warn: Callable[[str], None] = lambda message: None,
) -> WriteConfig:
    """The options of a write (those of `fabula write`; None: the pack's or
    the backend's default) checked and resolved, or a one-line UsageError."""
    from fabula.packs import load_pack
    from fabula.plan import Planner

    if n < 1:
        raise UsageError(f"n = {n}: a corpus holds at least 1 story")
    be_opts = as_backend(backend)
    ray = _executor(executor, be_opts)
    p = load_pack(pack)
    g = p.generation
    _check_plugins(checks, scorer)
    ranges = (
        ("temperature", temperature, 0, 2, "from 0 to 2"),
        ("top_p", top_p, 0, 1, "above 0 and at most 1"),
        ("repeat_penalty", repeat_penalty, 1, 2, "from 1 to 2"),
        ("ban_common", ban_common, 0, 1, "from 0 to 1"),
    )
    for name, value, lo, hi, allowed in ranges:
        if value is not None and not (lo <= value <= hi and (name != "top_p" or value > 0)):
            raise UsageError(f"{name} = {value}: use a value {allowed}")
    for name, value in (("best_of", best_of), ("max_attempts", max_attempts), ("words", words)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise UsageError(f"{name} = {value!r}: use a whole number of 1 or more")
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
    adapter = be_opts.adapter if isinstance(be_opts, EmbeddedModel) else None
    if adapter and settings.mode == "instruct":
        raise UsageError("--adapter: a tuned model writes in steer or beats mode (the card leads each prompt); drop --mode instruct")
    if adapter and not os.path.isfile(adapter):
        raise UsageError(f"--adapter {adapter}: no such file; give the adapter.gguf that `fabula tune` wrote")
    if adapter:
        settings = replace(settings, card_prompt=True)
    elif settings.mode in ("steer", "beats") and p.exemplars and exemplar:
        settings = replace(settings, exemplars=tuple(e.block() for e in p.exemplars))
    planner = Planner(p, seed, n)
    for problem in planner.feasibility():
        warn(problem)
    if settings.mode in ("steer", "beats"):
        _check_budget(p, settings, planner.next())
    return WriteConfig(
        n=n,
        seed=seed,
        pack=p,
        settings=settings,
        max_attempts=max_attempts or g.max_attempts,
        backend=be_opts,
        backend_options=_backend_options(be_opts, settings, n),
        executor=ray,
        checks=checks,
        scorer=scorer,
    )


def _executor(executor: str | RayCluster, be_opts) -> RayCluster | None:
    if executor == "ray":
        executor = RayCluster()
    elif executor != "local" and not isinstance(executor, RayCluster):
        raise UsageError(f"executor {executor!r}: use local or ray")
    if isinstance(executor, RayCluster) and not isinstance(be_opts, EmbeddedModel):
        raise UsageError("--executor ray runs the embedded or a gguf:PATH model on Ray workers; for model servers give --base-url once per server instead")
    return executor if isinstance(executor, RayCluster) else None


def _check_budget(p: Pack, settings: WriteSettings, card) -> None:
    """The words the pack pastes into a story (openers or beat sentences) must leave the model room."""
    lo, hi = p.word_range(settings.words)
    pasted, what = (card.openers, "openers") if settings.mode == "steer" and card.openers else (card.beats, "beat sentences")
    beat_words = len(" ".join(pasted).split())
    if beat_words + 8 * len(p.beats) > hi:
        raise UsageError(
            f"--words {settings.words} allows at most {hi} words, but the {what} of pack {p.name} alone take "
            f"about {beat_words}; use --words {int((beat_words + 25 * len(p.beats)) * settings.words / hi) + 1} or more"
        )


def _backend_options(be_opts, settings: WriteSettings, n: int) -> dict[str, Any]:
    """What make_backend (or the Ray pool) is given for this write."""
    if isinstance(be_opts, EmbeddedModel):
        prefix_words = max((len(x.split()) for x in settings.exemplars), default=0)
        if settings.card_prompt:
            prefix_words = CARD_PROMPT_WORDS
        k = settings.best_of
        if be_opts.batch is not None and be_opts.batch < k:
            raise UsageError(f"--batch {be_opts.batch} is smaller than --best-of {k}; each candidate takes one sequence: use --batch {k} or more")
        # Lanes of k sequences: enough for every story to run at once, up to the default batch.
        options: dict[str, Any] = dict(words=settings.words, prefix_words=prefix_words, batch=be_opts.batch or max(k, min(DEFAULT_BATCH, n * k) // k * k))
        if be_opts.threads:
            options["threads"] = be_opts.threads
        if be_opts.adapter:
            options["adapter"] = be_opts.adapter
        return options
    if isinstance(be_opts, Server):
        if be_opts.api_key_env != "OPENAI_API_KEY" and not os.environ.get(be_opts.api_key_env):
            raise UsageError(f"--api-key-env {be_opts.api_key_env}: that variable is not set; export it, or leave the option out for a server without keys")
        return dict(
            base_url=be_opts.base_url,
            model=be_opts.model,
            api_key_env=be_opts.api_key_env,
            concurrency=be_opts.concurrency,
            timeout=be_opts.timeout,
            max_retries=be_opts.max_retries,
        )
    return {}
