"""Previews while training: every `preview_every` generations the report carries a grid of the search mean."""
import torch
from PIL import Image

from fake_backend import FakeBackend
from gfti_core.backend import PLACEHOLDER
from gfti_core.config import InversionConfig
from gfti_core.engine import run_generations, start_run
from gfti_core.previews import backend_sampler, preview_prompts

IMAGES = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))


def _cfg(**kw):
    base = dict(init_mode="word", init_text="car", subspace_dim=8, popsize=6, samples_per_candidate=2,
                holdout_samples=8, preview_every=2, preview_prompt="a drawing of <*> in the snow")
    return InversionConfig(**{**base, **kw})


def test_previews_sample_both_prompts_with_the_mean_and_a_fixed_seed():
    backend, calls, reports = FakeBackend(), [], []

    def sampler(prompt, vectors, seed):
        calls.append((prompt, {k: v.clone() for k, v in vectors.items()}, seed))
        return [Image.new("RGB", (16, 16), (int(vectors["clip_l"].abs().sum() * 10) % 255, 0, 0))]

    run_generations(start_run(backend, _cfg(seed=5), IMAGES), backend, 5, reports.append, sampler=sampler)
    assert [r.preview is not None for r in reports] == [False, True, False, True, False]
    assert [c[0] for c in calls] == [f"a photo of {PLACEHOLDER}", f"a drawing of {PLACEHOLDER} in the snow"] * 2
    assert {c[2] for c in calls} == {5}
    assert not torch.equal(calls[0][1]["clip_l"], calls[2][1]["clip_l"]), "the token moved between previews"
    assert reports[1].preview.height > 2 * 16  # one labelled row per prompt


def test_no_sampler_or_preview_every_zero_means_no_previews():
    backend, reports = FakeBackend(), []
    run_generations(start_run(backend, _cfg(), IMAGES), backend, 2, reports.append)
    run_generations(start_run(backend, _cfg(preview_every=0), IMAGES), backend, 2, reports.append,
                    sampler=lambda *a: [Image.new("RGB", (4, 4))])
    assert all(r.preview is None for r in reports)
    assert backend_sampler(backend) is None  # the fake cannot generate: faces are told, not crashed


def test_preview_prompt_without_the_slot_is_refused():
    import pytest
    from gfti_core.config import ConfigError

    with pytest.raises(ConfigError, match="must contain the token slot <\\*> once"):
        _cfg(preview_prompt="a photo in the snow")
    assert preview_prompts(_cfg())[1] == f"a drawing of {PLACEHOLDER} in the snow"
