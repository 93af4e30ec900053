"""The pack inside a real ComfyUI process (run by test_comfy_inprocess.py in a subprocess of its own).

Environment: GFTI_COMFY_DIR (the ComfyUI folder), GFTI_TINY_CKPT (tiny_checkpoint.py's file). ComfyUI's
PromptExecutor runs API-format graphs exactly as its server's prompt worker does (validation, caching,
IS_CHANGED, hidden UNIQUE_ID, inference mode), with a stub in place of the web server.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from comfy_env import ServerStub, load_pack, make_executor, register_pack, run_prompt, start_comfy  # noqa: E402

torch.set_num_threads(2)
COMFY_DIR, CKPT = Path(os.environ["GFTI_COMFY_DIR"]), Path(os.environ["GFTI_TINY_CKPT"])
NODES = start_comfy(COMFY_DIR)
PACK = load_pack()
register_pack(NODES, PACK)
CAPTURED: list[dict] = []
TOKEN = "gfti-test-cat"


class GFTITestCapture:
    """Test-only output node: keeps what it receives so the test can compare raw outputs."""
    CATEGORY, FUNCTION, OUTPUT_NODE, RETURN_TYPES = "test", "run", True, ()

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"ours": ("CONDITIONING",), "host": ("CONDITIONING",), "inversion": ("GFTI_INVERSION",)}}

    @classmethod
    def IS_CHANGED(cls, **_):
        return float("nan")

    def run(self, **inputs):
        CAPTURED.append(inputs)
        return {}


NODES.NODE_CLASS_MAPPINGS["GFTITestCapture"] = GFTITestCapture


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    import folder_paths
    from PIL import Image

    root = tmp_path_factory.mktemp("comfy")
    for sub in ("checkpoints", "embeddings", "input/train"):
        (root / sub).mkdir(parents=True)
    (root / "checkpoints" / CKPT.name).symlink_to(CKPT)
    folder_paths.folder_names_and_paths["checkpoints"] = ([str(root / "checkpoints")], {".safetensors"})
    folder_paths.folder_names_and_paths["embeddings"] = ([str(root / "embeddings")], {".safetensors", ".pt", ".bin"})
    folder_paths.set_input_directory(str(root / "input"))
    gen = torch.Generator().manual_seed(0)
    for i in range(2):
        rgba = (torch.rand(72, 64, 4, generator=gen) * 255).byte().numpy()
        rgba[..., 3] = 255 if i == 0 else 0
        rgba[16:48, 16:48, 3] = 255
        Image.fromarray(rgba, "RGBA").save(root / "input" / "train" / f"img{i}.png")
    (root / "input" / "train" / "img0.txt").write_text("a cat\non a sofa")
    return root


def widget_defaults(node: str) -> dict:
    """Every widget input of a pack node at its default (the config's defaults, via INPUT_TYPES)."""
    required = PACK.NODE_CLASS_MAPPINGS[node].INPUT_TYPES()["required"]
    return {k: spec[1]["default"] for k, spec in required.items() if len(spec) > 1 and "default" in spec[1]}


def graph(es1_gens=2, es2_gens=1) -> dict:
    init = {**widget_defaults("GFTIInitializeInversion"), "token": TOKEN, "num_vectors": 2, "init_mode": "word",
            "init_text": "cat", "run_seed": 3, "settings": ["10", 0]}
    settings = {**widget_defaults("GFTISettings"), "subspace_dim": 8, "holdout_samples": 1}
    step = {**widget_defaults("GFTIESOptimizeStep"), "popsize": 3, "samples_per_candidate": 1}
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CKPT.name}},
        "2": {"class_type": "GFTILoadTrainingImages", "inputs": {"folder": "train", "resolution": 64}},
        "3": {"class_type": "GFTIInitializeInversion", "inputs": {
            "model": ["1", 0], "clip": ["1", 1], "vae": ["1", 2], "images": ["2", 0], "masks": ["2", 1],
            "captions": ["2", 2], **init}},
        "4": {"class_type": "GFTIESOptimizeStep", "inputs": {"inversion": ["3", 0], **step, "generations": es1_gens}},
        "5": {"class_type": "GFTIESOptimizeStep", "inputs": {"inversion": ["4", 0], **step, "generations": es2_gens,
                                                             "popsize": 4, "templates": "captions"}},
        "6": {"class_type": "GFTISaveEmbedding", "inputs": {"inversion": ["5", 0], "name": "", "format": "auto",
                                                            "overwrite": "same run only"}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": ["6", 0]}},
        "8": {"class_type": "GFTIEncodeWithInversion", "inputs": {"clip": ["1", 1], "inversion": ["5", 0],
                                                                  "text": TOKEN}},
        "9": {"class_type": "GFTITestCapture", "inputs": {"ours": ["8", 0], "host": ["7", 0], "inversion": ["5", 0]}},
        "10": {"class_type": "GFTISettings", "inputs": settings},
    }


