"""Small input checks and broadcasting helpers shared by every module."""
from __future__ import annotations

import inspect
import math
import numbers

import torch
from torch import Tensor


def as_lam(lam) -> Tensor:
    """λ as a floating tensor (python numbers become the default dtype)."""
    if isinstance(lam, Tensor):
        return lam if lam.is_floating_point() else lam.to(torch.get_default_dtype())
    return torch.as_tensor(lam, dtype=torch.get_default_dtype())


def batch_lam(lam, x: Tensor) -> Tensor:
    """λ as a (batch,) tensor with x's dtype and device; λ may be a scalar or per-sample."""
    lam = torch.as_tensor(lam, dtype=x.dtype, device=x.device)
    if lam.ndim == 0:
        return lam.expand(x.shape[0])
    lam = lam.reshape(-1)
    if lam.shape[0] == 1:
        return lam.expand(x.shape[0])
    if lam.shape[0] != x.shape[0]:
        raise ValueError(
            f"lam has {lam.shape[0]} values for a batch of {x.shape[0]}; pass one λ or one per sample."
        )
    return lam


def bcast(v: Tensor, x: Tensor) -> Tensor:
    """Reshape a (batch,) tensor to broadcast against x of shape (batch, ...); a 0-d tensor is returned as is."""
    return v if v.ndim == 0 else v.reshape(v.shape[0], *([1] * (x.ndim - 1)))


def at(fn, lam, x: Tensor) -> Tensor:
    """A schedule function of λ (a float, 0-d or (batch,) tensor) in x's dtype/device, broadcastable to x."""
    return bcast(fn(torch.as_tensor(lam, dtype=x.dtype, device=x.device)), x)


def per_sample(v: Tensor, x: Tensor) -> Tensor:
    """A scalar or per-sample quantity as a flat (batch,) tensor."""
    v = torch.as_tensor(v, dtype=x.dtype, device=x.device).reshape(-1)
    return v.expand(x.shape[0]) if v.numel() == 1 else v


def check_choice(value, name: str, choices) -> None:
    """ValueError unless ``value`` is one of ``choices`` (the message lists them)."""
    if value not in choices:
        raise ValueError(f"{name}={value!r}; choose one of {tuple(choices)}.")


def check_count(v, name: str, allow_none: bool = False) -> None:
    """ValueError unless v is a positive integer (bools are refused: ``steps=True`` is a mistake)."""
    if v is None and allow_none:
        return
    ok = isinstance(v, numbers.Integral) or (isinstance(v, float) and v.is_integer())
    if isinstance(v, bool) or not ok or v < 1:
        raise ValueError(f"{name}={v!r}: need a positive integer.")


def _check_value(name: str, v, default, allowed=None) -> None:
    """ValueError unless ``v`` fits a parameter whose default is ``default``: a bool for a bool, an integer for an
    integer (at least 1 where the default is positive, else at least 0), a finite number for a float (non-negative
    where the default is), a string for a string; and one of ``allowed`` when given."""
    if allowed is not None:
        if v not in allowed:
            raise ValueError(f"{name}={v!r}; choose one of {tuple(allowed)}.")
        return
    number = isinstance(v, numbers.Real) and not isinstance(v, bool)
    if isinstance(default, bool) and not isinstance(v, bool):
        raise ValueError(f"{name}={v!r}: need True or False.")
    if isinstance(default, int) and not isinstance(default, bool):
        low = 1 if default > 0 else 0
        if not number or not math.isfinite(v) or int(v) != v or v < low:
            raise ValueError(f"{name}={v!r}: need an integer >= {low}.")
    elif isinstance(default, float) and (not number or not math.isfinite(v) or (default >= 0 and v < 0)):
        raise ValueError(f"{name}={v!r}: need a finite number{' >= 0' if default >= 0 else ''}.")
    elif isinstance(default, str) and not isinstance(v, str):
        raise ValueError(f"{name}={v!r}: need a string.")
    elif number and not math.isfinite(v):
        raise ValueError(f"{name}={v!r}: need a finite number.")


