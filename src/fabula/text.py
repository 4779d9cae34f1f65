"""Words, n-grams, their hashes and the patterns of what a story never holds:
the one text layer the checks, the scorer, the planner, the engine and the
corpus memory share (it imports no other fabula module).

A story is split into words once (``WORD``: letters of Latin scripts,
apostrophes and hyphens), lower-cased, and each distinct word is hashed once
(blake2b, 64 bits, cached): so every process gives the same hashes (a
seed's choices must be reproducible) and an n-gram's hash is a few numpy
operations on its words' hashes, not a cryptographic hash of a joined string
per gram (500 of them a story, once for the novelty set, once for the gram
counts, once for MinHash).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

WORD = re.compile(r"[A-Za-zÀ-ÖØ-öø-ÿĀ-žȘ-ț'’-]+")


def words(text: str) -> list[str]:
    return WORD.findall(text)


def tokens(text: str) -> list[str]:
    """The words of ``text``, lower-cased (what every n-gram is made of)."""
    if text.isascii():  # lower-casing ASCII keeps every letter a letter: the same words, a third faster
        return WORD.findall(text.lower())
    return [w.lower() for w in WORD.findall(text)]  # not so elsewhere: "İ" lower-cases to two characters


_WORD_HASH: dict[str, int] = {}
_WORD_HASH_MAX = 1 << 21  # distinct words kept (~200 MB at most); past that the cache starts again


def _word_hash(w: str) -> int:
    h = int.from_bytes(hashlib.blake2b(w.encode(), digest_size=8).digest(), "little")
    if len(_WORD_HASH) >= _WORD_HASH_MAX:
        _WORD_HASH.clear()
    _WORD_HASH[w] = h
    return h


def word_hashes(toks: list[str]) -> np.ndarray:
    """64-bit hash of each token (uint64), the same in every process."""
    get = _WORD_HASH.get
    return np.fromiter((get(w) or _word_hash(w) for w in toks), dtype=np.uint64, count=len(toks))


# One odd 64-bit multiplier per position in a gram (n <= 8), fixed forever:
# changing them changes every saved index and every near-duplicate answer.
_POSITION = np.array(
    [
        0x9E3779B97F4A7C15,
        0xC2B2AE3D27D4EB4F,
        0x165667B19E3779F9,
        0xD6E8FEB86659FD93,
        0xFF51AFD7ED558CCD,
        0xC4CEB9FE1A85EC53,
        0x94D049BB133111EB,
        0xBF58476D1CE4E5B9,
    ],
    dtype=np.uint64,
)


def _mix(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser: every output bit depends on every input bit
    (a sum of products alone leaves the low bits depending on low bits only)."""
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


def ngram_hashes(hashes: np.ndarray, n: int) -> np.ndarray:
    """64-bit hash of every run of ``n`` consecutive words, in order, from the
    words' ``word_hashes``; empty when there are fewer than n words."""
    count = len(hashes) - n + 1
    if count <= 0:
        return np.empty(0, dtype=np.uint64)
    with np.errstate(over="ignore"):
        h = hashes[:count] * _POSITION[0]
        for k in range(1, n):
            h = h + hashes[k : k + count] * _POSITION[k]
        return _mix(h)


def gram_hash(gram: str) -> int:
    """The hash ``ngram_hashes`` gives the gram "w1 w2 ... wn" (lower-case words, one space apart)."""
    toks = gram.split(" ")
    return int(ngram_hashes(word_hashes(toks), len(toks))[0])


