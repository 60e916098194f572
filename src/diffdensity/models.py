"""Models: anything with ``.schedule`` and ``.score(x, lam)``.

:class:`NetworkModel` adapts a network ``net(x, lam) -> tensor shaped like x`` (``lam`` of shape (batch,)) to
that protocol. Each parametrization is converted to ε̂ once, in :data:`TO_EPS`; the score is then −ε̂/σ
(math.md §0.1). With x = α x₀ + σ ε the targets are:

========= ===================================== ==============================================
name      network predicts                      ε̂ from the prediction p
========= ===================================== ==============================================
eps       ε                                     p
x0        x₀                                    (x − α p) / σ
v         v = α ε − σ x₀  (Salimans & Ho)       (σ x + α p) / (α² + σ²)
score     ∇log p_λ(x)                           −σ p
flow      u = ε − x₀ (= dx_t/dt, FlowMatching)  (x + α p) / (α + σ)
========= ===================================== ==============================================
"""
from __future__ import annotations

import warnings

from typing import Protocol, runtime_checkable

from torch import Tensor, nn

from ._checks import batch_lam
from .schedules import Schedule

__all__ = ["Model", "NetworkModel", "PARAMETRIZATIONS", "targets_from_eps", "score_from_prediction", "CountingModel"]


@runtime_checkable
class Model(Protocol):
    """The model protocol: a schedule and the score ∇_x log p_λ(x)."""

    schedule: Schedule

    def score(self, x: Tensor, lam) -> Tensor: ...


def _eps_from_eps(p, x, a, s):
    return p


def _eps_from_x0(p, x, a, s):
    return (x - a * p) / s


def _eps_from_v(p, x, a, s):
    return (s * x + a * p) / (a**2 + s**2)


def _eps_from_score(p, x, a, s):
    return -s * p


def _eps_from_flow(p, x, a, s):
    return (x + a * p) / (a + s)


TO_EPS = {"eps": _eps_from_eps, "x0": _eps_from_x0, "v": _eps_from_v, "score": _eps_from_score, "flow": _eps_from_flow}
PARAMETRIZATIONS = tuple(TO_EPS)


def score_from_prediction(parametrization: str, p: Tensor, x: Tensor, a: Tensor, s: Tensor) -> Tensor:
    """s = −ε̂/σ with ε̂ = :data:`TO_EPS` of the prediction p at x (α, σ broadcastable; math.md §0.1)."""
    return -TO_EPS[parametrization](p, x, a, s) / s


def targets_from_eps(eps: Tensor, x: Tensor, alpha: Tensor, sigma: Tensor) -> dict[str, Tensor]:
    """The regression target of every parametrization, given the true ε (or the exact ε̂ = −σ s) at x."""
    x0 = (x - sigma * eps) / alpha
    return {
        "eps": eps,
        "x0": x0,
        "v": alpha * eps - sigma * x0,
        "score": -eps / sigma,
        "flow": eps - x0,
    }


class NetworkModel(nn.Module):
    """A network as a model: ``score(x, lam) = −ε̂(x, λ)/σ(λ)`` for any parametrization (math.md §0.1).

    ``net`` is any callable ``net(x, lam_batch)``: an ``nn.Module`` (its weights' dtype must match x) or a plain
    function."""

    config: dict  # the parsed config.json of a loaded model (io.load sets it)

    def __init__(self, net, schedule: Schedule, parametrization: str = "eps", transform=None):
        super().__init__()
        if not callable(net):
            raise TypeError(
                f"net must be callable as net(x, lam_batch) -> tensor shaped like x (an nn.Module or a plain "
                f"function), got {type(net).__name__}."
            )
        if parametrization not in TO_EPS:
            raise ValueError(f"parametrization={parametrization!r}; choose one of {PARAMETRIZATIONS}.")
        if not isinstance(schedule, Schedule):
            raise ValueError(f"schedule must be a diffdensity Schedule (VP, VE, FlowMatching), got {schedule!r}.")
        self.net = net
        self.schedule = schedule
        self.parametrization = parametrization
        self.transform = transform  # data transform (integer data <-> model space), may be None

    def _alpha_sigma(self, x: Tensor, lam):
        params = getattr(self.net, "parameters", None)  # a plain function has no weights and no dtype to check
        p = next(iter(params()), None) if callable(params) else None
        if p is not None and p.dtype != x.dtype:
            raise ValueError(
                f"x is {x.dtype} but the network's weights are {p.dtype}; convert one of them "
                f"(model.to({x.dtype}) for end-to-end {x.dtype}, or x.to({p.dtype}))."
            )
        shape = getattr(self.transform, "model_shape", None)
        if shape is not None and tuple(x.shape[1:]) != tuple(shape):
            raise ValueError(f"x has sample shape {tuple(x.shape[1:])} but this model takes {tuple(shape)} "
                             "(resize or crop the input to the model's size).")
        self.schedule.check_lam(lam)
        lam_b = batch_lam(lam, x)
        return (lam_b, *self.schedule.coefficients(lam_b, x))

    def _predict(self, x: Tensor, lam_b: Tensor) -> Tensor:
        out = self.net(x, lam_b)
        if not isinstance(out, Tensor) or out.shape != x.shape:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(f"the network returned {got} for an input of shape {tuple(x.shape)}; a network must "
                             "return a tensor shaped like x (one prediction per input value).")
        return out

    def eps(self, x: Tensor, lam) -> Tensor:
        """ε̂(x, λ), whatever the network predicts."""
        lam_b, a, s = self._alpha_sigma(x, lam)
        return TO_EPS[self.parametrization](self._predict(x, lam_b), x, a, s)

    def score(self, x: Tensor, lam) -> Tensor:
        """∇_x log p_λ(x) ≈ −ε̂/σ (warns once if the network is in train mode: the training loss uses :meth:`eps`)."""
        if isinstance(self.net, nn.Module) and self.net.training and not getattr(self, "_warned_train", False):
            self._warned_train = True
            warnings.warn("the network is in train mode (dropout/normalisation statistics active): scores and "
                          "log-densities are random; call model.eval() first.", UserWarning, stacklevel=2)
        lam_b, a, s = self._alpha_sigma(x, lam)
        return score_from_prediction(self.parametrization, self._predict(x, lam_b), x, a, s)

    def forward(self, x: Tensor, lam) -> Tensor:
        return self.score(x, lam)


class CountingModel:
    """Wraps a model and counts score evaluations (NFE); everything else is passed through."""

    def __init__(self, model):
        if not hasattr(model, "score") or not hasattr(model, "schedule"):
            raise ValueError(
                f"{type(model).__name__} is not a model: it needs .schedule and .score(x, lam) "
                "(wrap a network with dd.NetworkModel(net, schedule))."
            )
        self.model = model
        self.schedule = model.schedule
        self.nfe = 0

    def score(self, x: Tensor, lam) -> Tensor:
        self.nfe += 1
        return self.model.score(x, lam)

    def __getattr__(self, name):
        return getattr(self.model, name)

