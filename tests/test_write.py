from fabula.backends.base import Completion
from fabula.backends.fake import FakeBackend
from fabula.plan import Planner
from fabula.write import StoryJob, WriteSettings, finish_paragraph, instruction


def test_beats_mode_opens_each_paragraph_with_its_beat_in_order(spy):
    card = Planner(spy, 1, 3).next()
    fake = FakeBackend()
    job = StoryJob(card, 0, WriteSettings(frame="FRAME\n\n"))
    (done,) = list(fake.run([job]))
    paras = done.draft("fake", "fake").text.strip().split("\n\n")
    assert len(paras) == len(card.beats)
    for p, beat in zip(paras, card.beats):
        assert p.startswith(beat)
    # each prompt is frame + title + the story so far + the next beat
    assert fake.history[0].prompt == f"FRAME\n\n{card.title}\n\n{card.beats[0]}"
    assert fake.history[2].prompt.endswith(paras[1] + "\n\n" + card.beats[2])
    assert len({r.seed for r in fake.history}) == len(card.beats)


def test_steer_mode_opens_each_paragraph_with_its_opener_and_never_pastes_the_beat(spy):
    card = Planner(spy, 1, 3).next()
    fake = FakeBackend()
    job = StoryJob(card, 0, WriteSettings(frame="FRAME\n\n", mode="steer"))
    (done,) = list(fake.run([job]))
    paras = done.draft("fake", "fake").text.strip().split("\n\n")
    assert len(paras) == len(card.openers) == len(card.beats)
    for p, opener, beat in zip(paras, card.openers, card.beats):
        assert p.startswith(opener) and beat not in p
    assert fake.history[0].prompt == f"FRAME\n\n{card.title}\n\n{card.openers[0]}"
    assert fake.history[3].prompt.endswith(paras[2] + "\n\n" + card.openers[3])


def test_attempts_use_new_seeds(spy):
    card = Planner(spy, 1, 3).next()
    assert StoryJob(card, 0, WriteSettings()).seed != StoryJob(card, 1, WriteSettings()).seed


def test_finish_paragraph_cuts_half_sentences_and_lines():
    assert finish_paragraph(" He ran. She saw him and") == "He ran."
    assert finish_paragraph(" He ran.\nChapter 2") == "He ran."
    assert finish_paragraph(" and then more:") == ""
    assert finish_paragraph(' "Go," she said.') == '"Go," she said.'
    # A title or an initial is not the end of a sentence.
    assert finish_paragraph(" He waited. Then he went in search of Mr.") == "He waited."
    assert finish_paragraph(" He met Dr. Kairys and J. Edgar Hoover. They talked of St.") == "He met Dr. Kairys and J. Edgar Hoover."
    assert finish_paragraph(" It was over. She called Mrs.") == "It was over."


def test_instruct_mode_is_one_chat_request(spy):
    card = Planner(spy, 1, 3).next()
    job = StoryJob(card, 0, WriteSettings(mode="instruct", words=300))
    req = job.request()
    assert req.chat and card.hero.full in req.prompt and "about 300 words" in req.prompt
    job.feed(Completion(text="Para one.\n\nPara two.", tokens=5, seconds=0.1))
    assert job.request() is None and job.paragraphs == ["Para one.", "Para two."]


def test_instruct_prompts_follow_the_pack_cast_voice_and_required_words():
    from fabula.packs import load_pack

    noir = Planner(load_pack("noir"), 1, 3).next()
    prompt = instruction(noir, 400)
    assert "first person" in prompt and "third person" not in prompt
    assert all(ch.full in prompt for ch in noir.cast.values()) and noir.slots["city"] in prompt
    bed = Planner(load_pack("bedtime"), 1, 3).next()
    prompt = instruction(bed, 180)
    assert "third person" in prompt and f"Use these words: {bed.slots['verb']}, {bed.slots['noun']}, {bed.slots['adjective']}." in prompt


def test_instruct_prompts_describe_what_happens_and_quote_no_beat_sentence(spy):
    planner = Planner(spy, 1, 20)
    for _ in range(20):
        card = planner.next()
        prompt = instruction(card, 450)
        assert "1. " + card.notes[0] in prompt and card.slots["city"] in prompt
        for beat in card.beats:
            assert beat not in prompt
        assert "own words" in prompt


