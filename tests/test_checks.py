import pytest

from fabula.checks import NearDuplicates, degeneration, length, phrase_pattern, repeated_ngram_share, stock_phrases, words
from fabula.checks import adherence as _adherence
from fabula.plan import Planner
from tests.conftest import recast


def adherence(text, card, named=("city",)):  # the spy pack's [checks] named
    return _adherence(text, card, named)


@pytest.fixture
def card(spy):
    return Planner(spy, 1, 5).next()


def test_length_bounds():
    assert length("one two three", 3, 5).keep
    assert length("one two", 3, 5).reason == "too-short"
    assert length("a b c d e f", 3, 5).reason == "too-long"


def test_adherence_needs_protagonist_and_city(card):
    city = card.slots["city"]
    assert adherence(f"{card.hero.first} walked through {city}.", card).keep
    v = adherence(f"Someone walked through {city}.", card)
    assert not v.keep and v.reason == "off-card" and card.hero.full in v.detail
    assert adherence(f"{card.hero.last} stayed home.", card).reason == "off-card"
    assert adherence(f"{card.hero.last} stayed home.", card, named=()).keep  # a pack that names no slot
    v = adherence(f"{card.hero.first} sat in {city}.", card, named=("city", "venue"))
    assert not v.keep and v.detail == f"missing venue {card.slots['venue']}"


def test_required_words_must_appear_in_some_form(spy):
    """[checks] required: the TinyStories recipe's verb, noun and adjective
    drawn per story; a draft without one is dropped, its forms count."""
    from dataclasses import replace

    from fabula.checks import holds_word

    assert holds_word("She jumped over it.", "jump") and holds_word("They were dancing.", "dance")
    assert holds_word("Two boxes.", "box") and holds_word("He hopped.", "hop") and holds_word("A happier day.", "happy")
    assert holds_word("The Paper Crown fell.", "paper crown") and not holds_word("The paper boat.", "paper crown")
    assert not holds_word("A jumbo jet.", "jump") and not holds_word("The boxer slept.", "boxer ring")
    card = Planner(spy, 1, 5).next()
    card = replace(card, slots={**card.slots, "noun": "kite", "verb": "swim"}, required=["noun", "verb"])
    base = f"{card.hero.first} walked through {card.slots['city']}"
    assert adherence(f"{base} with a kite and went swimming.", card).keep
    v = adherence(f"{base} with a kite.", card)
    assert not v.keep and v.reason == "required-word" and "'swim'" in v.detail


@pytest.mark.parametrize(
    "text",
    [
        "He left. This story was originally published in 1994.",
        "Chapter 2\n\nHe left.",
        "He left.\n\nThe End",
        "Read more at http://example.com",
        "**Title: The Exchange**",
        "She runs her own business: ringerinari.com for example.",
    ],
)
def test_meta_text_is_dropped(text):
    v = degeneration(text)
    assert not v.keep and v.reason == "meta-text"


@pytest.mark.parametrize(
    "text",
    [
        "\u201cI was so sad,\u201d she says now.",
        "For many years he kept a stall. I met him at one of his stalls.",
        "What exactly is the story about?",
        "Later he told me about the informer.",
        "\u201cI just don\u2019t see it,\u201d says Odina, who has worked on some TV shows.",
    ],
)
def test_reportage_voice_is_dropped(text):
    v = degeneration(text)
    assert not v.keep and v.reason == "reportage"


def test_ordinary_prose_is_kept():
    assert degeneration("At the end of the street he stopped. The novel idea came to him by the river.").keep
    assert degeneration("\u201cGo,\u201d she said. He asked her twice. Nobody said that any more, he thought.").keep


def test_loops_are_dropped():
    loop = "He opened the door and looked outside. " * 6
    v = degeneration(loop)
    assert not v.keep and v.reason == "degenerate"
    assert repeated_ngram_share("a b c d a b c d".split(), 4) == pytest.approx(1 / 5)


