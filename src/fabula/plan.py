"""The planner: cards from a pack and a seed, steered by corpus tallies.

Planning is sequential and deterministic: card k depends on the pack, the seed,
the target size and the cards 0..k-1 (whose tallies steer it). The store keeps
every planned card in the plan file (plan.jsonl.gz); a resumed or extended run rebuilds the
tallies from that file, so caps hold across runs.

Steering rule, for every slot, nationality, gender and beat variant: choose at
random among the values with the lowest count that are still under their cap.
That spreads values evenly (top share ≈ 1 / pool size) and never passes a cap
unless the pool is too small, which ``feasibility()`` reports before writing.

Wording rule, for every slot value and opener with a grammar inside: of
``WORDING_DRAWS`` expansions, take the one whose word 4-grams the openers of
the cards before have used least (ties: the first drawn). Caps count motifs;
this keeps the words that carry them from repeating across the corpus.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
import zlib
from collections import Counter
from collections.abc import Set
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable

import jinja2
import numpy as np

from fabula.names import draw_name, is_latin
from fabula.packs import ENV, Pack, Role
from fabula.records import Card, Character
from fabula.text import tokens

NAME_DRAWS = 200  # Faker draws per character before the name caps are relaxed
NAME_DRAWS_MIN = 8  # draws once a name pool has run out of unused full names (see _budget)
WORDING_DRAWS = 12  # grammar expansions tried per slot and opener; the least shared wins


def cap_count(cap: float, n: int) -> int:
    """A cap as a count for a corpus of n: shares round down, but a value may
    always be used at least once."""
    return int(cap) if cap >= 1 else max(1, math.floor(cap * n))


@dataclass
class _View:
    """A character as templates see it: {{ hero }} is the full name."""

    c: Character

    def __str__(self) -> str:
        return self.c.full

    def __getattr__(self, attr: str):
        c = self.c
        male = c.gender == "male"
        pron = {"he": "he" if male else "she", "him": "him" if male else "her", "his": "his" if male else "her"}
        if attr in pron:
            return pron[attr]
        if attr[:1].isupper() and attr.lower() in pron:
            return pron[attr.lower()].capitalize()
        if attr in c.traits:
            return c.traits[attr]
        return getattr(c, attr)


@lru_cache(maxsize=4096)
def _template(src: str):
    """A pack string compiled once (jinja2 compiles to Python: ~1 ms each)."""
    return ENV.from_string(src)


# {{ name }}, {{ name.attr }}, each with plain filters: what the packs' strings
# hold. Expanded grammar makes thousands of distinct strings from a few dozen
# placeholders, so the planner fills placeholders one by one, each parsed once,
# and runs Jinja itself only for anything else.
_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.S)
_SIMPLE = re.compile(r"\s*([A-Za-z_]\w*)(?:\.([A-Za-z_]\w*))?((?:\s*\|\s*(?:capitalize|upper|lower|title))*)\s*")
_FILTERS = {name: ENV.filters[name] for name in ("capitalize", "upper", "lower", "title")}


@lru_cache(maxsize=1024)
def _placeholder(expr: str) -> tuple[str, str | None, tuple] | None:
    """(name, attribute, filters) of a simple placeholder, or None."""
    m = _SIMPLE.fullmatch(expr)
    if m is None:
        return None
    return m[1], m[2], tuple(_FILTERS[f.strip()] for f in m[3].split("|")[1:])


def _fill(whole: str, expr: str, ctx: dict) -> str:
    simple = _placeholder(expr)
    if simple is None or simple[0] not in ctx:
        return _template(whole).render(**ctx)  # Jinja's own result, or its error
    name, attr, filters = simple
    value = ctx[name]
    if attr is not None:
        value = ENV.getattr(value, attr)
        if isinstance(value, jinja2.Undefined):
            return _template(whole).render(**ctx)
    value = str(value)
    for f in filters:
        value = f(value)
    return value


@lru_cache(maxsize=16384)
def _pieces(src: str) -> tuple[str | tuple[str, str], ...] | None:
    """``src`` as literal text and (placeholder, expression) pairs, or None
    where only Jinja itself renders it (a statement, a comment, a CR); the
    expanded strings of a pack are a few thousand, rendered 100,000s of times."""
    if "{%" in src or "{#" in src or "\r" in src:
        return None
    out: list[str | tuple[str, str]] = []
    at = 0
    for m in _PLACEHOLDER.finditer(src):
        if m.start() > at:
            out.append(src[at : m.start()])
        out.append((m[0], m[1]))
        at = m.end()
    if at < len(src):
        out.append(src[at:])
    return tuple(out)


def _render(src: str, ctx: dict) -> str:
    """What ``ENV.from_string(src).render(**ctx)`` gives, without compiling src."""
    pieces = _pieces(src)
    if pieces is None:
        return _template(src).render(**ctx)
    out = "".join([p if p.__class__ is str else _fill(p[0], p[1], ctx) for p in pieces])
    return out[:-1] if out.endswith("\n") and src.endswith("\n") else out


GRAM_BUCKETS = 1 << 22  # the openers' word 4-grams, counted in hashed buckets (uint32): 16 MiB at any plan size
NAME_BITS = 1 << 27  # full names planned, as a bit set (16 MiB): at 3 million names ~2 % of new ones read as taken


_GRAM_BUCKET: dict[tuple[str, ...], int] = {}  # the openers' grams repeat from card to card: each hashed once
_GRAM_BUCKET_MAX = 1 << 20  # grams kept (~150 MB at most); past that the cache starts again


def _buckets(text: str) -> list[int]:
    """The bucket of each word 4-gram of ``text`` (crc32 of the lower-case gram:
    the same in every process, and fast on the planner's short strings)."""
    toks = tokens(text)
    cache = _GRAM_BUCKET
    out = []
    for gram in zip(toks, toks[1:], toks[2:], toks[3:]):
        b = cache.get(gram)
        out.append(_bucket(gram) if b is None else b)
    return out


def _bucket(gram: tuple[str, ...]) -> int:
    """A gram's bucket, worked out and cached."""
    if len(_GRAM_BUCKET) >= _GRAM_BUCKET_MAX:
        _GRAM_BUCKET.clear()
    b = _GRAM_BUCKET[gram] = zlib.crc32(" ".join(gram).encode()) & (GRAM_BUCKETS - 1)
    return b


class Planner:
    def __init__(self, pack: Pack, seed: int, target: int, history: Iterable[Card] = ()):
        self.pack = pack
        self.seed = seed
        self.target = target
        self.tally: dict[str, Counter] = {}
        # What the cards planned so far hold that a reader sees, in fixed-size
        # arrays so that memory and every save of the state stay the same size
        # at 10^6 cards: opener 4-gram counts by hash, and full names (a name
        # whose bit is set is not given again; a shared bit only costs a draw).
        arrays = self.empty_arrays()
        self.gram_counts, self.names = arrays["gram_counts"], arrays["names"]
        self._counts = memoryview(self.gram_counts)  # type: ignore[arg-type]  # element access at Python speed (numpy's is 5x slower)
        # Per name pool (a locale's, or a role's own lists) and gender: how many
        # cards in a row found no name to stop at (see _budget). Counted from the
        # cards alone, so a plan counted again from its file rebuilds it.
        self.name_streak: Counter = Counter()
        self.next_id = 0
        self.counted = 0  # cards counted: those of history, then each one next() plans
        for card in history:
            self.count(card)
        # A name that is also an avoided phrase fails the stock-phrase check in
        # every draft (the Georgian first name Nazi: 81 cards lost in 280,000).
        self.avoid_names = {n.lower() for n in pack.avoid_names + pack.avoid_phrases}

    def __getstate__(self) -> dict:
        """For pickling (fabula.plan_ahead runs a planner in a process of its
        own): the memoryview is rebuilt on the other side."""
        return {k: v for k, v in self.__dict__.items() if k != "_counts"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._counts = memoryview(self.gram_counts)  # type: ignore[arg-type]

    # -- tallies -------------------------------------------------------------
    def state(self) -> dict:
        """Everything the cards planned so far left in the planner, as JSON
        data, less the two arrays (see arrays()): a 100,000-card plan resumes
        from it instead of re-counting every card (see fabula.index)."""
        return {
            "tally": {k: dict(c) for k, c in self.tally.items()},
            "name_streak": dict(self.name_streak),
            "next_id": self.next_id,
            "counted": self.counted,
            "format": 4,
        }  # fabula.index.STATE_FORMAT

    def arrays(self) -> dict[str, np.ndarray]:
        return {"gram_counts": self.gram_counts, "names": self.names}

    @staticmethod
    def empty_arrays() -> dict[str, np.ndarray]:
        """arrays() of a planner that has counted nothing (their shapes and types)."""
        return {"gram_counts": np.zeros(GRAM_BUCKETS, dtype=np.uint32), "names": np.zeros(NAME_BITS // 8, dtype=np.uint8)}

    @classmethod
    def restore(cls, pack: Pack, seed: int, target: int, state: dict) -> "Planner":
        """The planner whose state() this was, with its arrays() under "arrays";
        count() the cards planned after it."""
        p = cls(pack, seed, target)
        arrays = state["arrays"]
        p.tally = {k: Counter(v) for k, v in state["tally"].items()}
        p.name_streak = Counter(state["name_streak"])
        if arrays["gram_counts"].shape != p.gram_counts.shape or arrays["names"].shape != p.names.shape:
            raise ValueError("planner arrays of another size")
        p.gram_counts = arrays["gram_counts"].astype(np.uint32, copy=True)
        p._counts = memoryview(p.gram_counts)  # type: ignore[arg-type]
        p.names = arrays["names"].astype(np.uint8, copy=True)
        p.next_id, p.counted = state["next_id"], state["counted"]
        return p

    def count(self, card: Card) -> None:
        """Add a card planned before (from the plan file) to the tallies."""
        self._count(card)
        self.next_id = max(self.next_id, card.id + 1)

    def _name_bit(self, full: str) -> tuple[int, int]:
        h = int.from_bytes(hashlib.blake2b(full.encode(), digest_size=8).digest(), "little") & (NAME_BITS - 1)
        return h >> 3, 1 << (h & 7)

    def name_taken(self, full: str) -> bool:
        byte, bit = self._name_bit(full)
        return bool(self.names[byte] & bit)

    def _count(self, card: Card) -> None:
        self.counted += 1
        # Whether each name was one _character stops at (unused, under its caps),
        # judged as next() saw the tallies: before any of this card's names.
        firsts, lasts = self.tally.get("first_name", Counter()), self.tally.get("surname", Counter())
        first_cap = cap_count(self.pack.cap("first_name"), self.target)
        last_cap = cap_count(self.pack.cap("surname"), self.target)
        found = [not (ch.last and self.name_taken(ch.full)) and firsts[ch.first] < first_cap and lasts[ch.last] < last_cap for ch in card.cast.values()]
        for (role, ch), ok in zip(card.cast.items(), found):
            pool = _pool(role, ch.locale, ch.gender)
            if ok:
                self.name_streak.pop(pool, None)
            else:
                self.name_streak[pool] += 1
            byte, bit = self._name_bit(ch.full)
            self.names[byte] |= bit
            self._bump("first_name", ch.first)
            if ch.last:
                self._bump("surname", ch.last)
            self._bump(f"gender:{role}", ch.gender)
            if ch.nationality:
                self._bump(f"nationality:{role}", ch.nationality)
            for trait, value in ch.traits.items():
                self._bump(f"{trait}:{role}", value)
        for slot, choice in card.choices.items():
            self._bump(slot, choice)
        for i, v in enumerate(card.beat_variants):
            self._bump(f"beat:{i}", str(v))
        for i, v in enumerate(card.opener_variants):
            self._bump(f"opener:{i}", str(v))
        counts = self._counts
        for opener in card.openers:
            for b in _buckets(opener):
                counts[b] += 1

    def shared(self, text: str, bound: float = math.inf) -> int:
        """How many times the openers planned so far hold the 4-grams of ``text``
        (by hash bucket), counted until the count reaches ``bound``: a wording
        that has reached the best so far cannot win (_wording), so the rest of
        its grams need not be looked up."""
        counts = self._counts
        toks = tokens(text)
        get = _GRAM_BUCKET.get
        total = 0
        for gram in zip(toks, toks[1:], toks[2:], toks[3:]):
            b = get(gram)
            total += counts[_bucket(gram) if b is None else b]
            if total >= bound:
                break
        return total

    def _bump(self, key: str, value: str) -> None:
        c = self.tally.get(key)
        if c is None:  # not setdefault: that builds a Counter on every call (32 a card, 100,000s on resume)
            c = self.tally[key] = Counter()
        c[value] += 1

    def tallies(self) -> dict[str, dict[str, int]]:
        return {k: dict(c.most_common()) for k, c in sorted(self.tally.items())}

    # -- choice --------------------------------------------------------------
    def _pick(self, rng: random.Random, key: str, values: list[str], cap_key: str | None = None) -> str:
        """Least-used value under its cap (``cap_key`` None: evenness only)."""
        counts = self.tally.get(key, Counter())
        limit = cap_count(self.pack.cap(cap_key), self.target) if cap_key else math.inf
        under = [v for v in values if counts[v] < limit] or list(values)
        low = min(counts[v] for v in under)
        return rng.choice([v for v in under if counts[v] == low])

    def _wording(self, src: str, ctx: dict, rng: random.Random) -> str:
        """``src`` expanded and rendered: the least shared of a few expansions."""
        g = self.pack.grammar
        if g.count(src) == 1:
            return _render(g.expand(src, rng), ctx)
        best, best_shared = "", math.inf
        drawn = set()  # an expansion drawn again renders to the same text: not better, so not scored again
        for _ in range(WORDING_DRAWS):
            expanded = g.expand(src, rng)  # every draw is made, so the generator's stream is as before
            if best_shared == 0 or expanded in drawn:  # nothing beats 0
                continue
            drawn.add(expanded)
            text = _render(expanded, ctx)
            shared = self.shared(text, best_shared)
            if shared < best_shared:
                best, best_shared = text, shared
        return best

    def _optional_cap(self, key: str) -> str | None:
        return key if key in self.pack.caps else None

    def _character(self, rng: random.Random, role: Role, taken: Set[str] = frozenset()) -> Character:
        """One person for ``role``; ``taken``: first names of the card's earlier roles
        (two Jeans in one story read as one person: seen in a noir card)."""
        nat = None
        if role.nationalities:
            # By adjective: that is what a card keeps and _count tallies.
            by_name = {n.adjective: n for n in self.pack.nationalities_for(role)}
            nat = by_name[self._pick(rng, f"nationality:{role.name}", list(by_name), cap_key=self._optional_cap("nationality"))]
        gender = self._pick(rng, f"gender:{role.name}", list(role.genders))
        locale = nat.locale if nat else role.locale or ""
        first_cap = cap_count(self.pack.cap("first_name"), self.target)
        last_cap = cap_count(self.pack.cap("surname"), self.target)
        firsts, lasts = self.tally.get("first_name", Counter()), self.tally.get("surname", Counter())
        best = reused = None
        budget = self._budget(_pool(role.name, locale, gender))
        for drawn in range(NAME_DRAWS):
            if drawn >= budget and (best or reused):
                break
            first, last = self._name(role, locale, gender, rng)
            full = f"{first} {last}" if last else first
            if not is_latin(full) or first in taken or {first.lower(), last.lower(), full.lower()} & self.avoid_names:
                continue
            if last and self.name_taken(full):
                reused = reused or (first, last)
                continue
            if firsts[first] < first_cap and lasts[last] < last_cap:
                best = (first, last)
                break
            if best is None:  # remember a unique fallback in case the caps cannot hold
                best = (first, last)
        # A locale with few names runs out of unused full names in a large plan
        # (the spy pack's hero, past ~22,000 cards): a name planned before is
        # then given again, rather than stopping the run.
        best = best or reused
        if best is None:
            raise RuntimeError(f"no name for the role {role.name!r} found in {NAME_DRAWS} draws (all outside Latin script or avoided)")
        traits = {t: self._pick(rng, f"{t}:{role.name}", list(nat.traits[t])) for t in role.traits} if nat else {}  # evenness only
        return Character(first=best[0], last=best[1], gender=gender, nationality=nat.adjective if nat else "", locale=locale, traits=traits)

    def _budget(self, pool: str) -> int:
        """Draws to spend looking for an unused full name in ``pool``.

        A pool whose unused names are gone (the spy pack's hero locales past
        ~22,000 cards), or whose names have all reached their caps, made every
        card spend all NAME_DRAWS: 116 draws a card at 280,000 spy cards, most
        of the planner's time. Each card in a row whose name was not one to
        stop at (unused and under the caps) halves the budget, down to
        NAME_DRAWS_MIN; a card that finds one restores it. Until a pool first
        runs out, nothing changes."""
        return max(NAME_DRAWS_MIN, NAME_DRAWS >> self.name_streak.get(pool, 0))

    def _name(self, role: Role, locale: str, gender: str, rng: random.Random) -> tuple[str, str]:
        if locale:
            first, last = draw_name(locale, gender, rng)
        else:  # the pack's own lists, whose items may use the grammar
            g = self.pack.grammar
            assert role.first_names is not None  # the schema: exactly one name source
            first = _tidy(g.expand(rng.choice(role.first_names[gender]), rng))  # type: ignore[index]
            last = _tidy(g.expand(rng.choice(role.last_names), rng)) if role.last_names else ""
        return first, last if role.surname else ""

    # -- cards ---------------------------------------------------------------
    def next(self) -> Card:
        card_id = self.next_id
        rng = random.Random(f"fabula:{self.pack.name}:{self.seed}:{card_id}")
        cast: dict[str, Character] = {}
        for role in self.pack.roles:  # in order: a later role never takes a first name an earlier one has
            cast[role.name] = self._character(rng, role, {c.first for c in cast.values()})
        raw = {slot: self._pick(rng, slot, list(values), cap_key=slot) for slot, values in self.pack.slots.items()}
        # The caps above count the raw motif; its words vary per card (wording rule).
        chars = {name: _View(c) for name, c in cast.items()}
        slots = {slot: self._wording(v, chars, rng) for slot, v in raw.items()}
        g = self.pack.grammar
        ctx = {**chars, **slots}
        variants, beats, openers, opener_variants = [], [], [], []
        for i, beat in enumerate(self.pack.beats):
            idx = int(self._pick(rng, f"beat:{i}", [str(j) for j in range(len(beat.variants))], cap_key=self._optional_cap("beat")))
            variants.append(idx)
            beats.append(_tidy(_render(g.expand(beat.variants[idx], rng), ctx)))
            if beat.openers:  # least-used opener form, then the grammar inside it
                k = int(self._pick(rng, f"opener:{i}", [str(j) for j in range(len(beat.openers))]))
                opener_variants.append(k)
                openers.append(_tidy(self._wording(beat.openers[k], ctx, rng)))
            else:
                openers.append(beats[-1])
                opener_variants.append(-1)
        notes = [_tidy(_render(g.expand(beat.note, rng), ctx)) if beat.note else b for beat, b in zip(self.pack.beats, beats)]
        title = _render(g.expand(rng.choice(self.pack.titles), rng), ctx)
        card = Card(
            id=card_id,
            seed=rng.getrandbits(31),
            pack=self.pack.name,
            title=title,
            cast=cast,
            slots=slots,
            choices=raw,
            beats=beats,
            beat_variants=variants,
            notes=notes,
            openers=openers,
            opener_variants=opener_variants,
            anchors=[list(beat.anchors) for beat in self.pack.beats],
            voice=self.pack.voice,
            required=list(self.pack.required),
        )
        self._count(card)
        self.next_id += 1
        return card

    def feasibility(self) -> list[str]:
        """Caps that cannot hold for the target size, each as one sentence."""
        problems = []
        n = self.target
        checks = [(slot, len(values), slot) for slot, values in self.pack.slots.items()]
        if "nationality" in self.pack.caps:
            checks += [(f"{r.name} nationality", len(self.pack.nationalities_for(r)), "nationality") for r in self.pack.roles if r.nationalities]
        for label, pool, cap_key in checks:
            limit = cap_count(self.pack.cap(cap_key), n)
            if pool * limit < n:
                problems.append(
                    f"{label}: {pool} values x cap {limit} = {pool * limit} stories < {n}; "
                    f"values will repeat beyond the cap ({self.pack.cap(cap_key):g}); add values to the pack or raise caps.{cap_key}"
                )
        return problems


def _pool(role: str, locale: str, gender: str) -> str:
    """The names a character is drawn from: a locale's by gender, or a role's own lists."""
    return f"{locale}:{gender}" if locale else f"role {role}:{gender}"


def _tidy(sentence: str) -> str:
    """Capitalise the first letter (a slot may open a beat) and squash spaces."""
    s = " ".join(sentence.split())
    return s[:1].upper() + s[1:]
