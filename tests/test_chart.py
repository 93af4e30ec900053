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


def test_chart_text_is_latin1_for_old_pillow_fonts(monkeypatch):
    """The webuis pin Pillow 9.5: its default font raises on any character outside latin-1."""
    from PIL import Image, ImageDraw

    from gfti_core.chart import image_grid

    drawn, real_text = [], ImageDraw.ImageDraw.text

    def latin1_only(self, xy, text, *args, **kwargs):
        text.encode("latin-1")  # what Pillow 9.5's ImageFont.ImageFont.getmask2 does first
        drawn.append(text)
        return real_text(self, xy, text, *args, **kwargs)

    monkeypatch.setattr(ImageDraw.ImageDraw, "text", latin1_only)
    history = {"mean": [1.0, 0.9, 0.8], "best": [0.9, 0.8, 0.7]}
    render_loss_chart(history, title="GFTI loss \u2014 <caf\u00e9\u2192x>")
    image_grid([[Image.new("RGB", (8, 8))]], ["generation 3 \u2026 \u263a"])
    assert any(t.startswith("generation 1") for t in drawn) and "GFTI loss ? <caf\u00e9?x>" in drawn
