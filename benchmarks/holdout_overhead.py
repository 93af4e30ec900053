"""What the hold-out curve costs and whether it falls: the demo settings (`make demo`: the defaults, 60
generations) on the demo concept and one held-out concept, with holdout_every=0 and the default side by side.

    .venv/bin/python benchmarks/holdout_overhead.py [--generations 60] [--concept triangle/cyan]

Both runs continue one shared start, so their searches are identical (scoring the mean never changes the
optimiser) and the difference in denoiser rows and wall time is the hold-out evaluation alone. The order of
the two runs alternates between concepts so a slower machine phase does not fall on one side only. Prints the
hold-out curve's first and last point next to the per-generation mean's, which follows each generation's draw.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gfti_core.backends.diffusers_backend import DiffusersBackend  # noqa: E402
from gfti_core.config import InversionConfig  # noqa: E402
from gfti_core.engine import run_generations, start_run  # noqa: E402
from gfti_core.holdout import holdout_curve  # noqa: E402
from gfti_core.images import load_image_folder  # noqa: E402


def concept_images(name: str) -> torch.Tensor:
    from toyworld.concepts import EXAMPLE_DIR, concept_images as render

    if name == "demo":
        return load_image_folder(EXAMPLE_DIR, 64).images
    shape, colour = name.split("/")
    pils = render((shape, colour), n=6, seed=0)
    return torch.stack([torch.from_numpy(np.asarray(i, dtype="float32") / 255).permute(2, 0, 1) for i in pils])


def timed_run(start, backend, holdout_every: int, generations: int):
    state = dataclasses.replace(start, config=dataclasses.replace(start.config, holdout_every=holdout_every))
    began = time.perf_counter()
    state = run_generations(state, backend, generations)
    return state, time.perf_counter() - began


def compare(backend, name: str, generations: int, holdout_first: bool) -> None:
    toy = ROOT / "toyworld"
    cfg = InversionConfig(token="gfti-bench", generations=generations, init_words=str(toy / "concept_words.txt"),
                          context_phrases=str(toy / "context_phrases.txt"))
    start = start_run(backend, cfg, concept_images(name))
    start_rows = start.init_info["init_forward_rows"]
    order = (cfg.holdout_every, 0) if holdout_first else (0, cfg.holdout_every)
    runs = {every: timed_run(start, backend, every, generations) for every in order}
    (plain, plain_s), (scored, scored_s) = runs[0], runs[cfg.holdout_every]
    assert np.array_equal(plain.opt_fitness, scored.opt_fitness), "the hold-out evaluation changed the search"
    extra = scored.forward_rows - plain.forward_rows
    gens, losses = holdout_curve(scored.history)
    mean = plain.history["mean"]
    print(f"{name}: holdout_every={cfg.holdout_every}, {len(gens)} evaluations of {cfg.holdout_samples} rows")
    print(f"  denoiser rows: generations {plain.forward_rows}, +hold-out {extra} = "
          f"{extra / plain.forward_rows:.3f}x the generations' rows, "
          f"{extra / (plain.forward_rows + start_rows):.3f}x the run's with its start ({start_rows} rows)")
    print(f"  wall time of the generations: {plain_s:.1f} s -> {scored_s:.1f} s ({scored_s / plain_s:.3f}x)")
    print(f"  hold-out loss: gen {gens[0]} {losses[0]:.4f} -> gen {gens[-1]} {losses[-1]:.4f} "
          f"({'falls' if losses[-1] < losses[0] else 'does NOT fall'}; best {min(losses):.4f})")
    print(f"  per-generation mean: gen 1 {mean[0]:.4f} -> gen {len(mean)} {mean[-1]:.4f} "
          f"(range {min(mean):.4f}..{max(mean):.4f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=60)
    parser.add_argument("--concept", default="triangle/cyan", help="held-out concept shape/colour (toyworld)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from toyworld import load_pipeline

    backend = DiffusersBackend(load_pipeline(), model_name="gfti-toy")
    for i, name in enumerate(("demo", args.concept)):
        compare(backend, name, args.generations, holdout_first=bool(i % 2))


if __name__ == "__main__":
    main()
