"""Premise packs: TOML files that declare a genre (the format: ``schema.py``;
the guide: docs/packs.md).

A pack is validated completely on load. Every problem raises ``PackError`` with
one line: the file, the TOML line, what is wrong and what to change.
"""

from __future__ import annotations

import hashlib
import os
import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import jinja2
import pydantic
from jinja2 import meta, nodes

from fabula.errors import PackError
from fabula.names import SUPPORTED_LOCALES
from fabula.packs.grammar import Grammar, GrammarError
from fabula.packs.schema import TABLES, Beat, Checks, Era, Exemplar, Generation, Nationality, PackFile, People, Role

__all__ = ["Beat", "Exemplar", "Generation", "Nationality", "Pack", "Role", "builtin_names", "load_pack", "parse_pack"]

# Fields every character has in a template: {{ hero.first }}, {{ friend.his }}, ...
CHARACTER_FIELDS = frozenset("first last full nationality he him his He Him His".split())
# Default caps (share of the corpus); `city` is tighter because it is the most
# visible repeat in model-written fiction.
DEFAULT_CAPS = {"full_name": 1.0, "first_name": 0.02, "surname": 0.02, "slot": 0.15, "city": 0.10}

ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)


@dataclass(frozen=True)
class Pack:
    name: str
    title: str
    description: str
    words: int
    min_words: int
    max_words: int
    voice: str  # "third" | "first"
    generation: Generation
    caps: dict[str, float]
    avoid_phrases: tuple[str, ...]
    avoid_names: tuple[str, ...]
    roles: tuple[Role, ...]  # the first is the protagonist
    nationalities: tuple[Nationality, ...]
    slots: dict[str, tuple[str, ...]]
    beats: tuple[Beat, ...]
    titles: tuple[str, ...]
    exemplars: tuple[Exemplar, ...] = ()
    required: tuple[str, ...] = ()  # slots whose value every story must hold
    named: tuple[str, ...] = ()  # slots whose value every story must hold as written
    era: Era = Era()  # genre facts the scorer reads (fabula.genre compiles them)
    people: People = People()
    press_agencies: tuple[str, ...] = ()
    stock_phrases: tuple[str, ...] = ()  # what the report counts (default: avoid_phrases)
    checks: Checks = Checks()  # thresholds and skipped checks (fabula.checks.default_checks)
    grammar: Grammar = field(default_factory=Grammar, compare=False)  # [grammar] rules for [a|b] and #rule#
    source: str = ""  # file path, or "builtin:NAME"
    digest: str = field(default="", compare=False)  # sha256 of the file text, first 16 hex

    def cap(self, key: str) -> float:
        """The cap for a tally key: a share (< 1) or an absolute count (>= 1)."""
        if key in self.caps:
            return self.caps[key]
        return DEFAULT_CAPS.get(key, DEFAULT_CAPS["slot"] if key in self.slots else 1.0)

    def word_range(self, words: int | None = None) -> tuple[int, int]:
        """Accepted length for a target; scales the pack's range to a new target."""
        if words is None or words == self.words:
            return self.min_words, self.max_words
        return round(words * self.min_words / self.words), round(words * self.max_words / self.words)

    def nationalities_for(self, role: Role) -> list[Nationality]:
        return _open_to(self.nationalities, role)


def _open_to(nationalities, role: Role) -> list[Nationality]:
    """The nationalities a role may draw (none unless it draws nationalities)."""
    return [n for n in nationalities if n.roles is None or role.name in n.roles] if role.nationalities else []


def builtin_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("fabula.packs").iterdir() if p.name.endswith(".toml"))


def load_pack(name_or_path: str | os.PathLike[str]) -> Pack:
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
    """Turns a key path such as ('beats', 3, 'openers', 2) into 'FILE, line N'
    (tomllib reports positions only for syntax errors): each step narrows the
    search to the lines after the previous one."""

    def __init__(self, text: str, source: str):
        self.lines, self.source = text.splitlines(), source

    def line(self, loc: tuple, needle: str = "") -> int | None:
        at, found = 0, None
        for i, step in enumerate(loc):
            if isinstance(step, int):  # the n-th [[table]] of an array of tables, or the n-th item of a list
                hits = [j for j in range(at, len(self.lines)) if self.lines[j].strip() == f"[[{loc[i - 1]}]]"] if i else []
                if len(hits) > step:
                    at = found = hits[step]
                continue
            pat = re.compile(rf"^\s*(\[+\s*{re.escape(step)}\s*\]+|\"?{re.escape(step)}\"?\s*=|{re.escape(step)}\.)")
            j = next((j for j in range(at, len(self.lines)) if pat.search(self.lines[j])), None)
            if j is None:
                j = next((j for j in range(at, len(self.lines)) if step in self.lines[j]), None)
            if j is not None:
                at = found = j
        if needle:  # the value itself, at or after the key
            found = next((j for j in range(at, len(self.lines)) if needle in self.lines[j]), found)
        return None if found is None else found + 1

    def err(self, loc: tuple, problem: str, fix: str, needle: str = "") -> PackError:
        line = self.line(loc, needle)
        where = f"{self.source}, line {line}" if line else self.source
        return PackError(f"{where}: {_dotted(loc)}: {problem}; {fix}")


