"""Backends by spec: ``embedded``, ``gguf:PATH``, ``openai``, ``fake``."""

from __future__ import annotations

from fabula.backends.base import Backend, Completion, Job, Request
from fabula.errors import UsageError

__all__ = ["Backend", "Completion", "Job", "Request", "make_backend"]


def make_backend(spec: str, **options) -> Backend:
    """Build a backend from its CLI spec. Heavy imports happen here, not at start-up."""
    if spec == "fake":
        from fabula.backends.fake import FakeBackend

        return FakeBackend()
    if spec == "openai":
        from fabula.backends.openai import OpenAIBackend

        return OpenAIBackend(**options)
    if spec == "embedded" or spec.startswith("gguf:"):
        from fabula.backends.embedded import EmbeddedBackend

        path = None if spec == "embedded" else spec[len("gguf:"):]
        return EmbeddedBackend.load(path, **options)
    raise UsageError(f"unknown backend {spec!r}; use embedded, gguf:PATH, openai or fake")