def test_stock_phrases_match_whole_words_any_case_and_hyphenation():
    pat = phrase_pattern(["rain-soaked", "cryptic message", "Natasha"])
    assert not stock_phrases("The Rain soaked streets.", pat).keep
    assert not stock_phrases("a CRYPTIC\nmessage", pat).keep
    assert not stock_phrases("Natasha smiled.", pat).keep
    assert stock_phrases("Natashanova smiled at the cryptically messaged man.", pat).keep


def _alpha_words(seed, n=200):
    import random

    rng = random.Random(seed)
    return ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(6)) for _ in range(n)]


def test_near_duplicates_by_minhash():
    base = _alpha_words(1)
    nd = NearDuplicates(threshold=0.5)
    nd.add("000", " ".join(base))
    edited = base[:100] + ["changed"] + base[101:]  # one word in 200 changed
    v = nd.check(" ".join(edited))
    assert not v.keep and v.reason == "near-duplicate" and "000" in v.detail
    assert nd.check(" ".join(_alpha_words(2))).keep


def test_words_keeps_letters_of_many_alphabets():
    assert words("Zenta Lagzdiņa met Ștefan—twice.") == ["Zenta", "Lagzdiņa", "met", "Ștefan", "twice"]


@pytest.mark.parametrize(
    "text,reason",
    [
        ("He left. <start_of_image> She stayed.", "markup"),
        ("He left <unused42> early.", "markup"),
        ("[Note: the meeting] He left.", "markup"),
        ("He read <i>The Rotterdam Arrangement</i> twice.", "markup"),
        ("He walked to the back room of\n\nShe stayed.", "unfinished"),
        ("He left (see story below).", "meta-text"),
    ],
)
def test_markup_and_meta_text_are_dropped(text, reason):
    v = degeneration(text)
    assert not v.keep and v.reason == reason


def test_cast_drops_strangers_and_pronouns_no_character_can_take(spy):
    from dataclasses import replace

    from fabula.checks import cast
    from fabula.plan import Planner

    card = Planner(spy, 1, 3).next()
    h, o = card.hero, card.cast["other"]
    assert cast(f"{h.first} met {o.first} in the rain.", card).keep
    v = cast(f"{h.first} met Katerina in the rain.", card)
    assert not v.keep and v.reason == "stranger-name" and "Katerina" in v.detail
    both_women = recast(card, hero=replace(h, gender="female"), other=replace(o, gender="female"))
    assert cast(f"{h.first} waited, and he came late.", both_women).keep  # one: an unnamed man, as often as a slip
    v = cast(f"{h.first} waited, and he came late. She took his coat.", both_women)
    assert not v.keep and v.reason == "pronoun" and v.detail.startswith("2 ")
    assert cast(f'{h.first} said: "He came late."', both_women).keep  # dialogue may speak of anyone


def test_signatures_dropped_once_saved_are_refused_and_near_duplicates_still_found():
    import numpy as np
    import pytest

    from fabula.checks import NearDuplicates

    rng = np.random.default_rng(2)
    full = rng.integers(0, 2**32, size=(8, 128), dtype=np.uint64).astype(np.uint32)
    nd = NearDuplicates()
    nd.add_signatures([f"s{i}" for i in range(5)], full[:5])
    nd.drop_signatures()  # saved: rows 0..4 live on disk only
    nd.add_signatures(["s5"], full[5:6])
    nd.add_signatures(["s6", "s7"], full[6:8])
    for k in (5, 6, 8):
        assert np.array_equal(nd.signatures_since(k), full[k:])
    with pytest.raises(ValueError, match="saved and dropped"):
        nd.signatures_since(4)
    assert nd.candidates(full[2]) == {"s2"}  # the band index keeps every row
    assert len(nd) == 8


