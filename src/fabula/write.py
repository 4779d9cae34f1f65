"""The writer: a card becomes requests, the completions become a draft.

*steer* mode (small base models, the default): each paragraph opens with a
few words that carry the card's people, places and objects (the beat's
opener, drawn from the pack's grammar) and the model writes the rest of the
paragraph. *beats* mode pastes the pack's whole beat sentence instead. In both
the prompt is the frame, optionally one of the pack's exemplar stories
(rotated by card id: a base model writes like the text before it), the title
and the story so far.
*instruct* mode (chat models): the card becomes one request for the whole
story, described as what happens in each paragraph (the beats' notes), never
as sentences to copy.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from fabula.backends.base import Completion, Request
from fabula.records import Card, Draft
from fabula.score import DEFAULT_SCORER, CommonGrams, NgramSet, Scorer

TOKENS_PER_WORD = 1.35  # Gemma 3 tokenizer on English prose, measured on the seeds
# A full stop after a title or an initial ("in search of Mr.", "J. Edgar") does
# not end a sentence: a paragraph cut there ended on "Mr." in a 4-story read.
# The lookbehinds stand after the dot, so the engine tries them only at a dot
# (before it, all 17 ran at every character of every candidate paragraph).
_NOT_AFTER = "".join(
    rf"(?<!\b{a}\.)" for a in ("Mr", "Mrs", "Ms", "Dr", "St", "Mt", "Col", "Gen", "Lt", "Capt", "Prof", "Sgt", "Jr", "Sr", "Rev", "Gov", "Sen", "[A-Z]")
)
SENTENCE_END = re.compile(rf"(?:[!?…]|\.{_NOT_AFTER})[\"'”’)]*(?=\s|$)")


@dataclass(frozen=True)
class WriteSettings:
    words: int = 450
    mode: str = "beats"
    frame: str = ""
    temperature: float = 0.8
    top_p: float = 0.92
    repeat_penalty: float = 1.18
    ban: tuple[str, ...] = ()  # lower-case phrases the backend keeps out
    best_of: int = 1  # candidates sampled per request; the scorer keeps one (see fabula.score)
    ban_common: float = 0.0  # keep out 4-grams already in this share of the target corpus (0: off; see score.CommonGrams)
    exemplars: tuple[str, ...] = ()  # beats mode: Exemplar.block() texts, one before each story, rotated by card id
    card_prompt: bool = False  # a tuned model (an adapter): card_text(card) before the title, in place of frame and exemplar

    def sampling(self) -> dict:
        return {"temperature": self.temperature, "top_p": self.top_p, "repeat_penalty": self.repeat_penalty}


def context_tokens(words: int, prefix_words: int = 0) -> int:
    """Tokens one sequence needs to write a story of ``words`` whose prompts
    are led by up to ``prefix_words`` (an exemplar): the frame, the exemplar,
    the title, the whole story and one paragraph of slack, rounded up to 256
    (at least 512). The one place a word budget becomes a context size."""
    need = int((words * 1.5 + prefix_words) * TOKENS_PER_WORD) + 192
    return max(512, -(-need // 256) * 256)


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


GLUED = re.compile(r"^[^\W_]+")  # letters or digits at the very start: the last word of the prompt, continued


def unglue(opening: str, text: str) -> str:
    """A continuation that goes on with the opening's last word ("Zvezdin
    Brankov" + "ski", "Prokhir Zhaivoron" + "in") loses that fragment: an
    opener ends on the card's words, and a name must stay as the card has it."""
    if opening and (opening[-1].isalnum()):
        return GLUED.sub("", text, count=1)
    return text


