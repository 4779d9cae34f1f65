"""Plan → write → check → store, until the corpus holds N stories.

The backend pulls jobs from ``_Jobs`` at its own pace (one at a time, or a
batch); each finished job comes back here, is checked, and is either committed,
retried with a new sampling seed, or recorded as rejected. Cards are planned
lazily, so memory does not grow with N.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator

import numpy as np

from fabula import index
from fabula.backends.base import Backend
from fabula.check_ahead import LAG, CheckAhead, movable
from fabula.checks import MARKUP, Check, NearDuplicates, Prints, compose, default_checks, run_checks, words
from fabula.errors import FabulaError
from fabula.genre import Genre
from fabula.packs import Pack
from fabula.plan import Planner
from fabula.plan_ahead import AHEAD_MIN, PlanAhead
from fabula.records import Draft, Verdict
from fabula.score import CommonGrams, NgramSet, Scorer
from fabula.store import Heads, Store
from fabula.verify import quarantined_attempts
from fabula.write import StoryJob, WriteSettings


@dataclass
class Summary:
    target: int
    already: int = 0  # stories in the folder before this run
    written: int = 0  # stories kept by this run (see committed)
    committed: int = 0  # ... of which on disk for good: a group commit may still hold the rest (see store.Store.group)
    rejected: int = 0  # cards given up after max_attempts drafts
    failed: int = 0  # cards the backend gave up on (kept pending: a rerun retries them)
    dropped: Counter = field(default_factory=Counter)  # drafts dropped, by reason
    tokens: int = 0
    seconds: float = 0.0  # wall time of the run
    retries: int = 0  # transport retries (server backends)
    backtracks: int = 0  # banned phrases undone while sampling
    servers: list = field(default_factory=list)  # one line per server, when there are several
    opened_from_index: int = 0  # stories already in the folder whose memory came from index.npz
    opened_from_texts: int = 0  # ... and those whose text was read to rebuild it

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    def lines(self) -> list[str]:
        total = self.already + self.written
        if self.already >= self.target:
            return [f"the corpus already holds {self.already} stories (-n {self.target}): nothing to write; give a larger -n to extend it"]
        out = [f"written {self.written} (corpus now {total}/{self.target}), rejected cards {self.rejected}"]
        if self.failed:
            out.append(f"failed {self.failed} (the backend gave up on them; run the same command again to retry)")
        if self.dropped:
            out.append("drafts dropped: " + ", ".join(f"{k} {v}" for k, v in self.dropped.most_common()))
        out.append(f"{self.tokens} tokens in {self.seconds:.1f} s ({self.tokens_per_second:.1f} tokens/s)")
        if self.retries or self.backtracks:
            out.append(f"retried requests {self.retries}, banned phrases undone {self.backtracks}")
        return out + list(self.servers)


class TooManyRejects(FabulaError):
    pass


class BaseModelInInstructMode(FabulaError):
    pass


COMMIT_GROUP = 64  # stories a fast run commits with one fsync of corpus.jsonl (see store.Store.group)
DEBRIS_STOP = 6  # instruct mode: markup drafts, none kept, before the run stops and says why


def write_corpus(
    store: Store,
    pack: Pack,
    backend: Backend,
    n: int,
    seed: int,
    settings: WriteSettings,
    max_attempts: int,
    avoid: tuple[str, ...] = (),
    near_threshold: float = 0.5,
    on_story: Callable[[Summary], None] | None = None,
    checks: "Iterable[Check | Callable] | Callable | None" = None,
    scorer: Scorer | None = None,
    plan_ahead: bool | None = None,
    check_ahead: bool | None = None,
) -> Summary:
    """Write stories into ``store`` until it holds ``n``; returns the run's
    Summary. ``checks``: added to the pack's (a list of checks or functions
    ``(text, card)``) or a function of that list that returns the list to run
    (fabula.checks.compose); ``scorer``: its terms and weights (the pack's
    genre facts are set here); ``plan_ahead``: plan in a process of its own
    (fabula.plan_ahead; None: when the run writes AHEAD_MIN stories or more;
    the stories are the same either way); ``check_ahead``: run the checks in
    a process of their own (fabula.check_ahead; None: as plan_ahead, where the
    backend's stories come fast (Backend.checks_apart) and the checks are all
    fabula's own)."""
    t0 = time.perf_counter()
    records = store.heads()  # id, index, file, card id: the rest of a record is not needed to go on
    summary = Summary(target=n, already=len(records))
    if len(records) >= n:
        return summary
    lo, hi = pack.word_range(settings.words)
    genre = Genre.of(pack)
    scorer = replace(scorer or Scorer(), genre=genre)
    # Near-duplicates, the scorer's novelty 4-grams and the common 4-grams that
    # sampling keeps out (those in ban_common of the target N, at least 2
    # stories) of every story kept: from DIR/index.npz, the rest from the texts.
    mem = index.open_memory(store.root, records, near_threshold, settings.ban_common, n)
    summary.opened_from_index, summary.opened_from_texts = mem.loaded, mem.read
    to_run = compose(default_checks(pack, lo, hi, avoid, genre), checks)  # a user's check that fails, fails before a process starts
    ahead = n - len(records) >= AHEAD_MIN if plan_ahead is None else plan_ahead
    if check_ahead is None:
        check_ahead = n - len(records) >= AHEAD_MIN and backend.checks_apart and movable(to_run)
    jobs = _Jobs(store, pack, seed, n, settings, records, mem.corpus, mem.common if backend.bans_grams else None, scorer, ahead)
    del records  # ~150 bytes a story
    run = _Run(
        store,
        pack,
        backend,
        settings,
        max_attempts,
        to_run,
        None if "near-duplicate" in pack.checks.skip else mem.near,
        mem,
        jobs,
        summary,
    )
    store.group = COMMIT_GROUP
    try:
        if check_ahead:
            run.checker = CheckAhead(to_run, mem.near.num_perm)
            jobs.resolve = run.resolve
        for job in backend.run(jobs):
            run.finished(job)
            summary.seconds = time.perf_counter() - t0
            if on_story:
                on_story(summary)
    finally:
        run.close()  # also on Ctrl-C and errors: a held story was checked and kept, and is whole
        summary.seconds = time.perf_counter() - t0
    return summary


@dataclass
class _Run:
    """One write's bookkeeping: what becomes of each finished job (kept,
    dropped and drawn again, rejected, failed) and the run's counts."""

    store: Store
    pack: Pack
    backend: Backend
    settings: WriteSettings
    max_attempts: int
    checks: list[Check]
    near: NearDuplicates | None
    mem: index.Memory
    jobs: _Jobs
    summary: Summary
    committed_before: int = -1
    checker: CheckAhead | None = None
    # Stories sent to the checker, in order, not yet decided: (job, draft).
    out: deque = field(default_factory=deque)

    def __post_init__(self) -> None:
        self.committed_before = self.store.committed
        self.give_up = max(10, self.summary.target)  # a run that rejects more cards than this is broken, not unlucky

    def finished(self, job: StoryJob) -> None:
        s = self.summary
        s.tokens += job.tokens
        s.retries += job.retries
        s.backtracks += job.backtracks
        if job.error:
            self.jobs.in_flight -= 1
            self.store.fail({"card": job.card.to_dict(), "attempt": job.attempt, "reason": job.error, **self.backend.describe()})
            s.failed += 1
            self.jobs.failed += 1
        else:
            draft = job.draft(self.backend.id, self.backend.model)
            if self.checker is None:
                self.decide(job, draft, run_checks(draft.text, job.card, self.checks, self.near))
            else:
                # Still in flight until decided; the oldest is decided once
                # more than LAG are out (never sooner: a run's result must
                # not depend on how fast the checker answers).
                self.checker.submit(draft.text, job.card)
                self.out.append((job, draft))
                if len(self.out) > LAG:
                    self.resolve()
        s.committed = self.store.committed - self.committed_before

    def resolve(self) -> bool:
        """Decide the oldest story out at the checker (waiting for its
        verdicts); False when none is out."""
        if not self.out or self.checker is None:
            return False
        job, draft = self.out.popleft()
        verdicts, prints = self.checker.verdicts()
        if prints is not None:
            self.mem.near.prime(draft.text, prints.signature)
        if all(v.keep for v in verdicts) and self.near is not None:
            verdicts.append(self.near.check(draft.text))  # against the corpus as kept so far
        self.decide(job, draft, verdicts, prints)
        self.summary.committed = self.store.committed - self.committed_before
        return True

    def decide(self, job: StoryJob, draft: Draft, verdicts: list[Verdict], prints: Prints | None = None) -> None:
        self.jobs.in_flight -= 1
        if all(v.keep for v in verdicts):
            self.kept(job, draft, verdicts, prints)
        else:
            self.dropped(job, draft, verdicts[-1])

    def kept(self, job: StoryJob, draft: Draft, verdicts: list[Verdict], prints: Prints | None = None) -> None:
        rec = self.store.accept(self.jobs.next_index(), draft.text, self.record(job, draft, verdicts))
        self.mem.add(rec["id"], draft.text, prints)
        if self.mem.unsaved >= index.SAVE_EVERY:
            self.jobs.settle()
            self.store.flush()  # the index holds committed stories only
            index.save(self.store.root, self.mem, self.jobs.planner, self.store.waiting_from())
        self.jobs.accepted += 1
        self.summary.written += 1

    def record(self, job: StoryJob, draft: Draft, verdicts: list[Verdict]) -> dict[str, Any]:
        """A kept story's corpus.jsonl record (records.Record; store.accept puts id, index and file first)."""
        k = self.settings.best_of
        return {
            "card": {"id": job.card.id},  # the card itself is stored once, in the plan (store.iter_records joins them)
            "pack": {"name": self.pack.name, "digest": self.pack.digest},
            **self.backend.describe(),
            "sampling": draft.sampling,
            "seed": draft.seed,
            "attempt": draft.attempt,
            "words": len(words(draft.text)),
            "tokens": draft.tokens,
            "seconds": round(draft.seconds, 3),
            "target_words": self.settings.words,
            **({"best_of": k, "picked": job.picked} if k > 1 else {}),
            "checks": [v.to_dict() for v in verdicts],
        }

    def dropped(self, job: StoryJob, draft: Draft, bad: Verdict) -> None:
        """A draft a check dropped: drawn again, or its card rejected after its last attempt."""
        s, jobs = self.summary, self.jobs
        s.dropped[bad.reason] += 1
        debris = MARKUP.search(draft.text) if self.settings.mode == "instruct" else None
        if debris:
            jobs.debris += 1
            if s.written == 0 and jobs.debris >= DEBRIS_STOP:
                raise BaseModelInInstructMode(
                    f"the first {jobs.debris} drafts from {self.backend.model} came back as chat-template debris or "
                    f"markup (such as {debris.group(0)!r}); the model looks like a base model, not a chat model: "
                    "use --mode steer"
                )
        if job.attempt + 1 < self.max_attempts:
            jobs.retry.append(StoryJob(job.card, job.attempt + 1, self.settings, corpus=jobs.corpus, common=jobs.common, scorer=jobs.scorer))
            return
        reject = {"card": job.card.to_dict(), "attempts": job.attempt + 1, "reason": bad.reason, "detail": bad.detail, "last_draft": draft.text}
        self.store.reject({**reject, **self.backend.describe()})
        s.rejected += 1
        if s.rejected > self.give_up:
            tally = ", ".join(f"{k} {v}" for k, v in s.dropped.most_common())
            long, short, half = s.dropped["too-long"], s.dropped["too-short"], sum(s.dropped.values()) / 2
            hint = "--words or the pack's sampling settings"
            if long > short and long >= half:
                hint = "a larger --words"
            elif short > long and short >= half:
                hint = "a smaller --words"
            raise TooManyRejects(
                f"{s.rejected} cards failed all {self.max_attempts} drafts, so the run stops (drafts dropped: {tally}; "
                f"last: {bad.reason}, {bad.detail}); see {self.store.root}/rejects.jsonl, then try {hint}, or a stronger model"
            )

    def close(self) -> None:
        """Commit what is held, save the index (committed stories only: after the flush)."""
        try:
            try:
                planner = self.jobs.settle()
            except Exception:  # the planner's process failed (its error is on its way up): save the rest
                planner = None
            self.store.close()
            self.store.group = 1
            self.summary.committed = self.store.committed - self.committed_before
            if self.mem.unsaved or self.mem.read:
                index.save(self.store.root, self.mem, planner, self.store.waiting_from())
        finally:
            self.jobs.close()  # the planner's process ends with the run, whatever happened
            if self.checker is not None:
                self.checker.close()  # stories still out (an error ended the run) are not kept: their cards wait
        self.summary.servers = self.backend.usage()


class _Jobs:
    """The job stream a backend pulls from. Yields None when every remaining
    story is already in flight (a batching backend then waits for one to finish)."""

    def __init__(
        self,
        store: Store,
        pack: Pack,
        seed: int,
        n: int,
        settings: WriteSettings,
        records: Heads,
        corpus: NgramSet | None = None,
        common: CommonGrams | None = None,
        scorer: Scorer | None = None,
        ahead: bool = False,
    ):
        self.store, self.settings, self.n, self.corpus, self.common = store, settings, n, corpus, common
        self.scorer = scorer or Scorer(genre=Genre.of(pack))
        # The planner's tallies come from index.npz where they still describe
        # the plan's start; only the cards planned since are parsed and
        # counted (and those still waiting for a story, wherever they stand).
        finished = set(records.cards) | store.rejected_card_ids()
        saved = index.load_planner(store.root)
        planner = Planner.restore(pack, seed, n, saved.state) if saved else Planner(pack, seed, n)
        if saved:
            waiting = store.plan_since(saved.end, finished, planner.count, read_from=saved.waiting_from, counted=saved.state["counted"])
        else:
            waiting = store.plan_since(0, finished, planner.count)
        self.planner: Planner | PlanAhead = PlanAhead(planner) if ahead else planner
        self.pending = deque(waiting)
        self.retry: deque[StoryJob] = deque()
        self.accepted = len(records)
        # One byte per story index: 1 MB at 10^6 stories, not a 60 MB set; marked in one numpy step.
        self.taken = bytearray(max(records.indexes, default=-1) + 1 + 4096)
        np.frombuffer(self.taken, dtype=np.uint8)[np.fromiter(records.indexes, dtype=np.int64, count=len(records))] = 1
        self.free = 0  # no index below this one is free
        # Cards whose story `fabula verify --repair` quarantined: rewritten as a new draft.
        self.restart = quarantined_attempts(store.root)
        self.in_flight = 0
        self.debris = 0  # instruct mode: drafts holding markup or chat-template tokens
        self.failed = 0  # this run's backend failures: not replaced, so a sick server cannot eat the plan
        # Decides the oldest story out at the checks' process (_Run.resolve), if any: called when
        # every remaining story is in flight, before the backend is told to wait.
        self.resolve: Callable[[], bool] | None = None

    def settle(self) -> Planner | PlanAhead:
        """The planner, its state describing the plan file once the store is
        flushed: cards planned ahead are written there and wait as pending."""
        if isinstance(self.planner, PlanAhead):
            for card in self.planner.drain():
                self.store.plan(card)
                self.pending.append(card)
        return self.planner

    def close(self) -> None:
        if isinstance(self.planner, PlanAhead):
            self.planner.close()

    def next_index(self) -> int:
        """The lowest story index not yet taken (a repaired corpus fills its
        gaps). Indexes are only ever taken, so the search goes on from the last
        one found (not from 0: 100,000 lookups a story in a large corpus)."""
        taken = self.taken
        while self.free < len(taken) and taken[self.free]:
            self.free += 1
        self._take(self.free)
        return self.free

    def _take(self, i: int) -> None:
        if i >= len(self.taken):
            self.taken.extend(bytes(i + 1 - len(self.taken) + 4096))
        self.taken[i] = 1

    def __iter__(self) -> Iterator[StoryJob | None]:
        while True:
            if self.retry:
                job = self.retry.popleft()
            elif self.accepted + self.in_flight + self.failed < self.n:
                if self.pending:
                    card = self.pending.popleft()
                else:
                    if isinstance(self.planner, PlanAhead):  # told how many more cards the run is sure to need
                        card = self.planner.next(room=self.n - self.accepted - self.in_flight - self.failed - len(self.retry) - 1)
                    else:
                        card = self.planner.next()
                    self.store.plan(card)
                job = StoryJob(card, self.restart.get(card.id, 0), self.settings, corpus=self.corpus, common=self.common, scorer=self.scorer)
            elif self.in_flight == 0:
                return
            elif self.resolve is not None and self.resolve():
                continue
            else:
                yield None
                continue
            self.in_flight += 1
            yield job
