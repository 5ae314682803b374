"""Charts drawn on the server as inline SVG, for the two pages many people open at once: the big screen
(:mod:`anning_lib.portal.overview_page`) and the enterprise page (:mod:`anning_lib.portal.enterprise_page`).

Why not Bokeh on these two: a browser needs about 1.5 CPU seconds to start BokehJS and Panel for any page, even a
near-empty one (measured with ``bench/portal.py``), so fifty users opening pages together wait tens of seconds on
a small machine, and a phone much longer. An SVG chart is a few kilobytes made in about a millisecond, needs no
script, scales with its box (``viewBox``) and shows its values on hover (``<title>``). The pages need three kinds
of chart, written here: horizontal bars, stacked columns and the park plan. The analysis pages (device, carbon,
dispatch, alarms) keep hvplot/Bokeh, where zoom, pan and linked selection matter.

Every function is pure (data in, SVG text out) and escapes every label; sizes are in ``viewBox`` units (the
pixels of a chart shown at its natural width).
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence

import pandas as pd

from anning_lib.twin.colours import Legend

FONT = "font-family:'WenQuanYi Zen Hei','Noto Sans CJK SC',sans-serif"
INK, GRID, MUTED = "#0f2a3d", "#dde6ec", "#4a6272"


# ------------------------------------------------------------------------------------------------ scales
def _nice(x: float, rounded: bool) -> float:
    """A "nice" number (1, 2, 5 or 10 × 10^k) near ``x`` > 0 (Heckbert 1990)."""
    exp = math.floor(math.log10(x))
    f = x / 10 ** exp
    if rounded:
        nf = 1 if f < 1.5 else 2 if f < 3 else 5 if f < 7 else 10
    else:
        nf = 1 if f <= 1 else 2 if f <= 2 else 5 if f <= 5 else 10
    return nf * 10 ** exp


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values from at or below ``lo`` to at or above ``hi``, about ``n`` of them, in steps of
    1, 2 or 5 × 10^k ("loose labelling").

    Parameters
    ----------
    lo, hi : float
        the data's range [any unit]; an empty or non-finite range gives ``[0, 1]`` around ``lo``.
    n : int
        the wanted number of ticks (at least 2).

    References
    ----------
    P. S. Heckbert, "Nice numbers for graph labels", in A. S. Glassner (ed.), *Graphics Gems*, Academic Press,
    1990, pp. 61-63.
    """
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = 0.0, 1.0
    if hi <= lo:
        lo, hi = (lo - 1.0, lo) if lo > 0 else (lo, lo + 1.0)
    step = _nice(_nice(hi - lo, False) / (max(n, 2) - 1), True)
    first, last = math.floor(lo / step), math.ceil(hi / step)
    return [round(i * step, 12) for i in range(first, last + 1)]


def _label(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 10 or float(v).is_integer() else f"{v:,.2g}"


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


MIN_SCALE = 0.8
"""A chart is never drawn narrower than this share of its natural width (its box scrolls instead on a phone)."""


def _open(width: float, height: float, title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:g} {height:g}" width="100%" '
            f'role="img" aria-label="{_esc(title)}" class="chart" '
            f'style="{FONT};min-width:{MIN_SCALE * width:.0f}px">'
            f'<text x="4" y="17" font-size="14" font-weight="bold" fill="{INK}">{_esc(title)}</text>')


def _text_w(text: str, size: float) -> float:
    """Rough width of ``text`` at font ``size``: a CJK character is a square, a Latin one about 0.6 of it."""
    return sum(size if ord(c) > 0x2E80 else 0.6 * size for c in text)


def _clip(text: str, width: float, size: float) -> str:
    """``text`` cut to fit ``width`` at font ``size``, ending in "…" when cut."""
    if _text_w(text, size) <= width:
        return text
    while text and _text_w(text + "…", size) > width:
        text = text[:-1]
    return text + "…"


def _num(v: float | None, digits: int) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{v:,.{digits}f}"


