"""The log-density integral by quadrature along a solved path, with a standard error per example (math.md §I.4).

An adaptive solver needs a Hutchinson probe held for its whole solve, and a held probe's error does not average out
(the estimate is vᵀ(∫J dλ)v). Here the ODE is solved for x alone, with dense output at the nodes of a composite
Gauss–Legendre rule in the solver's variable; then the log-density rule's rate is evaluated at each node with fresh
probes from the example's own stream, so the noise averages over the nodes, and the probes' spread at each node gives
each example's standard error. Streams are seeded from the example's bytes and the caller's seed: an example's value
does not depend on its batch.
"""
from __future__ import annotations

import hashlib
import warnings

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ._checks import check_count, check_state
from ._rng import draw
from .evaluation import Divergence, Eval
from .integrate import Samples, _ends, _InTime, prepare
from .tracking import AugmentedODE, LogDensityRule

__all__ = ["gauss_legendre", "ExampleStreams", "log_density_quadrature", "DEFAULT_NODES", "NODE_PROBES",
           "MAX_PROBES_PER_NODE"]

DEFAULT_NODES = 128  # 64 two-point panels (measured: benchmarks/precision.py)
NODE_PROBES = 4  # probes per node by default: they share the node's forward pass (variance ∝ 1/(nodes·probes))
MAX_PROBES_PER_NODE = 256  # what precision= may spend per node before it gives up with a warning


def gauss_legendre(t0: float, t1: float, panels: int, points: int = 2) -> tuple[Tensor, Tensor]:
    """Nodes and (signed) weights of the composite ``points``-point Gauss–Legendre rule on ``panels`` equal panels
    from t0 to t1 (float64), in the order of integration."""
    check_count(panels, "panels")
    x, w = np.polynomial.legendre.leggauss(int(points))
    edges = np.linspace(float(t0), float(t1), int(panels) + 1)
    mid, half = 0.5 * (edges[:-1] + edges[1:]), 0.5 * (edges[1:] - edges[:-1])
    taus = (mid[:, None] + half[:, None] * x[None, :]).reshape(-1)
    return torch.from_numpy(taus), torch.from_numpy((half[:, None] * w[None, :]).reshape(-1))


def _seed(generator) -> int:
    """The caller's seed for the example streams: 0 without a generator (reproducible), else one draw from it."""
    if generator is None:
        return 0
    return int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))


class ExampleStreams:
    """One random stream per example, seeded from (``generator``'s draw, the example's bytes), or the given list of
    per-example generators: what an example draws does not depend on its batch-mates or its position."""

    def __init__(self, x: Tensor, generator=None):
        if isinstance(generator, (list, tuple)):
            if len(generator) != x.shape[0]:
                raise ValueError(f"{len(generator)} generators for a batch of {x.shape[0]}; pass one per example.")
            self.gens = list(generator)
            return
        seed = _seed(generator).to_bytes(8, "little")
        flat = x.detach().to("cpu", torch.float64).reshape(x.shape[0], -1).numpy()
        self.gens = [torch.Generator().manual_seed(int.from_bytes(
            hashlib.blake2b(seed + row.tobytes(), digest_size=8).digest(), "little") >> 1) for row in flat]

    def probes(self, rows, n: int, like: Tensor, kind: str = "rademacher") -> Tensor:
        """(n, len(rows), *like.shape[1:]) probes, example ``rows[i]``'s from its own stream."""
        name = "rademacher" if kind == "rademacher" else "normal"
        return torch.stack([draw(name, (n, *like.shape[1:]), self.gens[int(r)], dtype=like.dtype, device=like.device)
                            for r in rows], 1)


class _Accumulator:
    """Per example and node: probes seen, mean and M2 (Welford) of the rate samples; the weighted total and its
    standard error Σ_j W_j² s_j²/n_j."""

    def __init__(self, B: int, weights: Tensor, dtype, device):
        N = weights.numel()
        self.w = weights.to(device=device, dtype=torch.float64)
        self.n = torch.zeros(B, N, dtype=torch.float64, device=device)
        self.mean = torch.zeros(B, N, dtype=torch.float64, device=device)
        self.m2 = torch.zeros(B, N, dtype=torch.float64, device=device)
        self.dtype = dtype

    def add(self, j: int, rows: Tensor, samples: Tensor) -> None:
        """Merge (P, len(rows)) rate samples into node j of ``rows`` (Chan et al.'s parallel update)."""
        s = samples.to(torch.float64)
        nb, mb = s.shape[0], s.mean(0)
        m2b = ((s - mb) ** 2).sum(0)
        na, ma = self.n[rows, j], self.mean[rows, j]
        n = na + nb
        d = mb - ma
        self.mean[rows, j] = ma + d * nb / n
        self.m2[rows, j] = self.m2[rows, j] + m2b + d**2 * na * nb / n
        self.n[rows, j] = n

    @property
    def total(self) -> Tensor:
        return (self.mean * self.w).sum(1).to(self.dtype)

    @property
    def stderr(self) -> Tensor:
        var = self.m2 / (self.n * (self.n - 1)).clamp_min(1)
        return (var * self.w**2).sum(1).sqrt().to(self.dtype)


