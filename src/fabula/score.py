"""The scorer: what a reader would hold against a paragraph, term by term.

Each term counts *slips* in one paragraph of one card's story (0 = clean). The
same terms serve three purposes: the writer keeps the best of k candidates
(fewest weighted slips, then most new words), the checks drop a draft that
still holds a hard slip, and ``bench/diversity.py`` counts slips per story.

Terms (one line each in the README):

- ``missing``: the card's people and places that the plan puts in this
  paragraph but the text does not name (names by first or last name; the city
  and venue by their own words).
- ``stranger``: a person's first name that no card character has (checked
  against the first names of every name locale the packs use), a surname no
  card character has (a word of one of the pack's ``[people]
  surname_endings``, less its ``not_people``), a card character's first name
  with another surname, or a card character's name misspelt (one edit away;
  two for long names).
- ``pronoun``: he/him/his or she/her used outside dialogue where no card
  character has that gender.
- ``era``: a year after the card's present (the pack's ``[era] year_slot``),
  or before ``[era] earliest``, or next to one of the pack's dated
  ``[[era.events]]`` it contradicts ("the Wall opened in 2004"); anything
  matching ``[era] never``.
- ``first-person``: I/me/my outside dialogue (the stories are told in the
  third person).
- ``reportage``: present-tense news voice ("she says now", "I asked him").
- ``encyclopedic``: the voice of a biography or a press report instead of a
  story ("(born 1945)", "was published by", "a bestseller", "told reporters",
  "according to", and the pack's ``[press] agencies``).

The genre facts in those terms are pack data, compiled by fabula.genre; with
none declared (``genre.GENERIC``) those parts of the terms count nothing.
- ``aside``: a parenthesis in the narration: the small model's habit of
  explaining itself in brackets ("(which Nani did not own)", "(and it did)":
  three or four a story in a 10-story read), rare in published fiction.
- ``trailing``: an ellipsis or a double hyphen in the narration ("...", "…",
  "--"): the model trailing off mid-thought (a quarter of the stories of a
  100-story run), where published narration ends its sentences.
- ``markup``: special tokens, tags, brackets, asterisks, links, headings.
- ``meta``: text about the text ("this story", "(see story below)", …), and
  the narrator addressing the reader ("as you can see here").
- ``unfinished``: the paragraph stops mid-sentence (an opener the model
  never completed).

``novelty`` is not a slip: the share of the paragraph's word 4-grams that the
corpus written so far does not hold (1.0 = all new).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from fabula.genre import GENERIC, Genre
from fabula.records import Card
from fabula.text import MARKUP, META_GATED, PARAGRAPH_END, REPORTAGE, Gated, gram_hash, grams, ngram_hashes, outside_dialogue, tokens, word_hashes, words  # noqa: F401

# Weights for choosing among candidates: a wrong person or a markup token ruins
# a paragraph; a missing anchor is bad; a stray year is small.
WEIGHTS = {
    "missing": 2.0,
    "stranger": 2.0,
    "pronoun": 1.0,
    "era": 1.0,
    "first-person": 1.5,
    "reportage": 2.0,
    "encyclopedic": 2.0,
    "aside": 1.0,
    "trailing": 1.0,
    "markup": 3.0,
    "meta": 3.0,
    "unfinished": 3.0,
}
TERMS = tuple(WEIGHTS)

META_EXTRA = Gated(re.compile(r"\bthe story\b|this tale|\bthe author\b|\breaders?\b", re.IGNORECASE), ("the story", "this tale", "the author", "reader"))
# The narrator addressing whoever reads ("as you can see here", in a 10-story
# read of 4872449); only in the narration: a character may show another a seal.
META_NARRATION = re.compile(r"\bas (?:you|we) (?:can|could|will|may|might) (?:see|imagine|guess)\b|\bdear reader\b", re.IGNORECASE)
TRAILING = re.compile(r"\.{3}|…|--")
FIRST_PERSON = re.compile(r"\b(?:I|me|my|mine|myself)\b|\bI['’](?:d|m|ve|ll)\b")
HE = re.compile(r"\b(?:he|him|his|himself)\b", re.IGNORECASE)
SHE = re.compile(r"\b(?:she|her|hers|herself)\b", re.IGNORECASE)
YEAR = re.compile(r"\b(1[5-9]\d\d|20\d\d)\b")
# A year written within EVENT_REACH characters after one of the pack's dated
# events (Genre.events; or half that before it) must fall in its span: a small
# model misdates ("the week the Wall opened on March 16, 2004").
EVENT_REACH = 40
CAPITAL = re.compile(r"\b([A-Z][a-zà-ÿ]{2,})\b(?!['’][a-z])")  # not "Don" of "Don't" (40 bedtime drafts dropped for it)
# What precedes a sentence's first word: a full stop (and quotes), or a quote
# that opens speech after a comma (said, "Wait here").
SENTENCE_START = re.compile(r"(?:(?:^|[.!?…:;][\"'”’)]*)\s*[\"“‘(]?|,\s*[\"“‘])\s*$")
# First names that are also everyday English words (or months): not strangers.
NAME_WORDS = frozenset(
    "Will May June April August Rose Grace Mark Bill Art Hope Faith Frank Dawn Page Ray Rich Victor "
    "Major Sunny Joy Iris Violet Ivy Lily Pearl Ruby Amber Olive Summer Autumn Forest River Stone "
    "Gale Chase Miles Wade Lane Dean Guy Earl Duke King Prince Baron Sterling Christian Angel "
    "Constance Prudence Patience Honor Liberty Justice Eve Carol Holly Daisy Heather Fern German Love "
    "Norman Roman Celestine Clement Ernest Florence Lorraine Marine Trinity Paris Sofia Victoria".split()
)


@dataclass
class Score:
    slips: Counter = field(default_factory=Counter)
    novelty: float = 1.0
    weights: Mapping[str, float] = field(default_factory=lambda: WEIGHTS, repr=False, compare=False)  # the Scorer's

    @property
    def penalty(self) -> float:
        return sum(self.weights[k] * v for k, v in self.slips.items())

    def key(self) -> tuple:
        """Sort key: lower is better (fewest weighted slips, then most new words)."""
        return (self.penalty, -self.novelty)


@lru_cache(maxsize=1 << 16)
def _fold(word: str) -> str:
    """The word without accents (NFKD, combining marks dropped)."""
    return unicodedata.normalize("NFKD", word).encode("ascii", "ignore").decode()


@lru_cache(maxsize=1)  # about 40,000 names: built once per process (35 ms), not per paragraph
def known_first_names() -> frozenset[str]:
    """First names of every locale fabula draws from, plus English ones."""
    from fabula.names import SUPPORTED_LOCALES, first_names

    out: set[str] = set()
    for loc in SUPPORTED_LOCALES:
        out.update(n for n in first_names(loc) if len(n) > 2)
    # Also without accents: a model writes "Francois" for "François".
    out |= {_fold(n) for n in out}
    return frozenset(n for n in out if len(n) > 2)


def per_card(table: dict, card: Card, compute):
    """``compute(card)``, once per card: the scorer and the request builder ask
    for a card's words and grams at every candidate paragraph. ``table`` maps
    id(card) to (card, value); the card is kept, so its id is not reused while
    cached."""
    hit = table.get(id(card))
    if hit is not None and hit[0] is card:
        return hit[1]
    value = compute(card)
    if len(table) >= 1024:  # the cards in flight; a driver has at most a few hundred
        table.clear()
    table[id(card)] = (card, value)
    return value


def _card_words(card: Card) -> frozenset[str]:
    parts = [card.title, *(x for ch in card.cast.values() for x in (ch.full, ch.nationality, *ch.traits.values())), *card.slots.values(), *card.beats]
    own = set()
    for w in words("\n".join(parts)):  # one pass: no word spans a line break
        own.add(w)
        if "-" in w:
            own.update(w.split("-"))  # Ernst-August is also Ernst
    # Names whole, as written: words() stops at letters outside Latin-1 and
    # Latin Extended-A (Azerbaijani ə of "Məmmədli").
    own |= {x for ch in card.cast.values() for x in re.split(r"[\s-]+", ch.full) if x}
    return frozenset(own | {_fold(w) for w in own})  # Tomás written Tomas is still Tomás


def card_words(card: Card) -> frozenset[str]:
    """Every word the card itself holds: names, slots, title, beats."""
    return per_card(_CARD_WORDS, card, _card_words)


_CARD_WORDS: dict[int, tuple[Card, frozenset[str]]] = {}


def _own_grams(card: Card) -> frozenset[str]:
    return frozenset(" ".join(g) for p in (*card.slots.values(), *card.openers) for g in grams(p))


_OWN_GRAMS: dict[int, tuple[Card, frozenset[str]]] = {}


def anchors(card: Card, paragraph: int) -> list[tuple[str, tuple[str, ...]]]:
    """(label, alternatives) the plan puts in paragraph ``paragraph``: the text
    holds the anchor if it holds any alternative (a character by first or
    last name; a slot by any of its content words)."""
    keys = card.anchors[paragraph] if paragraph < len(card.anchors) else ()
    out = []
    for k in keys:
        if k in card.cast:
            c = card.cast[k]
            out.append((k, tuple(x for x in (c.first, c.last) if x)))
        elif k in card.slots:
            content = _content_words(card.slots[k])
            if content:
                out.append((k, tuple(content)))
    return out


_STOP = set(
    "a an the of to in on at by for with from and or but that this these those his her their its into over "
    "under about after before one two three no not nothing every some any all him he she it was were had has "
    "have be been who which what when where there here as than then".split()
)


def _content_words(text: str) -> list[str]:
    return [w for w in words(text) if len(w) > 3 and w.lower() not in _STOP]


def score_paragraph(text: str, card: Card, paragraph: int, corpus: "NgramSet | None" = None, genre: Genre = GENERIC) -> Score:
    s = Score()
    low = text.lower()
    for label, alts in anchors(card, paragraph):
        if label in card.cast:
            if not any(a in text for a in alts):
                s.slips["missing"] += 1
        elif not any(a.lower() in low for a in alts):
            s.slips["missing"] += 1
    s.slips.update(slips(text, card, genre))
    if corpus is not None:
        s.novelty = corpus.novelty(text)
    return Score(slips=+s.slips, novelty=s.novelty)


@dataclass(frozen=True)
class Term:
    """A scorer term of your own: ``count(text, card)`` slips in one
    paragraph of the card's story, each weighing ``weight``."""

    name: str
    count: Callable[[str, Card], int]
    weight: float = 1.0


