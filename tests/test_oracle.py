import math

import pytest
import torch
from conftest import make_mixture

import diffdensity as dd


def autograd_score(m, x, lam):
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(m.log_prob(x, lam).sum(), x, create_graph=True)
    return x, g


@pytest.mark.parametrize("D,diagonal", [(1, False), (2, False), (2, True), (64, False), (64, True)])
def test_score_is_grad_log_prob(schedule, D, diagonal):
    m = make_mixture(D, diagonal=diagonal).diffused(schedule)
    for lam in (schedule.lambda_min, 0.0, schedule.lambda_max - 1.0):
        x = m.sample(16, lam, generator=torch.Generator().manual_seed(1))
        _, g = autograd_score(m, x, lam)
        assert (g - m.score(x, lam)).abs().max() < 1e-6 * max(1.0, g.abs().max().item())


def test_image_shaped_means():
    g = torch.Generator().manual_seed(0)
    gm = dd.GaussianMixture(torch.randn(3, 8, 8, generator=g, dtype=torch.float64), torch.tensor([0.3, 0.5, 0.4]))
    x = gm.sample(5, generator=g)
    assert x.shape == (5, 8, 8)
    assert gm.log_prob(x).shape == (5,)
    m = gm.diffused(dd.VP())
    assert m.score(x, 1.0).shape == (5, 8, 8)
    _, sc = autograd_score(m, x, 1.0)
    assert (sc - m.score(x, 1.0)).abs().max() < 1e-8
    stds = 0.2 + torch.rand(3, 8, 8, generator=g, dtype=torch.float64)
    gm2 = dd.GaussianMixture(gm.means.reshape(3, 8, 8), stds)
    assert gm2.diffused(dd.VE()).grad_laplacian(x, 0.0).shape == (5, 8, 8)


def test_log_prob_matches_torch_distributions():
    gm = make_mixture(3, K=2, diagonal=True)
    x = gm.sample(7, generator=torch.Generator().manual_seed(2))
    comps = torch.distributions.Independent(torch.distributions.Normal(gm.means, gm.stds), 1)
    ref = torch.distributions.MixtureSameFamily(torch.distributions.Categorical(gm.weights), comps).log_prob(x)
    assert torch.allclose(gm.log_prob(x), ref, atol=1e-10)
    # at λ_max under VE (α = 1) the diffused density is the data density convolved with N(0, 0.002²)
    m = gm.diffused(dd.VE())
    assert (m.log_prob(x, m.schedule.lambda_max) - ref).abs().max() < 1e-3


@pytest.mark.parametrize("D,diagonal", [(1, False), (2, True), (8, False)])
def test_hessian_laplacian_and_its_gradient(schedule, D, diagonal):
    m = make_mixture(D, diagonal=diagonal, seed=3).diffused(schedule)
    lam = 0.5
    x = m.sample(6, lam, generator=torch.Generator().manual_seed(4))
    xg, g = autograd_score(m, x, lam)
    H = torch.stack([torch.autograd.grad(g[:, i].sum(), xg, retain_graph=True)[0] for i in range(D)], 1)
    scale = max(1.0, H.abs().max().item())
    assert (H - m.hessian(x, lam)).abs().max() < 1e-8 * scale
    assert (H.diagonal(dim1=1, dim2=2).sum(-1) - m.laplacian(x, lam)).abs().max() < 1e-8 * scale
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(5), dtype=x.dtype)
    assert (torch.einsum("bij,bj->bi", H, v) - m.hvp(x, lam, v)).abs().max() < 1e-8 * scale
    x2 = x.clone().requires_grad_(True)
    (gl,) = torch.autograd.grad(m.laplacian(x2, lam).sum(), x2)
    assert (gl - m.grad_laplacian(x, lam)).abs().max() < 1e-7 * max(1.0, gl.abs().max().item())


def test_laplacian_d64(schedule):
    m = make_mixture(64, seed=6).diffused(schedule)
    x = m.sample(3, 0.0, generator=torch.Generator().manual_seed(7))
    xg, g = autograd_score(m, x, 0.0)
    tr = sum(torch.autograd.grad(g[:, i].sum(), xg, retain_graph=True)[0][:, i] for i in range(64))
    assert (tr - m.laplacian(x, 0.0)).abs().max() < 1e-8 * max(1.0, tr.abs().max().item())


