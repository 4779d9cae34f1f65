"""Checks: each takes a draft and its card and returns a Verdict (keep, or
drop with a reason).

A check is any object with a ``name`` that is called as ``check(text, card)``
(the ``Check`` protocol); its thresholds are constructor arguments. The
classes here are the built-in ones; ``default_checks`` builds the list a pack
asks for (its ``[checks]`` table may set thresholds and skip checks by name),
``as_check`` turns a plain function into a check, and ``run_checks`` runs a
list, cheapest first, stopping at the first drop. The near-duplicate check
(``NearDuplicates``) runs last: it holds the corpus written so far.

Reasons are short slugs (``too-short``, ``off-card``, ``degenerate``,
``required-word``, ``unfinished``, ``markup``, ``meta-text``, ``stranger-name``, ``pronoun``, ``reportage``, ``stock-phrase``, ``near-duplicate``) so the summary and
``rejects.jsonl`` can count them; a user check's reason is its own.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from fabula.genre import GENERIC, Genre
from fabula.records import Card, Verdict
from fabula.score import outside_dialogue, pronouns, strangers

if TYPE_CHECKING:
    from fabula.packs import Pack
from fabula.text import MARKUP, META_GATED, PARAGRAPH_END, REPORTAGE, PhraseGate, ngram_hashes, phrase_pattern, tokens, word_hashes, words  # noqa: F401


def length(text: str, lo: int, hi: int) -> Verdict:
    n = len(words(text))
    if n < lo:
        return Verdict("length", False, "too-short", f"{n} words < {lo}")
    if n > hi:
        return Verdict("length", False, "too-long", f"{n} words > {hi}")
    return Verdict("length", True, detail=f"{n} words")


def adherence(text: str, card: Card, named: tuple[str, ...] = ()) -> Verdict:
    """The story names its protagonist and, as written, the value of every
    slot in ``named`` (the pack's ``[checks] named``: off-card without), and
    holds a form of every required word (``required-word``)."""
    missing = []
    hero = card.hero
    # A first-person narrator may never say their own name.
    if card.voice == "third" and hero.first not in text and (not hero.last or hero.last not in text):
        missing.append(f"protagonist {hero.full}")
    for slot in named:
        value = card.slots.get(slot)
        if value and value not in text:
            missing.append(f"{slot} {value}")
    if missing:
        return Verdict("adherence", False, "off-card", "missing " + ", ".join(missing))
    absent = [card.slots[k] for k in card.required if not holds_word(text, card.slots[k])]
    if absent:
        return Verdict("adherence", False, "required-word", "missing " + ", ".join(repr(w) for w in absent))
    return Verdict("adherence", True)


def holds_word(text: str, word: str) -> bool:
    """Whether ``text`` holds ``word`` or a form of it: a word that starts with
    it, or with it less a final e or y, at most 4 letters longer ("jump":
    jumped, jumping; "dance": danced; "happy": happily; "box": boxes; "hop":
    hopped). Case aside; a phrase must appear as written."""
    w = word.lower().strip()
    if " " in w:
        return w in " ".join(words(text.lower()))
    stems = {w, w[:-1]} if len(w) > 3 and w[-1] in "ey" else {w}
    return any(t.startswith(s) and len(t) <= len(w) + 4 for t in (x.lower() for x in words(text)) for s in stems)


# A draft is dropped at two pronouns of a gender no character has, not at one:
# a single "his" is as often an unnamed man (a guard, "his cousin") as a slip,
# and the best of k already keeps the candidate without it where one exists.
# In the 100-story bench of 4872449 pronouns caused 38 of 59 dropped drafts.
PRONOUN_DROP = 2


def cast(text: str, card: Card, genre: Genre = GENERIC, pronoun_drop: int = PRONOUN_DROP) -> Verdict:
    """The story's people are the card's: no first name or surname that no character has
    (``stranger-name``), and no he/she outside dialogue for a gender that no
    character has, twice or more (``pronoun``). The scorer's terms, as a check."""
    who = strangers(text, card, genre)
    if who:
        return Verdict("cast", False, "stranger-name", f"names {', '.join(who)}, who is not on the card")
    n = pronouns(card, outside_dialogue(text))
    if n >= pronoun_drop:
        return Verdict("cast", False, "pronoun", f"{n} pronouns of a gender no character has")
    return Verdict("cast", True)


def repeated_ngram_share(tokens: list[str], n: int = 4) -> float:
    """Share of n-grams that repeat an earlier n-gram of the same text
    (seq-rep-n, Welleck et al. 2019)."""
    grams = list(zip(*(tokens[k:] for k in range(n))))  # the n-grams, in order (zip of shifted lists: twice as fast as slicing each)
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


def degeneration(text: str, max_rep4: float = 0.12, max_sentence_repeats: int = 1, voice: str = "third") -> Verdict:
    m = MARKUP.search(text)
    if m:
        return Verdict("degeneration", False, "markup", f"contains {m.group(0)!r}")
    m = META_GATED.search(text)
    if m:
        return Verdict("degeneration", False, "meta-text", f"contains {m.group(0)!r}")
    m = REPORTAGE.search(text) if voice == "third" else None  # a narrator says "I asked him"
    if m:
        return Verdict("degeneration", False, "reportage", f"contains {m.group(0)!r}")
    for para in (p for p in re.split(r"\n\s*\n", text) if p.strip()):
        if not PARAGRAPH_END.search(para):
            return Verdict("degeneration", False, "unfinished", f"a paragraph ends mid-sentence: {para[-40:]!r}")
    toks = tokens(text)  # lower-cased words
    rep = repeated_ngram_share(toks, 4)
    if rep > max_rep4:
        return Verdict("degeneration", False, "degenerate", f"repeated 4-grams {rep:.2f} > {max_rep4}")
    sentences = [s.strip().lower() for s in re.split(r"(?<=[.!?])\s+", text) if len(s.split()) >= 4]
    top = Counter(sentences).most_common(1)
    if top and top[0][1] > max_sentence_repeats:
        return Verdict("degeneration", False, "degenerate", f"sentence repeated {top[0][1]} times: {top[0][0][:60]!r}")
    return Verdict("degeneration", True, detail=f"rep4 {rep:.3f}")


def stock_phrases(text: str, pattern: re.Pattern | PhraseGate | None) -> Verdict:
    if pattern is not None:
        m = pattern.search(text)
        if m:
            return Verdict("stock-phrases", False, "stock-phrase", f"contains {m.group(0)!r}")
    return Verdict("stock-phrases", True)


SHINGLE = 5  # words in a MinHash shingle


def minhash_permutations(num_perm: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(a, b): ``num_perm`` affine maps h -> a*h + b mod 2^64, a odd (a bijection)."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 1 << 63, size=num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    b = rng.integers(0, (1 << 64) - 1, size=num_perm, dtype=np.uint64, endpoint=True)
    return a, b


@dataclass(frozen=True)
class Prints:
    """What the corpus memory keeps of a kept story, from its words' hashes:
    its MinHash signature (uint32, NearDuplicates') and the hash of each word
    4-gram (uint64, score.gram_hashes'). The checks' process (fabula.check_ahead)
    works them out beside the checks, so the writer only looks them up."""

    signature: np.ndarray
    grams: np.ndarray


def prints(text: str, num_perm: int = 128) -> Prints:
    wh = word_hashes(tokens(text))
    return Prints(minhash(ngram_hashes(wh, min(SHINGLE, len(wh)) or 1), *_permutations(num_perm)), ngram_hashes(wh, 4))


@lru_cache(maxsize=8)
def _permutations(num_perm: int) -> tuple[np.ndarray, np.ndarray]:
    return minhash_permutations(num_perm)


def minhash(shingles: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The MinHash signature of a set of 64-bit shingle hashes: per map, the least
    top 32 bits of a*h + b (the low bits of an affine map mod 2^64 depend on
    the low bits of h only, the top bits on all of them); uint32."""
    if not len(shingles):
        return np.full(len(a), 0xFFFFFFFF, dtype=np.uint32)
    with np.errstate(over="ignore"):
        # In place: one (n, num_perm) temporary, not four (a fifth of the time).
        x = np.multiply.outer(shingles, a)
        x += b
        x >>= np.uint64(32)
        return x.min(axis=0).astype(np.uint32)


class BandIndex:
    """Which stories hold a band key, for 10^6 stories in a few hundred MB.

    Every (band, key) of the stories inserted so far - the key XOR a per-band
    salt, so bands do not meet - is one uint64 of a sorted array: the key's
    high 32 bits above its story's row. The low 32 bits are kept per row and
    band (``low``) and compared once the high half matches, so a lookup finds
    exactly the rows that share a whole key. np.sort orders plain uint64 with
    SIMD: 25 million (a 10^6-story corpus, loaded on every resume) in well
    under a second, where argsort of the keys carrying their rows along took
    5-8 times as long. The newest rows wait in a dict and are merged into the
    array when they pass a quarter of it, or TAIL_MAX."""

    TAIL_MIN = 4096  # rows held in the dict before the first merge
    # Rows held in the dict at most: ~100 bytes a key there, 25 keys a row, so
    # a quarter of 10^6 rows held ~600 MB; a merge (np.sort of every key) is
    # ~0.5 s at 10^6 rows, every 32,768 stories.
    TAIL_MAX = 1 << 15
    _HIGH = np.uint64(0xFFFFFFFF00000000)
    _LOW = np.uint64(0xFFFFFFFF)

    def __init__(self, bands: int):
        rng = np.random.default_rng(0xBA4D)
        self.salt = rng.integers(0, 2**63, size=bands, dtype=np.uint64) << np.uint64(1)
        self.sorted = np.empty(0, dtype=np.uint64)  # high half of a key | row
        self.low = np.empty((0, bands), dtype=np.uint32)  # row -> each band's low half; grown 1.25x at a time
        self.tail: dict[int, int | list[int]] = {}  # whole key -> row(s), of the rows not yet in ``sorted``
        self._pending: list[np.ndarray] = []  # the tail rows' packed keys, for the merge
        self.rows = 0  # rows inserted
        self.tail_rows = 0

    CHUNK = 1 << 16  # rows of a bulk load packed at a time (its temporaries: ~40 MB, not ~800 MB at 10^6 rows)

    def add(self, band_keys: np.ndarray) -> None:
        """Insert the next rows: (n, bands) band keys."""
        n = len(band_keys)
        if self.rows + n > len(self.low):
            grown = np.empty((max(self.rows + n, len(self.low) * 5 // 4, 1024), band_keys.shape[1]), dtype=np.uint32)
            grown[: self.rows] = self.low[: self.rows]
            self.low = grown
        for at in range(0, n, self.CHUNK):
            combined = band_keys[at : at + self.CHUNK] ^ self.salt[None, :]
            first = self.rows + at
            self.low[first : first + len(combined)] = combined & self._LOW
            rows = np.arange(first, first + len(combined), dtype=np.uint64)
            self._pending.append(((combined & self._HIGH) | rows[:, None]).reshape(-1))
        if n <= self.TAIL_MIN:  # not a bulk load: findable at once through the dict
            combined = band_keys ^ self.salt[None, :]
            rows = np.arange(self.rows, self.rows + n, dtype=np.uint64)
            tail = self.tail
            for k, r in zip(combined.reshape(-1).tolist(), np.repeat(rows, combined.shape[1]).tolist()):
                hit = tail.get(k)  # one row as a rule; a list when several share the key
                if hit is None:
                    tail[k] = r
                elif isinstance(hit, int):
                    tail[k] = [hit, r]
                else:
                    hit.append(r)
        self.rows += n
        self.tail_rows += n
        if n > self.TAIL_MIN or self.tail_rows > max(self.TAIL_MIN, min((self.rows - self.tail_rows) // 4, self.TAIL_MAX)):
            self._merge()

    def _merge(self) -> None:
        merged = np.concatenate([self.sorted, *self._pending])
        merged.sort()
        self.sorted = merged
        self.tail, self._pending, self.tail_rows = {}, [], 0

    def find(self, band_keys: np.ndarray) -> set[int]:
        """Rows that share at least one of one story's (bands,) band keys."""
        q = band_keys ^ self.salt
        high = q & self._HIGH
        lo = np.searchsorted(self.sorted, high, "left").tolist()
        hi = np.searchsorted(self.sorted, high | self._LOW, "right").tolist()
        out: set[int] = set()
        for band, (a, b) in enumerate(zip(lo, hi)):
            if b > a:  # rare: a near-duplicate, or a high half shared by chance (~2e-4 a band at 10^6 rows)
                want = int(q[band]) & 0xFFFFFFFF
                low = self.low
                for packed in self.sorted[a:b].tolist():
                    row = packed & 0xFFFFFFFF
                    if low[row, band] == want:
                        out.add(row)
        if self.tail:
            for k in q.tolist():
                hit = self.tail.get(k)
                if hit is not None:
                    out.update((hit,) if isinstance(hit, int) else hit)
        return out


# (threshold, num_perm) -> (bands, rows): what datasketch's MinHashLSH picks
# (lsh._optimal_param, equal weights); a test holds these equal to it.
_LSH_PARAMS = {(0.5, 128): (25, 5)}


@dataclass
class NearDuplicates:
    """MinHash over word 5-gram shingles of every accepted story, banded (LSH).

    ``check()`` compares a draft with the index; ``add()`` inserts an accepted
    story. Jaccard threshold default 0.5; 128 affine permutations of the
    shingles' 64-bit hashes (fabula.text), 32-bit values: computed in numpy
    from the words' hashes, the same with every datasketch version (1.6 and
    2.0 hash differently). The bands are this class's own: ``b`` bands of
    ``r`` values each - the (b, r) that datasketch's MinHashLSH picks for the
    threshold (25 x 5 at 0.5) - each band reduced to one 64-bit key, looked
    up in a BandIndex. Owning them means a saved corpus index (``fabula.index``) loads 100,000
    signatures with numpy in well under a second, where re-inserting them
    into MinHashLSH builds 100,000 MinHash objects (about 30 s).
    """

    threshold: float = 0.5
    num_perm: int = 128
    keys: list = field(default_factory=list, repr=False)  # story ids, in insertion order
    _sigs: list = field(default_factory=list, repr=False)  # their signatures (uint32 arrays), from row _gone on
    _gone: int = field(default=0, repr=False)  # leading rows whose signatures were saved and dropped (drop_signatures)

    def __post_init__(self) -> None:
        if (self.threshold, self.num_perm) in _LSH_PARAMS:  # datasketch imports scipy: ~0.8 s of every start
            self.b, self.r = _LSH_PARAMS[self.threshold, self.num_perm]
        else:
            from datasketch.lsh import _optimal_param

            self.b, self.r = _optimal_param(self.threshold, self.num_perm, 0.5, 0.5)
        self._index = BandIndex(self.b)
        self._known: set[str] = set()
        self._last: tuple[str, np.ndarray] | None = None
        # Odd 64-bit multipliers: a band's r values -> one key (sum of products, mod 2^64).
        rng = np.random.default_rng(0x5EED)
        self._mult = (rng.integers(1, 2**63, size=self.r, dtype=np.uint64) << np.uint64(1)) | np.uint64(1)
        self._perm = _permutations(self.num_perm)

    def signature(self, text: str) -> np.ndarray:
        # The writer checks a draft, then adds the same text once it is kept:
        # the last signature is reused rather than computed twice.
        if self._last is not None and self._last[0] == text:
            return self._last[1]
        sig = self.signature_of(word_hashes(tokens(text)))
        self._last = (text, sig)
        return sig

    def prime(self, text: str, signature: np.ndarray) -> None:
        """``text``'s signature, worked out elsewhere (Prints): check() and add() of it use it."""
        self._last = (text, signature)

    def signature_of(self, wh: np.ndarray) -> np.ndarray:
        """The signature of a text from its words' hashes (fabula.text.word_hashes of its tokens)."""
        shingles = ngram_hashes(wh, min(SHINGLE, len(wh)) or 1)  # a text under 5 words is one shingle
        return minhash(shingles, *self._perm)

    def minhash_scheme(self) -> str:
        """What the signatures depend on (a saved index is reused only if this matches)."""
        return f"fabula-affine64-w{SHINGLE}/{self.num_perm}/{self.b}x{self.r}"

    def _band_keys(self, sigs: np.ndarray) -> np.ndarray:
        """(n, 128) signatures -> (n, b) band keys, 65,536 rows at a time (a
        million at once took ~1 GB of temporaries)."""
        out = np.empty((len(sigs), self.b), dtype=np.uint64)
        for at in range(0, len(sigs), 1 << 16):
            bands = sigs[at : at + (1 << 16), : self.b * self.r].reshape(-1, self.b, self.r)
            # One multiply-add per band position (uint64 wraps mod 2^64): a
            # sum over the short last axis took twice as long.
            acc = bands[:, :, 0].astype(np.uint64) * self._mult[0]
            for j in range(1, self.r):
                acc += bands[:, :, j].astype(np.uint64) * self._mult[j]
            out[at : at + len(bands)] = acc
        return out

    def candidates(self, sig: np.ndarray) -> set[str]:
        """Every story that shares a band with this signature."""
        return {self.keys[r] for r in self._index.find(self._band_keys(sig[None, :])[0])}

    def check(self, text: str) -> Verdict:
        hits = self.candidates(self.signature(text))
        if hits:
            return Verdict("near-duplicate", False, "near-duplicate", f"like {sorted(hits)[0]}")
        return Verdict("near-duplicate", True)

    def add(self, key: str, text: str) -> None:
        if key not in self._known:
            self.add_signatures([key], self.signature(text)[None, :])

    def add_signatures(self, keys: list[str], sigs: np.ndarray) -> None:
        """Insert stories by their signatures ((n, num_perm) uint32), in bulk."""
        if not len(keys):
            return
        if not self._known and len(set(keys)) == len(keys):  # the first bulk load (a resume): all new
            self._known = set(keys)
        else:
            new = [i for i, k in enumerate(keys) if k not in self._known]
            if not new:
                return
            keys = [keys[i] for i in new]
            sigs = np.asarray(sigs, dtype=np.uint32)[new]
            self._known.update(keys)
        sigs = np.asarray(sigs, dtype=np.uint32)
        self._index.add(self._band_keys(sigs))  # rows len(self.keys) on
        self.keys.extend(keys)
        self._sigs.append(sigs)

    def signatures(self) -> np.ndarray:
        """Every inserted story's signature, in insertion order ((n, num_perm) uint32)."""
        return self.signatures_since(0)

    def drop_signatures(self) -> None:
        """Forget the signatures inserted so far (saved: fabula.index writes
        them to index.signatures); the band index that finds near-duplicates
        keeps its keys. 512 bytes a story: 512 MB at 10^6."""
        self._sigs, self._gone = [], len(self.keys)

    def signatures_since(self, k: int) -> np.ndarray:
        """The signatures of the stories inserted after the first ``k``. The
        rows are kept as pieces (one a story, one a bulk insert); those asked
        for are joined into one, so the pieces stay few and an older row is
        never copied again (a writer asks for the new rows at every save)."""
        if k < self._gone:
            raise ValueError(f"the signatures of rows {k}..{self._gone - 1} were saved and dropped (read index.signatures)")
        pieces, have = [], len(self.keys)
        while self._sigs and have > k and have - len(self._sigs[-1]) >= k:
            have -= len(self._sigs[-1])
            pieces.append(self._sigs.pop())
        if pieces:
            self._sigs.append(np.concatenate(pieces[::-1]) if len(pieces) > 1 else pieces[0])
        if have == k:
            return self._sigs[-1] if pieces else np.zeros((0, self.num_perm), dtype=np.uint32)
        # k falls inside a piece: every piece from there, joined
        joined = np.concatenate(self._sigs) if len(self._sigs) > 1 else self._sigs[0]
        self._sigs = [joined]
        return joined[k - self._gone :]

    def __len__(self) -> int:
        return len(self.keys)


class Check(Protocol):
    """What the pipeline runs on every draft: keep, or drop with a reason."""

    @property
    def name(self) -> str: ...

    def __call__(self, text: str, card: Card) -> Verdict: ...


@dataclass(frozen=True)
class Length:
    """Between ``lo`` and ``hi`` words (``too-short``, ``too-long``)."""

    lo: int
    hi: int
    name: str = "length"

    def __call__(self, text: str, card: Card) -> Verdict:
        return length(text, self.lo, self.hi)


@dataclass(frozen=True)
class Adherence:
    """The protagonist, the ``named`` slots as written, the required words (``off-card``, ``required-word``)."""

    named: tuple[str, ...] = ()
    name: str = "adherence"

    def __call__(self, text: str, card: Card) -> Verdict:
        return adherence(text, card, self.named)


@dataclass(frozen=True)
class Degeneration:
    """No markup, meta-text, news voice, unfinished paragraph, or repetition
    (``max_rep4``: the share of repeated word 4-grams; ``max_sentence_repeats``)."""

    max_rep4: float = 0.12
    max_sentence_repeats: int = 1
    name: str = "degeneration"

    def __call__(self, text: str, card: Card) -> Verdict:
        return degeneration(text, self.max_rep4, self.max_sentence_repeats, card.voice)


@dataclass(frozen=True)
class Cast:
    """No stranger (the genre's surname shapes too), and fewer than
    ``pronoun_drop`` he/she outside dialogue of a gender no character has."""

    genre: Genre = GENERIC
    pronoun_drop: int = PRONOUN_DROP
    name: str = "cast"

    def __call__(self, text: str, card: Card) -> Verdict:
        return cast(text, card, self.genre, self.pronoun_drop)


@dataclass(frozen=True, eq=False)
class StockPhrases:
    """None of ``phrases`` (whole words, any case, spaces or hyphens between): ``stock-phrase``."""

    phrases: tuple[str, ...] = ()
    name: str = "stock-phrases"

    def __post_init__(self) -> None:
        object.__setattr__(self, "_gate", PhraseGate(self.phrases) if self.phrases else None)

    def __call__(self, text: str, card: Card) -> Verdict:
        return stock_phrases(text, self._gate)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class FunctionCheck:
    """A plain function as a check (``as_check``)."""

    fn: Callable[[str, Card], Any]
    name: str

    def __call__(self, text: str, card: Card) -> Verdict:
        out = self.fn(text, card)
        if isinstance(out, Verdict):
            return out
        if isinstance(out, tuple):  # (keep, reason) or (keep, reason, detail)
            keep, reason, detail = (*out, "")[:3] if len(out) >= 2 else (out[0], "", "")
        else:
            keep, reason, detail = out is None or bool(out), "", ""
        return Verdict(self.name, bool(keep), "" if keep else (reason or self.name), detail)


def as_check(check: Check | Callable[[str, Card], Any], name: str | None = None) -> Check:
    """``check`` if it is one (it has a ``name``); a function ``fn(text, card)``
    becomes one, named ``name`` or after the function. The function returns a
    Verdict, or True / None to keep, False to drop (the reason is the check's
    name), or (False, reason) / (False, reason, detail)."""
    if name is None and isinstance(getattr(check, "name", None), str):
        return check  # type: ignore[return-value]
    if not callable(check):
        raise TypeError(f"{check!r} is not a check: give a function (text, card) -> bool or an object with a name and __call__")
    return FunctionCheck(check, name or getattr(check, "__name__", "check").replace("_", "-"))


def default_checks(pack: "Pack", lo: int, hi: int, avoid: Sequence[str] = (), genre: Genre | None = None) -> list[Check]:
    """The built-in checks a pack asks for, cheapest first, with its
    thresholds, less those it skips (``[checks]``); ``avoid``: the phrases
    kept out (the pack's and the user's). The near-duplicate check is not in
    the list: the pipeline runs it last, on the corpus written so far."""
    c = pack.checks
    genre = Genre.of(pack) if genre is None else genre
    out: list[Check] = [
        Length(lo, hi),
        Adherence(pack.named),
        Degeneration(c.max_repeated_4grams, c.max_sentence_repeats),
        Cast(genre, c.pronoun_drop),
        StockPhrases(tuple(avoid)),
    ]
    return [x for x in out if x.name not in c.skip]


def compose(base: list[Check], checks: Any) -> list[Check]:
    """The checks a run uses: ``base`` (default_checks), then ``checks``: a
    list is added after them; a function of the list returns the list to run
    (to drop, reorder or replace built-in checks)."""
    if checks is None:
        return list(base)
    if callable(checks) and not hasattr(checks, "name"):
        if _takes_the_list(checks):
            return [as_check(x) for x in checks(list(base))]
        return list(base) + [as_check(checks)]  # one check function
    if hasattr(checks, "name"):
        return list(base) + [as_check(checks)]
    return list(base) + [as_check(x) for x in checks]


def _takes_the_list(fn: Callable) -> bool:
    """A one-argument function (of the default list), not a check (text, card)."""
    import inspect

    try:
        params = [p for p in inspect.signature(fn).parameters.values() if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return False
    return len(params) == 1


def run_checks(text: str, card: Card, checks: Sequence[Check], near: "NearDuplicates | None" = None) -> list[Verdict]:
    """``checks`` in order, then ``near`` (the corpus's near-duplicates); stops at the first drop."""
    out = []
    for check in checks:
        v = check(text, card)
        out.append(v)
        if not v.keep:
            return out
    if near is not None:
        out.append(near.check(text))
    return out