@dataclass(frozen=True, eq=False)
class Scorer:
    """What the writer rates candidate paragraphs with: the built-in terms
    (reading ``genre``, the pack's facts: the pipeline sets it), their
    ``weights`` (overrides of WEIGHTS by name; 0 turns a term off) and extra
    ``terms``."""

    genre: Genre = GENERIC
    terms: tuple[Term, ...] = ()
    weights: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = [t.name for t in self.terms]
        clash = next((n for n in names if n in WEIGHTS or names.count(n) > 1), None)
        if clash:
            raise ValueError(f"scorer term {clash!r} is named twice; give each term its own name (built-in: {', '.join(WEIGHTS)})")
        unknown = next((k for k in self.weights if k not in WEIGHTS and k not in names), None)
        if unknown:
            raise ValueError(f"weight for {unknown!r}: no such term; use one of: {', '.join([*WEIGHTS, *names])}")
        object.__setattr__(self, "_weights", {**WEIGHTS, **{t.name: t.weight for t in self.terms}, **self.weights})

    def paragraph(self, text: str, card: Card, paragraph: int, corpus: "NgramSet | None" = None) -> Score:
        s = score_paragraph(text, card, paragraph, corpus, self.genre)
        for t in self.terms:
            n = int(t.count(text, card))
            if n > 0:
                s.slips[t.name] += n
        s.weights = self._weights  # type: ignore[attr-defined]
        return s


