"""Where does a GFTI token lose its colour: in the vector, or in the prompt? A diagnostic, not a benchmark row.

GFTI trains on auto-context captions ("a photo of <tok> on a black background"); the benchmark's fidelity prompt
names no background ("a photo of <tok>"). For one concept and seed this runs GFTI's defaults (4096 rows) and
classifies 16 images of the learned token under the fidelity prompt and under the same prompt with a background
named: the training images' backgrounds and green (the editability prompt's). If the token draws the concept
whenever a background is named and fails only on the bare prompt, what is missing is in the prompt the token
is tested with, not in what the search found. `--method gradient-ti` measures the benchmark's gradient TI row
(plain captions, from the plain-caption start, same rows) the same way.

    python benchmarks/named_context.py --concept 2 --seed 0 --out benchmarks/results/v25_named/c2s0.json
"""
from __future__ import annotations

import logging
from collections import Counter

from diagnostics import concept_args, save_result, toy_setup  # diagnostics puts the repository on sys.path
from toy_bench import classify, concept_tensor
from gfti_core.engine import final_vectors, run_generations, start_run
from gradient_ti import gradient_ti

log = logging.getLogger("named_context")
SUFFIXES = ("", " on a black background", " on a gray background", " on a navy background",
            " on a green background")


def classified(backend, vectors, prompt: str, concept, images: int, seed: int) -> dict:
    """Share of images with the concept's shape and colour, and what was drawn instead."""
    shape, colour = concept
    pred = classify(backend, prompt, vectors, images, seed)
    right = sum(s == shape and c == colour for s, c in zip(pred["shape"], pred["colour"]))
    return {"prompt": prompt, "fidelity": right / images,
            **{key: dict(Counter(pred[key]).most_common(3)) for key in ("colour", "shape", "background")}}


def main() -> None:
    def options(p):
        p.add_argument("--budget", type=int, default=4096)
        p.add_argument("--images", type=int, default=16)
        p.add_argument("--eval-seed", type=int, default=1234, help="the benchmark's evaluation seed")
        p.add_argument("--method", choices=("gfti", "gradient-ti"), default="gfti")

    args = concept_args(options)
    from toyworld.concepts import HELD_OUT_CONCEPTS, concept_words

    concept = HELD_OUT_CONCEPTS[args.concept]
    backend, cfg = toy_setup(args.seed, auto_context=args.method == "gfti")
    state = start_run(backend, cfg, concept_tensor(concept, args.seed))
    if args.method == "gfti":
        state = run_generations(state, backend, args.budget // (cfg.popsize * cfg.samples_per_candidate))
        vectors, _ = final_vectors(state, backend)
    else:  # toy_bench's gradient-ti row: plain captions, the plain-caption start, batch 4
        vectors = {"clip_l": gradient_ti(backend, state.data, state.subspace.origin["clip_l"],
                                         steps=args.budget // 4, batch=4, seed=args.seed)}
    rows = [classified(backend, vectors, f"a photo of <*>{suffix}", concept, args.images, args.eval_seed)
            for suffix in SUFFIXES]
    for row in rows:
        log.info("%s", row)
    save_result(args.out, {"concept": concept_words(concept), "seed": args.seed, "method": args.method,
                           "context": state.init_info.get("context"), "prompts": rows}, "prompts")


if __name__ == "__main__":
    main()
