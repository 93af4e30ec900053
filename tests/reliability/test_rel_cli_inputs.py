"""`gfti` faced with bad input: every user mistake exits 2 with one clear line, before any work is wasted and
without leaving files behind. Loader-level details of the same cases live in tests/test_images.py,
tests/test_formats.py and tests/test_resume.py (see docs/reliability.md)."""
from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load as st_load, save as st_save, save_file

from rel_helpers import TOKEN, evil_pt, one_clear_line
from fake_backend import FakeBackend
from gfti_core.config import InversionConfig
from gfti_core.engine import run_generations, start_run
from gfti_core.formats import Embedding, read_embedding, write_embedding
from gfti_core.state_io import load_state, save_state


def _noise(path: Path, **save_args) -> Path:
    pixels = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels, "RGB").save(path, **save_args)
    return path


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG that claims width x height but holds no pixel data: only the header can be read safely."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _bad_folder(case: str, folder: Path) -> Path:
    """A training folder that must be refused; the images fixture's 3 good images are kept beside the bad one."""
    if case == "empty folder":
        for p in folder.iterdir():
            p.unlink()
    elif case == "missing folder":
        return folder / "nowhere"
    elif case == "truncated PNG":
        _truncate(_noise(folder / "cut.png"))
    elif case == "truncated JPEG":
        _truncate(_noise(folder / "cut.jpg", quality=95))
    elif case == "huge image":
        _png_header_only(folder / "huge.png", 10_000, 10_000)  # 100 MP: refused from the header alone
    elif case == "non-UTF-8 name, corrupt":
        with open(os.path.join(os.fsencode(folder), b"bad\xe9.png"), "wb") as fh:
            fh.write(b"junk")
    return folder


@pytest.mark.parametrize("case, needle", [
    ("empty folder", "no images"), ("missing folder", "does not exist"), ("truncated PNG", "cut.png"),
    ("truncated JPEG", "cut.jpg"), ("huge image", "100 MP"), ("non-UTF-8 name, corrupt", "cannot read image"),
])
def test_bad_image_folder_exits_2_with_one_line_and_writes_nothing(train, images, tmp_path, case, needle):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = train(out_dir / "x.safetensors", "--generations", "1", images=_bad_folder(case, images))
    one_clear_line(result, needle)
    assert list(out_dir.iterdir()) == []


def test_odd_but_valid_images_train_with_warnings(train, tmp_path):
    """1 px, grayscale, CMYK, RGBA with partial alpha, 16-bit, animated GIF, mixed sizes, a 200-character
    name and a non-UTF-8 name, all in one folder: accepted, with one warning per oddity that needs one."""
    folder = tmp_path / "odd"
    folder.mkdir()
    Image.new("RGB", (1, 1), "red").save(folder / "one-pixel.png")
    Image.new("L", (24, 24), 90).save(folder / "grey.png")
    Image.new("CMYK", (24, 24), (0, 255, 255, 0)).save(folder / "cmyk.jpg")
    rgba = Image.new("RGBA", (30, 20), (0, 0, 255, 255))
    rgba.putpixel((0, 0), (0, 0, 0, 0))
    rgba.save(folder / "alpha.png")
    Image.fromarray(np.full((24, 24), 40_000, dtype=np.uint16)).save(folder / "sixteen.png")
    frames = [Image.new("RGB", (24, 24), colour) for colour in ("red", "blue", "yellow")]
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:])
    Image.new("RGB", (24, 24), "green").save(folder / f"{'n' * 196}.png")
    with open(os.path.join(os.fsencode(folder), b"caf\xe9.png"), "wb") as fh:
        Image.new("RGB", (24, 24), "white").save(fh, format="PNG")
    out = tmp_path / "odd.safetensors"
    result = train(out, "--generations", "0", images=folder)
    assert result.code == 0, result.text
    for note in ("upscaled", "animated", "different sizes"):
        assert result.text.count(note) == 1, note  # once each: the CLI does not repeat the loader's warnings
    state = load_state(tmp_path / "odd.state.safetensors")
    assert state.data.latents.shape[0] == 2 * 8  # 8 images, each also flipped
    assert state.data.weights is not None  # the alpha channel became a loss mask
    assert read_embedding(out).token == TOKEN


@pytest.mark.parametrize("token", ["", "   "])
def test_empty_token_exits_2(train, tmp_path, token):
    one_clear_line(train(tmp_path / "x.safetensors", "--generations", "1", token=token), "token is empty")
    assert list(tmp_path.glob("x*")) == []


def test_existing_output_is_refused_before_training_even_without_suffix(train, tmp_path):
    """`--out x` writes x.safetensors: an existing x.safetensors must stop the run before it starts."""
    existing = tmp_path / "x.safetensors"
    existing.write_bytes(b"keep me")
    one_clear_line(train(tmp_path / "x", "--generations", "1"), "already exists", "--overwrite")
    assert existing.read_bytes() == b"keep me"
    assert sorted(p.name for p in tmp_path.glob("x*")) == ["x.safetensors"]  # no state, no chart
    assert train(tmp_path / "x", "--generations", "0", "--overwrite").code == 0
    assert read_embedding(existing).token == TOKEN