DEFAULT_SCORER = Scorer()


def slips(text: str, card: Card, genre: Genre = GENERIC) -> Counter:
    """The slip terms that need no plan: strangers, pronouns, era, voice,
    markup, meta (``genre``: the pack's facts; see fabula.genre)."""
    out: Counter = Counter()
    narration = outside_dialogue(text)
    out["stranger"] += len(strangers(text, card, genre))
    out["pronoun"] += pronouns(card, narration)
    year, earliest = genre.card_year(card), genre.earliest
    for m in YEAR.finditer(text):
        y = int(m.group(1))
        if (earliest is not None and y < earliest) or (year and y > year) or _misdated(text, m, y, genre.events):
            out["era"] += 1
    for pattern in genre.never:
        out["era"] += len(pattern.findall(text))
    if card.voice == "third":  # a first-person narrator says "I" and "I asked him"
        out["first-person"] += len(FIRST_PERSON.findall(narration))
        out["reportage"] += len(REPORTAGE.findall(text))
    out["encyclopedic"] += len(genre.encyclopedic.findall(text))
    out["aside"] += narration.count("(")
    out["trailing"] += len(TRAILING.findall(narration))
    out["markup"] += len(MARKUP.findall(text))
    out["meta"] += len(META_GATED.findall(text)) + len(META_EXTRA.findall(text)) + len(META_NARRATION.findall(narration))
    out["unfinished"] += 0 if PARAGRAPH_END.search(text) else 1
    return +out


