from collections import Counter

import pytest

from fabula.names import is_latin
from fabula.packs import builtin_names, load_pack
from fabula.plan import Planner, cap_count
from fabula.records import Card


def plan(pack, n, seed=1):
    p = Planner(pack, seed, n)
    return [p.next() for _ in range(n)]


def test_same_pack_and_seed_give_identical_cards(spy):
    a, b = plan(spy, 12), plan(spy, 12)
    assert [c.to_dict() for c in a] == [c.to_dict() for c in b]
    assert [c.to_dict() for c in plan(spy, 12, seed=2)] != [c.to_dict() for c in a]


def test_cards_carry_everything_the_writer_needs(spy):
    for c in plan(spy, 5):
        assert c.title and c.hero.traits["service"] and c.slots["cover"] in c.openers[0] + c.beats[0] + c.notes[0]
        assert len(c.beats) == len(spy.beats)
        assert "{{" not in " ".join(c.beats) + c.title
        assert c.hero.full in c.beats[0] or c.hero.first in c.beats[0]
        nat = next(n for n in spy.nationalities if n.adjective == c.hero.nationality)
        assert nat.roles is None and c.hero.locale == nat.locale and c.hero.service in nat.traits["service"]


def test_names_are_latin_unique_and_spread(spy):
    cards = plan(spy, 100)
    people = [ch for c in cards for ch in c.cast.values()]
    fulls = [p.full for p in people]
    assert len(set(fulls)) == len(fulls)
    assert all(is_latin(f) for f in fulls)
    avoid = {n.lower() for n in spy.avoid_names}
    assert not any(p.first.lower() in avoid or p.last.lower() in avoid for p in people)
    firsts = Counter(p.first for p in people)
    assert firsts.most_common(1)[0][1] <= cap_count(0.02, 100)


def test_caps_hold_for_a_hundred_cards(spy):
    cards = plan(spy, 100)
    for slot, cap in (("city", 0.10), ("venue", 0.15), ("weather", 0.15), ("summons", 0.15), ("ending", 0.15)):
        top = Counter(c.choices[slot] for c in cards).most_common(1)[0][1]
        assert top <= cap * 100, (slot, top)
    # steering spreads values evenly: no city twice before every city is used once
    first48 = [c.choices["city"] for c in cards[:48]]
    assert len(set(first48)) == 48
    for i in range(len(spy.beats)):
        uses = Counter(c.beat_variants[i] for c in cards)
        assert max(uses.values()) - min(uses.values()) <= 1


@pytest.mark.parametrize("name", builtin_names())
def test_every_pack_plans_the_same_cards_again_and_after_a_resume(name):
    pack = load_pack(name)
    full = plan(pack, 10)
    assert [c.to_dict() for c in plan(pack, 10)] == [c.to_dict() for c in full]
    resumed = Planner(pack, 1, 10, history=full[:6])
    assert [resumed.next().to_dict() for _ in range(4)] == [c.to_dict() for c in full[6:]]


@pytest.mark.parametrize("name", builtin_names())
def test_every_pack_spreads_every_slot_and_role_under_its_caps(name):
    pack = load_pack(name)
    cards = plan(pack, 100)
    for slot, values in pack.slots.items():
        uses = Counter(c.choices[slot] for c in cards)
        assert max(uses.values()) <= cap_count(pack.cap(slot), 100), slot
        assert max(uses.values()) - min(uses[v] for v in values) <= 1, slot  # evenly: least-used first
    for role in pack.roles:
        genders = Counter(c.cast[role.name].gender for c in cards)
        assert max(genders.values()) - min(genders[g] for g in role.genders) <= 1
        firsts = Counter(c.cast[role.name].first for c in cards)
        assert firsts.most_common(1)[0][1] <= max(2, cap_count(pack.cap("first_name"), 100))
    for c in cards:  # no two people of one story share a first name
        assert len({ch.first for ch in c.cast.values()}) == len(c.cast)


