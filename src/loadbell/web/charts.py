"""Small line charts of a run's intermediate reports, drawn on the server as SVG.

No JavaScript and no charting library: a chart is a ``<svg>`` with a polyline, its
min/max axis labels and a ``<title>`` for screen readers; the page puts the same numbers
in a table under it. Sizes are in SVG user units; the CSS makes the chart fill its box.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from markupsafe import Markup, escape

WIDTH, HEIGHT = 640.0, 160.0
# A phone gets a chart drawn for its width: the wide one, scaled down to about 320 px,
# would shrink its 11-unit labels to 6 px. Only one of the two is displayed (app.css).
NARROW_WIDTH, NARROW_HEIGHT = 320.0, 180.0
LEFT, RIGHT, TOP, BOTTOM = 56.0, 12.0, 14.0, 26.0  # plot margins, user units


@dataclass(frozen=True)
class Series:
    key: str
    title: str
    unit: str
    format: Callable[[float], str]
    scale: float = 1.0  # stored value x scale = shown value (error rate 0..1 -> %)


SERIES: tuple[Series, ...] = (
    Series("rps", "Requests per second", "req/s", lambda v: f"{v:,.1f}"),
    Series("p95_ms", "95th percentile response time", "ms", lambda v: f"{v:,.0f}"),
    Series("error_rate", "Error rate", "%", lambda v: f"{v:.2f}", scale=100.0),
)


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


def points(reports: Sequence[Mapping[str, Any]], series: Series) -> list[tuple[float, float]]:
    """(seconds since the first report, shown value) for the reports that carry the key."""
    out: list[tuple[float, float]] = []
    start: datetime | None = None
    for report in reports:
        at = _time(report.get("at"))
        value = (report.get("metrics") or {}).get(series.key)
        if at is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        start = start or at
        out.append(((at - start).total_seconds(), float(value) * series.scale))
    return out


def _elapsed(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}"


def line_chart(series: Series, data: list[tuple[float, float]]) -> Markup:
    """One chart, drawn for a wide screen and for a phone. With fewer than two points it
    says so instead of drawing a line."""
    label = f"{series.title} ({series.unit})"
    if len(data) < 2:
        return Markup(
            '<p class="chart-empty">{}: not enough intermediate reports to draw a line.</p>'
        ).format(label)
    return _draw(series, data, "chart", WIDTH, HEIGHT) + _draw(
        series, data, "chart-narrow", NARROW_WIDTH, NARROW_HEIGHT
    )


def _draw(
    series: Series, data: list[tuple[float, float]], css: str, width: float, height: float
) -> Markup:
    label = f"{series.title} ({series.unit})"
    xs = [x for x, _ in data]
    ys = [y for _, y in data]
    x0, x1 = min(xs), max(xs) or 1.0
    y0, y1 = 0.0, max(ys) * 1.1 or 1.0
    plot_w, plot_h = width - LEFT - RIGHT, height - TOP - BOTTOM

    def sx(x: float) -> float:
        return LEFT + (x - x0) / ((x1 - x0) or 1.0) * plot_w

    def sy(y: float) -> float:
        return TOP + plot_h - (y - y0) / ((y1 - y0) or 1.0) * plot_h

    line = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in data)
    last_x, last_y = data[-1]
    summary = (
        f"{label}: from {series.format(ys[0])} to {series.format(ys[-1])}, "
        f"peak {series.format(max(ys))}, over {_elapsed(x1 - x0)} (min:s)"
    )
    parts = [
        f'<svg class="{css}" viewBox="0 0 {width:.0f} {height:.0f}" role="img" '
        f'aria-label="{escape(summary)}">',
        f"<title>{escape(summary)}</title>",
        f'<line class="axis" x1="{LEFT}" y1="{TOP + plot_h}" x2="{width - RIGHT}" '
        f'y2="{TOP + plot_h}"/>',
        f'<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}"/>',
        f'<line class="grid" x1="{LEFT}" y1="{TOP}" x2="{width - RIGHT}" y2="{TOP}"/>',
        f'<text class="tick" x="{LEFT - 6}" y="{TOP + 4}" text-anchor="end">'
        f"{escape(series.format(y1))}</text>",
        f'<text class="tick" x="{LEFT - 6}" y="{TOP + plot_h + 4}" text-anchor="end">0</text>',
        f'<text class="tick" x="{LEFT}" y="{height - 6}">0:00</text>',
        f'<text class="tick" x="{width - RIGHT}" y="{height - 6}" text-anchor="end">'
        f"{_elapsed(x1 - x0)}</text>",
        f'<polyline class="line line-{escape(series.key)}" points="{line}"/>',
        f'<circle class="dot line-{escape(series.key)}" cx="{sx(last_x):.1f}" '
        f'cy="{sy(last_y):.1f}" r="3"/>',
        "</svg>",
    ]
    return Markup("".join(parts))


def charts(reports: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The run page's three charts: requests/s, p95 and error rate."""
    out = []
    for series in SERIES:
        data = points(reports, series)
        out.append(
            {
                "series": series,
                "svg": line_chart(series, data),
                "last": series.format(data[-1][1]) if data else None,
                "rows": [(_elapsed(x), series.format(y)) for x, y in data],
            }
        )
    return out
