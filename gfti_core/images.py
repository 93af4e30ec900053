"""Training images: one folder -> a square float tensor batch, optional alpha masks, optional captions.

Shared by the CLI and the ComfyUI/A1111 front ends, so every problem a user can cause (empty folder,
corrupt file, 100-megapixel photo, odd pixel mode) becomes an `ImageInputError` naming the file and the
fix instead of a PIL traceback. Memory stays bounded: sizes are checked before decoding, JPEGs are decoded
at reduced scale (`draft`), and resizing uses `reducing_gap` over a centre-crop box.
"""
from __future__ import annotations

import logging
import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image, ImageOps

from .errors import GFTIError, ImageInputError
from .safe_io import display_path

__all__ = ["IMAGE_SUFFIXES", "ImageSet", "list_images", "load_image_folder"]

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
CAPTION_SUFFIXES = (".txt", ".TXT")
MAX_CAPTION_BYTES = 64 * 1024  # a caption longer than this is not a caption; read no more
MIN_RESOLUTION, MAX_RESOLUTION = 8, 4096
_FIX = "put 3–20 .png/.jpg/.webp images in {folder}"
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})


@dataclass
class ImageSet:
    """Training images, all square at one resolution R.

    images: float32 [B, 3, R, R] in [0, 1] (transparent areas composited over white).
    masks: float32 [B, 1, R, R] in [0, 1] from alpha channels (1 = opaque / train on it), or None when no
        image has a non-trivial alpha; images without alpha get an all-ones mask.
    captions: per image, the stripped text of `<stem>.txt` beside it, or None.
    paths: the source files, in load (name) order.
    warnings: human-readable notes (upscaled, animated, differing sizes, ...), also logged.
    """

    images: torch.Tensor
    masks: torch.Tensor | None
    captions: list[str | None]
    paths: list[Path]
    warnings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)


@dataclass
class _Loaded:
    """One decoded image before stacking: rgb [3, R, R], alpha [1, R, R] or None, original size."""

    rgb: torch.Tensor
    alpha: torch.Tensor | None
    size: tuple[int, int]


def load_image_folder(folder: os.PathLike | str, resolution: int, *, max_images: int = 64,
                      max_pixels: int = 50_000_000) -> ImageSet:
    """Load every image in `folder` (not recursive; hidden files skipped; sorted by name).

    Each image is EXIF-rotated, converted to RGB (+ alpha), resized so its shorter side is `resolution`
    and centre-cropped to `resolution`². Raises `ImageInputError` for a missing/empty folder, more than
    `max_images` images, an image above `max_pixels`, or a file PIL cannot decode.
    """
    _check_resolution(resolution)
    if not str(folder).strip():  # Path("") is the working directory: never train on whatever lies there
        raise ImageInputError("no image folder given; enter the path of a folder with 3-20 training images")
    folder = Path(folder)
    paths = list_images(folder)
    if len(paths) > max_images:
        raise ImageInputError(f"{display_path(folder)} holds {len(paths)} images, more than max_images={max_images}; "
                              "keep the 3–20 best images or raise the limit")
    notes: list[str] = []
    loaded = [_load_one(path, resolution, max_pixels, notes) for path in paths]
    _note_differing_sizes(paths, loaded, notes)
    for note in notes:
        logger.warning("%s", note)
    return ImageSet(
        images=torch.stack([item.rgb for item in loaded]),
        masks=_stack_masks(loaded, resolution),
        captions=[_read_caption(path) for path in paths],
        paths=paths,
        warnings=notes,
    )


def _check_resolution(resolution: int) -> None:
    if not isinstance(resolution, int) or not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION:
        raise ImageInputError(f"resolution {resolution!r} is out of range; use an integer between "
                              f"{MIN_RESOLUTION} and {MAX_RESOLUTION} (512 for SD1, 1024 for SDXL)")


