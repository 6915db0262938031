"""The report's charts as plain data for its template, which draws them as inline SVG: no
script, no external file. Every label has a line of its own, above its bars, so that a long
query shape never runs under a bar; each chart has a legend; and the SVG scales down to a
narrow window through its ``viewBox``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

WIDTH = 720
"""The charts' drawing width, in SVG units (the page scales them down to fit)."""
BAR_WIDTH = 540
"""The longest bar: the rest of the width holds its value."""
BAR = 12
"""A bar's height."""
LEGEND = 24
"""The legend's band at the top of a chart."""
LABEL_CHARACTERS = 96
"""Of a query shape, what fits on one line of the chart."""


@dataclass(frozen=True)
class ShapeTimes:
    """One query shape of ``bench/workload_indexes.py --json``: its median time before and
    after the index it now uses."""

    shape: str
    index: str
    before_ms: float
    after_ms: float


def _bar(value: float, longest: float) -> int:
    return max(round(value / longest * BAR_WIDTH), 1) if longest else 1


def _shortened(text: str) -> str:
    return text if len(text) <= LABEL_CHARACTERS else text[: LABEL_CHARACTERS - 1] + "…"


def benchmark_chart(shapes: list[ShapeTimes]) -> dict[str, Any]:
    """Per shape: its label and index on two lines, then its before and after bars, each
    with its time written past its end."""
    longest = max([s.before_ms for s in shapes] + [s.after_ms for s in shapes], default=0.0)
    rows = []
    row_height = 2 * 14 + 2 * (BAR + 4) + 10
    for number, shape in enumerate(shapes):
        top = LEGEND + number * row_height
        ratio = f"{shape.before_ms / shape.after_ms:.1f}" if shape.after_ms else "∞"
        before, after = _bar(shape.before_ms, longest), _bar(shape.after_ms, longest)
        rows.append(
            {
                "label": _shortened(shape.shape),
                "label_y": top + 12,
                "index": shape.index,
                "index_y": top + 26,
                "bars": [
                    {
                        "y": top + 32,
                        "width": before,
                        "fill": "#c33",
                        "value": f"{shape.before_ms:.2f} ms",
                        "title": f"before: {shape.before_ms:.2f} ms",
                    },
                    {
                        "y": top + 32 + BAR + 4,
                        "width": after,
                        "fill": "#3a7",
                        "value": f"{shape.after_ms:.2f} ms ({ratio}\u00d7 faster)",
                        "title": f"after: {shape.after_ms:.2f} ms",
                    },
                ],
            }
        )
    return _framed(rows, LEGEND + len(shapes) * row_height, ("before", "after"))


def page_chart(queries: int, after: int, query_ms: float | None) -> dict[str, Any]:
    """A requested page's queries before its fixes and with its proven fixes applied, and
    the time its queries took (measured before the fixes only)."""
    longest = max(queries, after, 1)
    top = LEGEND
    groups = [
        {
            "label": "Queries",
            "label_y": top + 12,
            "bars": [
                {
                    "y": top + 18,
                    "width": _bar(queries, longest),
                    "fill": "#c33",
                    "value": f"{queries} queries",
                    "title": f"before: {queries} queries",
                },
                {
                    "y": top + 18 + BAR + 4,
                    "width": _bar(after, longest),
                    "fill": "#3a7",
                    "value": f"{after} queries",
                    "title": f"with the proven fixes: {after} queries",
                },
            ],
        }
    ]
    top += 18 + 2 * (BAR + 4) + 6
    if query_ms is not None:
        groups.append(
            {
                "label": "Time in queries (with the fixes: not measured)",
                "label_y": top + 12,
                "bars": [
                    {
                        "y": top + 18,
                        "width": BAR_WIDTH if query_ms else 1,
                        "fill": "#c33",
                        "value": f"{query_ms:.1f} ms",
                        "title": f"before: {query_ms:.1f} ms",
                    }
                ],
            }
        )
        top += 18 + BAR + 4 + 6
    return _framed(groups, top, ("before", "with the proven fixes"))


def _framed(rows: list[dict[str, Any]], height: int, legend: tuple[str, str]) -> dict[str, Any]:
    for row in rows:
        for bar in row["bars"]:
            bar["text_x"] = bar["width"] + 6
            bar["text_y"] = bar["y"] + BAR - 2
    return {
        "rows": rows,
        "width": WIDTH,
        "height": height,
        "bar": BAR,
        "legend": [
            {"x": 0, "fill": "#c33", "text": legend[0]},
            {"x": 18 + 8 * len(legend[0]) + 18, "fill": "#3a7", "text": legend[1]},
        ],
    }
