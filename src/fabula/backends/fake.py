"""A scriptable backend for tests: no model, deterministic, instant.

    fake = FakeBackend()
    fake.enqueue("He waited.", "She came.")   # next completions, in order
    fake.history                                # the Requests it was sent (the last HISTORY)

With nothing enqueued it writes plausible filler: sentences of common words
drawn from a generator seeded by the request's seed, ``min_tokens``..``max_tokens``
long (1 token ≈ 0.75 words), most often near the low middle of that range. A chat request
(instruct mode) gets a whole story: one paragraph per line of the request's
plan, each opening with that line, at about the length it asks for.
"""

from __future__ import annotations

import random
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, ClassVar

from fabula.backends.base import Backend, Completion, Request

HISTORY = 10_000  # requests kept in .history: a long run (10^6 stories, 8 requests each) must not keep them all

_WORDS = (
    "the a an old new small long quiet late early cold warm grey green narrow open closed second last first "
    "man woman clerk driver porter window door table street station letter ticket coat key hat bag coffee tea "
    "bread stair corridor garden harbour bridge tram bus lamp clock radio paper envelope glove suitcase "
    "waited walked looked listened said asked turned stood sat kept carried opened closed watched counted "
    "remembered noticed folded paid smiled nodded shrugged read wrote lit crossed followed passed "
    "slowly quietly again almost never still already once twice carefully finally perhaps "
    "with without behind under over across along beside before after into from toward near "
    "and but so then because while although until"
).split()


def filler(rng: random.Random, words: int) -> str:
    """Sentences of 6-14 common words, ``words`` in all (the last sentence cut to fit, at least 3)."""
    out, n = [], 0
    below, size = rng._randbelow, len(_WORDS)  # type: ignore[attr-defined]  # what rng.choice calls: the same words, faster
    while n < words:
        k = min(rng.randint(6, 14), max(3, words - n))
        sent = [_WORDS[below(size)] for _ in range(k)]
        out.append(" ".join(sent).capitalize() + ".")
        n += k
    return " ".join(out)


_PLAN_LINE = re.compile(r"^\d+\. (.+)$", re.M)  # instruct mode's "What happens, paragraph by paragraph"
_LENGTH = re.compile(r"about (\d+) words")


def story(rng: random.Random, prompt: str) -> str:
    """A chat request's answer: each plan line of the prompt opens a paragraph of filler."""
    notes = _PLAN_LINE.findall(prompt) or ["Nothing happened."]
    m = _LENGTH.search(prompt)
    per = (int(m.group(1)) if m else 300) // len(notes)
    out = []
    for note in notes:
        note = note if note.endswith((".", "!", "?")) else note + "."
        out.append(f"{note} {filler(rng, max(6, per - len(note.split())))}")
    return "\n\n".join(out)


@dataclass
class FakeBackend(Backend):
    id: str = "fake"
    model: str = "fake"
    chat: ClassVar[bool] = True  # it answers instruct mode's chat requests too (story())
    checks_apart: ClassVar[bool] = True
    script: deque = field(default_factory=deque)
    history: deque = field(default_factory=lambda: deque(maxlen=HISTORY))
    responder: Callable[[Request], str] | None = None

    def enqueue(self, *texts: str) -> "FakeBackend":
        self.script.extend(texts)
        return self

    def complete(self, request: Request) -> Completion:
        self.history.append(request)
        if self.script:
            text = self.script.popleft()
        elif self.responder is not None:
            text = self.responder(request)
        elif request.chat:
            text = story(random.Random(f"{request.seed}:{request.prompt[-200:]}"), request.prompt)
        else:
            rng = random.Random(f"{request.seed}:{request.prompt[-200:]}")
            lo, hi = max(request.min_tokens, 1), max(request.max_tokens, request.min_tokens, 2)
            # Near the low middle of lo..hi, as a model stopping at its paragraph's end: the writer asks for
            # 0.7-1.5x a paragraph's share, so a uniform draw would make ~1 story in 6 too long.
            tokens = rng.triangular(lo, hi, lo + 0.375 * (hi - lo))
            text = " " + filler(rng, int(tokens * 0.75))
            if request.prompt and request.prompt.rstrip()[-1:] not in ".!?\"'”’:":
                text = " " + text[1].lower() + text[2:]  # continues an opener's sentence, as a model would
        return Completion(text=text, tokens=max(1, round(len(text.split()) / 0.75)), seconds=0.0)
