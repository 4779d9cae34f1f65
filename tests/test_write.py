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


def test_attempts_use_new_seeds(spy):
    card = Planner(spy, 1, 3).next()
    assert StoryJob(card, 0, WriteSettings()).seed != StoryJob(card, 1, WriteSettings()).seed


def test_finish_paragraph_cuts_half_sentences_and_lines():
    assert finish_paragraph(" He ran. She saw him and") == "He ran."
    assert finish_paragraph(" He ran.\nChapter 2") == "He ran."
    assert finish_paragraph(" and then more:") == ""
    assert finish_paragraph(' "Go," she said.') == '"Go," she said.'


def test_instruct_mode_is_one_chat_request(spy):
    card = Planner(spy, 1, 3).next()
    job = StoryJob(card, 0, WriteSettings(mode="instruct", words=300))
    req = job.request()
    assert req.chat and card.hero.full in req.prompt and "about 300 words" in req.prompt
    job.feed(Completion(text="Para one.\n\nPara two.", tokens=5, seconds=0.1))
    assert job.request() is None and job.paragraphs == ["Para one.", "Para two."]
    assert "1. " + card.beats[0] in instruction(card, 300)
