"""Random draws that work whatever device the generator lives on.

Every draw in the library goes through :func:`draw`: the numbers are made on the *generator's* device and then
moved to the tensor's device, so a CPU ``torch.Generator`` drives a CUDA run (and gives the same numbers as on the
CPU), and a CUDA generator drives a CUDA run without a transfer. PyTorch refuses a generator on another device than
``device=``; this is the one place that handles it.
"""
from __future__ import annotations

import numbers

import torch
from torch import Tensor

__all__ = ["draw", "as_generator"]


def as_generator(generator, allow_list: bool = False):
    """``generator`` as the library uses it: None, a ``torch.Generator``, or an int seed (a new CPU generator seeded
    with it, as numpy/JAX-style APIs accept); a list of generators only where ``allow_list`` (one per example)."""
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, numbers.Integral) and not isinstance(generator, bool):
        return torch.Generator().manual_seed(int(generator))
    if isinstance(generator, (list, tuple)) and allow_list:
        return [as_generator(g) for g in generator]
    what = "a list of generators (accepted by log_prob / bits_per_dim only, one per example)" \
        if isinstance(generator, (list, tuple)) else repr(generator)
    raise TypeError(f"generator={what}: pass a torch.Generator, an int seed or None.")


def draw(kind: str, shape, generator: torch.Generator | None = None, *, dtype=None, device=None) -> Tensor:
    """``kind`` ∈ {"normal", "uniform", "rademacher"} noise of ``shape`` drawn on the generator's device, returned on
    ``device`` (default: the generator's device, else the default device) with ``dtype``."""
    src = generator.device if generator is not None else device
    shape = tuple(shape)
    if kind == "normal":
        z = torch.randn(shape, generator=generator, dtype=dtype, device=src)
    elif kind == "uniform":
        z = torch.rand(shape, generator=generator, dtype=dtype, device=src)
    elif kind == "rademacher":
        z = (torch.randint(0, 2, shape, generator=generator, device=src) * 2 - 1).to(dtype or torch.get_default_dtype())
    else:
        raise ValueError(f"noise kind={kind!r}; choose normal, uniform or rademacher.")
    return z if device is None else z.to(device)
