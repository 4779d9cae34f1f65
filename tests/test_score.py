"""The scorer on hand-written paragraphs: one test per term, each with a clean twin."""

from collections import Counter
from dataclasses import replace

import pytest

from fabula import score
from fabula.genre import GENERIC, Genre
from fabula.packs import load_pack, parse_pack
from fabula.plan import Planner
from fabula.records import Character
from fabula.score import TERMS, CommonGrams, NgramSet, coverage, misspelt
from tests.conftest import recast
from tests.test_packs import pack_text

SPY = Genre.of(load_pack("spy"))  # the spy pack's facts: its surnames, dated events, press agencies


def slips(text, card, genre=SPY):
    return score.slips(text, card, genre)


def score_paragraph(text, card, paragraph, corpus=None, genre=SPY):
    return score.score_paragraph(text, card, paragraph, corpus, genre)


@pytest.fixture
def card(spy):
    c = Planner(spy, 1, 5).next()
    # A card we can write against by hand: a woman hero, a man other, Riga, 1994.
    hero = Character(first="Ilze", last="Ozola", gender="female", nationality="Latvian", locale="lv_LV", traits={"service": "the KGB"})
    other = Character(first="Tomas", last="Berg", gender="male", nationality="Swedish", locale="sv_SE")
    slots = {
        **c.slots,
        "city": "Riga",
        "year": "1994",
        "venue": "the back room of a chess club",
        "summons": "a postcard of a lighthouse with a single date written on the back",
    }
    return replace(c, cast={"hero": hero, "other": other}, slots=slots, anchors=[["hero", "city"], ["other"], ["summons"], ["venue"]])


CLEAN = "Ilze Ozola mended radios in Riga. She kept to herself, and Tomas Berg was a name she never said."


def test_a_clean_paragraph_has_no_slips(card):
    assert slips(CLEAN, card) == Counter()
    assert score_paragraph(CLEAN, card, 0).penalty == 0


def test_missing_names_what_the_plan_puts_in_the_paragraph(card):
    assert score_paragraph("Ilze mended radios in Riga.", card, 0).slips["missing"] == 0
    assert score_paragraph("She mended radios in a northern town.", card, 0).slips["missing"] == 2  # hero and city
    assert score_paragraph("The lighthouse on the card meant nothing.", card, 2).slips["missing"] == 0  # a content word of the summons
    assert score_paragraph("A letter came.", card, 2).slips["missing"] == 1


def test_stranger_is_a_first_name_the_card_does_not_hold(card):
    assert slips("Ilze thought of Katerina, her sister.", card)["stranger"] == 1
    assert slips("Ilze thought of Tomas, and of May.", card)["stranger"] == 0  # Tomas is on the card; May is a month
    assert slips("Ilze met the minister, Francois Lavigne.", card)["stranger"] == 1  # François, written without accent
    tomas = recast(card, other=replace(card.cast["other"], first="Tomás"))
    assert slips("Ilze thought of Tomas, and of Tomás.", tomas)["stranger"] == 0  # the card's own name, either way


def test_a_surname_no_character_has_is_a_stranger(card):
    """From the 100-story bench: invented people the first-name term missed."""
    assert slips("Ilze met Colonel Gabrielov at the club.", card)["stranger"] == 1
    assert slips("Tomas had worked for Zaremska, and later for Kollaevsky.", card)["stranger"] == 2
    assert slips("Ilze Ozola took the train from Rostov, past a portrait of Brezhnev.", card)["stranger"] == 0  # a city, a leader
    assert slips("Ilze spoke Russian with Tomas Berg.", card)["stranger"] == 0  # -ian is an adjective's ending too
    ozolova = recast(card, hero=replace(card.hero, last="Ozolova"))
    assert slips("The neighbours knew her as Ozolova.", ozolova)["stranger"] == 0  # the card's own surname
    assert slips("Gabrielov was waiting.", card)["stranger"] == 0  # a sentence's first word may be any word


