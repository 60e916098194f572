"""Dynamics and noise operators: drifts as in math.md §0.1, the projected noise of Eq 25 and its Itô trace."""

import torch
from conftest import make_mixture

import diffdensity as dd
from diffdensity._checks import flat_dot
from diffdensity.dynamics import HDODE, PFODE, IsotropicNoise, ProjectedNoise, ReverseSDE
from diffdensity.evaluation import Divergence, evaluate


def test_drifts_match_the_formulas(schedule):
    m = make_mixture(3, seed=1).diffused(schedule)
    lam = 1.5
    x = m.sample(6, lam, generator=torch.Generator().manual_seed(0))
    ev = evaluate(m, lam, x)
    lt = torch.tensor(lam, dtype=torch.float64)
    f, g2 = schedule.f(lt), schedule.g2(lt)
    assert torch.allclose(PFODE(schedule).drift(ev), f * x + 0.5 * g2 * ev.s, rtol=1e-12, atol=0)
    assert torch.allclose(ReverseSDE(schedule).drift(ev), f * x + g2 * ev.s, rtol=1e-12, atol=0)
    assert torch.equal(HDODE(schedule).drift(ev), ReverseSDE(schedule).drift(ev))
    assert not PFODE(schedule).stochastic and ReverseSDE(schedule).stochastic and not HDODE(schedule).stochastic
    noise = ReverseSDE(schedule).noise(lam, x)
    assert isinstance(noise, IsotropicNoise) and torch.equal(noise.lap_weight, g2)
    dw = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=x.dtype)
    assert torch.allclose(noise.apply(ev, dw), g2.sqrt() * dw, rtol=1e-14, atol=0)


def test_projected_noise_is_orthogonal_to_the_score_and_its_trace_exact():
    """G = c(I − ŝŝᵀ): sᵀG dW = 0 (math.md §2.8 item 8) and lap_weight·Δ + trace_rest = tr(GGᵀ∇²log p) =
    c² tr((I − ŝŝᵀ)H) with the oracle's exact Hessian (D = 8)."""
    s = dd.VP()
    m = make_mixture(8, seed=4).diffused(s)
    lam = 0.0
    x = m.sample(16, lam, generator=torch.Generator().manual_seed(0))
    ev = evaluate(m, lam, x, {"lap", "hvp"}, Divergence("exact"))
    c2 = torch.linspace(0.1, 2.0, 16, dtype=torch.float64)
    noise = ProjectedNoise(c2)
    dw = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=x.dtype)
    gdw = noise.apply(ev, dw)
    cos = flat_dot(ev.s, gdw) / (ev.s.norm(dim=1) * gdw.norm(dim=1))
    assert cos.abs().max() < 1e-12
    assert torch.allclose(noise.apply(ev, gdw / c2.sqrt()[:, None]), gdw, rtol=1e-10, atol=1e-12)  # P² = P
    H = m.hessian(x, lam)
    sh = ev.s / ev.s.norm(dim=1, keepdim=True)
    P = torch.eye(8, dtype=torch.float64) - sh[:, :, None] * sh[:, None, :]
    exact = c2 * torch.einsum("bij,bji->b", P, H)
    got = noise.lap_weight * ev.lap + noise.trace_rest(ev)
    assert (got - exact).abs().max() < 1e-10 * exact.abs().max()
    assert ProjectedNoise.needs == {"hvp"} and IsotropicNoise.needs == frozenset()
