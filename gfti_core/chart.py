"""A loss chart drawn with Pillow alone (hosts do not all ship matplotlib): per-generation population mean,
generation best, and the trend (trailing average of the mean), on a shared y axis.

Every generation draws its own timesteps and noise, so one generation's losses are comparable with each other
but not with the next generation's. A "best so far" line would only track the luckiest draw; the trailing
average of the population mean is what shows whether the search is getting anywhere."""
from __future__ import annotations

from PIL import Image, ImageDraw

_COLORS = {"mean": (150, 170, 200), "best": (60, 120, 220), "trend": (230, 90, 40)}
TREND_WINDOW = 10


def drawable(text: str) -> str:
    """Text that any Pillow font can draw: the webuis pin Pillow 9.5, whose default bitmap font encodes
    latin-1 only (anything else raises UnicodeEncodeError mid-run)."""
    return text.encode("latin-1", "replace").decode("latin-1")


def trailing_average(values: list[float], window: int = TREND_WINDOW) -> list[float]:
    """Mean of the last `window` finite values at each position (NaN/inf generations are skipped)."""
    out, recent = [], []
    for v in values:
        if v == v and abs(v) != float("inf"):
            recent = (recent + [v])[-window:]
        out.append(sum(recent) / len(recent) if recent else float("nan"))
    return out


def _series(history: dict[str, list[float]]) -> dict[str, list[float]]:
    mean = history.get("mean", [])
    return {"mean": mean, "best": history.get("best", []), "trend": trailing_average(mean)}


def render_loss_chart(history: dict[str, list[float]], width: int = 512, height: int = 256,
                      title: str = "GFTI loss") -> Image.Image:
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    left, right, top, bottom = 56, width - 10, 22, height - 24
    draw.rectangle([left, top, right, bottom], outline=(180, 180, 180))
    series = _series(history)
    values = [v for s in series.values() for v in s if v == v and abs(v) != float("inf")]
    draw.text((left, 4), drawable(title), fill=(0, 0, 0))
    if not values:
        draw.text((left + 10, (top + bottom) // 2), "no generations yet", fill=(120, 120, 120))
        return img
    lo, hi = min(values), max(values)
    hi = hi if hi > lo else lo + 1e-6
    n = max(len(s) for s in series.values())

    def xy(i: int, v: float) -> tuple[float, float]:
        x = left + (right - left) * (i / max(1, n - 1))
        return x, bottom - (bottom - top) * (v - lo) / (hi - lo)

    for name, s in series.items():
        pts = [xy(i, v) for i, v in enumerate(s) if v == v]
        if len(pts) > 1:
            draw.line(pts, fill=_COLORS[name], width=2 if name == "trend" else 1)
        elif pts:
            draw.ellipse([pts[0][0] - 2, pts[0][1] - 2, pts[0][0] + 2, pts[0][1] + 2], fill=_COLORS[name])
    draw.text((4, top), f"{hi:.4g}", fill=(0, 0, 0))
    draw.text((4, bottom - 10), f"{lo:.4g}", fill=(0, 0, 0))
    draw.text((left, bottom + 6), f"generation 1 - {n}", fill=(0, 0, 0))
    x = right - 250
    for name, color in _COLORS.items():
        draw.line([x, 12, x + 14, 12], fill=color, width=2)
        draw.text((x + 18, 6), name, fill=(0, 0, 0))
        x += 84
    return img


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
