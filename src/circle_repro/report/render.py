"""A small document model rendered to Markdown and to one self-contained HTML page.

In HTML a heading may carry an ``anchor`` (its id) and a table cell may link to one (``Table.links``);
Markdown keeps plain text.
"""

from __future__ import annotations

import base64
import html
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2
    anchor: str | None = None  # HTML id, the target of cell links


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Table:
    frame: pd.DataFrame  # rendered as is: the index is the first column
    caption: str
    label: str | None = None  # a badge beside the caption, e.g. "paper, different data"
    reference: bool = False  # the badge marks published numbers rather than this repository's
    links: pd.DataFrame | None = None  # same index and columns as frame: a Heading anchor, or None for no link


@dataclass(frozen=True)
class Figure:
    path: Path
    caption: str


Block = Heading | Paragraph | Table | Figure


def _markdown_table(frame: pd.DataFrame) -> str:
    header = [str(frame.index.name or "")] + [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for index, row in frame.iterrows():
        lines.append("| " + " | ".join([str(index)] + [str(v) for v in row]) + " |")
    return "\n".join(lines)


def render_markdown(blocks: list[Block], out_dir: Path) -> str:
    """Markdown with figures referenced relative to ``out_dir``."""
    parts = []
    for block in blocks:
        match block:
            case Heading(text, level):
                parts.append("#" * level + " " + text)
            case Paragraph(text):
                parts.append(text)
            case Table(frame, caption, label):
                title = f"**{caption}**" + (f" _({label})_" if label else "")
                parts.append(title + "\n\n" + _markdown_table(frame))
            case Figure(path, caption):
                parts.append(f"![{caption}]({os.path.relpath(path, out_dir)})\n\n_{caption}_")
    return "\n\n".join(parts) + "\n"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2rem auto;padding:0 1rem;color:#1d2433}
h1{border-bottom:2px solid #2a9d8f;padding-bottom:.3rem}
table{border-collapse:collapse;margin:.5rem 0 1.5rem;font-variant-numeric:tabular-nums;font-size:.92rem}
th,td{border:1px solid #d5dbe3;padding:.3rem .6rem;text-align:right}
td a{color:inherit;text-decoration:none;border-bottom:1px dotted #2a9d8f}
.table-wrap{overflow-x:auto}
th:first-child,td:first-child{text-align:left}
thead th{background:#eef3f7}
caption{caption-side:top;text-align:left;font-weight:600;padding:.3rem 0}
.badge{display:inline-block;margin-left:.5rem;padding:0 .45rem;border-radius:.6rem;background:#2a9d8f;color:#fff;font-size:.78rem;font-weight:600}
.badge.reference{background:#f4a261}
figure{margin:1rem 0}figure img{max-width:100%}figcaption{color:#556;font-size:.9rem}
p{line-height:1.5}
"""


def _html_cell(value: object, anchor: object) -> str:
    text = html.escape(str(value))
    if isinstance(anchor, str) and anchor:
        text = f'<a href="#{html.escape(anchor)}">{text}</a>'
    return f"<td>{text}</td>"


def _html_table(table: Table) -> str:
    frame = table.frame
    links = table.links if table.links is not None else pd.DataFrame(None, index=frame.index, columns=frame.columns)
    badge_class = "badge reference" if table.reference else "badge"
    badge = f'<span class="{badge_class}">{html.escape(table.label)}</span>' if table.label else ""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in [frame.index.name or "", *frame.columns])
    body = "".join(
        "<tr>"
        + f"<td>{html.escape(str(index))}</td>"
        + "".join(_html_cell(frame.iat[i, j], links.iat[i, j]) for j in range(frame.shape[1]))
        + "</tr>"
        for i, index in enumerate(frame.index)
    )
    return (
        f'<div class="table-wrap"><table><caption>{html.escape(table.caption)}{badge}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
    )


def render_html(blocks: list[Block], title: str) -> str:
    """One HTML page with every figure embedded, so it opens anywhere without its folder."""
    parts = []
    for block in blocks:
        match block:
            case Heading(text, level, anchor):
                id_attribute = f' id="{html.escape(anchor)}"' if anchor else ""
                parts.append(f"<h{level}{id_attribute}>{html.escape(text)}</h{level}>")
            case Paragraph(text):
                parts.append(f"<p>{html.escape(text)}</p>")
            case Table():
                parts.append(_html_table(block))
            case Figure(path, caption):
                data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
                parts.append(
                    f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{html.escape(caption)}</figcaption></figure>"
                )
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_CSS}</style></head><body>{''.join(parts)}</body></html>\n"
    )
