"""The library's samplers as diffusers schedulers, for a pipeline's own ``__call__`` (this module needs diffusers).

``pipe.scheduler = TrackedSDEScheduler.from_config(pipe.scheduler.config)`` (or DensityGuidanceScheduler with ``q=``,
HighDensityScheduler with ``threshold=``) and call the pipeline as usual. Each step converts the pipeline's model
output (after its own classifier-free guidance) to the score exactly as :func:`~diffdensity.from_diffusers` does, and
takes one step of the library's sampler on the library's grid, so the samples equal ``dd.sample_sde`` /
``dd.sample_density_guided`` / ``dd.sample_hd`` (solver "euler") on ``dd.from_diffusers(pipe, prompt=...,
guidance_scale=...)`` with the same latents and noise.

* :class:`TrackedSDEScheduler` — reverse SDE (Euler–Maruyama in λ) with the corrected Theorem-1 tracker (math.md
  §1.2b): ``scheduler.logp`` holds log p (nats, of the latents) of every sample after the call. Like the library's
  sampler it needs the score at each step's end, so it asks for steps + 1 network calls (the last one only closes
  the tracker); nothing beyond the model output.
* :class:`DensityGuidanceScheduler` — the DG-ODE (Eq 23, math.md §2.5) by Euler; it starts from the latents given,
  so pass ``latents=guided_latents(model, n)`` (the median norm, as ``sample_density_guided`` starts).
* :class:`HighDensityScheduler` — Algorithm 1: PF-ODE (or, ``first="sde"``, the reverse SDE) to ``threshold``, then
  the high-density ODE.

Library-only (they need more than the model output — derivatives of the network): log p along the ODE schedulers
(a divergence per step), stochastic density guidance (its drift needs Δ log p), exact-Itô SDG (an HVP), log-p
tracking of the high-density leg. With guidance in the pipeline the tracked SDE log p is biased (a guided field is
no score; see dd.warn_if_guided). Latents the pipeline draws itself are N(0, I) (``init_noise_sigma`` = 1, as
diffusers' own schedulers); the model's prior is N(0, σ_T² I) with σ_T² = 1 − ᾱ_T.
"""
from __future__ import annotations

import math

import torch
from diffusers import ConfigMixin, SchedulerMixin
from diffusers.configuration_utils import register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerOutput
from torch import Tensor

from .._checks import at
from .._rng import draw
from ..dynamics import HDODE, PFODE, IsotropicNoise, ReverseSDE
from ..evaluation import Eval
from ..tracking import corrected_logp_increment
from .diffusers import DiffusersModel, lambda_table

__all__ = ["TrackedSDEScheduler", "DensityGuidanceScheduler", "HighDensityScheduler", "scheduler_for", "sample_scheduler"]


def _no_net(x, timestep, **kw):  # the schedulers convert outputs; they never call a network
    raise RuntimeError("a scheduler's timing model has no network.")


