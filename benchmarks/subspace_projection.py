"""Which low-dimensional subspace holds gradient TI's move? A diagnostic.

For one toy concept and seed: run gradient TI from GFTI's init (plain captions, 4096 forward rows), take its move
d = g − e0 and project it onto k-dimensional subspaces of the 768-d token space: the token table's principal
directions (what GFTI searches), the row space of the UNet's cross-attention key/value weights (the directions
the denoiser reads; with and without the text encoder's final layer-norm gain) and random directions. Each
projection e0 + P·d is scored with the held-out loss (256 fixed draws, plain captions): "gain_kept" is the share
of gradient TI's loss gain it keeps, "energy" the share of ‖d‖² — and with the benchmark's fidelity.

    python benchmarks/subspace_projection.py --concept 2 --seed 0 --out benchmarks/results/v22_projection/c2s0.json
"""
from __future__ import annotations

import logging

import torch

from diagnostics import concept_args, heldout_loss, toy_setup  # diagnostics puts the repository on sys.path
from toy_bench import concept_tensor, measure, write_json
from gfti_core.engine import start_run
from gradient_ti import gradient_ti

log = logging.getLogger("subspace_projection")


def top_right_singular(matrix: torch.Tensor, k: int) -> torch.Tensor:
    return torch.linalg.svd(matrix.double(), full_matrices=False)[2][:k].float()


def bases(pipe, table: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
    """Orthonormal [k, 768] bases."""
    kv = torch.cat([m.weight.detach().float() for n, m in pipe.unet.named_modules()
                    if n.endswith(("attn2.to_k", "attn2.to_v"))])
    gain = pipe.text_encoder.final_layer_norm.weight.detach().float()
    random, _ = torch.linalg.qr(torch.randn(table.shape[1], k, generator=torch.Generator().manual_seed(0)))
    return {f"pca{k}": top_right_singular(table - table.mean(0), k), f"kv{k}": top_right_singular(kv, k),
            f"kv_gain{k}": top_right_singular(kv * gain[None], k), f"random{k}": random.T}


def score_projections(backend, data, vectors: dict[str, torch.Tensor], concept) -> dict[str, dict]:
    """vectors: "init" (e0) and "gradient-ti" first, then projections e0 + P·d → per vector: held-out loss, the
    share of gradient TI's loss gain and of its squared move it keeps, and (except the init) the fidelity."""
    e0, move = vectors["init"], vectors["gradient-ti"] - vectors["init"]
    losses = heldout_loss(backend, data, torch.stack(list(vectors.values()))[:, None])
    rows = {}
    for (name, vec), loss in zip(vectors.items(), losses):
        rows[name] = {"loss": round(loss, 5), "gain_kept": round((losses[0] - loss) / (losses[0] - losses[1]), 3),
                      "energy": round(float(((vec - e0).norm() / move.norm()) ** 2), 3),
                      **({} if name == "init" else measure(backend, {"clip_l": vec[None]}, concept, 16, 1234))}
        log.info("%s %s", name, rows[name])
    return rows


def main() -> None:
    args = concept_args()
    from toyworld.concepts import HELD_OUT_CONCEPTS

    concept = HELD_OUT_CONCEPTS[args.concept]
    backend, cfg = toy_setup(args.seed, auto_context=False)
    plain = start_run(backend, cfg, concept_tensor(concept, args.seed))
    e0 = plain.subspace.origin["clip_l"][0]
    g = gradient_ti(backend, plain.data, e0[None], steps=1024, batch=4, seed=args.seed)[0]
    move = g - e0
    vectors = {"init": e0, "gradient-ti": g}
    for k in (64, 256):
        for name, q in bases(backend.pipe, backend.token_table("clip_l"), k).items():
            vectors[name] = e0 + (move @ q.T) @ q
    rows = score_projections(backend, plain.data, vectors, concept)
    write_json(args.out, {"concept": concept, "seed": args.seed, "rows": rows})


if __name__ == "__main__":
    main()
