"""High-density sampling (Algorithm 1, math.md §1.6) and the exact mode-tracking ODE (§1.5) on the exact oracle
(VP, λ ∈ [−10, 10]); the checkable properties of §1.8 items 6–8."""

import math

import pytest
import torch
from conftest import make_mixture

import diffdensity as dd
from diffdensity.dynamics import HDODE
from diffdensity.integrate import integrate_ode
from diffdensity.modes import posterior_mode_continuation, score_derivatives, transition_coefficients
from diffdensity.sampling import split_steps, threshold_to_lam
from diffdensity.solvers.sde import brownian_increments

VP = dd.VP()
LMIN, LMAX = VP.lambda_min, VP.lambda_max


def exact_prior(m):
    return lambda z: m.log_prob(z, LMIN)


@pytest.mark.parametrize("D", [2, 16])
def test_hd_ode_endpoint_is_the_gaussian_posterior_mode(D):
    """Gaussian data ⇒ H ≡ 0 (math.md §1.5): the HD-ODE from x_t ends at the mode of p(x_{λmax} | x_t), in closed
    form μ' = (α_m μ/v_m + (a/v) x_t)/(1/v_m + a²/v) with v_m = α_m² c² + σ_m², (a, v) = (α_{t|λ}, σ²_{t|λ})."""
    g = torch.Generator().manual_seed(0)
    mu, c = torch.randn(1, D, generator=g, dtype=torch.float64), 0.7
    m = dd.GaussianMixture(mu, torch.tensor([c], dtype=torch.float64)).diffused(VP)
    lam_t = -1.0
    xt = m.sample(16, lam_t, generator=g)
    y = integrate_ode(m, HDODE(VP), xt, lam_t, LMAX, solver="dopri5", rtol=1e-9, atol=1e-9, progress=False).x
    am, sm = (float(v) for v in VP.alpha_sigma(torch.tensor(LMAX, dtype=torch.float64)))
    vm = am**2 * c**2 + sm**2
    a, v = transition_coefficients(VP, lam_t, LMAX)
    mode = (am * mu / vm + (a / v) * xt) / (1 / vm + a * a / v)
    assert (y - mode).abs().max() < 1e-3
    assert (y - m.posterior(xt, lam_t).mode()).abs().max() < 1e-3  # the clean-data mode differs by O(σ²_max c²)
    # and the full mode-tracking ODE agrees (H vanishes identically)
    yt = dd.mode_tracking(m, xt, lam_t, steps=128, progress=False)
    assert (yt - mode).abs().max() < 1e-3


def test_score_derivatives_match_the_oracle():
    m = make_mixture(5, seed=4).diffused(VP)
    x = m.sample(6, 0.5, generator=torch.Generator().manual_seed(0))
    s, J, glap = score_derivatives(m, x, 0.5)
    assert torch.allclose(s, m.score(x, 0.5))
    assert (J - m.hessian(x, 0.5)).abs().max() < 1e-10
    assert (glap - m.grad_laplacian(x, 0.5)).abs().max() < 1e-10


@pytest.mark.parametrize("D", [2, 16])
def test_mode_tracking_ends_at_the_newton_continuation_mode(D):
    """§1.8 item 6: the full ODE (with H) ends at the local mode of p(x_{λmax} | x_t) followed by Newton
    continuation (within 1e-3; Heun, 256 steps, measured ≤ 1e-4), the HD-ODE (H = 0) measurably elsewhere."""
    m = make_mixture(D, K=3, seed=1, std=0.4).diffused(VP)
    lam_t = -1.0
    xt = m.sample(8, lam_t, generator=torch.Generator().manual_seed(1))
    ref = posterior_mode_continuation(m, xt, lam_t, steps=200)
    y, nfe = dd.mode_tracking(m, xt, lam_t, steps=256, return_nfe=True, progress=False)
    assert (y - ref).abs().max() < 1e-3
    assert nfe == 2 * 256 * 2 - 1  # Heun: 2 stages × (plain score + one with third derivatives), none at λ_t
    hd = integrate_ode(m, HDODE(VP), xt, lam_t, LMAX, solver="dopri5", rtol=1e-9, atol=1e-9, progress=False).x
    gap = (hd - ref).norm(dim=1)
    assert gap.max() > 5e-3 and gap.max() > 20 * (y - ref).norm(dim=1).max()
    # a stationary point of the posterior: its gradient vanishes there
    a, v = transition_coefficients(VP, lam_t, LMAX)
    assert (m.score(y, LMAX) + (a / v) * (xt - a * y)).abs().max() * v < 1e-3


