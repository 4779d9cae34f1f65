"""Shards joined by `fabula export A B ... --to FILE`: near-duplicates across shards left out."""

import json
import shutil

import pytest

import fabula
from fabula import join
from fabula.errors import UsageError
from fabula.store import INDEX, visible_records
from tests.conftest import run_cli

N = 6


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    base = tmp_path_factory.mktemp("join")
    for seed in (1, 2):
        fabula.Corpus(base / f"s{seed}").write(N, backend=fabula.FakeModel(), seed=seed, words=300, progress=False)
    return base


def copy_as(src, dst, **manifest):
    """A shard holding ``src``'s stories, its manifest changed by ``manifest``."""
    shutil.copytree(src, dst)
    m = json.loads((dst / "fabula.json").read_text())
    (dst / "fabula.json").write_text(json.dumps({**m, **manifest}))
    return dst


def ids(folder):
    return [r["id"] for r in visible_records(folder, cards=False)]


def test_shards_of_other_seeds_join_whole_with_a_shard_column(shards, tmp_path):
    s1, s2 = shards / "s1", shards / "s2"
    r = run_cli("export", str(s1), str(s2), "--to", str(tmp_path / "j.jsonl"))
    assert r.returncode == 0, r.stderr
    assert f"exported {2 * N} stories of 2 shards" in r.stdout and "left out 0 near-duplicates" in r.stdout
    rows = [json.loads(x) for x in (tmp_path / "j.jsonl").read_text().splitlines()]
    assert [(x["shard"], x["id"]) for x in rows] == [(str(s1), i) for i in ids(s1)] + [(str(s2), i) for i in ids(s2)]
    assert [{k: v for k, v in x.items() if k != "shard"} for x in rows[N:]] == list(fabula.Corpus(s2).rows())


def test_a_shard_repeating_another_is_left_out_with_or_without_its_index(shards, tmp_path):
    s1, s2 = shards / "s1", shards / "s2"
    s3 = copy_as(s1, tmp_path / "s3", seed=99)
    joined = join.cross_duplicates([s1, s2, s3])
    assert [len(s.like) for s in joined] == [0, 0, N]
    assert set(joined[2].like) == set(ids(s3)) and all(v.startswith(f"{s1}/") for v in joined[2].like.values())
    assert joined[2].saved == N  # every signature from index.signatures
    (s3 / INDEX).unlink()
    again = join.cross_duplicates([s1, s2, s3])
    assert again[2].saved == 0 and again[2].like == joined[2].like  # from the texts: the same verdicts
    # Named first, the copy is kept and the original left out.
    assert [len(s.like) for s in join.cross_duplicates([s3, s1])] == [0, N]

    r = run_cli("export", str(s1), str(s2), str(s3), "--to", str(tmp_path / "j.parquet"))
    assert r.returncode == 0, r.stderr
    assert f"exported {2 * N} stories of 3 shards" in r.stdout and f"left out {N} near-duplicates" in r.stdout
    assert f"{s3}/{ids(s3)[0]} is like {s1}/" in r.stdout


def test_shards_that_cannot_be_joined_are_refused_in_one_line_and_nothing_written(shards, tmp_path):
    s1 = shards / "s1"
    cases = {
        "same seed": ([s1, copy_as(s1, tmp_path / "same")], "both written with --seed 1"),
        "other pack": ([s1, copy_as(s1, tmp_path / "other", pack="bedtime", seed=5)], "pack 'bedtime'"),
        "twice": ([s1, s1], "given twice"),
        "not a corpus": ([s1, tmp_path], "is not a fabula corpus"),
    }
    for name, (folders, words) in cases.items():
        with pytest.raises(UsageError, match=words):
            join.check_shards(folders)
        r = run_cli("export", *map(str, folders), "--to", str(tmp_path / f"{name}.parquet"))
        assert r.returncode != 0 and words in r.stderr and len(r.stderr.strip().splitlines()) == 1, (name, r.stderr)
        assert not (tmp_path / f"{name}.parquet").exists()
    r = run_cli("export", str(s1), str(shards / "s2"), "--to", str(tmp_path / "hf"), "--format", "hf")
    assert r.returncode != 0 and "--format hf takes one folder" in r.stderr and not (tmp_path / "hf").exists()
