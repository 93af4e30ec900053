"""Can the model itself tell which of several GFTI searches draws the concept? A diagnostic, not a benchmark row.

GFTI's search is ~2.5x faster than gradient TI on this machine, so in gradient TI's wall time it could run
restarts (searches that differ only in the ES seed) and keep one. v16 found that the held-out loss cannot
choose: three searches end within 0.0001 of each other and draw the concept 0.84 / 0.66 / 0.25 of the time.
v14's word-profile distance (the diffusion model as a zero-shot classifier, averaged over 8 generated images)
missed tokens that draw the colour right in only some images. This scores each generated image on its own:

* per-image profile: 8 images are generated with the token (the bare prompt "a photo of <tok>"); on each, the
  init's best-ranked words are scored by their denoising loss as the prompt's only token ("a photo of <word>",
  the same draws for every word, t in 100..500 where v12 found shape and colour told apart); the loss per word,
  centred per image, is that image's profile. The training images get the same profile.
* `image_l1`: mean over generated images of the L1 distance of the image's profile to the training images' mean
  profile; `top2`: share of generated images whose two best words are the training images' two best words;
  `mean_l1`: v14's distance of the averaged profiles, for comparison.

For one concept and seed it runs the defaults with ES seeds S, S+100, S+200 (4096 rows each), measures each
token's fidelity (32 images, the benchmark's classifier and sampler) and each criterion, and says which search
each criterion (and the held-out loss) would keep.

    python benchmarks/restart_choice.py --concept 2 --seed 0 --out benchmarks/results/v26_restarts/c2s0.json
"""
from __future__ import annotations

import dataclasses
import logging

import torch

from diagnostics import concept_args, save_result, toy_setup  # diagnostics puts the repository on sys.path
from toy_bench import concept_tensor, measure
from gfti_core.engine import final_vectors, run_generations, start_run
from gfti_core.init_vectors import ranked_word_vectors
from gfti_core.objective import Draw, Evaluator, TrainingSet, generation_generator

log = logging.getLogger("restart_choice")
PROFILE_WORDS, PROFILE_DRAWS, PROFILE_IMAGES = 12, 6, 8
PROFILE_T = (100, 500)


def per_image_profiles(backend, images: torch.Tensor, word_vectors: torch.Tensor) -> torch.Tensor:
    """[M, W]: each image's denoising loss per word (the same draws for every word), centred over the words."""
    latents = backend.encode_images(images.to(backend.device)).float().cpu()
    m = latents.shape[0]
    gen = generation_generator(77, 0, stream=5)
    idx = torch.arange(m).repeat_interleave(PROFILE_DRAWS)
    draw = Draw(idx, torch.zeros_like(idx), torch.randint(PROFILE_T[0], PROFILE_T[1] + 1, idx.shape, generator=gen),
                torch.randn((idx.shape[0], *latents.shape[1:]), generator=gen))
    data = TrainingSet(latents, [["a photo of <*>"]] * m)
    with torch.no_grad():
        rows = Evaluator(backend, data, 0).row_losses({"clip_l": word_vectors}, draw)  # [W, M·draws]
    loss = rows.view(-1, m, PROFILE_DRAWS).mean(2).T  # [M, W]
    return loss - loss.mean(1, keepdim=True)


def profile_words(backend, state) -> tuple[list[str], torch.Tensor]:
    """The init's PROFILE_WORDS best-ranked words and their vectors as single-vector candidates [W, 1, D]."""
    tables = {"clip_l": backend.token_table("clip_l")}
    return (state.init_info["ranked_words"][:PROFILE_WORDS],
            ranked_word_vectors(backend, tables, state.init_info, PROFILE_WORDS)["clip_l"][:, None])


def criteria(train: torch.Tensor, made: torch.Tensor) -> dict:
    """Lower image_l1 / mean_l1 and higher top2 = the generated images look like the training images."""
    ref = train.mean(0)
    top2 = set(ref.argsort()[:2].tolist())
    return {"image_l1": round(float((made - ref).abs().sum(1).mean()), 4),
            "mean_l1": round(float((made.mean(0) - ref).abs().sum()), 4),
            "top2": round(sum(set(p.argsort()[:2].tolist()) == top2 for p in made) / made.shape[0], 3)}


def main() -> None:
    def options(p):
        p.add_argument("--restarts", type=int, default=3)
        p.add_argument("--budget", type=int, default=4096)

    args = concept_args(options)
    from toyworld.concepts import HELD_OUT_CONCEPTS

    concept = HELD_OUT_CONCEPTS[args.concept]
    backend, base = toy_setup(args.seed)
    images = concept_tensor(concept, args.seed)
    rows, train = [], None
    for es_seed in (args.seed + 100 * r for r in range(args.restarts)):
        state = start_run(backend, dataclasses.replace(base, seed=es_seed), images)
        if train is None:
            words, word_vectors = profile_words(backend, state)
            train = per_image_profiles(backend, images, word_vectors)
        state = run_generations(state, backend, args.budget // (base.popsize * base.samples_per_candidate))
        vectors, report = final_vectors(state, backend)
        made = backend.generate("a photo of <*>", vectors, num_images=PROFILE_IMAGES, seed=555, steps=20,
                                guidance=4.0)
        rows.append({"es_seed": es_seed, "holdout_loss": report["holdout_loss"][report["chosen"]],
                     **criteria(train, per_image_profiles(backend, made, word_vectors)),
                     **measure(backend, vectors, concept, 32, 1234)})
        log.info("%s", rows[-1])
    picks = {name: max(rows, key=lambda r: sign * r[name])["fidelity"]
             for name, sign in (("holdout_loss", -1), ("image_l1", -1), ("mean_l1", -1), ("top2", 1))}
    result = {"concept": f"{concept[1]} {concept[0]}", "seed": args.seed, "words": words,
              "train_top2": [words[i] for i in train.mean(0).argsort()[:2].tolist()],
              "fidelity_of_pick": picks, "best": max(r["fidelity"] for r in rows),
              "first": rows[0]["fidelity"], "runs": rows}
    save_result(args.out, result, "runs")


if __name__ == "__main__":
    main()
