"""The big screen's live charts update in place: same figure, new columns, colour scale to the new maximum."""

from __future__ import annotations

import math

import pandas as pd

from anning_lib.portal.charts import load_bars, plan_map, update_bars, update_plan


def test_bars_take_new_values_and_order_in_place():
    fig, src = load_bars(pd.DataFrame({"label": ["E02 b", "E01 a"], "MW": [1.0, 2.5]}), "load")
    assert list(fig.y_range.factors) == ["E02 b", "E01 a"] and src.data["MW"] == [1.0, 2.5]
    update_bars(fig, src, pd.DataFrame({"label": ["E01 a", "E02 b"], "MW": [0.5, float("nan")]}))
    assert list(fig.y_range.factors) == ["E01 a", "E02 b"]
    assert src.data["MW"] == [0.5, 0.0]                      # a missing reading draws as no bar


def _polys(loads):
    square = ([0, 10, 10, 0], [0, 0, 10, 10])
    return [{"x": square[0], "y": square[1], "enterprise_id": f"E0{i}", "enterprise": f"e{i}", "name": f"b{i}",
             "load_kw": v} for i, v in enumerate(loads, 1)]


def test_plan_colour_scale_follows_the_largest_load():
    fig, src = plan_map(_polys([100.0, 300.0]), "plan", public=False)
    bar = next(r for r in fig.right if type(r).__name__ == "ColorBar")
    assert bar.color_mapper.high == 300.0 and bar.color_mapper.low == 0
    update_plan(fig, src, _polys([50.0, float("nan")]))
    assert bar.color_mapper.high == 50.0                     # NaN (no reading) is ignored
    assert src.data["load_kw"][0] == 50.0 and math.isnan(src.data["load_kw"][1])


def test_public_plan_has_no_loads_to_show():
    fig, _src = plan_map(_polys([float("nan"), float("nan")]), "plan", public=True)
    assert not any(type(r).__name__ == "ColorBar" for r in fig.right)
    hover = [t for t in fig.tools if type(t).__name__ == "HoverTool"][0]
    assert all(label != "kW" for label, _field in hover.tooltips)