@dataclass(frozen=True)
class Gated:
    """A pattern of many alternatives and ``needles``: strings every match
    contains (case-folded when the pattern ignores case). A text that holds
    none cannot match, so the regex (Python tries every alternative at every
    character: 250 us a paragraph for META) runs only on the few that do.
    With ``parts`` (each alternative and the needles one of which its every
    match holds), only the alternatives whose needles the text holds are
    searched, in their order: those left out match nowhere, so every match
    is the same. tests/test_text.py holds an example of every alternative."""

    pattern: re.Pattern
    needles: tuple[str, ...]
    parts: tuple[tuple[str, tuple[str, ...]], ...] = ()
    _subsets: dict = field(default_factory=dict, compare=False, repr=False)  # alternatives kept -> their pattern

    @classmethod
    def of(cls, parts: tuple[tuple[str, tuple[str, ...]], ...], flags: int = 0) -> "Gated":
        needles = tuple(dict.fromkeys(n for _, ns in parts for n in ns))
        return cls(re.compile("|".join(alt for alt, _ in parts), flags), needles, parts)

    def _pattern(self, text: str) -> re.Pattern | None:
        hay = text.casefold() if self.pattern.flags & re.IGNORECASE else text
        if not self.parts:  # one pattern: the first needle found decides
            return self.pattern if any(n in hay for n in self.needles) else None
        present = {n for n in self.needles if n in hay}
        if not present:
            return None
        keep = tuple(i for i, (_, ns) in enumerate(self.parts) if not present.isdisjoint(ns))
        hit = self._subsets.get(keep)
        if hit is None:
            if len(self._subsets) >= 256:
                self._subsets.clear()
            hit = self._subsets[keep] = re.compile("|".join(self.parts[i][0] for i in keep), self.pattern.flags)
        return hit

    def findall(self, text: str) -> list[str]:
        """Every match, whole (``group(0)``: the pattern's groups differ with the alternatives kept)."""
        p = self._pattern(text)
        return [m.group(0) for m in p.finditer(text)] if p is not None else []

    def search(self, text: str) -> re.Match | None:
        p = self._pattern(text)
        return p.search(text) if p is not None else None


# Text about the text rather than the story: blurbs, headings, publishing
# notes, links, markdown. Matched case-insensitively, anywhere; each
# alternative with the needles (case-folded) one of which its matches hold.
META_GATED = Gated.of(
    (
        (r"this (short )?story", ("story",)),
        (r"originally published", ("originally published",)),
        (r"first published", ("first published",)),
        (r"all rights reserved", ("all rights reserved",)),
        (r"copyright", ("copyright",)),
        (r"\bchapter\s+(\d+|[ivx]+|one|two|three)\b", ("chapter",)),
        (r"^\s*the end\W*$", ("the end",)),
        (r"read more", ("read more",)),
        (r"click here", ("click here",)),
        (r"subscribe", ("subscribe",)),
        (r"https?://", ("http",)),
        (r"www\.", ("www.",)),
        (r"\b[a-z0-9-]+\.(?:com|org|net)\b", (".com", ".org", ".net")),
        (r"\bauthor'?s? note", ("author",)),
        (r"\bnote:", ("note:",)),
        (r"\btitle:", ("title:",)),
        (r"\bprompt:", ("prompt:",)),
        (r"\bsummary:", ("summary:",)),
        (r"\*\*", ("**",)),
        (r"^#", ("#",)),
        (r"\[\d+\]", ("[",)),
        (r"©", ("©",)),
        (r"continue reading", ("continue reading",)),
        (r"to be continued", ("to be continued",)),
        (r"about the author", ("author",)),
        (r"\bbook \d", ("book ",)),
        (r"\bpart \d\b", ("part ",)),
        (r"\bkindle\b", ("kindle",)),
        (r"\bpaperback\b", ("paperback",)),
        (r"</?[a-z][a-z0-9]*\b[^>]*>", ("<",)),
        (r"\(see\b", ("(see",)),
        (r"\bstory (?:below|above)\b", ("story",)),
        # A small chat model describing its answer: "The story is told in 3 paragraphs: 1. ..."
        (r"\bthe story (?:is told|begins with|unfolds in)\b", ("story",)),
        (r"\b(?:in|into) (?:\d+|two|three|four|five|six|seven|eight) paragraphs\b", ("paragraphs",)),
        (r"\bin (?:my|your) own words\b", (" own words",)),
        (r"\bthe end:", ("the end:",)),
    ),
    re.IGNORECASE | re.MULTILINE,
)
META = META_GATED.pattern
# Special tokens and markup a story never holds: <start_of_image>, <unused12>,
# [multimodal], [Note: …], {{ … }}, table pipes.
MARKUP = re.compile(r"<[^<>\s]{1,40}>|\[[^\[\]\n]{0,80}\]|\{\{|\}\}|\|")


