"""A pack's genre facts, compiled once for the scorer and the checks.

The facts are pack data (``[era]``, ``[people]``, ``[press]``, ``[checks]
named``; docs/packs.md): the years a story may name and the dated events it
may not misdate, the surname shapes that mark an invented person and the
words of those shapes that are places or public figures, the news agencies
that turn a story into a press report, the slots a story must name. The
scorer's terms and the checks are generic and read them from here; a pack
that declares none gets none of those rules (``Genre()``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fabula.records import Card
from fabula.text import Gated

if TYPE_CHECKING:
    from fabula.packs import Pack

# The voice of a biography or a press report instead of a story: a small base
# model drifts into the register of what it read most (in a 100-story bench:
# "Odina Sabrinova (born in 1945)", "Her book ... was published by", "an
# international bestseller"). A pack's press agencies join it (Genre.of).
ENCYCLOPEDIC = (
    r"\((?:born\b|née\b|died\b|b\. ?\d|d\. ?\d)|\(\d{4}\s*[-–]\s*\d{2,4}\)|\bborn (?:in|on) (?:\w+ )?\d{4}\b|"
    r"\b(?:was|were|is|are) (?:first )?published\b|\bbest-?sell(?:er|ing)\b|\bcopies sold\b|"
    r"\btold (?:reporters|journalists|the press|the BBC|[A-Z][A-Za-z]+ (?:News|Times|Post))\b|"
    r"\baccording to (?:the |a )?(?:report|reports|sources|police|officials|the newspaper)\b|"
    r"\bis (?:best )?known (?:as|for)\b|\bis portrayed\b|\bwas portrayed\b|"
    r"\bmedia outlets?\b"
)
ENCYCLOPEDIC_NEEDLES = ("(", "born ", "published", "sell", "copies sold", "told ", "according to", "known ", "portrayed", "media outlet")
# An agency's own people and rooms are not its voice ("the agency's correspondent").
NOT_PRESS_VOICE = r"(?! (?:correspondent|man|office|bureau))"


@dataclass(frozen=True, eq=False)
class Genre:
    year_slot: str | None = None  # the slot holding the card's year
    earliest: int | None = None  # a year before it is an era slip
    events: tuple[tuple[re.Pattern, int, int], ...] = ()  # (pattern, first year, last year)
    never: tuple[re.Pattern, ...] = ()  # an era slip wherever it stands
    surname: re.Pattern | None = None  # fullmatch: a word of a surname's shape
    not_people: frozenset[str] = frozenset()
    encyclopedic: Gated = field(default_factory=lambda: Gated(re.compile(ENCYCLOPEDIC), ENCYCLOPEDIC_NEEDLES))
    named: tuple[str, ...] = ()  # slots a story must hold as written (the adherence check)

    @classmethod
    def of(cls, pack: "Pack") -> "Genre":
        """The pack's facts, compiled (once per pack object)."""
        hit = _COMPILED.get(id(pack))
        if hit is not None and hit[0] is pack:
            return hit[1]
        era, people = pack.era, pack.people
        endings = "|".join(map(re.escape, people.surname_endings))
        press = "|".join(map(re.escape, pack.press_agencies))
        genre = cls(
            year_slot=era.year_slot,
            earliest=era.earliest,
            events=tuple((re.compile(e.pattern), e.years[0], e.years[-1]) for e in era.events),
            never=tuple(re.compile(p) for p in era.never),
            surname=re.compile(rf"[A-Z][^\W\d_]{{2,}}(?:{endings})") if endings else None,
            not_people=frozenset(people.not_people),
            encyclopedic=Gated(
                re.compile(ENCYCLOPEDIC + (rf"|\b(?:{press})\b{NOT_PRESS_VOICE}" if press else "")), ENCYCLOPEDIC_NEEDLES + tuple(pack.press_agencies)
            ),
            named=pack.named,
        )
        if len(_COMPILED) >= 64:
            _COMPILED.clear()
        _COMPILED[id(pack)] = (pack, genre)
        return genre

    def card_year(self, card: Card) -> int | None:
        """The card's present, if the pack names a year slot and the card holds a year there."""
        y = card.slots.get(self.year_slot, "") if self.year_slot else ""
        return int(y) if y.isdigit() else None


_COMPILED: dict[int, tuple["Pack", Genre]] = {}
GENERIC = Genre()  # no genre facts: the scorer's generic terms only
