"""The pack grammar: [a|b] alternatives, #rule# references, Jinja left alone."""

import random
import re
from collections import Counter

import pytest

from fabula.errors import PackError
from fabula.packs import parse_pack
from fabula.packs.grammar import Grammar, GrammarError
from tests.test_packs import GOOD_TAIL, pack_text


def test_alternatives_nest_and_may_be_empty():
    g = Grammar()
    seen = Counter(g.expand("[on [a|the] bench|at home|]!", random.Random(i)) for i in range(400))
    assert set(seen) == {"on a bench!", "on the bench!", "at home!", "!"}
    assert g.count("[on [a|the] bench|at home|]!") == 4


def test_rules_expand_recursively_and_count_as_products():
    g = Grammar({"when": ["at [dawn|dusk]", "#day#"], "day": ["on Monday", "on Friday", "on Sunday"]})
    assert g.count("We met #when#, [twice|once].") == (2 + 3) * 2
    texts = {g.expand("We met #when#, [twice|once].", random.Random(i)) for i in range(500)}
    assert len(texts) == 10 and "We met on Friday, once." in texts


def test_jinja_inside_braces_is_copied_untouched():
    g = Grammar()
    src = "[{{ venue | capitalize }}|{{ hero.first }}] waited"
    out = {g.expand(src, random.Random(i)) for i in range(50)}
    assert out == {"{{ venue | capitalize }} waited", "{{ hero.first }} waited"}


def test_same_rng_state_same_expansion():
    g = Grammar({"x": ["a", "b", "c", "d"]})
    a = [g.expand("#x##x#[1|2|3]", random.Random(7)) for _ in range(3)]
    assert len(set(a)) == 1


def _walk(g, parts, rng):
    """Expansion as the grammar defines it: each choice by random.choice, depth first."""
    from fabula.packs.grammar import Choice, Rule

    out = []
    for p in parts:
        if isinstance(p, Choice):
            out.append(_walk(g, rng.choice(p.options), rng))
        elif isinstance(p, Rule):
            out.append(_walk(g, rng.choice(g.rules[p.name]), rng))
        else:
            out.append(p)
    return "".join(out)


@pytest.mark.parametrize("name", ["spy", "bedtime", "noir", "outpost"])
def test_compiled_expansion_draws_as_random_choice_does(name):
    from fabula.packs import load_pack

    pack = load_pack(name)
    g = pack.grammar
    sources = [v for values in pack.slots.values() for v in values]
    sources += [x for b in pack.beats for x in (*b.variants, *b.openers)] + list(pack.titles)
    sources += ["[a|[b|c] #%s#|]" % r for r in list(g.rules)[:3]] + ["[x]", "plain"]
    sources = [s for s in sources if "[" in s or "#" in s]
    assert len(sources) >= 8
    for seed in range(20):
        mine, walked = random.Random(seed), random.Random(seed)
        for src in sources:
            assert g.expand(src, mine) == _walk(g, g.parsed(src), walked), src
        assert mine.random() == walked.random()  # and the generator stands where it would


def test_a_rule_without_alternatives_is_refused():
    with pytest.raises(GrammarError, match="has no alternatives"):
        Grammar({"empty": ()})


def test_a_grammar_pickles_and_expands_the_same_after():
    import pickle

    g = Grammar({"place": ("[the|a] [dock|quay]", "#thing# yard"), "thing": ("coal", "salt")})
    g.expand("at #place#", random.Random(0))  # compiled before pickling
    h = pickle.loads(pickle.dumps(g))
    assert [h.expand("at #place#", random.Random(k)) for k in range(9)] == [g.expand("at #place#", random.Random(k)) for k in range(9)]


@pytest.mark.parametrize(
    "src, msg",
    [
        ("[a|b", "has no closing ]"),
        ("a|b", "outside [ ... ]"),
        ("#nope#", "not a rule"),
        ("a # b", "must enclose a rule name"),
    ],
)
def test_broken_strings_say_what_to_change(src, msg):
    with pytest.raises(GrammarError, match=re.escape(msg)):
        Grammar({"x": ["y"]}).parsed(src)


def test_rules_that_loop_or_name_unknown_rules_are_refused():
    with pytest.raises(GrammarError, match="refers to itself"):
        Grammar({"a": ["#b#"], "b": ["x #a#"]})
    with pytest.raises(GrammarError, match="#c#"):
        Grammar({"a": ["#c#"]})


def test_pack_errors_name_the_line():
    tail = GOOD_TAIL.replace("{{ hero }} lived in {{ city }}.", "{{ hero }} [lived|stayed in {{ city }}.")
    with pytest.raises(PackError, match=r"t.toml, line 25: beats\[0\].variants: .*has no closing \]; "):
        parse_pack(pack_text(tail=tail), "t.toml")
    tail = GOOD_TAIL + '\n[grammar]\nplace = ["#nowhere#"]\n'
    with pytest.raises(PackError, match=r"line \d+: grammar: .*#nowhere#"):
        parse_pack(pack_text(tail=tail), "t.toml")


def test_planner_expands_grammar_in_beats():
    from fabula.plan import Planner

    tail = (
        GOOD_TAIL.replace("{{ hero }} lived in {{ city }}.", "{{ hero }} #verb# {{ city }}.") + '\n[grammar]\nverb = ["lived in", "left", "loved", "hated"]\n'
    )
    p = parse_pack(pack_text(tail=tail), "t.toml")
    planner = Planner(p, seed=3, target=40)
    beats = [planner.next().beats[0] for _ in range(40)]
    verbs = Counter(b.split(" ", 2)[2].rsplit(" ", 1)[0] for b in beats)
    assert set(verbs) == {"lived in", "left", "loved", "hated"}
    assert not any("#" in b or "[" in b for b in beats)
    again = Planner(p, seed=3, target=40)
    assert [again.next().beats[0] for _ in range(40)] == beats
