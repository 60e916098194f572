"""What every adapter shares: the network call (dtype, autocast), the λ-range check, classifier-free guidance."""
from __future__ import annotations

import inspect
import math
import warnings
from typing import Callable

import torch
from torch import Tensor, nn

from .._checks import batch_lam
from ..models import score_from_prediction
from ..schedules import Schedule

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}


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
    timestep_dtype: torch.dtype | None = None  # dtype of the timestep handed to the network (None: the input's)
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
        p = self._predict(x, lam_b, self.condition)
        if self.guided:  # linear in the prediction, so guiding predictions = guiding ε̂ = guiding scores
            w = self.guidance_scale
            p = (1 + w) * p - w * self._predict(x, lam_b, self.uncondition)
        return self.score_from_output(p, x, lam_b)

    def score_from_output(self, p: Tensor, x: Tensor, lam) -> Tensor:
        """The score at (x, λ) from the network's (guided) prediction ``p``: what a diffusers scheduler is handed."""
        lam_b = batch_lam(lam, x)
        a, s = self.schedule.coefficients(lam_b, x)
        return score_from_prediction(self.parametrization, p.to(x.dtype), x, a, s)

    def forward(self, x: Tensor, lam) -> Tensor:
        return self.score(x, lam)

    def _apply(self, fn, *args, **kwargs):
        """``.to(device)`` / ``.half()`` also move the bound condition tensors (embeddings, labels)."""
        out = super()._apply(fn, *args, **kwargs)
        self.condition, self.uncondition = (_map_tensors(c, fn) for c in (self.condition, self.uncondition))
        return out


def _map_tensors(c, fn):
    if isinstance(c, Tensor):
        return fn(c)
    return {k: _map_tensors(v, fn) for k, v in c.items()} if isinstance(c, dict) else c



def _signature(net):
    try:
        return inspect.signature(getattr(net, "forward", net)).parameters
    except (TypeError, ValueError):
        return {}


def _accepted_kwargs(net) -> set[str]:
    return set(_signature(net))


def required_kwargs(net) -> set[str]:
    """The condition keywords a network cannot run without (e.g. a text UNet's ``encoder_hidden_states``)."""
    params = list(_signature(net).values())[2:]  # past (sample, timestep)
    return {p.name for p in params if p.default is inspect.Parameter.empty and p.name != "timestep"
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def classic_attention(net, attention: str = "classic") -> None:
    """Swap diffusers' fused ``AttnProcessor2_0`` (scaled_dot_product_attention, which forward-mode AD does not go
    through on CPU) for the classic ``AttnProcessor`` (the same maths by plain matmuls) in every attention layer of
    ``net``; other processors (SD3's joint attention, ...) are kept. GroupNorm inputs are made contiguous.
    ``attention="fused"`` keeps the network as it is (faster on a GPU; no forward-mode AD through attention)."""
    if attention not in ("classic", "fused"):
        raise ValueError(f"attention={attention!r}; choose 'classic' (every derivative works) or 'fused' (as loaded).")
    if not isinstance(net, nn.Module) or attention == "fused":
        return
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    for mod in net.modules():
        set_processor = getattr(mod, "set_processor", None)
        if isinstance(getattr(mod, "processor", None), AttnProcessor2_0) and callable(set_processor):
            set_processor(AttnProcessor())
        if isinstance(mod, nn.GroupNorm) and not getattr(mod, "_dd_contiguous", False):
            mod.register_forward_pre_hook(_contiguous_inputs)  # group_norm's JVP views its input: needs it contiguous
            object.__setattr__(mod, "_dd_contiguous", True)


def _contiguous_inputs(module, args):
    return tuple(a.contiguous() if isinstance(a, Tensor) else a for a in args)


def _expand(v, B: int, name: str):
    if isinstance(v, Tensor) and v.ndim > 0:
        if v.shape[0] == 1 and B != 1:
            return v.expand(B, *v.shape[1:])
        if v.shape[0] != B:
            raise ValueError(f"condition {name} has batch {v.shape[0]} but x has {B}; pass one row or one per sample.")
    elif isinstance(v, Tensor):  # a single class label
        return v.reshape(1).expand(B)
    return v

