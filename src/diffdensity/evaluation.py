"""One model evaluation per solver stage: the record :class:`Eval` and the divergence estimators.

:func:`evaluate` calls the model's score once and adds what the dynamics or the tracker declared it needs:
``"lap"`` (Δ log p = div s, exact or Hutchinson, estimated by a :class:`Divergence` the caller holds) and
``"hvp"`` (a lazy Hessian-vector product v ↦ ∇²log p · v, one VJP through the same graph per call).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from ._checks import check_choice, check_count, flat_dot
from ._rng import draw

__all__ = ["Eval", "Divergence", "DIVERGENCES", "NEEDS", "evaluate", "make_probes", "score_and_divergence", "auto_chunk"]

DIVERGENCES = ("exact", "hutchinson")
NEEDS = frozenset({"lap", "hvp"})
_MODES = ("vjp", "jvp")
_PROBES = ("rademacher", "gaussian")
MAX_PROBES = 4096


@dataclass
class Eval:
    """The model at (λ, x): score ``s``; ``lap`` = Δ log p and ``hvp`` = (v ↦ ∇²log p v) only when asked for;
    ``lap_var`` the Monte-Carlo variance of ``lap`` per sample (0 exact, None from a single Hutchinson probe)."""

    lam: float | Tensor
    x: Tensor
    s: Tensor
    lap: Tensor | None = None
    hvp: Callable[[Tensor], Tensor] | None = None
    lap_var: Tensor | None = None


def make_probes(x: Tensor, n_probes: int = 1, kind: str = "rademacher", generator=None) -> Tensor:
    """Hutchinson probes (n_probes, *x.shape): Rademacher (default) or Gaussian. ``generator`` may be a sequence of
    generators, one per example: example i's probes then come from its own stream, whatever its batch."""
    check_count(n_probes, "n_probes")
    if isinstance(generator, (list, tuple)):
        if len(generator) != x.shape[0]:
            raise ValueError(f"{len(generator)} generators for a batch of {x.shape[0]}; pass one per example.")
        return torch.stack([make_probes(x[i:i + 1], n_probes, kind, g)[:, 0] for i, g in enumerate(generator)], 1)
    shape = (int(n_probes), *x.shape)
    if kind == "rademacher":
        return draw("rademacher", shape, generator, dtype=x.dtype, device=x.device)
    if kind == "gaussian":
        return draw("normal", shape, generator, dtype=x.dtype, device=x.device)
    raise ValueError(f"probe kind={kind!r}; choose one of {_PROBES}.")