# News-report voice instead of fiction: present-tense attribution ("she says
# now"), an interviewer ("I met him", "I asked"), questions about the story.
REPORTAGE = Gated.of(
    (
        (r"\b(?:he|she|they|[A-Z][a-z]+) says\b", ("says",)),
        (r"\bsays now\b", ("says",)),
        (r"\bsays (?:he|she|[A-Z][a-z]+)\b", ("says",)),
        (r"\bI (?:met|asked|interviewed|spoke to) (?:him|her|them)\b", ("I met", "I asked", "I interviewed", "I spoke to")),
        (r"\b[Ww]hat (?:exactly )?is the story\b", ("is the story",)),
        (r"\btold (?:me|us) (?:about|that)\b", ("told me", "told us")),
    )
)


# A paragraph ends as a sentence does (an opener the model never finished does not).
PARAGRAPH_END = re.compile(r"[.!?…][\"'”’)]*\s*$")


def phrase_pattern(phrases: list[str] | tuple[str, ...]) -> re.Pattern | None:
    """One regex matching any phrase as whole words, case-insensitively,
    with any run of spaces or hyphens between its words."""
    if not phrases:
        return None
    parts = []
    for p in sorted({p.strip().lower() for p in phrases if p.strip()}, key=len, reverse=True):
        toks = re.split(r"[\s-]+", p)
        parts.append(r"[\s-]+".join(re.escape(t) for t in toks))
    return re.compile(r"(?<![\w])(?:" + "|".join(parts) + r")(?![\w])", re.IGNORECASE)


_WORD_CHARS = re.compile(r"\w+")


class PhraseGate:
    """``phrase_pattern(phrases).search``, at a fraction of its cost on a whole
    story: a match of a phrase holds each of its ``\\w+`` runs as a whole run
    of the text (case-folded), so only the phrases whose runs the text holds
    are compiled into the pattern searched - the same alternatives in the same
    order, less those that cannot match, so the same first match (one regex of
    ~90 phrases tried at every character: 0.8 ms a story)."""

    def __init__(self, phrases: list[str] | tuple[str, ...]):
        self.phrases = tuple(dict.fromkeys(p.strip().lower() for p in phrases if p.strip()))
        self._runs = [frozenset(_WORD_CHARS.findall(p.casefold())) for p in self.phrases]
        self._compiled: dict[tuple[str, ...], re.Pattern | None] = {}

    def _pattern(self, text: str) -> re.Pattern | None:
        have = set(_WORD_CHARS.findall(text.casefold()))
        maybe = tuple(p for p, runs in zip(self.phrases, self._runs) if runs <= have)
        if not maybe:
            return None
        if maybe not in self._compiled:
            if len(self._compiled) >= 256:
                self._compiled.clear()
            self._compiled[maybe] = phrase_pattern(maybe)
        return self._compiled[maybe]

    def search(self, text: str) -> re.Match | None:
        pattern = self._pattern(text)
        return pattern.search(text) if pattern is not None else None

    def finditer(self, text: str) -> Iterator[re.Match]:
        """Every match, as the whole pattern's finditer gives them (at each
        position the alternatives left out could not have matched)."""
        pattern = self._pattern(text)
        return pattern.finditer(text) if pattern is not None else iter(())


def gram_hit(text: str, new_chars: int, grams: frozenset[str] | set[str], n: int = 4) -> int | None:
    """While sampling: if the last ``new_chars`` characters of ``text`` closed
    a word whose n-gram (with the n-1 words before it, lower-case, as
    ``words`` splits them) is in ``grams``, the offset of that word, where the
    sampler rewinds to choose another; else None."""
    start = max(0, len(text) - new_chars - 200)  # 200 characters hold the 4 words before
    found = list(WORD.finditer(text, start))
    if start > 0 and found:
        found = found[1:]  # may be cut
    complete = [m for m in found if m.end() < len(text)]  # something not a word follows it
    if len(complete) < n or complete[-1].end() < len(text) - new_chars:
        return None  # no word closed by the new characters
    gram = " ".join(m.group().lower() for m in complete[-n:])
    return complete[-1].start() if gram in grams else None


# Quoted speech: "..." and ‘...’ (a single quote opens speech only before a capital: not "’tis").
QUOTED = re.compile(r"[\"“”][^\"“”]*[\"“”]|[‘'](?=[A-Z])[^‘’']*[’']")


def outside_dialogue(text: str) -> str:
    """The narration: ``text`` with quoted speech blanked out."""
    return QUOTED.sub(" ", text)


def grams(text: str, n: int = 4) -> list[tuple[str, ...]]:
    """The word n-grams of ``text``, lower-case, as tuples."""
    toks = [w.lower() for w in words(text)]
    return [tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)]