@pytest.fixture(scope="module")
def executor():
    import server

    stub = ServerStub()
    server.PromptServer.instance = stub  # our nodes' gfti.loss events land in the stub
    return make_executor(stub), stub


def _progress_hook(calls, interrupt_at=None):
    """What ComfyUI's main.py installs: every update is a cancel point (here: /interrupt at update k)."""
    import comfy.model_management as mm

    def hook(value, total, preview, node_id=None):  # node_id: ComfyUI 2025-10 and later
        calls.append((value, total, preview))
        if interrupt_at is not None and len(calls) == interrupt_at:
            mm.interrupt_current_processing(True)
        mm.throw_exception_if_processing_interrupted()
    return hook


def test_graph_trains_saves_and_matches_embedding_prompt(folders, executor):
    import comfy.utils

    ex, stub = executor
    calls = []
    comfy.utils.set_progress_bar_global_hook(_progress_hook(calls))
    assert run_prompt(ex, graph(), "p1")
    first = CAPTURED[-1]
    saved = list((folders / "embeddings").iterdir())
    assert [p.name for p in saved] == [f"{TOKEN}.safetensors"]  # auto = safetensors, never a pickle
    (ours,), (host,) = first["ours"], first["host"]
    assert torch.equal(ours[0], host[0]) and torch.equal(ours[1]["pooled_output"], host[1]["pooled_output"])
    inv = first["inversion"]
    assert inv.state.generation == 3 and inv.state.config.popsize == 4 and inv.state.config.templates == "captions"
    assert any("a cat on a sofa" in p for prompts in inv.state.data.prompts for p in prompts)
    # progress: one update per generation, no preview image (the live curve is drawn by web/gfti.js);
    # gfti.loss: history first, then one per generation
    step_updates = [c for c in calls if c[1] == 2]
    assert [c[:2] for c in step_updates][:2] == [(1, 2), (2, 2)] and all(c[2] is None for c in step_updates)
    loss = stub.events("gfti.loss")
    assert [e["generation"] for e in loss if "generation" in e] == [1, 2, 3]
    assert {e["node"] for e in loss} == {"4", "5"} and loss[0]["history"] == {"best": [], "mean": []}


def test_requeue_continues_and_never_mutates_inputs(executor):
    ex, stub = executor
    before = CAPTURED[-1]["inversion"]
    history_before = {k: list(v) for k, v in before.state.history.items()}
    assert run_prompt(ex, graph(), "p2")
    after = CAPTURED[-1]["inversion"]
    # step 4 continued from its own last output (2 → 4); step 5 ran from that (4 → 5)
    assert after.state.generation == 5 and after.run_id == before.run_id
    assert after.state.history["best"][:2] == history_before["best"][:2]
    assert before.state.history == history_before and before.state.generation == 3  # untouched


def test_interrupt_keeps_last_complete_generation(executor):
    import comfy.utils

    ex, stub = executor
    calls = []
    comfy.utils.set_progress_bar_global_hook(_progress_hook(calls, interrupt_at=2))
    assert not run_prompt(ex, graph(es1_gens=3), "p3")
    assert stub.events("execution_interrupted")
    gens = [e["generation"] for e in stub.events("gfti.loss") if "generation" in e]
    assert gens[-2:] == [5, 6]  # step 4 continued from generation 4, finished 2 before the cancel
    comfy.utils.set_progress_bar_global_hook(_progress_hook([]))
    assert run_prompt(ex, graph(es1_gens=1), "p4")
    assert CAPTURED[-1]["inversion"].state.generation == 8  # 6 → 7 (step 4), → 8 (step 5)


def test_encode_with_longer_prompt_matches_clip_text_encode(folders):
    inv = CAPTURED[-1]["inversion"]
    clip = inv.backend.clip
    M = PACK.NODE_CLASS_MAPPINGS
    with torch.inference_mode():
        M["GFTISaveEmbedding"]().execute(inv, "other-name", "safetensors", "never")
        (ours,) = M["GFTIEncodeWithInversion"]().execute(clip, inv, f"a (photo:1.2) of {TOKEN}, on a table")
        (host,) = NODES.CLIPTextEncode().encode(clip, "a (photo:1.2) of embedding:other-name, on a table")
    assert torch.equal(ours[0][0], host[0][0])
    with pytest.raises(Exception, match="exists"):
        M["GFTISaveEmbedding"]().execute(inv, "other-name", "safetensors", "never")


