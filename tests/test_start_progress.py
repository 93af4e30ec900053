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


def test_word_lists_are_typed_lines_or_a_file(tmp_path):
    from gfti_core.config import ConfigError
    from gfti_core.init_vectors import load_word_list

    assert load_word_list("cat\ndog # pets\n\ncat") == ["cat", "dog"]
    assert load_word_list("cat") == ["cat"]
    listed = tmp_path / "words.txt"
    listed.write_text("red car\nzebra\n")
    assert load_word_list(str(listed)) == ["red car", "zebra"]
    with pytest.raises(ConfigError, match="cannot read"):
        load_word_list(str(tmp_path / "missing.txt"))


def test_a_tag_model_that_knows_no_template_word_trains_on_the_bare_token():
    from gfti_core.backend import PLACEHOLDER
    from gfti_core.engine import build_training_set

    class TagsOnly(FakeBackend):
        def word_ids(self, text, encoder):
            return None if any(w in text.split() for w in ("photo", "picture", "image", "rendering", "a",
                                                           "an")) else super().word_ids(text, encoder)

    data = build_training_set(TagsOnly(), IMAGES, None, _cfg())
    assert all(p == [PLACEHOLDER] for p in data.prompts)
