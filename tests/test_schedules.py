import math

import pytest
import torch
from conftest import SCHEDULES

import diffdensity as dd
from diffdensity.schedules import Schedule, schedule_from_config


def lam_grid(s, n=401):
    return torch.linspace(s.lambda_min, s.lambda_max, n, dtype=torch.float64)


def autograd_derivative(fn, lam):
    lam = lam.clone().requires_grad_(True)
    y = fn(lam)
    if not y.requires_grad:  # constant in λ (e.g. VE's α = 1)
        return torch.zeros_like(lam)
    (d,) = torch.autograd.grad(y.sum(), lam)
    return d


def test_lambda_is_log_snr(schedule):
    lam = lam_grid(schedule)
    a, s = schedule.alpha_sigma(lam)
    assert torch.allclose(torch.log(a**2 / s**2), lam, atol=1e-9, rtol=0)


def test_f_is_dlogalpha_and_g2_is_sigma2(schedule):
    lam = lam_grid(schedule)
    f_auto = autograd_derivative(lambda l: torch.log(schedule.alpha_sigma(l)[0]), lam)
    assert (schedule.f(lam) - f_auto).abs().max() < 1e-6
    assert (schedule.log_alpha(lam) - torch.log(schedule.alpha_sigma(lam)[0])).abs().max() < 1e-9
    sig2 = schedule.alpha_sigma(lam)[1] ** 2
    assert (schedule.g2(lam) - sig2).abs().max() < 1e-12
    g2p_auto = autograd_derivative(lambda l: schedule.alpha_sigma(l)[1] ** 2, lam)
    assert (schedule.g2_prime(lam) - g2p_auto).abs().max() < 1e-6


def test_generic_schedule_needs_only_alpha_sigma():
    class OnlyAlphaSigma(Schedule):  # VP again, with no closed forms: f and g2' come from autograd
        def alpha_sigma(self, lam):
            lam = torch.as_tensor(lam, dtype=torch.float64)
            return torch.sigmoid(lam).sqrt(), torch.sigmoid(-lam).sqrt()

    generic, vp = OnlyAlphaSigma(-10, 10), dd.VP()
    lam = lam_grid(vp)
    assert (generic.f(lam) - 0.5 * torch.sigmoid(-lam)).abs().max() < 1e-12
    assert (generic.g2(lam) - vp.g2(lam)).abs().max() < 1e-12
    assert (generic.g2_prime(lam) - vp.g2_prime(lam)).abs().max() < 1e-12


def test_flow_matching_alpha_plus_sigma_is_one():
    s = dd.FlowMatching()
    a, sig = s.alpha_sigma(lam_grid(s))
    assert (a + sig - 1).abs().max() < 1e-12


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_time_round_trip(name):
    s = SCHEDULES[name]()
    lam = lam_grid(s)
    t = s.lam_to_time(lam)
    assert (s.time_to_lam(t) - lam).abs().max() < 1e-6
    if name == "VE":  # the VE time is σ itself
        assert torch.allclose(t, s.alpha_sigma(lam)[1])
    if name == "FlowMatching":  # α = 1 − t, σ = t
        a, sig = s.alpha_sigma(lam)
        assert torch.allclose(sig, t) and torch.allclose(a, 1 - t)


def test_ve_defaults_match_sigma_range():
    s = dd.VE()
    assert math.isclose(s.prior_std, 80.0, rel_tol=1e-9)
    assert math.isclose(float(s.alpha_sigma(torch.tensor(s.lambda_max, dtype=torch.float64))[1]), 0.002, rel_tol=1e-9)


def test_prior_log_prob_and_sample(schedule):
    g = torch.Generator().manual_seed(0)
    x = schedule.sample_prior((20000, 3), generator=g, dtype=torch.float64)
    assert x.shape == (20000, 3)
    sd = schedule.prior_std
    assert abs(x.std().item() / sd - 1) < 4 * (1 / math.sqrt(2 * x.numel()))
    ref = torch.distributions.Normal(0.0, sd).log_prob(x[:5]).sum(1)
    assert torch.allclose(schedule.prior_log_prob(x[:5]), ref, atol=1e-9)


def test_config_round_trip(schedule):
    assert schedule_from_config(schedule.config()) == schedule


def test_bad_input_errors():
    with pytest.raises(ValueError, match="lambda_min"):
        dd.VP(lambda_min=5, lambda_max=1)
    s = dd.VP()
    with pytest.raises(ValueError, match="outside"):
        s.check_lam(12.0)
    with pytest.raises(ValueError, match="NaN"):
        s.check_lam(float("nan"))
    with pytest.raises(ValueError, match="NaN"):
        s.prior_log_prob(torch.tensor([[float("nan")]]))
    with pytest.raises(ValueError, match="steps"):
        s.grid(0)


@pytest.mark.parametrize("name", list(SCHEDULES))
@pytest.mark.parametrize("var", ["lambda", "t", "sigma", "log_sigma"])
def test_time_variables_invert_and_differentiate(name, var):
    s = SCHEDULES[name]()
    tv = s.time_variable(var)
    lam = lam_grid(s, 41)
    tau = tv.to_tau(lam)
    assert (tv.to_lam(tau) - lam).abs().max() < 1e-8
    d = autograd_derivative(tv.to_lam, tau)
    assert torch.allclose(tv.dlam_dtau(tau), d, rtol=1e-8, atol=1e-10)
    assert s.time_variable("natural").name == s.time_variable(None).name == s.natural_time


@pytest.mark.parametrize("kind", ["lambda", "t", "sigma", "edm", "natural"])
def test_grid_kinds(schedule, kind):
    g = schedule.grid(10, dtype=torch.float64, kind=kind)
    assert g.numel() == 11 and g[0] == schedule.lambda_min and g[-1] == schedule.lambda_max
    assert (g[1:] > g[:-1]).all()
    down = schedule.grid(10, schedule.lambda_max, -1.0, dtype=torch.float64, kind=kind)
    assert down[0] == schedule.lambda_max and down[-1] == -1.0 and (down[1:] < down[:-1]).all()
    if kind == "edm":  # Karras et al. Eq. 5 in σ̃ = exp(−λ/2), ρ = 7
        r = torch.exp(-g / 14)
        assert torch.allclose(r[1:] - r[:-1], (r[1] - r[0]).expand(10), rtol=1e-9)
    if kind == "sigma":
        sig = schedule.alpha_sigma(g)[1]
        assert torch.allclose(sig[1:] - sig[:-1], (sig[1] - sig[0]).expand(10), rtol=1e-8)
    with pytest.raises(ValueError, match="grid"):
        schedule.grid(10, kind="cosine")


def test_noise_and_denoise_are_the_forward_kernel_and_its_inverse(schedule):
    """x_λ = α x₀ + σ ε and x̂₀ = (x − σ ε)/α, λ one per sample or one for all (math.md §0.1)."""
    g = torch.Generator().manual_seed(0)
    x0, eps = (torch.randn(5, 3, 2, generator=g, dtype=torch.float64) for _ in range(2))
    lam = torch.linspace(schedule.lambda_min + 1, schedule.lambda_max - 1, 5, dtype=torch.float64)
    a, s = schedule.alpha_sigma(lam)
    x = schedule.noise(x0, eps, lam)
    assert torch.equal(x, a[:, None, None] * x0 + s[:, None, None] * eps)
    assert torch.allclose(schedule.denoise(x, eps, lam), x0, atol=1e-9)
    a1, s1 = schedule.alpha_sigma(torch.tensor(0.5, dtype=torch.float64))
    assert torch.equal(schedule.noise(x0, eps, 0.5), a1 * x0 + s1 * eps)