def test_a_card_first_name_with_another_surname_is_a_stranger(card):
    """Seen in a 10-story read: "Validə Kets" for Validə Məmmədli."""
    assert slips("Ilze Kets wrote to Tomas.", card)["stranger"] == 1
    assert slips("Ilze Ozola wrote to Tomas Berg. Ilze waited.", card)["stranger"] == 0
    assert slips("Ilze Ozólá wrote to Tomas.", card)["stranger"] == 0  # the card's surname without its accents folds back


def test_contractions_and_quoted_speech_openings_are_not_names(card):
    """From the bedtime bench: "Don't" read as the name Don dropped 37 drafts."""
    assert slips('Ilze sat down. Tomas said, "Don\'t worry, Ilze."', card)["stranger"] == 0
    assert slips('Tomas said, "Wait here." Ilze waited, and Don\'t was all he said.', card)["stranger"] == 0
    assert slips("Ilze waited for Don and Tomas.", card)["stranger"] == 1  # Don, the name, is still a stranger


def test_first_then_capital_finds_what_the_regex_of_the_first_names_finds():
    """score.first_then_capital stands in for a pattern compiled per card:
    the same words, on texts made to trip it (names inside names, a name
    as another's surname, hyphens, digits, accents, names at the very start)."""
    import random
    import re

    from fabula.score import first_then_capital

    rng = random.Random(7)
    pieces = ["Anna", "Ann", "Maria", "Kets", "Jean-Luc", "Luc", "Ilze", "Öz", "Vəli", "_Anna", "Anna5", "9", "Ab", "Abc", "Zoë", "the", "O'Neil"]
    seps = [" ", " ", " ", ", ", ".", "-", "\n", "", "  ", "'"]
    for _ in range(3000):
        firsts = sorted(set(rng.sample(["Anna", "Ann", "Maria", "Jean-Luc", "Luc", "Ilze", "Öz", "Vəli", "O'Neil"], rng.randint(1, 4))))
        text = "".join(rng.choice(pieces) + rng.choice(seps) for _piece in range(rng.randint(1, 14)))
        want = re.findall(r"\b(?:" + "|".join(map(re.escape, firsts)) + r") ([A-Z][^\W\d_]{2,})\b", text)
        assert first_then_capital(text, firsts) == want, (text, firsts)


def test_a_card_name_misspelt_is_a_stranger(card):
    """Seen in a 40-story read: Maglakelidze for Maghlakelidze, Shavaika for Shvaika."""
    c = recast(card, hero=replace(card.hero, last="Shvaika"), other=replace(card.cast["other"], last="Maghlakelidze"))
    assert misspelt("Ilze Shavaika wrote to Tomas Maglakelidze.", c) == ["Shavaika", "Maglakelidze"]
    assert slips("Ilze Shavaika wrote to Tomas.", c)["stranger"] == 1
    assert misspelt("Ilze Shvaika wrote to Tomas Maghlakelidze in Russia; Tomasz did not.", c) == ["Tomasz"]
    assert misspelt("Shvaika's letter reached Tomás, and Maghlakelidze's too.", c) == []  # the names, with accents or 's
    assert misspelt("Ilze wrote to Tomas about Berlin and Toledo.", c) == []  # other words, however close in length


def test_a_year_that_contradicts_a_dated_event_is_an_era_slip(card):
    """From the 100-story reads: a small model misdates the events of the era."""
    c = replace(card, slots={**card.slots, "year": "2009"})
    assert slips("Ilze's lover vanished the week the Wall opened on March 16, 2004.", c)["era"] == 1
    assert slips("Tomas fought in World War II from 1940 to 1953.", c)["era"] == 1  # 1953: after the war
    assert slips("Tomas was killed during World War II at 14 June 1937.", c)["era"] == 1
    assert slips("Tomas had stolen secrets during World War 14.", c)["era"] == 1
    assert slips("Ilze joined in 1975; the Wall fell in 1989 and the Soviet Union collapsed in 1991.", c)["era"] == 0
    assert slips("Tomas fought in the Second World War, from 1941 to 1945, and came home in 1946.", c)["era"] == 0


