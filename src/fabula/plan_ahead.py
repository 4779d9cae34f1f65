"""The planner in a process of its own, a few cards ahead of the writer.

Planning a card costs ~2-3 ms of Python (grammar draws, the wording rule),
as much as everything else the driver does for a story; in the writer's
process it is time the HTTP client's event loop and the checks wait for. Card
k depends only on the pack, the seed, the target and cards 0..k-1 (see
fabula.plan), never on what was written, so another process can plan them
while the writer writes: the cards, their order and the plan file are the same.

The writer asks for cards it is sure to use (never more than the run still
needs: a card asked for is a card written to the plan), ``CHUNK`` at most
ahead. Before its state is saved (fabula.index), ``drain()`` hands over every
card planned so far, so that the state describes the plan file exactly.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from fabula.child import Child, receive, send
from fabula.plan import Planner
from fabula.records import Card

AHEAD_MIN = 256  # stories to write before a run plans in a process of its own (starting one takes ~0.5 s)
CHUNK = 128  # cards the writer keeps asked for or ready; the child is asked again when half are taken


def _child(read_fd: int, write_fd: int) -> None:
    """The child: read a planner, then plan what is asked and send the state
    when asked, until "stop" or a closed pipe."""
    try:
        planner: Planner = receive(read_fd)
        while True:
            what, k = receive(read_fd)
            try:
                if what == "next":
                    reply: tuple = ("cards", [planner.next() for _ in range(k)])
                elif what == "state":
                    reply = ("state", (planner.state(), planner.arrays()))
                else:
                    return
            except Exception as e:  # noqa: BLE001 - the writer raises it (a pack whose names run out, say)
                reply = ("error", e)
            send(write_fd, reply)
    except (EOFError, BrokenPipeError):
        return


class PlanAhead:
    """A Planner's next(), state() and arrays(), from a child process."""

    def __init__(self, planner: Planner):
        self._child = Child("fabula.plan_ahead:_child", "the planner's process")
        self._proc = self._child.proc
        self._ready: deque[Card] = deque()
        self._asked = 0  # cards asked for, not yet received
        self._saved: tuple[dict, dict[str, np.ndarray]] | None = None
        self._failed: BaseException | None = None
        self._tell(planner)

    def _tell(self, obj: Any) -> None:
        self._child.send(obj)

    def _receive(self) -> Any:
        if self._failed is not None:
            raise RuntimeError(f"the planner's process failed earlier: {self._failed}")
        try:
            what, value = self._child.receive()
        except RuntimeError as e:  # the process ended
            what, value = "error", e
        if what == "error":
            self._failed, self._asked = value, 0
            self._ready.clear()
            raise value
        return value

    def _take(self, block: bool) -> None:
        """Receive the cards sent so far (``block``: at least one reply)."""
        while self._asked and (block or self._waiting()):
            cards = self._receive()
            self._asked -= len(cards)
            self._ready.extend(cards)
            block = False

    def _waiting(self) -> bool:
        return self._child.waiting()

    def _ask(self, k: int) -> None:
        if k > 0:
            self._tell(("next", k))
            self._asked += k

    def next(self, room: int = 0) -> Card:
        """The next card; ``room``: how many more this run is sure to need
        after it (at most that many are planned ahead)."""
        self._saved = None
        if not self._ready and not self._asked:
            self._ask(1)
        self._take(block=not self._ready)
        card = self._ready.popleft()
        want, ahead = min(CHUNK, room), len(self._ready) + self._asked
        if ahead <= want // 2:
            self._ask(want - ahead)
        return card

    def drain(self) -> list[Card]:
        """Every card planned and not yet taken by next(), in order (they are
        the run's next cards: the caller keeps them as planned)."""
        if self._failed is not None:
            raise RuntimeError(f"the planner's process failed earlier: {self._failed}")
        while self._asked:
            self._take(block=True)
        out = list(self._ready)
        self._ready.clear()
        return out

    def _state(self) -> tuple[dict, dict[str, np.ndarray]]:
        if self._asked or self._ready:
            raise RuntimeError("the planner's state asked for with cards not yet handed over (call drain() first)")
        if self._saved is None:
            self._tell(("state", 0))
            self._saved = self._receive()
        return self._saved

    def state(self) -> dict:
        return self._state()[0]

    def arrays(self) -> dict[str, np.ndarray]:
        return self._state()[1]

    def close(self) -> None:
        self._child.close(("stop", 0))
