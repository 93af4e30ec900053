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

from .classifier import load_classifier, predict
from .scenes import article
from .worlds import PACKAGE, World, get_world

log = logging.getLogger(__name__)

EVAL_SECTION = "## Obeys text (toyworld/evaluate.py)"


@torch.no_grad()
def generate(pipe, prompts, n: int = 4, seed: int = 0, steps: int = 20, guidance: float = 4.0,
             negative_prompt: str | None = None) -> torch.Tensor:
    """n images per prompt, fixed seed, on the pipeline's device -> [len(prompts)*n,3,S,S] in [0,1]
    (S: the model's own resolution)."""
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    gen = torch.Generator("cpu").manual_seed(seed)
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    out = pipe(prompts, num_images_per_prompt=n, num_inference_steps=steps, guidance_scale=guidance,
               negative_prompt=[negative_prompt] * len(prompts) if negative_prompt else None,
               height=size, width=size, generator=gen, output_type="pt")
    return out.images.float().cpu().clamp(0, 1)


def obj_words(shape: str, colour: str) -> str:
    return f"{article(colour)} {colour} {shape}"


def score(pipe, combos, n, seed, steps, guidance, background: str | None = None,
          world: World | None = None) -> dict:
    """Share of images whose classified shape and colour (and background, if asked) are right."""
    world = world or get_world()
    prompts = [world.prompt(s, c, background) for s, c in combos]
    images = generate(pipe, prompts, n=n, seed=seed, steps=steps, guidance=guidance)
    pred = predict(images, world_classifier(world), size=64 if world.name == "shapes" else world.image_size)
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


_CLASSIFIERS: dict[str, object] = {}


def world_classifier(world: World):
    """The world's own classifier, loaded once per process."""
    if world.name not in _CLASSIFIERS:
        _CLASSIFIERS[world.name] = load_classifier(world.classifier_weights, heads=world.heads, world=world.name)
    return _CLASSIFIERS[world.name]


def obeys_text(pipe, n: int = 8, seed: int = 0, steps: int = 20, guidance: float = 4.0,
               world: World | None = None) -> dict:
    world = world or get_world()
    kw = dict(n=n, seed=seed, steps=steps, guidance=guidance)
    return {"training_combos": score(pipe, world.training_combos, world=world, **kw),
            "held_out": score(pipe, world.held_out, world=world, **kw),
            "held_out_new_context": score(pipe, world.held_out, background=world.new_context, world=world, **kw),
            "settings": kw, "world": world.name}


def report(result: dict) -> str:
    s, world = result["settings"], get_world(result.get("world", "shapes"))
    lines = [EVAL_SECTION, "",
             f"DDIM {s['steps']} steps, guidance {s['guidance']}, {s['n']} images per prompt, seed {s['seed']}; "
             f"judged by `{world.classifier_weights.relative_to(PACKAGE.parent)}`.", "",
             "| prompts | shape+colour right | + background right | shape right | colour right |",
             "|---|---|---|---|---|"]
    example = world.prompt("<shape>", "<colour>")
    names = {"training_combos": f"training combos, `{example}`",
             "held_out": f"held-out concepts, `{example}`",
             "held_out_new_context": f"held-out concepts, `{world.prompt('<shape>', '<colour>', world.new_context)}`"}
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
    from . import load_pipeline

    p = argparse.ArgumentParser()
    p.add_argument("--world", choices=("shapes", "tags"), default="shapes")
    p.add_argument("--model", default="", help="pipeline folder (default: the world's shipped model)")
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--guidance", type=float, default=4.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    torch.set_num_threads(args.threads)
    world = get_world(args.world)
    model = Path(args.model or world.model_dir)
    pipe = load_pipeline(model_dir=model)
    text = report(obeys_text(pipe, n=args.n, seed=args.seed, steps=args.steps, guidance=args.guidance,
                             world=world))
    sys.stdout.write(text)
    if not args.no_write:
        write_report(text, model)


if __name__ == "__main__":
    main()
