"""fabula.text: one tokenisation and stable hashes for the checks, the scorer and the memory."""

import os
import subprocess
import sys

import numpy as np

from fabula.backends.fake import filler
from fabula.checks import SHINGLE, NearDuplicates
from fabula.text import gram_hash, ngram_hashes, tokens, word_hashes


def test_a_grams_hash_is_the_same_from_its_words_or_its_string_and_order_matters():
    toks = tokens("The porter folded the Ticket, and the porter waited.")
    h4 = ngram_hashes(word_hashes(toks), 4)
    assert len(h4) == len(toks) - 3
    assert [gram_hash(" ".join(toks[i:i + 4])) for i in range(len(h4))] == h4.tolist()
    assert gram_hash("a b c d") != gram_hash("b a c d") and gram_hash("a b c d") != gram_hash("a b c")
    assert len(ngram_hashes(word_hashes(["a", "b"]), 4)) == 0


def test_hashes_are_the_same_in_every_process():
    code = "from fabula.text import gram_hash; print(gram_hash('the porter folded the'))"
    seen = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout.strip() for seed in ("1", "2")}
    assert seen == {str(gram_hash("the porter folded the"))}


def _shingles(text):
    toks = tokens(text)
    return {tuple(toks[i:i + SHINGLE]) for i in range(len(toks) - SHINGLE + 1)}


def test_minhash_estimates_the_jaccard_of_5_gram_sets():
    import random

    rng = random.Random(5)
    nd = NearDuplicates()
    errors = []
    for _ in range(40):
        base = filler(rng, 300).split(". ")
        other = [s if rng.random() < rng.choice((0.3, 0.6, 0.9)) else filler(rng, 12) for s in base]
        a, b = ". ".join(base), ". ".join(other)
        true = len(_shingles(a) & _shingles(b)) / len(_shingles(a) | _shingles(b))
        est = float(np.mean(nd.signature(a) == nd.signature(b)))
        errors.append(est - true)
    assert np.mean(np.abs(errors)) < 0.05 and abs(np.mean(errors)) < 0.03  # 128 permutations: sd ~0.04
