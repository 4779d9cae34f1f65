"""The checks in a process of their own, a few stories behind the writer.

fabula's checks (length, adherence, degeneration, cast, stock phrases) cost
~3.5 ms a story on one core, more than a third of everything the writer does
for it. They depend on the text and its card alone, so another process runs
them while the writer builds the next requests, talks to the servers and
commits the stories already decided. The near-duplicate check stays in the
writer: it is against the corpus as kept so far, in order; but the hashes it
and the corpus memory need of a story that passed (checks.Prints: MinHash
signature, 4-gram hashes) are worked out here too.

The writer takes the verdicts in the order it sent the stories, and waits for
one only when more than ``LAG`` are out or when it has nothing else to do, so
what a run writes does not depend on timing: the same seed gives the same
corpus. It is not the corpus checks in the writer's process give, since a
dropped draft is drawn again up to ``LAG`` stories later.
"""

from __future__ import annotations

from typing import Sequence

from fabula.checks import Adherence, Cast, Check, Degeneration, Length, Prints, StockPhrases, Verdict, prints, run_checks
from fabula.child import Child, inbox, send
from fabula.records import Card

LAG = 32  # stories sent to the checks' process and not yet decided, at most
BUILT_IN = (Length, Adherence, Degeneration, Cast, StockPhrases)


def movable(checks: Sequence[Check]) -> bool:
    """Whether the checks can run in another process: fabula's own only (a
    user's check may keep state or print, which must stay in the writer's)."""
    return all(type(c) in BUILT_IN for c in checks)


def _child(read_fd: int, write_fd: int) -> None:
    """The child: read the checks, then check each (text, card) sent, in order;
    with the verdicts of a story that passed, its Prints."""
    messages = inbox(read_fd)
    try:
        checks, num_perm = next(messages)
        while (msg := next(messages, None)) is not None:
            text, card = msg
            try:
                verdicts = run_checks(text, card, checks)
                reply: tuple = ("verdicts", (verdicts, prints(text, num_perm) if all(v.keep for v in verdicts) else None))
            except Exception as e:  # noqa: BLE001 - raised in the writer
                reply = ("error", RuntimeError(f"a check failed in the checks' process: {type(e).__name__}: {e}"))
            send(write_fd, reply)
    except (StopIteration, BrokenPipeError):
        return


class CheckAhead:
    """run_checks(text, card, checks) for each story submitted, answered in
    order, with checks.prints(text, num_perm) of those that pass."""

    def __init__(self, checks: Sequence[Check], num_perm: int = 128):
        self._child = Child("fabula.check_ahead:_child", "the checks' process")
        self._child.send((list(checks), num_perm))
        self.out = 0  # stories submitted, verdicts not yet taken

    def submit(self, text: str, card: Card) -> None:
        self._child.send((text, card))
        self.out += 1

    def verdicts(self) -> tuple[list[Verdict], Prints | None]:
        """The verdicts of the oldest story submitted (waits for them), and its
        Prints if every check kept it."""
        if not self.out:
            raise RuntimeError("no story is out for checks")
        what, value = self._child.receive()
        self.out -= 1
        if what == "error":
            raise value
        return value

    def close(self) -> None:
        self._child.close(None)
