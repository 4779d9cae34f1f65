"""fabula publish: everything up to the Hub's network calls (issue 26, row 12)."""

import pytest

from fabula.errors import UsageError
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("publish")
    assert run_cli("write", "-n", "3", "--backend", "fake", "--out", str(tmp / "c"), "-q").returncode == 0
    assert run_cli("export", str(tmp / "c"), "--to", str(tmp / "c_hf"), "--format", "hf").returncode == 0
    return tmp / "c_hf"


@pytest.fixture(scope="module")
def model_dataset(dataset):
    """The same rows as if a model had written them (the fake backend's are refused)."""
    import shutil

    import datasets

    out = dataset.parent / "model_hf"
    datasets.load_from_disk(str(dataset)).map(lambda row: {"model": "gemma-3-270m-q4_k_m", "backend": "embedded"}).save_to_disk(str(out))
    shutil.copy(dataset / "README.md", out / "README.md")
    return out


def no_login(tmp_path) -> dict:
    """An environment with no saved token and no HF_TOKEN (the variable set empty)."""
    return {"HF_HOME": str(tmp_path / "hf"), "HF_TOKEN": ""}


def test_a_dry_run_checks_everything_and_sends_nothing(dataset, tmp_path):
    r = run_cli("publish", str(dataset), "me/spy-stories", "--dry-run", env=no_login(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "https://huggingface.co/datasets/me/spy-stories (public" in r.stdout
    assert f"README.md: the dataset card from {dataset / 'README.md'} (license: other)" in r.stdout
    assert "3 rows" in r.stdout and "dry run: nothing was sent" in r.stdout
    # What a real publish would refuse is said, not hidden: fake-backend filler, no login.
    assert "a real publish would be refused: the stories were written by the fake backend" in r.stderr
    assert "a real publish would be refused: not logged in" in r.stderr


def test_a_dry_run_with_nothing_to_refuse_says_it_is_ready(model_dataset, tmp_path):
    r = run_cli("publish", str(model_dataset), "me/spy-stories", "--dry-run", env={**no_login(tmp_path), "HF_TOKEN": "hf_test"})
    assert r.returncode == 0 and "everything is ready" in r.stdout and not r.stderr.strip(), r.stderr


def test_what_cannot_be_published_is_one_line_before_any_request(dataset, model_dataset, tmp_path):
    cases = [
        ((str(model_dataset), "me/spy-stories"), "not logged in to the Hugging Face Hub: run `hf auth login` or set HF_TOKEN"),
        ((str(dataset), "me/spy-stories"), "written by the fake backend (test filler, not stories)"),
        ((str(dataset), "spy-stories", "--dry-run"), "give it as your-name/dataset-name"),
        ((str(dataset), "me/bad name!", "--dry-run"), "give it as your-name/dataset-name"),
        ((str(dataset.parent / "c"), "me/x", "--dry-run"), f"make one with `fabula export {dataset.parent / 'c'} --to {dataset.parent / 'c'}_hf --format hf`"),
    ]
    for args, expect in cases:
        r = run_cli("publish", *args, env=no_login(tmp_path))
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and expect in lines[0], (args, r.stderr)
        assert "publishing" not in r.stdout  # refused before anything is announced


def test_publish_creates_the_repository_uploads_the_card_then_pushes_the_rows(model_dataset, monkeypatch):
    """The order matters: push_to_hub keeps a README.md already there and
    writes a bare card when there is none. The Hub's client is replaced by a
    recorder here: the calls and their arguments are what is tested."""
    import datasets
    from huggingface_hub import DatasetCard

    from fabula import publish

    calls = []

    class Api:
        def create_repo(self, repo_id, **kw):
            calls.append(("create_repo", repo_id, kw))

        def upload_file(self, **kw):
            calls.append(("upload_file", kw["repo_id"], {k: v for k, v in kw.items() if k != "repo_id"}))

    def push_to_hub(self, repo_id, **kw):
        calls.append(("push_to_hub", repo_id, {"rows": self.num_rows, **kw}))

    monkeypatch.setattr(datasets.Dataset, "push_to_hub", push_to_hub)
    assert publish.check(model_dataset, "me/x").models == ("gemma-3-270m-q4_k_m",)
    upload = publish.check(model_dataset, "me/spy-stories", private=True)
    url = publish.publish(upload, token="hf_test", api=Api())
    assert url == "https://huggingface.co/datasets/me/spy-stories"
    assert [c[0] for c in calls] == ["create_repo", "upload_file", "push_to_hub"]
    assert calls[0][2] == {"repo_type": "dataset", "private": True, "exist_ok": True}
    card = calls[1][2]
    assert card["path_in_repo"] == "README.md" and card["repo_type"] == "dataset"
    assert DatasetCard.load(card["path_or_fileobj"]).data["license"] == "other"
    assert calls[2][1] == "me/spy-stories" and calls[2][2] == {"rows": 3, "private": True, "token": "hf_test"}

    monkeypatch.setenv("HF_TOKEN", "")
    monkeypatch.setenv("HF_HOME", str(model_dataset.parent / "no-login"))
    with pytest.raises(UsageError, match="not logged in"):
        publish.publish(upload, api=Api())
    assert len(calls) == 3  # refused before the first call
