"""Planted target on a fixed small model (the shipped toy model): images are generated from a known embedding
e*; GFTI, started far away, must close most of the loss gap between its start and e*."""
import pytest
import torch

from gfti_core.backend import PLACEHOLDER
from gfti_core.backends.diffusers_backend import DiffusersBackend
from gfti_core.config import InversionConfig
from gfti_core.engine import final_vectors, run_generations, start_run
from gfti_core.objective import Evaluator, draw_samples, generation_generator

toyworld = pytest.importorskip("toyworld")


@pytest.fixture(scope="module")
def toy_backend():
    if not (toyworld.MODEL_DIR / "model_index.json").exists():
        pytest.skip(f"toy model weights not found in {toyworld.MODEL_DIR} (train with python -m toyworld.train)")
    return DiffusersBackend(toyworld.load_pipeline(), model_name="gfti-toy")


def test_es_closes_most_of_the_gap_to_a_planted_embedding(toy_backend):
    backend = toy_backend
    table = backend.token_table("clip_l")
    ids = [backend.word_ids(w, "clip_l")[0] for w in ("red", "square")]
    planted = {"clip_l": table[ids].mean(0, keepdim=True) * 1.4}  # an embedding no single word has
    images = backend.generate(f"a photo of {PLACEHOLDER}", planted, num_images=4, seed=0, steps=15)
    cfg = InversionConfig(init_mode="word", init_text="navy", subspace_dim=32, popsize=12,
                          samples_per_candidate=8, holdout_samples=64, timestep_min=300, timestep_max=900,
                          flip=False, templates="object", seed=1)
    state = start_run(backend, cfg, images)
    state = run_generations(state, backend, 40)
    final, _ = final_vectors(state, backend)
    draw = draw_samples(state.data, 96, (300, 900), generation_generator(99, 0))
    cands = {"clip_l": torch.stack([planted["clip_l"], state.subspace.origin["clip_l"], final["clip_l"]])}
    planted_loss, start_loss, final_loss = Evaluator(backend, state.data).population_loss(cands, draw).tolist()
    # Margin: the learned vector must remove at least a quarter of the start's excess loss over e* on a fresh
    # draw. The toy model's loss is dominated by irreducible noise, so the excess itself is small (~2e-3) and
    # 40 generations of 12 candidates is a short run. Measured on toy model v3: 35 % of the excess removed after
    # 40 generations, 45 % after 80 (v2 removed more than half in 40); v4 (v-prediction) passes too; a search
    # that learned nothing removes ~0.
    assert start_loss > planted_loss
    assert final_loss - planted_loss < 0.75 * (start_loss - planted_loss), (planted_loss, start_loss, final_loss)
