"""A corpus as a dataset: one row per committed story, flat card columns.

    fabula export corpus --to corpus.parquet                 # pyarrow
    fabula export corpus --to corpus.jsonl --format jsonl
    fabula export corpus --to corpus_hf --format hf          # datasets.save_to_disk + a dataset card

Rows (``rows()``): ``id``, ``index``, ``text``, ``title``; for every role of
the pack (spy: ``hero_*`` and ``other_*``) its name, first, last, gender,
nationality and each trait (spy: ``hero_service``); every slot of
the pack (city, venue, weather, summons, secret, ending, year, …) as the
story's own wording; ``beats`` (list), ``card`` (the whole card as JSON);
``pack``, ``model``, ``backend``, ``seed``, ``attempt``, ``words``,
``tokens``. A corpus still being written exports only committed stories.
Nothing is half-written: every format goes to a temporary name first.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

from fabula.errors import UsageError, need

FORMATS = ("parquet", "jsonl", "hf")
BATCH = 5_000  # rows held in memory while exporting (~40 MB of Python dicts)
CHARACTER_FIELDS = ("name", "first", "last", "gender", "nationality")


def rows(corpus) -> Iterator[dict[str, Any]]:
    """The export rows of a ``fabula.Corpus``, in story order."""
    for st in corpus:
        c, r = st.card, st.record
        row: dict[str, Any] = {"id": st.id, "index": st.index, "text": st.text, "title": c.title}
        for role, ch in c.cast.items():
            for f in CHARACTER_FIELDS:
                row[f"{role}_{f}"] = ch.full if f == "name" else getattr(ch, f)
            for trait, value in ch.traits.items():
                row[f"{role}_{trait}"] = value
        for slot, value in c.slots.items():
            row[slot] = value
        row["beats"] = list(c.beats)
        row["card"] = json.dumps(c.to_dict(), ensure_ascii=False, sort_keys=True)
        row["pack"] = (r.get("pack") or {}).get("name", c.pack)
        for key in ("model", "backend", "seed", "attempt", "words", "tokens"):
            row[key] = r.get(key)
        yield row


def _need(module: str):
    return need(module, "exporting a corpus", extra="export")


def to_pandas(corpus):
    pd = _need("pandas")
    return pd.DataFrame(list(rows(corpus)))


def to_dataset(corpus):
    _need("datasets")
    import datasets

    data = list(rows(corpus))
    if not data:
        raise UsageError(f"{corpus.path} holds no committed story to make a dataset of")
    return datasets.Dataset.from_list(data)


def export(corpus, to: str | os.PathLike[str], fmt: str = "parquet") -> int:
    """Write the corpus to ``to`` in ``fmt``; returns the number of rows."""
    return write(rows(corpus), to, fmt, f"{corpus.path} holds", card=lambda ds: dataset_card(corpus, ds))


def write(items: Iterator[dict[str, Any]], to: str | os.PathLike[str], fmt: str, source: str, card=None) -> int:
    """Rows to ``to`` in ``fmt`` (``card(ds)``: the hf format's README.md;
    ``source``: what the error says holds no story); returns the rows written."""
    to = Path(to)
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt}: use one of {', '.join(FORMATS)}")
    if to.exists():
        raise UsageError(f"{to} exists; choose a new --to (fabula export never overwrites)")
    if not to.parent.is_dir():
        raise UsageError(f"{to.parent}: no such folder; create it or choose another --to")
    tmp = to.with_name(to.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
    try:
        if fmt == "jsonl":
            n = 0
            with open(tmp, "w", encoding="utf-8") as f:
                for row in items:
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
                    n += 1
        elif fmt == "parquet":
            n = _write_parquet(items, tmp)
        else:
            datasets = _need("datasets")
            tmp.mkdir()
            n = _write_parquet(items, tmp / "rows.parquet")
            if n:
                ds = datasets.Dataset.from_parquet(str(tmp / "rows.parquet"), cache_dir=str(tmp / "cache"))
                assert isinstance(ds, datasets.Dataset)
                ds.save_to_disk(str(tmp / "dataset"))
                if card is not None:
                    (tmp / "dataset" / "README.md").write_text(card(ds), encoding="utf-8")
                del ds  # its memory map of the cache is closed before the cache goes
                os.replace(tmp / "dataset", to)
        if not n:
            raise UsageError(f"{source} no committed story to export")
        if fmt != "hf":
            os.replace(tmp, to)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
    return n


def _write_parquet(items: Iterator[dict[str, Any]], path: Path) -> int:
    """Rows to one parquet file, BATCH at a time (memory holds one batch, not
    the corpus); returns the rows written. The first batch fixes the schema; a
    column still without a value there (all None) waits for later batches."""
    _need("pyarrow")
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer, n = None, 0
    held: list[dict[str, Any]] = []

    def write() -> None:
        nonlocal writer, n, held
        table = pa.Table.from_pylist(held, schema=writer.schema if writer else None)
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
        n, held = n + len(held), []

    try:
        for row in items:
            held.append(row)
            # The first batch waits (up to 8) until every column has a value somewhere, so it has a type.
            if len(held) % BATCH == 0 and (writer or len(held) >= 8 * BATCH or all(any(r.get(k) is not None for r in held) for k in held[0])):
                write()
        if held:
            write()
    finally:
        if writer is not None:
            writer.close()
    return n


def _size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return label
    return "n>1M"


def dataset_card(corpus, ds) -> str:
    """README.md for the Hub: the YAML header it expects, and the corpus's
    figures from `fabula report` (semantic metrics left out: they need torch)."""
    from fabula.reporting import report

    fig = report(corpus.path, semantic=False)[0]
    models = sorted({m for m in ds["model"] if m})
    import datasets

    features = [
        {"name": name, "dtype": feat.dtype} if isinstance(feat, datasets.Value) else {"name": name, "sequence": "string"} for name, feat in ds.features.items()
    ]  # (beats is the one list column)
    header = {
        "license": "other",
        "license_name": "model-terms",
        "license_details": "Stories written by " + ", ".join(models or ["a language model"]) + "; their use follows "
        "that model's terms" + (" (the Gemma Terms of Use)" if any("gemma" in m.lower() for m in models) else "") + ".",
        "language": ["en"],
        "size_categories": [_size_category(len(ds))],
        "task_categories": ["text-generation"],
        "tags": ["fiction", "synthetic", "fabula"],
        "dataset_info": {"features": features, "splits": [{"name": "train", "num_examples": len(ds)}]},
    }
    yaml_text = _yaml(header)
    rows_md = "\n".join(
        f"| {k} | {fig[k]:.3f} |" if isinstance(fig.get(k), float) else f"| {k} | {fig.get(k)} |"
        for k in (
            "stories",
            "words_mean",
            "compression_ratio",
            "self_repetition_4",
            "self_bleu_4",
            "distinct_2",
            "near_duplicate_pairs",
            "stock_phrase_story_share",
        )
    )
    return (
        f"---\n{yaml_text}---\n\n# {corpus.path.name}\n\n"
        f"{len(ds)} short stories written with [fabula](https://pypi.org/project/fabula/) by "
        f"{', '.join(models) or 'a language model'}. One row per story: the text, its card (characters, "
        f"setting, plan) as flat columns and as JSON, and how it was written.\n\n"
        f"## Diversity (`fabula report`)\n\n| metric | value |\n|---|---|\n{rows_md}\n"
    )


def _yaml(value: Any, indent: int = 0) -> str:
    """A small YAML writer for the card header (JSON scalars are YAML)."""
    pad = " " * indent
    out = []
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, (dict, list)):
                out.append(f"{pad}{k}:\n{_yaml(v, indent + 2)}")
            else:
                out.append(f"{pad}{k}: {json.dumps(v, ensure_ascii=False)}\n")
    else:
        for v in value:
            if isinstance(v, dict):
                first, *rest = _yaml(v, indent + 2).splitlines(keepends=True)
                out.append(f"{pad}- {first.lstrip()}" + "".join(rest))
            else:
                out.append(f"{pad}- {json.dumps(v, ensure_ascii=False)}\n")
    return "".join(out)
