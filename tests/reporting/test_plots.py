"""The report's plots on hand-made results: each draws every folder, the
reference grey and dashed, and the same data gives the same bytes."""

import numpy as np

from fabula.reporting import plots


def results(with_vectors: bool = False) -> list[dict]:
    rng = np.random.default_rng(0)

    def one(folder, n, spread, reference=False):
        v = rng.normal(size=(n, 8)) * spread + 1  # around one direction, tight or loose
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        return {
            "folder": folder,
            "_reference": reference,
            "_lengths": list(rng.integers(300, 500, n)),
            "_vectors": v if with_vectors else None,
            "compression_ratio": 2.1 if reference else 2.6,
            "self_repetition_4": 1.2,
            "self_bleu_4": 0.07,
            "distinct_2": 0.9,
            "mean_cosine": None,
            "stock_phrases_per_1k_words": 0.0,
            "recurrence": {"name": [{"value": "Natalia", "share": 0.67}]}
            if reference
            else {"name": [{"value": "Hadija", "share": 0.02}], "city": [{"value": "Riga", "share": 0.1}]},
        }

    return [one("/x/seeds", 3, 0.05, reference=True), one("/y/corpus", 40, 1.0)]


def test_every_plot_names_every_folder_and_marks_the_reference():
    rs = results(with_vectors=True)
    for svg in (plots.metrics(rs), plots.lengths(rs), plots.recurrence(rs), plots.story_map(rs)):
        assert svg.startswith("<svg") and "seeds" in svg and "corpus" in svg
    assert plots.colours(rs)[0] == plots.REFERENCE_GREY and plots.colours(rs)[1] != plots.REFERENCE_GREY
    assert "mean pairwise cosine" not in plots.metrics(rs)  # no value in any folder: no empty panel
    assert "Natalia" in plots.recurrence(rs) and "not recorded" in plots.recurrence(rs)  # seeds have no city


def test_the_map_shows_a_tight_folder_tighter_than_a_spread_one():
    svg = plots.story_map(results(with_vectors=True))
    import re

    spread = {m[0]: float(m[1]) for m in re.findall(r"(seeds|corpus): spread ([0-9.]+)", svg)}
    assert spread["seeds"] < spread["corpus"], spread


def test_no_vectors_no_map_and_same_data_same_bytes():
    assert plots.story_map(results()) == ""
    assert plots.metrics(results()) == plots.metrics(results())


def test_two_folders_of_the_same_name_keep_their_paths():
    rs = results()
    rs[0]["folder"], rs[1]["folder"] = "/a/corpus", "/b/corpus"
    assert plots.names(rs) == ["/a/corpus", "/b/corpus"]