EXEMPLAR_END = "* * *\n\n"  # between the exemplar and the story, as between stories in a collection


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
    corpus: NgramSet | None = None  # 4-grams of the stories kept so far (novelty term of the scorer)
    common: CommonGrams | None = None  # 4-grams common in the stories kept so far (kept out while sampling)
    picked: list[int] = field(default_factory=list)  # which candidate each request kept
    scorer: Scorer = DEFAULT_SCORER  # rates candidates (the pipeline's has the pack's genre facts)

    @property
    def seed(self) -> int:
        return derive_seed(self.card.seed, self.attempt)

    # -- steer and beats modes ---------------------------------------------------
    def _budget(self, beat: str) -> tuple[int, int]:
        """(min, max) new tokens for a paragraph continuing ``beat``."""
        per_paragraph = self.settings.words / len(self.card.beats)
        words = max(12.0, per_paragraph - len(beat.split()))
        return int(words * TOKENS_PER_WORD * 0.7), int(words * TOKENS_PER_WORD * 1.5)

    def request(self) -> Request | None:
        if self.done:
            return None
        s = self.settings
        common: dict[str, Any] = dict(
            seed=derive_seed(self.seed, len(self.paragraphs)),
            temperature=s.temperature,
            top_p=s.top_p,
            repeat_penalty=s.repeat_penalty,
            ban=s.ban,
            n=s.best_of,
            ban_grams=self.common.banned_for(self.card) if self.common is not None else frozenset(),
        )
        if s.mode == "instruct":
            hi = int(s.words * TOKENS_PER_WORD * 1.4)
            return Request(prompt=instruction(self.card, s.words), max_tokens=hi, min_tokens=0, stop_at_newline=False, chat=True, **common)
        beat = self.opening()
        lo, hi = self._budget(beat)
        story_so_far = "".join(p + "\n\n" for p in self.paragraphs)
        prompt = f"{self.prefix()}{self.card.title}\n\n{story_so_far}{beat}"
        return Request(prompt=prompt, max_tokens=hi, min_tokens=lo, stop_at_newline=True, **common)

    def opening(self) -> str:
        """The words the next paragraph opens with: the opener (steer mode) or
        the whole beat sentence (beats mode)."""
        i = len(self.paragraphs)
        if self.settings.mode == "steer" and len(self.card.openers) > i:
            return self.card.openers[i]
        return self.card.beats[i]

    def prefix(self) -> str:
        """What stands before the title: the frame and this card's exemplar."""
        s = self.settings
        if s.card_prompt:
            return card_text(self.card)
        if not s.exemplars:
            return s.frame
        return s.frame + s.exemplars[self.card.id % len(s.exemplars)] + EXEMPLAR_END

    def feed(self, c: Completion) -> None:
        self.tokens += c.tokens
        self.seconds += c.seconds
        self.backtracks += c.backtracks
        self.retries += c.retries
        texts = c.candidates or [c.text]
        if self.settings.mode == "instruct":
            stories = [[" ".join(p.split()) for p in re.split(r"\n\s*\n", t.strip()) if p.strip()] for t in texts]
            j = self._best([(ps, None) for ps in stories])
            self.paragraphs, self.done = stories[j], True
            return
        beat = self.opening()
        paragraphs = []
        for t in texts:
            cont = finish_paragraph(unglue(beat, t))
            joiner = "" if not cont or cont[0] in ",.;:!?" or cont.startswith(("'s ", "’s ")) else " "  # "Brankov's"
            paragraphs.append((beat + joiner + cont).strip())
        j = self._best([([p], len(self.paragraphs)) for p in paragraphs])
        self.paragraphs.append(paragraphs[j])
        self.done = len(self.paragraphs) == len(self.card.beats)

    def _best(self, options: list[tuple[list[str], int | None]]) -> int:
        """Index of the candidate the scorer rates best (fewest weighted slips,
        then most new 4-grams against the corpus; ties: the first). Each option
        is (paragraphs, index of the first) or (whole story, None)."""
        if len(options) == 1:
            self.picked.append(0)
            return 0

        def key(j: int) -> tuple:
            paras, at = options[j]
            scores = [self.scorer.paragraph(p, self.card, (at or 0) + i, self.corpus) for i, p in enumerate(paras)]
            penalty = sum(sc.penalty for sc in scores) + self._overrun(paras, at)
            return (penalty, -sum(sc.novelty for sc in scores) / max(1, len(scores)), j)

        j = min(range(len(options)), key=key)
        self.picked.append(j)
        return j

    def _overrun(self, paras: list[str], at: int | None) -> float:
        """1 per 10 % that the story, with this candidate, runs ahead of its
        length (past 10 %): without it the longest candidates win and whole
        drafts fail the length check."""
        n = len(self.card.beats)
        done = len(paras) if at is None else at + 1
        total = sum(len(p.split()) for p in (paras if at is None else [*self.paragraphs, *paras]))
        pace = self.settings.words * done / n
        return max(0.0, (total / pace - 1.1) * 10) if pace else 0.0

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
    """The card as one request for a chat model (instruct mode): who, where,
    what happens in each paragraph, how long; never sentences to copy."""
    notes = card.notes or card.beats  # plans made before notes existed
    plan = "\n".join(f"{i}. {n}" for i, n in enumerate(notes, 1))
    people = "".join(f"{_label(role, i)}: {person(ch)}.\n" for i, (role, ch) in enumerate(card.cast.items()))
    setting = ", ".join(v for k, v in card.slots.items() if k in ("city", "place", "year"))
    voice = "first person (the protagonist tells it), past tense" if card.voice == "first" else "third person, past tense"
    return (
        f'Write a short story of about {words} words titled "{card.title}", in {len(notes)} paragraphs.\n'
        + people
        + (f"Setting: {setting}.\n" if setting else "")
        + (f"Use these words: {', '.join(card.slots[k] for k in card.required)}.\n" if card.required else "")
        + f"What happens, paragraph by paragraph:\n{plan}\n"
        f"Tell it in your own words: {voice}, concrete and specific, with the plan's people, places "
        "and objects. Plain prose paragraphs separated by blank lines: no title, no headings, no notes before or after the story."
    )


CARD_FORMAT = "card-v1"  # the layout of card_text; an adapter records the one it was trained on


def card_text(card: Card) -> str:
    """The card as a tuned base model reads it before the title (the prompt
    layout ``card-v1``): the people, the setting and what happens in each
    paragraph, one line each. ``fabula tune`` trains on card_text + title +
    story, and a model run with that adapter gets the same text before every
    prompt, so each paragraph's prompt continues text the adapter has seen."""
    notes = card.notes or card.beats
    people = "; ".join(person(ch) for ch in card.cast.values())
    setting = ", ".join(v for k, v in card.slots.items() if k in ("city", "place", "year"))
    voice = "Told in the first person.\n" if card.voice == "first" else ""
    plan = "".join(f"{i}. {n}\n" for i, n in enumerate(notes, 1))
    return f"People: {people}.\n" + (f"Setting: {setting}.\n" if setting else "") + voice + f"Plan:\n{plan}\n"


def _label(role: str, i: int) -> str:
    return "Protagonist" if i == 0 else f"Character ({role})"


def person(ch) -> str:
    """'Ilona Kovács (female), Hungarian, service: the AVH' - a character in one line."""
    return f"{ch.full} ({ch.gender})" + (f", {ch.nationality}" if ch.nationality else "") + "".join(f", {k}: {v}" for k, v in ch.traits.items())
