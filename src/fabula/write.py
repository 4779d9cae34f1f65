"""The writer: a card becomes requests, the completions become a draft.

*beats* mode (small base models): each paragraph opens with the card's beat
sentence and the model continues it until the paragraph ends; the prompt is
the frame, the title and the story so far. *instruct* mode (chat models): the
card becomes one instruction and the model writes the whole story.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from fabula.backends.base import Completion, Request
from fabula.records import Card, Draft

TOKENS_PER_WORD = 1.35  # Gemma 3 tokenizer on English prose, measured on the seeds
SENTENCE_END = re.compile(r"[.!?…][\"'”’)]*(?=\s|$)")


@dataclass(frozen=True)
class WriteSettings:
    words: int = 450
    mode: str = "beats"
    frame: str = ""
    temperature: float = 0.8
    top_p: float = 0.92
    repeat_penalty: float = 1.18
    ban: tuple[str, ...] = ()  # lower-case phrases the backend keeps out

    def sampling(self) -> dict:
        return {"temperature": self.temperature, "top_p": self.top_p, "repeat_penalty": self.repeat_penalty}


def derive_seed(*parts: object) -> int:
    """A 31-bit seed from any parts; stable across processes and platforms."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def finish_paragraph(text: str) -> str:
    """One paragraph of continuation: its first non-empty line, spaces
    squashed, and a trailing half-sentence cut (the token limit, or a line
    ending on a colon)."""
    text = " ".join(text.lstrip().split("\n", 1)[0].split())
    ends = list(SENTENCE_END.finditer(text))
    if ends:
        text = text[: ends[-1].end()]
    elif text and text[-1] not in ".!?":
        text = ""  # not one whole sentence: the beat sentence stands alone
    return text


@dataclass
class StoryJob:
    """Writes one draft of one card; the backend drives it (see backends.base)."""

    card: Card
    attempt: int
    settings: WriteSettings
    paragraphs: list[str] = field(default_factory=list)
    tokens: int = 0
    seconds: float = 0.0
    backtracks: int = 0
    retries: int = 0
    done: bool = False
    error: str = ""  # set when the backend gave up on a request

    @property
    def seed(self) -> int:
        return derive_seed(self.card.seed, self.attempt)

    # -- beats mode -------------------------------------------------------------
    def _budget(self, beat: str) -> tuple[int, int]:
        """(min, max) new tokens for a paragraph continuing ``beat``."""
        per_paragraph = self.settings.words / len(self.card.beats)
        words = max(12.0, per_paragraph - len(beat.split()))
        return int(words * TOKENS_PER_WORD * 0.7), int(words * TOKENS_PER_WORD * 1.5)

    def request(self) -> Request | None:
        if self.done:
            return None
        s = self.settings
        common = dict(seed=derive_seed(self.seed, len(self.paragraphs)), temperature=s.temperature, top_p=s.top_p, repeat_penalty=s.repeat_penalty, ban=s.ban)
        if s.mode == "instruct":
            hi = int(s.words * TOKENS_PER_WORD * 1.4)
            return Request(prompt=instruction(self.card, s.words), max_tokens=hi, min_tokens=0, stop_at_newline=False, chat=True, **common)
        beat = self.card.beats[len(self.paragraphs)]
        lo, hi = self._budget(beat)
        story_so_far = "".join(p + "\n\n" for p in self.paragraphs)
        prompt = f"{s.frame}{self.card.title}\n\n{story_so_far}{beat}"
        return Request(prompt=prompt, max_tokens=hi, min_tokens=lo, stop_at_newline=True, **common)

    def feed(self, c: Completion) -> None:
        self.tokens += c.tokens
        self.seconds += c.seconds
        self.backtracks += c.backtracks
        self.retries += c.retries
        if self.settings.mode == "instruct":
            self.paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", c.text.strip()) if p.strip()]
            self.done = True
            return
        beat = self.card.beats[len(self.paragraphs)]
        cont = finish_paragraph(c.text)
        joiner = "" if not cont or cont[0] in ",.;:!?" else " "
        self.paragraphs.append((beat + joiner + cont).strip())
        self.done = len(self.paragraphs) == len(self.card.beats)

    def fail(self, reason: str) -> None:
        self.error, self.done = reason, True

    def draft(self, backend: str, model: str) -> Draft:
        return Draft(
            card=self.card,
            text="\n\n".join(self.paragraphs) + "\n",
            attempt=self.attempt,
            seed=self.seed,
            tokens=self.tokens,
            seconds=self.seconds,
            backend=backend,
            model=model,
            sampling=self.settings.sampling(),
        )


def instruction(card: Card, words: int) -> str:
    """The whole card as one instruction for a chat model (instruct mode)."""
    h, o = card.hero, card.other
    beats = "\n".join(f"{i}. {b}" for i, b in enumerate(card.beats, 1))
    return (
        f"Write a short story of about {words} words titled \"{card.title}\".\n"
        f"Protagonist: {h.full}, {h.nationality}, formerly of {h.service}." + (f" Now {h.cover}." if h.cover else "") + "\n"
        f"Other character: {o.full}, {o.nationality}.\n"
        f"Setting: {card.slots.get('city', '')}.\n"
        f"Follow these beats in order, one paragraph each, starting each paragraph with its sentence:\n{beats}\n"
        "Write plain prose paragraphs separated by blank lines: no title, no headings, no notes before or after the story."
    )