def test_cross_host_fitness_equals_diffusers_backend():
    """Same tensors in diffusers and in ComfyUI → the same fitness per candidate on the same draw."""
    from cross_host import diffusers_pipeline
    from gfti_pack.gfti_core.backends.diffusers_backend import DiffusersBackend
    from gfti_pack.gfti_core.objective import Draw, Evaluator, TrainingSet
    from gfti_pack.nodes.comfy_backend import ComfyBackend

    inv = CAPTURED[-1]["inversion"]
    comfy = ComfyBackend(inv.backend.model, inv.backend.clip, inv.backend.vae)
    ref = DiffusersBackend(diffusers_pipeline(CKPT, COMFY_DIR))
    assert comfy.placeholder == ref.placeholder and torch.equal(comfy.token_table("clip_l"), ref.token_table("clip_l"))
    assert comfy.word_ids("a photo of a cat", "clip_l") == ref.word_ids("a photo of a cat", "clip_l")
    gen = torch.Generator().manual_seed(1)
    data = TrainingSet(torch.randn(2, 4, 8, 8, generator=gen), [["a photo of <*>", "a rendering of <*>, on a table"]] * 2)
    draw = Draw(torch.tensor([0, 1, 1, 0]), torch.tensor([0, 1, 0, 1]), torch.tensor([0, 999, 250, 600]),
                torch.randn(4, 4, 8, 8, generator=gen))
    vectors = {"clip_l": comfy.token_table("clip_l")[torch.tensor([[2368], [1125], [539]])] * 1.5}
    with torch.inference_mode():
        ours = Evaluator(comfy, data, 64).population_loss(vectors, draw)
        theirs = Evaluator(ref, data, 64).population_loss(vectors, draw)
    rel = ((ours - theirs).abs() / theirs).max().item()
    print(f"cross-host relative fitness difference: {rel:.2e} ({ours.tolist()} vs {theirs.tolist()})")
    assert rel < 1e-5


def test_backend_contract_details(folders):
    from gfti_pack.nodes.comfy_backend import ComfyBackend

    inv = CAPTURED[-1]["inversion"]
    b = ComfyBackend(inv.backend.model, inv.backend.clip, inv.backend.vae)
    images = torch.rand(2, 3, 64, 64)
    snapshot = images.clone()
    with torch.inference_mode():
        lat1, lat2 = b.encode_images(images), b.encode_images(images)
    assert lat1.shape == (2, 4, 8, 8) and torch.equal(lat1, lat2) and torch.equal(images, snapshot)
    assert b.family == "sd1" and [(e.name, e.width) for e in b.encoders] == [("clip_l", 768)]
    assert 1 <= b.max_rows((4, 8, 8)) <= 512


def test_encode_text_matches_the_hosts_encode_from_tokens_and_device():
    """Without learned vectors, one prompt through the backend is the host's own `CLIP.encode_from_tokens`
    (comfy/sd.py) on the same tokens: same tensors, on the device the host hands conditioning on, CLIP skip too."""
    import comfy.model_management as mm
    from gfti_pack.nodes.comfy_backend import ComfyBackend

    inv = CAPTURED[-1]["inversion"]
    for layer in (None, -2):
        clip = inv.backend.clip.clone()
        if layer is not None:
            clip.clip_layer(layer)
        backend = ComfyBackend(inv.backend.model, clip, inv.backend.vae)
        with torch.inference_mode():
            ours = backend.encode_text(["a photo of a cat"], None)
            cond, pooled = clip.encode_from_tokens(clip.tokenize("a photo of a cat"), return_pooled=True)
        assert torch.equal(ours["c_crossattn"], cond), layer
        assert ours["c_crossattn"].device == cond.device == mm.intermediate_device()
    assert not torch.equal(ours["c_crossattn"], backend.encode_text(["a photo of a dog"], None)["c_crossattn"])


