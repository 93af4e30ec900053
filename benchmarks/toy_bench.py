"""Toy-world benchmark: does the learned token reproduce the concept, and does it still obey the prompt?

For each benchmark concept (a shape/colour pair the toy vocabulary has no single word for) and seed, every method
gets the same 6 images and the same budget of UNet forward rows:

* defaults      — GFTI exactly as it ships (InversionConfig()), with the world's own word and phrase lists
* plain         — the plain baseline: CMA-ES (pycma, full covariance) in the 64-d PCA subspace from one init word
                  (a shape word that is not the concept's), common random numbers, no word coordinates, no auto
                  context, no tail average
* gfti          — GFTI with the engine's defaults but auto context off
* gfti:auto_context=1 — GFTI as it ships now (auto context on by default since v4); any "gfti:field=value,..."
                  runs a configured variant
* seed-faithful — the original GF-TI recipe: CMA-ES popsize 20, 256-d PCA with orthonormal (unscaled)
                  directions and sigma 1, start at unit-norm e0 + vocabulary mean, fresh noise per candidate
* gradient-ti   — Adam on the embedding through autograd (benchmarks/gradient_ti.py), at the same
                  forward-equivalent budget (a forward + backward row counts 3; --grad-cost)
* init          — GFTI's initial vector (denoise-attention), no search
* true-words    — the concept's real words in the prompt (upper bound; no token)

Every method's rows include its start (init scoring, auto context). --world picks the measuring world
(toyworld/worlds.py): shapes (world 1) or tags (world 2).

fidelity    = share of images for "a photo of <tok>" (world 2: "<tok>") whose shape and colour the world's
              classifier assigns to the concept; editability = share of "... on a green background" (world 2:
              "<tok>, white background") images with the right shape, colour AND that background, which no
              training image of the concept has.

    bash benchmarks/run_toy_suite.sh benchmarks/results/v4_main "gfti;gfti:auto_context=1;seed-faithful;gradient-ti" 4096 1
    python benchmarks/toy_bench.py --concepts 2 --seeds 1 --budget 4096     # quick look
    python benchmarks/toy_bench.py --methods "gfti;gfti:auto_context=1,masks=1"   # configured variants
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from gfti_core.backends.diffusers_backend import DiffusersBackend  # noqa: E402
from gfti_core.config import InversionConfig  # noqa: E402
from gfti_core.engine import build_training_set, final_vectors, run_generations, start_run  # noqa: E402
from gfti_core.optim import OptimizerSpec  # noqa: E402
from gfti_core.safe_io import atomic_write_bytes  # noqa: E402
from gfti_core.subspace import Subspace  # noqa: E402
from gradient_ti import gradient_ti  # noqa: E402

log = logging.getLogger("toy_bench")
FRACTIONS = (0.25, 0.5, 1.0)


WORLD = None  # the measuring world (toyworld/worlds.py), set by main()

PLAIN = {"init_mode": "word", "subspace_words": 0, "subspace_scale": 1.0, "optimizer": "cma",
         "auto_context": False, "tail_average": 0.0}  # the plain baseline: one init word, PCA, CMA-ES, CRN


def world():
    global WORLD
    if WORLD is None:
        from toyworld.worlds import get_world
        WORLD = get_world()
    return WORLD


def plain_init_word(concept) -> str:
    """The plain baseline's one init word: a shape word the model knows, not the concept's own shape
    (a user picks a related word; the issue's run used "circle" for a magenta triangle)."""
    return next(s for s in world().heads["shape"] if s != concept[0])


def concept_tensor(concept, seed):
    imgs = world().module("concepts").concept_images(concept, n=6, seed=seed)
    return torch.stack([torch.from_numpy(np.asarray(i, dtype="float32") / 255).permute(2, 0, 1) for i in imgs])


def classify(backend, prompt, vectors, n, seed) -> dict:
    """Generate n images of `prompt` (the benchmark's sampler: 20 DDIM steps, guidance 4) and classify them:
    {"shape": [...], "colour": [...], "background": [...]}. vectors None: the prompt's own words."""
    from toyworld.classifier import predict
    from toyworld.evaluate import world_classifier

    w = world()
    return predict(backend.generate(prompt, vectors, num_images=n, seed=seed, steps=20, guidance=4.0),
                   world_classifier(w), size=64 if w.name == "shapes" else w.image_size)


def measure(backend, vectors, concept, n, seed, words=None):
    """→ {fidelity, editability, colour, shape} for vectors {enc: [N, D]} (or the concept's true words when
    `words` is set). colour/shape: the share of the fidelity prompt's images with just that attribute right."""
    shape, colour = concept
    subject, new = (words if words else "<*>"), world().new_context
    out = {}
    for key, background in (("fidelity", None), ("editability", new)):
        pred = classify(backend, world().subject_prompt(subject, background), None if words else vectors, n, seed)
        ok = [s == shape and c == colour and (key == "fidelity" or b == new)
              for s, c, b in zip(pred["shape"], pred["colour"], pred["background"])]
        out[key] = sum(ok) / n
        if key == "fidelity":
            out["colour"] = sum(c == colour for c in pred["colour"]) / n
            out["shape"] = sum(s == shape for s in pred["shape"]) / n
        else:  # does the background instruction get through at all, whatever the subject?
            out["new_background"] = sum(b == new for b in pred["background"]) / n
    return out


def write_json(path, result: dict) -> None:
    """Results are rewritten after every run: atomically, so a run killed mid-write keeps the earlier ones."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, json.dumps(result, indent=1).encode(), overwrite=True)


def gfti_curve(backend, state, budget, concept, args):
    per_gen = state.config.popsize * state.config.samples_per_candidate
    start_rows = state.init_info.get("init_forward_rows", 0)  # the start is part of every budget
    points, search_seconds = [], 0.0
    for frac in FRACTIONS:
        target = max(1, (int(budget * frac) - start_rows) // per_gen)
        t0 = time.perf_counter()
        state = run_generations(state, backend, target - state.generation)
        search_seconds += time.perf_counter() - t0
        t0 = time.perf_counter()
        vectors, report = final_vectors(state, backend)
        # A run stopped here would pay for this one final choice (and polish), not for the earlier points' ones.
        seconds = search_seconds + time.perf_counter() - t0
        points.append({"rows": start_rows + state.forward_rows, "start_rows": start_rows,
                       "seconds": round(seconds, 2),
                       "holdout_loss": report["holdout_loss"][report["chosen"]],
                       **{k: report[k] for k in ("polish", "polish_rows") if k in report},
                       "norm": float(vectors["clip_l"].norm(dim=-1).max()),
                       **measure(backend, vectors, concept, args.images, args.eval_seed)})
    return points


def gradient_curve(backend, data, init, budget, concept, args, seed, basis=None):
    """Gradient TI at the same forward-equivalent budget: a step's backward pass counts as `grad_cost` − 1
    forwards (2 by default), so it gets budget / grad_cost rows."""
    points, steps_total = [], budget // (args.grad_batch * args.grad_cost)
    marks = {max(1, int(steps_total * f)) for f in FRACTIONS}
    rec = {}

    def on_step(step, vec, rows, seconds):
        if step in marks:
            rec[step] = (vec, rows, seconds)

    gradient_ti(backend, data, init, steps=steps_total, batch=args.grad_batch, lr=args.grad_lr, seed=seed,
                basis=basis, on_step=on_step)
    for step in sorted(rec):
        vec, rows, seconds = rec[step]
        points.append({"rows": rows * args.grad_cost, "forward_rows": rows, "seconds": round(seconds, 2),
                       "norm": float(vec.norm(dim=-1).max()),
                       **measure(backend, {"clip_l": vec}, concept, args.images, args.eval_seed)})
    return points


def original_space(state, tables, dim=256, popsize=20):
    """GF-TI's recipe on top of our init: orthonormal PCA directions (a unit step has norm 1, not a token's
    spread), sigma 1, popsize 20, e0 forced to unit norm with the vocabulary mean added, fresh noise per
    candidate (the four places where the original code departs from
    what a textual-inversion search needs; docs/engine.md lists them)."""
    bases, origin = {}, {}
    for enc, table in tables.items():
        centred = table - table.mean(0)
        _, _, vh = torch.linalg.svd(centred, full_matrices=False)
        bases[enc] = vh[:dim].float()
        e0 = state.subspace.origin[enc]
        origin[enc] = e0 / e0.norm(dim=-1, keepdim=True) + table.mean(0)
    subspace = Subspace("pca", bases, origin)
    cfg = dataclasses.replace(state.config, popsize=popsize, sigma=1.0, subspace_dim=dim, optimizer="cma",
                              common_random_numbers=False)
    spec = OptimizerSpec(cfg.optimizer, subspace.dim, popsize, cfg.sigma, cfg.seed)
    return dataclasses.replace(state, config=cfg, subspace=subspace, opt_spec=spec,
                               opt_fitness=np.zeros((0, popsize)), live=None)


def parse_variant(name: str) -> tuple[dict, dict]:
    """"gfti:norm_limit=1.5,masks=1,budget=12288" -> (config overrides typed by the config's defaults,
    benchmark options).

    masks=1 passes the generator's foreground masks, as a user's alpha channel would; budget=N gives this row
    its own forward-row budget (e.g. the rows GFTI fits into gradient TI's wall time); captions=plain keeps
    the variant's start (e.g. scored on auto-context captions) but trains on the plain captions; a gradient-ti
    row starts from the variant's own start with space=start (full space) or space=gfti (confined to the
    variant's GFTI search subspace), instead of the plain-caption init."""
    _, _, spec = name.partition(":")
    defaults = InversionConfig()
    overrides, options = {}, {"masks": False, "budget": None, "space": "full", "captions": "own"}
    for item in filter(None, spec.split(",")):
        key, _, raw = item.partition("=")
        if key == "masks":
            options["masks"] = raw == "1"
        elif key == "budget":
            options["budget"] = int(raw)
        elif key in ("space", "captions"):
            allowed = {"space": ("full", "start", "gfti"), "captions": ("own", "plain")}[key]
            if raw not in allowed:  # a typo must not silently measure the default row under another name
                raise ValueError(f"{key}={raw!r} in {name!r}: use one of {allowed}")
            options[key] = raw
        else:
            kind = type(getattr(defaults, key))  # AttributeError names an unknown field
            overrides[key] = raw.lower() in ("1", "true", "yes") if kind is bool else kind(raw)
    return overrides, options


def concept_mask_tensor(concept, seed):
    concept_masks = world().module("concepts").concept_masks
    return torch.stack([torch.from_numpy(np.asarray(m, dtype="float32") / 255)[None]
                        for m in concept_masks(concept, n=6, seed=seed)])


def run_concept(backend, tables, concept, seed, args):
    images = concept_tensor(concept, seed)
    words, phrases = str(world().init_words), str(world().context_phrases)
    base = dataclasses.replace(InversionConfig(), seed=seed, token="tok", init_words=words, context_phrases=phrases)
    name = f"{concept[1]} {concept[0]}"
    result = {"concept": name, "seed": seed, "world": world().name}
    plain = start_run(backend, dataclasses.replace(base, auto_context=False), images)
    context = start_run(backend, dataclasses.replace(base, auto_context=True), images)
    result["context_phrases"] = context.init_info.get("context")
    result["init_info"] = plain.init_info
    init = plain.subspace.origin
    result["init"] = measure(backend, init, concept, args.images, args.eval_seed)
    true_words = (f"a {name}" if world().name == "shapes" else f"{concept[1]}, {concept[0]}")
    result["true-words"] = measure(backend, None, concept, args.images, args.eval_seed, words=true_words)
    runs = {"gfti": lambda: gfti_curve(backend, plain, args.budget, concept, args),
            "gfti+context": lambda: gfti_curve(backend, context, args.budget, concept, args),
            "seed-faithful": lambda: gfti_curve(backend, original_space(plain, tables), args.budget, concept, args),
            "gradient-ti": lambda: gradient_curve(backend, plain.data, init["clip_l"], args.budget, concept, args,
                                                  seed),
            "gradient-ti+context": lambda: gradient_curve(backend, context.data, init["clip_l"], args.budget,
                                                          concept, args, seed)}
    plain_cfg = dataclasses.replace(base, **PLAIN, init_text=plain_init_word(concept))
    runs["plain"] = lambda: gfti_curve(backend, start_run(backend, plain_cfg, images), args.budget, concept, args)
    runs["defaults"] = lambda: gfti_curve(backend, start_run(backend, base, images), args.budget, concept, args)
    for name in args.methods.split(";"):
        if name.startswith(("gfti:", "gradient-ti:")):  # a variant, e.g. "gfti:auto_context=1,masks=1"
            overrides, options = parse_variant(name)
            masks = concept_mask_tensor(concept, seed) if options["masks"] else None
            budget = options["budget"] or args.budget
            variant = start_run(backend, dataclasses.replace(base, **overrides), images, masks=masks)
            if options["captions"] == "plain":  # the variant's start, trained on plain (no-context) prompts
                plain_data = build_training_set(backend, images, None, variant.config, masks)
                variant = dataclasses.replace(variant, data=plain_data)
            result.setdefault("variant_init", {})[name] = measure(backend, variant.subspace.origin, concept,
                                                                  args.images, args.eval_seed)
            result.setdefault("variant_init_info", {})[name] = variant.init_info
            if name.startswith("gfti:"):
                result[name] = gfti_curve(backend, variant, budget, concept, args)
            elif options["space"] in ("start", "gfti"):  # from the variant's start, optionally in its subspace
                basis = variant.subspace.bases["clip_l"] if options["space"] == "gfti" else None
                result[name] = gradient_curve(backend, variant.data, variant.subspace.origin["clip_l"], budget,
                                              concept, args, seed, basis=basis)
            else:  # gradient TI on the same training set (captions, mask weights) from the same init
                result[name] = gradient_curve(backend, variant.data, init["clip_l"], budget, concept, args, seed)
            result.setdefault("variant_context", {})[name] = variant.init_info.get("context")
        else:
            result[name] = runs[name]()
        log.info("%s %s: %s", result["concept"], name, result[name][-1])
    return result


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--concepts", type=int, default=6)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--first-seed", type=int, default=0, help="seeds run: first-seed .. first-seed+seeds-1")
    p.add_argument("--budget", type=int, default=16384, help="UNet forward rows per method")
    p.add_argument("--images", type=int, default=16, help="generated images per measurement")
    p.add_argument("--eval-seed", type=int, default=1234)
    p.add_argument("--grad-batch", type=int, default=4)
    p.add_argument("--grad-lr", type=float, default=5e-3)
    p.add_argument("--grad-cost", type=int, default=3,
                   help="forward-equivalents per gradient TI row (forward + backward = 3)")
    p.add_argument("--world", choices=("shapes", "tags"), default="shapes", help="measuring world (toyworld/worlds.py)")
    p.add_argument("--out", default="benchmarks/results/toy")
    p.add_argument("--methods", default="gfti;gfti+context;seed-faithful;gradient-ti;gradient-ti+context",
                   help="';'-separated; 'gfti:field=value,...' runs GFTI with those config fields changed")
    p.add_argument("--first-concept", type=int, default=0)
    p.add_argument("--model-dir", default="", help="toy model folder (default: the shipped one)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    from toyworld import load_pipeline
    from toyworld.worlds import get_world

    global WORLD
    WORLD = get_world(args.world)
    HELD_OUT_CONCEPTS = WORLD.held_out
    backend = DiffusersBackend(load_pipeline(model_dir=Path(args.model_dir) if args.model_dir else WORLD.model_dir),
                               model_name=f"gfti-toy-{WORLD.name}")
    tables = {e.name: backend.token_table(e.name) for e in backend.encoders}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for concept in HELD_OUT_CONCEPTS[args.first_concept: args.first_concept + args.concepts]:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            results.append(run_concept(backend, tables, concept, seed, args))
            log.info("%s", json.dumps(results[-1]))
            write_json(out / "results.json", {"args": vars(args), "results": results})


if __name__ == "__main__":
    main()