def _dotted(loc: tuple) -> str:
    return "".join(f"[{s}]" if isinstance(s, int) else (f".{s}" if i else s) for i, s in enumerate(loc)) or "pack"


def _schema_error(e: pydantic.ValidationError, w: _Where) -> PackError:
    err = e.errors()[0]
    loc = tuple(s for s in err["loc"] if s != "[key]")  # pydantic's marker for a dict key (the key is the last step)
    kind, msg = err["type"], err["msg"].removeprefix("Value error, ")
    if kind == "extra_forbidden":
        model: type[pydantic.BaseModel] = TABLES.get(str(loc[0]), PackFile) if len(loc) > 1 else PackFile
        return w.err(loc, "is not a known key", f"use one of: {', '.join(model.model_fields)}")
    if kind == "missing":
        return w.err(loc, "is missing", f"add {loc[-1]} = ... (see docs/packs.md)")
    if kind.startswith(("value_error", "assertion")):
        return w.err(loc, msg, "see docs/packs.md")
    got = err.get("input")
    return w.err(loc, f"{msg[0].lower()}{msg[1:]}, got {got!r}"[:200], "change the value as it says (see docs/packs.md)")


def parse_pack(text: str, source: str = "<pack>") -> Pack:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:  # its message ends with "(at line L, column C)"
        raise PackError(f"{source}: invalid TOML: {e}; fix the syntax at that place") from None
    w = _Where(text, source)
    try:
        f = PackFile.model_validate(data)
    except pydantic.ValidationError as e:
        raise _schema_error(e, w) from None
    try:
        grammar = Grammar({k: tuple(v) for k, v in f.grammar.items()})
    except GrammarError as e:
        raise w.err(("grammar",), str(e), "define every #rule# used, with no rule inside itself") from None
    _check_cast(f, w)
    _check_templates(f, grammar, w)
    m = f.pack
    exemplar_names = tuple(n for e in f.exemplars for n in e.avoid if n not in f.avoid.names)
    return Pack(
        name=m.name,
        title=m.title or m.name,
        description=m.description,
        words=m.words,
        min_words=m.min_words or round(m.words * 0.78),
        max_words=m.max_words or round(m.words * 1.22),
        voice=m.voice,
        generation=f.generation,
        caps=dict(f.caps),
        avoid_phrases=tuple(f.avoid.phrases),
        avoid_names=tuple(f.avoid.names) + exemplar_names,
        roles=tuple(f.roles),
        nationalities=tuple(n if n.adjective else n.model_copy(update={"adjective": n.key.title()}) for n in f.nationalities),
        slots={k: tuple(v) for k, v in f.slots.items()},
        beats=tuple(f.beats),
        titles=tuple(f.titles.variants),
        exemplars=tuple(f.exemplars),
        required=tuple(f.checks.required),
        named=tuple(f.checks.named),
        era=f.era,
        people=f.people,
        press_agencies=tuple(f.press.agencies),
        checks=f.checks,
        stock_phrases=tuple(f.report.stock_phrases or f.avoid.phrases),
        grammar=grammar,
        source=source,
        digest=hashlib.sha256(text.encode()).hexdigest()[:16],
    )


