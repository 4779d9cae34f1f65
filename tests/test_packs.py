import pytest

from fabula.errors import PackError
from fabula.packs import builtin_names, load_pack, parse_pack
from tests.conftest import run_cli

GOOD_TAIL = """
[[nationalities]]
key = "latvian"
locale = "lv_LV"
services = ["the KGB"]

[slots]
city = ["Riga", "Turku"]

[[beats]]
name = "one"
variants = ["{{ hero }} lived in {{ city }}."]
"""


def pack_text(head='[pack]\nname = "t"\nwords = 100\n', tail=GOOD_TAIL):
    return head + tail


def test_builtin_spy_pack_has_the_raw_material_of_diversity(spy):
    assert "spy" in builtin_names()
    assert len(spy.beats) >= 6
    assert all(len(b.variants) >= 8 for b in spy.beats)
    assert len(spy.slots["city"]) >= 40
    assert len(spy.slots["venue"]) >= 30
    assert len(spy.slots["summons"]) >= 12
    assert len(spy.slots["ending"]) >= 12
    services = " ".join(s for n in spy.nationalities for s in n.services)
    for svc in ("KGB", "Stasi", "StB", "GRU", "SB", "Securitate"):
        assert svc in services
    assert (spy.min_words, spy.words, spy.max_words) == (350, 450, 550)


def test_minimal_pack_parses():
    p = parse_pack(pack_text(), "t.toml")
    assert p.name == "t" and p.slots["city"] == ("Riga", "Turku")
    assert p.word_range() == (78, 122)


@pytest.mark.parametrize(
    "text, expect",
    [
        (pack_text(head='[pack]\nname = "t"\nwords = = 3\n'), "t.toml: invalid TOML"),
        (pack_text(head='[pack]\nname = "t"\nwords = "many"\n'), "t.toml, line 3: pack.words: must be a positive integer"),
        (pack_text(tail=GOOD_TAIL.replace('city = ["Riga", "Turku"]', "city = []")), "t.toml, line 11: slots.city: must be a non-empty list"),
        (pack_text(tail=GOOD_TAIL.replace("{{ city }}", "{{ town }}")), "t.toml, line 15: beats.one: unknown placeholder {{ town }}"),
        (pack_text(tail=GOOD_TAIL.replace("{{ hero }}", "{{ hero.age }}")), "line 15: beats.one: unknown placeholder {{ hero.age }}"),
        (pack_text(tail=GOOD_TAIL.replace('"lv_LV"', '"xx_XX"')), "line 7: nationalities[0].locale: 'xx_XX' is not a name locale"),
        (pack_text(tail=GOOD_TAIL.replace('"Riga", "Turku"', '"Riga", "Riga"')), "slots.city: lists 'Riga' twice"),
        (pack_text(tail=GOOD_TAIL.replace("{{ city }}.", "{{ city }.")), "beats.one: template"),
        (pack_text(tail=GOOD_TAIL + "[caps]\ntown = 0.1\n"), "caps.town: names no slot"),
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
    with pytest.raises(PackError, match="use one of: spy"):
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
    assert r.returncode == 0 and r.stdout.startswith("spy")
    r = run_cli("packs", "--show", "spy")
    assert r.returncode == 0 and "slot city: 48 values" in r.stdout
    import re

    # Every beat prints its openers' distinct expansions, which the grammar multiplies.
    counts = [int(m) for m in re.findall(r"openers, (\d+) expansions", r.stdout)]
    assert len(counts) == 7 and min(counts) >= 20