def pronouns(card: Card, narration: str) -> int:
    """he/him/his or she/her in ``narration`` (outside_dialogue) for a gender
    no card character has; the card's own words ("who her father was") are
    not the model's slip."""
    genders = {ch.gender for ch in card.cast.values()}
    if "male" in genders and "female" in genders:
        return 0
    told = narration
    for value in card.slots.values():
        told = told.replace(value, " ")
    n = 0
    if "male" not in genders:
        n += len(HE.findall(told))
    if "female" not in genders:
        n += len(SHE.findall(told))
    return n


CLAUSE_END = re.compile(r"[;:.!?]")


def _misdated(text: str, year: re.Match, y: int, events: tuple[tuple[re.Pattern, int, int], ...]) -> bool:
    """Whether the dated event nearest the year in its clause (``events``:
    Genre.events) has a span the year falls outside."""
    a = max(0, year.start() - EVENT_REACH)
    cuts = [m.end() for m in CLAUSE_END.finditer(text, a, year.start())]
    a = cuts[-1] if cuts else a
    end = CLAUSE_END.search(text, year.end(), year.end() + EVENT_REACH // 2)
    b = end.start() if end else year.end() + EVENT_REACH // 2
    nearest = None  # (distance in characters, first year, last year)
    for pattern, lo, hi in events:
        for m in pattern.finditer(text, a, b):
            d = year.start() - m.end() if m.end() <= year.start() else m.start() - year.end()
            if d >= 0 and (nearest is None or d < nearest[0]):
                nearest = (d, lo, hi)
    return nearest is not None and not nearest[1] <= y <= nearest[2]


def strangers(text: str, card: Card, genre: Genre = GENERIC) -> list[str]:
    """People in the text that the card does not hold: capitalised words
    inside a sentence (a sentence's first word may be any word: "Said", "Tea")
    that are a known first name or have a surname's shape (Genre.surname); and,
    anywhere, a card character's first name with another surname, or a card
    name misspelt (see wrong_surnames, misspelt)."""
    own, names = card_words(card), known_first_names()
    surname, not_people = genre.surname, genre.not_people
    out = []
    for m in CAPITAL.finditer(text):
        w = m.group(1)
        person = (w in names and w not in NAME_WORDS) or (surname is not None and surname.fullmatch(w) and w not in not_people)
        if person and w not in own and not _starts_sentence(text, m.start()):
            out.append(w)
    mis = misspelt(text, card, own)
    return out + [w for w in wrong_surnames(text, card, own) if w not in out and w not in mis] + mis


def _starts_sentence(text: str, at: int) -> bool:
    """Whether the word at ``at`` opens a sentence (SENTENCE_START on what
    precedes it). Only the last 64 characters are searched: the pattern spans
    punctuation, quotes and spaces, never more (on the whole prefix the search
    was quadratic in the paragraph's length)."""
    a = max(0, at - 64)
    return SENTENCE_START.search(text[a:at] if a == 0 else "x" + text[a:at]) is not None  # "x": no ^ mid-text


def wrong_surnames(text: str, card: Card, own: AbstractSet[str]) -> list[str]:
    """A card character's first name followed by a capitalised word that is
    not on the card: a second surname, so a second person ("Validə Kets" for
    Validə Məmmədli, in a 10-story read)."""
    firsts = sorted({ch.first for ch in card.cast.values() if ch.last and ch.first})
    if not firsts:
        return []
    return [w for w in first_then_capital(text, firsts) if w not in own and _fold(w) not in own]


SPACE_CAPITAL = re.compile(r" ([A-Z][^\W\d_]{2,})\b")


def first_then_capital(text: str, firsts: list[str]) -> list[str]:
    r"""What ``re.findall(r"\b(?:F1|F2|...) ([A-Z][^\W\d_]{2,})\b", text)``
    gives for the sorted first names ``firsts``, without compiling a pattern
    per card (a fifth of the cast check): every " Capitalised" word whose
    preceding text ends in a first name at a word boundary is a candidate;
    as the regex scans, the leftmost wins, at one start the first name first
    in ``firsts``, and the next match starts after it ends."""
    found = []
    for m in SPACE_CAPITAL.finditer(text):
        q = m.start()
        for rank, first in enumerate(firsts):
            at = q - len(first)
            if at >= 0 and text.startswith(first, at) and _boundary(text, at):
                found.append((at, rank, m.end(), m.group(1)))
    found.sort()
    out, free = [], 0
    for at, _, end, word in found:
        if at >= free:
            out.append(word)
            free = end
    return out


def _boundary(text: str, at: int) -> bool:
    r"""Whether ``\b`` matches before text[at] (re's word characters: alphanumeric or _)."""
    before = at > 0 and (text[at - 1].isalnum() or text[at - 1] == "_")
    after = at < len(text) and (text[at].isalnum() or text[at] == "_")
    return before != after


NAME_LIKE = re.compile(r"\b([^\W\d_][^\W\d_'’-]{4,})\b")


def misspelt(text: str, card: Card, own: AbstractSet[str] | None = None) -> list[str]:
    """Capitalised words one edit from a card character's first or last name
    (two edits for names of 9 letters or more), not the name itself with or
    without accents: in the 40-story read, "Shavaika" for Shvaika, "Yustim"
    for Yustym, a long Georgian surname with one letter dropped. A reader
    sees a second person, or a typo."""
    names = {n for ch in card.cast.values() for n in (ch.first, ch.last) if len(n) >= 5}
    if not names:
        return []
    known = card_words(card) if own is None else own
    # Per name, once: lower-cased, its first letter without accents, length, edits allowed, folded.
    targets = [(n.lower(), _fold(n[0]).lower(), len(n), 2 if len(n) >= 9 else 1, _fold(n).lower()) for n in names]
    out = []
    for w in NAME_LIKE.findall(text):
        if not w[0].isupper() or w in known:
            continue
        folded = _fold(w)
        if folded in known:
            continue
        first, size, lower, folded = _fold(w[0]).lower(), len(w), w.lower(), folded.lower()
        for name, name_first, name_size, limit, name_folded in targets:
            if first == name_first and abs(size - name_size) <= limit and folded != name_folded and _edits(lower, name, limit) <= limit:
                out.append(w)
                break
    return out


def _edits(a: str, b: str, limit: int) -> int:
    """Levenshtein distance of a and b, or limit + 1 once it must exceed limit."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        if min(cur) > limit:
            return limit + 1
        prev = cur
    return prev[-1]


def story_slips(paragraphs: list[str], card: Card, genre: Genre = GENERIC) -> Counter:
    total: Counter = Counter()
    for i, p in enumerate(paragraphs):
        total.update(score_paragraph(p, card, i, genre=genre).slips)
    return total


def coverage(paragraphs: list[str], card: Card) -> tuple[int, int]:
    """(anchors held, anchors planned) for a story: each in its own paragraph."""
    held = planned = 0
    for i, p in enumerate(paragraphs):
        for label, alts in anchors(card, i):
            planned += 1
            if label in card.cast:
                held += any(a in p for a in alts)
            else:
                held += any(a.lower() in p.lower() for a in alts)
    return held, planned


def gram_hashes(text: str, toks: list[str] | None = None) -> np.ndarray:
    """64-bit hash of each word 4-gram of ``text`` (fabula.text; ``toks``: its
    tokens, when the caller has them), in order: the same in every process."""
    return ngram_hashes(word_hashes(tokens(text) if toks is None else toks), 4)


class NgramSet:
    """The word 4-grams of the corpus written so far, as a fixed bit set.

    2^27 bits (16 MiB) whatever the corpus size: at 10,000 stories (about
    4.5 million 4-grams) about 3 % of new 4-grams read as seen. Hashes are
    fabula.text's, the same in every process (the choice among candidates
    must be reproducible for a seed).
    """

    BITS = 1 << 27

    def __init__(self) -> None:
        self.bits = np.zeros(self.BITS // 8, dtype=np.uint8)

    def _index(self, text: str) -> np.ndarray:
        return gram_hashes(text) & np.uint64(self.BITS - 1)

    def add(self, text: str, hashes: np.ndarray | None = None) -> None:
        """Add a text's 4-grams (``hashes``: their gram_hashes, when the caller has them)."""
        i = self._index(text) if hashes is None else hashes & np.uint64(self.BITS - 1)
        np.bitwise_or.at(self.bits, (i >> np.uint64(3)).astype(np.int64), (1 << (i & np.uint64(7))).astype(np.uint8))

    def novelty(self, text: str) -> float:
        """Share of the text's 4-grams not in the set (0.0 for a text too short to have one)."""
        i = self._index(text)
        if not len(i):
            return 0.0
        seen = (self.bits[(i >> np.uint64(3)).astype(np.int64)] >> (i & np.uint64(7)).astype(np.uint8)) & 1
        return float(1.0 - seen.mean())


