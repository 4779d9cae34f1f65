"""Pack grammar: alternatives and reusable rules inside any pack string.

Two forms, expanded before the Jinja placeholders are filled:

- ``[a|b|c]`` picks one alternative; alternatives nest (``[on [a|the] bench|at
  home]``) and may be empty (``[very |]``);
- ``#rule#`` expands a rule of the pack's ``[grammar]`` table (a list of
  alternatives, each itself a grammar string).

Text inside ``{{ ... }}`` is Jinja and is copied untouched, so ``{{ venue |
capitalize }}`` keeps its filter. A story never holds brackets or ``#``, so
neither needs escaping. Expansion is deterministic for the ``random.Random``
it is given (the planner passes the card's).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Union

# A parsed string is a sequence of parts: text, a choice among sequences, or a rule.
Part = Union[str, "Choice", "Rule"]


@dataclass(frozen=True)
class Choice:
    options: tuple[tuple[Part, ...], ...]


@dataclass(frozen=True)
class Rule:
    name: str


# A compiled grammar string: the text itself where it draws nothing, else a
# function of the generator's ``_randbelow`` (what ``random.choice`` calls:
# the same draws in the same order as walking the parts, at a third of the
# cost, which matters at a few hundred expansions a card).
Compiled = Union[str, Callable[[Callable[[int], int]], str]]


class GrammarError(ValueError):
    """A grammar string that does not parse; the message says what to change."""


def parse(src: str) -> tuple[Part, ...]:
    parts, i = _seq(src, 0, top=True)
    return parts


def _seq(src: str, i: int, top: bool) -> tuple[tuple[Part, ...], int]:
    """Parse from ``i`` until ``|`` or ``]`` (inside a choice) or the end."""
    out: list[Part] = []
    buf: list[str] = []
    while i < len(src):
        c = src[i]
        if src.startswith("{{", i):  # Jinja: copy through the closing braces
            end = src.find("}}", i)
            if end < 0:
                raise GrammarError("a {{ has no closing }}")
            buf.append(src[i : end + 2])
            i = end + 2
        elif c == "[":
            if buf:
                out.append("".join(buf))
                buf = []
            options = []
            i += 1
            while True:
                opt, i = _seq(src, i, top=False)
                options.append(opt)
                if i >= len(src):
                    raise GrammarError("a [ has no closing ]")
                if src[i] == "]":
                    i += 1
                    break
                i += 1  # past '|'
            out.append(Choice(tuple(options)))
        elif c in "|]":
            if top:
                raise GrammarError(f"a {c!r} stands outside [ ... ]")
            break
        elif c == "#":
            end = src.find("#", i + 1)
            name = src[i + 1 : end] if end > 0 else ""
            if end < 0 or not name or not all(ch.isalnum() or ch == "_" for ch in name):
                raise GrammarError("a # must enclose a rule name, as in #place#")
            if buf:
                out.append("".join(buf))
                buf = []
            out.append(Rule(name))
            i = end + 1
        else:
            buf.append(c)
            i += 1
    if buf:
        out.append("".join(buf))
    return tuple(out), i


class Grammar:
    """The pack's rules, parsed once; expands and counts pack strings."""

    def __init__(self, rules: dict[str, tuple[str, ...]] | None = None):
        self.rules: dict[str, tuple[tuple[Part, ...], ...]] = {}
        for name, alts in (rules or {}).items():
            if not alts:
                raise GrammarError(f"rule #{name}# has no alternatives")
            self.rules[name] = tuple(parse(a) for a in alts)
        self._cache: dict[str, tuple[Part, ...]] = {}
        self._compiled: dict[str, Compiled] = {}
        self._compiled_rules: dict[str, Compiled] = {}
        self._counts: dict[str, int] = {}
        for name in self.rules:
            self._check_rule(name, ())

    def __getstate__(self) -> dict:
        """For pickling (the planner runs in a process of its own): the compiled
        functions are rebuilt there, on first use."""
        return {**self.__dict__, "_compiled": {}, "_compiled_rules": {}}

    def _check_rule(self, name: str, stack: tuple[str, ...]) -> None:
        if name in stack:
            raise GrammarError(f"rule #{name}# refers to itself ({' -> '.join((*stack, name))})")
        for alt in self.rules[name]:
            for r in _rules_in(alt):
                if r not in self.rules:
                    raise GrammarError(f"rule #{name}# uses #{r}#, which [grammar] does not define")
                self._check_rule(r, (*stack, name))

    def parsed(self, src: str) -> tuple[Part, ...]:
        if src not in self._cache:
            parts = parse(src)
            for r in _rules_in(parts):
                if r not in self.rules:
                    raise GrammarError(f"#{r}# is not a rule of [grammar]")
            self._cache[src] = parts
        return self._cache[src]

    def expand(self, src: str, rng: random.Random) -> str:
        if "[" not in src and "#" not in src:  # most strings: no draw, so plain packs plan as before
            return src
        fn = self._compiled.get(src)
        if fn is None:
            fn = self._compiled[src] = self._compile(self.parsed(src))
        return fn if isinstance(fn, str) else fn(rng._randbelow)  # type: ignore[attr-defined]

    def _compile(self, parts: tuple[Part, ...]) -> Compiled:
        items: list[Compiled] = []
        for p in parts:
            if isinstance(p, Choice):
                item = _choice([self._compile(o) for o in p.options])
            elif isinstance(p, Rule):
                item = self._rule(p.name)
            else:
                item = p
            if isinstance(item, str) and items and isinstance(items[-1], str):
                items[-1] += item
            else:
                items.append(item)
        if not items:
            return ""
        if len(items) == 1:
            return items[0]
        seq = tuple(items)

        def expand_seq(below: Callable[[int], int]) -> str:
            return "".join([i if i.__class__ is str else i(below) for i in seq])  # type: ignore[operator]

        return expand_seq

    def _rule(self, name: str) -> Compiled:
        fn = self._compiled_rules.get(name)
        if fn is None:  # rules never refer to themselves (checked on load), so this ends
            fn = self._compiled_rules[name] = _choice([self._compile(a) for a in self.rules[name]])
        return fn

    def count(self, src: str) -> int:
        """Distinct expansions (counting paths: two paths that give the same
        text count twice, so this is an upper bound)."""
        if src not in self._counts:
            self._counts[src] = self._count(self.parsed(src))
        return self._counts[src]

    def _count(self, parts: tuple[Part, ...]) -> int:
        n = 1
        for p in parts:
            if isinstance(p, Choice):
                n *= sum(self._count(o) for o in p.options)
            elif isinstance(p, Rule):
                n *= sum(self._count(o) for o in self.rules[p.name])
        return n


def _choice(options: list[Compiled]) -> Compiled:
    """One option drawn as ``random.choice`` draws it (even a lone option costs a draw)."""
    opts, n = tuple(options), len(options)
    if all(isinstance(o, str) for o in opts):

        def pick(below: Callable[[int], int]) -> str:
            return opts[below(n)]  # type: ignore[return-value]

        return pick

    def pick_and_expand(below: Callable[[int], int]) -> str:
        o = opts[below(n)]
        return o if o.__class__ is str else o(below)  # type: ignore[operator]

    return pick_and_expand


def _rules_in(parts: tuple[Part, ...]) -> list[str]:
    out = []
    for p in parts:
        if isinstance(p, Rule):
            out.append(p.name)
        elif isinstance(p, Choice):
            for o in p.options:
                out.extend(_rules_in(o))
    return out
