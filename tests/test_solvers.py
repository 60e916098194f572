"""Solvers on problems with known solutions: fitted convergence orders, NFE counts, adaptive accuracy."""

import math

import numpy as np
import pytest
import torch

from diffdensity.solvers import brownian_increments, odeint, odeint_adaptive, sdeint


def linear_ode(lam, y):
    # y = (u, w): du/dλ = −u + sin λ, dw/dλ = u (an augmented scalar driven by the state)
    u, w = y
    return -u + math.sin(float(lam)), u


def exact_linear(lam, u0=1.0):
    # u(λ) = (u0 − c) e^{−λ} + (sin λ − cos λ)/2 with u(0) = u0, c = −1/2; w = ∫ u
    c = -0.5
    u = (u0 - c) * math.exp(-lam) + 0.5 * (math.sin(lam) - math.cos(lam))
    w = (u0 - c) * (1 - math.exp(-lam)) + 0.5 * (-math.cos(lam) + 1 - math.sin(lam))
    return u, w


def fitted_order(hs, errs):
    return np.polyfit(np.log(hs), np.log(errs), 1)[0]


@pytest.mark.parametrize("warp", [1.0, 2.0])
@pytest.mark.parametrize("method,order", [("euler", 1.0), ("heun", 2.0), ("ab2", 2.0)])
def test_fixed_step_orders(method, order, warp):
    """Uniform grids, and grids uniform in √λ (warp 2: steps growing from ~0 to 2/n, so AB2's variable-step weights
    are exercised)."""
    T = 2.0
    ue, we = exact_linear(T)
    hs, errs = [], []
    for n in (16, 32, 64, 128, 256):
        y0 = (torch.tensor([1.0], dtype=torch.float64), torch.tensor([0.0], dtype=torch.float64))
        grid = T * torch.linspace(0, 1, n + 1, dtype=torch.float64) ** warp
        sol = odeint(linear_ode, y0, grid, method=method)
        assert sol.nfe == n * (2 if method == "heun" else 1)
        hs.append(T / n)
        errs.append(abs(sol.y[0].item() - ue) + abs(sol.y[1].item() - we))
    assert abs(fitted_order(hs, errs) - order) < 0.2


def test_euler_trapezoid_quadrature_is_second_order_in_its_variable():
    """With an exact state (dx/dτ = 1, x = τ) the integral q = ∫ x⁴ du, u = τ², accumulates by the trapezoid rule in
    u (the change of variable through dτ/du = 1/(2τ)): error order 2, against order 1 for Euler's rectangle rule,
    at one evaluation per step. The last step keeps the rectangle rule; its share is taken out to see the order."""
    f = lambda tau, y: (torch.ones_like(y[0]), y[0] ** 4 * 2 * tau)  # dq/dτ = x⁴ du/dτ
    hs, trap, rect = [], [], []
    for n in (16, 32, 64, 128):
        taus = torch.linspace(1.0, 2.0, n + 1, dtype=torch.float64)
        y0 = (torch.tensor([1.0], dtype=torch.float64), torch.tensor([0.0], dtype=torch.float64))
        sol = odeint(f, y0, taus, "euler", quadrature=(1, taus**2, 1 / (2 * taus)))
        ref = odeint(f, y0, taus, "euler")
        assert sol.nfe == ref.nfe == n and torch.equal(sol.y[0], ref.y[0])  # the state is plain Euler
        exact = (2.0**6 - 1.0) / 3  # ∫ 2τ⁵ dτ from 1 to 2
        a = 2.0 - 1.0 / n  # the last step: rectangle in τ from a to 2, against its exact share
        last, last_exact = (1.0 / n) * 2 * a**5, (2.0**6 - a**6) / 3
        hs.append(1.0 / n)
        trap.append(abs((sol.y[1].item() - last) - (exact - last_exact)))
        rect.append(abs(ref.y[1].item() - exact))
    assert abs(fitted_order(hs, trap) - 2.0) < 0.2 and abs(fitted_order(hs, rect) - 1.0) < 0.2
    assert trap[-1] < 1e-3 < rect[-1]
    with pytest.raises(ValueError, match="quadrature"):
        odeint(f, y0, taus, "heun", quadrature=(1, taus, torch.ones_like(taus)))


def test_decreasing_grid_inverts():
    f = lambda lam, y: (-y[0],)
    fwd = odeint(
        f, (torch.tensor([1.0], dtype=torch.float64),), torch.linspace(0, 1, 2001, dtype=torch.float64), "heun"
    )
    back = odeint(f, fwd.y, torch.linspace(1, 0, 2001, dtype=torch.float64), "heun")
    assert abs(back.y[0].item() - 1.0) < 1e-6