class _LibraryScheduler(SchedulerMixin, ConfigMixin):
    """Shared: the config (that of the pipeline's scheduler), the library model's timing, the λ grid, the step."""

    config_name: str = "scheduler_config.json"  # type: ignore[assignment]  # ConfigMixin declares None
    order = 1
    init_noise_sigma = 1.0

    @register_to_config
    def __init__(self, num_train_timesteps: int = 1000, beta_start: float = 0.0001, beta_end: float = 0.02,
                 beta_schedule: str = "linear", trained_betas=None, prediction_type: str = "epsilon",
                 rescale_betas_zero_snr: bool = False, shift: float = 1.0, flow: bool = False, q: float = 0.5,
                 threshold: float = 0.0, threshold_kind: str = "lam", first: str = "ode", check: bool = True):
        self.timing = _timing_model(self.config)
        self.schedule = self.timing.schedule
        self.generator = None  # used when the pipeline passes none to step() (SD3's does not)
        self.timesteps: Tensor | None = None
        self.logp: Tensor | None = None

    @classmethod
    def from_config(cls, config=None, **kwargs):
        """As diffusers' (a pipeline scheduler's config + our options); a flow-matching config sets ``flow``."""
        cfg = dict(config or {})
        if str(cfg.get("_class_name", "")).startswith("FlowMatch") or ("flow" not in cfg and "beta_start" not in cfg
                                                                     and "shift" in cfg):
            kwargs.setdefault("flow", True)
        keys = set(cls._get_init_keys(cls))  # drop the other scheduler's own options quietly
        return super().from_config({k: v for k, v in cfg.items() if k in keys or k.startswith("_")}, **kwargs)

    def set_timesteps(self, num_inference_steps: int, device=None, **kwargs):
        """The library sampler's λ grid for ``num_inference_steps`` steps; timesteps are the network's (fractional)
        timesteps at the λ of each network call."""
        lams, self._h = self._grid(int(num_inference_steps))
        self._lams = lams
        self.num_inference_steps = int(num_inference_steps)
        self.timesteps = self.timing.timestep(torch.tensor(lams, dtype=torch.float64)).float().to(device)
        self._i, self._state, self._pending, self.logp = 0, None, None, None

    def scale_model_input(self, sample: Tensor, timestep=None) -> Tensor:
        return sample

    @property
    def step_index(self):
        return getattr(self, "_i", None)

    def step(self, model_output: Tensor, timestep, sample: Tensor, generator=None, return_dict: bool = True, **kw):
        """One step of the library's sampler from the pipeline's (guided) model output at the current λ."""
        if self.timesteps is None:
            raise ValueError("call set_timesteps before step (the pipeline does).")
        x = self._state if self._state is not None and sample.dtype != self._state.dtype else sample
        if model_output.shape[1] == 2 * x.shape[1]:
            model_output = model_output[:, : x.shape[1]]  # learned-variance networks: the mean part
        lam = self._lams[self._i]
        ev = Eval(lam, x, self.timing.score_from_output(model_output, x, lam))
        x1 = self._advance(ev, generator if generator is not None else self.generator)
        self._i += 1
        self._state = x1
        out = x1.to(sample.dtype)
        return SchedulerOutput(prev_sample=out) if return_dict else (out,)

    def _euler(self, dyn, ev: Eval) -> Tensor:
        return ev.x + self._h[self._i] * dyn.drift(ev)

    def _em(self, dyn, ev: Eval, generator) -> tuple[Tensor, Tensor, Tensor]:
        """Euler–Maruyama as the library's sdeint: x + h·drift + G ΔW, ΔW = √|h| z; -> (x1, drift, G ΔW)."""
        h = self._h[self._i]
        z = draw("normal", ev.x.shape, generator, dtype=ev.x.dtype, device=ev.x.device)
        drift = dyn.drift(ev)
        noise = IsotropicNoise(at(self.schedule.g2, ev.lam, ev.x)).apply(ev, math.sqrt(abs(h)) * z)
        return ev.x + h * drift + noise, drift, noise

    def __len__(self):
        return int(self.config.num_train_timesteps)


def _timing_model(cfg) -> DiffusersModel:
    """The library model of the config's training schedule (its λ range, timestep map, parametrization)."""
    from diffusers import DDPMScheduler, FlowMatchEulerDiscreteScheduler

    if cfg.flow:
        flow = FlowMatchEulerDiscreteScheduler(num_train_timesteps=cfg.num_train_timesteps, shift=cfg.shift)
        return DiffusersModel(_no_net, flow, prediction_type="flow_prediction")
    base = DDPMScheduler(num_train_timesteps=cfg.num_train_timesteps, beta_start=cfg.beta_start,
                         beta_end=cfg.beta_end, beta_schedule=cfg.beta_schedule, trained_betas=cfg.trained_betas,
                         prediction_type=cfg.prediction_type, rescale_betas_zero_snr=cfg.rescale_betas_zero_snr)
    return DiffusersModel(_no_net, base)


def _steps_of(grid: Tensor) -> tuple[list, list]:
    g = grid.tolist()
    return g[:-1], [b - a for a, b in zip(g[:-1], g[1:])]


class TrackedSDEScheduler(_LibraryScheduler):
    """Reverse SDE with the corrected Theorem-1 log-density tracker = ``dd.sample_sde`` (module docstring)."""

    def _grid(self, n):
        g = self.schedule.grid(n, dtype=torch.float64, kind="lambda")
        lams, h = _steps_of(g)
        return lams + [g[-1].item()], h + [0.0]  # one more call at λ_max closes the tracker

    def _advance(self, ev, generator):
        dyn = ReverseSDE(self.schedule)
        if self._i == 0:
            self.logp = self.schedule.prior_log_prob(ev.x)
        drift = dyn.drift(ev)
        if self._pending is not None:
            lam0, x0, s0, b0, xi = self._pending
            self.logp = self.logp + corrected_logp_increment(self.schedule, lam0, ev.lam, x0, s0, b0,
                                                             ev.s, drift, xi)
            self._pending = None
        if self._i == len(self._lams) - 1:
            return ev.x
        x1, b0, xi = self._em(dyn, ev, generator)
        self._pending = (ev.lam, ev.x, ev.s, b0, xi)
        return x1


class DensityGuidanceScheduler(_LibraryScheduler):
    """Density guidance (DG-ODE, Euler) = ``dd.sample_density_guided(..., solver="euler")`` from the given latents
    (pass ``latents=guided_latents(model, n)``); ``q`` in the config (higher q = higher log p). Its feasibility
    monitor (``check``) is the library's, less the judgement of the last step (that needs one more network call)."""

    def _grid(self, n):
        return _steps_of(self.schedule.grid(n, dtype=torch.float64, kind="default"))

    def _advance(self, ev, generator):
        from ..guidance import DensityGuidedODE, InfeasibleGuidance, _Stop

        if self._i == 0:
            self._dg = DensityGuidedODE(self.schedule, self.config.q, ev.x[0].numel(), self.config.check)
        try:
            return self._euler(self._dg, ev)
        except _Stop as stop:
            raise InfeasibleGuidance(self.config.q, stop.lam, stop.n_bad, ev.x.shape[0], stop.reason) from None