def test_signatures_since_gives_the_rows_after_k_and_keeps_the_pieces_few():
    import numpy as np

    from fabula.checks import NearDuplicates

    rng = np.random.default_rng(1)
    full = rng.integers(0, 2**32, size=(12, 128), dtype=np.uint64).astype(np.uint32)
    for k in range(13):
        nd = NearDuplicates()
        nd.add_signatures([f"s{i}" for i in range(5)], full[:5])  # a bulk load
        for i in range(5, 12):
            nd.add_signatures([f"s{i}"], full[i : i + 1])  # one story at a time
        assert np.array_equal(nd.signatures_since(k), full[k:])
        assert np.array_equal(nd.signatures(), full)
    # A writer asks for the rows since its last save: one piece a save, not one a story.
    nd, saved = NearDuplicates(), 0
    for i in range(12):
        nd.add_signatures([f"s{i}"], full[i : i + 1])
        if i % 4 == 3:
            assert np.array_equal(nd.signatures_since(saved), full[saved : i + 1])
            saved = i + 1
    assert len(nd._sigs) == 3


def test_the_phrase_gate_finds_what_the_whole_phrase_pattern_finds():
    import random

    from fabula.backends.fake import filler
    from fabula.checks import PhraseGate
    from fabula.packs import load_pack

    pack = load_pack("spy")
    phrases = [*pack.avoid_phrases, *pack.avoid_names, "didn't look back", "o'clock sharp", "Ernst-August"]
    gate, whole = PhraseGate(phrases), phrase_pattern(phrases)
    rng = random.Random(7)
    forms = [
        lambda p: p,
        str.upper,
        str.title,
        lambda p: p.replace(" ", "-"),
        lambda p: p.replace(" ", "  \n"),
        lambda p: p + "s",
        lambda p: "x" + p,
        lambda p: p.replace("'", "’"),
        lambda p: p[:-1],
    ]
    found = 0
    for _ in range(400):
        text = filler(rng, 120)
        for _ in range(rng.randint(0, 3)):
            at = rng.randint(0, len(text))
            text = text[:at] + " " + rng.choice(forms)(rng.choice(phrases)) + rng.choice([" ", ". ", ", ", ""]) + text[at:]
        a, b = gate.search(text), whole.search(text)
        assert (a and (a.span(), a.group())) == (b and (b.span(), b.group())), text
        assert [(m.span(), m.group()) for m in gate.finditer(text)] == [(m.span(), m.group()) for m in whole.finditer(text)], text
        found += b is not None
    assert 100 < found < 400  # both sides of the gate were tried


def test_the_band_index_finds_what_a_dict_of_every_band_key_finds(monkeypatch):
    import numpy as np

    from fabula.checks import BandIndex

    monkeypatch.setattr(BandIndex, "TAIL_MIN", 16)  # many merges in a few hundred rows
    monkeypatch.setattr(BandIndex, "TAIL_MAX", 64)  # and some of them at the cap
    monkeypatch.setattr(BandIndex, "CHUNK", 7)  # a bulk load packed in pieces
    rng = np.random.default_rng(2)
    bands = 25
    pool = rng.integers(0, 2**64 - 1, size=(60, bands), dtype=np.uint64, endpoint=True)  # few keys: many shared
    # Half the pool's keys differ from another's (after the band's salt) only in the low
    # 32 bits, or only in the high ones: the sorted array holds the high half.
    salt = BandIndex(bands).salt
    pool[30:45] = ((pool[:15] ^ salt) ^ rng.integers(1, 2**32, size=(15, bands), dtype=np.uint64)) ^ salt
    pool[45:] = ((pool[:15] ^ salt) ^ (rng.integers(1, 2**32, size=(15, bands), dtype=np.uint64) << np.uint64(32))) ^ salt
    index, ref, merges = BandIndex(bands), [dict() for _ in range(bands)], 0
    row = 0
    for _ in range(120):
        n = int(rng.choice([1, 1, 1, 3, 40]))  # one story at a time, and now and then a bulk load
        keys = pool[rng.integers(0, len(pool), size=(n, bands)), np.arange(bands)]
        had = len(index.sorted)
        index.add(keys)
        merges += len(index.sorted) != had
        for k in keys:
            for b in range(bands):
                ref[b].setdefault(int(k[b]), set()).add(row)
            row += 1
        q = pool[rng.integers(0, len(pool), size=bands), np.arange(bands)]
        want = set().union(*(ref[b].get(int(q[b]), set()) for b in range(bands)))
        assert index.find(q) == want
    assert merges > 5 and index.rows == row


