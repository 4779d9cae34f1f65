"""The pack format, stated once: pydantic models with ``extra="forbid"``, so a
misspelt key is refused rather than ignored. ``fabula.packs`` turns the first
error into one line (file, TOML line, what to change); checks that need more
than one table (placeholders, anchors, caps, roles) are done there too.

The README's pack author's guide (docs/packs.md) documents every key.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

Text = Annotated[str, StringConstraints(min_length=1, pattern=r"\S")]  # a non-empty string
Key = Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_]*$")]  # usable as a {{ placeholder }}
Texts = Annotated[list[Text], Field(min_length=1)]
Gender = Literal["female", "male"]
# steer: a short opener carries the card's content and the model writes the rest
# of each paragraph; beats: the pack's whole beat sentence is pasted and
# continued; instruct: one chat request per story.
Mode = Literal["steer", "beats", "instruct"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Meta(Strict):
    name: Text
    title: str = ""
    description: str = ""
    words: Annotated[int, Field(gt=0)] = 450  # target length of a story
    min_words: Annotated[int, Field(gt=0)] | None = None  # default 78 % of words
    max_words: Annotated[int, Field(gt=0)] | None = None  # default 122 % of words
    voice: Literal["third", "first"] = "third"  # the narration: third person, or a first-person narrator

    @model_validator(mode="after")
    def _range(self):
        lo, hi = self.min_words or round(self.words * 0.78), self.max_words or round(self.words * 1.22)
        if not lo <= self.words <= hi:
            raise ValueError(f"needs min_words <= words <= max_words, got {lo} <= {self.words} <= {hi}")
        return self


class Generation(Strict):
    mode: Mode = "beats"
    temperature: Annotated[float, Field(ge=0, le=2)] = 0.8
    top_p: Annotated[float, Field(gt=0, le=1)] = 0.92
    repeat_penalty: Annotated[float, Field(ge=1, le=2)] = 1.18
    max_attempts: Annotated[int, Field(gt=0)] = 4
    frame: str = ""  # text before the story in every prompt (never part of it)

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)  # 1 for 1.0 is fine


class Role(Strict):
    """A character every card has: {{ NAME }}, {{ NAME.first }}, {{ NAME.he }}, ..."""

    name: Key
    label: str = ""  # how plans and the instruct prompt call the role ("protagonist"); default: the name
    genders: Annotated[list[Gender], Field(min_length=1)] = ["female", "male"]  # drawn evenly
    # Where names come from (exactly one): a nationality of [[nationalities]]
    # (its Faker locale), one Faker locale, or the pack's own lists (items may
    # use the grammar).
    nationalities: bool = False
    locale: str | None = None
    first_names: dict[Gender, Texts] | None = None
    last_names: list[Text] | None = None  # with first_names; none: first names only
    surname: bool = True  # false: a character has a first name only
    traits: list[Key] = []  # fields of its nationality the role takes one value of ({{ hero.service }})

    @model_validator(mode="after")
    def _one_source(self):
        given = [k for k in ("nationalities", "locale", "first_names") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(
                f"has {' and '.join(given) or 'no name source'}; give exactly one of nationalities = true, "
                'locale = "en_US" or first_names = { female = [...], male = [...] }'
            )
        if self.first_names is not None and not set(self.genders) <= set(self.first_names):
            raise ValueError(f"first_names has no list for {', '.join(sorted(set(self.genders) - set(self.first_names)))}; add one per gender in genders")
        if self.traits and not self.nationalities:
            raise ValueError("has traits but no nationalities; traits are lists of a nationality")
        return self


class Nationality(Strict):
    key: Text
    adjective: str = ""  # default: the key, title-cased
    locale: Text  # the Faker locale of its names
    roles: list[Key] | None = None  # the roles that may have it; default every role with nationalities = true
    traits: dict[Key, Texts] = {}  # e.g. service = ["the KGB", "the GRU"]: a role's {{ hero.service }}


class Beat(Strict):
    name: Text
    variants: Texts  # sentences that open the paragraph (beats mode: pasted)
    openers: list[Text] = []  # short openings that carry the card's content (steer mode); [] = variants
    note: str = ""  # what happens, as plain plan (instruct mode; never shown to readers)
    anchors: list[Text] = []  # card fields the paragraph must name: a role or a slot


class Exemplar(Strict):
    """A story written for the pack; stands before a story in beats-mode prompts."""

    title: Text
    paragraphs: Texts
    avoid: list[Text] = []  # its names: kept out of the stories

    @field_validator("paragraphs")
    @classmethod
    def _squash(cls, v):
        return [" ".join(p.split()) for p in v]

    def block(self) -> str:
        return f"{self.title}\n\n" + "".join(f"{p}\n\n" for p in self.paragraphs)


class Avoid(Strict):
    phrases: list[Text] = []  # banned while sampling; a draft that holds one is drawn again
    names: list[Text] = []  # never given to a character (as a first name, surname or full name)


class Titles(Strict):
    variants: Texts = ["Untitled"]


class Checks(Strict):
    required: list[Key] = []  # slots whose value every story must hold (e.g. a word drawn per story)
    named: list[Key] = []  # slots whose value every story must hold as written (the city): else off-card
    max_repeated_4grams: Annotated[float, Field(gt=0, le=1)] = 0.12  # degeneration: share of repeated word 4-grams
    max_sentence_repeats: Annotated[int, Field(ge=1)] = 1  # degeneration: times one sentence may stand
    pronoun_drop: Annotated[int, Field(ge=1)] = 2  # cast: he/she of a gender no character has, outside dialogue
    skip: list[Literal["length", "adherence", "degeneration", "cast", "stock-phrases", "near-duplicate"]] = []

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)  # 0.1 or 1 for a threshold


def _compiles(v: str) -> str:
    try:
        re.compile(v)
    except re.error as e:
        raise ValueError(f"{v[:60]!r} is not a regular expression ({e})") from None
    return v


class Event(Strict):
    """A dated event of the era: a year written near its name must fall in its years."""

    pattern: Text  # a regular expression that names the event
    years: Annotated[list[int], Field(min_length=1, max_length=2)]  # [year] or [first, last]

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, v):
        return _compiles(v)

    @field_validator("years")
    @classmethod
    def _order(cls, v):
        if len(v) == 2 and v[0] > v[1]:
            raise ValueError(f"years {v}: the first comes before the last; write [first, last]")
        return v


class Era(Strict):
    """When the stories happen: the scorer's era term."""

    year_slot: Key | None = None  # the slot that holds the card's year: a year written after it is a slip
    earliest: int | None = None  # a year written before this one is a slip
    events: list[Event] = []
    never: list[Text] = []  # regular expressions that are a slip wherever they stand ("World War III")

    @field_validator("never")
    @classmethod
    def _patterns(cls, v):
        return [_compiles(x) for x in v]


