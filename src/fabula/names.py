"""Character names from Faker's locale name lists, always in Latin script.

Cyrillic and Georgian names are transliterated with per-language tables
(Russian and Bulgarian after BGN/PCGN, Ukrainian after the 2010 national
system, Macedonian after its official romanisation, Georgian after the 2002
national system), so a Ukrainian "Гайдамака" becomes "Haidamaka", not "Gaidamaka".
"""

from __future__ import annotations

import random
import unicodedata
from functools import lru_cache

_RU = dict(zip("абвгдеёжзийклмнопрстуфхцчшщъыьэюя",
               ["a", "b", "v", "g", "d", "e", "yo", "zh", "z", "i", "y", "k", "l", "m", "n", "o", "p", "r", "s", "t",
                "u", "f", "kh", "ts", "ch", "sh", "shch", "", "y", "", "e", "yu", "ya"]))
_UK = dict(zip("абвгґдеєжзиіїйклмнопрстуфхцчшщьюя'’ʼ",
               ["a", "b", "v", "h", "g", "d", "e", "ie", "zh", "z", "y", "i", "i", "i", "k", "l", "m", "n", "o", "p",
                "r", "s", "t", "u", "f", "kh", "ts", "ch", "sh", "shch", "", "iu", "ia", "", "", ""]))
_BG = dict(_RU, **{"щ": "sht", "ъ": "a", "ь": "y", "ю": "yu", "я": "ya"})
_MK = dict(zip("абвгдѓежзѕијклљмнњопрстќуфхцчџш",
               ["a", "b", "v", "g", "d", "gj", "e", "zh", "z", "dz", "i", "j", "k", "l", "lj", "m", "n", "nj", "o",
                "p", "r", "s", "t", "kj", "u", "f", "h", "c", "ch", "dzh", "sh"]))
_KA = dict(zip("აბგდევზთიკლმნოპჟრსტუფქღყშჩცძწჭხჯჰ",
               ["a", "b", "g", "d", "e", "v", "z", "t", "i", "k", "l", "m", "n", "o", "p", "zh", "r", "s", "t", "u",
                "p", "k", "gh", "q", "sh", "ch", "ts", "dz", "ts", "ch", "kh", "j", "h"]))
_TABLES = {"ru_RU": _RU, "uk_UA": _UK, "bg_BG": _BG, "mk_MK": _MK, "ka_GE": _KA}

# Locales whose Faker name lists are real names of that nationality (some
# locales, e.g. sr_BA, silently fall back to American names and are left out).
LATIN_LOCALES = frozenset(
    "lv_LV lt_LT et_EE pl_PL cs_CZ sk_SK hu_HU ro_RO de_DE de_AT hr_HR sl_SI uz_UZ az_AZ en_GB en_US en_IE fr_FR "
    "it_IT fi_FI sv_SE tr_TR es_ES nl_NL no_NO pt_PT da_DK".split()
)
SUPPORTED_LOCALES = LATIN_LOCALES | frozenset(_TABLES)


_UK_INITIAL = {"є": "ye", "ї": "yi", "й": "y", "ю": "yu", "я": "ya"}


def transliterate(text: str, locale: str) -> str:
    table = _TABLES.get(locale)
    if table is None:
        return text
    out = []
    for i, ch in enumerate(text):
        low = ch.lower()
        word_start = i == 0 or not text[i - 1].isalpha()
        if locale == "uk_UA" and word_start and low in _UK_INITIAL:
            t = _UK_INITIAL[low]  # Ukrainian 2010: word-initial є/ї/й/ю/я
        else:
            t = table.get(low)
        if t is None:
            out.append(ch)
        else:
            out.append(t.capitalize() if ch != low else t)
    return "".join(out)


def is_latin(text: str) -> bool:
    for ch in text:
        if ch.isalpha() and "LATIN" not in unicodedata.name(ch, ""):
            return False
    return True


@lru_cache(maxsize=None)
def _faker(locale: str):
    from faker import Faker

    return Faker(locale)


def draw_name(locale: str, gender: str, rng: random.Random) -> tuple[str, str]:
    """One (first, last) name for a gender from a locale, in Latin script.

    Deterministic for the rng's state: Faker is reseeded from it on every draw.
    """
    fake = _faker(locale)
    fake.seed_instance(rng.getrandbits(64))
    first = fake.first_name_male() if gender == "male" else fake.first_name_female()
    try:  # gendered surnames (Kowalska, Petrova) where the locale has them
        last = fake.last_name_male() if gender == "male" else fake.last_name_female()
    except AttributeError:
        last = fake.last_name()
    # Georgian script has no capitals, so capitalise after transliterating.
    first, last = (_cap(transliterate(x, locale)) for x in (first, last))
    return first, last


def _cap(name: str) -> str:
    return "-".join(p[:1].upper() + p[1:] for p in name.split("-"))