def test_checks_are_objects_with_names_and_thresholds(card):
    from fabula.checks import Cast, Degeneration, Length, StockPhrases, as_check, run_checks

    city = card.slots["city"]
    text = f"{card.hero.first} came to {city}. " + "The tram was late again that day. " * 3
    assert Degeneration()(text, card).reason == "degenerate"  # a sentence three times
    assert Degeneration(max_sentence_repeats=3, max_rep4=0.9)(text, card).keep
    assert Length(3, 5).name == "length" and not Length(3, 5)(text, card).keep
    assert StockPhrases(("late again",))(text, card).reason == "stock-phrase"
    from dataclasses import replace

    women = recast(card, hero=replace(card.hero, gender="female"), other=replace(card.cast["other"], gender="female"))
    assert Cast()(f"{card.hero.first} waited. He came.", women).keep  # one: an unnamed man, as often as a slip
    assert Cast(pronoun_drop=1)(f"{card.hero.first} waited. He came.", women).reason == "pronoun"

    def no_trams(text, card):
        return "tram" not in text

    verdicts = run_checks(text, card, [Length(1, 500), as_check(no_trams)])
    assert [v.check for v in verdicts] == ["length", "no-trams"] and verdicts[-1].reason == "no-trams"
    reasoned = as_check(lambda t, c: (False, "too-wet", "rain"), name="dry")(text, card)
    assert (reasoned.check, reasoned.keep, reasoned.reason, reasoned.detail) == ("dry", False, "too-wet", "rain")
    assert as_check(lambda t, c: None, name="quiet")(text, card).keep


def test_compose_adds_checks_or_rewrites_the_list():
    from fabula.checks import Length, StockPhrases, compose

    base = [Length(1, 9), StockPhrases(("x",))]

    def wet(text, card):
        return "rain" not in text

    assert [c.name for c in compose(base, [wet])] == ["length", "stock-phrases", "wet"]
    assert [c.name for c in compose(base, wet)] == ["length", "stock-phrases", "wet"]
    assert [c.name for c in compose(base, lambda checks: [c for c in checks if c.name != "stock-phrases"])] == ["length"]
    with pytest.raises(TypeError, match="is not a check"):
        compose(base, ["rain"])


def test_a_pack_sets_thresholds_and_skips_checks(spy):

    from fabula.checks import default_checks
    from fabula.packs import parse_pack
    from tests.test_packs import GOOD_TAIL, pack_text

    assert [c.name for c in default_checks(spy, 350, 550)] == ["length", "adherence", "degeneration", "cast", "stock-phrases"]
    p = parse_pack(pack_text(tail=GOOD_TAIL + '[checks]\nskip = ["cast"]\nmax_repeated_4grams = 0.3\npronoun_drop = 3\n'), "t.toml")
    checks = default_checks(p, 10, 100)
    assert "cast" not in [c.name for c in checks]
    assert next(c for c in checks if c.name == "degeneration").max_rep4 == 0.3
    with pytest.raises(Exception, match="skip"):
        parse_pack(pack_text(tail=GOOD_TAIL + '[checks]\nskip = ["spelling"]\n'), "t.toml")


def test_the_lsh_bands_fabula_knows_are_those_datasketch_picks():
    from datasketch.lsh import _optimal_param

    from fabula.checks import _LSH_PARAMS, NearDuplicates

    for (threshold, num_perm), (b, r) in _LSH_PARAMS.items():
        assert _optimal_param(threshold, num_perm, 0.5, 0.5) == (b, r)
    assert (NearDuplicates(threshold=0.6).b, NearDuplicates(threshold=0.6).r) == _optimal_param(0.6, 128, 0.5, 0.5)