class People(Strict):
    """Who counts as a person of the story: the scorer's stranger term."""

    # A capitalised word with one of these endings is a surname: a stranger
    # unless a card character has it (e.g. "ov", "ski" in a Soviet-bloc pack).
    surname_endings: list[Text] = []
    not_people: list[Text] = []  # words of those shapes that are places or public figures, not strangers


class Press(Strict):
    """News agencies whose names turn a story into a press report (the encyclopedic term)."""

    agencies: list[Text] = []


class Report(Strict):
    stock_phrases: list[Text] = []  # what `fabula report` counts as stock phrases (default: avoid.phrases)


class PackFile(Strict):
    pack: Meta
    generation: Generation = Generation()
    titles: Titles = Titles()
    caps: dict[str, Annotated[float, Field(gt=0)]] = {}
    avoid: Avoid = Avoid()
    checks: Checks = Checks()
    era: Era = Era()
    people: People = People()
    press: Press = Press()
    report: Report = Report()
    roles: Annotated[list[Role], Field(min_length=1)]
    nationalities: list[Nationality] = []
    grammar: dict[Annotated[str, StringConstraints(pattern=r"^\w+$")], Annotated[list[str], Field(min_length=1)]] = {}
    slots: dict[Key, Texts] = {}
    beats: Annotated[list[Beat], Field(min_length=1)]
    exemplars: list[Exemplar] = []

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)  # caps may be integers


# Which model a table's keys belong to (for "use one of: ..." in errors).
TABLES: dict[str, type[BaseModel]] = {
    "pack": Meta,
    "generation": Generation,
    "titles": Titles,
    "avoid": Avoid,
    "checks": Checks,
    "era": Era,
    "people": People,
    "press": Press,
    "report": Report,
    "roles": Role,
    "nationalities": Nationality,
    "beats": Beat,
    "exemplars": Exemplar,
}
