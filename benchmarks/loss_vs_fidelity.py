"""Does the denoising loss GFTI minimises order the toy benchmark's fidelity? A diagnostic, not a benchmark row.

For one concept and seed: run GFTI's defaults and gradient TI (same init, same images, 4096 forward rows each),
then score points on the straight line between their final vectors, e(a) = (1 − a)·GFTI + a·gradient TI, with
(1) the held-out denoising loss on a large fixed draw, under GFTI's auto-context captions and under the plain
captions gradient TI trained on, (2) the benchmark's fidelity and (3) the word-profile distance of
`word_plane.py` (what the vector draws, scored by the model's own words; no classifier). If gradient TI's end
has the lower loss the search stopped short; if the loss is flat or lower at GFTI's end while fidelity rises
toward gradient TI's, the objective (not the search) is what limits GFTI.

    python benchmarks/loss_vs_fidelity.py --concept 2 --seed 0 --out benchmarks/results/v19_line_c2s0.json
"""
from __future__ import annotations

import dataclasses
import logging

import torch

from diagnostics import concept_args, heldout_loss, toy_setup  # diagnostics puts the repository on sys.path
from toy_bench import concept_tensor, measure, write_json
from gfti_core.engine import final_vectors, run_generations, start_run
from gradient_ti import gradient_ti
from word_plane import concept_word_vectors, word_profile

log = logging.getLogger("loss_vs_fidelity")
ALPHAS = (-0.5, 0.0, 0.25, 0.5, 0.75, 1.0, 1.5)


def main() -> None:
    def options(p):
        p.add_argument("--budget", type=int, default=4096)
        p.add_argument("--samples", type=int, default=256, help="held-out draws per loss")
        p.add_argument("--images", type=int, default=32, help="generated images per fidelity")

    args = concept_args(options)
    from toyworld.concepts import HELD_OUT_CONCEPTS, concept_words

    concept = HELD_OUT_CONCEPTS[args.concept]
    backend, base = toy_setup(args.seed)
    images = concept_tensor(concept, args.seed)
    plain = start_run(backend, dataclasses.replace(base, auto_context=False), images)
    state = start_run(backend, base, images)
    state = run_generations(state, backend, args.budget // (base.popsize * base.samples_per_candidate))
    es, _ = final_vectors(state, backend)
    grad = gradient_ti(backend, plain.data, plain.subspace.origin["clip_l"], steps=args.budget // 4, batch=4,
                       seed=args.seed)
    line = torch.stack([(1 - a) * es["clip_l"] + a * grad for a in ALPHAS])
    loss_context = heldout_loss(backend, state.data, line, args.samples)
    loss_plain = heldout_loss(backend, plain.data, line, args.samples)
    word_vectors = concept_word_vectors(backend)
    train_profile = word_profile(backend, images, word_vectors)
    rows = []
    for a, vec, lc, lp in zip(ALPHAS, line, loss_context, loss_plain):
        m = measure(backend, {"clip_l": vec}, concept, args.images, 1234)
        made = backend.generate("a photo of <*>", {"clip_l": vec}, num_images=8, seed=555, steps=20, guidance=4.0)
        distance = float((word_profile(backend, made, word_vectors) - train_profile).abs().sum())
        rows.append({"alpha": a, "loss_context_captions": lc, "loss_plain_captions": lp,
                     "profile_distance": round(distance, 4), "norm": round(float(vec.norm(dim=-1).max()), 3), **m})
        log.info("%s", rows[-1])
    result = {"concept": concept_words(concept), "seed": args.seed, "budget": args.budget, "samples": args.samples,
              "images": args.images, "gfti_words": state.init_info.get("subspace_words"), "line": rows}
    write_json(args.out, result)


if __name__ == "__main__":
    main()
