"""The contrastive option: negatives drawn from the init's single words lower the fitness of a vector that
explains them, with factors that make a uniform draw estimate mean L(positives) − λ·mean L(negatives)."""
import numpy as np
import pytest
import torch

from fake_backend import FakeBackend
from gfti_core.config import ConfigError, InversionConfig
from gfti_core.engine import run_generations, start_run
from gfti_core.objective import Evaluator, TrainingSet, draw_samples, generation_generator
from gfti_core.state_io import load_state, save_state

IMAGES = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))


class DrawingBackend(FakeBackend):
    """FakeBackend that can also 'generate': it records each prompt's vector and returns flat images."""

    def __init__(self):
        super().__init__()
        self.generated = []

    def generate(self, prompt, vectors, *, num_images, seed, steps=20, guidance=4.0):
        self.generated.append((prompt, {k: v.clone() for k, v in vectors.items()}))
        return torch.full((num_images, 3, 8, 8), 0.25 * len(self.generated))


def _cfg(tmp_path, **kw):
    words = tmp_path / "words.txt"
    words.write_text("cat\ndog\ncar\n" + "\n".join(f"w{i}" for i in range(20)) + "\n")
    return InversionConfig(init_mode="denoise-attention", init_words=str(words), subspace_dim=4, popsize=5,
                           auto_context=False, flip=False, **kw)


def test_negatives_are_the_two_best_words_with_factors_for_pos_minus_lambda_neg(tmp_path):
    backend = DrawingBackend()
    state = start_run(backend, _cfg(tmp_path, contrast=0.5), IMAGES)
    best = state.init_info["ranked_words"][:2]
    assert state.init_info["contrast"] == {"words": best}
    table = backend.token_table("clip_l")
    for (prompt, vectors), word in zip(backend.generated, best):
        assert torch.equal(vectors["clip_l"][0], table[backend.word_ids(word, "clip_l")[0]])
    coef, total = state.data.coef, state.data.latents.shape[0]
    assert total == 3 + 2 * 6 and coef.shape == (total,)
    # a uniform draw picks a positive with probability 3/total: E[coef · loss] = mean_pos − 0.5 · mean_neg
    assert torch.allclose(coef[:3], torch.full((3,), total / 3))
    assert torch.allclose(coef[3:], torch.full((12,), -0.5 * total / 12))


def test_the_factor_multiplies_each_row_loss():
    backend = FakeBackend()
    latents = torch.rand(4, 4, 4, 4)
    plain = TrainingSet(latents, [["a photo of <*>"]] * 4)
    coef = torch.tensor([2.0, 2.0, -1.0, -1.0])
    weighted = TrainingSet(latents, plain.prompts, coef=coef)
    draw = draw_samples(plain, 64, (0, 999), generation_generator(0, 0))
    vec = {"clip_l": torch.randn(1, 1, 16)}
    expected = Evaluator(backend, plain).sample_losses(vec, draw) * coef[draw.latent_idx]
    assert torch.allclose(Evaluator(backend, weighted).sample_losses(vec, draw), expected)


def test_contrast_without_a_generating_backend_is_refused_with_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="contrast=0"):
        start_run(FakeBackend(), _cfg(tmp_path, contrast=1.0), IMAGES)


def test_contrast_needs_a_ranked_word_init():
    cfg = InversionConfig(init_mode="word", init_text="cat", contrast=1.0, auto_context=False)
    with pytest.raises(ConfigError, match="init_mode"):
        start_run(DrawingBackend(), cfg, IMAGES)


def test_the_factors_survive_a_state_round_trip(tmp_path):
    backend = DrawingBackend()
    state = run_generations(start_run(backend, _cfg(tmp_path, contrast=1.0), IMAGES), backend, 2)
    loaded = load_state(save_state(state, tmp_path / "s.safetensors"))
    assert torch.equal(loaded.data.coef, state.data.coef)
    assert np.array_equal(loaded.opt_fitness, state.opt_fitness)