def _rate_samples(model, rule: LogDensityRule, dyn, div: Divergence, lam, x: Tensor, probes: Tensor) -> Tensor:
    """The rule's dλ-rate at (λ, x) once per probe: (P, B); its mean over probes is the Hutchinson estimate."""
    s, est = div.samples(model, x, lam, probes)
    check_state(f"{type(dyn).__name__} (model output)", lam, s, est)
    base = Eval(lam, x, s)
    ut = dyn.drift(base)
    return torch.stack([rule.rate(Eval(lam, x, s, lap=e), ut, None) for e in est])


def log_density_quadrature(model, dynamics, x: Tensor, lam0: float, lam1: float, *, solver, nodes: int = DEFAULT_NODES,
                           n_probes: int = 2, generator=None, logp0=None, precision: float | None = None,
                           probe: str = "rademacher", first_eval: Eval | None = None, progress=None,
                           desc: str = "log p by quadrature") -> Samples:
    """Integrate an ODE dynamics from λ₀ to λ₁ by the adaptive ``solver`` for x alone, and its log-density change by
    the ``nodes``-node Gauss–Legendre rule with ``n_probes`` (≥ 2) fresh Hutchinson probes per node → Samples with
    ``logp`` = logp0 + ∫ rate dλ and ``stderr``. ``precision`` (nats): more probes at the same nodes, for the
    examples above it, until each standard error is below it (at most :data:`MAX_PROBES_PER_NODE` per node)."""
    if not solver.adaptive:
        raise ValueError(f"the quadrature scheme solves x adaptively; solver={solver.name!r} is fixed-step.")
    if dynamics.stochastic or dynamics.needs:
        raise ValueError(f"{type(dynamics).__name__} reads more than the score (or has noise): its path needs the "
                         "divergence inside the solve; use the augmented solve.")
    check_count(nodes, "nodes")
    if nodes % 2:
        raise ValueError(f"nodes={nodes}: the rule has two nodes per panel; pass an even number.")
    check_count(n_probes, "n_probes")
    if n_probes < 2:
        raise ValueError("n_probes must be ≥ 2 per node: the standard error comes from the probes' spread.")
    m = prepare(model, x, "x")
    lam0, lam1 = float(lam0), float(lam1)
    sch = dynamics.schedule
    tv = sch.time_variable(solver.variable_for(sch, None))
    t0, t1 = (float(v) for v in tv.to_tau(torch.tensor([lam0, lam1], dtype=torch.float64)))
    lo, hi = min(lam0, lam1), max(lam0, lam1)
    lams, w = gauss_legendre(lam0, lam1, nodes // 2)  # in λ, where the rate is smooth (not in σ or t)
    field = AugmentedODE(m, dynamics, False, first_eval=first_eval)
    with torch.no_grad():
        sol = solver.solve(_InTime(field, tv, lo, hi, _ends(t0, t1, lam0, lam1, x.dtype)), (x,), t0, t1,
                           t_eval=tv.to_tau(lams))
    check_state(desc, lam1, *sol.y)
    acc = _Accumulator(x.shape[0], w, x.dtype, x.device)
    streams = ExampleStreams(x, generator)
    run = _NodeRunner(m, dynamics, LogDensityRule(dynamics, 1 if lam1 >= lam0 else -1), streams, probe,
                      [p[0] for p in sol.path], lams.tolist(), acc)
    run.sweep(torch.arange(x.shape[0], device=x.device), int(n_probes), progress, desc)
    if precision is not None:
        run.refine(float(precision), int(n_probes), progress, desc)
    lp0 = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device) if logp0 is None else logp0
    return Samples(sol.y[0], lp0 + acc.total, m.nfe, None, acc.stderr)


class _NodeRunner:
    """Evaluates the rate at the stored nodes for some rows with probes from their streams."""

    def __init__(self, model, dyn, rule, streams, probe, xs, lams, acc):
        self.model, self.dyn, self.rule, self.streams, self.xs, self.lams, self.acc = \
            model, dyn, rule, streams, xs, lams, acc
        self.div = Divergence("hutchinson", probe=probe)
        self.probe = probe

    def sweep(self, rows: Tensor, n: int, progress, desc: str) -> None:
        bar = tqdm(total=len(self.lams), desc=desc, leave=False, disable=progress is False or None)
        for j, (lam, xj) in enumerate(zip(self.lams, self.xs)):
            x = xj[rows]
            probes = self.streams.probes(rows.tolist(), n, x, self.probe)
            self.acc.add(j, rows, _rate_samples(self.model, self.rule, self.dyn, self.div, lam, x, probes))
            bar.update(1)
        bar.close()

    def refine(self, precision: float, n: int, progress, desc: str) -> None:
        if not precision > 0:
            raise ValueError(f"precision={precision}: need a positive number of nats.")
        while True:
            rows = (self.acc.stderr > precision).nonzero().reshape(-1)
            if not rows.numel():
                return
            seen = int(self.acc.n[rows].min())
            if seen >= MAX_PROBES_PER_NODE:
                warnings.warn(f"precision={precision:g}: {rows.numel()} example(s) still have a standard error above "
                              f"it after {seen} probes per node (largest {float(self.acc.stderr.max()):.3g} nats); "
                              "returned as they are.", stacklevel=3)
                return
            self.sweep(rows, min(seen, MAX_PROBES_PER_NODE - seen) or n, progress, f"{desc} (precision)")
