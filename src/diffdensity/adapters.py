"""Other people's models as diffdensity models: diffusers, EDM / k-diffusion denoisers, classifier-free guidance.

Each adapter is a model (``.schedule`` and ``.score(x, lam)``) that converts one foreign convention once, here:

* :func:`from_diffusers` — discrete-time diffusers models. The network was trained on timesteps k = 0..T−1 with
  x = √ᾱ_k x₀ + √(1−ᾱ_k) ε, i.e. a VP process with λ_k = log(ᾱ_k / (1 − ᾱ_k)) (the scheduler's
  ``alphas_cumprod``). λ ↦ timestep is the inverse of the *piecewise-linear interpolation of that table*:
  t(λ) = k + (λ − λ_k)/(λ_{k+1} − λ_k) for λ_{k+1} ≤ λ ≤ λ_k. Why this map: it is exact at every trained
  timestep (the network sees exactly the integers it was trained on), it is monotone because λ_k is strictly
  decreasing (β_k > 0), and it needs no assumption about the beta schedule (linear, scaled-linear, cosine,
  zero-terminal-SNR all go through the same table). Assuming instead that the timestep is linear in λ mis-states
  the noise level the network is told by hundreds of timesteps (1.4 nats on a real model). Flow-matching
  models (``FlowMatchEulerDiscreteScheduler``) use x = (1 − σ) x₀ + σ ε and timestep = σ·T, i.e. dd.FlowMatching
  with σ = sigmoid(−λ/2), so t(λ) = T·sigmoid(−λ/2) in closed form.
* :func:`from_denoiser` — ``denoiser(x, sigma) -> x̂₀`` with x = x₀ + σ ε (EDM, k-diffusion): a model under
  dd.VE (α = 1, σ = exp(−λ/2)), the only schedule in which that input is the right one.
* :class:`Guided` / ``guidance_scale=`` — classifier-free guidance s_w = (1 + w) s(x | c) − w s(x).

The λ range of an adapter's schedule is what its network was trained on (samplers and log_prob refuse λ outside
it; ``lambda_range`` may narrow it, never widen it).
"""
from __future__ import annotations

import inspect
import json
import math
import warnings
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

from ._checks import batch_lam, check_count
from .models import score_from_prediction
from .schedules import VE, VP, FlowMatching, Schedule

__all__ = ["from_diffusers", "from_denoiser", "DiffusersModel", "DenoiserModel", "Guided", "warn_if_guided",
           "lambda_table", "timestep_from_lambda"]

PREDICTION_TYPES = {"epsilon": "eps", "v_prediction": "v", "sample": "x0", "flow_prediction": "flow"}
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}
INSTALL_HINT = "pip install diffusers  (or pip install 'diffdensity[diffusers]')"


# ------------------------------------------------------------------------------------------------ λ <-> timestep
def lambda_table(alphas_cumprod) -> Tensor:
    """λ_k = log(ᾱ_k / (1 − ᾱ_k)) for k = 0..T−1 in float64, strictly decreasing (ValueError otherwise)."""
    a = torch.as_tensor(alphas_cumprod, dtype=torch.float64).reshape(-1)
    if a.numel() < 2 or not ((a > 0) & (a <= 1)).all():
        raise ValueError("alphas_cumprod must hold at least 2 values in (0, 1]; is this a diffusion scheduler?")
    lam = torch.log(a) - torch.log1p(-a)
    finite = torch.isfinite(lam)
    if not bool((lam[finite][1:] < lam[finite][:-1]).all()):
        raise ValueError("the scheduler's log-SNR table log(ᾱ/(1−ᾱ)) is not strictly decreasing in the timestep.")
    return lam


def timestep_from_lambda(lam: Tensor, table: Tensor) -> Tensor:
    """The fractional timestep t(λ) by inverse linear interpolation of the decreasing table λ_k (module docstring).
    Exact at grid points: λ = λ_k gives t = k. λ must lie within [λ_{T−1}, λ_0] (finite entries)."""
    lam64 = lam.to(torch.float64)
    ks = torch.nonzero(torch.isfinite(table)).reshape(-1).to(table.device)
    asc = table[ks].flip(0).to(lam64.device)              # increasing λ
    kasc = ks.flip(0).to(lam64.device, torch.float64)     # the matching (decreasing) timesteps
    i = torch.searchsorted(asc, lam64.contiguous(), right=True).clamp(1, asc.numel() - 1)
    lo, hi = asc[i - 1], asc[i]
    w = (lam64 - lo) / (hi - lo)
    t = kasc[i - 1] + w * (kasc[i] - kasc[i - 1])
    return torch.where(lam64 == lo, kasc[i - 1], t)


