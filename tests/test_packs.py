import pytest

from fabula.errors import PackError
from fabula.packs import builtin_names, load_pack, parse_pack
from tests.conftest import run_cli

GOOD_TAIL = """
[[roles]]
name = "hero"
nationalities = true
traits = ["service"]

[[roles]]
name = "friend"
first_names = { female = ["Pip", "Hazel"], male = ["Bramble", "Moss"] }
surname = false

[[nationalities]]
key = "latvian"
locale = "lv_LV"
traits.service = ["the KGB"]

[slots]
city = ["Riga", "Turku"]

[[beats]]
name = "one"
variants = ["{{ hero }} lived in {{ city }}."]
"""


def pack_text(head='[pack]\nname = "t"\nwords = 100\n', tail=GOOD_TAIL):
    return head + tail


@pytest.mark.parametrize("name", builtin_names())
def test_every_builtin_pack_loads_plans_and_its_caps_hold_at_100(name):
    from fabula.plan import Planner

    p = load_pack(name)
    assert p.source == f"builtin:{name}" and p.roles and p.beats
    planner = Planner(p, 1, 100)
    assert planner.feasibility() == []
    for card in (planner.next() for _ in range(20)):
        text = " ".join(card.openers + card.beats + card.notes + [card.title])
        assert "{{" not in text and "#" not in text and "[" not in text
        assert all(card.slots[k] for k in card.required)


def test_builtin_spy_pack_has_the_raw_material_of_diversity(spy):
    assert "spy" in builtin_names()
    assert len(spy.beats) >= 6
    assert all(len(b.variants) >= 8 for b in spy.beats)
    assert len(spy.slots["city"]) >= 40
    assert len(spy.slots["venue"]) >= 30
    assert len(spy.slots["summons"]) >= 12
    assert len(spy.slots["ending"]) >= 12
    services = " ".join(s for n in spy.nationalities for s in n.traits.get("service", ()))
    for svc in ("KGB", "Stasi", "StB", "GRU", "SB", "Securitate"):
        assert svc in services
    assert (spy.min_words, spy.words, spy.max_words) == (350, 450, 550)


def test_minimal_pack_parses():
    p = parse_pack(pack_text(), "t.toml")
    assert p.name == "t" and p.slots["city"] == ("Riga", "Turku")
    assert p.word_range() == (78, 122)


def T(old, new):  # GOOD_TAIL with one change
    assert old in GOOD_TAIL
    return pack_text(tail=GOOD_TAIL.replace(old, new, 1))


@pytest.mark.parametrize(
    "text, expect",
    [
        (pack_text(head='[pack]\nname = "t"\nwords = = 3\n'), "t.toml: invalid TOML"),
        (pack_text(head='[pack]\nname = "t"\nwords = "many"\n'), "t.toml, line 3: pack.words: input should be a valid integer, got 'many'"),
        (pack_text(head='[pack]\nname = "t"\nwrods = 3\n'), "t.toml, line 3: pack.wrods: is not a known key; use one of: name, title"),
        (T("traits = [", "trait = ["), "t.toml, line 8: roles[0].trait: is not a known key; use one of: name, label, genders"),
        (T("surname = false", 'surname = "no"'), "t.toml, line 13: roles[1].surname: input should be a valid boolean"),
        (T('male = ["Bramble", "Moss"]', 'men = ["Bramble"]'), "line 12: roles[1].first_names.men: input should be 'female' or 'male'"),
        (
            T('first_names = { female = ["Pip", "Hazel"], male = ["Bramble", "Moss"] }', 'locale = "en_US"\nnationalities = true'),
            "line 10: roles[1]: has nationalities and locale; give exactly one of",
        ),
        (T('city = ["Riga", "Turku"]', "city = []"), "t.toml, line 21: slots.city: list should have at least 1 item"),
        (T("{{ city }}", "{{ town }}"), "t.toml, line 25: beats[0].variants: unknown placeholder {{ town }}"),
        (T("{{ hero }}", "{{ hero.age }}"), "line 25: beats[0].variants: unknown placeholder {{ hero.age }}; a character has: He, Him"),
        (T("{{ hero }}", "{{ friend.service }}"), "unknown placeholder {{ friend.service }}"),  # a trait of the hero only
        (T('"lv_LV"', '"xx_XX"'), "line 17: nationalities[0].locale: 'xx_XX' is not a name locale"),
        (T('traits.service = ["the KGB"]', 'traits.rank = ["major"]'), "line 8: roles[0].traits: nationality 'latvian' has no traits.service"),
        (T('"Riga", "Turku"', '"Riga", "Riga"'), "line 21: slots.city: lists 'Riga' twice"),
        (T("{{ city }}.", "{{ city }."), "beats[0].variants: template"),
        (T("[slots]", '[checks]\nrequired = ["town"]\n\n[slots]'), "checks.required: 'town' is not a slot"),
        (pack_text(tail=GOOD_TAIL + "[caps]\ntown = 0.1\n"), "caps.town: names no slot"),
        (pack_text(tail=GOOD_TAIL + '[checks]\nnamed = ["town"]\n'), "checks.named: 'town' is not a slot"),
        (pack_text(tail=GOOD_TAIL + '[era]\nyear_slot = "year"\n'), "era.year_slot: 'year' is not a slot"),
        (pack_text(tail=GOOD_TAIL + "[era]\nnever = ['(unclosed']\n"), "is not a regular expression"),
        (pack_text(tail=GOOD_TAIL + "[[era.events]]\npattern = 'x'\nyears = [1990, 1980]\n"), "the first comes before the last"),
        (pack_text(tail=GOOD_TAIL + '[people]\nsurnames = ["ov"]\n'), "people.surnames: is not a known key; use one of: surname_endings, not_people"),
    ],
)
def test_broken_packs_name_file_line_and_fix(text, expect):
    with pytest.raises(PackError) as e:
        parse_pack(text, "t.toml")
    msg = str(e.value)
    assert expect in msg
    assert "\n" not in msg
    assert ";" in msg  # every message carries a fix after the semicolon


def test_unknown_builtin_pack_lists_the_known_ones():
    with pytest.raises(PackError, match=f"use one of: {', '.join(builtin_names())}, or a path"):
        load_pack("westerns")


def test_cli_broken_pack_exits_2_with_one_line_and_writes_nothing(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(pack_text(tail=GOOD_TAIL.replace("{{ city }}", "{{ town }}")))
    out = tmp_path / "corpus"
    r = run_cli("write", "-n", "1", "--pack", str(bad), "--backend", "fake", "--out", str(out))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fabula: error: ") and "unknown placeholder {{ town }}" in lines[0]
    assert not out.exists()


def test_cli_packs_lists_and_shows(tmp_path):
    r = run_cli("packs")
    assert r.returncode == 0 and [line.split()[0] for line in r.stdout.splitlines()[: len(builtin_names())]] == builtin_names()
    r = run_cli("packs", "--show", "spy")
    assert r.returncode == 0 and "slot city: 48 values" in r.stdout
    import re

    # Every beat prints its openers' distinct expansions, which the grammar multiplies.
    counts = [int(m) for m in re.findall(r"openers, (\d+) expansions", r.stdout)]
    assert len(counts) == 7 and min(counts) >= 20
