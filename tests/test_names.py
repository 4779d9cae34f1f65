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
