"""The library's samplers as diffusers schedulers: inside the pipeline's own __call__ they match the library's."""

import warnings

import pytest
import torch

import diffdensity as dd

pytest.importorskip("diffusers")
pytest.importorskip("transformers")
from conftest import make_mixture  # noqa: E402
from diffusers import DDPMScheduler  # noqa: E402
from test_adapters import oracle_eps_net  # noqa: E402

from diffdensity.adapters import (  # noqa: E402
    DensityGuidanceScheduler,
    HighDensityScheduler,
    TrackedSDEScheduler,
    guided_latents,
    lambda_table,
)
from diffdensity.adapters.tiny import tiny_pipeline  # noqa: E402

STEPS = 5


@pytest.fixture(scope="module")
def pipes():
    return {k: tiny_pipeline(k) for k in ("sd-eps", "sd-v", "sd3")}


def run_pipe(pipe, scheduler, latents, seed=1):
    """The pipeline's own __call__ with ``scheduler``, on given latents, noise from ``seed``."""
    orig = pipe.scheduler
    pipe.scheduler = scheduler
    scheduler.generator = torch.Generator().manual_seed(seed)  # for pipelines that pass none to step() (SD3)
    try:
        return pipe(
            ["a cat"] * latents.shape[0],
            num_inference_steps=STEPS,
            guidance_scale=3.0,
            latents=latents.clone(),
            generator=torch.Generator().manual_seed(seed),
            output_type="latent",
            height=16,
            width=16,
        ).images
    finally:
        pipe.scheduler = orig


def close(a, b, tol=1e-4):
    return (a - b).abs().max() <= tol * (1 + b.abs().max())


@pytest.mark.parametrize("kind", ["sd-eps", "sd-v", "sd3"])
def test_schedulers_in_the_pipeline_match_the_library_samplers(pipes, kind):
    pipe = pipes[kind]
    m = dd.from_diffusers(pipe, prompt="a cat", guidance_scale=3.0)
    x_T = m.schedule.sample_prior((2, *m.latent_shape), generator=torch.Generator().manual_seed(0))
    cfg = pipe.scheduler.config
    sde = TrackedSDEScheduler.from_config(cfg)
    out = run_pipe(pipe, sde, x_T)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the guided-SDE bias warning
        ref = dd.sample_sde(m, x_T, steps=STEPS, generator=torch.Generator().manual_seed(1))
    assert close(out, ref.x) and close(sde.logp, ref.logp)
    start = guided_latents(m, 2, generator=torch.Generator().manual_seed(0))
    for check in (True, False):  # the random flow network is infeasible at q = 0.7: both must say so, at one λ
        dg = DensityGuidanceScheduler.from_config(cfg, q=0.7, check=check)
        try:
            ref = dd.sample_density_guided(m, start, 0.7, steps=STEPS, check=check, search=False)
        except dd.InfeasibleGuidance as e:
            with pytest.raises(dd.InfeasibleGuidance, match=f"at λ = {e.lam:.4g}"):
                run_pipe(pipe, dg, start)
            continue
        assert close(run_pipe(pipe, dg, start), ref.x)
    for first in ("ode", "sde"):
        out = run_pipe(pipe, HighDensityScheduler.from_config(cfg, threshold=1.0, first=first), x_T)
        ref = dd.sample_hd(m, x_T, 1.0, steps=STEPS, first=first, generator=torch.Generator().manual_seed(1))
        assert close(out, ref.x)


