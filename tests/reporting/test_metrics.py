"""Metric values on tiny hand-made corpora, computed by hand."""

import gzip
import math

import pytest

from fabula.reporting.metrics import compression_ratio, distinct, self_bleu, self_repetition

A = "a b c d e".split()
B = "a b c d f".split()
C = "x y z w v".split()


def test_distinct_n():
    # 4-grams: A -> (abcd, bcde), B -> (abcd, bcdf): 3 distinct of 4
    assert distinct([A, B], 4) == pytest.approx(3 / 4)
    # unigrams: a b c d e f over 10 tokens
    assert distinct([A, B], 1) == pytest.approx(6 / 10)


def test_self_repetition_follows_the_published_formula():
    # A shares 1 4-gram (abcd) with one other doc, B too, C none:
    # mean(ln(1+1), ln(1+1), ln(1+0))
    assert self_repetition([A, B, C], 4) == pytest.approx((2 * math.log(2)) / 3)
    assert self_repetition([A, C], 4) == 0.0


def test_compression_ratio_is_raw_over_gzip_bytes():
    texts = ["spy " * 50, "spy " * 50]
    raw = " ".join(texts).encode()
    assert compression_ratio(texts) == pytest.approx(len(raw) / len(gzip.compress(raw)))
    assert compression_ratio(texts) > compression_ratio(["the quick brown fox", "jumps over a lazy dog"])


def test_self_bleu_is_one_for_identical_and_zero_for_disjoint_docs():
    doc = "one two three four five six".split()
    assert self_bleu([doc, list(doc)]) == pytest.approx(1.0)
    assert self_bleu([A, C]) == 0.0


def test_streaming_measure_equals_the_reference_definitions(tmp_path):
    import random

    from fabula.backends.fake import filler
    from fabula.checks import words
    from fabula.reporting.metrics import measure

    rng = random.Random(3)
    texts = [filler(rng, rng.randint(40, 120)) for _ in range(12)]
    texts.append(texts[0])  # one exact copy: a near-duplicate pair
    for i, t in enumerate(texts):
        (tmp_path / f"{i:03d}.txt").write_text(t)
    toks = [[w.lower() for w in words(t)] for t in texts]
    m = measure(tmp_path, semantic=False)
    assert m["stories"] == 13 and m["near_duplicate_pairs"] == 1
    assert m["compression_ratio"] == pytest.approx(compression_ratio(texts), abs=1e-4)
    assert m["self_repetition_4"] == pytest.approx(self_repetition(toks, 4), abs=1e-4)
    for n in (1, 2, 3, 4):
        assert m[f"distinct_{n}"] == pytest.approx(distinct(toks, n), abs=1e-4)
    assert m["self_bleu_4"] == pytest.approx(self_bleu(toks, 4), abs=1e-4)
    assert m["words_min"] == min(map(len, toks)) and m["words_max"] == max(map(len, toks))
    assert m["self_repetition_stories"] == 13 and m["distinct_estimated"] is False
    some = {f"{i:03d}" for i in (1, 2, 5, 8)}
    part = measure(tmp_path, semantic=False, stories=some)
    kept = [toks[i] for i in (1, 2, 5, 8)]
    assert part["stories"] == 4 and part["self_bleu_4"] == pytest.approx(self_bleu(kept, 4), abs=1e-4)


def test_distinct_is_exact_below_its_cap_and_close_above_it():
    import numpy as np

    from fabula.reporting.metrics import _Distinct

    rng = np.random.default_rng(5)
    parts = [rng.integers(0, 60_000, size=500, dtype=np.uint64) for _ in range(400)]  # 200,000 values, ~58,000 distinct
    truth = len(np.unique(np.concatenate(parts))) / 200_000
    exact, small = _Distinct(cap=1 << 20), _Distinct(cap=4096)
    for p in parts:
        exact.add(p)
        small.add(p)
    assert exact.share() == truth and not exact.estimated
    assert small.estimated and len(small.kept) <= 4096  # memory held to the cap
    assert small.share() == pytest.approx(truth, rel=0.05)
    assert small.share() != truth  # an estimate: this test would not notice a silent fall-back to exact


def test_self_repetition_of_a_large_folder_is_that_of_a_sample(tmp_path, monkeypatch):
    import random

    from fabula.checks import words
    from fabula.reporting import metrics

    rng = random.Random(4)
    vocab = "the spy rode north past a mill and waited".split()  # small: stories share 4-grams
    texts = [" ".join(rng.choice(vocab) for _ in range(40)) + "." for _ in range(30)]
    for i, t in enumerate(texts):
        (tmp_path / f"{i:03d}.txt").write_text(t)
    monkeypatch.setattr(metrics, "SELF_REP_SAMPLE", 10)
    m = metrics.measure(tmp_path, semantic=False)
    picked = metrics._Reservoir(10, seed=0)  # the same seeded sample of story order
    for t in texts:
        picked.add([w.lower() for w in words(t)])
    assert m["self_repetition_stories"] == 10 and m["stories"] == 30
    assert m["self_repetition_4"] == pytest.approx(self_repetition(picked.items, 4), abs=1e-4)
    toks = [[w.lower() for w in words(t)] for t in texts]
    assert m["self_repetition_4"] != pytest.approx(self_repetition(toks, 4), abs=1e-4)  # not the whole folder's