def test_posterior_tweedie_and_monte_carlo(schedule):
    """Posterior mean/variance against Monte Carlo from the joint (x0, x_λ): E[x0 − E[x0|x]] = 0 and
    E[(x0 − E[x0|x])²] = E[Var(x0|x)], each within 4 standard errors."""
    gm = make_mixture(2, seed=8, diagonal=True)
    m = gm.diffused(schedule)
    lam = 0.0
    g = torch.Generator().manual_seed(9)
    n = 40000
    x0 = gm.sample(n, generator=g)
    a, s = schedule.alpha_sigma(torch.tensor(lam, dtype=torch.float64))
    x = a * x0 + s * torch.randn(x0.shape, generator=g, dtype=x0.dtype)
    post = m.posterior(x, lam)
    mean = post.mean()
    # Tweedie: E[x0|x] = (x + σ² ∇log p_λ(x)) / α, exactly
    assert (mean - (x + s**2 * m.score(x, lam)) / a).abs().max() < 1e-9
    r = x0 - mean
    se = r.std(0) / math.sqrt(n)
    assert (r.mean(0).abs() < 4 * se).all()
    r2 = r**2 - post.variance()
    assert (r2.mean(0).abs() < 4 * r2.std(0) / math.sqrt(n)).all()
    # posterior sampling: x0' ~ p(x0|x) with x ~ p_λ is again distributed as p0 (compare moments)
    x0p = post.sample(g)
    assert ((x0p.mean(0) - x0.mean(0)).abs() < 4 * math.sqrt(2) * x0.std(0) / math.sqrt(n)).all()
    assert torch.allclose(post.weights.sum(1), torch.ones(n, dtype=x.dtype))


def test_posterior_mode():
    # Gaussian data: the mode is the posterior mean μ + α c² (α²c² + σ²)^{-1} (x − α μ) (math.md §1.5)
    gm = dd.GaussianMixture(torch.tensor([[0.7, -0.2]], dtype=torch.float64), torch.tensor([0.5], dtype=torch.float64))
    m = gm.diffused(dd.VP())
    x = torch.tensor([[0.3, 1.0], [-2.0, 0.1]], dtype=torch.float64)
    lam = -1.0
    a, s = m.schedule.alpha_sigma(torch.tensor(lam, dtype=torch.float64))
    exp = gm.means + a * 0.25 / (a**2 * 0.25 + s**2) * (x - a * gm.means)
    post = m.posterior(x, lam)
    assert (post.mode() - exp).abs().max() < 1e-9
    # a bimodal 1-D posterior: the mode is the argmax of the density on a fine grid
    gm2 = dd.GaussianMixture(torch.tensor([[-1.0], [1.2]], dtype=torch.float64), torch.tensor([0.4, 0.3]))
    post2 = gm2.diffused(dd.VP()).posterior(torch.tensor([[0.1]], dtype=torch.float64), -1.0)
    grid = torch.linspace(-3, 3, 600001, dtype=torch.float64)[:, None]
    vals = torch.cat([post2.log_prob(c) for c in grid.split(100000)])  # one conditioning x broadcasts
    assert abs(post2.mode().item() - grid[vals.argmax()].item()) < 2e-5


def test_bad_input():
    with pytest.raises(ValueError, match="stds has shape"):
        dd.GaussianMixture(torch.zeros(3, 2), torch.ones(2))
    with pytest.raises(ValueError, match="positive"):
        dd.GaussianMixture(torch.zeros(3, 2), torch.tensor([1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="weights has shape"):
        dd.GaussianMixture(torch.zeros(3, 2), torch.ones(3), torch.ones(2))
    with pytest.raises(ValueError, match="positive"):
        dd.GaussianMixture(torch.zeros(3, 2), torch.ones(3), torch.tensor([1.0, -1.0, 1.0]))
    with pytest.raises(ValueError, match="NaN"):
        dd.GaussianMixture(torch.tensor([[float("nan"), 0.0]]), torch.ones(1))
    with pytest.raises(ValueError, match="means has shape"):
        dd.GaussianMixture(torch.zeros(3), torch.ones(3))
    m = dd.GaussianMixture(torch.zeros(2, 2), torch.ones(2)).diffused(dd.VP())
    with pytest.raises(ValueError, match="sample shape"):
        m.score(torch.zeros(4, 3), 0.0)
    with pytest.raises(ValueError, match="outside"):
        m.score(torch.zeros(4, 2), 11.0)
    with pytest.raises(ValueError, match="NaN"):
        m.log_prob(torch.full((4, 2), float("nan")), 0.0)
