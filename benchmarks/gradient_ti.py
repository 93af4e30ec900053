"""Gradient textual inversion, for comparison only (benchmark code, not part of the product).

The diffusers `textual_inversion.py` recipe reduced to its core: AdamW on the placeholder's embedding
vector(s), autograd through the UNet and the text encoder, the MSE of the model's own target (ε, or v for
v-models, like GFTI's objective) at uniformly drawn timesteps, the same
prompt templates, cached latents and (when given) mask weights as GFTI. Runs on the same `DiffusersBackend` (so the same injection).
"""
from __future__ import annotations

import time
from typing import Callable

import torch

from gfti_core.backend import PLACEHOLDER, per_row_mse
from gfti_core.backends.diffusers_backend import DiffusersBackend
from gfti_core.inject import inject_vectors
from gfti_core.objective import TrainingSet, draw_samples


def gradient_ti(backend: DiffusersBackend, data: TrainingSet, init: torch.Tensor, *, steps: int, batch: int = 4,
                lr: float = 5e-3, t_range=(0, 999), seed: int = 0, basis: torch.Tensor | None = None,
                on_step: Callable[[int, torch.Tensor, int, float], None] | None = None) -> torch.Tensor:
    """init [N, D] → learned [N, D]. on_step(step, vector, forward_rows, seconds) after every step.

    basis [k, D] (optional) confines the search to init + span(basis), as GFTI's search is: Adam then runs on
    the k coordinates of an orthonormal basis of that span, with lr scaled by √(D/k) so that a sign-like Adam
    step moves the vector as far as a full-space step would (a diagnostic: is GFTI's subspace or its
    optimiser what separates it from gradient TI?)."""
    pipe = backend.pipe
    te, tok, unet = pipe.text_encoder, pipe.tokenizer, pipe.unet
    for module in (te, unet, pipe.vae):
        module.requires_grad_(False)
    dev, dtype = backend.device, backend.dtype
    origin = init.clone().to(dev, torch.float32)
    if basis is None:
        param = origin.clone().requires_grad_(True)
        to_vector = lambda p: p  # noqa: E731
    else:
        q = torch.linalg.qr(basis.to(dev, torch.float32).T).Q.T  # [k, D], orthonormal rows
        lr = lr * (origin.shape[-1] / q.shape[0]) ** 0.5
        param = torch.zeros(origin.shape[0], q.shape[0], device=dev, requires_grad=True)
        to_vector = lambda p: origin + p @ q  # noqa: E731
    # Weight decay pulls a full-space vector towards 0 but subspace coordinates towards e0: off in a subspace.
    opt = torch.optim.AdamW([param], lr=lr, weight_decay=1e-2 if basis is None else 0.0)
    # The cached latents and mask weights move to the device once, not once per step (as in GFTI's Evaluator).
    all_latents = data.latents.to(dev, dtype)
    all_weights = None if data.weights is None else data.weights.to(dev)
    gen = torch.Generator().manual_seed(seed)
    ph_id, n = backend._placeholder_ids[backend.encoders[0].name], init.shape[0]
    start = time.perf_counter()
    for step in range(1, steps + 1):
        draw = draw_samples(data, batch, t_range, gen)
        prompts = [data.prompts[i][j].replace(PLACEHOLDER, " ".join([backend.placeholder] * n))
                   for i, j in zip(draw.latent_idx.tolist(), draw.prompt_idx.tolist())]
        ids = tok(prompts, padding="max_length", max_length=tok.model_max_length, truncation=True,
                  return_tensors="pt").input_ids.to(dev)
        vec = to_vector(param)
        with inject_vectors(te.get_input_embeddings(), ph_id, vec[None].expand(batch, -1, -1).to(dtype)):
            cond = te(ids)[0]
        latents = all_latents[draw.latent_idx.to(dev)]
        noise, timesteps = draw.noise.to(dev, dtype), draw.timesteps.to(dev)
        x_t = backend.scheduler.add_noise(latents, noise, timesteps)
        pred = unet(x_t, timesteps, encoder_hidden_states=cond).sample
        # Foreground masks weight the loss exactly as in GFTI's objective (A1111's gradient TI offers the same).
        weights = None if all_weights is None else all_weights[draw.latent_idx.to(dev)]
        loss = per_row_mse(pred, backend.training_target(latents, noise, timesteps), weights).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if on_step:
            # after opt.step: the updated vector (in a subspace `vec` is the pre-step product, not the parameter)
            on_step(step, to_vector(param).detach().clone(), step * batch, time.perf_counter() - start)
    return to_vector(param).detach()
