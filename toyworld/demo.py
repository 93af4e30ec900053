"""`make demo`: invert the shipped example concept (6 images of a purple star — a shape/colour pair for which
the toy model's vocabulary has no single word) into a new token on the embedded toy model, on CPU, and show
the result.

Writes into --out: the embedding, the run state, its loss-curve PNG and a grid of images made with the learned
token next to images made from the initialisation and the learned token in a new context ("on a green
background", a background none of the six images has); prints fidelity and editability (toy classifier)
before and after.
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import torch

from gfti_core.backend import PLACEHOLDER
from gfti_core.backends.diffusers_backend import DiffusersBackend
from gfti_core.chart import image_grid, tensor_to_pil
from gfti_core.config import InversionConfig
from gfti_core.engine import run_generations, start_run
from gfti_core.finish import Target, finish_run
from gfti_core.holdout import describe_early_stop, describe_holdout
from gfti_core.images import load_image_folder
from gfti_core.safe_io import atomic_write

log = logging.getLogger("gfti.demo")


EDIT = " on a green background"  # no example image has a green background: a new context for the token


def _share_right(images: torch.Tensor, concept: tuple[str, str], background: str | None = None) -> float:
    """Share of images whose shape and colour (and background, when given) the toy classifier finds right."""
    from .classifier import predict

    pred = predict(images)
    hits = [s == concept[0] and c == concept[1] and background in (None, b)
            for s, c, b in zip(pred["shape"], pred["colour"], pred["background"])]
    return sum(hits) / len(images)


def _progress(report) -> None:
    if report.generation % 10 == 0 or report.generation == report.target:
        log.info("generation %d/%d  best-so-far %.5f  mean %.5f", report.generation, report.target,
                 report.best_ever, report.mean)


def run(out: Path, generations: int, preview: int) -> None:
    from . import load_pipeline
    from .concepts import DEMO_CONCEPT, EXAMPLE_DIR, concept_words

    started = time.perf_counter()
    backend = DiffusersBackend(load_pipeline(), model_name="gfti-toy")
    images = load_image_folder(EXAMPLE_DIR, 64)
    toy = Path(EXAMPLE_DIR).parent
    cfg = InversionConfig(token="gfti-demo", generations=generations, init_words=str(toy / "concept_words.txt"),
                          context_phrases=str(toy / "context_phrases.txt"))
    log.info("concept: %s (%d images in %s); model: the embedded toy model", concept_words(DEMO_CONCEPT),
             images.images.shape[0], EXAMPLE_DIR)
    state = start_run(backend, cfg, images.images)
    log.info("init: %s", state.init_info)
    state = run_generations(state, backend, cfg.generations, _progress)
    log.info("%s", describe_early_stop(cfg, state.history) or describe_holdout(state.history))
    out.mkdir(parents=True, exist_ok=True)
    done = finish_run(state, backend, Target(out / "gfti-demo.safetensors", overwrite=True, host="demo", chart=True,
                                             state_path=out / "gfti-demo.state.safetensors"))
    vectors = done.embedding.vectors
    prompt = f"a photo of {PLACEHOLDER}"
    learned = backend.generate(prompt, vectors, num_images=preview, seed=1)
    init = backend.generate(prompt, state.subspace.origin, num_images=preview, seed=1)
    edited = backend.generate(prompt + EDIT, vectors, num_images=preview, seed=1)
    init_edited = backend.generate(prompt + EDIT, state.subspace.origin, num_images=preview, seed=1)
    grid = image_grid([tensor_to_pil(learned), tensor_to_pil(init), tensor_to_pil(edited)],
                      ["learned token: a photo of <gfti-demo>", "initialisation",
                       "learned token:" + EDIT])
    atomic_write(out / "samples.png", lambda tmp: grid.resize((grid.width * 2, grid.height * 2)).save(
        tmp, format="PNG"), overwrite=True)
    # The concept's real words show what the model can draw at best (no token involved).
    true_words = f"a photo of a {concept_words(DEMO_CONCEPT)}"
    words = backend.generate(true_words, None, num_images=preview, seed=1)
    words_edited = backend.generate(true_words + EDIT, None, num_images=preview, seed=1)
    fidelity = [_share_right(x, DEMO_CONCEPT) for x in (init, learned, words)]
    editability = [_share_right(x, DEMO_CONCEPT, "green") for x in (init_edited, edited, words_edited)]
    for name, (before, after, ceiling) in (("fidelity", fidelity), ("editability", editability)):
        print(f"{name} ({concept_words(DEMO_CONCEPT)}): init {before:.2f} -> learned {after:.2f}  "
              f"(the true words: {ceiling:.2f}; {preview} images each)")
    print(f"{state.forward_rows} UNet rows, {time.perf_counter() - started:.0f} s")
    print(f"wrote {out}/gfti-demo.safetensors, {done.chart.name}, samples.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/demo")
    parser.add_argument("--generations", type=int, default=InversionConfig().generations)
    parser.add_argument("--preview", type=int, default=8)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(2)
    run(Path(args.out), args.generations, args.preview)


if __name__ == "__main__":
    main()