class CommonGrams:
    """Word 4-grams that already stand in ``limit`` or more of the stories kept
    so far: the embedded backend keeps them out of what it samples next (it
    rewinds to the gram's last word and bans the token there), so the model's
    own words do not settle into the corpus's stock phrases.

    Story counts live in 2^24 one-byte buckets (16 MiB, saturating at 255)
    keyed by the gram's hash (fabula.text), so memory does not grow with the corpus; a bucket shared
    by two grams can only make one of them banned early. The banned grams
    themselves are kept as text.
    """

    BITS = 1 << 24

    def __init__(self, limit: int) -> None:
        self.limit = max(2, int(limit))
        self.counts = np.zeros(self.BITS, dtype=np.uint8)
        self.common: set[str] = set()  # only ever grows (banned_for relies on it)
        self._in_common: set[int] = set()  # the hashes of the grams in common (see keep())
        self._banned: dict[int, tuple] = {}  # id(card) -> (card, len(common), banned_for(card))

    def _bucket(self, gram: str) -> int:
        return gram_hash(gram) & (self.BITS - 1)

    def count(self, gram: str) -> int:
        """Stories that hold ``gram`` (an upper bound: buckets are shared; at most 255)."""
        return int(self.counts[self._bucket(gram)])

    def add(self, text: str, toks: list[str] | None = None, hashes: np.ndarray | None = None) -> None:
        """Count a story's distinct 4-grams once each (``hashes``: its
        gram_hashes, and ``toks`` its tokens, when the caller has them)."""
        if hashes is None:
            toks = tokens(text)
            hashes = gram_hashes(text, toks)
        uniq, first = np.unique(hashes, return_index=True)  # once per story (by 64-bit hash)
        if not len(uniq):
            return
        at = (uniq & np.uint64(self.BITS - 1)).astype(np.int64)
        buckets, times = np.unique(at, return_counts=True)  # two grams may share a bucket
        self.counts[buckets] = np.minimum(self.counts[buckets].astype(np.int64) + times, 255).astype(np.uint8)
        hit = np.flatnonzero(self.counts[at] >= self.limit)
        if len(hit):
            # Only grams not in common yet are spelt out: most of a story's
            # common grams were there before it, and spelling them needs its tokens.
            known = self._in_common
            new = [(i, h) for i, h in zip(first[hit].tolist(), uniq[hit].tolist()) if h not in known]
            if new:
                toks = tokens(text) if toks is None else toks
                self.common.update(" ".join(toks[i : i + 4]) for i, _ in new)
                known.update(h for _, h in new)

    def keep(self, grams: Iterable[str]) -> None:
        """Set the common grams to those of ``grams`` (a saved index's) still
        in ``limit`` stories or more: each gram hashed once."""
        self.common, self._in_common = set(), set()
        for g in grams:
            h = gram_hash(g)
            if self.counts[h & (self.BITS - 1)] >= self.limit:
                self.common.add(g)
                self._in_common.add(h)

    def banned_for(self, card: Card) -> frozenset[str]:
        """The common grams, less those the card's own phrases hold (a story
        may always name its own venue, summons or ending again)."""
        # The common set only grows, so its size tells whether an answer is stale.
        hit = self._banned.get(id(card))
        if hit is not None and hit[0] is card and hit[1] == len(self.common):
            return hit[2]
        out = frozenset(self.common - per_card(_OWN_GRAMS, card, _own_grams))
        if len(self._banned) >= 256:  # each a copy of the common set: only the cards in flight
            self._banned.clear()
        self._banned[id(card)] = (card, len(self.common), out)
        return out
