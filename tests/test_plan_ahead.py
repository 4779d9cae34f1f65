import pytest

from fabula import index
from fabula.backends.fake import FakeBackend
from fabula.pipeline import write_corpus
from fabula.plan import Planner
from fabula.plan_ahead import PlanAhead
from fabula.store import Store
from fabula.write import WriteSettings
from tests.conftest import plan_lines


def _write(root, spy, n, ahead):
    store = Store.open(root, {"pack": "spy", "seed": 4})
    return write_corpus(store, spy, FakeBackend(), n, 4, WriteSettings(words=300), max_attempts=3, avoid=spy.avoid_phrases, plan_ahead=ahead)


def test_planning_in_its_own_process_changes_nothing(tmp_path, spy, monkeypatch):
    # Saves every 5 stories: each one hands the cards planned ahead over to the plan mid-run.
    monkeypatch.setattr(index, "SAVE_EVERY", 5)
    folders = {}
    for ahead in (False, True):
        root = tmp_path / str(ahead)
        summary = _write(root, spy, 24, ahead)
        assert summary.written == 24
        _write(root, spy, 32, ahead)  # a second run resumes from the saved planner state
        folders[ahead] = root
    assert plan_lines(folders[True]) == plan_lines(folders[False])
    files = ["corpus.jsonl", *(f"stories/{p.name}" for p in (folders[False] / "stories").iterdir())]
    for name in files:
        assert (folders[True] / name).read_bytes() == (folders[False] / name).read_bytes(), name
    states = []
    for root in folders.values():
        saved = index.load_planner(root)
        assert saved is not None, "the saved planner state does not describe the plan"
        state = saved.state
        states.append((state["tally"], state["counted"], state["arrays"]["gram_counts"].tobytes(), state["arrays"]["names"].tobytes()))
    assert states[0] == states[1]


def test_it_plans_no_card_the_run_does_not_ask_room_for(spy):
    alone = Planner(spy, 9, 50)
    expected = [alone.next() for _ in range(12)]
    ahead = PlanAhead(Planner(spy, 9, 50))
    try:
        first = ahead.next(room=0)
        assert ahead.drain() == []  # no room: nothing planned ahead
        got = [first, ahead.next(room=5)]
        got += ahead.drain()  # at most the 5 the run has room for after the second card
        assert 2 <= len(got) <= 7 and got == expected[: len(got)]
        got += [ahead.next(room=11 - i) for i in range(len(got), 12)]
        assert got == expected and ahead.drain() == []
        assert ahead.state()["counted"] == 12
    finally:
        ahead.close()


def test_a_planner_process_that_ends_is_a_clear_error(spy):
    ahead = PlanAhead(Planner(spy, 1, 50))
    try:
        ahead.next(room=0)
        ahead._proc.kill()
        ahead._proc.wait()
        with pytest.raises(RuntimeError, match="the planner's process ended"):
            ahead.next(room=3)
    finally:
        ahead.close()