def test_recurrence_and_stock_phrases_on_a_foreign_folder(tmp_path):
    from fabula.reporting.metrics import measure

    (tmp_path / "a.txt").write_text("Karl met Natalia in Moscow. The rain-soaked street was quiet.")
    (tmp_path / "b.txt").write_text("Then Imanol saw Natalia again, in Tokyo.")
    (tmp_path / "c.txt").write_text("Nobody came.")
    m = measure(tmp_path, semantic=False)
    assert m["top_name"] == {"value": "Natalia", "share": round(2 / 3, 4)}
    # one stock phrase in 19 words
    assert m["stock_phrases_per_1k_words"] == pytest.approx(1000 / 19, abs=1e-3)
    assert m["stock_phrase_story_share"] == pytest.approx(1 / 3, abs=1e-4)
    assert m["stock_phrases_of"] == "spy"  # a folder that names no pack: the default pack's list


def test_stock_phrases_are_those_of_the_pack_a_corpus_was_written_with(tmp_path):
    """One list for every folder of a report: the first fabula corpus's pack's."""
    import json

    from fabula.api import measure_folders
    from fabula.packs import load_pack

    bedtime = load_pack("bedtime")
    assert "rain-soaked" not in bedtime.stock_phrases and "once upon a time" in bedtime.stock_phrases
    plain, corpus = tmp_path / "plain", tmp_path / "corpus"
    for folder in (plain, corpus):
        folder.mkdir()
        (folder / "a.txt").write_text("Once upon a time the rain-soaked dog slept by the stove.")
    (corpus / "fabula.json").write_text(json.dumps({"pack": "bedtime", "seed": 1}))
    a, b = measure_folders([plain, corpus], semantic=False)
    assert a["stock_phrases_of"] == b["stock_phrases_of"] == "bedtime"
    assert a["stock_phrase_story_share"] == 1.0 and a["stock_phrases_top"][0]["value"] == "once upon a time"
    (only,) = measure_folders([plain], semantic=False)
    assert only["stock_phrases_of"] == "spy" and only["stock_phrases_top"][0]["value"] == "rain-soaked"


def test_the_most_common_name_is_a_person_not_a_place(tmp_path):
    """The reference seeds' case: a city in every story, the same adversary in
    most. The report must name the adversary."""
    from fabula.reporting.metrics import measure

    (tmp_path / "a.txt").write_text("Years later, in Tokyo, Viktor waited for Natalia at the station.")
    (tmp_path / "b.txt").write_text("The parcel reached Tokyo on a Monday; Natalia had sent it to Hiroshi.")
    (tmp_path / "c.txt").write_text("From a hotel in Tokyo, Natasha watched the harbour.")
    m = measure(tmp_path, semantic=False)
    assert m["top_name"] == {"value": "Natalia", "share": round(2 / 3, 4)}
    assert "Tokyo" not in {x["value"] for x in m["recurrence"]["name"]}


def test_a_pack_with_no_stock_phrases_is_measured_with_none(tmp_path):
    from fabula.reporting.metrics import measure

    (tmp_path / "a.txt").write_text("The rain-soaked dog slept by the stove.")
    m = measure(tmp_path, semantic=False, ruler=("mine", ()))
    assert m["stock_phrases_of"] == "mine" and m["stock_phrases_per_1k_words"] == 0.0


def test_a_large_folder_is_measured_on_a_seeded_sample_of_its_stories(tmp_path):
    import random
    import shutil

    from fabula.backends.fake import filler
    from fabula.reporting.metrics import folder_ids, measure, sample_ids

    rng = random.Random(8)
    whole, part = tmp_path / "whole", tmp_path / "part"
    whole.mkdir()
    part.mkdir()
    for i in range(30):
        (whole / f"s{i:03d}.txt").write_text(filler(rng, rng.randint(40, 120)))
    ids = folder_ids(whole)
    picked = sample_ids(ids, 9)
    assert len(picked) == 9 and picked == sample_ids(list(reversed(ids)), 9)  # the ids decide, not their order
    assert sample_ids(ids, 40) == set(ids)
    for i in sorted(picked):
        shutil.copy(whole / f"{i}.txt", part / f"{i}.txt")
    m, alone = measure(whole, semantic=False, most=9), measure(part, semantic=False, most=None)
    assert (m["stories"], m["measured_stories"]) == (30, 9)
    for key in ("words_mean", "compression_ratio", "self_repetition_4", "distinct_4", "self_bleu_4", "seq_rep_4"):
        assert m[key] == alone[key], key  # the sample's figures, as if it were the folder
    full = measure(whole, semantic=False, most=0)
    assert (full["stories"], full["measured_stories"]) == (30, 30) and full["distinct_1"] != m["distinct_1"]
