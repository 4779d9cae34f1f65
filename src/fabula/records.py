"""The records passed between stages: Card (planner → writer), Draft (writer →
checks), Verdict (checks → store), Story (what the store keeps).

Plain dataclasses with ``to_dict``/``from_dict`` so every record round-trips
through JSONL unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypedDict


@dataclass(frozen=True)
class Character:
    first: str
    last: str  # "" for a role without surnames
    gender: str  # "male" | "female"; picks pronouns
    nationality: str = ""  # adjective, e.g. "Latvian"; "" for a role without nationalities
    locale: str = ""  # Faker locale the name came from; "" for names from the pack's lists
    traits: dict[str, str] = field(default_factory=dict)  # from its nationality: {"service": "the StB"}

    @property
    def full(self) -> str:
        return f"{self.first} {self.last}" if self.last else self.first

    @property
    def service(self) -> str:  # the spy pack's trait, read by old code and old notebooks
        return self.traits.get("service", "")

    def to_dict(self) -> dict[str, Any]:
        # As dataclasses.asdict gives it (fields in order, containers copied), a
        # tenth of its cost: a card is written twice a story.
        return {
            "first": self.first,
            "last": self.last,
            "gender": self.gender,
            "nationality": self.nationality,
            "locale": self.locale,
            "traits": dict(self.traits),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Character":
        d = dict(d)
        service = d.pop("service", "")  # plans written before roles: service and cover were fields
        d.pop("cover", None)
        if service and "traits" not in d:
            d["traits"] = {"service": service}
        return cls(**d)


@dataclass(frozen=True)
class Card:
    """One planned story: everything the writer needs, nothing it must invent."""

    id: int  # position in the plan, 0-based; never reused
    seed: int  # sampling seed base for this card
    pack: str
    title: str
    cast: dict[str, Character]  # role -> character, in the pack's order; the first is the protagonist
    slots: dict[str, str]  # slot name → rendered value (city, venue, ...)
    choices: dict[str, str]  # slot name → the pack's value before rendering (what tallies count)
    beats: list[str]  # rendered beat sentences, one per paragraph, in order
    beat_variants: list[int]  # which variant of each beat was used
    notes: list[str] = field(default_factory=list)  # what happens in each paragraph (instruct mode); [] in old plans
    anchors: list[list[str]] = field(default_factory=list)  # card fields each paragraph must name
    openers: list[str] = field(default_factory=list)  # steer mode: each paragraph's opening words; [] in old plans
    opener_variants: list[int] = field(default_factory=list)  # which opener form of each beat (-1: none)
    voice: str = "third"  # the pack's narration: "third" or "first" person
    required: list[str] = field(default_factory=list)  # slots whose value the story must hold (a word drawn per story)

    @property
    def hero(self) -> Character:
        """The protagonist: the pack's first role."""
        return next(iter(self.cast.values()))

    def to_dict(self) -> dict[str, Any]:
        """As dataclasses.asdict gives it (a test holds them equal)."""
        return {
            "id": self.id,
            "seed": self.seed,
            "pack": self.pack,
            "title": self.title,
            "cast": {role: c.to_dict() for role, c in self.cast.items()},
            "slots": dict(self.slots),
            "choices": dict(self.choices),
            "beats": list(self.beats),
            "beat_variants": list(self.beat_variants),
            "notes": list(self.notes),
            "anchors": [list(a) for a in self.anchors],
            "openers": list(self.openers),
            "opener_variants": list(self.opener_variants),
            "voice": self.voice,
            "required": list(self.required),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Card":
        d = dict(d)
        if "cast" not in d:  # plans written before roles: a hero and an other
            d["cast"] = {"hero": d.pop("hero"), "other": d.pop("other")}
        d["cast"] = {role: Character.from_dict(c) for role, c in d["cast"].items()}
        return cls(**d)


@dataclass
class Draft:
    """A text the writer produced for a card, with what it cost."""

    card: Card
    text: str
    attempt: int  # 0-based rewrite number
    seed: int  # the sampling seed actually used
    tokens: int  # tokens generated
    seconds: float  # wall time spent generating
    backend: str
    model: str
    sampling: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    """Result of one check: keep, or drop with a reason (a short slug + detail)."""

    check: str
    keep: bool
    reason: str = ""
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        """As dataclasses.asdict gives it, at a tenth of its cost (six a story)."""
        return {"check": self.check, "keep": self.keep, "reason": self.reason, "detail": self.detail}


class Record(TypedDict, total=False):
    """One line of corpus.jsonl: a kept story (fabula.pipeline writes it;
    fabula.store.iter_records is the one reader). Every key is always there
    but best_of and picked (best of k > 1 only)."""

    id: str  # NNN_<hash16>: the story's index and the hash of its text
    index: int
    file: str  # stories/<id>.txt, relative to the folder
    card: dict[str, Any]  # Card.to_dict()
    pack: dict[str, str]  # name, digest
    backend: str
    model: str
    sampling: dict[str, float]
    seed: int
    attempt: int
    words: int
    tokens: int
    seconds: float
    target_words: int  # --words of the run that wrote it
    best_of: int
    picked: list[int]
    checks: list[dict[str, Any]]  # Verdict.to_dict() of every check run
