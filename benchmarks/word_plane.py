"""Why the denoising loss does not order fidelity: one vector a·colour + b·shape, scored three ways. A diagnostic.

For one toy concept and seed (the benchmark's 6 images), every point of a 4 × 4 grid of weights (a, b) on the
concept's own two words, summed into ONE token vector, gets
(1) the held-out denoising loss (256 fixed draws) under the auto-context captions GFTI trains on and under
    plain captions;
(2) the benchmark's fidelity (16 images, classifier);
(3) a word-profile distance that needs no classifier: 8 images are generated with the vector, and the model
    itself scores each of toyworld's 20 concept words on them ("a photo of <word>", 4 denoising draws per
    image) — the diffusion model as a zero-shot classifier. The profile (mean loss per word, centred) of the
    generated images is compared (L1) with the same profile of the training images.
It prints each point and the Spearman rank correlation of fidelity with −loss and with −distance.

    python benchmarks/word_plane.py --concept 4 --seed 0 --out benchmarks/results/v22_plane/c4s0.json
"""
from __future__ import annotations

import dataclasses
import logging

import torch

from diagnostics import concept_args, heldout_loss, save_result, toy_setup  # diagnostics puts the repository on sys.path
from toy_bench import ROOT, concept_tensor, measure
from gfti_core.engine import start_run
from gfti_core.objective import Evaluator, TrainingSet, draw_samples, generation_generator

log = logging.getLogger("word_plane")
WEIGHTS = (0.5, 1.0, 2.0, 3.0)
PROFILE_DRAWS = 4  # denoising draws per image and word


def concept_words_list() -> list[str]:
    text = (ROOT / "toyworld" / "concept_words.txt").read_text()
    return [w.strip() for w in text.splitlines() if w.strip() and not w.startswith("#")]


def concept_word_vectors(backend) -> torch.Tensor:
    """toyworld's concept words as single-vector candidates [W, 1, D], in concept_words_list() order."""
    table = backend.token_table("clip_l")
    return torch.stack([table[backend.word_ids(w, "clip_l")[0]] for w in concept_words_list()])[:, None]


def plane_vectors(backend, concept) -> tuple[list[tuple[float, float]], torch.Tensor]:
    """The 4 × 4 grid of weights (a, b) and its vectors a·colour + b·shape of the concept's own words [16, 1, D]."""
    shape, colour = concept
    word = dict(zip(concept_words_list(), concept_word_vectors(backend)[:, 0]))
    grid = [(a, b) for a in WEIGHTS for b in WEIGHTS]
    return grid, torch.stack([a * word[colour] + b * word[shape] for a, b in grid])[:, None]


def word_profile(backend, images: torch.Tensor, word_vectors: torch.Tensor) -> torch.Tensor:
    """Mean denoising loss of each word (as the prompt's only token) on `images`, centred over the words [W]."""
    latents = backend.encode_images(images.to(backend.device)).float().cpu()
    data = TrainingSet(latents, [["a photo of <*>"]] * latents.shape[0])
    draw = draw_samples(data, PROFILE_DRAWS * latents.shape[0], (0, 999), generation_generator(99, 0, stream=3))
    with torch.no_grad():
        loss = Evaluator(backend, data, 0).population_loss({"clip_l": word_vectors}, draw)
    return loss - loss.mean()


def main() -> None:
    args = concept_args()
    from scipy.stats import spearmanr
    from toyworld.concepts import HELD_OUT_CONCEPTS

    shape, colour = HELD_OUT_CONCEPTS[args.concept]
    backend, base = toy_setup(args.seed)
    names, word_vectors = concept_words_list(), concept_word_vectors(backend)
    images = concept_tensor((shape, colour), args.seed)
    context = start_run(backend, base, images)
    plain = start_run(backend, dataclasses.replace(base, auto_context=False), images)
    grid, vectors = plane_vectors(backend, (shape, colour))
    loss_context, loss_plain = heldout_loss(backend, context.data, vectors), heldout_loss(backend, plain.data, vectors)
    train_profile = word_profile(backend, images, word_vectors)
    rows = []
    for (a, b), vec, lc, lp in zip(grid, vectors, loss_context, loss_plain):
        made = backend.generate("a photo of <*>", {"clip_l": vec}, num_images=8, seed=555, steps=20, guidance=4.0)
        profile = word_profile(backend, made, word_vectors)
        rows.append({"colour_weight": a, "shape_weight": b, "loss_context": round(lc, 5), "loss_plain": round(lp, 5),
                     "profile_distance": round(float((profile - train_profile).abs().sum()), 4),
                     "profile_top2": [names[i] for i in profile.argsort()[:2].tolist()],
                     **measure(backend, {"clip_l": vec}, (shape, colour), 16, 1234)})
        log.info("%s", rows[-1])
    fidelity = [r["fidelity"] for r in rows]
    result = {"concept": f"{colour} {shape}", "seed": args.seed,
              "train_profile_top4": [names[i] for i in train_profile.argsort()[:4].tolist()],
              "spearman_fidelity_vs_minus_loss_context": spearmanr(fidelity, [-x for x in loss_context]).correlation,
              "spearman_fidelity_vs_minus_loss_plain": spearmanr(fidelity, [-x for x in loss_plain]).correlation,
              "spearman_fidelity_vs_minus_profile_distance":
                  spearmanr(fidelity, [-r["profile_distance"] for r in rows]).correlation,
              "grid": rows}
    save_result(args.out, result, "grid")


if __name__ == "__main__":
    main()