def test_dopri5_accuracy_and_nfe():
    T = 2.0
    ue, we = exact_linear(T)
    y0 = (torch.tensor([1.0], dtype=torch.float64), torch.tensor([0.0], dtype=torch.float64))
    loose = odeint_adaptive(linear_ode, y0, 0.0, T, rtol=1e-4, atol=1e-4)
    tight = odeint_adaptive(linear_ode, y0, 0.0, T, rtol=1e-9, atol=1e-9)
    assert abs(tight.y[0].item() - ue) < 1e-6 and abs(tight.y[1].item() - we) < 1e-6
    assert 0 < loose.nfe < tight.nfe


def _strong_errors(drift_diff, exact, x0, T, n_paths, fine, levels, seed):
    g = torch.Generator().manual_seed(seed)
    dw_fine = math.sqrt(T / fine) * torch.randn(fine, n_paths, 1, generator=g, dtype=torch.float64)
    w_T = dw_fine.sum(0)
    x_exact = exact(w_T, dw_fine)
    hs, errs = [], []
    for n in levels:
        dw = brownian_increments(dw_fine, fine // n)
        sol = sdeint(
            drift_diff,
            (torch.full((n_paths, 1), x0, dtype=torch.float64),),
            torch.linspace(0, T, n + 1, dtype=torch.float64),
            dw=dw,
        )
        assert sol.nfe == n
        hs.append(T / n)
        errs.append((sol.y[0] - x_exact).abs().mean().item())
    return hs, errs


class GBM:
    """dX = μ X dλ + σ X dW: multiplicative noise, so Euler–Maruyama has strong order ½."""

    mu, sig = 0.5, 1.0

    def evaluate(self, lam, y):
        return y[0]

    def drift(self, x):
        return (self.mu * x,)

    def diffusion(self, x, dw):
        return (self.sig * x * dw,)


class OU(GBM):
    """dX = −θ X dλ + σ dW: additive noise, where Euler–Maruyama coincides with Milstein (strong order 1)."""

    theta, sig = 1.5, 0.8

    def drift(self, x):
        return (-self.theta * x,)

    def diffusion(self, x, dw):
        return (self.sig * dw,)


def test_euler_maruyama_strong_order_half_multiplicative_noise():
    T, p = 1.0, GBM()
    exact = lambda w, dw: 1.0 * torch.exp((p.mu - 0.5 * p.sig**2) * T + p.sig * w)
    hs, errs = _strong_errors(p, exact, 1.0, T, 4000, 2**12, (2**4, 2**5, 2**6, 2**7, 2**8), 0)
    assert abs(fitted_order(hs, errs) - 0.5) < 0.2


def test_euler_maruyama_on_ornstein_uhlenbeck():
    """OU's exact solution on the same Brownian path, x_T = x0 e^{−θT} + σ ∫ e^{−θ(T−s)} dW_s (the integral as a
    fine Riemann sum of the shared increments). Additive noise: EM's strong order is 1 here (it equals Milstein)."""
    T, p, fine = 1.0, OU(), 2**14

    def exact(w, dw):
        s = torch.linspace(0, T, fine + 1, dtype=torch.float64)[:-1] + 0.5 * T / fine
        return 2.0 * math.exp(-p.theta * T) + p.sig * (torch.exp(-p.theta * (T - s))[:, None, None] * dw).sum(0)

    hs, errs = _strong_errors(p, exact, 2.0, T, 2000, fine, (2**4, 2**5, 2**6, 2**7, 2**8), 1)
    assert abs(fitted_order(hs, errs) - 1.0) < 0.2


def test_end_evaluation_reuse_counts_one_extra():
    class Counting(GBM):
        uses_end_evaluation = True
        calls = 0

        def evaluate(self, lam, y):
            Counting.calls += 1
            return y[0]

        def correction(self, ev0, ev1, dl, dw):
            return (torch.zeros_like(ev1),)

    sol = sdeint(
        Counting(),
        (torch.ones(3, 1, dtype=torch.float64),),
        torch.linspace(0, 1, 11, dtype=torch.float64),
        generator=torch.Generator().manual_seed(0),
    )
    assert sol.nfe == 11 == Counting.calls


def test_grid_and_method_errors():
    f = lambda lam, y: (y[0],)
    y0 = (torch.ones(1),)
    with pytest.raises(ValueError, match="monotone"):
        odeint(f, y0, torch.tensor([0.0, 1.0, 0.5]))
    with pytest.raises(ValueError, match="method"):
        odeint(f, y0, torch.tensor([0.0, 1.0]), method="rk45")
    with pytest.raises(ValueError, match="NaN"):
        odeint(f, y0, torch.tensor([0.0, float("nan")]))
    with pytest.raises(ValueError, match="dw has shape"):
        sdeint(GBM(), y0, torch.linspace(0, 1, 5), dw=torch.zeros(3, 1))
    with pytest.raises(ValueError, match="tolerances"):
        odeint_adaptive(f, y0, 0.0, 1.0, rtol=0.0)


def test_dopri5_per_example_control_matches_a_solo_solve_and_the_exact_solution():
    from diffdensity.solvers import odeint_dopri5

    # dy/dt = -k y with a different stiffness per example: exact y = exp(-k t)
    k = torch.tensor([0.5, 3.0, 20.0, 1.0], dtype=torch.float64)

    def f(t, y, rows):
        return (-k[rows] * y[0],)

    y0 = (torch.ones(4, dtype=torch.float64),)
    sol = odeint_dopri5(f, y0, 0.0, 1.0, rtol=1e-8, atol=1e-8)
    assert (sol.y[0] - torch.exp(-k)).abs().max() < 1e-7
    for i in range(4):  # each example alone: the same steps, the same result to round-off
        solo = odeint_dopri5(
            lambda t, y, rows: (-k[i] * y[0],), (torch.ones(1, dtype=torch.float64),), 0.0, 1.0, rtol=1e-8, atol=1e-8
        )
        assert abs(float(solo.y[0][0] - sol.y[0][i])) < 1e-14
    back = odeint_dopri5(f, sol.y, 1.0, 0.0, rtol=1e-8, atol=1e-8)  # and backward (k = 20 amplifies by e^20)
    assert (back.y[0][[0, 1, 3]] - 1).abs().max() < 1e-6
    with pytest.raises(RuntimeError, match="max_steps"):
        odeint_dopri5(f, y0, 0.0, 1.0, rtol=1e-8, atol=1e-8, max_steps=3)


# --- solvers as objects: the registry is the only list; DPM-Solver++(2M) --------------------------------------------
def _mixture_oracle(schedule, D=64, n=256, seed=0):
    """Four well-separated isotropic Gaussians (std 0.3, means at norm ½√D): exact score and log p at every λ."""
    import math

    import diffdensity as dd

    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(4, D, generator=g, dtype=torch.float64)
    mu = mu / mu.norm(dim=1, keepdim=True) * 0.5 * math.sqrt(D)
    m = dd.GaussianMixture(mu, torch.full((4,), 0.3, dtype=torch.float64)).diffused(schedule)
    xT = schedule.sample_prior((n, D), generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    return m, xT


def _sample_error(m, xT, ref, **kw):
    import diffdensity as dd

    return (dd.sample_ode(m, xT, progress=False, **kw).x - ref).norm(dim=1).mean().item()


def test_every_registered_solver_resolves_and_declares_itself():
    from diffdensity.registry import SOLVERS
    from diffdensity.solvers import Solver, resolve

    for name in SOLVERS:
        s = resolve(name)
        assert isinstance(s, Solver) and s.name == name and s.order >= 1 and isinstance(s.adaptive, bool)
        assert resolve(s) is s
    with pytest.raises(ValueError, match="unknown solver 'rk4'"):
        resolve("rk4")
    with pytest.raises(ValueError, match="rtol do.*not apply to solver 'euler'"):
        resolve("euler", rtol=1e-3)
    assert type(resolve("euler", strict=False, rtol=1e-3)).__name__ == "Euler"  # tolerances dropped for fixed steps


def test_dpmpp2m_is_second_order_on_the_oracle():
    """Sample error against a tight dopri5 solve on the VP mixture oracle (D = 8) on λ-uniform grids of 32…256
    steps: the fitted order is 2 (a first-order method would show 1)."""
    import diffdensity as dd

    m, xT = _mixture_oracle(dd.VP(), D=8, n=64)
    ref = dd.sample_ode(m, xT, solver="dopri5", rtol=1e-10, atol=1e-10, progress=False).x
    steps = (32, 64, 128, 256)
    errs = [_sample_error(m, xT, ref, solver="dpmpp2m", steps=n) for n in steps]
    assert abs(fitted_order([1 / n for n in steps], errs) - 2.0) < 0.25, errs


@pytest.mark.parametrize("schedule", ["VP", "VE", "FlowMatching"])
def test_dpmpp2m_beats_ab2_at_10_and_20_steps(schedule):
    """Issue 20's proof that a solver is one file: DPM-Solver++(2M) against AB2 at 10 and 20 NFE (D = 64, 256 latents).
    VP and VE: each solver on its own default grid. Flow matching: on the same λ-uniform grid (on FM's t-uniform
    default grid AB2 is ahead, 0.099 vs 0.19 at 10 steps: math.md §I.3)."""
    import diffdensity as dd

    m, xT = _mixture_oracle(getattr(dd, schedule)())
    ref = dd.sample_ode(m, xT, solver="dopri5", rtol=1e-9, atol=1e-9, progress=False).x
    ab2_grid = "lambda" if schedule == "FlowMatching" else None
    for steps in (10, 20):
        dpm = _sample_error(m, xT, ref, solver="dpmpp2m", steps=steps)
        ab2 = _sample_error(m, xT, ref, solver="ab2", steps=steps, grid=ab2_grid)
        assert dpm < ab2, (steps, dpm, ab2)


def test_dpmpp2m_runs_in_log_prob_and_tracks_log_density():
    """log_prob and sample_ode(track_logp=True) take dpmpp2m with no other edit; its log p (exact divergence, exact
    prior) converges at order 2 in the number of steps on the VP oracle."""
    import diffdensity as dd

    m, xT = _mixture_oracle(dd.VP(), D=8, n=32)
    sch = m.schedule
    x = m.sample(32, sch.lambda_max, generator=torch.Generator().manual_seed(3))
    exact = m.log_prob(x, sch.lambda_max)
    errs = []
    for steps in (64, 128, 256):
        lp = dd.log_prob(
            m, x, divergence="exact", solver="dpmpp2m", steps=steps, prior=lambda z: m.log_prob(z, sch.lambda_min)
        )
        errs.append((lp - exact).abs().mean().item())
    assert errs[-1] < 0.01 and abs(fitted_order([1, 0.5, 0.25], errs) - 2.0) < 0.35, errs
    out = dd.sample_ode(m, xT[:8], steps=64, solver="dpmpp2m", track_logp=True, divergence="exact", progress=False)
    assert out.nfe == 64 and torch.isfinite(out.logp).all()
    assert (out.logp - m.log_prob(out.x, sch.lambda_max)).abs().mean() < 0.5


def test_dpmpp2m_needs_a_schedule_on_a_bare_field():
    from diffdensity.solvers import odeint

    with pytest.raises(ValueError, match="needs the schedule"):
        odeint(lambda t, y: (y[0],), (torch.ones(1),), torch.tensor([0.0, 1.0]), method="dpmpp2m")


def test_every_registered_generic_fixed_step_solver_has_its_declared_order():
    """Each fixed-step solver of the registry that works on a bare field (all but the λ-methods, tested on the
    oracle) shows its declared order on the linear test problem, warped grid included, at its declared NFE."""
    from diffdensity.registry import SOLVERS
    from diffdensity.solvers import resolve

    T = 2.0
    ue, we = exact_linear(T)
    for name in SOLVERS:
        s = resolve(name)
        if s.adaptive or s.variable is not None:
            continue
        hs, errs = [], []
        for n in (16, 32, 64, 128):
            y0 = (torch.tensor([1.0], dtype=torch.float64), torch.tensor([0.0], dtype=torch.float64))
            sol = odeint(linear_ode, y0, T * torch.linspace(0, 1, n + 1, dtype=torch.float64) ** 1.5, method=s)
            assert sol.nfe == n * s.evals_per_step, name
            hs.append(T / n)
            errs.append(abs(sol.y[0].item() - ue) + abs(sol.y[1].item() - we))
        assert abs(fitted_order(hs, errs) - s.order) < 0.25, (name, fitted_order(hs, errs))


# --- the solvers' own quadrature weights (issue 25: standard errors of tracked log p) ---------------------------------
@pytest.mark.parametrize("name", ["euler", "heun", "midpoint", "ab2", "dpmpp2m"])
def test_integral_weights_are_each_solvers_quadrature(name):
    """The replay weights integrate a constant rate exactly for every fixed-step solver (Σ w_e = span) and a linear
    one exactly for the order-2 solvers (Σ w_e τ_e = ∫ τ dτ; the multistep ones after their first, Euler, step), on a
    non-uniform grid; Euler's are its step lengths."""
    import diffdensity as dd
    from diffdensity.solvers import Problem, resolve
    from diffdensity.solvers.fixed import integral_weights

    nodes = [-3.0, -2.5, -1.0, 0.5, 1.0, 3.0]
    taus: list[float] = []
    w = integral_weights(resolve(name), Problem(nodes, lams=nodes, schedule=dd.VP()), lambda t: taus.append(t) or 1.0)
    assert len(w) == len(taus) == (len(nodes) - 1) * resolve(name).evals_per_step
    span = nodes[-1] - nodes[0]
    assert sum(w) == pytest.approx(span, abs=1e-12)
    if name == "euler":
        assert w == pytest.approx([b - a for a, b in zip(nodes, nodes[1:])], abs=1e-12)
    else:  # the multistep methods start with one Euler step (left rectangle), exact from there on
        start = 1 if name in ("ab2", "dpmpp2m") else 0
        exact = (nodes[-1] ** 2 - nodes[start] ** 2) / 2 + start * (nodes[1] - nodes[0]) * nodes[0]
        assert sum(wi * t for wi, t in zip(w, taus)) == pytest.approx(exact, abs=1e-12)
