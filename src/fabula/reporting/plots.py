"""The report's pictures, drawn by matplotlib as inline SVG.

Why matplotlib (and not Vega-Lite): it draws offline with no browser, no
JavaScript and no network; the SVG goes straight into the HTML, so the file is
self-contained and opens anywhere, even with scripts off. Text stays text
(``svg.fonttype = none``), so folder names and values can be searched and
read by a screen reader, and the output is the same bytes for the same data
(fixed hash salt, no date).

Every plot draws every folder side by side, one colour per folder (the same
colour in every plot); the human reference, when there is one, is grey and
dashed.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

# (result key, label, lower is better): the metrics drawn as bars
METRIC_BARS = [
    ("compression_ratio", "compression ratio", True),
    ("self_repetition_4", "self-repetition (4-grams)", True),
    ("self_bleu_4", "self-BLEU-4", True),
    ("distinct_2", "distinct-2", False),
    ("mean_cosine", "mean pairwise cosine", True),
    ("stock_phrases_per_1k_words", "stock phrases / 1,000 words", True),
]
RECURRENCE_FIRST = ("name", "first_name")  # then every slot of the pack, in its order; surnames are left out
REFERENCE_GREY = "#8c8c8c"
LABEL_CHARS = 48  # a recurrence label longer than this is cut with an ellipsis


def _rc() -> Any:  # a dict of rcParams (matplotlib types its keys as a Literal)
    return {"svg.fonttype": "none", "svg.hashsalt": "fabula", "font.size": 9, "axes.titlesize": 10, "axes.spines.top": False, "axes.spines.right": False}


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg") :]  # inline: drop the XML prolog and doctype


def names(results: list[dict]) -> list[str]:
    """The name each folder goes by in the plots: its last path part, made
    unique (two corpora both called `corpus` keep their parent)."""
    short = [Path(r["folder"]).name or r["folder"] for r in results]
    return [s if short.count(s) == 1 else r["folder"] for s, r in zip(short, results)]


def colours(results: list[dict]) -> list[str]:
    from matplotlib import colormaps

    palette = colormaps["tab10"].colors  # type: ignore[attr-defined]  # a ListedColormap
    out, k = [], 0
    for r in results:
        if r.get("_reference"):
            out.append(REFERENCE_GREY)
        else:
            out.append("#%02x%02x%02x" % tuple(int(255 * c) for c in palette[k % 10][:3]))
            k += 1
    return out


def lengths(results: list[dict]) -> str:
    """Story lengths in words, one outline per folder, as a share of its stories
    (folders of different sizes stay comparable)."""
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    all_lens = [x for r in results for x in r["_lengths"]]
    if not all_lens:
        return ""
    lo, hi = min(all_lens), max(all_lens)
    bins = np.linspace(lo - 0.5, hi + 0.5, min(30, max(2, hi - lo + 2)))
    with rc_context(_rc()):
        fig = Figure(figsize=(7, 2.8))
        ax = fig.add_subplot()
        for r, name, c in zip(results, names(results), colours(results)):
            x = np.asarray(r["_lengths"])
            ax.hist(
                x,
                bins=bins.tolist(),
                weights=np.full(len(x), 1 / len(x)),
                histtype="step",
                linewidth=1.8,
                color=c,
                linestyle="--" if r.get("_reference") else "-",
                label=f"{name} (n={len(x)})",
            )
        ax.set_xlabel("words per story")
        ax.set_ylabel("share of stories")
        ax.set_title("Story lengths")
        ax.legend(frameon=False)
        return _svg(fig)


def metrics(results: list[dict]) -> str:
    """One small panel per metric, a bar per folder; the reference's value as a
    dashed line across the panel."""
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    shown = [(k, label, low) for k, label, low in METRIC_BARS if any(r.get(k) is not None for r in results)]
    cols = 3
    rows = -(-len(shown) // cols)
    labels, cs = names(results), colours(results)
    with rc_context(_rc()):
        fig = Figure(figsize=(9, 2.4 * rows))
        for i, (key, label, low) in enumerate(shown):
            ax = fig.add_subplot(rows, cols, i + 1)
            vals = [r.get(key) for r in results]
            ys = np.arange(len(results))
            ax.barh(ys, [v or 0 for v in vals], color=cs)
            ax.set_yticks(ys, labels)
            ax.invert_yaxis()
            for y, v in zip(ys, vals):
                ax.text(v or 0, float(y), "  n/a" if v is None else f" {v:.3g}", va="center", fontsize=8)
            for r, v in zip(results, vals):
                if r.get("_reference") and v is not None:
                    ax.axvline(v, color=REFERENCE_GREY, linestyle="--", linewidth=1)
            ax.set_title(f"{label}\n({'lower' if low else 'higher'} = more diverse)")
            ax.margins(x=0.25)
        fig.tight_layout()
        return _svg(fig)


def recurrence(results: list[dict], k: int = 10) -> str:
    """The ten most common values per field, as the share of stories holding
    them; one row per field, one column per folder."""
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    seen = dict.fromkeys([*RECURRENCE_FIRST, *(f for r in results for f in r["recurrence"] if f != "surname")])
    fields = [f for f in seen if any(r["recurrence"].get(f) for r in results)]
    if not fields:
        return ""
    labels, cs = names(results), colours(results)
    with rc_context(_rc()):
        fig = Figure(figsize=(4.6 * len(results), 2.9 * len(fields)))
        axes = fig.subplots(len(fields), len(results), squeeze=False)
        top = max((t["share"] for r in results for f in fields for t in r["recurrence"].get(f, [])), default=1.0)
        for i, field in enumerate(fields):
            for j, r in enumerate(results):
                ax = axes[i][j]
                items = r["recurrence"].get(field, [])[:k]
                if not items:
                    ax.set_axis_off()
                    ax.set_title(f"{labels[j]}: {field.replace('_', ' ')}\n(not recorded: no cards)", fontsize=8)
                    continue
                ys = np.arange(len(items))
                ax.barh(ys, [t["share"] for t in items], color=cs[j])
                ax.set_yticks(ys, [_cut(str(t["value"])) for t in items], fontsize=7)
                ax.invert_yaxis()
                ax.set_xlim(0, top * 1.1)
                ax.xaxis.set_major_formatter(_percent())
                ax.set_title(f"{labels[j]}: {field.replace('_', ' ') if field != 'name' else 'names in the text'}")
        fig.tight_layout()
        return _svg(fig)


def story_map(results: list[dict]) -> str:
    """Each story as a point: its embedding projected on the first two
    principal axes of all folders' stories together (PCA by SVD), so stories
    that read alike sit close and a folder of near-copies shows as a knot."""
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    have = [(r, name, c) for r, name, c in zip(results, names(results), colours(results)) if r.get("_vectors") is not None]
    if not have:
        return ""
    x = np.vstack([r["_vectors"] for r, _, _ in have])
    centred = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    xy = centred @ vt[:2].T
    if vt.shape[0] < 2:
        xy = np.hstack([xy, np.zeros((len(xy), 1))])
    with rc_context(_rc()):
        fig = Figure(figsize=(6, 4.5))
        ax = fig.add_subplot()
        start = 0
        for r, name, c in have:
            n = len(r["_vectors"])
            part = xy[start : start + n]
            start += n
            ax.scatter(
                part[:, 0],
                part[:, 1],
                s=28 if r.get("_reference") else 14,
                color=c,
                marker="D" if r.get("_reference") else "o",
                alpha=0.8,
                label=f"{name} ({n})",
            )
            cx, cy = part.mean(axis=0)
            spread = float(np.sqrt(((part - part.mean(axis=0)) ** 2).sum(axis=1).mean()))
            ax.annotate(f"{name}: spread {spread:.2f}", (cx, cy), fontsize=8, color=c)
        ax.set_xlabel("first principal axis")
        ax.set_ylabel("second principal axis")
        ax.set_title("Stories by meaning (all-MiniLM-L6-v2, PCA)")
        ax.legend(frameon=False, fontsize=8)
        return _svg(fig)


def _cut(s: str) -> str:
    return s if len(s) <= LABEL_CHARS else s[: LABEL_CHARS - 1] + "…"


def _percent():
    from matplotlib.ticker import PercentFormatter

    return PercentFormatter(1.0, decimals=0)
