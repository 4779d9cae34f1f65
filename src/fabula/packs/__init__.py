"""Premise packs: TOML files that declare a genre.

A pack is validated completely on load. Every problem raises ``PackError`` with
one line: the file, the line (or key), what is wrong and what to change. The
format is documented in the README ("Writing a pack") and shown by the
built-in ``spy.toml``.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta, nodes

from fabula.errors import PackError
from fabula.names import SUPPORTED_LOCALES
from fabula.packs.grammar import Grammar, GrammarError

# Fields of a character a template may use: {{ hero.first }}, {{ other.his }}, ...
CHARACTER_FIELDS = frozenset(
    "first last full nationality service cover he him his He Him His".split()
)
CHARACTERS = ("hero", "other")
# steer: a short opener carries the card's content and the model writes the
# rest of each paragraph; beats: the pack's whole beat sentence is pasted and
# continued; instruct: one chat request per story.
MODES = ("steer", "beats", "instruct")
# Default caps (share of the corpus); `city` is tighter because it is the most
# visible repeat in model-written fiction.
DEFAULT_CAPS = {"full_name": 1.0, "first_name": 0.02, "surname": 0.02, "slot": 0.15, "city": 0.10}

ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)


@dataclass(frozen=True)
class Nationality:
    key: str
    adjective: str
    locale: str
    hero: bool  # may the hero have this nationality?
    services: tuple[str, ...]


@dataclass(frozen=True)
class Beat:
    name: str
    variants: tuple[str, ...]  # sentences that open the paragraph (beats mode: pasted)
    openers: tuple[str, ...] = ()  # short openings that carry the card's content (steer mode); [] = variants
    note: str = ""  # what happens, as plain plan (instruct mode; never shown to readers)
    anchors: tuple[str, ...] = ()  # card fields the paragraph must name: hero, other, or a slot


@dataclass(frozen=True)
class Exemplar:
    """A story written for the pack; stands before a story in beats-mode prompts."""

    title: str
    paragraphs: tuple[str, ...]
    avoid: tuple[str, ...] = ()  # its names: kept out of the stories

    def block(self) -> str:
        return f"{self.title}\n\n" + "".join(f"{p}\n\n" for p in self.paragraphs)


@dataclass(frozen=True)
class Generation:
    mode: str = "beats"
    temperature: float = 0.8
    top_p: float = 0.92
    repeat_penalty: float = 1.18
    max_attempts: int = 4
    frame: str = ""


@dataclass(frozen=True)
class Pack:
    name: str
    title: str
    description: str
    words: int
    min_words: int
    max_words: int
    generation: Generation
    caps: dict[str, float]
    avoid_phrases: tuple[str, ...]
    avoid_names: tuple[str, ...]
    nationalities: tuple[Nationality, ...]
    slots: dict[str, tuple[str, ...]]
    beats: tuple[Beat, ...]
    titles: tuple[str, ...]
    exemplars: tuple[Exemplar, ...] = ()
    grammar: Grammar = field(default_factory=Grammar, compare=False)  # [grammar] rules for [a|b] and #rule#
    source: str = ""  # file path, or "builtin:NAME"
    digest: str = field(default="", compare=False)  # sha256 of the file text, first 16 hex

    def cap(self, key: str) -> float:
        """The cap for a tally key: a share (< 1) or an absolute count (>= 1)."""
        if key in self.caps:
            return self.caps[key]
        if key in self.slots:
            return DEFAULT_CAPS.get(key, DEFAULT_CAPS["slot"])
        return DEFAULT_CAPS.get(key, 1.0)

    def word_range(self, words: int | None = None) -> tuple[int, int]:
        """Accepted length for a target; scales the pack's range to a new target."""
        if words is None or words == self.words:
            return self.min_words, self.max_words
        return round(words * self.min_words / self.words), round(words * self.max_words / self.words)


def builtin_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("fabula.packs").iterdir() if p.name.endswith(".toml"))


def load_pack(name_or_path: str | Path) -> Pack:
    """Load a built-in pack by name, or a pack file by path."""
    text, source = _read(str(name_or_path))
    return parse_pack(text, source)


