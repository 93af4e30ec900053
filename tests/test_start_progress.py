"""The start (init scoring, auto context) shows progress and honours cancel like a generation does."""
import pytest
import torch

from fake_backend import FakeBackend
from gfti_core.config import InversionConfig
from gfti_core.engine import start_run
from gfti_core.objective import Cancelled

IMAGES = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))


def _cfg(**kw):
    return InversionConfig(subspace_dim=8, popsize=4, samples_per_candidate=2, init_samples=2, **kw)


@pytest.mark.parametrize("settings", [{}, {"num_vectors": 2}, {"init_sum": 2}, {"auto_context": False},
                                      {"init_mode": "word", "init_text": "cat"}])
def test_progress_is_monotone_and_reaches_the_rows_spent(settings):
    reports = []
    state = start_run(FakeBackend(), _cfg(**settings), IMAGES, on_progress=reports.append)
    spent = state.init_info["init_forward_rows"]
    done = [r.done_rows for r in reports]
    fractions = [r.done_rows / r.total_rows for r in reports if r.total_rows]
    assert done == sorted(done) and fractions == sorted(fractions)
    assert all(r.done_rows <= r.total_rows for r in reports)
    assert reports[-1].stage == "done" and reports[-1].done_rows == reports[-1].total_rows == spent
    # the plan was exact: the bar never jumped at the end
    assert max(r.total_rows for r in reports) == spent
    if spent:
        assert len(reports) > 10 and {"scoring init words", "auto context"} & {r.stage for r in reports}


def test_stop_inside_the_start_raises_cancelled_promptly():
    backend, seen = FakeBackend(), []

    def stop_after_some_rows():
        seen.append(backend.calls)
        return backend.calls >= 5

    with pytest.raises(Cancelled):
        start_run(backend, _cfg(), IMAGES, should_stop=stop_after_some_rows)
    assert backend.calls == 5  # no denoiser call after the stop was asked


def test_stop_during_auto_context_raises_cancelled():
    backend, stages = FakeBackend(), []
    with pytest.raises(Cancelled):
        start_run(backend, _cfg(), IMAGES, on_progress=lambda p: stages.append(p.stage),
                  should_stop=lambda: bool(stages) and stages[-1] == "auto context")
    assert stages[-1] == "auto context"
