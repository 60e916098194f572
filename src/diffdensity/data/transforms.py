"""The map between data units and the space a model works in.

``Transform.forward`` reshapes a batch from ``data_shape`` to ``model_shape`` and applies a per-channel affine map
along the first model axis (the channel axis of images, the coordinate axis of flat vectors):

    z[:, c, ...] = scale[c] * x[:, c, ...] + shift[c]

For discrete data (``levels`` = L) the data units are integers 0..L-1 and dequantized values lie in [0, L);
the usual choice ``scale = 2/L, shift = -1`` maps [0, L) onto [-1, 1). Because the map is affine,
``log p_data(x) = log p_model(z) + log|det J|`` with the constant :meth:`Transform.log_abs_det`.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from .._rng import draw

__all__ = ["Transform", "unit_interval_transform", "dequantize", "to_model_space"]

ROUND_MODES = ("nearest", "floor")


def _as_list(v, name: str) -> list[float] | float:
    """A scalar stays a float; a sequence/tensor becomes a list of floats."""
    if isinstance(v, Tensor):
        v = v.detach().cpu().reshape(-1).tolist() if v.ndim > 0 else float(v)
    if isinstance(v, (int, float)):
        return float(v)
    try:
        out = [float(a) for a in v]
    except TypeError as e:
        raise ValueError(f"{name} must be a number or a sequence of numbers (one per channel), got {v!r}.") from e
    if len(out) == 1:
        return out[0]
    return out


class Transform:
    """Affine per-channel map plus reshape: z = scale[c]·reshape(x) + shift[c] (see the module docstring)."""

    def __init__(
        self,
        data_shape: Sequence[int],
        model_shape: Sequence[int] | None = None,
        scale: float | Sequence[float] = 1.0,
        shift: float | Sequence[float] = 0.0,
        levels: int | None = None,
    ):
        self.data_shape = tuple(int(d) for d in data_shape)
        self.model_shape = tuple(int(d) for d in (model_shape if model_shape is not None else data_shape))
        if any(d <= 0 for d in self.data_shape + self.model_shape) or not self.model_shape:
            raise ValueError(
                f"data_shape {self.data_shape} and model_shape {self.model_shape} must be non-empty with positive sizes."
            )
        if math.prod(self.data_shape) != math.prod(self.model_shape):
            raise ValueError(
                f"data_shape {self.data_shape} and model_shape {self.model_shape} hold different numbers of values; "
                f"the transform only reshapes, so their products must match."
            )
        self.scale = _as_list(scale, "scale")
        self.shift = _as_list(shift, "shift")
        n_ch = self.model_shape[0]
        for name, v in (("scale", self.scale), ("shift", self.shift)):
            if isinstance(v, list) and len(v) != n_ch:
                raise ValueError(
                    f"{name} has {len(v)} values but model_shape {self.model_shape} has {n_ch} channels "
                    f"(first axis); pass one number or one per channel."
                )
        scales = self.scale if isinstance(self.scale, list) else [self.scale]
        if any(s == 0 or not math.isfinite(s) for s in scales):
            raise ValueError(f"scale must be finite and non-zero, got {self.scale}.")
        if levels is not None:
            if int(levels) != levels or levels < 2:
                raise ValueError(f"levels must be an integer >= 2 (or None for continuous data), got {levels!r}.")
            levels = int(levels)
        self.levels = levels

    # ------------------------------------------------------------------ helpers
    def _param(self, v, z: Tensor) -> Tensor:
        t = torch.as_tensor(v, dtype=z.dtype, device=z.device)
        if t.ndim == 0:
            return t
        return t.reshape(1, -1, *([1] * (len(self.model_shape) - 1)))

    def _check(self, x: Tensor, shape: tuple[int, ...], name: str, space: str) -> None:
        if not isinstance(x, Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}.")
        if tuple(x.shape[1:]) != shape or x.ndim != len(shape) + 1:
            raise ValueError(
                f"{name} has shape {tuple(x.shape)}; expected (batch, {', '.join(map(str, shape))}) in {space} "
                f"(add a batch axis with {name}.unsqueeze(0) for a single sample)."
            )

    # ------------------------------------------------------------------ the map
    def forward(self, x: Tensor) -> Tensor:
        """Data units (B, *data_shape) -> model space (B, *model_shape); integer input becomes the default float dtype."""
        self._check(x, self.data_shape, "x", "data units")
        if not x.is_floating_point():
            x = x.to(torch.get_default_dtype())
        z = x.reshape(x.shape[0], *self.model_shape)
        return z * self._param(self.scale, z) + self._param(self.shift, z)

    __call__ = forward

    def inverse(self, z: Tensor, round: bool | str = False) -> Tensor:
        """Model space -> data units (B, *data_shape).

        ``round=True`` (or "nearest") clamps to [0, levels-1] and rounds to the nearest integer; ``round="floor"``
        returns the bin containing a dequantized value (floor, with a 1e-4 tolerance for float error).
        """
        self._check(z, self.model_shape, "z", "model space")
        if not z.is_floating_point():
            z = z.to(torch.get_default_dtype())
        x = (z - self._param(self.shift, z)) / self._param(self.scale, z)
        x = x.reshape(z.shape[0], *self.data_shape)
        if round is False or round is None:
            return x
        mode = "nearest" if round is True else round
        if mode not in ROUND_MODES:
            raise ValueError(f"round must be False, True, 'nearest' or 'floor', got {round!r}.")
        if self.levels is None:
            raise ValueError("round=True needs discrete data (levels set); this transform has levels=None.")
        x = torch.floor(x + 1e-4) if mode == "floor" else torch.round(x)
        return x.clamp(0, self.levels - 1)

    def log_abs_det(self) -> float:
        """log|det ∂z/∂x| per sample = Σ over all data dims of log|scale| (a constant)."""
        per_channel = math.prod(self.model_shape[1:])
        scales = self.scale if isinstance(self.scale, list) else [self.scale] * self.model_shape[0]
        return float(per_channel * sum(math.log(abs(s)) for s in scales))

    # ------------------------------------------------------------------ config
    def to_config(self) -> dict:
        """A JSON-able dict; :meth:`from_config` rebuilds the same transform."""
        return {
            "data_shape": list(self.data_shape),
            "model_shape": list(self.model_shape),
            "scale": self.scale,
            "shift": self.shift,
            "levels": self.levels,
        }

    @classmethod
    def from_config(cls, d: dict) -> "Transform":
        """Inverse of :meth:`to_config`."""
        if not isinstance(d, dict):
            raise ValueError(f"config must be a dict from Transform.to_config(), got {type(d).__name__}.")
        unknown = set(d) - {"data_shape", "model_shape", "scale", "shift", "levels"}
        if unknown or "data_shape" not in d:
            raise ValueError(
                f"config has keys {sorted(d)}; expected data_shape, model_shape, scale, shift, levels "
                f"(as written by Transform.to_config())."
            )
        return cls(d["data_shape"], d.get("model_shape"), d.get("scale", 1.0), d.get("shift", 0.0), d.get("levels"))

    @classmethod
    def identity(cls, shape: Sequence[int]) -> "Transform":
        """The identity on continuous data of the given shape."""
        return cls(shape, shape, 1.0, 0.0, None)

    def __eq__(self, other) -> bool:
        return isinstance(other, Transform) and self.to_config() == other.to_config()

    def __repr__(self) -> str:
        c = self.to_config()
        return "Transform(" + ", ".join(f"{k}={v!r}" for k, v in c.items()) + ")"


def unit_interval_transform(data_shape: Sequence[int], model_shape: Sequence[int], levels: int) -> Transform:
    """The standard discrete transform z = x·2/levels − 1, mapping [0, levels) onto [-1, 1)."""
    return Transform(data_shape, model_shape, scale=2.0 / levels, shift=-1.0, levels=levels)


def dequantize(x: Tensor, generator: torch.Generator | None = None, dtype: torch.dtype | None = None) -> Tensor:
    """Uniform dequantization x + u, u ~ U[0, 1)^d: integers 0..L-1 become values in [0, L)."""
    x = x.to(dtype or (x.dtype if x.is_floating_point() else torch.get_default_dtype()))
    return x + draw("uniform", x.shape, generator, dtype=x.dtype, device=x.device)


def to_model_space(x: Tensor, transform: Transform, dequantize: bool = False,
                   generator: torch.Generator | None = None, dtype: torch.dtype | None = None) -> Tensor:
    """The one path from data units to model space: z = T(x + u) with u ~ U[0, 1)^d when ``dequantize``, else T(x).

    ``dtype``: the float dtype of the result (default: x's if floating, else torch's default). Used by
    :meth:`Dataset.to_model`, the trainer's batches and :func:`diffdensity.bits_per_dim`.
    """
    if dequantize:
        x = _dequantize(x, generator, dtype)
    elif dtype is not None or not x.is_floating_point():
        x = x.to(dtype or torch.get_default_dtype())
    return transform.forward(x)


_dequantize = dequantize