def test_feasibility_reports_caps_that_cannot_hold(spy):
    from fabula.packs import parse_pack
    from tests.test_packs import GOOD_TAIL

    assert Planner(spy, 1, 100).feasibility() == []
    small = parse_pack('[pack]\nname = "t"\nwords = 100\n' + GOOD_TAIL + "[caps]\ncity = 0.1\n", "t.toml")
    problems = Planner(small, 1, 100).feasibility()
    assert problems == ["city: 2 values x cap 10 = 20 stories < 100; values will repeat beyond the cap (0.1); add values to the pack or raise caps.city"]
    assert Planner(small, 1, 2).feasibility() == []


def test_openers_carry_the_anchors_and_no_template_4_gram_reaches_10_percent(spy):
    """Steer mode pastes only the openers: over 100 cards, no word 4-gram of
    them (glue or slot content) is in more than 10 % of the stories, and each
    opener names the people and places its paragraph is anchored on."""
    from collections import Counter

    from fabula.checks import words
    from fabula.score import anchors

    planner = Planner(spy, 1, 100)
    cards = [planner.next() for _ in range(100)]
    df: Counter = Counter()
    for card in cards:
        toks = [w.lower() for w in words(" ".join(card.openers))]
        df.update({tuple(toks[i : i + 4]) for i in range(len(toks) - 3)})
        for i, opener in enumerate(card.openers):
            assert "[" not in opener and "#" not in opener and "{" not in opener
            for label, alts in anchors(card, i):
                assert any(a.lower() in opener.lower() for a in alts), (label, opener)
    gram, n = df.most_common(1)[0]
    assert n <= 8, (gram, n)


def test_wording_rule_keeps_the_pack_words_from_repeating(spy, monkeypatch):
    """Slot values and openers with a grammar: of a few expansions, the planner
    takes the least shared with the openers before, so over 100 cards the
    shared 4-grams (what self-repetition counts) fall well below what one
    random expansion gives; motifs and caps are unchanged."""
    import fabula.plan as plan_mod
    from fabula.text import grams as _grams

    def shared(cards):
        df: Counter = Counter()
        for card in cards:
            assert all("[" not in v and "#" not in v for v in card.slots.values())
            df.update(set(_grams(" ".join(card.openers))))
        return sum(v - 1 for v in df.values() if v > 1)

    steered = plan(spy, 100)
    monkeypatch.setattr(plan_mod, "WORDING_DRAWS", 1)
    random_words = plan(spy, 100)
    assert [c.choices for c in steered][:1] == [c.choices for c in random_words][:1]
    assert shared(steered) < 0.8 * shared(random_words), (shared(steered), shared(random_words))
    # the same motif reads differently from card to card
    top = Counter(c.choices["summons"] for c in steered).most_common(1)[0][0]
    same = [c.slots["summons"] for c in steered if c.choices["summons"] == top]
    assert len(same) >= 3 and len(set(same)) == len(same), same


def test_the_wording_rule_gives_the_least_shared_of_every_draw(spy, monkeypatch):
    """_wording stops counting a candidate once it reaches the best so far and
    renders none after one shares nothing: the cards are those of the rule
    itself (every draw rendered and counted in full, the first least shared wins)."""
    import math

    import fabula.plan as plan_mod

    def by_the_rule(self, src, ctx, rng):
        g = self.pack.grammar
        if g.count(src) == 1:
            return plan_mod._render(g.expand(src, rng), ctx)
        texts = [plan_mod._render(g.expand(src, rng), ctx) for _ in range(plan_mod.WORDING_DRAWS)]
        counts = self._counts
        scores = [sum(counts[b] for b in plan_mod._buckets(t)) for t in texts]
        return texts[scores.index(min(scores))]

    planner = Planner(spy, 1, 300)
    fast = [planner.next() for _ in range(300)]
    opener = fast[0].openers[1]
    full = planner.shared(opener)
    assert full > 1 and 1 <= planner.shared(opener, bound=1) <= full and planner.shared(opener, bound=math.inf) == full
    monkeypatch.setattr(Planner, "_wording", by_the_rule)
    assert plan(spy, 300) == fast


def test_the_plan_is_the_same_in_another_process_whatever_its_hash_seed():
    """What the README promises across machines: the cards depend on the pack,
    the seed and the versions only, not on the process (set order, hash seed)."""
    from tests.conftest import run_cli

    a = run_cli("plan", "-n", "12", "--seed", "5", "--json", env={"PYTHONHASHSEED": "1"})
    b = run_cli("plan", "-n", "12", "--seed", "5", "--json", env={"PYTHONHASHSEED": "987"})
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    assert a.stdout == b.stdout and len(a.stdout.splitlines()) == 12


