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

# Letter tables, kept as rows (a letter string beside its transliterations), not one item a line.
# fmt: off
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
# fmt: on
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
        t: str | None
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
    """Faker's generator for a locale with its person provider alone: the
    names Faker(locale) draws for a seed, without finding and building every
    other provider (0.6 s of every start for the 32 locales)."""
    from faker.factory import Factory

    return Factory.create(locale, providers=["faker.providers.person"])


def draw_name(locale: str, gender: str, rng: random.Random) -> tuple[str, str]:
    """One (first, last) name for a gender from a locale, in Latin script.

    Deterministic for the rng's state: Faker is reseeded from it on every draw.
    Where Faker's lists for a locale are not split by gender (Lithuanian
    first names and surnames, Polish surnames) or hold a few of the other
    gender's forms (Bulgarian), ``_gendered`` sorts them by the language's own
    endings.
    """
    fake = _faker(locale)
    seed = rng.getrandbits(64)
    fake.seed_instance(seed)
    if locale in _GENDERED:
        firsts, lasts = _gendered(locale, gender)
        pick = random.Random(seed)
        first = pick.choice(firsts) if firsts else (fake.first_name_male() if gender == "male" else fake.first_name_female())
        last = pick.choice(lasts)
    else:
        first = fake.first_name_male() if gender == "male" else fake.first_name_female()
        try:  # gendered surnames (Petrova, Nováková) where the locale has them
            last = fake.last_name_male() if gender == "male" else fake.last_name_female()
        except AttributeError:
            last = fake.last_name()
    # Georgian script has no capitals, so capitalise after transliterating.
    # " ".join(split()): Faker's az_AZ lists hold names with a trailing space ("Fuad "), which made "Fuad  Əliyev".
    first, last = (" ".join(_cap(transliterate(x, locale)).split()) for x in (first, last))
    return first, last


_GENDERED = ("lt_LT", "pl_PL", "bg_BG")


@lru_cache(maxsize=None)
def _gendered(locale: str, gender: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(first names, surnames) of one gender, for locales whose Faker lists mix them."""
    male = gender == "male"
    if locale == "lt_LT":
        from faker.providers.person.lt_LT import Provider

        # Lithuanian given names: women's end in -a or -ė, men's in -s.
        firsts = sorted({n for n in Provider.first_names if n.endswith("s") == male})
        lasts = sorted({n if male else lithuanian_feminine(n) for n in Provider.last_names})
        return tuple(firsts), tuple(lasts)
    if locale == "pl_PL":
        from faker.providers.person.pl_PL import Provider as Polish

        unisex = set(Polish.unisex_last_names)
        men: set[str] = set(Polish.male_last_names)
        if male:
            polish = men | {n for n in unisex if not _polish_feminine(n, unisex)}
        else:
            polish = {polish_feminine(n) for n in men} | {n for n in unisex if not _polish_masculine(n, unisex)}
        return (), tuple(sorted(polish))
    if locale == "bg_BG":
        from faker.providers.person.bg_BG import Provider as Bulgarian

        # Faker's men's list holds a few women's forms (Пройкова, Пеева).
        if male:
            return (), tuple(n for n in Bulgarian.last_names_male if not n.endswith(("ова", "ева", "ина")))
        return (), tuple(Bulgarian.last_names_female)
    raise KeyError(locale)


def lithuanian_feminine(surname: str) -> str:
    """A man's surname as an unmarried woman's: Kazlauskas → Kazlauskaitė,
    Kairys → Kairytė, Butkus → Butkutė, Pocius → Pociūtė, Nausėda → Nausėdaitė."""
    for end, fem in (("ius", "iūtė"), ("as", "aitė"), ("is", "ytė"), ("ys", "ytė"), ("us", "utė"), ("a", "aitė"), ("ė", "aitė")):
        if surname.endswith(end):
            return surname[: -len(end)] + fem
    return surname


def polish_feminine(surname: str) -> str:
    """Kowalski → Kowalska, Zawadzki → Zawadzka, Nowak → Nowak."""
    for end, fem in (("ski", "ska"), ("cki", "cka"), ("dzki", "dzka"), ("ny", "na"), ("wy", "wa")):
        if surname.endswith(end):
            return surname[: -len(end)] + fem
    return surname


def _polish_feminine(n: str, pool: set[str]) -> bool:
    """An adjectival woman's form (Narożna beside Narożny, Kowalska)."""
    return n.endswith(("ska", "cka", "dzka")) or (n.endswith("a") and (n[:-1] + "y" in pool or n[:-1] + "i" in pool))


def _polish_masculine(n: str, pool: set[str]) -> bool:
    return n.endswith(("ski", "cki", "dzki")) or (n[-1:] in ("y", "i") and n[:-1] + "a" in pool)


def _cap(name: str) -> str:
    return "-".join(p[:1].upper() + p[1:] for p in name.split("-"))


@lru_cache(maxsize=None)
def first_names(locale: str) -> frozenset[str]:
    """Every first name a locale's Faker provider lists (both genders), in Latin script."""
    out: set[str] = set()
    for prov in _faker(locale).get_providers():
        for attr in ("first_names", "first_names_male", "first_names_female"):
            pool = getattr(prov, attr, None)
            if pool:
                out.update(_cap(transliterate(n, locale)) for n in pool)
    return frozenset(out)