class Divergence:
    """How Δ log p = div s is estimated: ``"exact"`` (trace of the Jacobian by VJPs over basis vectors,
    ``chunk_size`` at a time, vmapped by torch.func) or ``"hutchinson"`` (E vᵀJv over ``n_probes`` probes,
    math.md §0.3). ``chunk_size="auto"`` (default) sizes the chunks from the measured memory of one VJP
    (:func:`auto_chunk`); None takes all D at once. Where a network cannot be vmapped (e.g. diffusers' attention:
    "NYI: querying is_contiguous inside of vmap") it falls back to one VJP per vector, once and for all.

    Hutchinson probes are drawn from ``generator`` (or one generator per example) at the first evaluation and held
    fixed for the whole solve (``fixed=True``, what an adaptive ODE solver needs), or drawn afresh at every
    evaluation (``fixed=False``: independent errors per step average out along an SDE path). ``probes`` may also
    be given. ``rows`` (set by a solver) selects the batch rows being evaluated.
    """

    def __init__(self, kind: str = "exact", *, n_probes: int = 1, probe: str = "rademacher", generator=None,
                 chunk_size: int | str | None = "auto", mode: str = "vjp", fixed: bool = True,
                 probes: Tensor | None = None):
        check_choice(kind, "divergence", DIVERGENCES)
        check_choice(mode, "mode", _MODES)
        check_choice(probe, "probe", _PROBES)
        check_count(n_probes, "n_probes")
        if n_probes > MAX_PROBES:
            raise ValueError(f"n_probes={n_probes}: more than {MAX_PROBES} Hutchinson probes costs more than the exact "
                             "divergence for any D ≤ that; use divergence='exact' instead.")
        if chunk_size != "auto":
            check_count(chunk_size, "chunk_size", allow_none=True)
        self.kind, self.n_probes, self.probe, self.generator = kind, int(n_probes), probe, generator
        self.chunk_size, self.mode, self.fixed, self.probes = chunk_size, mode, fixed, probes
        self.rows: Tensor | None = None
        self.batched = True  # False once vmap failed on this model: one VJP per vector from then on
        self._chunk: int | None = None  # the "auto" chunk, chosen by speed at the first evaluation
        self._cap: int | None = None  # the most vectors per chunk the memory budget allows (measured)
        self.last_var: Tensor | None = None  # the variance of the last estimate (see :meth:`trace`)

    @classmethod
    def of(cls, divergence, generator=None) -> "Divergence | None":
        """A :class:`Divergence` from a name (defaults otherwise), an instance, or None."""
        if divergence is None or isinstance(divergence, Divergence):
            return divergence
        return cls(divergence, generator=generator)

    def _probes(self, x: Tensor) -> Tensor:
        rows, gen = self.rows, self.generator
        if self.probes is None or not self.fixed:
            if isinstance(gen, (list, tuple)) and rows is not None and len(gen) != x.shape[0]:
                if self.fixed:  # held probes are drawn once for the whole batch
                    raise ValueError("held Hutchinson probes must first be drawn on the whole batch.")
                return make_probes(x, self.n_probes, self.probe, [gen[int(i)] for i in rows])
            self.probes = make_probes(x, self.n_probes, self.probe, gen)
            return self.probes
        probes = self.probes
        if rows is not None and probes.shape[1] != x.shape[0]:
            probes = probes[:, rows.to(probes.device)]
        if probes.shape[1:] != x.shape:
            raise ValueError(f"Hutchinson probes have shape {tuple(self.probes.shape)}; need (n_probes, *{tuple(x.shape)}).")
        return probes

    def chunk(self, x: Tensor) -> int:
        """Basis vectors per batched VJP: ``chunk_size``, or for "auto" the size chosen by speed within the memory cap."""
        D = x[0].numel()
        if self.chunk_size is None:
            return D
        if self.chunk_size != "auto":
            return min(int(self.chunk_size), D)
        return min(self._chunk or D, D)

    @property
    def measuring(self) -> bool:
        """True until the "auto" chunk is measured (that evaluation takes the autograd path: torch.func refuses
        saved-tensor hooks)."""
        return self.kind == "exact" and self.chunk_size == "auto" and self._cap is None

    def forward(self, model, x: Tensor, lam, fn):
        """Run ``fn()`` (the forward pass that the VJPs will pull back through), measuring for "auto" the memory
        autograd saves for it the first time: one VJP needs about that much again."""
        if not self.measuring:
            return fn()
        saved = [0]

        def pack(t):
            saved[0] += t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = fn()
        self._cap = auto_chunk(x, saved[0])
        return out

    def trace(self, s: Tensor, vjp, x: Tensor) -> Tensor:
        """div s per sample from ``vjp(V) -> V J`` (V: (k, *x.shape)), exact or Hutchinson, batched where possible;
        ``last_var`` becomes the estimate's variance per sample: 0 exact, the probes' spread over their number for
        two or more Hutchinson probes, None for one."""
        B, D = x.shape[0], x[0].numel()
        if self.kind == "hutchinson":
            probes = self._probes(x)
            return self._mean_var((self._vjps(vjp, probes) * probes).reshape(probes.shape[0], B, -1).sum(-1))
        self.last_var = x.new_zeros(B)
        eye = torch.eye(D, dtype=x.dtype, device=x.device)
        # ∂s_i/∂x_i per basis vector, summed once at the end: the same additions whatever the chunks (a chunk size chosen
        # by timing must not change a single bit of the result)
        diag = torch.zeros(D, B, dtype=x.dtype, device=x.device)
        timed: list[tuple[int, float]]  # (chunk size, seconds) of each timed trial chunk
        start, timed = 0, []
        while start < D:
            c = self._next_chunk(x, timed)
            basis = eye[start:start + c]  # (c, D): the same basis vector for every sample (samples are independent)
            gouts = basis[:, None, :].expand(-1, B, -1).reshape(-1, *x.shape)
            t0 = time.perf_counter()
            rows = self._vjps(vjp, gouts)
            if basis.shape[0] == c:  # a whole trial chunk (the last one may be cut short by D)
                timed.append((c, time.perf_counter() - t0))
            diag[start:start + basis.shape[0]] = (rows.reshape(basis.shape[0], B, D) * basis[:, None, :]).sum(2)
            start += basis.shape[0]
        if self.chunk_size == "auto" and self._chunk is None and timed:
            self._chunk = min(timed, key=lambda ct: ct[1] / ct[0])[0]  # fastest per vector, first D vectors only
        return diag.sum(0)

    def _mean_var(self, est: Tensor) -> Tensor:
        """The mean over probes of the estimates (n_probes, batch); their variance of the mean into ``last_var``."""
        k = est.shape[0]
        self.last_var = est.var(0).detach() / k if k > 1 else None
        return est.mean(0)

    def _next_chunk(self, x: Tensor, timed: list) -> int:
        """The next chunk's size: fixed, or for "auto" (until chosen) trial sizes 1, 2, 4, … up to the memory cap,
        each timed on the vectors it computes anyway (the choice costs no extra VJP)."""
        if self.chunk_size != "auto" or self._chunk is not None:
            return self.chunk(x)
        cap = self._cap or 1
        trial = 1 if not timed else 2 * timed[-1][0]
        if trial > cap:
            return min(timed, key=lambda ct: ct[1] / ct[0])[0]
        return trial

    def _vjps(self, vjp, vs: Tensor) -> Tensor:
        if self.batched and vs.shape[0] > 1:
            try:
                return vjp(vs)
            except RuntimeError as e:  # vmap unsupported by the network (issue 12 item 6): loop from now on
                if not _vmap_failure(e):
                    raise
                self.batched = False
        return torch.stack([vjp(v[None])[0] for v in vs])

    def __call__(self, s: Tensor, xg: Tensor, retain_graph: bool = False) -> Tensor:
        """div s at xg from the autograd graph of s = score(xg) (per sample); the graph is kept (for HVPs)."""
        def vjp(vs):
            if vs.shape[0] == 1:
                return torch.autograd.grad(s, xg, vs[0], retain_graph=True)[0][None]
            return torch.autograd.grad(s, xg, vs, is_grads_batched=True, retain_graph=True)[0]
        return self.trace(s, vjp, xg)

    def evaluate(self, model, x: Tensor, lam) -> tuple[Tensor, Tensor]:
        """(s, div s) by torch.func: one forward pass, then VJPs vmapped over chunks of vectors (no retained
        autograd graph, nothing kept across chunks but the VJP closure)."""
        from torch.func import vjp as fvjp, vmap

        x = x.detach()
        s, pull = fvjp(lambda y: model.score(y, lam), x)  # type: ignore[misc]  # torch stub: a 3-tuple only with has_aux

        def vjp(vs):
            if vs.shape[0] == 1:
                return pull(vs[0])[0][None]
            return vmap(pull)(vs)[0]
        return s.detach(), self.trace(s, vjp, x).detach()

    def samples(self, model, x: Tensor, lam, probes: Tensor) -> tuple[Tensor, Tensor]:
        """(s, vᵀ(∂s/∂x)v for each given probe): the Hutchinson samples themselves, (n_probes, batch), whose mean is
        the estimate and whose spread its standard error (one forward pass, the VJPs vmapped over the probes)."""
        from torch.func import vjp as fvjp, vmap

        x = x.detach()
        with torch.enable_grad():
            s, pull = fvjp(lambda y: model.score(y, lam), x)  # type: ignore[misc]  # torch stub: a 3-tuple only with has_aux
            vj = self._vjps(lambda vs: pull(vs[0])[0][None] if vs.shape[0] == 1 else vmap(pull)(vs)[0], probes)
        est = (vj * probes).reshape(probes.shape[0], x.shape[0], -1).sum(-1)
        return s.detach(), est.detach()

    def jvp(self, model, x: Tensor, lam) -> tuple[Tensor, Tensor]:
        """(s, Hutchinson div s) by forward-mode JVPs, one per probe."""
        from torch.func import jvp

        s, divs = None, []
        for v in self._probes(x):
            s, jv = jvp(lambda y: model.score(y, lam), (x.detach(),), (v,))  # type: ignore[misc]  # torch stub: a 3-tuple only with has_aux
            divs.append(flat_dot(jv, v))
        assert s is not None  # _probes gives at least one probe
        return s.detach(), self._mean_var(torch.stack(divs)).detach()


