"""Words, n-grams and their hashes: the one tokenisation the checks, the
scorer and the corpus memory share.

A story is split into words once (``WORD``: letters of Latin scripts,
apostrophes and hyphens), lower-cased, and each distinct word is hashed once
(blake2b, 64 bits, cached): so every process gives the same hashes (a
seed's choices must be reproducible) and an n-gram's hash is a few numpy
operations on its words' hashes, not a cryptographic hash of a joined string
per gram (500 of them a story, once for the novelty set, once for the gram
counts, once for MinHash).
"""

from __future__ import annotations

import hashlib
import re

import numpy as np

WORD = re.compile(r"[A-Za-zÀ-ÖØ-öø-ÿĀ-žȘ-ț'’-]+")


def words(text: str) -> list[str]:
    return WORD.findall(text)


def tokens(text: str) -> list[str]:
    """The words of ``text``, lower-cased (what every n-gram is made of)."""
    return [w.lower() for w in WORD.findall(text)]


_WORD_HASH: dict[str, int] = {}
_WORD_HASH_MAX = 1 << 21  # distinct words kept (~200 MB at most); past that the cache starts again


def _word_hash(w: str) -> int:
    h = int.from_bytes(hashlib.blake2b(w.encode(), digest_size=8).digest(), "little")
    if len(_WORD_HASH) >= _WORD_HASH_MAX:
        _WORD_HASH.clear()
    _WORD_HASH[w] = h
    return h


def word_hashes(toks: list[str]) -> np.ndarray:
    """64-bit hash of each token (uint64), the same in every process."""
    get = _WORD_HASH.get
    return np.fromiter((get(w) or _word_hash(w) for w in toks), dtype=np.uint64, count=len(toks))


# One odd 64-bit multiplier per position in a gram (n <= 8), fixed forever:
# changing them changes every saved index and every near-duplicate answer.
_POSITION = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93,
                      0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53, 0x94D049BB133111EB, 0xBF58476D1CE4E5B9], dtype=np.uint64)


def _mix(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser: every output bit depends on every input bit
    (a sum of products alone leaves the low bits depending on low bits only)."""
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


def ngram_hashes(hashes: np.ndarray, n: int) -> np.ndarray:
    """64-bit hash of every run of ``n`` consecutive words, in order, from the
    words' ``word_hashes``; empty when there are fewer than n words."""
    count = len(hashes) - n + 1
    if count <= 0:
        return np.empty(0, dtype=np.uint64)
    with np.errstate(over="ignore"):
        h = hashes[:count] * _POSITION[0]
        for k in range(1, n):
            h = h + hashes[k:k + count] * _POSITION[k]
        return _mix(h)


def gram_hash(gram: str) -> int:
    """The hash ``ngram_hashes`` gives the gram "w1 w2 ... wn" (lower-case words, one space apart)."""
    toks = gram.split(" ")
    return int(ngram_hashes(word_hashes(toks), len(toks))[0])
