"""One self-contained HTML file: plots (inline SVG drawn by matplotlib, see
fabula.reporting.plots), the metrics table, the top recurring values, and a
reading pane. No script and nothing fetched: it opens offline. Every story
text is escaped, so markup inside a story shows as text and never runs."""

from __future__ import annotations

import html
from typing import Any


def render(results: list[dict[str, Any]], rows: list[tuple[str, str]]) -> str:
    e = html.escape
    from fabula.reporting import plots

    head = "".join(f"<th>{e(r['folder'])}{' (reference)' if r.get('_reference') else ''}</th>" for r in results)
    body = []
    for key, label in rows:
        cells = "".join(f"<td>{e(_fmt(r.get(key)))}</td>" for r in results)
        body.append(f"<tr><th>{e(label)}</th>{cells}</tr>")
    recur = []
    for r in results:
        parts = []
        for field, top in r["recurrence"].items():
            items = "".join(f"<li>{e(str(t['value']))} - {t['share']:.0%}</li>" for t in top)
            parts.append(f"<h4>{e(field)}</h4><ol>{items}</ol>")
        recur.append(f"<td>{''.join(parts)}</td>")
    body.append(f"<tr><th>most common values (share of stories)</th>{''.join(recur)}</tr>")
    if any(r.get("measured_stories", r["stories"]) < r["stories"] for r in results):
        cells = "".join(f"<td>{e(_fmt(r.get('measured_stories')))}</td>" for r in results)
        body.append(f"<tr><th>stories measured (a seeded sample: every figure above but the count is the sample's)</th>{cells}</tr>")
    panes = []
    for r in results:
        stories = r["_reading"]  # all stories, or the seeded sample measure() kept
        entries = []
        for s in stories:
            card = ""
            if s.card:
                c = s.card
                h = next(iter(c["cast"].values())) if "cast" in c else c["hero"]  # the protagonist (plans before roles: hero)
                where = ", ".join(x for x in (h.get("nationality", ""), c["slots"].get("city", "")) if x)
                card = f"<p class=card>{e(c['title'])} - {e(h['first'])} {e(h['last'])}" + (f" ({e(where)})" if where else "") + "</p>"
            paras = "".join(f"<p>{e(p)}</p>" for p in s.text.split("\n\n") if p.strip())
            entries.append(f"<details><summary>{e(s.id)}</summary>{card}{paras}</details>")
        panes.append(f"<section><h3>{e(r['folder'])}</h3>{''.join(entries)}</section>")
    drawn = (plots.metrics(results), plots.lengths(results), plots.story_map(results), plots.recurrence(results))
    figures = "".join(f"<figure>{svg}</figure>" for svg in drawn if svg)
    return f"""<!doctype html><html><head><meta charset="utf-8"><meta name="generator" content="fabula report"><title>fabula report</title>
<style>body{{font:14px system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;vertical-align:top;text-align:left}}
.card{{color:#555;font-style:italic}}details{{margin:.3em 0}}section{{max-width:60em}}figure{{margin:1em 0}}figure svg{{max-width:100%;height:auto}}</style></head><body>
<h1>fabula report</h1>
<h2>Plots</h2>{figures}
<h2>Metrics</h2><table><tr><th>metric</th>{head}</tr>{"".join(body)}</table>
<h2>Reading pane</h2>{"".join(panes)}</body></html>
"""


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, dict) and "value" in v:
        return f"{v['value']} ({v['share']:.0%})"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)
