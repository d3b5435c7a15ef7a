"""The report's drawing kit: matplotlib as inline SVG, and HTML tables of the numbers drawn."""

from __future__ import annotations

import html
import io
import re
import warnings
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

PALETTE = ("#1565c0", "#c62828", "#2e7d32", "#6a1b9a", "#ef6c00", "#00838f", "#5d4037")

plt.rcParams.update(
    {"svg.fonttype": "none", "font.size": 9, "axes.spines.top": False, "axes.spines.right": False}
)


def svg_of(fig: Any) -> str:
    """The figure as an inline ``<svg>`` (no metadata: the same data draws the same bytes)."""
    buffer = io.StringIO()
    with warnings.catch_warnings():
        # Text is written as text (svg.fonttype none): the browser draws it with its own fonts,
        # so a glyph matplotlib's font lacks (a team named in CJK) is no problem worth a warning.
        warnings.filterwarnings("ignore", r"Glyph .* missing from font", UserWarning)
        fig.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buffer.getvalue()
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)
    return text[text.index("<svg") :]


def table_html(rows: list[dict[str, Any]], limit: int = 60) -> str:
    if not rows:
        return "<p class='empty'>no data</p>"
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in rows[0])
    body = []
    for row in rows[:limit]:
        cells = []
        for value in row.values():
            if isinstance(value, float):
                text = f"{value:,.3f}"
            elif value is None:
                text = "—"
            else:
                text = str(value)
            cells.append(f"<td>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    more = f"<p class='more'>… {len(rows) - limit} more rows</p>" if len(rows) > limit else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{more}"
