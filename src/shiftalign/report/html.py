"""A self-contained ``report.html``: the verdict first, then tables and plots (base64 PNGs: the page
loads no external resource), written atomically. Cells arrive as display strings."""

from __future__ import annotations

import html
from pathlib import Path

from ..io import write_text_atomic

STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222;line-height:1.4}"
         ".verdict{background:#f5f8fc;border-left:4px solid #4477aa;padding:.6em 1em}"
         "table{border-collapse:collapse;margin:.5em 0;max-width:100%}td,th{border:1px solid #ccc;padding:3px 6px;"
         "font-size:13px;text-align:right;overflow-wrap:anywhere}th{background:#f3f3f3}"
         "td:first-child{text-align:left}img{max-width:100%}")


def _md(text: str) -> str:
    """Escaped text with `code` spans."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_report(path: Path, title: str, verdict: list[str], tables: list[tuple[str, list[str], list[list[str]]]],
                 images: list[tuple[str, str | None]], notes: list[str]) -> Path:
    """``verdict``: a headline paragraph then one line per arm; ``tables``: (heading, headers, rows)."""
    parts = [f"<h1>{html.escape(title)}</h1>"]
    if verdict:
        parts.append(f"<div class='verdict'><p>{_md(verdict[0])}</p>"
                     + ("<ul>" + "".join(f"<li>{_md(v)}</li>" for v in verdict[1:]) + "</ul>" if verdict[1:] else "")
                     + "</div>")
    for heading, headers, rows in tables:
        parts.append(f"<h2>{html.escape(heading)}</h2>" + table(headers, rows))
    for heading, src in images:
        if src:
            parts.append(f"<h2>{html.escape(heading)}</h2><img alt='{html.escape(heading)}' src='{src}'>")
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{_md(n)}</li>" for n in notes) + "</ul>")
    doc = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
           f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>")
    write_text_atomic(path, doc)
    return path