# ------------------------------------------------------------------------------------------------ guidance
def warn_if_guided(model) -> None:
    """Warn once per model when a classifier-free-guided model is tracked by the SDE sampler (Theorem 1 of
    Karczewski et al. 2025a assumes a true score; a guided field is not one, so the SDE log p is biased for w ≠ 0).
    Called by ``sample_sde``; the PF-ODE log-density of the guided flow is well defined."""
    target = model
    while getattr(target, "model", None) is not None:  # look through wrappers such as CountingModel
        target = target.model
    if not getattr(target, "guided", False) or getattr(target, "_warned_sde", False):
        return
    target._warned_sde = True
    warnings.warn(
        "this model uses classifier-free guidance (guidance_scale != 0): its field (1+w)s(x|c) - w s(x) is not the "
        "score of any density, so the SDE-tracked log p (Theorem 1) is biased; use dd.sample_ode(..., track_logp=True) "
        "or dd.log_prob for the exact log-density of the guided PF-ODE flow.",
        UserWarning, stacklevel=3)


class Guided:
    """Classifier-free guidance of two models on one schedule: s_w(x, λ) = (1 + w) s_c(x, λ) − w s_u(x, λ).

    ``log_prob`` of a guided model is the log-density of the guided PF-ODE's pushforward of the prior (a well
    defined density, but not p(x | c)); SDE tracking of it is biased (see :func:`warn_if_guided`)."""

    def __init__(self, conditional, unconditional, guidance_scale: float):
        for name, m in (("conditional", conditional), ("unconditional", unconditional)):
            if not hasattr(m, "score") or not hasattr(m, "schedule"):
                raise ValueError(f"{name} is not a model (needs .schedule and .score(x, lam)).")
        if conditional.schedule != unconditional.schedule:
            raise ValueError(f"the two models have different schedules ({conditional.schedule} vs "
                             f"{unconditional.schedule}); guidance needs one schedule.")
        self.conditional, self.unconditional = conditional, unconditional
        self.schedule = conditional.schedule
        self.guidance_scale = float(guidance_scale)
        if not math.isfinite(self.guidance_scale):
            raise ValueError(f"guidance_scale={guidance_scale!r}: need a finite number (0 = no guidance).")
        self.guided = self.guidance_scale != 0.0
        self.transform = getattr(conditional, "transform", None)

    def score(self, x: Tensor, lam) -> Tensor:
        w = self.guidance_scale
        sc = self.conditional.score(x, lam)
        return sc if w == 0 else (1 + w) * sc - w * self.unconditional.score(x, lam)


# ------------------------------------------------------------------------------------------------ diffusers
def _require_diffusers():
    try:
        import diffusers  # noqa: F401
    except ImportError as e:
        raise ImportError(f"dd.from_diffusers needs the diffusers package: {INSTALL_HINT}") from e
    return diffusers


def _read_class_name(folder: Path, fname: str) -> str | None:
    f = folder / fname
    if not f.is_file():
        return None
    try:
        return json.loads(f.read_text()).get("_class_name")
    except (json.JSONDecodeError, AttributeError):
        return None


def _load_folder(folder: Path, scheduler):
    """(model, scheduler) from a pipeline folder (unet/ or transformer/ + scheduler/) or a model folder."""
    diffusers = _require_diffusers()
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder; pass a diffusers model instance or a save_pretrained folder.")
    model_dir = None
    for sub in ("unet", "transformer"):
        if _read_class_name(folder / sub, "config.json"):
            model_dir = folder / sub
            break
    if model_dir is None and _read_class_name(folder, "config.json"):
        model_dir = folder
    if model_dir is None:
        raise ValueError(f"{folder} holds no diffusers model: expected config.json with _class_name, or a pipeline "
                         f"folder with unet/ or transformer/ (written by save_pretrained).")
    cls_name = _read_class_name(model_dir, "config.json")
    assert cls_name is not None  # model_dir was chosen for having one
    cls = getattr(diffusers, cls_name, None)
    if cls is None:
        raise ValueError(f"{model_dir}/config.json names class {cls_name!r}, which this diffusers version lacks.")
    model = cls.from_pretrained(model_dir)
    if scheduler is None:
        for cand in (folder / "scheduler", model_dir.parent / "scheduler", folder):
            if _read_class_name(cand, "scheduler_config.json"):
                scheduler = cand
                break
    if isinstance(scheduler, (str, Path)):
        scheduler = _load_scheduler(Path(scheduler))
    return model, scheduler


