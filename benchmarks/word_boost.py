"""Is GFTI's token one word short of drawing the concept, and can the model itself say which word? A diagnostic.

On cyan triangle s1 the defaults' token draws white triangles in half the bare-prompt images; adding 2 x the word
"cyan" to the learned vector draws cyan in 16 of 16 while the held-out loss moves by 0.007 (auto-context
captions) and 0.0008 (plain captions): the objective cannot see the colour. This probe asks whether a criterion
that looks at what the token *draws* can: after the defaults' search (4096 rows), the candidates are the learned
vector v and v + a·w for the two words that best describe the training images (the diffusion model as a
zero-shot classifier over the init's ranked words, `restart_choice.per_image_profiles`) and a in --scales; each is
scored by restart_choice's per-image profile criteria on 8 generated images and by the benchmark's fidelity
(32 images) and by the held-out loss (256 fixed draws) on GFTI's auto-context captions and on plain ones. It
reports the fidelity of v, of each criterion's pick, and of the best candidate.

    python benchmarks/word_boost.py --concept 2 --seed 1 --out benchmarks/results/v26_boost/c2s1.json
"""
from __future__ import annotations

import dataclasses
import logging

from diagnostics import concept_args, heldout_loss, save_result, toy_setup  # diagnostics puts the repository on sys.path
from restart_choice import PROFILE_IMAGES, criteria, per_image_profiles, profile_words
from toy_bench import concept_tensor, measure
from gfti_core.engine import final_vectors, run_generations, start_run
from gfti_core.polish import polish_candidates

log = logging.getLogger("word_boost")


def main() -> None:
    def options(p):
        p.add_argument("--budget", type=int, default=4096)
        p.add_argument("--scales", default="1,2", help="comma-separated multiples of a word vector to add")

    args = concept_args(options)
    from toyworld.concepts import HELD_OUT_CONCEPTS

    concept = HELD_OUT_CONCEPTS[args.concept]
    backend, cfg = toy_setup(args.seed)
    images = concept_tensor(concept, args.seed)
    state = start_run(backend, cfg, images)
    plain = start_run(backend, dataclasses.replace(cfg, auto_context=False), images).data
    words, word_vectors = profile_words(backend, state)
    train = per_image_profiles(backend, images, word_vectors)
    top2 = train.mean(0).argsort()[:2].tolist()
    state = run_generations(state, backend, args.budget // (cfg.popsize * cfg.samples_per_candidate))
    learned = final_vectors(state, backend)[0]["clip_l"]
    # The engine's own polish candidates (gfti_core/polish.py), here along the words the profile ranks first.
    names, moved = polish_candidates({"clip_l": learned}, {"clip_l": word_vectors[top2, 0]}, [words[i] for i in top2],
                                     scales=[float(s) for s in args.scales.split(",")])
    stacked = moved["clip_l"]
    candidates = dict(zip(["learned"] + names[1:], stacked))
    losses = zip(heldout_loss(backend, state.data, stacked), heldout_loss(backend, plain, stacked))
    rows = []
    for (name, vec), (loss_context, loss_plain) in zip(candidates.items(), losses):
        made = backend.generate("a photo of <*>", {"clip_l": vec}, num_images=PROFILE_IMAGES, seed=555, steps=20,
                                guidance=4.0)
        rows.append({"candidate": name, "loss_context": round(loss_context, 5), "loss_plain": round(loss_plain, 5),
                     **criteria(train, per_image_profiles(backend, made, word_vectors)),
                     **measure(backend, {"clip_l": vec}, concept, 32, 1234)})
        log.info("%s", rows[-1])
    picks = {name: max(rows, key=lambda r: sign * r[name])
             for name, sign in (("image_l1", -1), ("mean_l1", -1), ("top2", 1), ("loss_context", -1),
                                ("loss_plain", -1))}
    result = {"concept": f"{concept[1]} {concept[0]}", "seed": args.seed,
              "train_top2": [words[i] for i in top2], "learned": rows[0]["fidelity"],
              "best": max(r["fidelity"] for r in rows),
              "picks": {k: {"candidate": r["candidate"], "fidelity": r["fidelity"], "editability": r["editability"]}
                        for k, r in picks.items()},
              "candidates": rows}
    save_result(args.out, result, "candidates")


if __name__ == "__main__":
    main()
