"""The loss chart: trend line and drawing on bad values."""
from __future__ import annotations

import math

from gfti_core.chart import render_loss_chart, trailing_average


def test_trailing_average_skips_non_finite_and_uses_the_window():
    values = [4.0, float("nan"), 2.0, float("inf"), 6.0]
    assert trailing_average(values, window=2) == [4.0, 4.0, 3.0, 3.0, 4.0]
    assert math.isnan(trailing_average([float("nan")])[0])


def test_chart_draws_the_trend_in_its_colour():
    history = {"mean": [1.0 - 0.01 * i for i in range(30)], "best": [0.9 - 0.01 * i for i in range(30)]}
    img = render_loss_chart(history)
    colours = {c for _, c in img.getcolors(maxcolors=1 << 16)}
    assert (230, 90, 40) in colours, "trend line drawn"
    empty = render_loss_chart({"mean": [float("nan")], "best": [float("nan")]})
    assert empty.size == (512, 256)
