"""`fabula export` and Corpus.to_pandas / to_dataset: round trips."""

import json

import pytest

import fabula
from fabula.store import visible_records
from tests.conftest import run_cli

N = 5


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "c"
    fabula.Corpus(out).write(N, backend=fabula.FakeModel(), seed=2, words=300, progress=False)
    return fabula.Corpus(out)


def on_disk(corpus):
    recs = visible_records(corpus.path)  # each with its card, from plan.jsonl
    return {r["id"]: ((corpus.path / r["file"]).read_text(), r["card"]) for r in recs}


def assert_rows_match(rows, corpus):
    disk = on_disk(corpus)
    assert len(rows) == N and [r["id"] for r in rows] == list(disk)
    for r in rows:
        text, card = disk[r["id"]]
        assert r["text"] == text and json.loads(r["card"]) == card
        hero, other = card["cast"]["hero"], card["cast"]["other"]
        assert r["hero_name"] == f"{hero['first']} {hero['last']}" and r["hero_gender"] == hero["gender"]
        assert r["other_nationality"] == other["nationality"] and r["hero_service"] == hero["traits"]["service"]
        assert r["city"] == card["slots"]["city"] and r["summons"] == card["slots"]["summons"]
        assert list(r["beats"]) == card["beats"] and r["pack"] == "spy" and r["model"] == "fake"


def test_parquet_round_trips_through_pandas_and_datasets(corpus, tmp_path):
    import datasets
    import pandas as pd

    r = run_cli("export", str(corpus.path), "--to", str(tmp_path / "c.parquet"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"exported {N} stories to {tmp_path / 'c.parquet'} (parquet)"
    assert_rows_match(pd.read_parquet(tmp_path / "c.parquet").to_dict("records"), corpus)
    ds = datasets.load_dataset("parquet", data_files=str(tmp_path / "c.parquet"), split="train", cache_dir=str(tmp_path / "cache"))
    assert_rows_match(list(ds), corpus)


def test_jsonl_and_the_python_api_give_the_same_rows(corpus, tmp_path):
    assert corpus.export(tmp_path / "c.jsonl", "jsonl") == N
    from_file = [json.loads(x) for x in (tmp_path / "c.jsonl").read_text().splitlines()]
    assert_rows_match(from_file, corpus)
    assert from_file == list(corpus.rows())
    assert_rows_match(corpus.to_pandas().to_dict("records"), corpus)
    assert_rows_match(list(corpus.to_dataset()), corpus)


def test_hf_folder_loads_from_disk_and_its_card_holds_the_report_figures(corpus, tmp_path):
    import datasets
    import yaml

    r = run_cli("export", str(corpus.path), "--to", str(tmp_path / "hf"), "--format", "hf")
    assert r.returncode == 0, r.stderr
    assert_rows_match(list(datasets.load_from_disk(str(tmp_path / "hf"))), corpus)
    card = (tmp_path / "hf" / "README.md").read_text()
    assert card.startswith("---\n")
    header = yaml.safe_load(card.split("---\n")[1])
    assert header["language"] == ["en"] and header["size_categories"] == ["n<1K"]
    assert header["task_categories"] == ["text-generation"] and "fake" in header["license_details"]
    names = [f["name"] for f in header["dataset_info"]["features"]]
    assert names[:4] == ["id", "index", "text", "title"] and {"sequence": "string", "name": "beats"} in header["dataset_info"]["features"]
    assert header["dataset_info"]["splits"] == [{"name": "train", "num_examples": N}]
    rep = run_cli("report", str(corpus.path), "--no-semantic", "--json", str(tmp_path / "r.json"))
    assert rep.returncode == 0, rep.stderr
    fig = json.loads((tmp_path / "r.json").read_text())[0]
    for key in ("compression_ratio", "self_repetition_4", "self_bleu_4"):
        assert f"| {key} | {fig[key]:.3f} |" in card


def test_export_takes_only_committed_stories_and_never_overwrites(corpus, tmp_path):
    import shutil

    c = tmp_path / "c"
    shutil.copytree(corpus.path, c)
    (c / "stories" / "099_0000000000000000.txt").write_text("renamed into place, not yet recorded")
    with open(c / "corpus.jsonl", "a") as f:
        f.write('{"id":"099_00')  # a record half appended
    assert fabula.Corpus(c).export(tmp_path / "x.jsonl", "jsonl") == N
    r = run_cli("export", str(c), "--to", str(tmp_path / "x.jsonl"))
    assert r.returncode == 2 and r.stderr.strip() == f"fabula: error: {tmp_path / 'x.jsonl'} exists; choose a new --to (fabula export never overwrites)"
    r = run_cli("export", str(tmp_path), "--to", str(tmp_path / "y.parquet"))
    assert r.returncode == 2 and "is not a fabula corpus" in r.stderr


def test_a_missing_export_extra_names_the_install_command(corpus, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_pandas(name, *args, **kwargs):
        if name == "pandas":
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pandas)
    with pytest.raises(fabula.MissingDependency, match=r"pip install 'fabula\[export\]'"):
        corpus.to_pandas()


def test_export_streams_in_batches_and_a_late_typed_column_keeps_its_values(corpus, tmp_path, monkeypatch):
    """Issue 25: memory holds one batch of rows, not the corpus."""
    import pandas as pd
    import pyarrow.parquet as pq

    from fabula import export

    monkeypatch.setattr(export, "BATCH", 2)  # 5 stories: batches of 2, 2 and 1
    assert corpus.export(tmp_path / "c.parquet") == N
    assert pq.ParquetFile(tmp_path / "c.parquet").metadata.num_row_groups == 3
    assert_rows_match(pd.read_parquet(tmp_path / "c.parquet").to_dict("records"), corpus)
    assert corpus.export(tmp_path / "hf", "hf") == N
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.parquet", "hf"]  # nothing of the work left beside
    # A column that is None in the whole first batch gets its type from a later one.
    rows = [{"a": None, "b": 1}] * 3 + [{"a": 5, "b": 2}]
    assert export._write_parquet(iter(rows), tmp_path / "late.parquet") == 4
    assert pd.read_parquet(tmp_path / "late.parquet")["a"].tolist()[3] == 5