def _read(name_or_path: str) -> tuple[str, str]:
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists() or "/" in name_or_path:
        if not path.is_file():
            raise PackError(f"pack file {path} does not exist; give a path to a .toml pack or one of: {', '.join(builtin_names())}")
        try:
            return path.read_text(encoding="utf-8"), str(path)
        except (OSError, UnicodeDecodeError) as e:
            raise PackError(f"{path}: cannot read the pack ({e}); save it as UTF-8 text") from None
    if name_or_path not in builtin_names():
        raise PackError(f"no built-in pack named {name_or_path!r}; use one of: {', '.join(builtin_names())}, or a path to a .toml file")
    return resources.files("fabula.packs").joinpath(f"{name_or_path}.toml").read_text(encoding="utf-8"), f"builtin:{name_or_path}"


class _Where:
    """Turns a key path into 'FILE, line N' by finding it in the source text
    (tomllib reports no positions for values, only for syntax errors)."""

    def __init__(self, text: str, source: str):
        self.lines = text.splitlines()
        self.source = source

    def line_of(self, *needles: str) -> int | None:
        for needle in needles:
            if not needle:
                continue
            for i, line in enumerate(self.lines, 1):
                if needle in line:
                    return i
        return None

    def err(self, key: str, problem: str, fix: str, *needles: str) -> PackError:
        line = self.line_of(*needles) if needles else None
        where = f"{self.source}, line {line}" if line else self.source
        return PackError(f"{where}: {key}: {problem}; {fix}")


def parse_pack(text: str, source: str = "<pack>") -> Pack:
    import hashlib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        # tomllib's message ends with "(at line L, column C)"
        raise PackError(f"{source}: invalid TOML: {e}; fix the syntax at that place") from None
    w = _Where(text, source)

    meta_t = _table(data, "pack", w)
    name = _str(meta_t, "name", "pack.name", w)
    words = _int(meta_t, "words", "pack.words", w, default=450)
    min_words = _int(meta_t, "min_words", "pack.min_words", w, default=round(words * 0.78))
    max_words = _int(meta_t, "max_words", "pack.max_words", w, default=round(words * 1.22))
    if not 0 < min_words <= words <= max_words:
        raise w.err("pack.words", f"needs 0 < min_words <= words <= max_words, got {min_words} <= {words} <= {max_words}", "fix the three numbers", "min_words =", "words =")

    gen_t = data.get("generation", {})
    if not isinstance(gen_t, dict):
        raise w.err("generation", "must be a table", "write it as [generation]", "generation")
    gen = _generation(gen_t, w)

    nats = _nationalities(data, w)
    slots = _slots(data, w)
    beats = _beats(data, w)
    titles_t = data.get("titles", {"variants": ["Untitled"]})
    titles = _str_list(titles_t.get("variants") if isinstance(titles_t, dict) else None, "titles.variants", w, "[titles]")

    avoid_t = data.get("avoid", {})
    if not isinstance(avoid_t, dict):
        raise w.err("avoid", "must be a table", "write it as [avoid] with phrases = [...] and names = [...]", "avoid")
    avoid_phrases = tuple(_str_list(avoid_t.get("phrases", []), "avoid.phrases", w, "phrases", allow_empty=True))
    avoid_names = tuple(_str_list(avoid_t.get("names", []), "avoid.names", w, "names", allow_empty=True))

    caps = _caps(data, slots, w)
    grammar = _grammar(data, w)
    exemplars = _exemplars(data, w)
    avoid_names = avoid_names + tuple(n for e in exemplars for n in e.avoid if n not in avoid_names)

    # Placeholders: slot values may use the characters; beats and titles may use
    # the characters and every slot.
    for slot, values in slots.items():
        for v in values:
            _check_template(v, set(CHARACTERS), f"slots.{slot}", w, grammar)
    allowed = set(CHARACTERS) | set(slots)
    for beat in beats:
        for v in beat.variants:
            _check_template(v, allowed, f"beats.{beat.name}", w, grammar)
        for v in beat.openers:
            _check_template(v, allowed, f"beats.{beat.name}.openers", w, grammar)
        if beat.note:
            _check_template(beat.note, allowed, f"beats.{beat.name}.note", w, grammar)
        for a in beat.anchors:
            if a not in allowed:
                raise w.err(f"beats.{beat.name}.anchors", f"{a!r} is neither a character nor a slot",
                            f"use some of: {', '.join(sorted(allowed))}", f'"{a}"')
    for v in titles:
        _check_template(v, allowed, "titles.variants", w, grammar)

    return Pack(
        name=name,
        title=_str(meta_t, "title", "pack.title", w, default=name),
        description=_str(meta_t, "description", "pack.description", w, default=""),
        words=words,
        min_words=min_words,
        max_words=max_words,
        generation=gen,
        caps=caps,
        avoid_phrases=avoid_phrases,
        avoid_names=avoid_names,
        nationalities=nats,
        slots=slots,
        beats=beats,
        titles=tuple(titles),
        exemplars=exemplars,
        grammar=grammar,
        source=source,
        digest=hashlib.sha256(text.encode()).hexdigest()[:16],
    )


