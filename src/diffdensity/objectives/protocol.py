"""What the trainer hands an objective: the :class:`Objective` protocol, the :class:`Shard` of a batch, and the
:class:`ObjectiveConfig` base of every objective's own options.

As NVlabs/edm passes its ``Loss`` object to the training loop, :class:`~diffdensity.Trainer` knows batches, the
optimizer, EMA, accelerate, checkpoints and when to evaluate; an objective knows how to turn (network, x₀ batch,
randomness) into per-sample losses, owns the state it adapts (checkpointed with the run), and — optionally — how
the trained network is evaluated, sampled and exported. The ε-denoising objective
(:class:`~diffdensity.objectives.denoising.DenoisingObjective`) is one implementation.

An objective registered in :data:`diffdensity.objectives.OBJECTIVES` also has a ``Config`` (an
:class:`ObjectiveConfig` dataclass: its own options, checked on creation) and ``from_train_config(cfg)`` (the
objective a training config describes; ``cfg`` holds the config's fields under the same names).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Mapping, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

__all__ = ["Objective", "Shard", "ObjectiveConfig"]


@dataclass
class Shard:
    """This process's rows of a global batch and the generator that the global batch's randomness comes from.

    Every process draws the *global* batch's noise from identical generators and keeps its own rows, so a run
    does not depend on the number of processes (up to floating-point reduction order).
    """

    generator: torch.Generator
    size: int  # the global batch size
    rows: slice  # this process's rows of it
    device: torch.device
    gather_fn: Callable[[Tensor], Tensor] | None = None  # local rows -> global batch (on every process)

    def local(self, t: Tensor) -> Tensor:
        """This process's rows of a global-batch tensor, on the training device."""
        return t[self.rows].to(self.device)

    def randn(self, shape, dtype: torch.dtype | None = None) -> Tensor:
        """Standard normal noise of per-sample ``shape``: drawn for the global batch, this process's rows returned."""
        return self.local(torch.randn((self.size, *shape), generator=self.generator, dtype=dtype))

    def rand(self, shape, dtype: torch.dtype | None = None) -> Tensor:
        """U[0, 1) noise of per-sample ``shape``, like :meth:`randn`."""
        return self.local(torch.rand((self.size, *shape), generator=self.generator, dtype=dtype))

    def gather(self, t: Tensor) -> Tensor:
        """The global batch of a per-row tensor computed on every process (CPU)."""
        t = t.detach()
        return (self.gather_fn(t) if self.gather_fn is not None else t).cpu()


@runtime_checkable
class Objective(Protocol):
    """A training objective (see the module docstring).

    Required: ``setup``, ``__call__``, ``state_dict``, ``load_state_dict``. Optional hooks, each used only when
    present (the trainer refuses ``eval_every`` / ``sample_every`` without them):

    * ``model(net)`` -> the object the trained network is used as (e.g. a :class:`~diffdensity.NetworkModel`);
    * ``evaluate(net, x, generator) -> dict`` of held-out metrics on data-unit examples ``x`` (logged);
    * ``sample(net, n, steps, generator) -> Tensor`` of n model-space samples (drawn as PNG grids);
    * ``export(net, path, meta) -> Path``: write a model folder (``meta``: dataset, training settings, metrics).
    """

    def setup(self, dataset) -> nn.Module:
        """Called once with the :class:`~diffdensity.data.Dataset` (torch seeded): return the fresh network."""
        ...

    def __call__(self, net: nn.Module, x0: Tensor, shard: Shard) -> Tensor:
        """Per-sample losses (local batch,) for model-space examples ``x0`` (this process's rows)."""
        ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class ObjectiveConfig:
    """Base of the objectives' option dataclasses: checked on creation (:meth:`validate` raises a ValueError
    naming the bad option), built from any object or dict that holds the options under their names."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """ValueError naming the first bad option (subclasses)."""

    @classmethod
    def from_options(cls, source):
        """The config of the options ``source`` (an object such as a TrainConfig, or a dict) holds; others default."""
        get = source.get if isinstance(source, Mapping) else (lambda k, d: getattr(source, k, d))
        missing = object()
        values = {f.name: get(f.name, missing) for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if v is not missing})
