"""Metric values on tiny hand-made corpora, computed by hand."""

import gzip
import math

import pytest

from fabula.report.metrics import compression_ratio, distinct, self_bleu, self_repetition

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
