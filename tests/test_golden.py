"""Golden test: what the writer keeps for a fixed set of spy cards.

The cards are data (tests/golden/spy_cards.jsonl), so the test does not move
with Faker's name lists; the backend is the fake one with a responder that
salts its filler with the sentences the scorer and checks exist for (dated
events right and wrong, invented surnames, press agencies, a first-person
aside, markup...). Best of 4 then keeps a different candidate wherever a term,
a weight or a genre fact changes, and the checks drop different drafts.

A change that is meant to alter what fabula writes regenerates the golden
file (``python -m tests.test_golden``) and says so in its commit; a change that
is not (a refactor, genre facts moved into packs) must leave it as it is.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

from fabula.backends.base import Request
from fabula.backends.fake import FakeBackend, filler
from fabula.packs import load_pack
from fabula.pipeline import write_corpus
from fabula.records import Card
from fabula.store import Store
from fabula.write import WriteSettings

GOLDEN = Path(__file__).parent / "golden"
CARDS = GOLDEN / "spy_cards.jsonl"
EXPECTED = GOLDEN / "spy_fake_best_of_4.json"

# What a small model gets wrong in this genre, one sentence each.
SALT = (
    "The Wall fell in 1989, and nobody rang.",
    "The Wall fell in 2004, the paper said.",
    "They had watched Sputnik cross the sky in 1961.",
    "Chernobyl burned in 1986, far to the east.",
    "A man called Gabrielov waited by the kiosk.",
    "The night train passed Rostov without stopping.",
    "Brezhnev looked down from a faded poster.",
    "Interfax had the story first.",
    "By noon it was on Interfax and on the radio.",
    "A clerk named Beridze stamped the form.",
    "Lysenko had kept the other key.",
    "The Reuters correspondent paid for the coffee.",
    "World War III never came.",
    "In 1850 the house was built.",
    "In 2031 it would all be forgotten.",
    "Nobody had seen Zaremska since the spring.",
    "Later I asked him about the key.",
    "The poet (born 1945) lived upstairs.",
    "Her memoir was published by a small press.",
    "It was... almost over.",
    "The drawer held <unused12> and a glove.",
    "The second World War had ended in 1945.",
    "Kowalczyk and Shevardnadze argued about tea.",
    "He says now that it was a mistake.",
    "As you can see, the window was open.",
)


def salted(request: Request) -> str:
    """Filler as the fake backend writes it, with up to three SALT sentences spliced in."""
    rng = random.Random(f"{request.seed}:{request.prompt[-200:]}")
    lo, hi = max(request.min_tokens, 1), max(request.max_tokens, request.min_tokens, 2)
    sentences = filler(rng, int(rng.randint(lo, hi) * 0.75)).split(". ")
    for _ in range(rng.choice((0, 0, 1, 1, 2, 3))):
        sentences.insert(rng.randint(1, len(sentences)), rng.choice(SALT).rstrip("."))
    text = " " + ". ".join(sentences)
    if request.prompt and request.prompt.rstrip()[-1:] not in ".!?\"'”’:":
        text = " " + text[1].lower() + text[2:]  # continues an opener's sentence
    return text if text.endswith(".") else text + "."


def written(tmp: Path) -> dict:
    pack = load_pack("spy")
    cards = [Card.from_dict(json.loads(line)) for line in CARDS.read_text().splitlines()]
    store = Store.open(tmp, {"pack": pack.name, "pack_digest": pack.digest, "seed": 5})
    for card in cards:
        store.plan(card)  # planned, not yet written: the run takes these before drawing new cards
    ban = tuple(dict.fromkeys(x.lower() for x in (*pack.avoid_phrases, *pack.avoid_names)))
    settings = WriteSettings(words=pack.words, mode="steer", frame=pack.generation.frame, ban=ban, best_of=4)
    summary = write_corpus(store, pack, FakeBackend(responder=salted), len(cards), 5, settings, max_attempts=4, avoid=ban)
    out = {}
    for line in (tmp / "corpus.jsonl").read_text().splitlines():
        r = json.loads(line)
        text = (tmp / r["file"]).read_text()
        out[f"card {r['card']['id']}"] = {
            "id": r["id"],
            "attempt": r["attempt"],
            "picked": r["picked"],
            "checks": [c.get("detail", "") for c in r["checks"]],
            "sha256": hashlib.sha256(text.encode()).hexdigest()[:16],
        }
    for line in (tmp / "rejects.jsonl").read_text().splitlines() if (tmp / "rejects.jsonl").exists() else []:
        r = json.loads(line)
        out[f"card {r['card']['id']}"] = {"rejected": r["reason"], "detail": r["detail"]}
    out = dict(sorted(out.items(), key=lambda kv: int(kv[0].split()[1])))
    out["dropped"] = dict(sorted(summary.dropped.items()))
    return out


def test_spy_stories_with_the_salted_fake_backend_match_the_golden_file(tmp_path):
    got = written(tmp_path / "c")
    want = json.loads(EXPECTED.read_text())
    changed = [k for k in want if got.get(k) != want[k]] + [k for k in got if k not in want]
    assert not changed, f"{len(changed)} of {len(want)} cards came out otherwise, first {changed[0]}: {got.get(changed[0])} != {want.get(changed[0])}"
    # The salt reaches the scorer and the checks: some drafts are dropped and
    # best of 4 does not always keep the first candidate.
    assert sum(want["dropped"].values()) >= 5 and len(want["dropped"]) >= 3
    assert any(p != 0 for v in want.values() if "picked" in v for p in v["picked"])


if __name__ == "__main__":  # regenerate the golden file (say why in the commit)
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        got = written(Path(d) / "c")
    EXPECTED.write_text("{\n" + ",\n".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in got.items()) + "\n}\n")
    print(f"wrote {EXPECTED}")
