"""The hold-out curve: the search mean scored on the fixed draw every `holdout_every` generations."""
import numpy as np
import torch

from fake_backend import FakeBackend
from gfti_core.config import InversionConfig
from gfti_core.engine import final_vectors, run_generations, start_run
from gfti_core.holdout import describe_early_stop, describe_holdout, holdout_curve
from gfti_core.state_io import load_state, save_state

IMAGES = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))


def _cfg(**kw):
    base = dict(init_mode="word", init_text="car", subspace_dim=8, popsize=6, sigma=0.5, samples_per_candidate=2,
                holdout_samples=8, holdout_every=3)
    return InversionConfig(**{**base, **kw})


def test_points_at_the_start_and_every_k_generations_and_their_rows_are_counted():
    backend, reports = FakeBackend(), []
    state = run_generations(start_run(backend, _cfg(), IMAGES), backend, 7, reports.append)
    gens, losses = holdout_curve(state.history)
    assert gens == [0, 3, 6] and all(np.isfinite(losses))
    assert [r.holdout is not None for r in reports] == [g in (3, 6) for g in range(1, 8)]
    assert reports[2].holdout == losses[1] and reports[-1].holdout_curve == tuple(zip(gens, losses))
    # 7 generations of 6 candidates x 2 samples, plus 3 evaluations of 8 hold-out samples
    assert state.forward_rows == 7 * 6 * 2 + 3 * 8


def test_the_curve_falls_when_the_search_approaches_the_optimum():
    backend = FakeBackend()
    cfg = _cfg(popsize=12, samples_per_candidate=4, subspace_dim=16, holdout_samples=16, holdout_every=10)
    state = run_generations(start_run(backend, cfg, IMAGES), backend, 60)
    _, losses = holdout_curve(state.history)
    assert losses[-1] < 0.5 * losses[0], losses


def test_the_final_choice_scores_on_the_same_draw():
    backend = FakeBackend()
    state = run_generations(start_run(backend, _cfg(tail_average=0.0), IMAGES), backend, 6)
    _, report = final_vectors(state, backend)
    assert abs(report["holdout_loss"]["mean"] - holdout_curve(state.history)[1][-1]) < 1e-5


def test_off_means_no_points_and_no_extra_rows():
    backend = FakeBackend()
    state = run_generations(start_run(backend, _cfg(holdout_every=0), IMAGES), backend, 4)
    assert state.history["holdout"] == [] and state.forward_rows == 4 * 6 * 2
    assert "not evaluated" in describe_holdout(state.history)


def test_resumed_run_continues_the_curve_exactly(tmp_path):
    backend = FakeBackend()
    start = start_run(backend, _cfg(), IMAGES)
    straight = run_generations(start, backend, 8)
    for cut in (3, 4):  # saved on a generation with a point, and between points
        half = run_generations(start, backend, cut)
        resumed = run_generations(load_state(save_state(half, tmp_path / f"{cut}.safetensors")), backend, 8 - cut)
        assert resumed.history["holdout"] == straight.history["holdout"]
        assert resumed.forward_rows == straight.forward_rows


def test_a_cancel_during_the_evaluation_keeps_the_generation_and_the_next_call_scores_it():
    backend, calls = FakeBackend(), {"n": 0}
    state = run_generations(start_run(backend, _cfg(batch_rows=4), IMAGES), backend, 2)

    def stop():  # generation 3 takes 3 chunks of 4 rows; its hold-out evaluation 2 more: stop in the latter
        calls["n"] += 1
        return calls["n"] > 5

    reports = []
    stopped = run_generations(state, backend, 5, reports.append, should_stop=stop)
    assert stopped.generation == 3 and holdout_curve(stopped.history)[0] == [0]
    # the kept generation is reported (a live chart must show where the run really stopped), without a point
    assert [r.generation for r in reports] == [3] and reports[0].holdout is None
    again = run_generations(stopped, backend, 0)
    assert holdout_curve(again.history)[0] == [0, 3]
    straight = run_generations(state, backend, 1)
    assert again.history["holdout"] == straight.history["holdout"]
    assert again.forward_rows == straight.forward_rows


def test_describe_names_every_point_and_the_best():
    text = describe_holdout({"holdout": [[0, 0.2], [3, 0.1], [6, 0.15]]})
    assert "0: 0.2, 3: 0.1, 6: 0.15" in text and "best 0.1 at generation 3" in text


class FlatBackend(FakeBackend):
    """A loss that no token changes: the hold-out loss never improves."""

    def denoise_loss(self, latents, timesteps, noise, cond, weights=None):
        return 0.1 * noise.flatten(1).pow(2).mean(1) + 0 * sum(cond.values()).sum(1)


def test_early_stop_ends_the_run_after_k_evaluations_without_improvement():
    backend = FlatBackend()
    state = run_generations(start_run(backend, _cfg(holdout_every=2, early_stop=2), IMAGES), backend, 20)
    assert state.generation == 4 and holdout_curve(state.history)[0] == [0, 2, 4]
    assert describe_early_stop(state.config, state.history).startswith(
        "stopped early at generation 4: the hold-out loss has not improved for 2 evaluations (best ")
    assert run_generations(state, backend, 5).generation == 4  # continuing a stalled run stops at once
    assert run_generations(start_run(backend, _cfg(holdout_every=2), IMAGES), backend, 6).generation == 6


def test_early_stop_without_the_holdout_curve_is_refused():
    import pytest
    from gfti_core.config import ConfigError

    with pytest.raises(ConfigError, match="early_stop=3 watches the hold-out loss"):
        _cfg(holdout_every=0, early_stop=3)
