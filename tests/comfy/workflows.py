"""Builds example_workflows/*.json (ComfyUI's UI format) from the nodes' current INPUT_TYPES, so the widget
values can never drift out of line with the inputs. `python tests/comfy/workflows.py` rewrites the files;
test_comfy_pack.py fails when they are stale."""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from comfy_env import ROOT, load_pack  # noqa: E402

OUT = ROOT / "example_workflows"
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN"}
# Built-in nodes: (input slots, output slots, widget values) — stable across ComfyUI 2024-03 … 2025-10.
BUILTIN = {
    "CheckpointLoaderSimple": ([], [("MODEL", "MODEL"), ("CLIP", "CLIP"), ("VAE", "VAE")]),
    "CLIPTextEncode": ([("clip", "CLIP")], [("CONDITIONING", "CONDITIONING")]),
    "EmptyLatentImage": ([], [("LATENT", "LATENT")]),
    "KSampler": ([("model", "MODEL"), ("positive", "CONDITIONING"), ("negative", "CONDITIONING"),
                  ("latent_image", "LATENT")], [("LATENT", "LATENT")]),
    "VAEDecode": ([("samples", "LATENT"), ("vae", "VAE")], [("IMAGE", "IMAGE")]),
    "PreviewImage": ([("images", "IMAGE")], []),
}


def is_widget(spec) -> bool:
    kind, opts = spec[0], (spec[1] if len(spec) > 1 else {})
    return isinstance(kind, list) or (kind in WIDGET_TYPES and not opts.get("forceInput"))


def pack_node_slots(cls, overrides: dict):
    spec = cls.INPUT_TYPES()
    inputs = [(n, s[0]) for part in ("required", "optional") for n, s in spec.get(part, {}).items() if not is_widget(s)]
    widgets = [overrides.get(n, s[1]["default"]) for part in ("required", "optional")
               for n, s in spec.get(part, {}).items() if is_widget(s)]
    names = getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)
    return inputs, list(zip(names, cls.RETURN_TYPES)), widgets


class Graph:
    def __init__(self, pack):
        self.pack, self.nodes, self.links = pack, [], []

    def add(self, kind: str, pos, widgets=(), size=(320, 120), **overrides) -> int:
        if kind in BUILTIN:
            inputs, outputs = BUILTIN[kind]
            values = list(widgets)
        else:
            inputs, outputs, values = pack_node_slots(self.pack.NODE_CLASS_MAPPINGS[kind], overrides)
        node_id = len(self.nodes) + 1
        self.nodes.append({
            "id": node_id, "type": kind, "pos": list(pos), "size": list(size), "flags": {}, "order": node_id - 1,
            "mode": 0, "inputs": [{"name": n, "type": t, "link": None} for n, t in inputs],
            "outputs": [{"name": n, "type": t, "links": [], "slot_index": i} for i, (n, t) in enumerate(outputs)],
            "properties": {"Node name for S&R": kind}, "widgets_values": values})
        return node_id

    def link(self, src: int, out: int, dst: int, name: str) -> None:
        link_id = len(self.links) + 1
        target = self.nodes[dst - 1]
        slot = next(i for i, inp in enumerate(target["inputs"]) if inp["name"] == name)
        kind = self.nodes[src - 1]["outputs"][out]["type"]
        self.nodes[src - 1]["outputs"][out]["links"].append(link_id)
        target["inputs"][slot]["link"] = link_id
        self.links.append([link_id, src, out, dst, slot, kind])

    def to_json(self) -> dict:
        return {"last_node_id": len(self.nodes), "last_link_id": len(self.links), "nodes": self.nodes,
                "links": self.links, "groups": [], "config": {}, "extra": {}, "version": 0.4}


def workflow(pack, *, checkpoint: str, resolution: int, token: str) -> dict:
    g = Graph(pack)
    ckpt = g.add("CheckpointLoaderSimple", (20, 60), [checkpoint], size=(320, 100))
    images = g.add("GFTILoadTrainingImages", (20, 220), size=(320, 100), folder="gfti_training",
                   resolution=resolution)
    init = g.add("GFTIInitializeInversion", (380, 60), size=(340, 400), token=token)
    step1 = g.add("GFTIESOptimizeStep", (760, 60), size=(340, 420), generations=60)
    step2 = g.add("GFTIESOptimizeStep", (760, 520), size=(340, 420), generations=40, sigma=0.25)
    chart = g.add("PreviewImage", (1140, 520), size=(420, 260))
    save = g.add("GFTISaveEmbedding", (1140, 60), size=(340, 140))
    positive = g.add("GFTIEncodeWithInversion", (1140, 240), size=(340, 160), text=f"a photo of {token} on a beach")
    negative = g.add("CLIPTextEncode", (380, 920), ["blurry, low quality"], size=(340, 100))
    latent = g.add("EmptyLatentImage", (760, 980), [resolution, resolution, 1], size=(320, 110))
    sampler = g.add("KSampler", (1140, 820), [0, "fixed", 25, 7.0, "euler", "normal", 1.0], size=(320, 270))
    decode = g.add("VAEDecode", (1500, 820), size=(200, 50))
    preview = g.add("PreviewImage", (1500, 900), size=(420, 420))
    settings = g.add("GFTISettings", (20, 360), size=(320, 640))  # added last: earlier node ids stay put
    for src, out, dst, name in [
        (ckpt, 0, init, "model"), (ckpt, 1, init, "clip"), (ckpt, 2, init, "vae"), (images, 0, init, "images"),
        (images, 1, init, "masks"), (images, 2, init, "captions"), (init, 0, step1, "inversion"),
        (step1, 0, step2, "inversion"), (step2, 1, chart, "images"), (step2, 0, save, "inversion"),
        (ckpt, 1, positive, "clip"), (step2, 0, positive, "inversion"), (ckpt, 1, negative, "clip"),
        (ckpt, 0, sampler, "model"), (positive, 0, sampler, "positive"), (negative, 0, sampler, "negative"),
        (latent, 0, sampler, "latent_image"), (sampler, 0, decode, "samples"), (ckpt, 2, decode, "vae"),
        (decode, 0, preview, "images"), (settings, 0, init, "settings"),
    ]:
        g.link(src, out, dst, name)
    return g.to_json()


def examples(pack) -> dict[str, dict]:
    return {
        "gfti_sd15.json": workflow(pack, checkpoint="v1-5-pruned-emaonly.safetensors", resolution=512,
                                   token="my-concept"),
        "gfti_sdxl.json": workflow(pack, checkpoint="sd_xl_base_1.0.safetensors", resolution=1024,
                                   token="my-concept-xl"),
    }


def render(data: dict) -> str:
    return json.dumps(data, indent=1) + "\n"


if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    for name, data in examples(load_pack()).items():
        (OUT / name).write_text(render(data))
        print("wrote", OUT / name)