def _table(data: dict, key: str, w: _Where) -> dict:
    t = data.get(key)
    if not isinstance(t, dict):
        raise w.err(key, "missing or not a table", f"add a [{key}] table (see the built-in spy pack)", f"{key}")
    return t


def _str(t: dict, key: str, path: str, w: _Where, default: str | None = None) -> str:
    v = t.get(key, default)
    if not isinstance(v, str) or (default is None and not v.strip()):
        raise w.err(path, f"must be a non-empty string, got {v!r}", f'write {key} = "..."', f"{key} =", f"{key}=")
    return v


def _int(t: dict, key: str, path: str, w: _Where, default: int) -> int:
    v = t.get(key, default)
    if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
        raise w.err(path, f"must be a positive integer, got {v!r}", f"write {key} = a whole number such as {default}", f"{key} =", f"{key}=")
    return v


def _num(t: dict, key: str, path: str, w: _Where, default: float, lo: float, hi: float) -> float:
    v = t.get(key, default)
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not lo <= v <= hi:
        raise w.err(path, f"must be a number from {lo} to {hi}, got {v!r}", f"write {key} = a number such as {default}", f"{key} =", f"{key}=")
    return float(v)


def _str_list(v: Any, path: str, w: _Where, needle: str, allow_empty: bool = False) -> list[str]:
    if not isinstance(v, list) or (not v and not allow_empty):
        raise w.err(path, "must be a non-empty list of strings" if not allow_empty else "must be a list of strings", f'write it as {path.split(".")[-1]} = ["...", "..."]', f"{needle} =", needle)
    for item in v:
        if not isinstance(item, str) or not item.strip():
            raise w.err(path, f"holds {item!r}, which is not a non-empty string", "make every item a quoted, non-empty string", repr(item) if not isinstance(item, str) else f'"{item}"', f"{needle} =")
    return v


def _generation(t: dict, w: _Where) -> Generation:
    known = {"mode", "temperature", "top_p", "repeat_penalty", "max_attempts", "frame"}
    for k in t:
        if k not in known:
            raise w.err(f"generation.{k}", "is not a known setting", f"use one of: {', '.join(sorted(known))}", f"{k} =", f"{k}=")
    mode = t.get("mode", "beats")
    if mode not in MODES:
        raise w.err("generation.mode", f"must be one of {', '.join(MODES)}, got {mode!r}", 'write mode = "beats"', "mode =")
    frame = t.get("frame", "")
    if not isinstance(frame, str):
        raise w.err("generation.frame", "must be a string", 'write frame = "..."', "frame =")
    return Generation(
        mode=mode,
        temperature=_num(t, "temperature", "generation.temperature", w, 0.8, 0.0, 2.0),
        top_p=_num(t, "top_p", "generation.top_p", w, 0.92, 0.01, 1.0),
        repeat_penalty=_num(t, "repeat_penalty", "generation.repeat_penalty", w, 1.18, 1.0, 2.0),
        max_attempts=_int(t, "max_attempts", "generation.max_attempts", w, 4),
        frame=frame,
    )


