"""fabula.text: one tokenisation and stable hashes for the checks, the scorer and the memory."""

import os
import re
import subprocess
import sys

import numpy as np

from fabula.backends.fake import filler
from fabula.checks import SHINGLE, NearDuplicates
from fabula.text import gram_hash, gram_hit, ngram_hashes, tokens, word_hashes


def test_a_grams_hash_is_the_same_from_its_words_or_its_string_and_order_matters():
    toks = tokens("The porter folded the Ticket, and the porter waited.")
    h4 = ngram_hashes(word_hashes(toks), 4)
    assert len(h4) == len(toks) - 3
    assert [gram_hash(" ".join(toks[i : i + 4])) for i in range(len(h4))] == h4.tolist()
    assert gram_hash("a b c d") != gram_hash("b a c d") and gram_hash("a b c d") != gram_hash("a b c")
    assert len(ngram_hashes(word_hashes(["a", "b"]), 4)) == 0


def test_hashes_are_the_same_in_every_process():
    code = "from fabula.text import gram_hash; print(gram_hash('the porter folded the'))"
    seen = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env={**os.environ, "PYTHONHASHSEED": seed}).stdout.strip()
        for seed in ("1", "2")
    }
    assert seen == {str(gram_hash("the porter folded the"))}


def _shingles(text):
    toks = tokens(text)
    return {tuple(toks[i : i + SHINGLE]) for i in range(len(toks) - SHINGLE + 1)}


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


def test_gram_hit_finds_a_banned_4_gram_when_its_last_word_closes():
    grams = frozenset({"in the middle of"})
    text = "He stood in the Middle of"
    assert gram_hit(text, 3, grams) is None  # "of" may still grow ("often")
    assert gram_hit(text + " ", 1, grams) == text.index("of")  # closed: rewind to its last word
    assert gram_hit(text + ",", 1, grams) == text.index("of")
    assert gram_hit(text + " the", 4, grams) == text.index("of")
    assert gram_hit(text + " the road", 5, grams) is None  # closed earlier: already judged
    assert gram_hit("He stood in the middle ground ", 1, grams) is None


# One text per alternative of the gated patterns: the gate must let each through.
GATED_EXAMPLES = {
    "META_GATED": [
        "In this short story",
        "It was ORIGINALLY PUBLISHED in",
        "first published in",
        "All rights reserved.",
        "Copyright 1990",
        "Chapter 3 opens",
        "Chapter IV",
        "The End",
        "  the end.",
        "Read more here",
        "Click HERE",
        "subscribe now",
        "see https://x",
        "at www.example",
        "visit kgb.org today",
        "Author's note: hi",
        "A note: he left",
        "Title: Cold",
        "Prompt: write",
        "Summary: a man",
        "**bold**",
        "# Heading",
        "as in [12]",
        "© 1991",
        "Continue reading",
        "To be continued",
        "About the Author",
        "Book 2 begins",
        "part 2 of it",
        "on Kindle",
        "in paperback",
        "a <div> here",
        "</p>",
        "(see below)",
        "the story below",
        "The story is told as if",
        "The story begins with a scene",
        "the story unfolds in Riga",
        "told in 3 paragraphs:",
        "split into four paragraphs",
        "It's in your own words I add",
        "The end: Laura",
    ],
    "ENCYCLOPEDIC_GATED": [
        "Ivan (born 1945)",
        "Ivan (née Petrova)",
        "(died in 1990)",
        "(b. 1945)",
        "(d.1990)",
        "(1945-1990)",
        "born in 1945 in Riga",
        "born on May 1945",
        "was first published by",
        "were published",
        "a bestseller",
        "best-selling",
        "copies sold",
        "told reporters",
        "told the BBC",
        "told Reuters News",
        "according to police",
        "is best known for",
        "is known as",
        "is portrayed",
        "was portrayed",
        "media outlets",
        "works for Interfax",
        "RIA Novosti said",
    ],
    "META_EXTRA": ["The Story went", "this tale of", "the author wrote", "Readers knew", "a reader"],
    "REPORTAGE": [
        "she says she left",
        "Markus says so",
        "it says now that",
        "then says Ilse, gravely",
        "I met him at the depot",
        "I asked her twice",
        "I interviewed them in Graz",
        "I spoke to him",
        "What exactly is the story here?",
        "what is the story",
        "she told me about the key",
        "they told us that it burned",
    ],
}


def test_a_gated_pattern_finds_what_its_regex_finds():
    import random

    from fabula import score
    from fabula import text as text_layer
    from fabula.backends.fake import filler
    from fabula.genre import Genre
    from fabula.packs import load_pack

    where = {
        "META_GATED": text_layer.META_GATED,
        "META_EXTRA": score.META_EXTRA,
        "REPORTAGE": text_layer.REPORTAGE,
        "ENCYCLOPEDIC_GATED": Genre.of(load_pack("spy")).encyclopedic,
    }  # with the spy pack's agencies

    def whole(pattern, text):
        return [m.group(0) for m in pattern.finditer(text)]

    for name, examples in GATED_EXAMPLES.items():
        gated = where[name]
        for text in examples:
            assert gated.pattern.findall(text), (name, text)  # the example is one
            assert gated.findall(text) == whole(gated.pattern, text), (name, text)
            assert gated.search(text).span() == gated.pattern.search(text).span()
        rng = random.Random(3)
        for _ in range(200):  # and the gate changes nothing on ordinary text, nor on several examples at once
            text = filler(rng, 40) + " " + rng.choice(examples)
            assert gated.findall(text) == whole(gated.pattern, text)
            text = "\n".join(rng.sample(examples, 3)) + " " + filler(rng, 20) + " " + rng.choice(examples)
            assert gated.findall(text) == whole(gated.pattern, text), text
            assert gated.search(text).span() == gated.pattern.search(text).span()
        assert gated.findall(filler(rng, 40)) == []


def test_a_gated_pattern_by_parts_searches_only_what_the_text_may_match():
    from fabula.text import META_GATED

    parts = [(re.compile(alt, META_GATED.pattern.flags), needles) for alt, needles in META_GATED.parts]
    for text in GATED_EXAMPLES["META_GATED"]:  # each match holds a needle of the part that makes it
        for m in META_GATED.pattern.finditer(text):
            part = next((needles for p, needles in parts if p.match(text, m.start()) and p.match(text, m.start()).group(0) == m.group(0)))
            assert any(n in m.group(0).casefold() for n in part), (text, m.group(0), part)
    story = "Mira counted the crates twice before she signed for them."
    assert META_GATED._pattern(story) is None
    assert META_GATED._pattern(story + " It was the book 2 copy.").pattern == r"\bbook \d"
    assert META_GATED.search("The author's note: done").group(0) == "author's note"
