"""Would a contrastive loss order fidelity where the plain denoising loss does not? A diagnostic.

Classifier-free guidance samples images the token's *implicit classifier* favours, log p(x | tok) − log p(x),
over all images — not only over the training images the denoising loss looks at. A vector that mixes "cyan" and
"triangle" can explain the training images well and still explain cyan circles even better, and then draw those.
So score each vector also on negatives: images the model draws from each of the concept's single words
("a photo of cyan", "a photo of triangle"; the engine probe of commit 70cb3ff used the init's two best words,
BENCHMARKS.md v15). The criterion L_pos − λ·L_neg rewards a vector that explains the training images *and not*
the one-attribute images.

Scores the 4 × 4 word plane of `word_plane.py` (against the fidelity that script recorded: the plane is rebuilt
from the words) and the GFTI ↔ gradient TI line of `loss_vs_fidelity.py` (both methods re-run, fidelity measured
on 32 images per point) and prints Spearman correlations per λ.

    python benchmarks/contrast_check.py --concept 2 --seed 0 --out benchmarks/results/v23_contrast/c2s0.json
"""
from __future__ import annotations

import dataclasses
import json
import logging

import torch

from diagnostics import concept_args, heldout_loss, toy_setup  # diagnostics puts the repository on sys.path
from toy_bench import ROOT, concept_tensor, measure, write_json
from gfti_core.engine import final_vectors, run_generations, start_run
from gfti_core.objective import TrainingSet
from gradient_ti import gradient_ti
from loss_vs_fidelity import ALPHAS
from word_plane import WEIGHTS, concept_word_vectors, concept_words_list

log = logging.getLogger("contrast_check")
LAMBDAS = (0.0, 0.25, 0.5, 1.0, 2.0)
NEGATIVES_PER_WORD = 8


def negatives(backend, word_vectors: list[torch.Tensor]) -> TrainingSet:
    """Images drawn from each single word, captioned plainly, as one training set."""
    made = [backend.generate("a photo of <*>", {"clip_l": w}, num_images=NEGATIVES_PER_WORD, seed=777 + i,
                             steps=20, guidance=4.0) for i, w in enumerate(word_vectors)]
    latents = backend.encode_images(torch.cat(made).to(backend.device)).float().cpu()
    return TrainingSet(latents, [["a photo of <*>"]] * latents.shape[0])


def spearman_table(fidelity, pos_context, pos_plain, neg) -> dict:
    from scipy.stats import spearmanr

    out = {}
    for name, pos in (("context", pos_context), ("plain", pos_plain)):
        for lam in LAMBDAS:
            score = [-(p - lam * n) for p, n in zip(pos, neg)]
            out[f"{name}_lambda{lam}"] = round(float(spearmanr(fidelity, score).correlation), 3)
    return out


def score(backend, sets, vectors) -> dict:
    return {k: heldout_loss(backend, data, vectors) for k, data in sets.items()}


def main() -> None:
    args = concept_args()
    from toyworld.concepts import HELD_OUT_CONCEPTS

    concept = HELD_OUT_CONCEPTS[args.concept]
    shape, colour = concept
    backend, base = toy_setup(args.seed)
    word = dict(zip(concept_words_list(), concept_word_vectors(backend)[:, 0]))
    images = concept_tensor(concept, args.seed)
    context = start_run(backend, base, images)
    plain = start_run(backend, dataclasses.replace(base, auto_context=False), images)
    sets = {"context": context.data, "plain": plain.data, "negative": negatives(backend, [word[colour], word[shape]])}

    plane = torch.stack([a * word[colour] + b * word[shape] for a in WEIGHTS for b in WEIGHTS])[:, None]
    plane_fid = [r["fidelity"] for r in json.loads(
        (ROOT / f"benchmarks/results/v22_plane/c{args.concept}s{args.seed}.json").read_text())["grid"]]
    plane_loss = score(backend, sets, plane)

    state = run_generations(context, backend, 4096 // (base.popsize * base.samples_per_candidate))
    es, _ = final_vectors(state, backend)
    grad = gradient_ti(backend, plain.data, plain.subspace.origin["clip_l"], steps=1024, batch=4, seed=args.seed)
    line = torch.stack([(1 - a) * es["clip_l"] + a * grad for a in ALPHAS])
    # measured here, not read from v22_line: gradient TI's end is not bit-reproducible across processes
    line_fid = [measure(backend, {"clip_l": vec}, concept, 32, 1234)["fidelity"] for vec in line]
    line_loss = score(backend, sets, line)

    result = {"concept": f"{colour} {shape}", "seed": args.seed,
              "plane": {"fidelity": plane_fid, **plane_loss,
                        "spearman": spearman_table(plane_fid, *plane_loss.values())},
              "line": {"fidelity": line_fid, **line_loss, "spearman": spearman_table(line_fid, *line_loss.values())}}
    log.info("plane %s", result["plane"]["spearman"])
    log.info("line %s", result["line"]["spearman"])
    write_json(args.out, result)


if __name__ == "__main__":
    main()
