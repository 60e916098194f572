"""Solvers that know nothing about diffusion: fixed-grid Euler/Heun, Euler–Maruyama, adaptive (torchdiffeq).

States are tuples of tensors (the sample plus per-sample scalars such as a log-density). A vector field is
``func(lam, y) -> dy/dλ`` (same tuple structure); it is called once per stage, so counting its calls counts NFE.
"""
from .fixed import Solution, odeint, ODE_METHODS
from .sde import sdeint, brownian_increments
from .adaptive import odeint_adaptive, odeint_dopri5

__all__ = ["Solution", "odeint", "ODE_METHODS", "sdeint", "brownian_increments", "odeint_adaptive", "odeint_dopri5"]
