"""A dataset folder (`fabula export --format hf`) onto the Hugging Face Hub,
with its dataset card.

    fabula export corpus --to corpus_hf --format hf
    fabula publish corpus_hf your-name/spy-stories --dry-run   # what would go up; no network
    fabula publish corpus_hf your-name/spy-stories             # after `hf auth login` (or HF_TOKEN)

``datasets``' ``push_to_hub`` keeps a README.md already in the repository and
writes a bare card of its own when there is none, so the card goes up first:
the repository is created (or reused), README.md is uploaded, then the rows.
Everything is checked before the first request: the folder is an hf export
with its card, the repository id is well formed, a token is there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fabula.errors import MissingDependency, UsageError

CARD = "README.md"


@dataclass(frozen=True)
class Upload:
    """What publish() sends, checked: the dataset folder, its card and rows."""

    folder: Path
    repo_id: str
    private: bool
    rows: int
    columns: tuple[str, ...]
    license: str
    models: tuple[str, ...] = ()

    @property
    def filler(self) -> bool:
        """Written by the fake backend: test filler, not stories to publish."""
        return "fake" in self.models

    def lines(self) -> list[str]:
        where = "private" if self.private else "public"
        return [
            f"repository: https://huggingface.co/datasets/{self.repo_id} ({where}; created if it does not exist)",
            f"1. {CARD}: the dataset card from {self.folder / CARD} (license: {self.license})",
            f"2. {self.rows} rows, {len(self.columns)} columns ({', '.join(self.columns[:6])}{', ...' if len(self.columns) > 6 else ''})",
        ]


def check(folder: str | os.PathLike[str], repo_id: str, private: bool = False) -> Upload:
    """The upload ``publish`` would make, or a UsageError naming what is wrong."""
    try:
        import datasets
        from huggingface_hub import DatasetCard
        from huggingface_hub.utils import HFValidationError, validate_repo_id
    except ImportError:
        raise MissingDependency("publishing a dataset", "datasets", extra="export") from None
    folder = Path(folder)
    if not (folder / "dataset_info.json").is_file() or not (folder / CARD).is_file():
        made = (
            f"fabula export {folder} --to {folder}_hf --format hf" if (folder / "fabula.json").is_file() else f"fabula export CORPUS --to {folder} --format hf"
        )
        raise UsageError(f"{folder} is not a dataset folder with a card; make one with `{made}`, then publish that")
    try:
        validate_repo_id(repo_id)
        ok = repo_id.count("/") == 1
    except HFValidationError:
        ok = False
    if not ok:
        raise UsageError(f"repository id {repo_id!r}: give it as your-name/dataset-name (letters, digits, - _ .)")
    card = DatasetCard.load(folder / CARD)
    ds = datasets.load_from_disk(str(folder))
    if not isinstance(ds, datasets.Dataset):
        raise UsageError(f"{folder} holds several splits; fabula publishes the one-split folders `fabula export --format hf` writes")
    models = sorted({m for m in ds.unique("model") if m}) if "model" in ds.column_names else []
    return Upload(folder, repo_id, private, ds.num_rows, tuple(ds.column_names), str(card.data.get("license", "not stated")), tuple(models))


def logged_in() -> bool:
    """Whether `hf auth login` saved a token, or HF_TOKEN holds one."""
    from huggingface_hub import get_token

    return bool(get_token())


def saved_token() -> str:
    """The token `hf auth login` saved (or HF_TOKEN), or a UsageError saying how to log in."""
    from huggingface_hub import get_token

    token = get_token()
    if not token:
        raise UsageError(NO_LOGIN)
    return token


NO_LOGIN = "not logged in to the Hugging Face Hub: run `hf auth login` or set HF_TOKEN, then publish again"


FILLER = "the stories were written by the fake backend (test filler, not stories); write the corpus with a model, export it again, then publish"


def publish(upload: Upload, token: str | None = None, api: Any = None) -> str:
    """Create the repository, upload the card, push the rows; returns the
    dataset's URL. ``token``: default the one `hf auth login` saved or HF_TOKEN."""
    import datasets
    from huggingface_hub import HfApi

    if upload.filler:
        raise UsageError(FILLER)

    token = token or saved_token()
    api = api or HfApi(token=token)
    api.create_repo(upload.repo_id, repo_type="dataset", private=upload.private, exist_ok=True)
    api.upload_file(
        path_or_fileobj=str(upload.folder / CARD), path_in_repo=CARD, repo_id=upload.repo_id, repo_type="dataset", commit_message="Dataset card (fabula)"
    )
    datasets.load_from_disk(str(upload.folder)).push_to_hub(upload.repo_id, private=upload.private, token=token)
    return f"https://huggingface.co/datasets/{upload.repo_id}"