# ------------------------------------------------------------------------------------------------ charts
def hbars(labels: Sequence[str], values: Sequence[float | None], *, title: str, unit: str, colour: str = "#11698e",
          highlight: Sequence[bool] | None = None, digits: int = 1, width: float = 460) -> str:
    """Horizontal bars, one per label, top to bottom in the given order, with the value at each bar's end.

    Parameters
    ----------
    labels : sequence of str
        one per bar.
    values : sequence of float or None
        bar lengths [``unit``]; None or NaN draws no bar and "–".
    highlight : sequence of bool, optional
        bars drawn darker and bold (e.g. the user's own enterprise among its peers).
    width : float
        the chart's width [viewBox units]; the labels take what the longest needs, at most 45 % of it.
    """
    vals = [None if v is None or not math.isfinite(float(v)) else float(v) for v in values]
    known = [v for v in vals if v is not None]
    ticks = nice_ticks(min([0.0, *known]), max([0.0, *known]) if known else 1.0)
    label_w = min(max([_text_w(str(lab), 12) for lab in labels] + [20.0]) + 10, 0.45 * width)
    row, top, x0, x1 = 24.0, 30.0, label_w, width - 56
    height = top + row * len(vals) + 24

    def x(v: float) -> float:
        return x0 + (v - ticks[0]) / (ticks[-1] - ticks[0]) * (x1 - x0)

    parts = [_open(width, height, title)]
    for tv in ticks:
        parts.append(f'<line x1="{x(tv):.1f}" x2="{x(tv):.1f}" y1="{top - 4:g}" y2="{height - 20:g}" '
                     f'stroke="{GRID}"/><text x="{x(tv):.1f}" y="{height - 6:g}" font-size="11" fill="{MUTED}" '
                     f'text-anchor="middle">{_label(tv)}</text>')
    parts.append(f'<text x="{width - 4:g}" y="{height - 6:g}" font-size="11" fill="{MUTED}" '
                 f'text-anchor="end">{_esc(unit)}</text>')
    for i, (lab, v) in enumerate(zip(labels, vals)):
        y, strong = top + i * row, bool(highlight[i]) if highlight is not None else False
        weight = ' font-weight="bold"' if strong else ""
        bar = "" if v is None else (f'<rect x="{min(x(0), x(v)):.1f}" y="{y + 4:g}" width="{abs(x(v) - x(0)):.1f}" '
                                    f'height="{row - 8:g}" fill="{INK if strong else colour}"/>')
        parts.append(f'<g class="bar"><title>{_esc(lab)}: {_num(v, digits)} {_esc(unit)}</title>'
                     f'<text x="{x0 - 6:g}" y="{y + row / 2 + 4:g}" font-size="12" fill="{INK}" text-anchor="end"'
                     f'{weight}>{_esc(_clip(str(lab), x0 - 10, 12))}</text>{bar}<text x="{(x(v) if v is not None else x0) + 4:.1f}" '
                     f'y="{y + row / 2 + 4:g}" font-size="11" fill="{MUTED}"{weight}>{_num(v, digits)}</text></g>')
    return "".join(parts) + "</svg>"


def stacked_columns(frame: pd.DataFrame, colours: Mapping[str, str], *, title: str, unit: str, digits: int = 1,
                    width: float = 720, height: float = 300, max_labels: int = 16) -> str:
    """Columns stacked by series: one column per row of ``frame`` (its index, as text, labels the axis), one
    colour per column of ``frame``; positive parts stack up from zero, negative ones down.

    Parameters
    ----------
    frame : pandas.DataFrame
        index: the categories (e.g. days); columns: the series, named as the legend shows them [``unit``];
        NaN counts as nothing.
    colours : mapping
        series name -> colour.
    max_labels : int
        at most this many axis labels (every k-th category is labelled).
    """
    data = frame.astype("float64").fillna(0.0)
    up, down = data.clip(lower=0).sum(axis=1), data.clip(upper=0).sum(axis=1)
    ticks = nice_ticks(min(0.0, float(down.min()) if len(data) else 0.0),
                       max(0.0, float(up.max()) if len(data) else 1.0))
    x0, x1, top, bottom = 56.0, width - 8, 58.0, height - 22
    slot = (x1 - x0) / max(len(data), 1)

    def y(v: float) -> float:
        return bottom - (v - ticks[0]) / (ticks[-1] - ticks[0]) * (bottom - top)

    parts = [_open(width, height, title)]
    lx = 4.0
    for name in data.columns:
        parts.append(f'<rect x="{lx:g}" y="26" width="10" height="10" fill="{colours[name]}"/>'
                     f'<text x="{lx + 14:g}" y="35" font-size="11" fill="{INK}">{_esc(name)}</text>')
        lx += 26 + _text_w(str(name), 11)
    for tv in ticks:
        parts.append(f'<line x1="{x0:g}" x2="{x1:g}" y1="{y(tv):.1f}" y2="{y(tv):.1f}" stroke="{GRID}"/>'
                     f'<text x="{x0 - 4:g}" y="{y(tv) + 4:.1f}" font-size="11" fill="{MUTED}" '
                     f'text-anchor="end">{_label(tv)}</text>')
    parts.append(f'<text x="{x0 - 4:g}" y="{top - 8:g}" font-size="11" fill="{MUTED}" '
                 f'text-anchor="end">{_esc(unit)}</text>')
    every = max(1, math.ceil(len(data) / max_labels))
    for i, (cat, r) in enumerate(data.iterrows()):
        cx, pos, neg = x0 + i * slot, 0.0, 0.0
        tip = "; ".join(f"{n} {_num(frame.iloc[i][n], digits)}" for n in data.columns)
        parts.append(f'<g class="col"><title>{_esc(cat)}: {_esc(tip)} {_esc(unit)}</title>')
        for name, v in r.items():
            lo, hi = (pos, pos + v) if v >= 0 else (neg + v, neg)
            pos, neg = (hi, neg) if v >= 0 else (pos, lo)
            if v:
                parts.append(f'<rect x="{cx + slot * 0.12:.1f}" y="{y(hi):.1f}" width="{slot * 0.76:.1f}" '
                             f'height="{y(lo) - y(hi):.1f}" fill="{colours[name]}"/>')
        if i % every == 0:
            parts.append(f'<text x="{cx + slot / 2:.1f}" y="{height - 6:g}" font-size="11" fill="{MUTED}" '
                         f'text-anchor="middle">{_esc(cat)}</text>')
        parts.append("</g>")
    return "".join(parts) + "</svg>"