def _nationalities(data: dict, w: _Where) -> tuple[Nationality, ...]:
    raw = data.get("nationalities")
    if not isinstance(raw, list) or not raw:
        raise w.err("nationalities", "missing or empty", "add [[nationalities]] tables with key, adjective, locale, hero, services", "nationalities")
    out = []
    for i, t in enumerate(raw):
        path = f"nationalities[{i}]"
        if not isinstance(t, dict):
            raise w.err(path, "must be a table", "write it as [[nationalities]]", "nationalities")
        key = _str(t, "key", f"{path}.key", w)
        locale = _str(t, "locale", f"{path}.locale", w)
        if locale not in SUPPORTED_LOCALES:
            raise w.err(f"{path}.locale", f"{locale!r} is not a name locale fabula supports", f"use one of: {', '.join(sorted(SUPPORTED_LOCALES))}", f'"{locale}"')
        hero = t.get("hero", True)
        if not isinstance(hero, bool):
            raise w.err(f"{path}.hero", f"must be true or false, got {hero!r}", "write hero = true", f'"{key}"')
        # services: what a hero of this nationality may have served; optional
        # for nationalities only the other person has.
        services = _str_list(t["services"], f"{path}.services", w, "services") if "services" in t else [""]
        if hero and services == [""]:
            raise w.err(f"{path}.services", "is missing for a hero nationality", 'add services = ["..."]', f'"{key}"')
        adjective = _str(t, "adjective", f"{path}.adjective", w, default=key.title())
        out.append(Nationality(key=key, adjective=adjective, locale=locale, hero=hero, services=tuple(services)))
    if not any(n.hero for n in out):
        raise w.err("nationalities", "no nationality has hero = true", "mark at least one nationality with hero = true", "[[nationalities]]")
    keys = [n.key for n in out]
    dup = next((k for k in keys if keys.count(k) > 1), None)
    if dup:
        raise w.err("nationalities", f"the key {dup!r} is used twice", "give every nationality its own key", f'"{dup}"')
    return tuple(out)


def _slots(data: dict, w: _Where) -> dict[str, tuple[str, ...]]:
    t = _table(data, "slots", w)
    out = {}
    for name, values in t.items():
        if name in CHARACTERS:
            raise w.err(f"slots.{name}", "is a character name, not a slot", f"rename the slot (hero and other are reserved)", f"{name} =")
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise w.err(f"slots.{name}", "is not a usable placeholder name", "use lower-case letters, digits and _ only", f"{name} =")
        vals = _str_list(values, f"slots.{name}", w, name)
        if len(set(vals)) != len(vals):
            dup = next(v for v in vals if vals.count(v) > 1)
            raise w.err(f"slots.{name}", f"lists {dup!r} twice", "remove the duplicate", f'"{dup}"')
        out[name] = tuple(vals)
    return out


def _beats(data: dict, w: _Where) -> tuple[Beat, ...]:
    raw = data.get("beats")
    if not isinstance(raw, list) or not raw:
        raise w.err("beats", "missing or empty", "add one [[beats]] table per paragraph, each with name and variants", "beats")
    out = []
    for i, t in enumerate(raw):
        if not isinstance(t, dict):
            raise w.err(f"beats[{i}]", "must be a table", "write it as [[beats]]", "beats")
        name = _str(t, "name", f"beats[{i}].name", w)
        unknown = set(t) - {"name", "variants", "openers", "note", "anchors"}
        if unknown:
            k = sorted(unknown)[0]
            raise w.err(f"beats.{name}.{k}", "is not a beat field", "use name, variants, openers, note and anchors", f"{k} =")
        openers = _str_list(t.get("openers", []), f"beats.{name}.openers", w, "openers", allow_empty=True)
        note = _str(t, "note", f"beats.{name}.note", w, default="")
        anchors = _str_list(t.get("anchors", []), f"beats.{name}.anchors", w, "anchors", allow_empty=True)
        out.append(Beat(name=name, variants=tuple(_str_list(t.get("variants"), f"beats.{name}.variants", w, "variants")),
                        openers=tuple(openers), note=note, anchors=tuple(anchors)))
    return tuple(out)


