"""Backends by spec: ``embedded``, ``gguf:PATH``, ``openai``, ``fake``, and plug-ins.

A spec is a name, optionally with an argument after a colon (``gguf:PATH``).
Each name maps to a factory that returns a ``Backend``: a function called as
``factory(arg, **options)`` (``arg`` is None without a colon), or a
``Backend`` subclass called as ``cls(**options)`` (``cls(model=arg,
**options)`` with an argument). The built-in names are below; another
distribution adds its own through the ``fabula.backends`` entry point group
(``name = "package.module:Factory"``), and ``register()`` adds one at run
time.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Callable

from fabula.backends.base import Backend, Completion, Job, JobSource, Request
from fabula.errors import BackendError, UsageError

__all__ = ["Backend", "Completion", "Job", "JobSource", "Request", "backend_names", "make_backend", "register"]

ENTRY_POINTS = "fabula.backends"
Factory = Callable[..., Backend]


def _fake(arg: str | None, **options) -> Backend:
    from fabula.backends.fake import FakeBackend

    return FakeBackend()


def _openai(arg: str | None, **options) -> Backend:
    from fabula.backends.openai import OpenAIBackend

    return OpenAIBackend(**options)


def _embedded(arg: str | None, **options) -> Backend:
    from fabula.backends.embedded import EmbeddedBackend

    return EmbeddedBackend.load(None, **options)


def _gguf(arg: str | None, **options) -> Backend:
    from fabula.backends.embedded import EmbeddedBackend

    if not arg:
        raise UsageError("backend gguf needs a path: gguf:PATH (a .gguf model file)")
    return EmbeddedBackend.load(arg, **options)


BUILTIN: dict[str, Factory] = {"embedded": _embedded, "gguf": _gguf, "openai": _openai, "fake": _fake}
_REGISTERED: dict[str, Factory] = {}


def register(name: str, factory: Factory) -> None:
    """Add a backend under ``name`` for this process (``make_backend(name)``,
    ``--backend name`` from Python, ``Corpus.write(backend=name)``)."""
    if not name or ":" in name:
        raise UsageError(f"backend name {name!r}: give a plain name without a colon")
    _REGISTERED[name] = factory


def _plugins() -> dict[str, object]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINTS) if ep.name not in BUILTIN}


def backend_names() -> list[str]:
    """Every backend name a spec may use: built-in, registered, installed plug-ins."""
    return [*BUILTIN, *sorted(set(_REGISTERED) | set(_plugins()))]


def _factory(name: str) -> Factory | None:
    if name in BUILTIN:
        return BUILTIN[name]
    if name in _REGISTERED:
        return _REGISTERED[name]
    ep = _plugins().get(name)
    if ep is None:
        return None
    try:
        return ep.load()  # type: ignore[attr-defined]
    except Exception as e:  # a broken plug-in names itself, not fabula
        raise BackendError(
            f"backend plug-in {name!r} ({ep.value}) does not load: {e}; "  # type: ignore[attr-defined]
            "reinstall or fix that package"
        ) from None


def make_backend(spec: str, **options) -> Backend:
    """Build a backend from its spec. Heavy imports happen here, not at start-up."""
    name, colon, arg = spec.partition(":")
    factory = _factory(name)
    if factory is None:
        raise UsageError(f"unknown backend {spec!r}; use one of: {', '.join(n + (':PATH' if n == 'gguf' else '') for n in backend_names())}")
    if isinstance(factory, type):  # a Backend subclass: the argument is the model
        backend = factory(**({"model": arg} if colon else {}), **options)
    else:
        backend = factory(arg if colon else None, **options)
    if not isinstance(backend, Backend):
        raise BackendError(f"backend {name!r} made a {type(backend).__name__}, not a fabula Backend; its factory must return a fabula.backends.Backend")
    return backend