def list_images(folder: Path) -> list[Path]:
    """Image files directly in `folder`, by name; raises with the fix when there are none."""
    fix = _FIX.format(folder=display_path(folder))
    if not folder.exists():
        raise ImageInputError(f"image folder {display_path(folder)} does not exist; {fix}")
    if not folder.is_dir():
        raise ImageInputError(f"{display_path(folder)} is not a folder; {fix}")
    try:
        entries = list(folder.iterdir())
    except OSError as exc:
        raise ImageInputError(f"cannot list {display_path(folder)} ({exc.strerror}); "
                              f"fix its permissions or {fix}") from exc
    images = sorted(
        (p for p in entries if not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
        key=lambda p: p.name,
    )
    if not images:
        others = sum(1 for p in entries if p.is_file())
        raise ImageInputError(f"no images in {display_path(folder)} ({others} other file(s)); {fix}")
    return images


@contextmanager
def _pil_guard(path: Path) -> Iterator[None]:
    """Turn any decoder failure (PIL raises OSError, SyntaxError, ValueError, struct.error, ...) into a
    one-line ImageInputError naming the file. Our own GFTIErrors pass through untouched."""
    try:
        yield
    except GFTIError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageInputError(f"{display_path(path)} is too large to decode safely ({exc}); shrink it, e.g. to "
                              "2048 px on the long side") from exc
    except MemoryError as exc:
        raise ImageInputError(f"not enough memory to decode {display_path(path)}; shrink it, e.g. to 2048 px "
                              "on the long side") from exc
    except Exception as exc:
        raise ImageInputError(f"cannot read image {display_path(path)} ({type(exc).__name__}: {exc}); it is "
                              "corrupt or truncated, re-save it as PNG/JPEG or remove it from the folder") from exc


def _load_one(path: Path, resolution: int, max_pixels: int, notes: list[str]) -> _Loaded:
    """Decode one file to rgb [3, R, R] (+ alpha [1, R, R]) with bounded memory."""
    with _pil_guard(path):
        with warnings.catch_warnings():
            # our own max_pixels check replaces PIL's warning; PIL's hard DecompressionBombError still applies
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                _check_pixels(img, path, max_pixels)
                if getattr(img, "n_frames", 1) > 1:
                    notes.append(f"{display_path(path.name)} is animated; using its first frame")
                size = img.size
                img.draft(None, (resolution, resolution))  # JPEG: decode at 1/2..1/8 scale, keep side >= R
                img.load()
                decoded = img.size
                img = ImageOps.exif_transpose(img)
                if img.size != decoded:  # EXIF rotated by 90°: report the size the user sees
                    size = (size[1], size[0])
                rgb, alpha = _split_alpha(_normalise_mode(img))
        if min(size) < resolution:
            notes.append(f"{display_path(path.name)} is only {size[0]}×{size[1]} px, upscaled to {resolution}; "
                         f"use images of at least {resolution} px for best results")
        return _Loaded(rgb=_to_tensor(_square(rgb, resolution)),
                       alpha=None if alpha is None else _to_tensor(_square(alpha, resolution)),
                       size=size)


def _check_pixels(img: Image.Image, path: Path, max_pixels: int) -> None:
    """Refuse huge images from the header alone, before any pixel is decoded."""
    width, height = img.size
    if width < 1 or height < 1:
        raise ImageInputError(f"{display_path(path)} has size {width}×{height}; re-save it or remove it")
    if width * height > max_pixels:
        raise ImageInputError(f"{display_path(path)} is {width}×{height} = {width * height / 1e6:.0f} MP, above "
                              f"the {max_pixels / 1e6:g} MP limit (max_pixels); shrink it, e.g. to 2048 px on "
                              "the long side, or raise max_pixels")


def _normalise_mode(img: Image.Image) -> Image.Image:
    """Any PIL mode -> "RGB" or "RGBA" (alpha kept only when the file has alpha or a transparency key)."""
    if img.mode in _SIXTEEN_BIT_MODES or img.mode in ("I", "F"):
        img = _high_depth_to_l(img)
    if img.mode in _ALPHA_MODES or "transparency" in img.info:
        return img.convert("RGBA")  # P/L/RGB with a transparency key also become RGBA here
    return img.convert("RGB")  # 1, L, P, CMYK, YCbCr, LAB, HSV, RGB


def _high_depth_to_l(img: Image.Image) -> Image.Image:
    """16-bit / 32-bit int / float grey -> 8-bit "L", scaled by the value range (PIL's convert would clip
    a 16-bit image to mostly white)."""
    values = np.asarray(img).astype(np.float64)
    if img.mode in _SIXTEEN_BIT_MODES:
        full_scale = 65535.0
    elif img.mode == "F":
        full_scale = 1.0 if values.size and np.nanmax(values) <= 1.0 else 255.0
    else:  # "I": PNG/TIFF 16-bit data often arrives as I; true 8-bit data stays within 255
        full_scale = 65535.0 if values.size and values.max() > 255 else 255.0
    scaled = np.clip(np.nan_to_num(values / full_scale) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    grey = Image.fromarray(scaled, mode="L")
    if "transparency" in img.info:
        logger.debug("dropping the transparency key of a %s image", img.mode)
    return grey


def _split_alpha(img: Image.Image) -> tuple[Image.Image, Image.Image | None]:
    """RGBA -> (RGB composited over white, alpha "L"); alpha is None when fully opaque."""
    if img.mode != "RGBA":
        return img, None
    alpha = img.getchannel("A")
    if alpha.getextrema() == (255, 255):
        return img.convert("RGB"), None
    white = Image.new("RGBA", img.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, img).convert("RGB"), alpha


def _square(img: Image.Image, resolution: int) -> Image.Image:
    """Centre square of side min(w, h), resized to R×R in one step (same as shorter-side resize + crop,
    without ever allocating the intermediate, e.g. 512×512000 for a 1×1000 image)."""
    width, height = img.size
    side = min(width, height)
    left, top = (width - side) / 2, (height - side) / 2
    box = (left, top, left + side, top + side)
    resample = Image.Resampling.LANCZOS if side >= resolution else Image.Resampling.BICUBIC
    return img.resize((resolution, resolution), resample=resample, box=box, reducing_gap=3.0)


def _to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL "RGB" -> [3, R, R], "L" -> [1, R, R]; float32 in [0, 1]."""
    array = np.asarray(img, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)


def _stack_masks(loaded: list[_Loaded], resolution: int) -> torch.Tensor | None:
    """[B, 1, R, R] when any image had alpha (opaque images get ones), else None."""
    if all(item.alpha is None for item in loaded):
        return None
    ones = torch.ones(1, resolution, resolution)
    return torch.stack([ones if item.alpha is None else item.alpha for item in loaded])


def _note_differing_sizes(paths: list[Path], loaded: list[_Loaded], notes: list[str]) -> None:
    """One note (not one per image) when sizes differ: each was scaled + centre-cropped on its own."""
    sizes = {item.size for item in loaded}
    if len(sizes) <= 1:
        return
    examples = ", ".join(f"{display_path(path.name)} {item.size[0]}×{item.size[1]}"
                         for path, item in list(zip(paths, loaded))[:3])
    more = ", ..." if len(paths) > 3 else ""
    notes.append(f"images have different sizes ({examples}{more}); each is scaled so its shorter side fits "
                 "and centre-cropped to a square, so check that nothing important sits at the edges")


def _read_caption(image_path: Path) -> str | None:
    """`<stem>.txt` beside the image (UTF-8, undecodable bytes replaced, BOM and whitespace stripped)."""
    for suffix in CAPTION_SUFFIXES:
        caption_path = image_path.with_suffix(suffix)
        if not caption_path.is_file():
            continue
        try:
            with open(caption_path, "rb") as fh:
                raw = fh.read(MAX_CAPTION_BYTES)
        except OSError as exc:
            logger.warning("cannot read caption %s: %s", display_path(caption_path), exc)
            return None
        text = raw.decode("utf-8", errors="replace").lstrip("\ufeff").strip()
        return text or None
    return None