def test_tracked_sde_scheduler_log_p_is_exact_on_the_oracle_as_a_diffusers_network():
    """The mixture oracle as an ε-network on the DDPM table, stepped by the scheduler as a pipeline would."""
    sch = DDPMScheduler(num_train_timesteps=1000)
    table = lambda_table(sch.alphas_cumprod)
    oracle = make_mixture(8, seed=3).diffused(dd.VP(float(table[-1]), float(table[0])))
    net = oracle_eps_net(oracle, table)
    model = dd.from_diffusers(net, sch)
    x_T = model.schedule.sample_prior((64, 8), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    tracked = TrackedSDEScheduler.from_config(sch.config)
    tracked.set_timesteps(800)
    g, x = torch.Generator().manual_seed(1), x_T
    for t in tracked.timesteps:
        x = tracked.step(net(x, t.expand(x.shape[0])), t, x, generator=g).prev_sample
    ref = dd.sample_sde(model, x_T, steps=800, generator=torch.Generator().manual_seed(1))
    exact = oracle.log_prob(x, model.schedule.lambda_max)
    assert torch.allclose(x, ref.x, atol=1e-9) and torch.allclose(tracked.logp, ref.logp, atol=1e-8)
    lib_err = (ref.logp - oracle.log_prob(ref.x, model.schedule.lambda_max)).abs().mean()
    err = (tracked.logp - exact).abs().mean()  # 0.093 nats at 800 steps, the library's own tracker's error
    assert err <= lib_err + 1e-9 and err < 0.15


def test_scheduler_config_round_trips_and_the_latent_helper_hits_the_quantile(pipes, tmp_path):
    s = DensityGuidanceScheduler.from_config(pipes["sd3"].scheduler.config, q=0.8)
    assert s.config.flow and s.timing.kind == "flow"
    s.save_pretrained(tmp_path)
    assert DensityGuidanceScheduler.from_pretrained(tmp_path).config.q == 0.8
    m = dd.from_diffusers(pipes["sd-eps"], prompt="a cat")
    hi, lo = guided_latents(m, 4, q=0.9), guided_latents(m, 4, q=0.1)
    assert (m.schedule.prior_log_prob(hi) > m.schedule.prior_log_prob(lo)).all()
    with pytest.raises(ValueError, match="set_timesteps"):
        TrackedSDEScheduler().step(torch.zeros(1, 4), 0, torch.zeros(1, 4))


# --- a diffusers scheduler on a diffdensity model ----------------------------------------------------------------------
def test_sample_scheduler_unipc_converges_and_dpmsolver_matches_ours():
    """UniPC-2 (diffusers) on the VP mixture oracle's own ᾱ table (scheduler_for), ending at σ_min = σ(λ_max): the
    sample error against a tight dopri5 PF-ODE solve falls at order ≥ 2 from 20 to 80 steps, one score call per step.
    diffusers' DPM-Solver++(2M) on the same table lands within 1% of the library's dpmpp2m error at 40 steps (the two
    implementations agree). A non-VP model is refused with the fix named."""
    from diffusers import DPMSolverMultistepScheduler, UniPCMultistepScheduler

    from diffdensity.adapters import sample_scheduler, scheduler_for

    g = torch.Generator().manual_seed(0)
    mu = torch.randn(4, 8, generator=g, dtype=torch.float64)
    m = dd.GaussianMixture(mu / mu.norm(dim=1, keepdim=True) * 1.4, torch.full((4,), 0.3, dtype=torch.float64))
    model = m.diffused(dd.VP())
    xT = model.schedule.sample_prior((64, 8), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ref = dd.sample_ode(model, xT, solver="dopri5", rtol=1e-10, atol=1e-10, progress=False).x

    def err(cls, n):
        out = sample_scheduler(model, xT, scheduler_for(model, cls, final_sigmas_type="sigma_min"), n)
        assert out.nfe == n and out.x.dtype == torch.float64
        return (out.x - ref).norm(dim=1).mean().item()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # numpy 2's copy keyword, inside diffusers
        errs = [err(UniPCMultistepScheduler, n) for n in (20, 80)]
        ours = (dd.sample_ode(model, xT, steps=40, solver="dpmpp2m", progress=False).x - ref).norm(dim=1).mean().item()
        theirs = err(DPMSolverMultistepScheduler, 40)
    assert errs[1] < errs[0] / 4**2 and errs[1] < 1e-3, errs
    assert abs(theirs - ours) < 0.01 * ours, (theirs, ours)
    with pytest.raises(ValueError, match="VP process.*dd.sample_ode"):
        scheduler_for(m.diffused(dd.VE()), UniPCMultistepScheduler)
