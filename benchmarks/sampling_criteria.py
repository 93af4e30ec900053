"""Do criteria that imitate *sampling* order the toy benchmark's fidelity better than the denoising loss? A diagnostic.

v14 found that one token vector carrying colour and shape draws the concept only on a narrow ridge of balanced
weights (sampling at guidance 4 amplifies whichever attribute leads), while the denoising loss changes smoothly
across it. Two forward-only criteria that put guidance into the score:

* guided loss: the training loss of the *guided* prediction v_u + s·(v_c − v_u) (v_u: the empty prompt), so a
  vector whose conditional pull is lopsided is penalised s-fold. s = 1 is the plain loss.
* SDEdit error: each training image is noised to t0 and sampled back (DDIM, 20-step schedule, guidance 4) with
  the token in its auto-context caption; the score is the latent MSE to the image. It runs the very dynamics
  that decide colour against shape.

Modes:
  plane — v14's 4 × 4 grid a·colour + b·shape (fidelity read from benchmarks/results/v22_plane/c{C}s{S}.json);
          Spearman of fidelity against −criterion.
  line  — three GFTI searches (ES seeds S, S+100, S+200), gradient TI, points on the line from GFTI's to
          gradient TI's vector, and the init; fidelity measured here (32 images), loss and SDEdit at t0 500 / 700.
  sensitivity — v14's projection of gradient TI's move, onto the top directions of the text encoder's
          finite-difference Jacobian at e0 (optionally seen through the UNet's cross-attention K/V weights).

    python benchmarks/sampling_criteria.py plane --concept 4 --seed 0 --criterion sdedit --t0 500,700,900
    python benchmarks/sampling_criteria.py plane --concept 2 --seed 0 --criterion guided
    python benchmarks/sampling_criteria.py line --concept 4 --seed 0
    python benchmarks/sampling_criteria.py sensitivity --concept 2 --seed 0
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging

import torch

from diagnostics import heldout_loss, toy_setup  # diagnostics puts the repository on sys.path
from toy_bench import ROOT, concept_tensor, measure, write_json
from gfti_core.backend import per_row_mse
from gfti_core.engine import final_vectors, run_generations, start_run
from gfti_core.objective import draw_samples, generation_generator
from gradient_ti import gradient_ti
from subspace_projection import score_projections, top_right_singular
from word_plane import plane_vectors

log = logging.getLogger("sampling_criteria")
GUIDANCE_SCALES = (1, 1.5, 2, 3, 4)
BUDGET, GRADIENT_BATCH = 4096, 4  # forward rows per search, as in the toy benchmark's rows


def captioned_images(state) -> tuple[torch.Tensor, list[str]]:
    """The training images' latents (without the flipped copies) and each one's first (auto-context) caption."""
    m = len(state.data.prompts) // (2 if state.config.flip else 1)
    return state.data.latents[:m], [state.data.prompts[i][0] for i in range(m)]


@torch.no_grad()
def guided_losses(backend, data, vectors: torch.Tensor, scales=GUIDANCE_SCALES) -> dict[float, list[float]]:
    """vectors [P, 1, D] → {s: mean loss of the guided prediction per vector} on 256 fixed draws."""
    draw = draw_samples(data, 256, (0, 999), generation_generator(4321, 0, stream=7))
    lat = data.latents[draw.latent_idx]
    prompts = [data.prompts[i][j] for i, j in zip(draw.latent_idx.tolist(), draw.prompt_idx.tolist())]
    x_t = backend.scheduler.add_noise(lat, draw.noise, draw.timesteps)
    uncond = backend.encode_text([""] * len(prompts), None)["hidden"]
    v_u = backend.unet(x_t, draw.timesteps, encoder_hidden_states=uncond).sample
    target = backend.training_target(lat, draw.noise, draw.timesteps)
    out: dict[float, list[float]] = {s: [] for s in scales}
    for v in vectors:
        cond = backend.encode_text(prompts, {"clip_l": v[None].expand(len(prompts), -1, -1)})["hidden"]
        v_c = backend.unet(x_t, draw.timesteps, encoder_hidden_states=cond).sample
        for s in scales:
            out[s].append(float(per_row_mse(v_u + s * (v_c - v_u), target).mean()))
    return out


@torch.no_grad()
def sdedit_errors(backend, latents, prompts, vectors, t0s=(500,), steps=20, guidance=4.0, seed=0) -> list[float]:
    """latents [M, C, h, w], prompts [M] (with the slot), vectors [P, 1, D] → mean latent MSE per vector after
    noising each image to t0 and sampling it back with DDIM at `guidance`."""
    from diffusers import DDIMScheduler

    sched = DDIMScheduler.from_config(backend.pipe.scheduler.config)
    sched.set_timesteps(steps)
    gen = torch.Generator().manual_seed(seed)
    m = latents.shape[0]
    noise = {t0: torch.randn(latents.shape, generator=gen) for t0 in t0s}
    uncond = backend.encode_text([""] * m, None)["hidden"]
    out = []
    for v in vectors:
        cond = backend.encode_text(prompts, {"clip_l": v[None].expand(m, -1, -1)})["hidden"]
        errors = []
        for t0 in t0s:
            ts = [t for t in sched.timesteps.tolist() if t <= t0]
            x = backend.scheduler.add_noise(latents, noise[t0], torch.full((m,), ts[0], dtype=torch.long))
            for t in ts:
                tt = torch.full((m,), t, dtype=torch.long)
                pred = backend.unet(torch.cat([x, x]), torch.cat([tt, tt]),
                                    encoder_hidden_states=torch.cat([uncond, cond])).sample
                p_u, p_c = pred.chunk(2)
                x = sched.step(p_u + guidance * (p_c - p_u), t, x).prev_sample
            errors.append((x - latents).pow(2).flatten(1).mean(1))
        out.append(float(torch.stack(errors).mean()))
    return out


def spearman(fidelity, scores) -> float:
    from scipy.stats import spearmanr

    return round(float(spearmanr(fidelity, [-s for s in scores]).correlation), 2)


def plane(args, concept) -> dict:
    backend, base = toy_setup(args.seed)
    state = start_run(backend, base, concept_tensor(concept, args.seed))
    grid, vectors = plane_vectors(backend, concept)
    recorded = json.loads((ROOT / f"benchmarks/results/v22_plane/c{args.concept}s{args.seed}.json").read_text())
    assert [(r["colour_weight"], r["shape_weight"]) for r in recorded["grid"]] == grid
    fidelity = [r["fidelity"] for r in recorded["grid"]]
    if args.criterion == "guided":
        scores = {f"guided s={s}": v for s, v in guided_losses(backend, state.data, vectors).items()}
    else:
        lat, prompts = captioned_images(state)
        t0s = [int(t) for t in args.t0.split(",")]
        scores = {f"sdedit t0={t0}": sdedit_errors(backend, lat, prompts, vectors, (t0,)) for t0 in t0s}
    rows = {}
    for name, values in scores.items():
        best = min(range(len(grid)), key=lambda i: values[i])
        rows[name] = {"spearman": spearman(fidelity, values), "argmin_cell": grid[best],
                      "argmin_fidelity": fidelity[best], "values": [round(x, 5) for x in values]}
        log.info("%s %s", name, rows[name])
    return {"grid": grid, "fidelity": fidelity, "criteria": rows}


def line(args, concept) -> dict:
    backend, base = toy_setup(args.seed)
    images = concept_tensor(concept, args.seed)
    plain = start_run(backend, dataclasses.replace(base, auto_context=False), images)
    candidates, state = {}, None
    for es_seed in (args.seed, args.seed + 100, args.seed + 200):
        start = start_run(backend, dataclasses.replace(base, seed=es_seed), images)
        run = run_generations(start, backend, BUDGET // (base.popsize * base.samples_per_candidate))
        candidates[f"gfti seed {es_seed}"] = final_vectors(run, backend)[0]["clip_l"]
        state = state or run
    grad = gradient_ti(backend, plain.data, plain.subspace.origin["clip_l"], steps=BUDGET // GRADIENT_BATCH,
                       batch=GRADIENT_BATCH, seed=args.seed)
    for a in (0.25, 0.5, 0.75, 1.0, 1.5):  # 1.0 is gradient TI's vector
        candidates[f"line {a}"] = (1 - a) * candidates[f"gfti seed {args.seed}"] + a * grad
    candidates["init"] = state.subspace.origin["clip_l"]
    names, vectors = list(candidates), torch.stack(list(candidates.values()))
    lat, prompts = captioned_images(state)
    scores = {"loss": heldout_loss(backend, state.data, vectors, 256),
              "sdedit500": sdedit_errors(backend, lat, prompts, vectors, (500,)),
              "sdedit700": sdedit_errors(backend, lat, prompts, vectors, (700,))}
    rows = []
    for i, name in enumerate(names):
        rows.append({"name": name, **{k: round(v[i], 5) for k, v in scores.items()},
                     **measure(backend, {"clip_l": vectors[i]}, concept, 32, 1234)})
        log.info("%s", rows[-1])
    fidelity = [r["fidelity"] for r in rows]
    summary = {k: {"spearman": spearman(fidelity, v), "pick": names[min(range(len(v)), key=v.__getitem__)]}
               for k, v in scores.items()}
    log.info("%s", summary)
    return {"points": rows, "criteria": summary}


@torch.no_grad()
def text_jacobian(backend, e0: torch.Tensor, prompt: str = "a photo of <*>", h: float = 0.05) -> torch.Tensor:
    """Central finite differences of the text encoder's output along each input axis → [D_in, L, D_out]."""
    eye, sides = torch.eye(e0.shape[0]), []
    for sign in (1, -1):
        sides.append(torch.cat([backend.encode_text([prompt] * c.shape[0], {"clip_l": c[:, None]})["hidden"].float()
                                for c in (e0[None] + sign * h * eye).split(128)]))
    return (sides[0] - sides[1]) / (2 * h)