def test_pronoun_of_a_gender_no_character_has(spy, card):
    both_women = recast(card, other=replace(card.cast["other"], gender="female"))
    assert slips("Ilze opened the door and he sat down.", both_women)["pronoun"] == 1
    assert slips("Ilze opened the door and he sat down.", card)["pronoun"] == 0  # Tomas is a man
    assert slips('Ilze said: "He never came."', both_women)["pronoun"] == 0  # dialogue may speak of anyone


def test_pronouns_and_names_the_card_itself_holds_are_not_slips(card):
    two_men = replace(
        recast(card, hero=replace(card.hero, gender="male", first="Ernst-August"), other=replace(card.cast["other"], gender="male")),
        slots={**card.slots, "secret": "a child who did not know who her father was"},
    )
    text = "Ernst met Tomas about a child who did not know who her father was."
    assert slips(text, two_men)["pronoun"] == 0 and slips(text, two_men)["stranger"] == 0
    assert slips(text + " Then her mother came.", two_men)["pronoun"] == 1


def test_era_is_a_year_after_the_card_or_before_1900(card):
    assert slips("In 2007 Ilze moved.", card)["era"] == 1
    assert slips("In 1850 Ilze moved.", card)["era"] == 1
    assert slips("In 1979 Ilze met Tomas.", card)["era"] == 0


def test_first_person_outside_dialogue(card):
    assert slips("I met Ilze in Riga, and my coat was wet.", card)["first-person"] == 2
    assert slips('Ilze said, "I know."', card)["first-person"] == 0


def test_reportage(card):
    assert slips("Ilze says now that the job was easy.", card)["reportage"] == 1
    assert slips('"I just do not see it anymore," says Ilze, who has worked in television.', card)["reportage"] == 1
    assert slips('"I do not see it," said Ilze.', card)["reportage"] == 0


def test_encyclopedic_is_the_voice_of_a_biography_or_a_press_report(card):
    bio = (
        "Tomas Berg (born in 1945) was a child of the port. Her book was published by Yuzhna Books and became "
        "an international bestseller; Ilze told reporters she was tired."
    )
    assert slips(bio, card)["encyclopedic"] == 4
    assert slips("Tomas Berg (b. 1945) is best known for his silence.", card)["encyclopedic"] == 2
    assert slips("Ilze was born in Riga, and nobody knew what she had published in the old days.", card)["encyclopedic"] == 0
    news = "Ilze works for the Interfax agency and writes for the largest media outlet in Riga."
    assert slips(news, card)["encyclopedic"] == 2
    assert slips("Tomas had been the Reuters correspondent in Riga.", card)["encyclopedic"] == 0  # an old cover, not a source


def test_aside_is_a_parenthesis_in_the_narration(card):
    text = "Ilze went to the embassy (which she did not own) and waited (as long ago)."
    assert slips(text, card)["aside"] == 2
    assert slips('Ilze waited. "Not now (or ever)," Tomas said.', card)["aside"] == 0  # in speech, a character's own words
    assert slips("Ilze waited, and then, because Tomas was late, she left.", card)["aside"] == 0


def test_trailing_is_an_ellipsis_or_double_hyphen_in_the_narration(card):
    text = "Ilze knew too much already... And so … she waited -- for Tomas."
    assert slips(text, card)["trailing"] == 3
    assert slips('Ilze waited. "I... I cannot," Tomas said.', card)["trailing"] == 0  # a character's own hesitation
    assert slips("Ilze waited. It was late. Tomas came at nine - or ten.", card)["trailing"] == 0  # one hyphen, full stops


def test_markup_and_special_tokens(card):
    assert slips("Ilze left. <start_of_image> [multimodal]", card)["markup"] == 2


def test_meta_text(card):
    assert slips("Ilze left (see story below).", card)["meta"] >= 1


def test_meta_counts_the_narrator_addressing_the_reader_not_a_character_showing_a_seal(card):
    assert slips("The crate, as you can see here, was empty.", card)["meta"] == 1
    assert slips('Ilze lifted the lid. "As you can see, the seal is broken."', card)["meta"] == 0


def test_unfinished_is_a_paragraph_that_stops_mid_sentence(card):
    assert slips("Ilze Ozola walked to the back room of", card)["unfinished"] == 1
    assert slips('Ilze said, "Go."', card)["unfinished"] == 0