def test_suffix_of_another_format_is_refused_before_training(train, tmp_path):
    one_clear_line(train(tmp_path / "x.safetensors", "--format", "a1111-pt", "--generations", "1"), "x.pt")
    assert list(tmp_path.glob("x*")) == []


def test_dotted_out_name_keeps_its_own_state_file(train, tmp_path):
    """`--out sks.v2` must not share sks.v1's state and chart (the stem was cut at the first dot)."""
    assert train(tmp_path / "sks.v2", "--generations", "0").code == 0
    assert {p.name for p in tmp_path.glob("sks*")} == {"sks.v2.safetensors", "sks.v2.state.safetensors",
                                                       "sks.v2.loss.png"}


# ----------------------------------------------------------------------------------------- files as inputs

def _fake_state(tmp_path: Path) -> Path:
    backend = FakeBackend()  # width 16: a different model than the tiny SD1 (width 32)
    cfg = InversionConfig(init_mode="word", init_text="cat", subspace_dim=4, popsize=5)
    state = run_generations(start_run(backend, cfg, torch.rand(3, 3, 8, 8)), backend, 2)
    return save_state(state, tmp_path / "fake.state.safetensors")


def _tampered(path: Path) -> Path:
    raw = path.read_bytes()
    meta = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])["__metadata__"]
    tensors = st_load(raw)
    # Negating generation 0's fitness reverses its ranking, so the history can no longer reproduce the stored
    # mean (a small nudge may leave the ranking, and thus the mean, unchanged).
    tensors["opt.fitness"][0] = -tensors["opt.fitness"][0]
    path.write_bytes(st_save(tensors, metadata=meta))
    return path


@pytest.mark.parametrize("case, needles", [
    ("truncated", ("not a valid gfti state file",)),
    ("tampered", ("inconsistent",)),
    ("embedding", ("not a gfti run state", "--init-file")),
    ("other model", ("made for", "resume with the model")),
    ("missing", ("does not exist", "--resume")),
])
def test_bad_resume_file_exits_2_with_one_line(train, tmp_path, case, needles):
    state = _fake_state(tmp_path)
    if case == "truncated":
        state.write_bytes(state.read_bytes()[:-40])
    elif case == "tampered":
        _tampered(state)
    elif case == "embedding":
        state = write_embedding(tmp_path / "emb", Embedding({"clip_l": torch.randn(1, 32)}, "e"))
    elif case == "missing":
        state = tmp_path / "nowhere.safetensors"
    before = state.read_bytes() if state.exists() else None
    one_clear_line(train(tmp_path / "x.safetensors", "--resume", state), *needles)
    assert not (tmp_path / "x.safetensors").exists()
    if before is not None:
        assert state.read_bytes() == before  # a refused state is never overwritten


def test_info_explains_a_damaged_state_as_a_state_not_as_an_embedding(gfti, tmp_path, capsys):
    state = _fake_state(tmp_path)
    assert gfti("info", state).code == 0 and "GFTI run state" in capsys.readouterr().out
    one_clear_line(gfti("info", _tampered(state)), "inconsistent", "earlier checkpoint")


def test_pickle_payload_is_refused_by_every_command_without_running(gfti, train, model_dir, tmp_path):
    marker = tmp_path / "pwned"
    evil = evil_pt(tmp_path / "evil.pt", marker)
    one_clear_line(gfti("info", evil), "refusing to load", "python objects")
    one_clear_line(train(tmp_path / "x.safetensors", "--init-mode", "file", "--init-file", evil, "--generations",
                         "1"), "refusing to load")
    one_clear_line(gfti("sample", "--model", model_dir, "--embedding", evil, "--prompt", "a <x>", "--out",
                        tmp_path / "g.png"), "refusing to load")
    assert not marker.exists()
    assert not (tmp_path / "x.safetensors").exists() and not (tmp_path / "g.png").exists()


@pytest.mark.parametrize("bad", ["nan", "inf", "width"])
def test_bad_embedding_is_refused_by_sample_and_init_file(gfti, train, model_dir, tmp_path, bad):
    vectors = torch.zeros(1, 32)
    if bad == "width":
        vectors = torch.zeros(1, 768)
    else:
        vectors[0, 3] = float(bad)
    path = tmp_path / "bad.safetensors"
    save_file({"emb_params": vectors}, str(path))
    needle = "SD1 (768)" if bad == "width" else "NaN or Inf"
    one_clear_line(gfti("sample", "--model", model_dir, "--embedding", path, "--prompt", "a <bad>", "--out",
                        tmp_path / "g.png"), needle)
    one_clear_line(train(tmp_path / "x.safetensors", "--init-mode", "file", "--init-file", path,
                         "--generations", "1"), needle)