def _load_scheduler(folder: Path):
    diffusers = _require_diffusers()
    if (folder / "scheduler" / "scheduler_config.json").is_file():
        folder = folder / "scheduler"
    name = _read_class_name(folder, "scheduler_config.json")
    cls = getattr(diffusers, name or "", None)
    if cls is None:
        raise ValueError(f"{folder} holds no diffusers scheduler (scheduler_config.json with a known _class_name).")
    return cls.from_pretrained(folder)


def _as_dtype(autocast):
    if autocast is None or autocast is False or autocast == "no":
        return None
    if isinstance(autocast, torch.dtype):
        if autocast not in (torch.bfloat16, torch.float16):
            raise ValueError(f"autocast={autocast}; choose torch.bfloat16 or torch.float16 (or None).")
        return autocast
    if autocast in AUTOCAST_DTYPES:
        return AUTOCAST_DTYPES[autocast]
    raise ValueError(f"autocast={autocast!r}; choose 'bf16', 'fp16', a torch dtype, or None.")


class _ForeignNetModel(nn.Module):
    """Shared part of the adapters: λ-range check, the network call in its own dtype (optionally under autocast)
    with the ODE state and the conversion to a score kept in x's dtype, and classifier-free guidance."""

    schedule: Schedule
    parametrization: str
    timestep: Callable[[Tensor], Tensor]  # λ (B,) -> the network's timestep (each subclass)
    _call: Callable[..., Tensor]  # (x, timestep, cond) -> the network's prediction (each subclass)
    timestep_dtype: torch.dtype | None = None  # dtype of the timestep handed to the network (None: the network's input dtype)
    overshoot = 1e-6  # tolerated fraction of the λ range beyond its ends (_check_range); None: no range check

    def _init_common(self, net, schedule, parametrization, condition, uncondition, guidance_scale, autocast):
        self.net = net
        self.schedule = schedule
        self.parametrization = parametrization
        self.autocast = _as_dtype(autocast)
        self.condition = condition
        self.uncondition = uncondition
        self.guidance_scale = None if guidance_scale is None else float(guidance_scale)
        if self.guidance_scale is not None:
            if condition is None:
                raise ValueError("guidance_scale needs a condition= (class labels or embeddings) to guide towards.")
            if uncondition is None:
                raise ValueError("guidance_scale needs uncondition= (the null condition the model was trained with, "
                                 "e.g. the empty-prompt embedding or the null class id).")
        self.guided = bool(self.guidance_scale)
        self.transform = None

    def _check_range(self, lam_b: Tensor) -> None:
        """ValueError for non-finite λ, and (when ``overshoot`` is a number) for λ beyond the trained range by more
        than that fraction of its width (the trained range is the schedule's). The solvers never step outside the
        interval they integrate (dopri5's steps are made to land on its end), so this holds for every sampler."""
        t = lam_b.detach()
        if not torch.isfinite(t).all():
            raise ValueError("lam contains NaN or inf; pass finite log-SNR values.")
        if self.overshoot is None:
            return
        lo, hi = self.schedule.lambda_min, self.schedule.lambda_max
        tol = self.overshoot * (hi - lo)
        if (t < lo - tol).any() or (t > hi + tol).any():
            raise ValueError(f"lam in [{float(t.min()):.6g}, {float(t.max()):.6g}] is outside the λ range this model "
                             f"was trained on [{lo:.6g}, {hi:.6g}]; pass λ within it (the schedule's range).")

    check_size = True  # set False to run a convolutional network at another resolution on purpose

    def _check_size(self, x: Tensor) -> None:
        """ValueError if x's sample shape differs from the network's (channels, sample_size): a convolutional
        network runs at any size and silently gives another model's scores."""
        cfg = getattr(getattr(self, "net", None), "config", None)
        size, ch = getattr(cfg, "sample_size", None), getattr(cfg, "in_channels", None)
        if not self.check_size or not isinstance(size, int) or not isinstance(ch, int) or x.ndim != 4:
            return
        if tuple(x.shape[1:]) != (ch, size, size):
            raise ValueError(f"x has sample shape {tuple(x.shape[1:])} but this network was trained on "
                             f"{(ch, size, size)}; resize the input (or set model.check_size = False to run it at "
                             "another size on purpose).")

    def _net_dtype(self):
        params = getattr(self.net, "parameters", None)
        p = next(iter(params()), None) if callable(params) else None
        return None if p is None else (p.dtype, p.device)

    def _predict(self, x: Tensor, lam_b: Tensor, cond) -> Tensor:
        """The network's raw prediction at (x, λ) in x's dtype."""
        dd = self._net_dtype()
        xin = x if dd is None else x.to(dtype=dd[0])
        t = self.timestep(lam_b).to(self.timestep_dtype or xin.dtype)
        if self.autocast is not None:
            with torch.autocast(device_type=x.device.type, dtype=self.autocast):
                out = self._call(xin, t, cond)
        else:
            out = self._call(xin, t, cond)
        return out.to(x.dtype)

    def score(self, x: Tensor, lam) -> Tensor:
        """∇_x log p_λ(x) from the network's prediction (models.score_from_prediction), guided if ``guidance_scale``
        is set."""
        lam_b = batch_lam(lam, x)
        self._check_range(lam_b)
        self._check_size(x)
        a, s = self.schedule.coefficients(lam_b, x)
        p = self._predict(x, lam_b, self.condition)
        if self.guided:  # linear in the prediction, so guiding predictions = guiding ε̂ = guiding scores
            w = self.guidance_scale
            p = (1 + w) * p - w * self._predict(x, lam_b, self.uncondition)
        return score_from_prediction(self.parametrization, p, x, a, s)

    def forward(self, x: Tensor, lam) -> Tensor:
        return self.score(x, lam)