def check_kwargs(kwargs, fn, what: str, choices: dict | None = None, exclude=()) -> None:
    """ValueError unless ``kwargs`` is a dict of parameters of ``fn`` (minus ``exclude``) whose values fit each
    parameter's default (see :func:`_check_value`) and ``choices`` (parameter -> allowed values)."""
    if not isinstance(kwargs, dict):
        raise ValueError(f"{what}={kwargs!r}: need a dict of keyword arguments.")
    params = {k: p for k, p in inspect.signature(fn).parameters.items()
              if k not in exclude and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    for k, v in kwargs.items():
        if k not in params:
            raise ValueError(f"{what} has an unknown argument {k!r}; valid ones: {', '.join(params) or 'none'}.")
        default = params[k].default
        _check_value(f"{what}[{k!r}]", v, None if default is inspect.Parameter.empty else default,
                     (choices or {}).get(k))


class NonFiniteError(FloatingPointError):
    """A solve produced NaN or inf: raised at the step where it happened, naming λ and the likely cause."""


def check_state(name: str, lam, *tensors) -> None:
    """NonFiniteError if a model output or solver state is not finite at λ (names the sampler and the likely cause)."""
    for t in tensors:
        if t is not None and not torch.isfinite(t).all():
            raise NonFiniteError(
                f"{name}: NaN or inf at λ = {float(torch.as_tensor(lam).reshape(-1)[0]):.6g}. Likely causes: the model "
                "returns NaN/inf there (check it on inputs near this λ), λ outside the range it was trained on, or the "
                "solve diverges (more steps, tighter tolerances, or a feasible guidance strength)."
            )


def check_output(name: str, out, x: Tensor) -> Tensor:
    """TypeError unless a model's output is a floating tensor with x's dtype (a float64 or integer output would
    silently change the samples' dtype)."""
    if not isinstance(out, Tensor) or not out.is_floating_point() or out.dtype != x.dtype:
        got = out.dtype if isinstance(out, Tensor) else type(out).__name__
        raise TypeError(f"{name} returned {got} for {x.dtype} input; the model must return x's dtype (cast its "
                        f"output with .to(x.dtype)).")
    return out


def check_differentiable(name: str, out: Tensor, x: Tensor) -> None:
    """ValueError if x needs gradients but the model's output has none: the network ran under torch.no_grad() /
    inference_mode() or detached its output, and divergences through it would silently be wrong."""
    if torch.is_grad_enabled() and x.requires_grad and not out.requires_grad:
        raise ValueError(f"{name}: the output carries no gradient with respect to x (the network runs under "
                         "torch.no_grad()/torch.inference_mode() or detaches); divergences and log p need it: "
                         "remove no_grad/detach from the network's forward.")


def prior_values(v, x: Tensor, name: str = "prior") -> Tensor:
    """A prior's log-density as a (batch,) tensor: (B,) or (B, 1) are accepted, anything else is a ValueError."""
    if not isinstance(v, Tensor) or v.numel() != x.shape[0] or (v.ndim > 1 and v.shape[0] != x.shape[0]):
        got = tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__
        raise ValueError(f"{name}(x) returned {got} for a batch of {x.shape[0]}; return one log-density per sample, "
                         f"shape ({x.shape[0]},).")
    return v.reshape(x.shape[0])


def check_flag(v, name: str) -> None:
    """TypeError unless v is a bool (``track_logp="no"`` is a truthy string, not False)."""
    if not isinstance(v, bool):
        raise TypeError(f"{name}={v!r}: pass True or False.")


def check_real_data(x, name: str = "x_int") -> None:
    """TypeError unless x is a real (not complex, not bool) tensor: casting complex data to float silently drops
    the imaginary part (call from bits_per_dim before its checks)."""
    if not isinstance(x, Tensor) or x.is_complex() or x.dtype == torch.bool:
        got = x.dtype if isinstance(x, Tensor) else type(x).__name__
        raise TypeError(f"{name} has dtype {got}; pass real integer data (e.g. uint8 images).")


def check_finite(x: Tensor, name: str) -> None:
    """ValueError naming ``name`` if x contains NaN or inf."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}.")
    if x.is_floating_point() and not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf values; clean the input (e.g. torch.nan_to_num) first.")


def check_batch(x: Tensor, name: str = "x") -> None:
    """ValueError unless x is a finite floating tensor with a non-empty batch dimension."""
    check_finite(x, name)
    if x.ndim >= 1 and x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {tuple(x.shape)}); pass at least one sample.")
    if x.ndim < 2:
        raise ValueError(
            f"{name} has shape {tuple(x.shape)}; need (batch, ...) with at least one data dimension "
            f"(use x.unsqueeze(-1) for scalar data)."
        )
    if not x.is_floating_point():
        raise ValueError(f"{name} has dtype {x.dtype}; pass a floating tensor (x.float()).")


def flat_dot(a: Tensor, b: Tensor) -> Tensor:
    """Per-sample inner product over all non-batch dimensions -> (batch,)."""
    return (a * b).reshape(a.shape[0], -1).sum(1)


def flat_sq(a: Tensor) -> Tensor:
    """Per-sample squared norm -> (batch,)."""
    return a.reshape(a.shape[0], -1).pow(2).sum(1)
