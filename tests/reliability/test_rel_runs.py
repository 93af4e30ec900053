"""Numerics and run control: invalid losses, step-size extremes, out-of-memory, cancel, zero generations.

Engine cases use tests/fake_backend.py (known optimum, milliseconds); CLI cases the tiny SD1 model."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from rel_helpers import one_clear_line
from fake_backend import FakeBackend
from gfti_core.backends.diffusers_backend import DiffusersBackend
from gfti_core.config import InversionConfig
from gfti_core.engine import final_vectors, run_generations, start_run
from gfti_core.errors import GFTIError, RunDivergedError
from gfti_core.formats import read_embedding
from gfti_core.objective import Evaluator, TrainingSet, draw_samples, generation_generator
from gfti_core.optim import OptimizerSpec, make_optimizer
from gfti_core.state_io import load_state, save_state

IMAGES = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))


def _cfg(**kw) -> InversionConfig:
    base = dict(init_mode="word", init_text="car", subspace_dim=8, popsize=12, sigma=0.5,
                samples_per_candidate=4, holdout_samples=16)
    return InversionConfig(**{**base, **kw})


def _finite_history(state) -> bool:
    return all(np.isfinite(v).all() for v in state.history.values()) and np.isfinite(state.opt_fitness).all()


# ------------------------------------------------------------------------------------- invalid losses

@pytest.mark.parametrize("bad", [float("inf"), float("-inf")])
def test_infinite_losses_are_rejected_and_the_run_continues(bad):
    """-inf matters most: kept as is, it would make a broken candidate the best one ever."""
    backend = FakeBackend()
    original = backend.denoise_loss

    def sometimes_infinite(latents, t, noise, cond, weights=None):
        loss = original(latents, t, noise, cond, weights)
        loss[::5] = bad
        return loss

    backend.denoise_loss = sometimes_infinite
    state = run_generations(start_run(backend, _cfg(samples_per_candidate=1), IMAGES), backend, 3)
    assert state.generation == 3 and sum(state.history["rejected"]) > 0
    assert _finite_history(state) and np.isfinite(state.best_loss)


def test_all_nan_generation_stops_with_a_clear_error_and_the_input_state_intact(tmp_path):
    backend = FakeBackend()
    state = run_generations(start_run(backend, _cfg(), IMAGES), backend, 2)
    before = state.opt_fitness.copy()
    backend.denoise_loss = lambda latents, t, noise, cond, weights=None: torch.full((len(t),), float("nan"))
    with pytest.raises(RunDivergedError, match="NaN/Inf.*float32") as info:
        run_generations(state, backend, 3)
    assert isinstance(info.value, GFTIError) and "\n" not in str(info.value)
    assert state.generation == 2 and np.array_equal(state.opt_fitness, before)
    resumed = run_generations(load_state(save_state(state, tmp_path / "s.safetensors")), FakeBackend(), 1)
    assert resumed.generation == 3 and _finite_history(resumed)


def test_cli_all_nan_exits_2_and_keeps_the_last_checkpoint(train, tmp_path, monkeypatch):
    """Generation 1 is fine, generation 2 is all NaN: exit 2, one line naming the kept state; resumable."""
    original, calls = DiffusersBackend.denoise_loss, {"n": 0}

    def nan_after_first(self, latents, t, noise, cond, weights=None):
        calls["n"] += 1  # --batch-rows 8 = one call per generation; word init and no hold-out curve make no others
        loss = original(self, latents, t, noise, cond, weights)
        return loss if calls["n"] == 1 else torch.full_like(loss, float("nan"))

    monkeypatch.setattr(DiffusersBackend, "denoise_loss", nan_after_first)
    out, state_path = tmp_path / "x.safetensors", tmp_path / "x.state.safetensors"
    message = one_clear_line(train(out, "--generations", "4", "--checkpoint-every", "1", "--holdout-every", "0"), "NaN/Inf",
                             f"generation 1 in {state_path}", "--resume")
    assert "float32" in message and not out.exists()
    assert load_state(state_path).generation == 1
    monkeypatch.setattr(DiffusersBackend, "denoise_loss", original)
    assert train(out, "--resume", state_path, "--generations", "2").code == 0
    assert load_state(state_path).generation == 2 and read_embedding(out).metadata["gfti.steps"] == "2"


# --------------------------------------------------------------------------------- step-size extremes

@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("optimizer", ["cma", "sep-cma", "zo-adam"])
def test_smallest_sigma_runs_without_nan(optimizer):
    backend = FakeBackend()
    state = run_generations(start_run(backend, _cfg(optimizer=optimizer, sigma=1e-6), IMAGES), backend, 20)
    assert _finite_history(state) and 0 < state.history["step_size"][-1] < 1
    vectors, _ = final_vectors(state, backend)
    assert torch.isfinite(vectors["clip_l"]).all()


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("optimizer", ["cma", "sep-cma", "zo-adam"])
@pytest.mark.parametrize("sigma", [1e-300, "flat"])
def test_collapsed_or_flat_search_stays_finite(optimizer, sigma):
    """Below the config's bound (a run whose step size shrank for thousands of generations) and on a flat
    loss (every candidate equal): the optimiser keeps asking finite points."""
    opt = make_optimizer(OptimizerSpec(optimizer, 8, 12, 0.5 if sigma == "flat" else sigma, 0))
    for _ in range(40):
        x = opt.ask()
        opt.tell(x, np.zeros(len(x)) if sigma == "flat" else ((x - 1) ** 2).sum(1))
    assert np.isfinite(opt.ask()).all() and np.isfinite(opt.mean).all() and np.isfinite(opt.step_size)


# ------------------------------------------------------------------------------------- out of memory

class OOMBackend(FakeBackend):
    """Raises torch.OutOfMemoryError for any call above `limit` rows, like a GPU that cannot fit the batch."""

    def __init__(self, limit: int, **kw):
        super().__init__(**kw)
        self.limit, self.refused = limit, 0

    def denoise_loss(self, latents, timesteps, noise, cond, weights=None):
        if len(timesteps) > self.limit:
            self.refused += 1
            raise torch.OutOfMemoryError(f"CUDA out of memory (simulated, {len(timesteps)} rows)")
        return super().denoise_loss(latents, timesteps, noise, cond, weights)


def test_population_larger_than_memory_halves_rows_and_equals_unchunked():
    data = TrainingSet(torch.rand(4, 4, 4, 4), [["a <*>"]] * 4)
    draw = draw_samples(data, 6, (0, 999), generation_generator(0, 1))
    cands = {"clip_l": torch.randn(9, 1, 16, generator=torch.Generator().manual_seed(1))}
    small = OOMBackend(limit=5)
    chunked = Evaluator(small, data, rows_per_call=64)
    losses = chunked.population_loss(cands, draw)
    whole = Evaluator(FakeBackend(), data, rows_per_call=64).population_loss(cands, draw)
    assert chunked.rows == 4 and small.refused == 4  # 64 -> 32 -> 16 -> 8 -> 4, then it stays there
    assert torch.allclose(losses, whole, rtol=0, atol=1e-6)
    assert chunked.forward_rows == 9 * 6  # refused calls are not counted as work


def test_run_under_memory_pressure_matches_an_unconstrained_run():
    cfg = _cfg(batch_rows=64)
    tight = run_generations(start_run(OOMBackend(limit=7), cfg, IMAGES), OOMBackend(limit=7), 3)
    free = run_generations(start_run(FakeBackend(), cfg, IMAGES), FakeBackend(), 3)
    for key in ("best", "mean", "forward_rows"):
        assert np.allclose(tight.history[key], free.history[key], rtol=0, atol=1e-6), key


def test_out_of_memory_at_one_row_is_not_swallowed():
    data = TrainingSet(torch.rand(2, 4, 4, 4), [["a <*>"]] * 2)
    draw = draw_samples(data, 2, (0, 999), generation_generator(0, 0))
    with pytest.raises(torch.OutOfMemoryError):
        Evaluator(OOMBackend(limit=0), data, rows_per_call=4).population_loss({"clip_l": torch.randn(2, 1, 16)},
                                                                             draw)


# ------------------------------------------------------------------------------------ cancel and zero

def test_cancel_mid_generation_saves_a_state_that_resumes_like_an_uninterrupted_run(tmp_path):
    backend, cfg = FakeBackend(), _cfg(batch_rows=8)  # 12 x 4 rows = 6 chunks per generation
    start = start_run(backend, cfg, IMAGES)
    straight = run_generations(start, backend, 6)
    checks = {"n": 0}

    def stop_in_generation_three():
        checks["n"] += 1
        return checks["n"] > 2 * 7 + 3  # 7 checks per generation (6 chunks + the loop test)

    stopped = run_generations(start, backend, 6, should_stop=stop_in_generation_three)
    assert stopped.generation == 2
    resumed = run_generations(load_state(save_state(stopped, tmp_path / "s.safetensors")), backend, 4)
    for key, values in straight.history.items():
        if key != "seconds":  # wall-clock time, never the same twice
            assert np.allclose(resumed.history[key], values, rtol=0, atol=1e-9), key


def test_zero_generations_writes_the_init_embedding_and_a_resumable_state(train, tmp_path):
    out, state_path = tmp_path / "zero.safetensors", tmp_path / "zero.state.safetensors"
    assert train(out, "--generations", "0").code == 0
    state = load_state(state_path)
    emb = read_embedding(out)
    assert state.generation == 0 and emb.metadata["gfti.steps"] == "0"
    assert torch.allclose(emb.vectors["clip_l"], state.subspace.origin["clip_l"], atol=1e-6)  # the init vector
    assert train(tmp_path / "two.safetensors", "--resume", state_path, "--generations", "2").code == 0
    assert load_state(state_path).generation == 2
