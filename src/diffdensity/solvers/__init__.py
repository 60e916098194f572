"""Solvers that know nothing about diffusion: one file per family (euler, heun, ab2, dpmpp2m, dopri5), registered in
:data:`diffdensity.registry.SOLVERS`, plus Euler–Maruyama for SDEs.

States are tuples of tensors (the sample plus per-sample scalars such as a log-density). A vector field is
``func(tau, y) -> dy/dτ`` (same tuple structure); it is called once per stage, so counting its calls counts NFE.
"""
from __future__ import annotations

from .base import AdaptiveSolver, FixedStepSolver, Problem, Solver
from .dopri5 import odeint_adaptive, odeint_dopri5
from .fixed import Solution, odeint
from .sde import brownian_increments, sdeint

__all__ = ["Solver", "FixedStepSolver", "AdaptiveSolver", "Problem", "Solution", "resolve", "odeint", "sdeint",
           "brownian_increments", "odeint_adaptive", "odeint_dopri5"]


def resolve(solver, strict: bool = True, **options) -> Solver:
    """A solver object from a registered name (built with ``options``) or an object (returned as it is).
    ``strict=False`` drops options the solver does not take (e.g. tolerances for a fixed-step solver) instead of
    refusing them; options that are None are not passed."""
    from ..registry import SOLVERS

    options = {k: v for k, v in options.items() if v is not None}
    if isinstance(solver, Solver):
        if options and strict:
            raise ValueError(f"{', '.join(options)}: options of a solver given as an object go to its constructor, "
                             f"e.g. {type(solver).__name__}({next(iter(options))}=...).")
        return solver
    if isinstance(solver, type) and issubclass(solver, Solver):
        cls = solver
    else:
        cls = SOLVERS.load(solver)
    takes = cls.options()
    extra = [k for k in options if k not in takes]
    if extra and strict:
        raise ValueError(f"{', '.join(extra)} do(es) not apply to solver {solver!r}; it takes "
                         f"{', '.join(takes) or 'no options'}.")
    return cls(**{k: v for k, v in options.items() if k in takes})
