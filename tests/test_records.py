import dataclasses
import json

import pytest

from fabula.packs import load_pack
from fabula.plan import Planner
from fabula.records import Card


@pytest.mark.parametrize("name", ["spy", "noir", "bedtime", "outpost"])
def test_a_cards_dict_is_what_asdict_gives_in_the_same_order_and_round_trips(name):
    planner = Planner(load_pack(name), 4, 5)
    for card in (planner.next() for _ in range(5)):
        d = card.to_dict()
        assert json.dumps(d) == json.dumps(dataclasses.asdict(card))  # same keys, same order, same values
        assert Card.from_dict(json.loads(json.dumps(d))) == card
        d["beats"].append("changed")  # a copy: changing it leaves the card as it was
        d["cast"][next(iter(d["cast"]))]["traits"]["x"] = "y"
        assert json.dumps(card.to_dict()) == json.dumps(dataclasses.asdict(card))


def test_a_verdicts_dict_is_what_asdict_gives():
    from fabula.records import Verdict

    for v in (Verdict("cast", True), Verdict("length", False, "too-short", "120 words < 300")):
        assert json.dumps(v.to_dict()) == json.dumps(dataclasses.asdict(v))