SHAPE = """
[pack]
name = "garden"
words = 120

[[roles]]
name = "child"
locale = "en_US"
surname = false

[[roles]]
name = "friend"
genders = ["female"]
first_names = { female = ["Pip", "Hazel", "[Little|Old] Moss"] }

[slots]
animal = ["a hedgehog", "a rabbit", "a wren", "a toad"]
place = ["the garden", "the pond"]

[checks]
required = ["animal"]

[[beats]]
name = "one"
variants = ["{{ child }} met {{ friend }}, {{ animal }}, by {{ place }}, and {{ friend.he }} waved."]
anchors = ["child", "friend"]
"""


def test_a_pack_of_another_shape_plans_its_own_roles():
    """No nationalities, no hero: names from one Faker locale (first names
    only) and from the pack's own list with grammar; the planner knows no genre."""
    from fabula.packs import parse_pack

    p = parse_pack(SHAPE, "garden.toml")
    cards = plan(p, 40)
    for c in cards:
        child, friend = c.cast["child"], c.cast["friend"]
        assert list(c.cast) == ["child", "friend"] and c.hero is child
        assert child.last == "" and child.full == child.first and child.locale == "en_US" and child.nationality == ""
        assert friend.first in ("Pip", "Hazel", "Little Moss", "Old Moss") and friend.gender == "female"
        assert c.beats[0] == f"{child.first} met {friend.first}, {c.slots['animal']}, by {c.slots['place']}, and she waved."
        assert c.required == ["animal"] and c.anchors == [["child", "friend"]]
    genders = Counter(c.hero.gender for c in cards)
    assert genders["female"] == genders["male"] == 20  # drawn evenly
    assert max(Counter(c.slots["animal"] for c in cards).values()) == 10  # 4 values, 40 cards: evenly
    assert len({c.hero.first for c in cards}) >= 38  # the first-name cap (2 %: 1 in 40) holds where Faker can


def test_cards_of_plans_written_before_roles_still_load(spy):
    """plan.jsonl of an older corpus has hero and other, with service and
    cover on the character: resuming it must read the same people."""
    new = plan(spy, 1)[0].to_dict()
    old = {k: v for k, v in new.items() if k not in ("cast", "voice", "required")}
    for role, ch in new["cast"].items():
        old[role] = {
            **{k: v for k, v in ch.items() if k != "traits"},
            "service": ch["traits"].get("service", ""),
            "cover": new["slots"]["cover"] if role == "hero" else "",
        }
    card = Card.from_dict(old)
    assert card.to_dict() == new and card.hero.service == new["cast"]["hero"]["traits"]["service"]


def test_nationalities_are_drawn_evenly_per_role(spy):
    """The steering rule holds for nationalities too: 36 cards, 18 hero
    nationalities, each twice (before, the tally and the choice used
    different names, so the draw was plain random)."""
    heroes = [r for r in spy.roles if r.name == "hero"][0]
    n = len(spy.nationalities_for(heroes))
    cards = plan(spy, 2 * n)
    assert set(Counter(c.hero.nationality for c in cards).values()) == {2}
    others = Counter(c.cast["other"].nationality for c in cards)
    assert max(others.values()) - min(others.values()) <= 1 and len(others) == min(2 * n, len(spy.nationalities))


def test_render_fills_placeholders_as_jinja_does():
    """The planner fills simple placeholders without compiling each expanded
    string; the result is Jinja's, and anything else still goes to Jinja."""
    import jinja2
    import pytest

    from fabula.packs import ENV
    from fabula.plan import _render, _View
    from fabula.records import Character

    ctx = {"hero": _View(Character(first="Ilona", last="Kovács", gender="female", nationality="Hungarian")), "venue": "the ferry terminal", "n": 3}
    for src in [
        "At {{ venue|capitalize }}, {{ hero }} waited.",
        "{{hero.first}} and {{ hero.his | upper }} coat\n",
        "{{ hero.His }} {{ venue | title|lower }}",
        "no placeholder\n\n",
        "{{ n + 1 }} days",
        "{{ venue[:3] }}",
        "{% if n %}{{ hero.last }}{% endif %}",
        "{{ hero.full }}: {{ hero.nationality|lower }}",
    ]:
        assert _render(src, ctx) == ENV.from_string(src).render(**ctx), src
    for bad in ["{{ nobody }}", "{{ hero.age }}"]:
        with pytest.raises(jinja2.UndefinedError):
            _render(bad, ctx)


