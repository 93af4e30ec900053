"""The denoising loss is the model's own training loss, whichever way a host exposes the denoiser."""
import torch

from gfti_core.backend import sigma_space_mse, v_target


def _draw(seed=0, rows=6):
    g = torch.Generator().manual_seed(seed)
    x0, eps = torch.randn(rows, 4, 8, 8, generator=g), torch.randn(rows, 4, 8, 8, generator=g)
    sigma = torch.logspace(-1.5, 2.2, rows)  # from almost clean to almost pure noise
    return g, x0, eps, sigma


def test_sigma_space_v_loss_equals_the_v_mse_of_the_same_prediction():
    g, x0, eps, sigma = _draw()
    ac = 1 / (1 + sigma ** 2)  # ā of a VP schedule at this σ
    a = ac.view(-1, 1, 1, 1)
    x_vp = a.sqrt() * x0 + (1 - a).sqrt() * eps
    v_hat = v_target(x0, eps, ac) + 0.1 * torch.randn(x0.shape, generator=g)  # an imperfect v-model
    x0_hat = a.sqrt() * x_vp - (1 - a).sqrt() * v_hat  # what a sigma-space wrapper returns as "denoised"
    x_in = x0 + sigma.view(-1, 1, 1, 1) * eps
    got = sigma_space_mse(x0, eps, x_in, x0_hat, sigma, v_prediction=True)
    want = (v_hat - v_target(x0, eps, ac)).pow(2).flatten(1).mean(1)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-7)


def test_sigma_space_eps_loss_equals_the_eps_mse():
    g, x0, eps, sigma = _draw(1)
    eps_hat = eps + 0.1 * torch.randn(eps.shape, generator=g)
    s4 = sigma.view(-1, 1, 1, 1)
    x_in = x0 + s4 * eps
    got = sigma_space_mse(x0, eps, x_in, x_in - s4 * eps_hat, sigma, v_prediction=False)
    torch.testing.assert_close(got, (eps_hat - eps).pow(2).flatten(1).mean(1), rtol=1e-4, atol=1e-6)