def test_novelty_is_the_share_of_new_4_grams(card):
    corpus = NgramSet()
    assert score_paragraph(CLEAN, card, 0, corpus).novelty == 1.0
    corpus.add(CLEAN)
    assert score_paragraph(CLEAN, card, 0, corpus).novelty == 0.0
    s = score_paragraph("Ilze Ozola mended radios in Riga and sold the valves at a market stall.", card, 0, corpus)
    assert 0 < s.novelty < 1


def test_common_grams_are_those_in_limit_stories_less_the_cards_own(card):
    common = CommonGrams(limit=2)
    common.add("She walked to the station in the rain. She walked to the station in the rain.")
    assert common.common == set()  # one story, however often it says it
    common.add("Then she walked to the harbour, and later to the station in the dark.")
    assert common.common == {"she walked to the", "to the station in", "the station in the"}
    common.add("A postcard of a lighthouse came; she walked to the door.")
    common.add("It was a postcard of a lighthouse, nothing more.")
    assert "a postcard of a" in common.common
    before = set(common.common)
    common.add("Later she walked to the station in the snow.")  # known common grams, and one new
    assert common.common == before | {"walked to the station"}
    banned = common.banned_for(card)  # the card's summons is that postcard: its story may say so
    assert "a postcard of a" not in banned and "postcard of a lighthouse" not in banned
    assert "she walked to the" in banned and "to the station in" in banned
    assert CommonGrams(limit=0).limit == 2  # a gram in one story is never common


def test_coverage_counts_anchors_in_their_own_paragraph(card):
    paragraphs = ["Ilze Ozola lived in Riga.", "Tomas Berg had been her handler.", "A letter came.", "The chess club was cold."]
    assert coverage(paragraphs, card) == (4, 5)  # the summons is missing


def test_every_term_is_weighted():
    assert set(TERMS) == {
        "missing",
        "stranger",
        "pronoun",
        "era",
        "first-person",
        "reportage",
        "encyclopedic",
        "aside",
        "trailing",
        "markup",
        "meta",
        "unfinished",
    }


def test_without_genre_facts_only_the_generic_terms_count(card):
    """A pack that declares no [era], [people] or [press] gets none of those rules."""
    text = "In 1850 Ilze met Colonel Gabrielov of Interfax at the club, the week the Wall opened in 2004."
    assert slips(text, card) == Counter(era=2, stranger=1, encyclopedic=1)
    assert slips(text, card, GENERIC) == Counter()  # no year slot, no floor, no events, no surname shapes
    assert slips("Ilze met Katerina in 2007.", card, GENERIC) == Counter(stranger=1)  # first names: every pack


def test_a_packs_own_facts_drive_the_terms(card):
    tail = """
[era]
year_slot = "year"
earliest = 1950
never = ['\\bthe Moon colony\\b']
[[era.events]]
pattern = '\\bthe great flood\\b'
years = [1962]

[people]
surname_endings = ["berg", "stad"]
not_people = ["Helsingborg", "Karlstad"]

[press]
agencies = ["Tidningarnas Telegrambyrå"]
"""
    from tests.test_packs import GOOD_TAIL

    genre = Genre.of(parse_pack(pack_text(tail=GOOD_TAIL.replace('city = ["Riga", "Turku"]', 'city = ["Riga", "Turku"]\nyear = ["1994"]') + tail), "t.toml"))
    c = card  # year 1994
    assert slips("Ilze took the ferry to Karlstad with a man called Lindstad.", c, genre) == Counter(stranger=1)
    assert slips("In 1930 Ilze saw the great flood of 1975 and the Moon colony.", c, genre) == Counter(era=3)
    assert slips("In 1962 the great flood took the pier.", c, genre) == Counter()
    assert slips("Ilze read it on Tidningarnas Telegrambyrå.", c, genre) == Counter(encyclopedic=1)
    assert slips("Ilze met Colonel Gabrielov.", c, genre) == Counter()  # the spy pack's surname shapes are not this pack's
