"""Generation helper and the "obeys text" measurement of the toy model.

    python -m toyworld.evaluate            # prints the table and appends it to model/TRAINING.md
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch

from gfti_core.safe_io import atomic_write_bytes

from .classifier import predict
from .concepts import HELD_OUT_CONCEPTS
from .scenes import article

log = logging.getLogger(__name__)

# Seen (shape, colour) pairs, one per shape, for comparison with the held-out ones.
TRAINING_COMBOS = (("circle", "red"), ("square", "green"), ("triangle", "yellow"),
                   ("star", "blue"), ("ring", "white"), ("cross", "cyan"))
EVAL_SECTION = "## Obeys text (toyworld/evaluate.py)"


@torch.no_grad()
def generate(pipe, prompts, n: int = 4, seed: int = 0, steps: int = 20, guidance: float = 4.0,
             negative_prompt: str | None = None) -> torch.Tensor:
    """n images per prompt, fixed seed, on the pipeline's device -> [len(prompts)*n,3,64,64] in [0,1]."""
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    gen = torch.Generator("cpu").manual_seed(seed)
    out = pipe(prompts, num_images_per_prompt=n, num_inference_steps=steps, guidance_scale=guidance,
               negative_prompt=[negative_prompt] * len(prompts) if negative_prompt else None,
               height=64, width=64, generator=gen, output_type="pt")
    return out.images.float().cpu().clamp(0, 1)


def obj_words(shape: str, colour: str) -> str:
    return f"{article(colour)} {colour} {shape}"


def score(pipe, combos, n, seed, steps, guidance, background: str | None = None) -> dict:
    """Share of images whose classified shape and colour (and background, if asked) are right."""
    suffix = f" on {article(background)} {background} background" if background else ""
    prompts = [f"a photo of {obj_words(s, c)}{suffix}" for s, c in combos]
    images = generate(pipe, prompts, n=n, seed=seed, steps=steps, guidance=guidance)
    pred = predict(images)
    per_prompt, hits, hits_bg = {}, 0, 0
    for i, (shape, colour) in enumerate(combos):
        sl = slice(i * n, (i + 1) * n)
        ok = [s == shape and c == colour for s, c in zip(pred["shape"][sl], pred["colour"][sl])]
        ok_bg = [o and b == background for o, b in zip(ok, pred["background"][sl])]
        per_prompt[prompts[i]] = (sum(ok) / n, sum(ok_bg) / n if background else None)
        hits, hits_bg = hits + sum(ok), hits_bg + sum(ok_bg)
    total = n * len(combos)
    truth = [c for c in combos for _ in range(n)]
    shares = {key: sum(p == t[i] for p, t in zip(pred[key], truth)) / total
              for key, i in (("shape", 0), ("colour", 1))}
    return {"shape_colour": hits / total, "with_background": hits_bg / total if background else None,
            "per_prompt": per_prompt, "n": total, **shares}


def obeys_text(pipe, n: int = 8, seed: int = 0, steps: int = 20, guidance: float = 4.0) -> dict:
    kw = dict(n=n, seed=seed, steps=steps, guidance=guidance)
    return {"training_combos": score(pipe, TRAINING_COMBOS, **kw),
            "held_out": score(pipe, HELD_OUT_CONCEPTS, **kw),
            "held_out_green": score(pipe, HELD_OUT_CONCEPTS, background="green", **kw),
            "settings": kw}


def report(result: dict) -> str:
    s = result["settings"]
    lines = [EVAL_SECTION, "",
             f"DDIM {s['steps']} steps, guidance {s['guidance']}, {s['n']} images per prompt, seed {s['seed']}; "
             "judged by `toyworld/classifier.py`.", "",
             "| prompts | shape+colour right | + background right | shape right | colour right |",
             "|---|---|---|---|---|"]
    names = {"training_combos": "training combos, `a photo of a <colour> <shape>`",
             "held_out": "held-out concepts, `a photo of a <colour> <shape>`",
             "held_out_green": "held-out concepts, `... on a green background`"}
    for key, name in names.items():
        r = result[key]
        bg = "" if r["with_background"] is None else f"{r['with_background']:.0%}"
        lines.append(f"| {name} (n={r['n']}) | {r['shape_colour']:.0%} | {bg} | {r['shape']:.0%} | {r['colour']:.0%} |")
    lines += ["", "Per prompt (shape+colour, +background):", ""]
    for key in names:
        for prompt, (a, b) in result[key]["per_prompt"].items():
            lines.append(f"- `{prompt}`: {a:.0%}" + ("" if b is None else f", {b:.0%}"))
    return "\n".join(lines) + "\n"


def write_report(text: str, model_dir: Path) -> None:
    """Replace the evaluation section of TRAINING.md; keep the training record above it and any later
    ``## `` section (e.g. the record of a previous model) below it."""
    path = Path(model_dir) / "TRAINING.md"
    old = path.read_text() if path.exists() else ""
    head, _, ours = old.partition(EVAL_SECTION + "\n")
    later = ours.partition("\n## ")[2]
    merged = (head.rstrip() + "\n\n" if head.strip() else "") + text + ("\n## " + later if later else "")
    atomic_write_bytes(path, merged.encode(), overwrite=True)  # the record above must survive a crash


def main(argv=None):
    from . import MODEL_DIR, load_pipeline

    p = argparse.ArgumentParser()
    p.add_argument("--model", default=str(MODEL_DIR))
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--guidance", type=float, default=4.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    torch.set_num_threads(args.threads)
    pipe = load_pipeline(model_dir=Path(args.model))
    text = report(obeys_text(pipe, n=args.n, seed=args.seed, steps=args.steps, guidance=args.guidance))
    print(text)
    if not args.no_write:
        write_report(text, Path(args.model))


if __name__ == "__main__":
    main()
