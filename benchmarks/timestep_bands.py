"""Which diffusion timesteps tell a concept's true words from a one-attribute-wrong alternative? A diagnostic.

For one toy concept and seed (the benchmark's 6 images), every draw (image, timestep, noise) is scored with
the prompt "a photo of a <colour> <shape>" and with alternatives that change the shape or the colour, under
common random numbers. Per band of 100 timesteps it prints, for each alternative, the mean loss difference
d = L(alternative) − L(true) (×1000) and its per-draw signal-to-noise mean(d)/std(d). A band with a high
signal-to-noise is where a candidate ranking (which is all an evolution strategy sees) is decided.

    python benchmarks/timestep_bands.py --concept 4 --seed 0 --draws 2048
"""
from __future__ import annotations

import argparse

import torch

from toy_bench import concept_tensor  # toy_bench also puts the repository on sys.path
from gfti_core.backends.diffusers_backend import DiffusersBackend
from toyworld.scenes import BACKGROUNDS, COLOURS, SHAPES

# toyworld's own words, reordered so the first ones are the near misses (the benchmark's hard cases are
# blue vs cyan and white vs gray, not red vs green; "gray" is a background word the init often picks for white):
# the alternatives below take the first three that differ.
CONFUSABLE_SHAPES = ("circle", "square", "triangle", "cross", "star", "ring")
CONFUSABLE_COLOURS = ("blue", "white", "gray", "yellow", "cyan", "purple")
assert set(CONFUSABLE_SHAPES) <= set(SHAPES) and set(CONFUSABLE_COLOURS) <= set(COLOURS) | set(BACKGROUNDS)


def alternatives(shape: str, colour: str) -> list[tuple[str, str]]:
    """Three wrong shapes in the right colour, then three wrong colours on the right shape."""
    return ([(colour, s) for s in CONFUSABLE_SHAPES if s != shape][:3]
            + [(c, shape) for c in CONFUSABLE_COLOURS if c != colour][:3])


def prompt_losses(backend, latents, draw, words: str, chunk: int = 64) -> torch.Tensor:
    latent_idx, timesteps, noise = draw
    hidden = backend.encode_text([f"a photo of a {words}"], None)["hidden"]  # one prompt: encode it once
    out = []
    for s in range(0, len(timesteps), chunk):
        part = slice(s, s + chunk)
        cond = {"hidden": hidden.expand(len(timesteps[part]), -1, -1)}
        out.append(backend.denoise_loss(latents[latent_idx[part]], timesteps[part], noise[part], cond).float())
    return torch.cat(out)


def band_row(diff: torch.Tensor, bands: torch.Tensor) -> str:
    cells = []
    for k in range(10):
        x = diff[bands == k]
        cells.append(f"{float(x.mean()) * 1000:6.2f}/{float(x.mean() / x.std()):5.2f}")
    return " ".join(cells)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--concept", type=int, default=4, help="index into toyworld's HELD_OUT_CONCEPTS")
    p.add_argument("--seed", type=int, default=0, help="which of the benchmark's image sets")
    p.add_argument("--draws", type=int, default=2048)
    args = p.parse_args()
    torch.set_num_threads(1)
    from toyworld import load_pipeline
    from toyworld.concepts import HELD_OUT_CONCEPTS

    backend = DiffusersBackend(load_pipeline(), model_name="gfti-toy")
    shape, colour = HELD_OUT_CONCEPTS[args.concept]
    latents = backend.encode_images(concept_tensor(HELD_OUT_CONCEPTS[args.concept], args.seed))
    g = torch.Generator().manual_seed(5)
    draw = (torch.randint(0, latents.shape[0], (args.draws,), generator=g),
            torch.randint(0, 1000, (args.draws,), generator=g),
            torch.randn((args.draws,) + tuple(latents.shape[1:]), generator=g))
    bands = torch.div(draw[1], 100, rounding_mode="floor")
    with torch.no_grad():
        true = prompt_losses(backend, latents, draw, f"{colour} {shape}")
        print(f"{colour} {shape} seed {args.seed}: mean true loss per band",
              [round(float(true[bands == k].mean()), 3) for k in range(10)])
        print("alternative      all draws    | per band t=0-99 ... 900-999: mean d x1000 / signal-to-noise")
        for c, s in alternatives(shape, colour):
            d = prompt_losses(backend, latents, draw, f"{c} {s}") - true
            print(f"{c:>7} {s:<8} all {float(d.mean()) * 1000:6.2f}/{float(d.mean() / d.std()):5.2f} |",
                  band_row(d, bands))


if __name__ == "__main__":
    main()
