"""`gfti` end to end on a tiny model folder: train → state → resume → file → sample → info; bad inputs."""
import logging
import subprocess
import sys

import pytest
from PIL import Image

from gfti_core.cli import main
from gfti_core.formats import read_embedding
from gfti_core.state_io import load_state
from gfti_core.tiny import tiny_images, tiny_pipeline

FAST = ["--subspace-dim", "4", "--popsize", "4", "--samples-per-candidate", "2", "--holdout-samples", "4",
        "--init-mode", "word", "--init-text", "cat", "--checkpoint-every", "2"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    tiny_pipeline("sd1").save_pretrained(folder)
    return folder


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, arr in enumerate(tiny_images(3, size=20)):
        Image.fromarray((arr.permute(1, 2, 0).numpy() * 255).astype("uint8")).save(folder / f"{i}.png")
    return folder


def _train(model_dir, images, out, *extra):
    return main(["train", "--model", str(model_dir), "--images", str(images), "--token", "sks-thing",
                 "--out", str(out), *FAST, *extra])


def test_train_resume_sample_info(model_dir, images, tmp_path, caplog, capsys):
    out = tmp_path / "thing.safetensors"
    assert _train(model_dir, images, out, "--generations", "2") == 0
    state_path = tmp_path / "thing.state.safetensors"
    assert load_state(state_path).generation == 2
    assert (tmp_path / "thing.loss.png").exists()
    emb = read_embedding(out)
    assert emb.vectors["clip_l"].shape == (1, 32) and emb.metadata["gfti.steps"] == "2"
    # resume the same run to 4 generations, writing a new file
    out2 = tmp_path / "thing4.safetensors"
    assert _train(model_dir, images, out2, "--generations", "4", "--resume", str(state_path), "--preview", "2",
                  "--preview-every", "2") == 0
    assert load_state(state_path).generation == 4 and read_embedding(out2).metadata["gfti.steps"] == "4"
    assert (tmp_path / "thing4.preview.png").exists()
    assert Image.open(tmp_path / "thing4.previews.png").height > 2 * 20  # written during training (generation 4)
    assert not (tmp_path / "thing.previews.png").exists()  # off by default
    grid = tmp_path / "grid.png"
    assert main(["sample", "--model", str(model_dir), "--embedding", str(out2), "--prompt",
                 "a photo of <sks-thing>", "--out", str(grid), "--num-images", "2", "--steps", "2"]) == 0
    assert Image.open(grid).size[0] > 16
    assert main(["info", str(out2)]) == 0
    assert "sks-thing" in capsys.readouterr().out
    assert main(["info", str(state_path)]) == 0  # the resumed run continued the hold-out curve (every 3)
    assert "hold-out loss by generation: 0: " in (text := capsys.readouterr().out) and ", 3: " in text


@pytest.mark.parametrize("case,expect", [
    ("no_images", "no images"), ("corrupt", "corrupt"), ("model_missing", "does not exist"),
    ("output_exists", "already exists"), ("bad_config", "popsize"),
])
def test_bad_input_exits_nonzero_with_one_clear_line(case, expect, model_dir, images, tmp_path, caplog):
    out, model = tmp_path / "o.safetensors", str(model_dir)
    extra = ["--generations", "1"]
    if case == "no_images":
        images = tmp_path / "empty"
        images.mkdir()
        (images / "notes.txt").write_text("hi")
    elif case == "corrupt":
        (images / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    elif case == "model_missing":
        model = str(tmp_path / "nowhere")
    elif case == "output_exists":
        out.write_bytes(b"keep me")
    elif case == "bad_config":
        extra += ["--popsize", "1"]
    with caplog.at_level(logging.ERROR):
        code = main(["train", "--model", model, "--images", str(images), "--token", "t", "--out", str(out),
                     *FAST, *extra])
    assert code == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and expect in errors[0].lower(), errors
    if case == "output_exists":
        assert out.read_bytes() == b"keep me"


def test_wrong_family_embedding_is_refused_by_sample(model_dir, tmp_path, caplog):
    import torch
    from gfti_core.formats import Embedding, write_embedding

    path = write_embedding(tmp_path / "sdxl.safetensors",
                           Embedding({"clip_l": torch.randn(1, 768), "clip_g": torch.randn(1, 1280)}, "x"))
    with caplog.at_level(logging.ERROR):
        code = main(["sample", "--model", str(model_dir), "--embedding", str(path), "--prompt", "a <x>",
                     "--out", str(tmp_path / "g.png")])
    assert code == 2 and "SDXL" in caplog.text


def test_existing_vocabulary_word_warns(model_dir, images, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        main(["train", "--model", str(model_dir), "--images", str(images), "--token", "a", "--out",
              str(tmp_path / "a.safetensors"), *FAST, "--generations", "1"])
    assert "already a word" in caplog.text


def test_console_entry_point_help():
    out = subprocess.run([sys.executable, "-m", "gfti_core.cli", "train", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--subspace-dim" in out.stdout and "--timestep-min" in out.stdout
