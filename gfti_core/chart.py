"""A loss chart drawn with Pillow alone (hosts do not all ship matplotlib).

The main line is the hold-out curve (`holdout.py`): the search mean scored on one fixed draw every few
generations, so its points are comparable and it falls when the token learns. Behind it, faint and on their own
axis (right), each generation's mean and best loss: each generation draws its own images, timesteps and noise,
so those values follow the draw and swing. Without hold-out points (holdout_every=0) the main line is the trend,
a trailing average of the generation means.

Only ASCII text is drawn: Pillow's default bitmap font (the webuis pin Pillow 9.5) cannot encode other
characters."""
from __future__ import annotations

from PIL import Image, ImageDraw

from .holdout import holdout_curve

MAIN_COLOR = (230, 90, 40)
FAINT = {"mean": (200, 200, 200), "best": (165, 190, 235)}
TREND_WINDOW = 10


def drawable(text: str) -> str:
    """Text that any Pillow font can draw: the webuis pin Pillow 9.5, whose default bitmap font encodes
    latin-1 only (anything else raises UnicodeEncodeError mid-run)."""
    return text.encode("latin-1", "replace").decode("latin-1")


def trailing_average(values: list[float], window: int = TREND_WINDOW) -> list[float]:
    """Mean of the last `window` finite values at each position (NaN/inf generations are skipped)."""
    out, recent = [], []
    for v in values:
        if _finite(v):
            recent = (recent + [v])[-window:]
        out.append(sum(recent) / len(recent) if recent else float("nan"))
    return out


def _finite(v) -> bool:
    return v is not None and v == v and abs(v) != float("inf")


def _main_line(history: dict) -> tuple[str, list[tuple[int, float]]]:
    """(legend label, [(generation, loss)]) of the main line. Generation i's own values sit at x = i."""
    gens, losses = holdout_curve(history)
    if gens:
        return "hold-out loss", list(zip(gens, losses))
    trend = trailing_average(history.get("mean", []))
    return "trend", [(i + 1, v) for i, v in enumerate(trend)]


def _range(values: list[float]) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.05 or abs(hi) * 0.05 or 1e-6
    return lo - pad, hi + pad


class _Plot:
    def __init__(self, draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], generations: int):
        self.draw, self.box, self.n = draw, box, max(1, generations)

    def line(self, points: list[tuple[int, float]], yrange: tuple[float, float], color, width: int) -> None:
        left, top, right, bottom = self.box
        lo, hi = yrange

        def xy(g: int, v: float) -> tuple[float, float]:
            return left + (right - left) * g / self.n, bottom - (bottom - top) * (v - lo) / (hi - lo)

        pts = [xy(g, v) for g, v in points if _finite(v)]
        if len(pts) > 1:
            self.draw.line(pts, fill=color, width=width)
        for x, y in pts if len(pts) < 40 else pts[-1:]:
            r = width + 1
            self.draw.ellipse([x - r, y - r, x + r, y + r], fill=color)


def render_loss_chart(history: dict, width: int = 512, height: int = 256, title: str = "GFTI loss") -> Image.Image:
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    box = left, top, right, bottom = 56, 20, width - 56, height - 34
    draw.rectangle(box, outline=(180, 180, 180))
    title = drawable(title)
    draw.text((left, 4), title, fill=(0, 0, 0))
    label, main = _main_line(history)
    faint = {k: [(i + 1, v) for i, v in enumerate(history.get(k, []))] for k in FAINT}
    main_values = [v for _, v in main if _finite(v)]
    faint_values = [v for pts in faint.values() for _, v in pts if _finite(v)]
    if not main_values and not faint_values:
        draw.text((left + 10, (top + bottom) // 2), "no generations yet", fill=(120, 120, 120))
        return img
    generations = max([len(history.get("mean", []))] + [g for g, _ in main])
    plot = _Plot(draw, box, generations)
    if faint_values:
        faint_range = _range(faint_values)
        for key, pts in faint.items():
            plot.line(pts, faint_range, FAINT[key], 1)
        draw.text((right + 4, top), f"{faint_range[1]:.3g}", fill=FAINT["best"])
        draw.text((right + 4, bottom - 10), f"{faint_range[0]:.3g}", fill=FAINT["best"])
    if main_values:
        main_range = _range(main_values)
        plot.line(main, main_range, MAIN_COLOR, 2)
        draw.text((4, top), f"{main_range[1]:.4g}", fill=MAIN_COLOR)
        draw.text((4, bottom - 10), f"{main_range[0]:.4g}", fill=MAIN_COLOR)
        draw.text((left + 8 + 6 * len(title), 4), _summary(label, main), fill=MAIN_COLOR)
    draw.text((left, bottom + 4), f"generation 0 - {generations}", fill=(0, 0, 0))
    _legend(draw, left + 130, bottom + 10, label)
    return img


def _summary(label: str, main: list[tuple[int, float]]) -> str:
    pts = [(g, v) for g, v in main if _finite(v)]
    return f"{label} {pts[0][1]:.4g} -> {pts[-1][1]:.4g}"


def _legend(draw: ImageDraw.ImageDraw, x: int, y: int, label: str) -> None:
    for name, color in ((label, MAIN_COLOR), ("each generation: mean", FAINT["mean"]), ("best", FAINT["best"])):
        draw.line([x, y + 6, x + 14, y + 6], fill=color, width=2)
        draw.text((x + 18, y), name, fill=(0, 0, 0))
        x += 18 + 6 * len(name) + 12


def image_grid(rows: list[list[Image.Image]], labels: list[str] | None = None, pad: int = 4) -> Image.Image:
    """Rows of equally sized images → one grid image, each row optionally labelled above."""
    rows = [r for r in rows if r]
    if not rows:
        raise ValueError("image_grid needs at least one image")
    w, h = rows[0][0].size
    label_h = 14 if labels else 0
    cols = max(len(r) for r in rows)
    grid = Image.new("RGB", (cols * (w + pad) + pad, len(rows) * (h + pad + label_h) + pad), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for r, row in enumerate(rows):
        y = pad + r * (h + pad + label_h)
        if labels:
            draw.text((pad, y), drawable(labels[r]), fill=(0, 0, 0))
        for c, im in enumerate(row):
            grid.paste(im, (pad + c * (w + pad), y + label_h))
    return grid


def tensor_to_pil(images) -> list[Image.Image]:
    """[B, 3, H, W] in [0, 1] → list of PIL images."""
    arr = (images.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(a) for a in arr]
