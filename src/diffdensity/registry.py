"""The registries: the one list of each kind of plug-in (ODE solvers, samplers and density-guidance rules).

Torch-free on purpose: the command line reads its choices here without importing torch. An entry names where its
object lives (``"module:attribute"``, imported on first :meth:`Registry.load`) and what a caller must know before
importing it (a sampler's default steps, the options that apply to it). Everything else an object declares itself
(a solver's order, whether it is adaptive). Like torchdiffeq's ``SOLVERS`` table: adding a solver is one file under
``solvers/`` plus one line here. Users register their own with :meth:`Registry.register`.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Entry", "Registry", "SOLVERS", "SAMPLERS", "GUIDANCE"]


@dataclass(frozen=True)
class Entry:
    """One registered plug-in: its ``name``, where it lives (``target`` "module:attribute", or the object itself) and
    static facts about it (``meta``) that a caller may read without importing it."""

    name: str
    target: Any
    meta: dict = field(default_factory=dict)

    def load(self):
        """The registered object (imported on first use)."""
        if not isinstance(self.target, str):
            return self.target
        module, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module), attr)


class Registry:
    """An ordered name → :class:`Entry` table of one ``kind`` of plug-in."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, target, **meta) -> Entry:
        """Add ``name`` (refused if taken) pointing at ``target`` ("module:attribute" or the object)."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} name must be a non-empty string, got {name!r}.")
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered already ({self._entries[name].target!r}).")
        entry = self._entries[name] = Entry(name, target, dict(meta))
        return entry

    def names(self, **where) -> tuple[str, ...]:
        """Registered names in order; ``where`` keeps those whose meta has these values (e.g. ``kind="score"``)."""
        return tuple(n for n, e in self._entries.items() if all(e.meta.get(k) == v for k, v in where.items()))

    def get(self, name: str) -> Entry:
        """The entry of ``name``; a clear error listing the choices otherwise."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise ValueError(f"unknown {self.kind} {name!r}; choose one of {', '.join(self._entries)}.") from None

    def load(self, name: str):
        """The object registered as ``name``."""
        return self.get(name).load()

    def __contains__(self, name) -> bool:
        return isinstance(name, str) and name in self._entries

    def __iter__(self):
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"


# --- ODE solvers: one file each under solvers/; the class declares order, adaptivity and its step ------------------
SOLVERS = Registry("solver")
SOLVERS.register("euler", "diffdensity.solvers.euler:Euler")
SOLVERS.register("heun", "diffdensity.solvers.heun:Heun")
SOLVERS.register("midpoint", "diffdensity.solvers.midpoint:Midpoint")
SOLVERS.register("ab2", "diffdensity.solvers.ab2:AB2")
SOLVERS.register("dpmpp2m", "diffdensity.solvers.dpmpp2m:DPMSolverPP2M")
SOLVERS.register("dopri5", "diffdensity.solvers.dopri5:Dopri5")

# --- density-guidance rules (Karczewski et al. 2025b): name → sampler function --------------------------------------
GUIDANCE = Registry("guidance rule")
GUIDANCE.register("prior", "diffdensity.guidance:sample_prior_guided", default_steps=64)
GUIDANCE.register("density", "diffdensity.guidance:sample_density_guided", default_steps=64)
GUIDANCE.register("stochastic-density", "diffdensity.guidance:sample_stochastic_density_guided", default_steps=128,
                  stochastic=True)

# --- samplers: name → function, its default steps, the model kind it needs and the options that apply to it ----------
# ``options``: keyword options (beyond model, x_T, steps, generator) the sampler takes; a caller passing another one
# is told it does not apply. ``args``: options passed positionally after x_T (in this order).
SAMPLERS = Registry("sampler")
SAMPLERS.register("ode", "diffdensity.sampling:sample_ode", default_steps=256, model="score",
                  options=("solver", "track_logp", "divergence", "n_probes"))
SAMPLERS.register("sde", "diffdensity.sampling:sample_sde", default_steps=1024, model="score",
                  options=("track_logp", "tracker"))
SAMPLERS.register("hd", "diffdensity.sampling:sample_hd", default_steps=1024, model="score", args=("threshold",),
                  options=("threshold", "first", "solver", "track_logp", "divergence", "n_probes", "tracker"))
for _rule in GUIDANCE:
    _e = GUIDANCE.get(_rule)
    _noise = ("noise",) if _e.meta.get("stochastic") else ()
    SAMPLERS.register(f"{_rule}-guided", _e.target, default_steps=_e.meta["default_steps"], model="score",
                      guidance=_rule, args=("q", *_noise),
                      options=("q", *_noise, "track_logp", "divergence", *(() if _noise else ("solver", "n_probes"))))
SAMPLERS.register("distributional", "diffdensity.distributional:sample_distributional", default_steps=4,
                  model="generator", options=("churn",))
SAMPLERS.register("ddim", "diffdensity.distributional:sample_ddim", default_steps=4, model="score",
                  options=("churn",))
del _rule, _e, _noise
