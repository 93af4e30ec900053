"""Training-image loading: odd modes, damaged files, huge images, odd names (gfti_core.images)."""
from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile, ImageOps
from PIL.JpegImagePlugin import JpegImageFile

from gfti_core.errors import ImageInputError
from gfti_core.images import ImageSet, load_image_folder

R = 32  # small resolution keeps every test in milliseconds


def solid(path: Path, colour, size=(48, 48), mode="RGB", **save_args) -> Path:
    Image.new(mode, size, colour).save(path, **save_args)
    return path


def noise(path: Path, size=(64, 64), **save_args) -> Path:
    """Random pixels: compress badly, so a truncated file is really missing image data."""
    pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels, "RGB").save(path, **save_args)
    return path


def png_of_one_colour(path: Path, width: int, height: int) -> Path:
    """A 1-bit grey PNG built row by row: a 12000² image costs a few kB and no big allocation."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + b"\x00" * ((width + 7) // 8)  # filter byte + packed bits
    compressor, parts = zlib.compressobj(9), []
    for _ in range(height):
        parts.append(compressor.compress(row))
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts))
                     + chunk(b"IEND", b""))
    return path


def load(folder: Path, **kwargs) -> ImageSet:
    return load_image_folder(folder, R, **kwargs)


# ------------------------------------------------------------------------------ folders and listing

def test_missing_folder(tmp_path):
    with pytest.raises(ImageInputError, match="does not exist.*put 3–20"):
        load(tmp_path / "missing")


def test_file_instead_of_folder(tmp_path):
    with pytest.raises(ImageInputError, match="not a folder"):
        load(solid(tmp_path / "a.png", "red"))


def test_empty_folder(tmp_path):
    with pytest.raises(ImageInputError, match=r"no images in .*put 3–20 \.png/\.jpg/\.webp images in"):
        load(tmp_path)


def test_folder_with_only_text_files(tmp_path):
    (tmp_path / "a.txt").write_text("a caption")
    (tmp_path / "notes.md").write_text("x")
    with pytest.raises(ImageInputError, match=r"no images .*2 other file"):
        load(tmp_path)


def test_hidden_files_and_subfolders_skipped_and_order_by_name(tmp_path):
    solid(tmp_path / "b.PNG", "blue")
    solid(tmp_path / "a.jpeg", "red")
    (tmp_path / ".hidden.png").write_bytes(b"not an image")
    (tmp_path / "sub.png").mkdir()
    result = load(tmp_path)
    assert [p.name for p in result.paths] == ["a.jpeg", "b.PNG"]
    assert result.images.shape == (2, 3, R, R) and result.images.dtype == torch.float32


def test_too_many_images(tmp_path):
    for i in range(4):
        solid(tmp_path / f"{i}.png", "red", size=(8, 8))
    with pytest.raises(ImageInputError, match="more than max_images=3"):
        load(tmp_path, max_images=3)


@pytest.mark.parametrize("resolution", [0, 4, 100_000, 32.0])
def test_bad_resolution(tmp_path, resolution):
    solid(tmp_path / "a.png", "red")
    with pytest.raises(ImageInputError, match="resolution"):
        load_image_folder(tmp_path, resolution)


# ---------------------------------------------------------------------------------- damaged files

def test_corrupt_file_named_in_error(tmp_path):
    solid(tmp_path / "good.png", "red")
    (tmp_path / "broken.jpg").write_bytes(os.urandom(300))
    with pytest.raises(ImageInputError, match="broken.jpg.*corrupt or truncated"):
        load(tmp_path)


@pytest.mark.parametrize("name, save_args", [("cut.png", {}), ("cut.jpg", {"quality": 95})])
def test_truncated_files_rejected(tmp_path, name, save_args):
    path = noise(tmp_path / name, **save_args)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageInputError, match=name):
        load(tmp_path)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # never switched on globally


def test_huge_image_refused_before_decoding(tmp_path):
    path = png_of_one_colour(tmp_path / "huge.png", 12000, 12000)
    assert path.stat().st_size < 1_000_000
    with pytest.raises(ImageInputError, match=r"huge.png is 12000×12000 = 144 MP.*max_pixels"):
        load(tmp_path)


def test_decompression_bomb_refused_even_with_raised_limit(tmp_path):
    png_of_one_colour(tmp_path / "bomb.png", 15000, 15000)  # above PIL's own hard limit
    with pytest.raises(ImageInputError, match="bomb.png"):
        load(tmp_path, max_pixels=10**9)


def test_large_jpeg_decoded_at_reduced_scale(tmp_path, monkeypatch):
    """draft() makes libjpeg decode at 1/8 scale: memory follows the target, not the file."""
    solid(tmp_path / "big.jpg", (200, 10, 10), size=(2048, 1536))
    drafted = []
    original = JpegImageFile.draft

    def spy(self, mode, size):
        result = original(self, mode, size)
        drafted.append(self.size)
        return result

    monkeypatch.setattr(JpegImageFile, "draft", spy)
    result = load(tmp_path)
    assert drafted == [(256, 192)]  # 2048×1536 / 8, still >= R on the short side
    assert result.images[0, 0].mean() > 0.7 and result.warnings == []


def test_small_max_pixels_refuses_ordinary_image(tmp_path):
    solid(tmp_path / "a.png", "red", size=(600, 600))
    with pytest.raises(ImageInputError, match="0.1 MP limit"):
        load(tmp_path, max_pixels=100_000)


# ------------------------------------------------------------------------------------ pixel modes

def test_one_pixel_image_upscaled_with_warning(tmp_path):
    solid(tmp_path / "dot.png", (0, 255, 0), size=(1, 1))
    result = load(tmp_path)
    assert torch.allclose(result.images[0], torch.tensor([0.0, 1.0, 0.0]).view(3, 1, 1).expand(3, R, R))
    assert any("dot.png" in w and "upscaled" in w for w in result.warnings)


def test_grayscale_and_bilevel(tmp_path):
    solid(tmp_path / "grey.png", 128, mode="L")
    solid(tmp_path / "bits.bmp", 1, mode="1")
    result = load(tmp_path)
    bits, grey = result.images  # sorted by name
    assert torch.allclose(grey, torch.full((3, R, R), 128 / 255))
    assert torch.allclose(bits, torch.ones(3, R, R))
    assert result.masks is None


def test_cmyk_jpeg(tmp_path):
    solid(tmp_path / "cmyk.jpg", (0, 255, 255, 0), mode="CMYK", quality=95)  # no magenta/yellow ink -> red
    rgb = load(tmp_path).images[0].mean(dim=(1, 2))
    assert rgb[0] > 0.9 and rgb[1] < 0.1 and rgb[2] < 0.1


def test_rgba_partial_alpha_gives_mask_and_white_background(tmp_path):
    pixels = np.zeros((R, R, 4), dtype=np.uint8)
    pixels[..., 0] = 255  # red
    pixels[: R // 2, :, 3] = 255  # top half opaque
    pixels[R // 2:, :, 3] = 0  # bottom half transparent
    Image.fromarray(pixels, "RGBA").save(tmp_path / "a_cutout.png")
    solid(tmp_path / "b_opaque.png", "blue", size=(R, R))
    result = load(tmp_path)
    assert result.masks is not None and result.masks.shape == (2, 1, R, R)
    mask = result.masks[0, 0]
    assert torch.all(mask[: R // 2] == 1) and torch.all(mask[R // 2:] == 0)
    assert torch.all(result.masks[1] == 1)  # images without alpha train everywhere
    image = result.images[0]
    assert torch.allclose(image[:, 0, 0], torch.tensor([1.0, 0.0, 0.0]))  # opaque red
    assert torch.allclose(image[:, -1, 0], torch.ones(3))  # transparent -> white


def test_half_transparent_alpha_values(tmp_path):
    pixels = np.zeros((R, R, 4), dtype=np.uint8)
    pixels[..., 3] = 128
    Image.fromarray(pixels, "RGBA").save(tmp_path / "half.png")
    result = load(tmp_path)
    assert torch.allclose(result.masks, torch.full((1, 1, R, R), 128 / 255))
    assert torch.allclose(result.images, torch.full((1, 3, R, R), 127 / 255), atol=1 / 255)  # black over white


def test_opaque_alpha_channel_gives_no_mask(tmp_path):
    solid(tmp_path / "a.png", (1, 2, 3, 255), mode="RGBA")
    solid(tmp_path / "la.png", (9, 255), mode="LA")
    assert load(tmp_path).masks is None


def test_palette_with_transparency_and_la(tmp_path):
    pal = Image.new("P", (R, R), 0)
    pal.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    pal.paste(1, (0, 0, R, R // 2))  # top half index 1 (blue), bottom index 0 (red, transparent)
    pal.save(tmp_path / "a_pal.png", transparency=0)
    la = Image.new("LA", (R, R), (0, 255))
    la.paste((0, 0), (0, 0, R // 2, R))  # left half transparent
    la.save(tmp_path / "b_la.png")
    result = load(tmp_path)
    assert torch.all(result.masks[0, 0, : R // 2] == 1) and torch.all(result.masks[0, 0, R // 2:] == 0)
    assert torch.allclose(result.images[0, :, 0, 0], torch.tensor([0.0, 0.0, 1.0]))
    assert torch.all(result.masks[1, 0, :, : R // 2] == 0) and torch.all(result.masks[1, 0, :, R // 2:] == 1)


def test_sixteen_bit_png_scaled_not_clipped(tmp_path):
    values = np.full((R, R), 32768, dtype=np.uint16)
    values[:, : R // 2] = 65535
    Image.fromarray(values).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode in ("I;16", "I")
    image = load(tmp_path).images[0]
    assert torch.allclose(image[:, :, : R // 2 - 2], torch.ones(3, R, R // 2 - 2))
    assert torch.allclose(image[:, :, R // 2 + 2:], torch.full((3, R, R // 2 - 2), 128 / 255))


def test_animated_gif_first_frame_with_warning(tmp_path):
    frames = [Image.new("RGB", (R, R), colour) for colour in ("red", "lime", "blue")]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    assert Image.open(tmp_path / "anim.gif").n_frames == 3
    result = load(tmp_path)
    assert torch.allclose(result.images[0, :, R // 2, R // 2], torch.tensor([1.0, 0.0, 0.0]))
    assert any("anim.gif" in w and "first frame" in w for w in result.warnings)


def test_exif_orientation_applied(tmp_path):
    pixels = np.zeros((R, 2 * R, 3), dtype=np.uint8)
    pixels[:, :R, 0] = 255  # left half red, right half blue
    pixels[:, R:, 2] = 255
    upright = Image.fromarray(pixels, "RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° CW to display"
    upright.save(tmp_path / "a_rotated.png", exif=exif)
    ImageOps.exif_transpose(Image.open(tmp_path / "a_rotated.png")).save(tmp_path / "b_expected.png")
    result = load(tmp_path)
    assert torch.equal(result.images[0], result.images[1])


def test_mixed_sizes_centre_cropped_with_one_warning(tmp_path):
    wide = np.zeros((100, 300, 3), dtype=np.uint8)
    wide[:, :100] = (255, 0, 0)
    wide[:, 100:200] = (0, 255, 0)
    wide[:, 200:] = (0, 0, 255)
    Image.fromarray(wide, "RGB").save(tmp_path / "a_wide.png")
    solid(tmp_path / "b_tall.png", "white", size=(40, 90))
    solid(tmp_path / "c_square.png", "white", size=(64, 64))
    result = load(tmp_path)
    assert result.images.shape == (3, 3, R, R)
    green = torch.tensor([0.0, 1.0, 0.0]).view(3, 1, 1)
    assert torch.allclose(result.images[0], green.expand(3, R, R), atol=0.1)  # only the middle third survives
    assert torch.allclose(result.images[0, :, :, 2:-2], green.expand(3, R, R - 4), atol=0.01)
    size_notes = [w for w in result.warnings if "different sizes" in w]
    assert len(size_notes) == 1


# ------------------------------------------------------------------------------- names and captions

def test_captions_beside_images(tmp_path):
    solid(tmp_path / "a.png", "red")
    (tmp_path / "a.txt").write_bytes("\ufeff  a red square \n".encode("utf-8"))
    solid(tmp_path / "b.png", "red")
    solid(tmp_path / "c.v2.png", "red")
    (tmp_path / "c.v2.txt").write_bytes(b"bad \xff byte")
    solid(tmp_path / "d.png", "red")
    (tmp_path / "d.txt").write_text("   \n")
    result = load(tmp_path)
    assert result.captions == ["a red square", None, "bad \ufffd byte", None]


def test_non_utf8_file_name(tmp_path):
    folder = os.fsencode(tmp_path)
    raw_name = "café".encode("latin-1") + b".png"  # b"caf\xe9.png": not valid UTF-8
    try:
        with open(os.path.join(folder, raw_name), "wb") as fh:
            Image.new("RGB", (8, 8), "red").save(fh, format="PNG")
        with open(os.path.join(folder, b"caf\xe9.txt"), "wb") as fh:
            fh.write(b"caption")
    except OSError as exc:
        pytest.skip(f"file system refuses non-UTF-8 names: {exc}")
    if os.fsencode(os.fsdecode(raw_name)) != raw_name:
        pytest.skip("file system encoding cannot round-trip this name")
    result = load(tmp_path)
    assert os.fsencode(result.paths[0].name) == raw_name
    assert result.captions == ["caption"]
    for note in result.warnings:
        note.encode("utf-8")  # printable: no lone surrogates in messages


def test_non_utf8_corrupt_file_error_is_printable(tmp_path):
    try:
        with open(os.path.join(os.fsencode(tmp_path), b"bad\xe9.png"), "wb") as fh:
            fh.write(b"junk")
    except OSError as exc:
        pytest.skip(f"file system refuses non-UTF-8 names: {exc}")
    with pytest.raises(ImageInputError) as info:
        load(tmp_path)
    str(info.value).encode("utf-8")


def test_long_file_name(tmp_path):
    stem = "n" * 196
    solid(tmp_path / f"{stem}.png", "red")
    (tmp_path / f"{stem}.txt").write_text("long")
    result = load(tmp_path)
    assert len(result.paths[0].name) == 200 and result.captions == ["long"]
