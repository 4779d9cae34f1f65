import gzip
import json
import os
import random

import pytest

from fabula import plan_file
from fabula.errors import StoreError
from fabula.plan_file import Cards, append_lines, cut_torn, is_torn, lines, member, members, whole_end


def card_line(i: int, pad: int = 40) -> bytes:
    return (json.dumps({"id": i, "title": f"Card {i}", "notes": "x" * pad}, separators=(",", ":")) + "\n").encode()


def card_id(path, pos, line):
    return json.loads(line)["id"]


@pytest.fixture(params=["plan.jsonl.gz", "plan.jsonl"])
def path(request, tmp_path):
    return tmp_path / request.param


def test_lines_come_back_in_order_with_the_position_they_start_at(path):
    at = append_lines(path, [card_line(0), card_line(1)]) + append_lines(path, [card_line(2)])
    got = list(lines(path))
    assert [json.loads(x)["id"] for _, x in got] == [0, 1, 2] and [p for p, _ in got] == at
    if plan_file.is_gz(path):  # one member a write, plain gzip to any reader
        assert at[0] == at[1] == 0 < at[2]
        assert gzip.decompress(path.read_bytes()) == card_line(0) + card_line(1) + card_line(2)
    else:
        assert at == [0, len(card_line(0)), len(card_line(0)) + len(card_line(1))]
    assert [json.loads(x)["id"] for _, x in lines(path, at[2])] == [2]  # read from a position on
    cards = Cards(path, card_id)
    try:
        assert [cards.get(i)["id"] for i in (2, 0, 1)] == [2, 0, 1] and cards.get(7) is None and 1 in cards
    finally:
        cards.close()


def test_a_write_cut_off_anywhere_is_found_and_cut(path):
    append_lines(path, [card_line(0), card_line(1)])
    whole = path.read_bytes()
    last = member(card_line(2) + card_line(3)) if plan_file.is_gz(path) else card_line(2)
    for cut in range(1, len(last)):
        path.write_bytes(whole + last[:cut])
        assert whole_end(path) == len(whole) and is_torn(path), cut
        assert [json.loads(x)["id"] for _, x in lines(path)] == [0, 1], cut
    path.write_bytes(whole + last)
    assert not is_torn(path) and not cut_torn(path)
    path.write_bytes(whole + last[:-3])
    assert cut_torn(path) and path.read_bytes() == whole


def test_a_last_member_of_full_length_that_fails_its_crc_is_torn(tmp_path):
    path = tmp_path / "plan.jsonl.gz"
    append_lines(path, [card_line(0)])
    whole = path.read_bytes()
    last = bytearray(member(card_line(1)))
    last[-8] ^= 0xFF  # the CRC
    path.write_bytes(whole + bytes(last))
    assert whole_end(path) == len(whole) and [json.loads(x)["id"] for _, x in lines(path)] == [0]


def test_a_damaged_member_before_the_last_is_a_clear_error(tmp_path):
    path = tmp_path / "plan.jsonl.gz"
    append_lines(path, [card_line(0)])
    first = os.path.getsize(path)
    append_lines(path, [card_line(1)])
    data = bytearray(path.read_bytes())
    data[first - 8] ^= 0xFF  # the first member's CRC
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=r"plan.jsonl.gz, byte 0: not a part of the plan fabula wrote"):
        list(lines(path))


def test_the_last_whole_member_is_found_behind_a_member_longer_than_the_window(tmp_path):
    path = tmp_path / "plan.jsonl.gz"
    rng = random.Random(1)
    big = [(json.dumps({"id": i, "noise": rng.randbytes(3000).hex()}) + "\n").encode() for i in range(600)]  # ~2 MB compressed
    append_lines(path, big)
    assert os.path.getsize(path) > 1 << 21
    whole = os.path.getsize(path)
    with open(path, "ab") as f:
        f.write(member(card_line(600))[:30])
    assert whole_end(path) == whole
    path.write_bytes(path.read_bytes()[: whole - 10])  # the big member itself cut off: nothing whole
    assert whole_end(path) == 0


def test_lines_past_the_member_limit_go_to_several_members(tmp_path, monkeypatch):
    monkeypatch.setattr(plan_file, "MAX_MEMBER", 2 * len(card_line(0)))
    path = tmp_path / "plan.jsonl.gz"
    at = append_lines(path, [card_line(i) for i in range(5)])
    assert len({p for p, _ in members(path)}) == 3 and at == [p for p, _ in lines(path)]
    assert at[0] == at[1] < at[2] == at[3] < at[4]