def plan(polys: Sequence[Mapping], legend: Legend, *, title: str, public: bool, width: float = 600) -> str:
    """The park plan from above: every building's footprint coloured by its enterprise's ``load_kw`` on
    ``legend`` (the 3-D twin's binned scale, so both views agree), with the legend; for a ``public`` screen
    (a visitor) one neutral colour and no value.

    Parameters
    ----------
    polys : sequence of mapping
        :func:`anning_lib.portal.plan.footprints`: ``x``, ``y`` [m east/north], ``enterprise_id``, ``enterprise``,
        ``name``, ``load_kw`` [kW, NaN unknown].
    legend : Legend
        :func:`anning_lib.twin.colours.legend` of ``load_kw``.
    """
    xs = [v for p in polys for v in p["x"]] or [0.0, 1.0]
    ys = [v for p in polys for v in p["y"]] or [0.0, 1.0]
    pad, top, legend_w = 8.0, 26.0, 0.0 if public else 118.0
    span_x, span_y = max(max(xs) - min(xs), 1.0), max(max(ys) - min(ys), 1.0)
    scale = (width - legend_w - 2 * pad) / span_x
    height = max(top + span_y * scale + 2 * pad, 0.0 if public else top + 24 + 16 * len(legend.colours))
    parts = [_open(width, height, title)]
    for p in polys:
        pts = " ".join(f"{pad + (x - min(xs)) * scale:.1f},{top + pad + (max(ys) - y) * scale:.1f}"
                       for x, y in zip(p["x"], p["y"]))
        load = None if public else p.get("load_kw")
        fill = "#9fc3d3" if public else legend.colour_of(load)
        value = "" if public else f": {_num(load, 0)} kW"
        parts.append(f'<polygon points="{pts}" fill="{fill}" stroke="{INK}" stroke-width="0.8" '
                     f'data-enterprise="{_esc(p["enterprise_id"])}"><title>{_esc(p["enterprise_id"])} '
                     f'{_esc(p["enterprise"])} · {_esc(p["name"])}{value}</title></polygon>')
    if not public:
        lx = width - legend_w + 10
        parts.append(f'<text x="{lx:g}" y="{top + 12:g}" font-size="11" fill="{MUTED}">{_esc(legend.unit)}</text>')
        for i, (colour, label) in enumerate(reversed(legend.rows())):
            ly = top + 20 + 16 * i
            parts.append(f'<rect x="{lx:g}" y="{ly:g}" width="12" height="12" fill="{colour}"/>'
                         f'<text x="{lx + 16:g}" y="{ly + 10:g}" font-size="11" fill="{INK}">{_esc(label)}</text>')
    return "".join(parts) + "</svg>"
