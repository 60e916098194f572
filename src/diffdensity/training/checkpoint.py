"""The training checkpoint: one ``checkpoint.pt`` holding everything needed to continue a run bit for bit.

Layout (version 2)::

    {"version": 2, "step", "epoch", "pointer", "perm",     # data order: permutation and position in it
     "config": TrainConfig as a dict, "net_config",
     "net", "optimizer", "ema",                            # state_dicts
     "objective": objective.state_dict(),                  # e.g. {"sampler": ImportanceSampler state}
     "data_gen", "train_gen", "torch_rng", "cuda_rng",     # every random-generator state
     "elapsed", "last_eval"}

Version 1 (before the objective was pluggable) stored the ε-objective's λ-sampler as ``"sampler"``;
:func:`load_checkpoint` reads it as ``{"objective": {"sampler": ...}}`` so such runs still resume. A saved config
names its objective (``"objective"``); one without that key (written before there were two) trained the denoising
objective and is read as such. Files are
written atomically (:func:`diffdensity.io.atomic_write`) and read with ``weights_only=True`` (no code runs).
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..io import atomic_write

__all__ = ["CHECKPOINT_NAME", "CHECKPOINT_VERSION", "save_checkpoint", "load_checkpoint", "rng_state",
           "set_rng_state", "check_resumable"]

CHECKPOINT_NAME = "checkpoint.pt"
_REQUIRED = ("step", "config", "net", "optimizer", "ema")
CHECKPOINT_VERSION = 2


def save_checkpoint(path, state: dict) -> Path:
    """Write ``state`` (with the current version) to ``path`` atomically."""
    state = {"version": CHECKPOINT_VERSION, **state}
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path) -> dict:
    """Read a ``checkpoint.pt`` (ValueError naming the file if it is unreadable); version 1 is upgraded."""
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to unpickle is a corrupt file
        msg = " ".join(f"{type(e).__name__}: {e}".split())[:300]
        raise ValueError(f"{path}: cannot read the training checkpoint ({msg}); the file is corrupt or truncated "
                         "(start over with --overwrite).") from None
    if not isinstance(ckpt, dict) or ckpt.get("version") not in (1, CHECKPOINT_VERSION):
        raise ValueError(f"{path}: not a diffdensity training checkpoint (version 1 or {CHECKPOINT_VERSION}).")
    if ckpt["version"] == 1:
        ckpt["objective"] = {"sampler": ckpt.pop("sampler")}
        ckpt["version"] = CHECKPOINT_VERSION
    if isinstance(ckpt.get("config"), dict):
        ckpt["config"].setdefault("objective", "denoising")  # the old form: the only objective there was
    return ckpt


def check_resumable(ckpt: dict, path) -> dict:
    """ValueError naming ``path`` unless the checkpoint holds what a resumed run needs (config, weights, ...)."""
    missing = [k for k in _REQUIRED if k not in ckpt]
    if missing or not isinstance(ckpt.get("config"), dict):
        raise ValueError(f"{path}: an incomplete training checkpoint (missing {missing or ['config']}); it cannot be "
                         "resumed: start over with --overwrite.")
    return ckpt


def rng_state() -> dict:
    """The global torch (and CUDA) random states."""
    return {"torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict) -> None:
    """Inverse of :func:`rng_state`."""
    torch.set_rng_state(state["torch_rng"])
    if torch.cuda.is_available() and state.get("cuda_rng") is not None:
        torch.cuda.set_rng_state_all(state["cuda_rng"])
