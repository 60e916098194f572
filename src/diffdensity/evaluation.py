"""One model evaluation per solver stage: the record :class:`Eval` and the divergence estimators.

:func:`evaluate` calls the model's score once and adds what the dynamics or the tracker declared it needs:
``"lap"`` (Δ log p = div s, exact or Hutchinson, estimated by a :class:`Divergence` the caller holds) and
``"hvp"`` (a lazy Hessian-vector product v ↦ ∇²log p · v, one VJP through the same graph per call).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from ._checks import check_count, flat_dot

__all__ = ["Eval", "Divergence", "DIVERGENCES", "NEEDS", "evaluate", "make_probes", "score_and_divergence"]

DIVERGENCES = ("exact", "hutchinson")
NEEDS = frozenset({"lap", "hvp"})
_MODES = ("vjp", "jvp")
_PROBES = ("rademacher", "gaussian")
MAX_PROBES = 4096


@dataclass
class Eval:
    """The model at (λ, x): score ``s``; ``lap`` = Δ log p and ``hvp`` = (v ↦ ∇²log p v) only when asked for."""

    lam: float | Tensor
    x: Tensor
    s: Tensor
    lap: Tensor | None = None
    hvp: Callable[[Tensor], Tensor] | None = None


def make_probes(x: Tensor, n_probes: int = 1, kind: str = "rademacher", generator=None) -> Tensor:
    """Hutchinson probes (n_probes, *x.shape): Rademacher (default) or Gaussian."""
    check_count(n_probes, "n_probes")
    shape = (int(n_probes), *x.shape)
    if kind == "rademacher":
        return torch.randint(0, 2, shape, generator=generator, device=x.device).to(x.dtype) * 2 - 1
    if kind == "gaussian":
        return torch.randn(shape, generator=generator, dtype=x.dtype, device=x.device)
    raise ValueError(f"probe kind={kind!r}; choose one of {_PROBES}.")


class Divergence:
    """How Δ log p = div s is estimated: ``"exact"`` (trace of the Jacobian by batched VJPs over basis vectors,
    ``chunk_size`` at a time) or ``"hutchinson"`` (E vᵀJv over ``n_probes`` probes, math.md §0.3).

    Hutchinson probes are drawn from ``generator`` at the first evaluation and held fixed for the whole solve
    (``fixed=True``, what an adaptive ODE solver needs), or drawn afresh at every evaluation (``fixed=False``:
    independent errors per step average out along an SDE path). ``probes`` may also be given.
    """

    def __init__(self, kind: str = "exact", *, n_probes: int = 1, probe: str = "rademacher", generator=None,
                 chunk_size: int | None = 64, mode: str = "vjp", fixed: bool = True, probes: Tensor | None = None):
        if kind not in DIVERGENCES:
            raise ValueError(f"divergence={kind!r}; choose one of {DIVERGENCES}.")
        if mode not in _MODES:
            raise ValueError(f"mode={mode!r}; choose one of {_MODES}.")
        if probe not in _PROBES:
            raise ValueError(f"probe={probe!r}; choose one of {_PROBES}.")
        check_count(n_probes, "n_probes")
        if n_probes > MAX_PROBES:
            raise ValueError(f"n_probes={n_probes}: more than {MAX_PROBES} Hutchinson probes costs more than the exact "
                             "divergence for any D ≤ that; use divergence='exact' instead.")
        check_count(chunk_size, "chunk_size", allow_none=True)
        self.kind, self.n_probes, self.probe, self.generator = kind, int(n_probes), probe, generator
        self.chunk_size, self.mode, self.fixed, self.probes = chunk_size, mode, fixed, probes

    @classmethod
    def of(cls, divergence, generator=None) -> "Divergence | None":
        """A :class:`Divergence` from a name (defaults otherwise), an instance, or None."""
        if divergence is None or isinstance(divergence, Divergence):
            return divergence
        return cls(divergence, generator=generator)

    def _probes(self, x: Tensor) -> Tensor:
        if self.probes is None or not self.fixed:
            self.probes = make_probes(x, self.n_probes, self.probe, self.generator)
        if self.probes.shape[1:] != x.shape:
            raise ValueError(f"Hutchinson probes have shape {tuple(self.probes.shape)}; need (n_probes, *{tuple(x.shape)}).")
        return self.probes

    def __call__(self, s: Tensor, xg: Tensor, retain_graph: bool = False) -> Tensor:
        """div s at xg from the graph of s = score(xg) (per sample)."""
        if self.kind == "exact":
            return _exact_trace(s, xg, self.chunk_size, retain_graph)
        probes = self._probes(xg)
        n = probes.shape[0]
        if n == 1:
            vj = torch.autograd.grad(s, xg, probes[0], retain_graph=retain_graph)[0][None]
        else:
            (vj,) = torch.autograd.grad(s, xg, probes, is_grads_batched=True, retain_graph=retain_graph)
        return (vj * probes).reshape(n, xg.shape[0], -1).sum(-1).mean(0)

    def jvp(self, model, x: Tensor, lam) -> tuple[Tensor, Tensor]:
        """(s, Hutchinson div s) by forward-mode JVPs, one per probe."""
        from torch.func import jvp

        s, divs = None, []
        for v in self._probes(x):
            s, jv = jvp(lambda y: model.score(y, lam), (x.detach(),), (v,))
            divs.append(flat_dot(jv, v))
        return s.detach(), torch.stack(divs).mean(0).detach()


def _exact_trace(s: Tensor, xg: Tensor, chunk_size: int | None, retain_graph: bool = False) -> Tensor:
    B, D = xg.shape[0], xg[0].numel()
    chunk = D if not chunk_size else min(int(chunk_size), D)
    eye = torch.eye(D, dtype=xg.dtype, device=xg.device)
    div = torch.zeros(B, dtype=xg.dtype, device=xg.device)
    for start in range(0, D, chunk):
        basis = eye[start:start + chunk]  # (c, D): the same basis vector for every sample (samples are independent)
        gouts = basis[:, None, :].expand(-1, B, -1).reshape(-1, *xg.shape)
        keep = retain_graph or start + chunk < D
        (rows,) = torch.autograd.grad(s, xg, gouts, is_grads_batched=True, retain_graph=keep)
        div = div + (rows.reshape(basis.shape[0], B, D) * basis[:, None, :]).sum((0, 2))
    return div


def evaluate(model, lam, x: Tensor, needs=frozenset(), divergence: Divergence | None = None) -> Eval:
    """The one model evaluation of a stage at (λ, x), with Δ log p and/or a lazy HVP if ``needs`` says so."""
    needs = frozenset(needs)
    if not needs <= NEEDS:
        raise ValueError(f"needs={sorted(needs)}; an evaluation can add only {sorted(NEEDS)}.")
    if not needs:
        with torch.no_grad():
            return Eval(lam, x, model.score(x, lam))
    if "lap" in needs and divergence is None:
        raise ValueError("this sampler needs Δ log p: pass divergence='exact' or 'hutchinson'.")
    if needs == {"lap"} and divergence.kind == "hutchinson" and divergence.mode == "jvp":
        s, lap = divergence.jvp(model, x, lam)
        return Eval(lam, x, s, lap)
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        s = model.score(xg, lam)
        lap = divergence(s, xg, retain_graph="hvp" in needs).detach() if "lap" in needs else None
    hvp = None
    if "hvp" in needs:
        def hvp(v: Tensor) -> Tensor:
            """∇²log p · v (for a learned score: Jᵀv, the same quadratic form vᵀJv)."""
            with torch.enable_grad():
                return torch.autograd.grad(s, xg, v, retain_graph=True)[0].detach()
    return Eval(lam, x, s.detach(), lap, hvp)


def score_and_divergence(model, x: Tensor, lam, divergence: str | None, probes: Tensor | None = None,
                         chunk_size: int | None = 64, mode: str = "vjp"):
    """(s, div s or None) at (λ, x): a convenience over :func:`evaluate` for a single evaluation."""
    if divergence is None:
        ev = evaluate(model, lam, x)
    else:
        if divergence == "hutchinson" and probes is None:
            raise ValueError("Hutchinson divergence needs probes (make_probes).")
        div = Divergence(divergence, chunk_size=chunk_size, mode=mode, probes=probes)
        ev = evaluate(model, lam, x, {"lap"}, div)
    return ev.s, ev.lap