def _check_cast(f: PackFile, w: _Where) -> None:
    """What one table cannot say: roles, nationalities, slots and caps agree."""
    roles = [r.name for r in f.roles]
    for i, r in enumerate(f.roles):
        if roles.count(r.name) > 1 or r.name in f.slots:
            raise w.err(("roles", i, "name"), f"{r.name!r} is used twice (roles and slots share one namespace)", "rename one")
        if r.locale and r.locale not in SUPPORTED_LOCALES:
            raise w.err(("roles", i, "locale"), f"{r.locale!r} is not a name locale fabula supports", f"use one of: {', '.join(sorted(SUPPORTED_LOCALES))}")
        mine = _open_to(f.nationalities, r)
        if r.nationalities and not mine:
            raise w.err(("roles", i, "nationalities"), "no [[nationalities]] table is open to this role", f'add one, or list "{r.name}" in its roles')
        for t in r.traits:
            lacking = next((n.key for n in mine if t not in n.traits), None)
            if lacking:
                raise w.err(("roles", i, "traits"), f"nationality {lacking!r} has no traits.{t}", f'add traits.{t} = ["..."] to it')
    keys = [n.key for n in f.nationalities]
    for i, n in enumerate(f.nationalities):
        if n.locale not in SUPPORTED_LOCALES:
            raise w.err(
                ("nationalities", i, "locale"), f"{n.locale!r} is not a name locale fabula supports", f"use one of: {', '.join(sorted(SUPPORTED_LOCALES))}"
            )
        if keys.count(n.key) > 1:
            raise w.err(("nationalities", i, "key"), f"the key {n.key!r} is used twice", "give every nationality its own key")
        stray = next((x for x in n.roles or () if x not in roles), None)
        if stray:
            raise w.err(("nationalities", i, "roles"), f"{stray!r} is not a role", f"use some of: {', '.join(roles)}")
    for k, vs in f.slots.items():
        dup = next((x for x in vs if vs.count(x) > 1), None)
        if dup is not None:
            raise w.err(("slots", k), f"lists {dup!r} twice", "remove the duplicate", f'"{dup}"')
    known = {"full_name", "first_name", "surname", "nationality", "beat"} | set(f.slots)
    for k in f.caps:
        if k not in known:
            raise w.err(("caps", k), "names no slot or name field", f"use one of: {', '.join(sorted(known))}")
    for key, ks in (("required", f.checks.required), ("named", f.checks.named)):
        for k in ks:
            if k not in f.slots:
                raise w.err(("checks", key), f"{k!r} is not a slot", f"use some of: {', '.join(f.slots)}")
    if f.era.year_slot is not None and f.era.year_slot not in f.slots:
        raise w.err(("era", "year_slot"), f"{f.era.year_slot!r} is not a slot", f"use one of: {', '.join(f.slots)}")


def _check_templates(f: PackFile, grammar: Grammar, w: _Where) -> None:
    """Every placeholder names a role (and a field it has) or a slot; every
    grammar reference names a rule. Slot values and name lists may use the
    roles; beats, notes and titles may use the roles and every slot."""
    fields: dict[str, set[str]] = {r.name: set(CHARACTER_FIELDS) | set(r.traits) for r in f.roles}
    every: dict[str, set[str]] = {**fields, **{s: set() for s in f.slots}}
    todo: list[tuple[tuple, str, dict[str, set[str]]]] = [(("slots", k), v, fields) for k, vs in f.slots.items() for v in vs]
    todo += [(("titles", "variants"), v, every) for v in f.titles.variants]
    for i, r in enumerate(f.roles):
        todo += [(("roles", i, "first_names"), v, {}) for vs in (r.first_names or {}).values() for v in vs]
    for i, b in enumerate(f.beats):
        todo += [(("beats", i, key), v, every) for key in ("variants", "openers") for v in getattr(b, key)]
        todo += [(("beats", i, "note"), b.note, every)] if b.note else []
        for a in b.anchors:
            if a not in every:
                raise w.err(("beats", i, "anchors"), f"{a!r} is neither a role nor a slot", f"use some of: {', '.join(every)}")
    for loc, src, allowed in todo:
        _check_template(src, allowed, loc, w, grammar)


def _check_template(src: str, allowed: dict[str, set[str]], loc: tuple, w: _Where, grammar: Grammar) -> None:
    try:
        ast = ENV.parse(src)
        grammar.parsed(src)
    except jinja2.TemplateSyntaxError as e:
        raise w.err(loc, f"template {src[:60]!r} does not parse ({e.message})", "close every {{ ... }} and use plain names", src[:40]) from None
    except GrammarError as e:
        raise w.err(loc, f"{src[:60]!r}: {e}", "close every [ with ] and name only rules of [grammar]", src[:40]) from None
    for name in meta.find_undeclared_variables(ast):
        if name not in allowed:
            raise w.err(loc, f"unknown placeholder {{{{ {name} }}}}", f"use one of: {', '.join(allowed) or 'none here'}", src[:40])
    for node in ast.find_all(nodes.Getattr):
        if isinstance(node.node, nodes.Name) and node.attr not in allowed.get(node.node.name, ()):
            raise w.err(
                loc,
                f"unknown placeholder {{{{ {node.node.name}.{node.attr} }}}}",
                f"a character has: {', '.join(sorted(allowed.get(node.node.name, ())))}",
                src[:40],
            )
    for filt in ast.find_all(nodes.Filter):
        if filt.name not in ENV.filters:
            raise w.err(loc, f"unknown filter |{filt.name}", "use a Jinja built-in filter such as capitalize, upper, lower, title", src[:40])
