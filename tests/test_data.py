"""The training stories under data/tune/: each meets the bar a draft of the pipeline meets."""

import json
from pathlib import Path

import pytest

from fabula.checks import default_checks, run_checks
from fabula.genre import Genre
from fabula.packs import load_pack
from fabula.records import Card
from fabula.score import story_slips

DATA = Path(__file__).resolve().parent.parent / "data" / "tune"


@pytest.mark.parametrize("folder", sorted(p.name for p in DATA.iterdir() if p.is_dir()))
def test_every_training_story_has_its_card_and_passes_the_pack_checks(folder):
    root = DATA / folder
    cards = {c["id"]: Card.from_dict(c) for c in map(json.loads, (root / "cards.jsonl").read_text(encoding="utf-8").splitlines())}
    stories = {int(p.stem): p.read_text(encoding="utf-8") for p in (root / "stories").glob("*.txt")}
    assert len(stories) >= 100 and set(stories) == set(cards)
    (pack_name,) = {c.pack for c in cards.values()}
    pack = load_pack(pack_name)
    genre = Genre.of(pack)
    checks = default_checks(pack, pack.min_words, pack.max_words, avoid=list(pack.avoid_phrases) + list(pack.avoid_names), genre=genre)
    slips = 0
    for card_id, text in sorted(stories.items()):
        card = cards[card_id]
        paragraphs = [p for p in text.split("\n\n") if p.strip()]
        assert len(paragraphs) == len(card.beats), f"{card_id:03d}.txt: {len(paragraphs)} paragraphs for {len(card.beats)} beats"
        assert "\n\n\n" not in text and "#" not in text and "*" not in text, f"{card_id:03d}.txt: markup or stray blank lines"
        dropped = [(v.reason, v.detail) for v in run_checks(text, card, checks) if not v.keep]
        assert not dropped, f"{card_id:03d}.txt: {dropped}"
        assert card.hero.full in text, f"{card_id:03d}.txt: the hero's full name is never written"
        slips += sum(story_slips(paragraphs, card, genre).values())
    assert slips <= len(stories) // 20  # the scorer's slips: at most one story in twenty
