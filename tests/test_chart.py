"""The loss chart: the hold-out curve as the main line, the trend without it, drawing on bad values."""
from __future__ import annotations

import math

import pytest
from PIL import ImageDraw

from gfti_core.chart import MAIN_COLOR, render_loss_chart, trailing_average


def _colours(img) -> set:
    return {c for _, c in img.getcolors(maxcolors=1 << 16)}


@pytest.fixture
def latin1_only(monkeypatch):
    """Pillow 9.5's default bitmap font (the webuis' pin) raises on text it cannot encode as latin-1."""
    original = ImageDraw.ImageDraw.text

    def text(self, xy, text, *args, **kwargs):
        text.encode("latin-1")
        return original(self, xy, text, *args, **kwargs)

    monkeypatch.setattr(ImageDraw.ImageDraw, "text", text)


def test_trailing_average_skips_non_finite_and_uses_the_window():
    values = [4.0, float("nan"), 2.0, float("inf"), 6.0]
    assert trailing_average(values, window=2) == [4.0, 4.0, 3.0, 3.0, 4.0]
    assert math.isnan(trailing_average([float("nan")])[0])


def test_chart_draws_the_holdout_curve_as_the_main_line(latin1_only):
    history = {"mean": [0.3, 0.1] * 15, "best": [0.2, 0.05] * 15, "holdout": [[g, 0.2 - 0.002 * g] for g in range(0, 31, 3)]}
    img = render_loss_chart(history)
    assert MAIN_COLOR in _colours(img)
    faint_only = render_loss_chart({"mean": history["mean"], "best": history["best"], "holdout": []})
    # without hold-out points the main line is the trend; both charts must differ where the curve runs
    assert MAIN_COLOR in _colours(faint_only) and faint_only.tobytes() != img.tobytes()


def test_chart_survives_empty_and_non_finite_values(latin1_only):
    assert render_loss_chart({"mean": [float("nan")], "best": [float("nan")]}).size == (512, 256)
    assert render_loss_chart({}).size == (512, 256)
    assert render_loss_chart({"mean": [1.0], "best": [1.0], "holdout": [[0, 1.0]]}).size == (512, 256)


def test_chart_text_is_latin1_for_old_pillow_fonts(monkeypatch):
    """The webuis pin Pillow 9.5: its default font raises on any character outside latin-1."""
    from PIL import Image

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
    assert any(t.startswith("generation 0 - 3") for t in drawn) and "GFTI loss ? <caf\u00e9?x>" in drawn
