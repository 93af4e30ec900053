"""The one way a run ends: the CLI, the ComfyUI Save node and the A1111/Forge job write the same run facts for
the same run, under one overwrite rule, as safetensors. The node and the job run in-process on a tiny model."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from gfti_core.cli import main
from gfti_core.errors import OutputExistsError
from gfti_core.finish import METADATA_KEYS, may_replace
from gfti_core.formats import Embedding, read_embedding, write_embedding
from gfti_core.tiny import tiny_images, tiny_pipeline

ROOT = Path(__file__).resolve().parents[1]
RUN = {"token": "sks-same", "generations": 2, "subspace_dim": 4, "popsize": 4, "samples_per_candidate": 2,
       "holdout_samples": 2, "init_mode": "word", "init_text": "cat"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    tiny_pipeline("sd1").save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("imgs")
    for i, arr in enumerate(tiny_images(3, size=16)):
        Image.fromarray((arr.permute(1, 2, 0).numpy() * 255).astype("uint8")).save(folder / f"{i}.png")
    return folder


def _cli(model_dir, image_dir, out: Path) -> dict[str, str]:
    flags = [x for k, v in RUN.items() for x in ("--" + k.replace("_", "-"), str(v))]
    assert main(["train", "--model", str(model_dir), "--images", str(image_dir), "--out", str(out), *flags]) == 0
    return read_embedding(out).metadata


def _pack():
    """This repository loaded as ComfyUI loads a custom-node pack (relative imports inside a package)."""
    spec = importlib.util.spec_from_file_location("comfy_env", ROOT / "tests" / "comfy" / "comfy_env.py")
    comfy_env = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(comfy_env)
    return sys.modules.get(comfy_env.PACK_NAME) or comfy_env.load_pack()


def _node(pipe, image_dir, folder: Path, monkeypatch, generations_asked: int = 100) -> Path:
    """Initialize asks for `generations_asked`, one ES step runs RUN's generations, then the Save node."""
    _pack()
    from gfti_pack.gfti_core.backends.diffusers_backend import DiffusersBackend
    from gfti_pack.gfti_core.config import InversionConfig
    from gfti_pack.gfti_core.engine import run_generations, start_run
    from gfti_pack.gfti_core.images import load_image_folder
    from gfti_pack.nodes import save_embedding
    from gfti_pack.nodes.inversion import Inversion

    backend = DiffusersBackend(pipe)
    images = load_image_folder(image_dir, 16).images
    state = start_run(backend, InversionConfig(**{**RUN, "generations": generations_asked}), images)
    state = run_generations(state, backend, RUN["generations"])
    monkeypatch.setattr(save_embedding, "embeddings_folder", lambda: folder)
    inv = Inversion(state, backend, images, None, [None] * len(images), "run-1")
    save_embedding.GFTISaveEmbedding().execute(inv, "", "auto", "same run only")
    return folder / f"{RUN['token']}.safetensors"


def _tab(pipe, image_dir, folder: Path) -> dict[str, str]:
    from gfti_core.backends.diffusers_backend import DiffusersBackend
    from gfti_webui.job import Host, run_job

    backend = DiffusersBackend(pipe)
    state = SimpleNamespace(interrupted=False, job_count=0, job_no=0, textinfo="")
    host = Host(backend=lambda resolution, rows: backend, state=state, embeddings_dir=lambda: str(folder),
                publish=lambda path, emb: None)
    result = run_job({**RUN, "image_folder": str(image_dir), "resolution": 16}, host)
    return read_embedding(result.path).metadata


def test_cli_node_and_tab_write_the_same_run_facts(model_dir, tiny_sd1, image_dir, tmp_path, monkeypatch):
    cli = _cli(model_dir, image_dir, tmp_path / "cli.safetensors")
    node = read_embedding(_node(tiny_sd1, image_dir, _folder(tmp_path, "comfy"), monkeypatch)).metadata
    tab = _tab(tiny_sd1, image_dir, _folder(tmp_path, "webui"))
    assert set(cli) == set(node) == set(tab) and set(METADATA_KEYS) <= set(cli)
    assert (cli["gfti.host"], node["gfti.host"], tab["gfti.host"]) == ("cli", "comfyui", "webui")
    for meta in (cli, node, tab):  # what really ran, even where Initialize asked for 100 generations
        assert meta["gfti.steps"] == str(RUN["generations"]) and meta["gfti.interrupted"] == "false"
        assert json.loads(meta["gfti.config"])["generations"] == RUN["generations"]
        assert float(meta["gfti.seconds"]) > 0 and int(meta["gfti.evaluations"]) > 0
    same = ("gfti.steps", "gfti.evaluations", "gfti.seed", "gfti.config", "gfti.init")
    assert {k: cli[k] for k in same} == {k: tab[k] for k in same} == {k: node[k] for k in same}


def _folder(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    return folder


def test_the_node_saves_safetensors_and_replaces_only_its_own_file(tiny_sd1, image_dir, tmp_path, monkeypatch):
    folder = _folder(tmp_path, "embeddings")
    path = _node(tiny_sd1, image_dir, folder, monkeypatch, generations_asked=RUN["generations"])
    assert path.read_bytes()[8:9] == b"{"  # a safetensors header, not a zip/pickle
    assert read_embedding(path).metadata["gfti.run_id"] == "run-1"
    _node(tiny_sd1, image_dir, folder, monkeypatch)  # the same run id: its own file is updated
    assert sorted(p.name for p in folder.iterdir()) == [path.name]  # no chart or state in the host's list


def test_the_overwrite_rule(tmp_path):
    path = tmp_path / "x.safetensors"
    assert may_replace(path, overwrite=False) is False  # nothing there: write, without replacing
    vectors = {"clip_l": tiny_images(1, size=4).reshape(1, -1)[:, :32].contiguous()}
    write_embedding(path, Embedding(vectors, "x", {"gfti.run_id": "mine"}))
    assert may_replace(path, overwrite=False, run_id="mine") is True
    assert may_replace(path, overwrite=True) is True
    for other in ("", "theirs"):
        with pytest.raises(OutputExistsError, match="not written by this run"):
            may_replace(path, overwrite=False, run_id=other)