class DiffusersModel(_ForeignNetModel):
    """A diffusers network + scheduler as a model (see :func:`from_diffusers` and the module docstring)."""

    timestep_dtype = torch.float32  # float16 would round timesteps near 1000 to 0.5

    def __init__(self, net, scheduler, *, condition=None, uncondition=None, guidance_scale=None, lambda_range=None,
                 prediction_type=None, autocast=None):
        super().__init__()
        cfg = getattr(scheduler, "config", {}) or {}
        pred = prediction_type or cfg.get("prediction_type")
        self.num_train_timesteps = int(cfg.get("num_train_timesteps", 1000))
        if hasattr(scheduler, "alphas_cumprod"):
            self.kind = "discrete"
            pred = pred or "epsilon"
            self.lam_table = lambda_table(scheduler.alphas_cumprod)  # float64, not a buffer: .to(dtype) must not round it
            finite = self.lam_table[torch.isfinite(self.lam_table)]
            trained = (float(finite.min()), float(finite.max()))
            schedule_cls = VP
        elif type(scheduler).__name__.startswith("FlowMatch"):
            self.kind = "flow"
            pred = pred or "flow_prediction"
            sig = torch.as_tensor(scheduler.sigmas, dtype=torch.float64)
            sig = sig[(sig > 0) & (sig < 1)]
            to_lam = FlowMatching().time_to_lam  # its time t = σ = sigmoid(−λ/2)
            trained = (float(to_lam(sig.max())), float(to_lam(sig.min())))
            schedule_cls = FlowMatching
        else:
            raise ValueError(f"scheduler {type(scheduler).__name__} is not supported: need a discrete-time scheduler "
                             "with alphas_cumprod (DDPM, DDIM, PNDM, Euler, DPM-Solver, ...) or "
                             "FlowMatchEulerDiscreteScheduler.")
        if pred not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type={pred!r}; supported: {sorted(PREDICTION_TYPES)}.")
        if (self.kind == "flow") != (pred == "flow_prediction"):
            raise ValueError(f"prediction_type={pred!r} does not fit {type(scheduler).__name__}.")
        self.trained_lambda_range = trained
        lo, hi = trained if lambda_range is None else (float(lambda_range[0]), float(lambda_range[1]))
        tol = 1e-9 * max(1.0, abs(trained[0]), abs(trained[1]))
        if lo < trained[0] - tol or hi > trained[1] + tol:
            raise ValueError(f"lambda_range=({lo:g}, {hi:g}) leaves the range the model was trained on "
                             f"[{trained[0]:g}, {trained[1]:g}] (from its scheduler); pass a range inside it.")
        self._accepts = _accepted_kwargs(net)
        self._init_common(net, schedule_cls(lo, hi), PREDICTION_TYPES[pred], condition, uncondition,
                          guidance_scale, autocast)
        self.scheduler = scheduler
        self.in_channels = getattr(getattr(net, "config", None), "in_channels", None)

    def timestep(self, lam_b: Tensor) -> Tensor:
        """The (fractional) timestep the network is told at λ (module docstring), float64."""
        if self.kind == "flow":
            return self.num_train_timesteps * self.schedule.lam_to_time(lam_b.to(torch.float64))  # T·σ
        return timestep_from_lambda(lam_b, self.lam_table)

    def timestep_grid(self, steps: int) -> Tensor:
        """λ values (increasing, float64) of ``steps`` + 1 of the model's own training timesteps, evenly spaced from
        T − 1 (noise) to 0 (data) as DDIM's "linspace" spacing, within the schedule's range (its ends exactly):
        a preset for ``grid=`` of every sampler. A flow-matching scheduler's time is continuous: uniform in t."""
        check_count(steps, "steps")
        sch = self.schedule
        if self.kind == "flow":
            return sch.grid(int(steps), dtype=torch.float64, kind="t")
        ks = torch.linspace(self.num_train_timesteps - 1, 0, int(steps) + 1, dtype=torch.float64).round().long()
        lam = self.lam_table[ks].clamp(sch.lambda_min, sch.lambda_max)
        lam[0], lam[-1] = sch.lambda_min, sch.lambda_max
        return torch.unique_consecutive(lam)

    def _call(self, x: Tensor, t: Tensor, cond) -> Tensor:
        kw = _condition_kwargs(cond, x.shape[0], self._accepts)
        if "return_dict" in self._accepts:
            kw["return_dict"] = False
        # transformers take (hidden_states, encoder_hidden_states, ..., timestep=): pass the timestep by name
        out = self.net(x, timestep=t, **kw) if "timestep" in self._accepts else self.net(x, t, **kw)
        out = out[0] if isinstance(out, (tuple, list)) else getattr(out, "sample", out)
        if out.shape[1] == 2 * x.shape[1] and out.shape[2:] == x.shape[2:]:
            out = out[:, : x.shape[1]]  # learned-variance models (variance_type learned*): the mean part
        if out.shape != x.shape:
            raise ValueError(f"the network returned shape {tuple(out.shape)} for input {tuple(x.shape)}.")
        return out

    def extra_repr(self) -> str:
        return f"kind={self.kind}, parametrization={self.parametrization}, schedule={self.schedule}"