def top_eigenvectors(gram: torch.Tensor, k: int) -> torch.Tensor:
    return torch.linalg.eigh(gram.double())[1][:, -k:].T.float().flip(0)


def sensitivity(args, concept) -> dict:
    backend, cfg = toy_setup(args.seed, auto_context=False)
    plain = start_run(backend, cfg, concept_tensor(concept, args.seed))
    e0 = plain.subspace.origin["clip_l"][0]
    jac = text_jacobian(backend, e0)
    kv = torch.cat([m.weight.detach().float() for n, m in backend.pipe.unet.named_modules()
                    if n.endswith(("attn2.to_k", "attn2.to_v"))])
    gram_text = torch.einsum("ild,jld->ij", jac, jac)
    gram_kv = torch.einsum("ile,jle->ij", torch.einsum("ild,de->ile", jac, kv.T @ kv), jac)
    grad = gradient_ti(backend, plain.data, e0[None], steps=BUDGET // GRADIENT_BATCH, batch=GRADIENT_BATCH,
                       seed=args.seed)[0]
    move, table = grad - e0, backend.token_table("clip_l")
    vectors = {"init": e0, "gradient-ti": grad}
    for k in (16, 64):
        for name, q in {f"text_sensitivity{k}": top_eigenvectors(gram_text, k),
                        f"kv_sensitivity{k}": top_eigenvectors(gram_kv, k),
                        f"pca{k}": top_right_singular(table - table.mean(0), k)}.items():
            vectors[name] = e0 + (move @ q.T) @ q
    return {"rows": score_projections(backend, plain.data, vectors, concept)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=("plane", "line", "sensitivity"))
    p.add_argument("--concept", type=int, default=2, help="index into toyworld's HELD_OUT_CONCEPTS")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--criterion", choices=("guided", "sdedit"), default="sdedit", help="plane mode")
    p.add_argument("--t0", default="500", help="plane mode, sdedit: comma-separated start timesteps")
    p.add_argument("--out", default="")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    from toyworld.concepts import HELD_OUT_CONCEPTS, concept_words

    concept = HELD_OUT_CONCEPTS[args.concept]
    result = {"mode": args.mode, "concept": concept_words(concept), "seed": args.seed,
              **{"plane": plane, "line": line, "sensitivity": sensitivity}[args.mode](args, concept)}
    if args.out:
        write_json(args.out, result)


if __name__ == "__main__":
    main()
