"""The records passed between stages: Card (planner → writer), Draft (writer →
checks), Verdict (checks → store), Story (what the store keeps).

Plain dataclasses with ``to_dict``/``from_dict`` so every record round-trips
through JSONL unchanged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Character:
    first: str
    last: str
    gender: str  # "male" | "female"; picks pronouns
    nationality: str  # adjective, e.g. "Latvian"
    locale: str  # Faker locale the name came from
    service: str = ""  # former service (hero) or "" (other)
    cover: str = ""  # the hero's cover life, a predicate ("repaired pianos ...")

    @property
    def full(self) -> str:
        return f"{self.first} {self.last}"


@dataclass(frozen=True)
class Card:
    """One planned story: everything the writer needs, nothing it must invent."""

    id: int  # position in the plan, 0-based; never reused
    seed: int  # sampling seed base for this card
    pack: str
    title: str
    hero: Character
    other: Character
    slots: dict[str, str]  # slot name → rendered value (city, venue, ...)
    choices: dict[str, str]  # slot name → the pack's value before rendering (what tallies count)
    beats: list[str]  # rendered beat sentences, one per paragraph, in order
    beat_variants: list[int]  # which variant of each beat was used
    notes: list[str] = field(default_factory=list)  # what happens in each paragraph (instruct mode); [] in old plans
    anchors: list[list[str]] = field(default_factory=list)  # card fields each paragraph must name
    openers: list[str] = field(default_factory=list)  # steer mode: each paragraph's opening words; [] in old plans
    opener_variants: list[int] = field(default_factory=list)  # which opener form of each beat (-1: none)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Card":
        d = dict(d)
        d["hero"] = Character(**d["hero"])
        d["other"] = Character(**d["other"])
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
        return asdict(self)
