"""Exponential moving average of a module's weights (the weights a trained model is saved and evaluated with)."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["EMA"]


class EMA:
    """Shadow copy θ̄ ← d θ̄ + (1 − d) θ of every floating-point entry of ``module.state_dict()``.

    With ``warmup=True`` the decay of update n (1-based) is min(decay, (1 + n)/(10 + n)), so short runs are not
    dominated by the random initialisation; ``decay=0`` makes the EMA a plain copy. Integer buffers are copied.
    """

    def __init__(self, module: nn.Module, decay: float = 0.999, warmup: bool = True):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema decay={decay}: need 0 <= decay < 1 (0 keeps the raw weights).")
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.num_updates = 0
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items()}

    def current_decay(self) -> float:
        n = self.num_updates
        return min(self.decay, (1.0 + n) / (10.0 + n)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        self.num_updates += 1
        d = self.current_decay()
        for k, v in module.state_dict().items():
            s = self.shadow[k]
            if v.is_floating_point():
                s.mul_(d).add_(v.detach(), alpha=1.0 - d)
            else:
                s.copy_(v)

    def copy_to(self, module: nn.Module) -> None:
        """Load the averaged weights into ``module`` (strictly)."""
        module.load_state_dict(self.shadow, strict=True)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "warmup": self.warmup, "num_updates": self.num_updates,
                "shadow": {k: v.clone() for k, v in self.shadow.items()}}

    def load_state_dict(self, state: dict) -> None:
        missing = set(self.shadow) - set(state["shadow"])
        unexpected = set(state["shadow"]) - set(self.shadow)
        if missing or unexpected:
            raise ValueError(f"EMA state does not match the model: missing {sorted(missing)}, unexpected {sorted(unexpected)}.")
        for k, v in state["shadow"].items():
            if v.shape != self.shadow[k].shape:
                raise ValueError(f"EMA state {k!r} has shape {tuple(v.shape)}, model has {tuple(self.shadow[k].shape)}.")
            self.shadow[k] = v.to(device=self.shadow[k].device, dtype=self.shadow[k].dtype).clone()
        self.decay = float(state["decay"])
        self.warmup = bool(state["warmup"])
        self.num_updates = int(state["num_updates"])
