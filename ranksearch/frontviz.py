"""Pictures of a search's Pareto front: an interactive HTML page and static PNGs.

The HTML embeds plotly's JavaScript from the installed plotly package, so the page works
offline and inside MLflow's artifact viewer (no CDN). The PNGs use matplotlib's Agg canvas
directly, never pyplot, so they can be drawn from a background thread without global state.
Plotly and matplotlib are imported inside the functions: importing this module is cheap.

Which points sit on the front is given (the search's front archive decided it); whether an axis
is logarithmic by default comes from `ranksearch.objectives` (cost metrics are).
"""

from __future__ import annotations

import io
import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from ranksearch.objectives import LOG_SCALE_METRICS
from ranksearch.objectives import finite as finite_number

FRONT_COLOR = "#d62728"
MUTED_COLOR = "#9aa5b1"
FAILED_COLOR = "#555555"


def _log_axis(metric: str, log: bool | None) -> bool:
    """The caller's choice, else log scale for the metrics `ranksearch.objectives` reads so."""
    return metric in LOG_SCALE_METRICS if log is None else bool(log)


def _coords(
    points: Sequence[Mapping[str, Any]], x: str, y: str, log_x: bool,
) -> list[tuple[float, float, Mapping[str, Any]]]:
    """(x, y, point) for every point with plottable values; others are left out of the plot."""
    out = []
    for p in points:
        metrics = p.get("metrics") or {}
        xv, yv = finite_number(metrics.get(x)), finite_number(metrics.get(y))
        if xv is None or yv is None or (log_x and xv <= 0):
            continue
        out.append((xv, yv, p))
    return out


def _hover(p: Mapping[str, Any], element_names: Sequence[str] | None) -> str:
    ranks = list(p.get("ranks") or [])
    if element_names and len(element_names) == len(ranks):
        rank_text = "<br>".join(f"&nbsp;&nbsp;{n} = {r}" for n, r in zip(element_names, ranks, strict=True))
    else:
        rank_text = "&nbsp;&nbsp;" + ", ".join(str(r) for r in ranks)
    metrics = p.get("metrics") or {}
    metric_text = "<br>".join(
        f"{k} = {v:.6g}" if isinstance(v, (int, float)) else f"{k} = {v}"
        for k, v in sorted(metrics.items())
    )
    return f"<b>trial {p.get('trial_id', '?')}</b><br>{metric_text}<br>ranks:<br>{rank_text}"


def _split(coords, front_ids: Collection[str]):
    ids = {str(i) for i in front_ids}
    front = sorted((c for c in coords if str(c[2].get("trial_id")) in ids), key=lambda c: (c[0], -c[1]))
    rest = [c for c in coords if str(c[2].get("trial_id")) not in ids]
    return front, rest


def _log_ticks(values: Sequence[float]) -> list[float]:
    lo, hi = min(values), max(values)
    decades = range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
    for steps in ((1, 2, 5), (1, 1.5, 2, 3, 5, 7), (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 9)):
        ticks = [m * 10.0**e for e in decades for m in steps if lo / 1.1 <= m * 10.0**e <= hi * 1.1]
        if len(ticks) >= 3:
            return ticks
    return ticks


def front_html(
    points: Sequence[Mapping[str, Any]],
    front_ids: Collection[str],
    *,
    x: str = "compression_ratio",
    y: str = "val_accuracy",
    log_x: bool | None = None,
    title: str = "Pareto front",
    element_names: Sequence[str] | None = None,
) -> str:
    """A self-contained interactive page: every trial, dominated ones muted, the front joined.

    `points` are dicts with `trial_id`, `ranks` and `metrics`; hovering a marker shows its
    ranks (named by `element_names` when given) and metrics.
    """
    import plotly.graph_objects as go

    log_x = _log_axis(x, log_x)
    coords = _coords(points, x, y, log_x)
    front, rest = _split(coords, front_ids)
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=[c[0] for c in rest], y=[c[1] for c in rest], mode="markers", name="dominated",
        marker={"color": MUTED_COLOR, "size": 7, "opacity": 0.6},
        hovertext=[_hover(c[2], element_names) for c in rest], hoverinfo="text",
    ))
    fig.add_trace(go.Scatter(
        x=[c[0] for c in front], y=[c[1] for c in front], mode="lines+markers",
        name=f"Pareto front ({len(front)})", line={"color": FRONT_COLOR, "width": 2},
        marker={"color": FRONT_COLOR, "size": 10, "line": {"color": "white", "width": 1}},
        hovertext=[_hover(c[2], element_names) for c in front], hoverinfo="text",
    ))
    fig.update_layout(
        title={"text": f"{title} — {len(coords)} trials, {len(front)} on the front"},
        xaxis={"title": {"text": x + (" (log)" if log_x else "")}, "type": "log" if log_x else "linear"},
        yaxis={"title": {"text": y}},
        template="plotly_white", hoverlabel={"align": "left"},
        legend={"orientation": "h", "y": -0.15},
    )
    return fig.to_html(include_plotlyjs=True, full_html=True)


def front_png(
    points: Sequence[Mapping[str, Any]],
    front_ids: Collection[str],
    *,
    x: str = "compression_ratio",
    y: str = "val_accuracy",
    log_x: bool | None = None,
    title: str = "Pareto front",
    dpi: int = 110,
) -> bytes:
    """The same picture as `front_html`, as PNG bytes (for reports and the MLflow run page)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    log_x = _log_axis(x, log_x)
    coords = _coords(points, x, y, log_x)
    front, rest = _split(coords, front_ids)
    fig = Figure(figsize=(7, 4.5), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if rest:
        ax.scatter([c[0] for c in rest], [c[1] for c in rest], s=18, color=MUTED_COLOR,
                   alpha=0.7, label="dominated")
    if front:
        ax.plot([c[0] for c in front], [c[1] for c in front], color=FRONT_COLOR, lw=1.5)
        ax.scatter([c[0] for c in front], [c[1] for c in front], s=36, color=FRONT_COLOR,
                   edgecolors="white", linewidths=0.8, zorder=3, label=f"Pareto front ({len(front)})")
    if log_x and coords:
        from matplotlib import ticker

        ax.set_xscale("log")
        # Plain numbers at 1-2-5 steps: a front often spans less than a decade of compression,
        # where matplotlib's default log ticks leave a single label.
        ax.xaxis.set_major_locator(ticker.FixedLocator(_log_ticks([c[0] for c in coords])))
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set_xlabel(x + (" (log)" if log_x else ""))
    ax.set_ylabel(y)
    ax.set_title(f"{title} — {len(coords)} trials", fontsize=10)
    ax.grid(True, alpha=0.3, which="both")
    if coords:
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def history_png(history: Sequence[Mapping[str, Any]], *, title: str = "Search progress",
                dpi: int = 110) -> bytes:
    """Hypervolume and front size after each finished trial, as PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    steps = [int(h.get("n_finished", i + 1)) for i, h in enumerate(history)]
    hv = [finite_number(h.get("hypervolume")) or 0.0 for h in history]
    size = [int(h.get("front_size", 0)) for h in history]
    fig = Figure(figsize=(7, 3.5), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.step(steps, hv, where="post", color="#1f77b4", label="hypervolume")
    ax.set_xlabel("finished trials")
    ax.set_ylabel("hypervolume", color="#1f77b4")
    ax2 = ax.twinx()
    ax2.step(steps, size, where="post", color="#ff7f0e", label="front size")
    ax2.set_ylabel("front size", color="#ff7f0e")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