def test_max_rows_asks_the_models_patcher_when_it_can(monkeypatch):
    """Newer samplers ask `model.current_patcher.get_free_memory(device)`; where the host has no such method
    (2024-03, 0.3.64) the backend asks model_management, as those hosts' samplers do."""
    import comfy.model_management as mm
    from gfti_pack.nodes.comfy_backend import ComfyBackend

    inv = CAPTURED[-1]["inversion"]
    b = ComfyBackend(inv.backend.model, inv.backend.clip, inv.backend.vae)
    asked = []
    monkeypatch.setattr(mm, "get_free_memory", lambda *a, **k: asked.append(a) or 0)
    assert b.max_rows((4, 8, 8)) == 1 and asked  # no free memory: one row per call
    patcher = inv.backend.model
    monkeypatch.setattr(inv.backend.model.model, "current_patcher", patcher, raising=False)
    monkeypatch.setattr(patcher, "get_free_memory", lambda device: 2 ** 50, raising=False)
    asked.clear()
    assert b.max_rows((4, 8, 8)) == 512 and not asked


def test_inpainting_model_gets_the_friendly_refusal():
    """`inpaint_model()` is a method of the host's supported-model config; a 9-channel UNet is refused by name."""
    import copy

    from gfti_pack.gfti_core.errors import GFTIError
    from gfti_pack.nodes.comfy_backend import ComfyBackend

    inv = CAPTURED[-1]["inversion"]
    model = inv.backend.model.clone()
    model.model = copy.copy(model.model)  # never touch the loaded model itself
    config = copy.copy(model.model.model_config)
    config.unet_config = {**config.unet_config, "in_channels": 9}
    model.model.model_config = config
    assert config.inpaint_model() and not inv.backend.model.model.model_config.inpaint_model()
    with pytest.raises(GFTIError, match="inpainting model .*base"):
        ComfyBackend(model, inv.backend.clip, inv.backend.vae)


def test_cache_none_requeue_says_plainly_that_it_restarted(folders, executor):
    """With --cache-none (the host's dependency-aware cache) no node instance survives a queue: the re-queued
    step cannot continue, and its text on the node says that it started again."""
    import comfy.cli_args
    import execution

    if not hasattr(execution, "CacheType") or not hasattr(comfy.cli_args.args, "cache_none"):
        pytest.skip("this ComfyUI has no --cache-none")
    stub = ServerStub()
    ex = execution.PromptExecutor(stub, cache_type=execution.CacheType.DEPENDENCY_AWARE)
    prompt = graph(es1_gens=1, es2_gens=1)
    # each queue is a new run (Initialize re-runs), which "same run only" would rightly refuse to overwrite
    prompt["6"]["inputs"].update(name="gfti-cache-none", overwrite="always")
    comfy.cli_args.args.cache_none = True
    try:
        assert run_prompt(ex, prompt, "c1")
        assert run_prompt(ex, prompt, "c2")
    finally:
        comfy.cli_args.args.cache_none = False
    assert CAPTURED[-1]["inversion"].state.generation == 2  # restarted: 0 → 1 → 2, not 2 → 4
    shown = [e["output"]["text"] for e in stub.events("executed") if e["node"] == "4"]  # the node's text
    assert len(shown) == 2 and all("--cache-none" in "\n".join(text) for text in shown), shown


def test_initialize_reports_progress_and_honours_interrupt():
    """The start (here: scoring init words with the denoiser) moves the node's progress bar, and /interrupt
    during it ends the node with the host's own interrupt, nothing half-started returned."""
    import comfy.model_management as mm
    import comfy.utils

    inv = CAPTURED[-1]["inversion"]
    init = PACK.NODE_CLASS_MAPPINGS["GFTIInitializeInversion"]()
    (settings,) = PACK.NODE_CLASS_MAPPINGS["GFTISettings"]().execute(**{
        **widget_defaults("GFTISettings"), "init_words": "cat\ndog\nsofa", "subspace_dim": 8, "holdout_samples": 1,
        "auto_context": False})
    widgets = {**widget_defaults("GFTIInitializeInversion"), "token": TOKEN, "init_mode": "denoise-attention"}
    args = (inv.backend.model, inv.backend.clip, inv.backend.vae, torch.rand(2, 64, 64, 3))
    calls = []
    comfy.utils.set_progress_bar_global_hook(_progress_hook(calls))
    with torch.inference_mode():
        init.execute(*args, settings=settings, **widgets)
    assert len(calls) >= 2 and calls[-1][0] == calls[-1][1] > 1  # rows done of rows planned, ending complete
    comfy.utils.set_progress_bar_global_hook(_progress_hook(calls := [], interrupt_at=1))
    with torch.inference_mode(), pytest.raises(mm.InterruptProcessingException):
        init.execute(*args, settings=settings, **widgets)
    assert not mm.processing_interrupted()  # the host's exception consumed the flag, as its own nodes do
    comfy.utils.set_progress_bar_global_hook(_progress_hook([]))