def test_beats_mode_puts_the_cards_exemplar_before_the_title(spy):
    planner = Planner(spy, 1, 3)
    blocks = tuple(e.block() for e in spy.exemplars)
    for card in (planner.next() for _ in range(3)):
        req = StoryJob(card, 0, WriteSettings(exemplars=blocks)).request()
        ex = blocks[card.id % len(blocks)]
        assert req.prompt.startswith(ex + "* * *\n\n" + card.title + "\n\n" + card.beats[0])


def test_best_of_keeps_the_candidate_the_scorer_prefers(spy):
    card = Planner(spy, 1, 3).next()
    job = StoryJob(card, 0, WriteSettings(best_of=3))
    req = job.request()
    assert req.n == 3
    bad = f" I met {card.hero.first} in the bar <start_of_image> and my coat was wet."  # first person, markup
    stranger = " Then Katerina, whom nobody knew, came in and sat down."
    good = f" {card.hero.first} paid for the coffee and watched the door until the light went."
    job.feed(Completion(text=bad, tokens=30, seconds=0.1, candidates=[bad, stranger, good]))
    assert job.paragraphs[0].endswith(good.strip()) and job.picked == [2]
    assert job.tokens == 30


def test_requests_carry_the_corpus_common_grams_but_not_the_cards_own(spy):
    from fabula.score import CommonGrams
    from fabula.text import grams as _grams

    card = Planner(spy, 1, 3).next()
    common = CommonGrams(limit=2)
    for _ in range(2):
        common.add(f"He walked to the station in the rain. {card.openers[0]}.")
    job = StoryJob(card, 0, WriteSettings(mode="steer"), common=common)
    req = job.request()
    assert "walked to the station" in req.ban_grams
    own = {" ".join(g) for g in _grams(card.openers[0])}
    assert own and not own & req.ban_grams
    assert StoryJob(card, 0, WriteSettings(mode="steer")).request().ban_grams == frozenset()


def test_a_continuation_glued_to_the_openers_last_word_loses_the_fragment():
    from fabula.write import unglue

    assert unglue("Nobody in Tbilisi suspected why Zvezdin Brankov", "idze was in the position.") == " was in the position."
    assert unglue("Prokhir Zhaivoron", "in, an engineer.") == ", an engineer."
    assert unglue("Zvezdin Brankov", " was late.") == " was late."  # a new word: untouched
    assert unglue("Zvezdin Brankov", "'s coat was wet.") == "'s coat was wet."  # a possessive is not a new word
    assert unglue("It began with", ", oddly, a letter.") == ", oddly, a letter."
    assert unglue("They met at the station,", "and then left.") == "and then left."  # the opener ends on a comma


def test_steer_mode_keeps_the_card_name_when_the_model_extends_it(spy):
    card = Planner(spy, 1, 3).next()
    assert card.openers[0][-1].isalnum()
    fake = FakeBackend()
    job = StoryJob(card, 0, WriteSettings(mode="steer"))
    fake.enqueue("xyz went home and slept.", *["He went home." for _ in card.openers[1:]])
    (done,) = list(fake.run([job]))
    first = done.draft("fake", "fake").text.split("\n\n")[0]
    assert first == card.openers[0] + " went home and slept."


def test_a_possessive_continuation_joins_the_name_without_a_space(spy):
    card = Planner(spy, 1, 3).next()
    fake = FakeBackend()
    fake.enqueue("'s coat was wet.", *["He went home." for _ in card.openers[1:]])
    (done,) = list(fake.run([StoryJob(card, 0, WriteSettings(mode="steer"))]))
    assert done.draft("fake", "fake").text.split("\n\n")[0] == card.openers[0] + "'s coat was wet."


def test_with_an_adapter_the_card_leads_every_prompt_in_place_of_frame_and_exemplar(spy):
    from fabula.write import card_text

    card = Planner(spy, 3, 4).next()
    job = StoryJob(card, 0, WriteSettings(frame="FRAME\n\n", mode="steer", exemplars=("EXEMPLAR",), card_prompt=True))
    first = job.request().prompt
    assert first == f"{card_text(card)}{card.title}\n\n{card.openers[0]}"
    text = card_text(card)
    assert text.startswith(f"People: {card.hero.full} ({card.hero.gender})") and text.endswith("\n\n")
    assert all(f"{i}. {note}\n" in text for i, note in enumerate(card.notes, 1))
    assert card.slots["city"] in text and "FRAME" not in first and "EXEMPLAR" not in first
    job.feed(Completion(text=" went on.", tokens=3, seconds=0.1))
    assert job.request().prompt.startswith(text + card.title + "\n\n" + job.paragraphs[0] + "\n\n")