def _exemplars(data: dict, w: _Where) -> tuple[Exemplar, ...]:
    raw = data.get("exemplars", [])
    if not isinstance(raw, list):
        raise w.err("exemplars", "must be a list of tables", "write each one as [[exemplars]]", "exemplars")
    out = []
    for i, t in enumerate(raw):
        path = f"exemplars[{i}]"
        if not isinstance(t, dict):
            raise w.err(path, "must be a table", "write it as [[exemplars]]", "exemplars")
        unknown = set(t) - {"title", "paragraphs", "avoid"}
        if unknown:
            k = sorted(unknown)[0]
            raise w.err(f"{path}.{k}", "is not an exemplar field", "use title, paragraphs and avoid", f"{k} =")
        title = _str(t, "title", f"{path}.title", w)
        paras = t.get("paragraphs")
        texts = _str_list(paras, f"{path}.paragraphs", w, "paragraphs")
        pairs = [" ".join(p.split()) for p in texts]
        avoid = _str_list(t.get("avoid", []), f"{path}.avoid", w, "avoid", allow_empty=True)
        out.append(Exemplar(title=title, paragraphs=tuple(pairs), avoid=tuple(avoid)))
    return tuple(out)


def _caps(data: dict, slots: dict, w: _Where) -> dict[str, float]:
    t = data.get("caps", {})
    if not isinstance(t, dict):
        raise w.err("caps", "must be a table", "write it as [caps]", "caps")
    known = {"full_name", "first_name", "surname", "nationality", "beat"} | set(slots)
    caps = {}
    for k, v in t.items():
        if k not in known:
            raise w.err(f"caps.{k}", "names no slot or name field", f"use one of: {', '.join(sorted(known))}", f"{k} =")
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0:
            raise w.err(f"caps.{k}", f"must be a share between 0 and 1 or a count >= 1, got {v!r}", "write e.g. 0.1 (10% of the corpus) or 2 (two stories)", f"{k} =")
        caps[k] = float(v)
    return caps


def _grammar(data: dict, w: _Where) -> Grammar:
    raw = data.get("grammar", {})
    if not isinstance(raw, dict):
        raise w.err("grammar", "must be a table of rules", 'write it as [grammar] with lines like place = ["a quay", "a [tram|bus] stop"]', "grammar")
    rules = {}
    for name, alts in raw.items():
        if not name.replace("_", "").isalnum():
            raise w.err(f"grammar.{name}", "is not a valid rule name", "use letters, digits and _", f"{name} =")
        if not isinstance(alts, list) or not alts or not all(isinstance(a, str) for a in alts):
            raise w.err(f"grammar.{name}", "must be a non-empty list of strings (\"\" is an empty alternative)",
                        f'write it as {name} = ["...", "..."]', f"{name} =")
        rules[name] = tuple(alts)
    try:
        return Grammar(rules)
    except GrammarError as e:
        raise w.err("grammar", str(e), "define every #rule# used, with no rule inside itself", "[grammar]") from None


def _check_template(src: str, allowed: set[str], path: str, w: _Where, grammar: Grammar | None = None) -> None:
    try:
        ast = ENV.parse(src)
    except jinja2.TemplateSyntaxError as e:
        raise w.err(path, f"template {src!r} does not parse ({e.message})", "close every {{ ... }} and use plain names", src[:40]) from None
    if grammar is not None:
        try:
            grammar.parsed(src)
        except GrammarError as e:
            raise w.err(path, f"{src[:60]!r}: {e}", "close every [ with ] and name only rules of [grammar]", src[:40]) from None
    for name in meta.find_undeclared_variables(ast):
        if name not in allowed:
            raise w.err(path, f"unknown placeholder {{{{ {name} }}}}", f"use one of: {', '.join(sorted(allowed))}", "{{ " + name, "{{" + name, src[:40])
    for node in ast.find_all(nodes.Getattr):
        if isinstance(node.node, nodes.Name) and node.node.name in CHARACTERS and node.attr not in CHARACTER_FIELDS:
            raise w.err(path, f"unknown placeholder {{{{ {node.node.name}.{node.attr} }}}}", f"a character has: {', '.join(sorted(CHARACTER_FIELDS))}", f"{node.node.name}.{node.attr}")
    for node in ast.find_all(nodes.Filter):
        if node.name not in ENV.filters:
            raise w.err(path, f"unknown filter |{node.name}", "use a Jinja built-in filter such as capitalize, upper, lower, title", f"{node.name}")