def test_mode_tracking_refuses_large_dimensions_and_bad_input():
    m = make_mixture(600, K=1).diffused(VP)
    with pytest.raises(ValueError, match="max_dim"):
        dd.mode_tracking(m, torch.zeros(1, 600, dtype=torch.float64), 0.0)
    m2 = make_mixture(2).diffused(VP)
    with pytest.raises(ValueError, match="lam_end"):
        dd.mode_tracking(m2, torch.zeros(1, 2, dtype=torch.float64), 3.0, lam_end=1.0)


@pytest.mark.parametrize("D", [2, 16])
def test_hd_log_density_rises_as_the_threshold_falls(D):
    """§1.8 item 7: the mean exact log p of HD samples rises monotonically as λ_thr falls over {8, 6, 4, 2, 0}
    and exceeds that of PF-ODE samples from the same latents (measured D=2: −1.69 → −1.04; D=16: −8.59 → −1.68)."""
    m = make_mixture(D, K=3, seed=1, std=0.4).diffused(VP)
    xT = VP.sample_prior((256, D), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    pf = m.log_prob(dd.sample_ode(m, xT, steps=256, solver="heun", progress=False).x, LMAX).mean()
    means = [
        m.log_prob(dd.sample_hd(m, xT, thr, steps=256, solver="heun", progress=False).x, LMAX).mean()
        for thr in (8, 6, 4, 2, 0)
    ]
    assert means[0] > pf
    assert all(b > a for a, b in zip(means, means[1:]))
    assert means[-1] - pf > 0.5


def test_tracked_log_density_along_sample_hd_ode_first():
    """first="ode": PF-ODE then HD-ODE, exact divergence. Heun is order 2: the error at 2N is ≈ ¼ of that at N
    (Richardson), so the tolerance at N = 256 is 1.5·err(128)/4, and below 1e-3 (measured 1.7e-4)."""
    m = make_mixture(2, K=3, seed=1, std=0.4).diffused(VP)
    xT = m.sample(64, LMIN, generator=torch.Generator().manual_seed(0))
    err = {}
    for steps in (128, 256):
        hd = dd.sample_hd(
            m,
            xT,
            2.0,
            steps=steps,
            solver="heun",
            track_logp=True,
            divergence="exact",
            prior=exact_prior(m),
            progress=False,
        )
        assert hd.nfe == 2 * steps
        err[steps] = (hd.logp - m.log_prob(hd.x, LMAX)).abs().max()
    assert err[256] < 1.5 * err[128] / 4 and err[256] < 1e-3
    # Euler is order 1: halving
    e = [
        (lambda h: (h.logp - m.log_prob(h.x, LMAX)).abs().max())(
            dd.sample_hd(m, xT, 2.0, steps=n, track_logp=True, divergence="exact", prior=exact_prior(m), progress=False)
        )
        for n in (128, 256)
    ]
    assert 1.6 < e[0] / e[1] < 2.4


def test_tracked_log_density_along_sample_hd_sde_first():
    """first="sde": the corrected Theorem-1 tracker to λ_thr = 0, then the HD-ODE (Heun, exact divergence).
    The final error is the SDE leg's error plus the HD leg's Heun error (< 1e-3, previous test); the SDE leg's
    error falls with order ≈ 1 on one Brownian path (math.md §1.2b; measured RMS 0.071, 0.049, 0.020). About 6 s:
    three SDE step counts on one fine Brownian path, each with an exact-divergence HD leg."""
    D, n = 2, 64
    m = make_mixture(D, K=3, seed=1, std=0.4).diffused(VP)
    xT = m.sample(n, LMIN, generator=torch.Generator().manual_seed(0))
    fine = 2048
    dwf = torch.randn(fine, n, D, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * math.sqrt(
        10 / fine
    )
    rms = []
    for f in (4, 2, 1):
        at_thr = {}

        def grab(info):
            if abs(info["lam"]) < 1e-12 and info["logp"] is not None and "x" not in at_thr:
                at_thr.update(x=info["x"].clone(), logp=info["logp"].clone())

        hd = dd.sample_hd(
            m,
            xT,
            0.0,
            steps=2 * fine // f,
            first="sde",
            solver="heun",
            track_logp=True,
            divergence="exact",
            prior=exact_prior(m),
            dw=brownian_increments(dwf, f),
            callback=grab,
            progress=False,
        )
        err = hd.logp - m.log_prob(hd.x, LMAX)
        err_leg1 = at_thr["logp"] - m.log_prob(at_thr["x"], 0.0)
        assert (err - err_leg1).abs().max() < 1e-3  # the HD leg adds only its Heun error
        rms.append(float(err.pow(2).mean().sqrt()))
    assert rms[-1] < 0.04 and 2.0 < rms[0] / rms[-1] < 8.0  # 4× the steps: order 1 → 4, order ½ → 2


def test_sde_leg_costs_no_extra_score_evaluation():
    """Tracking along the SDE leg adds no divergence and no score evaluation (Theorem 1): the corrected tracker's
    evaluation at the leg's end also serves as the HD leg's first stage, so the tracked run costs what the plain run
    costs; the EM tracker makes no end evaluation at all."""
    m = make_mixture(3, seed=2).diffused(VP)
    grads = []

    class Spy:
        schedule = VP

        def score(self, x, lam):
            if torch.is_grad_enabled() and x.requires_grad:
                grads.append(float(torch.as_tensor(lam).reshape(-1)[0]))
            return m.score(x, lam)

    xT = VP.sample_prior((8, 3), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    kw = dict(steps=100, first="sde", progress=False)
    plain = dd.sample_hd(Spy(), xT, 2.0, generator=torch.Generator().manual_seed(1), **kw)
    assert plain.logp is None and plain.nfe == 100 and not grads
    cor = dd.sample_hd(Spy(), xT, 2.0, generator=torch.Generator().manual_seed(1), track_logp=True, **kw)
    assert cor.nfe == 100 and torch.equal(cor.x, plain.x)
    assert grads and min(grads) >= 2.0 - 1e-12  # divergences only on the HD leg
    em = dd.sample_hd(Spy(), xT, 2.0, generator=torch.Generator().manual_seed(1), track_logp=True, tracker="em", **kw)
    assert em.nfe == 100


def test_threshold_conversions_and_step_split():
    for s in (dd.VP(), dd.VE(), dd.FlowMatching()):
        lam = 1.5
        t = float(s.lam_to_time(torch.tensor(lam, dtype=torch.float64)))
        assert abs(threshold_to_lam(s, t, "t") - lam) < 1e-9
        sig = float(s.alpha_sigma(torch.tensor(lam, dtype=torch.float64))[1])
        assert abs(threshold_to_lam(s, sig, "sigma") - lam) < 1e-9
    assert split_steps(VP, 2.0, 1000) == (600, 400)
    assert split_steps(VP, 2.0, 1000, reference_split=True) == (400, 600)  # the reference code's swap
    assert split_steps(VP, LMIN, 10) == (0, 10) and split_steps(VP, LMAX, 10) == (10, 0)
    m = make_mixture(2).diffused(VP)
    xT = VP.sample_prior((4, 2), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a = dd.sample_hd(m, xT, 2.0, steps=50, progress=False)
    b = dd.sample_hd(m, xT, float(VP.lam_to_time(torch.tensor(2.0))), steps=50, threshold_kind="t", progress=False)
    assert torch.allclose(a.x, b.x, atol=1e-5)
    # threshold at λ_max: plain PF-ODE sampling; at λ_min: the HD-ODE all the way
    assert torch.equal(
        dd.sample_hd(m, xT, LMAX, steps=50, progress=False).x, dd.sample_ode(m, xT, steps=50, progress=False).x
    )
    with pytest.raises(ValueError, match="first"):
        dd.sample_hd(m, xT, 2.0, first="pf")
    with pytest.raises(ValueError, match="outside"):
        dd.sample_hd(m, xT, 12.0)
    with pytest.raises(ValueError, match="threshold_kind"):
        dd.sample_hd(m, xT, 2.0, threshold_kind="snr")
    with pytest.raises(ValueError, match="noise range"):
        dd.sample_hd(m, xT, 5.0, threshold_kind="sigma")
