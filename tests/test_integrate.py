"""Integration legs: any λ interval in either direction, chained legs (the high-density sampler's shape),
callbacks, user grids, and a dtype loop over the core samplers (as torchdiffeq loops methods × dtypes)."""

import pytest
import torch
from conftest import make_mixture

import diffdensity as dd
from diffdensity.dynamics import HDODE, PFODE, ReverseSDE
from diffdensity.integrate import integrate_ode, integrate_sde


def test_sde_leg_then_ode_leg_tracks_the_endpoint(schedule):
    """integrate_sde λ_min → threshold (corrected tracker, no extra NFE) then the HD-ODE to λ_max (exact divergence,
    dopri5): the final error is the SDE leg's error carried unchanged (the ODE leg adds < 2e-3 nats)."""
    D, n, thr = 4, 64, 2.0
    m = make_mixture(D, seed=3, std=0.4).diffused(schedule)
    lmin, lmax = schedule.lambda_min, schedule.lambda_max
    xT = m.sample(n, lmin, generator=torch.Generator().manual_seed(0))
    leg1 = integrate_sde(
        m,
        ReverseSDE(schedule),
        xT,
        lmin,
        thr,
        track=True,
        logp0=m.log_prob(xT, lmin),
        steps=512,
        generator=torch.Generator().manual_seed(1),
        progress=False,
    )
    assert leg1.nfe == 513  # the corrected tracker: one evaluation per step + one at the end
    err1 = leg1.logp - m.log_prob(leg1.x, thr)
    assert err1.abs().mean() < 0.1
    leg2 = integrate_ode(
        m,
        HDODE(schedule),
        leg1.x,
        thr,
        lmax,
        track=True,
        logp0=leg1.logp,
        solver="dopri5",
        divergence="exact",
        progress=False,
    )
    err2 = leg2.logp - m.log_prob(leg2.x, lmax)
    assert (err2 - err1).abs().max() < 2e-3
    assert (leg2.logp - leg1.logp).mean() > 0  # the HD leg climbs in density


def test_pf_ode_round_trip_in_both_directions():
    s = dd.VP()
    m = make_mixture(3, seed=2).diffused(s)
    x = m.sample(16, -2.0, generator=torch.Generator().manual_seed(0))
    up = integrate_ode(
        m, PFODE(s), x, -2.0, 5.0, track=True, solver="dopri5", divergence="exact", rtol=1e-8, atol=1e-8, progress=False
    )
    down = integrate_ode(
        m,
        PFODE(s),
        up.x,
        5.0,
        -2.0,
        track=True,
        logp0=up.logp,
        solver="dopri5",
        divergence="exact",
        rtol=1e-8,
        atol=1e-8,
        progress=False,
    )
    assert (down.x - x).abs().max() < 1e-6 and down.logp.abs().max() < 1e-6
    assert (up.logp - (m.log_prob(up.x, 5.0) - m.log_prob(x, -2.0))).abs().max() < 1e-6


def test_callback_progress_and_grids():
    s = dd.VP()
    m = make_mixture(2, seed=4).diffused(s)
    xT = s.sample_prior((5, 2), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    seen = []
    out = integrate_ode(
        m,
        PFODE(s),
        xT,
        s.lambda_min,
        0.0,
        track=True,
        solver="heun",
        steps=10,
        divergence="exact",
        callback=seen.append,
        progress=False,
    )
    assert [i["i"] for i in seen] == list(range(10)) and seen[-1]["lam"] == pytest.approx(0.0)
    assert torch.equal(seen[-1]["x"], out.x) and torch.equal(seen[-1]["logp"], out.logp)
    assert set(seen[0]) == {"i", "lam", "x", "logp", "eval"} and seen[0]["eval"].s.shape == xT.shape
    assert out.nfe == 20
    grid = torch.tensor([s.lambda_min, -5.0, -1.0, 0.0], dtype=torch.float64)
    lams = []
    integrate_sde(
        m,
        ReverseSDE(s),
        xT,
        s.lambda_min,
        0.0,
        grid=grid,
        callback=lambda i: lams.append(i["lam"]),
        generator=torch.Generator().manual_seed(0),
        progress=False,
    )
    assert lams == [-5.0, -1.0, 0.0]
    adaptive = []
    integrate_ode(m, PFODE(s), xT, s.lambda_min, 0.0, solver="dopri5", callback=adaptive.append, progress=True)
    assert adaptive and adaptive[-1]["lam"] == pytest.approx(0.0)


def test_integrate_errors():
    s = dd.VP()
    m = make_mixture(2).diffused(s)
    x = torch.zeros(3, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="integrate_sde"):
        integrate_ode(m, ReverseSDE(s), x, -1.0, 1.0, steps=4)
    with pytest.raises(ValueError, match="dopri5"):
        integrate_ode(m, PFODE(s), x, -1.0, 1.0, solver="dopri5", steps=4)
    with pytest.raises(ValueError, match="steps"):
        integrate_ode(m, PFODE(s), x, -1.0, 1.0, steps=True)
    with pytest.raises(ValueError, match="grid"):
        integrate_sde(m, ReverseSDE(s), x, -1.0, 1.0, grid=torch.tensor([-1.0, 0.5]))
    with pytest.raises(ValueError, match="divergence"):
        integrate_ode(m, PFODE(s), x, -1.0, 1.0, steps=4, track=True)
    with pytest.raises(ValueError, match="lam1"):
        integrate_sde(m, ReverseSDE(s), x, -1.0, 11.0, steps=4)


# tolerances per dtype: float32 carries ~1e-7 relative error per operation; log p is O(1..10) nats
SAMPLERS = {
    "ode-euler": (lambda m, x, **kw: dd.sample_ode(m, x, steps=512, track_logp=True, divergence="exact", **kw), 0.05),
    "ode-heun": (
        lambda m, x, **kw: dd.sample_ode(m, x, steps=128, solver="heun", track_logp=True, divergence="exact", **kw),
        0.01,
    ),
    "ode-dopri5": (
        lambda m, x, **kw: dd.sample_ode(m, x, solver="dopri5", track_logp=True, divergence="exact", **kw),
        0.01,
    ),
    "sde-corrected": (
        lambda m, x, **kw: dd.sample_sde(m, x, steps=512, generator=torch.Generator().manual_seed(1), **kw),
        0.15,
    ),
    "sde-em": (
        lambda m, x, **kw: dd.sample_sde(
            m, x, steps=512, tracker="em", generator=torch.Generator().manual_seed(1), **kw
        ),
        0.6,
    ),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", list(SAMPLERS))
def test_samplers_keep_dtype_and_accuracy(name, dtype):
    s = dd.VP()
    gm = make_mixture(2, seed=9, std=0.4).to(dtype)
    m = gm.diffused(s)
    xT = m.sample(64, s.lambda_min, generator=torch.Generator().manual_seed(0))
    fn, tol = SAMPLERS[name]
    out = fn(m, xT, prior=lambda z: m.log_prob(z, s.lambda_min), progress=False)
    assert out.x.dtype == dtype and out.logp.dtype == dtype and torch.isfinite(out.logp).all()
    err = (out.logp - m.log_prob(out.x, s.lambda_max)).abs().mean()
    assert err < tol
    lp = dd.log_prob(m, out.x, divergence="exact", prior=lambda z: m.log_prob(z, s.lambda_min))
    assert lp.dtype == dtype
    assert (lp - m.log_prob(out.x, s.lambda_max)).abs().mean() < (2e-3 if dtype == torch.float32 else 1e-4)
