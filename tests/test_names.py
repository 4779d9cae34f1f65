import random

import pytest

from fabula.names import SUPPORTED_LOCALES, draw_name, is_latin, transliterate


@pytest.mark.parametrize(
    "src, locale, want",
    [
        ("Всеволод Сазонов", "ru_RU", "Vsevolod Sazonov"),
        ("Щербаков", "ru_RU", "Shcherbakov"),
        ("Гайдамака", "uk_UA", "Haidamaka"),
        ("Юлія Ярошенко", "uk_UA", "Yuliia Yaroshenko"),
        ("Щерев", "bg_BG", "Shterev"),
        ("Ѓорѓи", "mk_MK", "Gjorgji"),
        ("გელა", "ka_GE", "gela"),
        ("Zenta", "lv_LV", "Zenta"),
    ],
)
def test_transliteration(src, locale, want):
    assert transliterate(src, locale) == want


@pytest.mark.parametrize("locale", sorted(SUPPORTED_LOCALES))
def test_every_supported_locale_gives_latin_names(locale):
    rng = random.Random(locale)
    for gender in ("male", "female"):
        first, last = draw_name(locale, gender, rng)
        assert first and last and is_latin(first + last), (locale, first, last)
        assert first[0].isupper() and last[0].isupper()


def test_draw_is_deterministic_for_the_rng_state():
    assert draw_name("ru_RU", "female", random.Random(5)) == draw_name("ru_RU", "female", random.Random(5))


# Surname endings by gender where the language marks it; None: the language does not.
SURNAME_RULES = {
    "lt_LT": (("as", "is", "ys", "us", "a", "ė"), ("aitė", "ytė", "utė", "iūtė", "ienė")),
    "lv_LV": (("s", "š", "a", "e", "o"), ("a", "e", "ā", "ė")),
    "pl_PL": None,  # checked below: no -ski for a woman, no -ska for a man
    "cs_CZ": None,
    "sk_SK": None,  # checked below: women's surnames end in -ová / -á
    "ru_RU": None,
    "uk_UA": None,
    "bg_BG": None,
    "mk_MK": None,
}


def _first_names_by_gender(locale: str) -> tuple[set, set]:
    from fabula.names import _faker, _gendered

    if locale == "lt_LT":
        return set(_gendered(locale, "male")[0]), set(_gendered(locale, "female")[0])
    males, females = set(), set()
    for prov in _faker(locale).get_providers():
        males |= set(getattr(prov, "first_names_male", ()) or ())
        females |= set(getattr(prov, "first_names_female", ()) or ())
    return males, females


@pytest.mark.parametrize("locale", sorted(SUPPORTED_LOCALES))
def test_names_agree_with_the_characters_gender(locale):
    from fabula.names import _cap
    from fabula.names import transliterate as tr

    males, females = (({_cap(tr(n, locale)) for n in s}) for s in _first_names_by_gender(locale))
    assert males and females, f"{locale}: no gendered first-name lists"
    rng = random.Random(f"gender:{locale}")
    for _ in range(60):
        for gender in ("male", "female"):
            first, last = draw_name(locale, gender, rng)
            own, opposite = (males, females) if gender == "male" else (females, males)
            assert first in own or first not in opposite, (locale, gender, first)
            if locale == "lt_LT":
                assert first.endswith("s") == (gender == "male"), first
                fem_ends = SURNAME_RULES["lt_LT"][1]
                assert last.endswith(fem_ends) == (gender == "female"), (gender, last)
            if locale == "pl_PL":
                assert not (gender == "female" and last.endswith(("ski", "cki", "dzki"))), last
                assert not (gender == "male" and last.endswith(("ska", "cka", "dzka"))), last
            if locale in ("cs_CZ", "sk_SK") and gender == "female":
                assert last.endswith(("ová", "á")), last
            if locale in ("ru_RU", "bg_BG") and gender == "male":
                assert not last.endswith(("ova", "eva", "ina", "aya")), last


def test_lithuanian_and_polish_feminine_forms():
    from fabula.names import lithuanian_feminine, polish_feminine

    assert [lithuanian_feminine(s) for s in ("Kazlauskas", "Kairys", "Butkus", "Pocius", "Akelis", "Nausėda")] == [
        "Kazlauskaitė",
        "Kairytė",
        "Butkutė",
        "Pociūtė",
        "Akelytė",
        "Nausėdaitė",
    ]
    assert [polish_feminine(s) for s in ("Kowalski", "Zawadzki", "Nowak", "Narożny")] == ["Kowalska", "Zawadzka", "Nowak", "Narożna"]


def test_names_are_those_the_whole_faker_of_the_locale_holds_and_draws():
    # fabula builds each locale's person provider alone, not Faker(locale).
    from faker import Faker

    from fabula.names import _cap, _faker, first_names
    from fabula.names import transliterate as tr

    for locale in sorted(SUPPORTED_LOCALES):
        whole = Faker(locale)
        pools = [getattr(p, a, None) or () for p in whole.get_providers() for a in ("first_names", "first_names_male", "first_names_female")]
        assert first_names(locale) == {_cap(tr(n, locale)) for pool in pools for n in pool}, locale
        for seed in range(20):
            drawn = []
            for fake in (whole, _faker(locale)):
                fake.seed_instance(seed)
                drawn.append([fake.first_name_male(), fake.first_name_female(), fake.last_name()])
            assert drawn[0] == drawn[1], (locale, seed)