class HighDensityScheduler(_LibraryScheduler):
    """High-density sampling (Algorithm 1) = ``dd.sample_hd(..., solver="euler")``: PF-ODE (``first="ode"``) or
    reverse SDE (``first="sde"``, untracked) to ``threshold`` (``threshold_kind``: "lam", "t", "sigma"), then the
    HD-ODE."""

    def _grid(self, n):
        from ..sampling import split_steps, threshold_to_lam

        sch = self.schedule
        thr = threshold_to_lam(sch, self.config.threshold, self.config.threshold_kind)
        n1, n2 = split_steps(sch, thr, n)
        kind = "lambda" if self.config.first == "sde" else "default"
        legs = [sch.grid(k, a, b, dtype=torch.float64, kind=kd) for k, a, b, kd in
                ((n1, sch.lambda_min, thr, kind), (n2, thr, sch.lambda_max, "default")) if k]
        parts = [_steps_of(g) for g in legs]
        self._n1 = n1
        return sum((p[0] for p in parts), []), sum((p[1] for p in parts), [])

    def _advance(self, ev, generator):
        if self._i >= self._n1:
            return self._euler(HDODE(self.schedule), ev)
        if self.config.first == "sde":
            return self._em(ReverseSDE(self.schedule), ev, generator)[0]
        return self._euler(PFODE(self.schedule), ev)


# ------------------------------------------------------------------------------------------------ the other way round
def _check_vp(model) -> None:
    from ..schedules import VP

    if not isinstance(getattr(model, "schedule", None), VP):
        raise ValueError(f"diffusers' ε-prediction schedulers describe a VP process (x = √ᾱ x₀ + √(1−ᾱ) ε); "
                         f"{type(model).__name__} has schedule {type(getattr(model, 'schedule', None)).__name__}. "
                         "Use a VP model, or the library's own solvers (dd.sample_ode) for other schedules.")


def scheduler_for(model, scheduler_class, num_train_timesteps: int = 1000, **config):
    """A diffusers scheduler of class ``scheduler_class`` whose ``alphas_cumprod`` table is the VP model's own
    process: ᾱ_k = sigmoid(λ_k) at λ_k uniform from λ_max (k = 0) to λ_min (k = T − 1); ``config`` is passed on
    (e.g. ``solver_order=3``, ``use_karras_sigmas=True``, ``timestep_spacing="trailing"``)."""
    _check_vp(model)
    sch = model.schedule
    lam = torch.linspace(sch.lambda_max, sch.lambda_min, int(num_train_timesteps), dtype=torch.float64)
    abar = torch.sigmoid(lam)
    betas = 1 - abar / torch.cat([abar.new_ones(1), abar[:-1]])
    return scheduler_class(num_train_timesteps=int(num_train_timesteps), trained_betas=betas.tolist(),
                           prediction_type="epsilon", **config)


def sample_scheduler(model, x_T: Tensor, scheduler, steps: int, *, generator: torch.Generator | None = None,
                     progress: bool | None = None):
    """Sample a VP model with a diffusers ε-prediction scheduler (UniPC, DPM-Solver, DEIS, DDIM, ...): its own
    time grid and update, fed ε̂ = −σ s(x, λ) with λ = −2 log σ_k of the scheduler's step (its ``sigmas`` table,
    else its timestep's ᾱ). Make the scheduler with :func:`scheduler_for`. Returns Samples(x, None, nfe)."""
    from ..integrate import Samples, prepare

    _check_vp(model)
    counted = prepare(model, x_T)
    scheduler.set_timesteps(int(steps))
    ts = scheduler.timesteps
    sigmas = getattr(scheduler, "sigmas", None)
    table = lambda_table(scheduler.alphas_cumprod)
    x = x_T
    it = enumerate(ts)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, total=len(ts), desc="sample_scheduler")
    with torch.no_grad():
        for i, t in it:
            lam = (-2 * torch.log(torch.as_tensor(sigmas[i], dtype=torch.float64)) if sigmas is not None and
                   len(sigmas) > len(ts) else table[int(t)])
            lam = lam.clamp(model.schedule.lambda_min, model.schedule.lambda_max).to(x.dtype)
            s = torch.sigmoid(-lam).sqrt()
            eps = -s * counted.score(x, lam.expand(x.shape[0]))
            x = scheduler.step(eps, t, x, return_dict=False)[0]
    return Samples(x, None, counted.nfe)