def _vmap_failure(e: RuntimeError) -> bool:
    msg = str(e)
    return any(k in msg for k in ("vmap", "NYI", "functorch", "Batching rule", "batched"))


# Memory budget of one batched VJP chunk: on a GPU a quarter of the free memory, on a CPU 1 GiB; within it the chunk is
# chosen by measured speed (trial sizes 1, 2, 4, … at the first evaluation; on the D = 64 oracle chunks of 8 VJPs
# ran 2-4× faster than chunks of 64, on the shipped UNets the budget allows a few: benchmarks/divergence_cost.py).
CPU_CHUNK_BYTES = 2**30


def auto_chunk(x: Tensor, saved_bytes: int) -> int:
    """The most basis vectors per batched VJP that the memory budget allows, from the memory autograd saved for one
    forward pass (``saved_bytes``; one VJP needs about that again, a vmapped chunk about 4× per vector)."""
    per = max(int(saved_bytes), x.numel() * x.element_size())
    if x.is_cuda:
        free, _ = torch.cuda.mem_get_info(x.device)
        budget = free // 4
    else:
        budget = CPU_CHUNK_BYTES
    return max(1, int(budget // (4 * per)))


def evaluate(model, lam, x: Tensor, needs=frozenset(), divergence: Divergence | None = None) -> Eval:
    """The one model evaluation of a stage at (λ, x), with Δ log p and/or a lazy HVP if ``needs`` says so."""
    needs = frozenset(needs)
    lap: Tensor | None
    if not needs <= NEEDS:
        raise ValueError(f"needs={sorted(needs)}; an evaluation can add only {sorted(NEEDS)}.")
    if not needs:
        with torch.no_grad():
            return Eval(lam, x, model.score(x, lam))
    if "lap" in needs and divergence is None:
        raise ValueError("this sampler needs Δ log p: pass divergence='exact' or 'hutchinson'.")
    if needs == {"lap"} and divergence is not None and divergence.kind == "hutchinson" and divergence.mode == "jvp":
        s, lap = divergence.jvp(model, x, lam)
        return Eval(lam, x, s, lap, lap_var=divergence.last_var)
    if needs == {"lap"} and divergence is not None and not divergence.measuring:
        with torch.enable_grad():
            s, lap = divergence.evaluate(model, x, lam)
        return Eval(lam, x, s, lap, lap_var=divergence.last_var)
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        s = divergence.forward(model, xg, lam, lambda: model.score(xg, lam)) if divergence is not None \
            else model.score(xg, lam)
        lap = divergence(s, xg, retain_graph="hvp" in needs).detach() if "lap" in needs and divergence is not None else None
    hvp = None
    if "hvp" in needs:
        def hvp(v: Tensor) -> Tensor:
            """∇²log p · v (for a learned score: Jᵀv, the same quadratic form vᵀJv)."""
            with torch.enable_grad():
                return torch.autograd.grad(s, xg, v, retain_graph=True)[0].detach()
    return Eval(lam, x, s.detach(), lap, hvp, divergence.last_var if lap is not None and divergence is not None else None)


def score_and_divergence(model, x: Tensor, lam, divergence: str | None, probes: Tensor | None = None,
                         chunk_size: int | str | None = "auto", mode: str = "vjp"):
    """(s, div s or None) at (λ, x): a convenience over :func:`evaluate` for a single evaluation."""
    if divergence is None:
        ev = evaluate(model, lam, x)
    else:
        if divergence == "hutchinson" and probes is None:
            raise ValueError("Hutchinson divergence needs probes (make_probes).")
        div = Divergence(divergence, chunk_size=chunk_size, mode=mode, probes=probes)
        ev = evaluate(model, lam, x, {"lap"}, div)
    return ev.s, ev.lap