def _accepted_kwargs(net) -> set[str]:
    fn = getattr(net, "forward", net)
    try:
        return set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return set()


def _expand(v, B: int, name: str):
    if isinstance(v, Tensor) and v.ndim > 0:
        if v.shape[0] == 1 and B != 1:
            return v.expand(B, *v.shape[1:])
        if v.shape[0] != B:
            raise ValueError(f"condition {name} has batch {v.shape[0]} but x has {B}; pass one row or one per sample.")
    elif isinstance(v, Tensor):  # a single class label
        return v.reshape(1).expand(B)
    return v


def _condition_kwargs(cond, B: int, accepts: set[str]) -> dict:
    """A condition as keyword arguments of the network: a dict is passed as is (tensors broadcast to the batch);
    an integer tensor or int is ``class_labels``; a floating tensor is ``encoder_hidden_states``."""
    if cond is None:
        return {}
    if isinstance(cond, dict):
        return {k: _expand(v, B, k) for k, v in cond.items()}
    if isinstance(cond, int):
        cond = torch.tensor(cond)
    if not isinstance(cond, Tensor):
        raise TypeError(f"condition must be a tensor, an int or a dict of network keyword arguments, "
                        f"got {type(cond).__name__}.")
    key = "encoder_hidden_states" if cond.is_floating_point() else "class_labels"
    if accepts and key not in accepts:
        raise ValueError(f"a {'floating' if key == 'encoder_hidden_states' else 'integer'} condition is passed as "
                         f"{key}, which this network does not take; pass condition as a dict of its keyword arguments.")
    return {key: _expand(cond, B, key)}


