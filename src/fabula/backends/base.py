"""The backend interface: a Request in, a Completion out.

A backend is one small class with an ``id``, a ``model`` name and ``complete()``.
Writing a story takes several requests in a row (one per paragraph in beats
mode), so the writer hands the backend *jobs*: objects that say what to ask
next (``request()``) and take the answer (``feed()``). ``run()`` drives many
jobs and yields each one when it is finished. The default ``run()`` does one
request at a time; a backend that can batch (embedded) or overlap requests
(a server) overrides it, pulling jobs through a ``JobSource``, and nothing
else in fabula changes. ``Backend`` states the whole contract; a plug-in
backend (docs/extending.md) subclasses it like the built-in ones.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field, replace
from typing import ClassVar, Generic, Iterable, Iterator, Protocol, TypeVar


@dataclass(frozen=True)
class Request:
    prompt: str  # text to continue (completion) or the instruction (chat)
    max_tokens: int
    seed: int
    temperature: float = 0.8
    top_p: float = 0.92
    repeat_penalty: float = 1.18
    min_tokens: int = 0  # no end of paragraph / text before this many tokens
    stop_at_newline: bool = True  # a paragraph ends at the first newline
    ban: tuple[str, ...] = ()  # phrases to keep out of the text (lower-case)
    ban_grams: frozenset[str] = frozenset()  # word 4-grams ("a b c d", lower-case) to keep out: the corpus's common ones
    chat: bool = False  # instruct mode: prompt is a user message
    n: int = 1  # candidates to sample from the same prompt (best of n); candidate j uses candidate_seed(seed, j)


@dataclass
class Completion:
    text: str
    tokens: int  # tokens generated
    seconds: float  # wall time for this request
    finish: str = "stop"  # "stop" (newline / end of text) | "length"
    backtracks: int = 0  # banned phrases undone while sampling
    retries: int = 0  # transport retries (server backends)
    candidates: list[str] = field(default_factory=list)  # every candidate's text when n > 1 (text is candidates[0])


class Job(Protocol):
    def request(self) -> Request | None:
        """The next request, or None when the job is done."""

    def feed(self, completion: Completion) -> None:
        """Take the completion of the last request."""

    def fail(self, reason: str) -> None:
        """The backend gave up on the last request (transport faults past the retry budget)."""


J = TypeVar("J", bound=Job)  # the jobs a run drives: it yields the same objects back


@dataclass
class Backend:
    """What every backend is and does. Only ``complete()`` must be written;
    the rest has defaults a backend overrides where it can do better."""

    id: str = "base"  # recorded with every story (describe)
    model: str = ""
    chat: ClassVar[bool] = False  # takes instruct mode's chat requests (Request.chat)
    # Its stories come faster than the writer checks them and it leaves the
    # machine's cores to the writer: a large run checks in a process of its own (fabula.check_ahead).
    checks_apart: ClassVar[bool] = False
    # It keeps Request.ban_grams out while sampling (the embedded engine does;
    # a server cannot): for one that does not, the writer never works them out.
    bans_grams: ClassVar[bool] = False

    def complete(self, request: Request) -> Completion:
        """One request: its text (``request.n`` candidates: see split/merge)."""
        raise NotImplementedError

    def run(self, jobs: Iterable[J | None]) -> Iterator[J]:
        """Drive jobs to the end, yielding each when it is done. A job stream
        yields None when every remaining job waits on one in flight, which
        this one-at-a-time loop never has."""
        source = JobSource(jobs)
        while True:
            job = source.take()
            if job is None:
                source.idle()  # nothing is ever in flight here: done, or a stalled stream
                return
            while (req := job.request()) is not None:
                job.feed(merge([self.complete(r) for r in split(req)]))
            yield job

    def preflight(self) -> None:
        """Fail fast, before any folder is touched (a server there, a key accepted, the model served)."""

    def usage(self) -> list[str]:
        """Lines for the run's summary about where the work went (servers, workers)."""
        return []

    def describe(self) -> dict:
        """What goes into corpus.jsonl about the backend."""
        return {"backend": self.id, "model": self.model}

    def close(self) -> None:
        """Free what the backend holds (a model, connections, workers)."""

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class JobSource(Generic[J]):
    """The job stream as a scheduling loop pulls it: ``take()`` is the next
    job, or None when there is none to start now (every remaining one waits
    on a job in flight, or the stream is exhausted). When nothing is in
    flight, ``idle()`` says whether the stream is done, and a stream that
    waits with nothing in flight is a bug in its producer."""

    def __init__(self, jobs: Iterable[J | None]):
        self._it = iter(jobs)
        self.exhausted = False

    def take(self) -> J | None:
        if self.exhausted:
            return None
        try:
            return next(self._it)
        except StopIteration:
            self.exhausted = True
            return None

    def idle(self) -> bool:
        """With no job in flight: True when the stream is done; raises when it stalls."""
        if self.exhausted:
            return True
        raise RuntimeError("job stream stalled with no job in flight")


class OneShot:
    """A job of exactly one request: ``complete()`` on top of ``run()``, and
    the unit the benchmarks time."""

    def __init__(self, request: Request):
        self._req = request
        self.result: Completion | None = None
        self.error = ""

    def request(self) -> Request | None:
        return None if self.result is not None or self.error else self._req

    def feed(self, c: Completion) -> None:
        self.result = c

    def fail(self, reason: str) -> None:
        self.error = reason


def candidate_seed(seed: int, j: int) -> int:
    """Candidate j's seed: the request's own for j = 0 (so n = 1 changes nothing)."""
    if j == 0:
        return seed
    return int.from_bytes(hashlib.sha256(f"{seed}:{j}".encode()).digest()[:4], "little") & 0x7FFFFFFF


def split(req: Request) -> list[Request]:
    """A best-of-n request as n single requests (for backends that cannot share a prompt)."""
    return [req] if req.n <= 1 else [replace(req, n=1, seed=candidate_seed(req.seed, j)) for j in range(req.n)]


def merge(parts: list[Completion]) -> Completion:
    """n single completions as one best-of-n completion (costs summed)."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    return Completion(
        text=first.text,
        tokens=sum(p.tokens for p in parts),
        seconds=max(p.seconds for p in parts),
        finish=first.finish,
        backtracks=sum(p.backtracks for p in parts),
        retries=sum(p.retries for p in parts),
        candidates=[p.text for p in parts],
    )


def now() -> float:
    return time.perf_counter()
