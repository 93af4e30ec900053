"""The A1111 ldm backend against the REAL ldm code (stable-diffusion-sdkit 2.1.5) on a tiny LatentDiffusion,
compared with the diffusers backend on the same weights (converted with diffusers' ldm→diffusers mapping)."""
from __future__ import annotations

import pytest
import torch

from gfti_core.backends.diffusers_backend import DiffusersBackend
from gfti_core.config import InversionConfig
from gfti_core.engine import build_training_set, final_vectors, run_generations, start_run
from gfti_core.objective import Evaluator, draw_samples
from gfti_core.tiny import tiny_images
from gfti_webui.ldm_backend import ldm_backend

# Measured on CPU float32: eps ≈ 1e-7, v ≈ 1.2e-6 relative (ldm float64 vs diffusers float32 schedule, and two
# different UNet implementations); the bound leaves headroom for other BLAS builds.
REL_TOL = 1e-4


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b).abs() / b.abs().clamp_min(1e-8)).max())


@pytest.mark.parametrize("parameterization", ["eps", "v"])
def test_population_loss_equals_diffusers_backend(ldm_pair, parameterization):
    model, pipe = ldm_pair(parameterization)
    ours, ref = ldm_backend(model), DiffusersBackend(pipe)
    assert ours.family == ref.family == "sd1" and ours.placeholder == ref.placeholder
    assert torch.equal(ours.token_table("clip_l"), ref.token_table("clip_l"))
    images = tiny_images(2)
    cfg = InversionConfig(templates="object", flip=True)
    data_ours, data_ref = (build_training_set(b, images, None, cfg) for b in (ours, ref))
    assert torch.allclose(data_ours.latents, data_ref.latents, rtol=0, atol=1e-5)
    vectors = {"clip_l": torch.randn(5, 2, 32, generator=torch.Generator().manual_seed(1)) * 0.3}
    draw = draw_samples(data_ref, 6, (0, 999), torch.Generator().manual_seed(2))
    loss_ours = Evaluator(ours, data_ours, 16).population_loss(vectors, draw)
    loss_ref = Evaluator(ref, data_ref, 16).population_loss(vectors, draw)
    assert loss_ours.shape == (5,) and torch.isfinite(loss_ours).all()
    assert _rel(loss_ours, loss_ref) < REL_TOL, (loss_ours, loss_ref)
    assert loss_ours.std() > 0  # candidates really differ: the injected vectors reach the UNet


def test_injection_equals_a_real_vocabulary_row(ldm_pair):
    """Injecting the table row of a word must encode exactly like writing that word."""
    model, _ = ldm_pair("eps")
    backend = ldm_backend(model)
    (word_id,) = backend.word_ids("q", "clip_l")
    row = backend.token_table("clip_l")[word_id]
    injected = backend.encode_text(["a <*> on a table"], {"clip_l": row.view(1, 1, -1)})
    written = model.get_learned_conditioning(["a q on a table"])
    assert torch.equal(injected, written)


def test_engine_runs_the_same_on_both_backends(ldm_pair):
    model, pipe = ldm_pair("eps")
    cfg = InversionConfig(init_mode="word", init_text="object", generations=2, popsize=4, subspace_dim=4,
                          samples_per_candidate=2, holdout_samples=2, seed=3)
    images = tiny_images(2)
    runs = []
    for backend in (ldm_backend(model), DiffusersBackend(pipe)):
        state = run_generations(start_run(backend, cfg, images), backend, cfg.generations)
        vectors, report = final_vectors(state, backend)
        runs.append((state.history["best"], vectors["clip_l"], report["chosen"]))
    (best_a, vec_a, pick_a), (best_b, vec_b, pick_b) = runs
    assert _rel(torch.tensor(best_a), torch.tensor(best_b)) < REL_TOL
    assert pick_a == pick_b and torch.allclose(vec_a, vec_b, atol=1e-5)


def test_hook_sees_through_a_webui_wrapper(ldm_pair):
    """A1111 (EmbeddingsWithFixes) and Forge (CLIPEmbeddingForTextualInversion) replace the token embedding by a
    module that keeps the original as `.wrapped` and is called with ids; the backend must still work."""
    model, _ = ldm_pair("eps")
    transformer = model.cond_stage_model.transformer

    class Wrapper(torch.nn.Module):
        def __init__(self, wrapped):
            super().__init__()
            self.wrapped = wrapped

        def forward(self, input_ids):
            return self.wrapped(input_ids)

    original = transformer.get_input_embeddings()
    vectors = {"clip_l": torch.randn(2, 1, 32, generator=torch.Generator().manual_seed(4))}
    plain = ldm_backend(model).encode_text(["a <*>", "<*> and <*>"], vectors)
    transformer.set_input_embeddings(Wrapper(original))
    try:
        wrapped_backend = ldm_backend(model)
        assert torch.equal(wrapped_backend.token_table("clip_l"), original.weight.float())
        assert torch.equal(wrapped_backend.encode_text(["a <*>", "<*> and <*>"], vectors), plain)
    finally:
        transformer.set_input_embeddings(original)