def from_diffusers(model, scheduler=None, *, condition=None, guidance_scale=None, lambda_range=None,
                   uncondition=None, prediction_type=None, autocast=None, device=None) -> DiffusersModel:
    """A diffusers model as a diffdensity model (module docstring: which λ ↔ timestep map and why).

    ``model``: a diffusers model instance (``UNet2DModel``, ``UNet2DConditionModel``, a transformer) or any callable
    ``net(x, timestep, **cond)``, or a local ``save_pretrained`` folder (a pipeline folder with ``unet/`` or
    ``transformer/`` and ``scheduler/``, or a model folder). ``scheduler``: an instance or folder (default: the
    pipeline's). ``condition``: class labels (int tensor), embeddings (float tensor → ``encoder_hidden_states``) or
    a dict of keyword arguments; with ``guidance_scale`` w the score is (1 + w) s(x|c) − w s(x | uncondition).
    ``lambda_range`` narrows the trained λ range. ``autocast``: "bf16"/"fp16" runs the network under autocast while
    x, the score and log p stay in x's dtype. The network is put in eval mode with its weights frozen."""
    if isinstance(model, (str, Path)):
        model, scheduler = _load_folder(Path(model).expanduser(), scheduler)
    elif isinstance(scheduler, (str, Path)):
        _require_diffusers()
        scheduler = _load_scheduler(Path(scheduler).expanduser())
    if scheduler is None:
        raise ValueError("from_diffusers needs the scheduler the model was trained with (scheduler=... an instance "
                         "or a folder), or a pipeline folder that contains scheduler/.")
    if not callable(model):
        raise TypeError(f"model must be a diffusers model, a callable net(x, timestep) or a folder, "
                        f"got {type(model).__name__}.")
    if isinstance(model, nn.Module):
        model.eval().requires_grad_(False)
    m = DiffusersModel(model, scheduler, condition=condition, uncondition=uncondition, guidance_scale=guidance_scale,
                       lambda_range=lambda_range, prediction_type=prediction_type, autocast=autocast)
    return m.to(device) if device is not None else m


# ------------------------------------------------------------------------------------------------ EDM denoisers
class DenoiserModel(_ForeignNetModel):
    """``denoiser(x, sigma) -> x̂₀`` (x = x₀ + σ ε) as a dd.VE model with σ = exp(−λ/2): the x0-parametrization."""

    def __init__(self, denoiser, sigma_min: float, sigma_max: float, *, condition=None, uncondition=None,
                 guidance_scale=None, autocast=None):
        super().__init__()
        if not callable(denoiser):
            raise TypeError(f"denoiser must be callable as denoiser(x, sigma), got {type(denoiser).__name__}.")
        sigma_min, sigma_max = float(sigma_min), float(sigma_max)
        if not (0 < sigma_min < sigma_max < math.inf):
            raise ValueError(f"sigma_min={sigma_min}, sigma_max={sigma_max}: need 0 < sigma_min < sigma_max < inf "
                             "(EDM: 0.002 and 80).")
        self.sigma_min, self.sigma_max = sigma_min, sigma_max
        self._accepts = _accepted_kwargs(denoiser)
        self._init_common(denoiser, VE(-2 * math.log(sigma_max), -2 * math.log(sigma_min)), "x0", condition,
                          uncondition, guidance_scale, autocast)

    def timestep(self, lam_b: Tensor) -> Tensor:
        """σ(λ) = exp(−λ/2), the denoiser's own noise level (VE's own time)."""
        return self.schedule.lam_to_time(lam_b.to(torch.float64))

    def _call(self, x: Tensor, sigma: Tensor, cond) -> Tensor:
        kw = {} if cond is None else (dict(cond) if isinstance(cond, dict) else {"class_labels": cond})
        kw = {k: _expand(v, x.shape[0], k) for k, v in kw.items()}
        out = self.net(x, sigma, **kw)
        if not isinstance(out, Tensor) or out.shape != x.shape:
            raise ValueError(f"the denoiser must return x̂₀ shaped like x {tuple(x.shape)}, got "
                             f"{getattr(out, 'shape', type(out).__name__)}.")
        return out


def from_denoiser(denoiser, sigma_min: float, sigma_max: float, *, condition=None, uncondition=None,
                  guidance_scale=None, autocast=None) -> DenoiserModel:
    """An EDM / k-diffusion denoiser ``denoiser(x, sigma) -> x̂₀`` in σ-space (x = x₀ + σ ε) as a model under
    dd.VE with λ ∈ [−2 log σ_max, −2 log σ_min]; ``sigma`` is passed as a (batch,) tensor. The schedule is fixed
    to VE because that is the process the denoiser's input follows (a VP schedule would feed it α x₀ + σ ε)."""
    if isinstance(denoiser, nn.Module):
        denoiser.eval()
    return DenoiserModel(denoiser, sigma_min, sigma_max, condition=condition, uncondition=uncondition,
                         guidance_scale=guidance_scale, autocast=autocast)
