"""What every ODE solver is: a name, an order, whether it adapts its steps, and how it steps.

Solvers know nothing about diffusion. A fixed-step solver gets a :class:`Problem` (its nodes, which trailing state
components are integrals such as a log-density, and — only for methods written in λ such as DPM-Solver++ — the
schedule) and returns a stepper for that one solve (multistep methods keep their past evaluations there). An
adaptive solver integrates between two ends by itself. :func:`diffdensity.solvers.resolve` turns a registered name
(:data:`diffdensity.registry.SOLVERS`) or an object into a solver.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

from torch import Tensor

__all__ = ["Problem", "Solver", "FixedStepSolver", "AdaptiveSolver", "as_tuple", "axpy"]


def as_tuple(y):
    return (y,) if isinstance(y, Tensor) else tuple(y)


def axpy(y, h, k):
    """y + h * k elementwise over tuples; h a python float or 0-d tensor."""
    return tuple(a + h * b for a, b in zip(y, k))


@dataclass
class Problem:
    """One fixed-step solve as a solver sees it: ``nodes`` (its variable τ at the grid nodes); the last
    ``n_integrals`` state components are integrals whose rate does not depend on them (e.g. log p), with an optional
    quadrature variable ``u`` and dτ/du (``dtau_du``) at the nodes; ``lams`` the nodes in λ and ``schedule`` for
    solvers written in λ."""

    nodes: list
    n_integrals: int = 0
    u: list | None = None
    dtau_du: list | None = None
    lams: list | None = None
    schedule: Any = None


class Solver:
    """Base of all ODE solvers: ``name`` (its registry name), ``order``, ``adaptive``, ``evals_per_step`` and the
    integration ``variable`` it must step in (None: the caller's choice, e.g. a schedule's ``fixed_time``) and the ``grid``
    kind it prefers."""

    name: str = ""
    order: int = 0
    adaptive: bool = False
    evals_per_step: int = 1
    variable: str | None = None
    grid: str | None = None  # the grid kind it prefers when the caller names none (None: the schedule's default)

    def variable_for(self, schedule, requested: str | None) -> str:
        """The variable this solve steps in: the method's own if it has one, else ``requested``, else a default."""
        if self.variable is not None:
            return self.variable
        if requested is not None:
            return requested
        return "lambda" if self.adaptive else schedule.fixed_time

    @classmethod
    def options(cls) -> tuple[str, ...]:
        """The keyword options its constructor takes."""
        return tuple(p for p in inspect.signature(cls.__init__).parameters if p != "self")

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.options() if hasattr(self, k))
        return f"{type(self).__name__}({opts})"


class FixedStepSolver(Solver):
    """A solver on a given grid. Subclasses give :meth:`step` (one-step methods) or override :meth:`stepper`."""

    def __init__(self, time: str | None = None):
        self.time = time

    def variable_for(self, schedule, requested: str | None) -> str:
        return super().variable_for(schedule, self.time if self.time is not None else requested)

    def step(self, f: Callable, y: tuple, t0: float, t1: float) -> tuple:
        raise NotImplementedError

    def stepper(self, problem: Problem) -> Callable:
        """A callable ``(f, y, i) -> y`` making step i (from nodes[i] to nodes[i+1]) of this one solve."""
        nodes = problem.nodes
        return lambda f, y, i: self.step(f, y, nodes[i], nodes[i + 1])


class AdaptiveSolver(Solver):
    """A solver that chooses its own steps to meet ``rtol``/``atol``."""

    adaptive = True

    def solve(self, func: Callable, y0: tuple, t0: float, t1: float, on_step: Callable | None = None,
              t_eval=None):
        """Integrate dy/dτ = func(τ, y[, rows]) from t0 to t1 → :class:`~diffdensity.solvers.fixed.Solution`;
        ``on_step(i, tau, y)`` after each accepted step (``tau`` a float, or per example a (B,) tensor); the states
        at the τ of ``t_eval`` (strictly inside, in order) come back in ``Solution.path`` (dense output)."""
        raise NotImplementedError