def test_a_role_whose_names_run_out_gives_a_name_again_rather_than_stop():
    """One first name and one surname: every card after the first draws a
    full name already planned (the spy pack's heroes reach this past ~22,000
    cards); the plan goes on with it."""
    from fabula.packs import parse_pack
    from tests.test_packs import pack_text

    tail = pack_text().split("[[roles]]")
    one_name = '\nname = "hero"\nfirst_names = { female = ["Ilse"], male = ["Aurel"] }\nlast_names = ["Vornic"]\n\n'
    pack = parse_pack("[[roles]]".join([tail[0], one_name, tail[2]]))
    cards = [c for p in [Planner(pack, 1, 20)] for c in (p.next() for _ in range(6))]
    assert {c.hero.last for c in cards} == {"Vornic"} and len({c.hero.full for c in cards}) <= 2


def test_a_pool_that_ran_out_spends_few_draws_and_resumes_the_same(monkeypatch):
    """Once a name pool holds no unused full name, each card in a row that
    still gets a used one halves the draws spent looking (the planner's cost
    per card grew with N before: 116 draws at 280,000 spy cards); a plan
    rebuilt from the cards, or restored from state(), goes on the same."""
    from fabula import plan as plan_mod
    from fabula.packs import parse_pack
    from tests.test_packs import pack_text

    tail = pack_text().split("[[roles]]")
    few = '\nname = "hero"\nfirst_names = { female = ["Ilse", "Oana"], male = ["Aurel", "Tudor"] }\nlast_names = ["Vornic", "Sandu"]\n\n'
    pack = parse_pack("[[roles]]".join([tail[0], few, tail[2]]))
    draws: list[int] = []
    real = Planner._name

    def counted(self, *a):
        draws[-1] += 1
        return real(self, *a)

    monkeypatch.setattr(Planner, "_name", counted)
    p = Planner(pack, 1, 40)
    cards = []
    for _ in range(40):
        draws.append(0)
        cards.append(p.next())
    # Both roles' pools run out early: the hero's 4 full names a gender, the
    # friend's 4 first names (their cap is 1 in a 40-card plan).
    assert max(draws[:8]) > plan_mod.NAME_DRAWS
    assert draws[-10:] == [2 * plan_mod.NAME_DRAWS_MIN] * 10
    assert p.name_streak and all(s >= 10 for s in p.name_streak.values())
    ahead = [p.next().to_dict() for _ in range(5)]
    rebuilt = Planner(pack, 1, 40, history=cards)
    restored = Planner.restore(pack, 1, 40, {**Planner(pack, 1, 40, history=cards).state(), "arrays": rebuilt.arrays()})
    assert rebuilt.name_streak == restored.name_streak
    assert [rebuilt.next().to_dict() for _ in range(5)] == ahead
    assert [restored.next().to_dict() for _ in range(5)] == ahead


def test_a_name_that_is_an_avoided_phrase_is_never_given():
    """The stock-phrase check would reject every draft of such a card (the
    Georgian first name Nazi against the spy pack's phrase "Nazi")."""
    from fabula.packs import parse_pack
    from tests.test_packs import pack_text

    tail = pack_text().split("[[roles]]")
    role = '\nname = "hero"\nfirst_names = { female = ["Ilse", "Shadow"], male = ["Aurel", "Shadow"] }\nlast_names = ["Vornic", "Sandu", "Preda"]\n\n'
    text = "[[roles]]".join([tail[0], role, tail[2]])
    firsts = {c.hero.first for c in plan(parse_pack(text), 20)}
    assert "Shadow" in firsts  # drawn when nothing avoids it
    assert "Shadow" not in {c.hero.first for c in plan(parse_pack(text + '\n[avoid]\nphrases = ["shadow"]\n'), 20)}
