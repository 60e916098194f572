"""Saving and loading models: a model folder is ``model.safetensors`` + ``config.json``.

``config.json`` holds everything needed to rebuild the model without the training code::

    {"format": "diffdensity-model", "version": 1,
     "schedule": {"name": "VP", "lambda_min": -10.0, "lambda_max": 10.0},
     "parametrization": "eps",
     "net": {"type": "UNet", ...},            # nets.build_net(config) rebuilds the network
     "transform": {...} | null,               # data.Transform.to_config()
     "dataset": "digits", "training": {...}, ...}   # free metadata (save(..., **meta))

A generator model (distributional diffusion, :mod:`diffdensity.distributional`) has ``"kind": "generator"`` and
no ``parametrization``; its ``net`` is a generator network config. Each kind is one row of :data:`MODEL_KINDS`.

``model.safetensors`` holds the network's ``state_dict`` (the EMA weights for trained runs). Loading is strict:
missing or unexpected keys, wrong shapes, truncated files, bad JSON or unknown schedules raise a ValueError that
names the file and the problem; nothing is ever partially loaded. Both files are written atomically
(temporary file in the same folder, then ``os.replace``).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ._io_utils import atomic_write, clean_temp_files, write_json as _write_json
from .models import PARAMETRIZATIONS, NetworkModel

__all__ = ["save", "load", "list_models", "PRETRAINED_DIR", "CONFIG_NAME", "WEIGHTS_NAME", "atomic_write",
           "clean_temp_files", "MODEL_KINDS"]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT = "diffdensity-model"
FORMAT_VERSION = 1
PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
_RESERVED = ("format", "version", "schedule", "parametrization", "net", "transform", "kind")
GENERATOR_KIND = "generator"


# ------------------------------------------------------------------------------------------------ model kinds
@dataclass(frozen=True)
class ModelKind:
    """One kind of model folder: which models it saves, the config entries that describe one (``describe``,
    ``required``, ``check``) and how its network and model are rebuilt (``build_net``, ``build``)."""

    accepts: Callable[[object], bool]
    describe: Callable[[Any], dict]  # called only on models its ``accepts`` took
    required: tuple
    check: Callable[[dict], str | None]  # a problem with the kind's own entries, or None
    build_net: Callable[[dict], nn.Module]
    build: Callable  # (net, schedule, cfg, transform) -> model


def _score_net(config: dict) -> nn.Module:
    from .nets import build_net

    return build_net(config)


def _check_parametrization(cfg: dict) -> str | None:
    p = cfg["parametrization"]
    return None if p in PARAMETRIZATIONS else f"unknown parametrization {p!r}; expected one of {PARAMETRIZATIONS}"


def _is_generator(model) -> bool:
    return getattr(model, "model_kind", None) == GENERATOR_KIND and isinstance(model, nn.Module)


def _generator_net(config: dict) -> nn.Module:
    from .distributional.generators import build_generator_net

    return build_generator_net(config)


def _generator_model(net, schedule, cfg, transform):
    from .distributional.generators import GeneratorModel

    return GeneratorModel(net, schedule, transform=transform)


# config "kind" -> ModelKind; None (no "kind" key): a score network, the format's first kind
MODEL_KINDS = {
    None: ModelKind(lambda m: isinstance(m, NetworkModel), lambda m: {"parametrization": m.parametrization},
                    ("parametrization",), _check_parametrization, _score_net,
                    lambda net, sch, cfg, tr: NetworkModel(net, sch, cfg["parametrization"], transform=tr)),
    GENERATOR_KIND: ModelKind(_is_generator, lambda m: {"kind": GENERATOR_KIND}, (), lambda cfg: None,
                              _generator_net, _generator_model),
}


# ------------------------------------------------------------------------------------------------ save
def save(model: NetworkModel, path, weights: dict | None = None, **meta) -> Path:
    """Write ``model`` as a model folder at ``path`` (created if needed); returns the folder.

    ``weights`` (a state_dict of ``model.net``, e.g. EMA weights) replaces the net's own weights in the file.
    ``**meta`` (JSON-able: dataset name, training settings, metrics, ...) is stored in ``config.json``.
    """
    from safetensors.torch import save_file

    kind = next((k for k in MODEL_KINDS.values() if k.accepts(model)), None)
    if kind is None:
        raise ValueError(f"save() needs a diffdensity NetworkModel or GeneratorModel, got {type(model).__name__}.")
    net_config = getattr(model.net, "config", None)
    if not isinstance(net_config, dict) or "type" not in net_config:
        raise ValueError(
            f"the network {type(model.net).__name__} has no .config dict with a 'type' key, so it could not be "
            "rebuilt on load; use a diffdensity.nets network (MLP, UNet) or give yours a .config understood by "
            "nets.build_net."
        )
    bad = [k for k in meta if k in _RESERVED]
    if bad:
        raise ValueError(f"metadata keys {bad} are reserved for the model description; rename them.")
    path = Path(path)
    if path.suffix in (".safetensors", ".json"):
        raise ValueError(f"{path}: pass a folder path; save() writes {WEIGHTS_NAME} and {CONFIG_NAME} inside it.")
    state = weights if weights is not None else model.net.state_dict()
    # clone: safetensors refuses tensors that share memory (tied weights)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    transform = getattr(model, "transform", None)
    config = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "schedule": model.schedule.config(),
        **kind.describe(model),
        "net": net_config,
        "transform": transform.to_config() if transform is not None else None,
        **meta,
    }
    try:
        json.dumps(config)
    except TypeError as e:
        raise ValueError(f"metadata must be JSON-serialisable: {e}") from None
    atomic_write(path / WEIGHTS_NAME, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    _write_json(path / CONFIG_NAME, config)
    return path


def _config_kind(cfg: dict, source) -> ModelKind:
    """The :class:`ModelKind` a config names (ValueError naming ``source`` for an unknown one)."""
    name = cfg.get("kind")
    if not isinstance(name, (str, type(None))) or name not in MODEL_KINDS:
        raise ValueError(f"{source}: unknown model kind {name!r} (expected none or {GENERATOR_KIND!r}).")
    return MODEL_KINDS[name]


# ------------------------------------------------------------------------------------------------ load
def list_models() -> list[str]:
    """Names of the shipped pretrained models (folders under ``diffdensity/pretrained``)."""
    if not PRETRAINED_DIR.is_dir():
        return []
    return sorted(
        p.name for p in PRETRAINED_DIR.iterdir() if (p / CONFIG_NAME).is_file() and (p / WEIGHTS_NAME).is_file()
    )


def _resolve(path_or_name) -> Path:
    p = Path(path_or_name)
    if p.exists():
        if p.is_file():
            if p.name in (CONFIG_NAME, WEIGHTS_NAME):
                return p.parent
            raise ValueError(f"{p}: expected a model folder (with {WEIGHTS_NAME} and {CONFIG_NAME}), got a file.")
        return p
    name = str(path_or_name)
    if (PRETRAINED_DIR / name).is_dir():
        return PRETRAINED_DIR / name
    shipped = list_models()
    raise ValueError(
        f"{name!r} is neither an existing model folder nor a shipped model; shipped models: "
        f"{', '.join(shipped) if shipped else 'none'}."
    )


def read_config(folder) -> dict:
    """The parsed and checked ``config.json`` of a model folder."""
    folder = Path(folder)
    cfg_path = folder / CONFIG_NAME
    if not cfg_path.is_file():
        raise ValueError(f"{cfg_path}: missing; a model folder needs {CONFIG_NAME} and {WEIGHTS_NAME}.")
    try:
        cfg = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{cfg_path}: not valid JSON ({e}).") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"{cfg_path}: expected a JSON object, got {type(cfg).__name__}.")
    if cfg.get("format") != FORMAT:
        raise ValueError(f"{cfg_path}: not a diffdensity model config (format={cfg.get('format')!r}, expected {FORMAT!r}).")
    if cfg.get("version") != FORMAT_VERSION:
        raise ValueError(f"{cfg_path}: config version {cfg.get('version')!r} is not supported (expected {FORMAT_VERSION}).")
    kind = _config_kind(cfg, cfg_path)
    missing = [k for k in ("schedule", "net") + kind.required if k not in cfg]
    if missing:
        raise ValueError(f"{cfg_path}: missing keys {missing}.")
    problem = kind.check(cfg)
    if problem:
        raise ValueError(f"{cfg_path}: {problem}.")
    return cfg


def check_state_dict(module: nn.Module, state: dict, source) -> None:
    """ValueError naming ``source`` unless ``state`` has exactly the module's keys with the same shapes."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if tuple(state[k].shape) != tuple(own[k].shape)
    )
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing keys {_short(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_short(unexpected)}")
        if wrong:
            parts.append(f"wrong shapes {_short(wrong)}")
        raise ValueError(f"{source}: weights do not match the network described in {CONFIG_NAME}: " + "; ".join(parts) + ".")


def _short(items, n=5):
    return str(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


def build_model(cfg: dict, source="config") -> NetworkModel:
    """A freshly initialised NetworkModel — or GeneratorModel for ``"kind": "generator"`` — (with transform) from a
    config dict."""
    from .data.transforms import Transform
    from .schedules import schedule_from_config

    kind = _config_kind(cfg, source)

    try:
        schedule = schedule_from_config(cfg["schedule"])
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{source}: bad schedule {cfg.get('schedule')!r} ({e}).") from None
    try:
        net = kind.build_net(cfg["net"])
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{source}: cannot build the network from {cfg.get('net')!r} ({e}).") from None
    transform = None
    if cfg.get("transform") is not None:
        try:
            transform = Transform.from_config(cfg["transform"])
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{source}: bad data transform {cfg.get('transform')!r} ({e}).") from None
    return kind.build(net, schedule, cfg, transform)


def _check_device(device):
    """A torch.device the machine has (ValueError naming what is available otherwise)."""
    if device is None:
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device={device!r} is not a torch device ({e}); use 'cpu', 'cuda', 'cuda:1', 'mps'.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but this machine has no CUDA GPU (or torch has no CUDA build); use 'cpu'.")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device={device!r} but only {torch.cuda.device_count()} CUDA device(s) are visible.")
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError(f"device={device!r} but MPS is not available here; use 'cpu'.")
    return dev


def load(path_or_name, device=None) -> NetworkModel:
    """Load a model folder or a shipped model by name (see :func:`list_models`) -> NetworkModel (GeneratorModel for
    a generator folder) in eval mode.

    The result has ``.transform`` (data units <-> model space) and ``.config`` (the parsed config.json).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not isinstance(path_or_name, (str, os.PathLike)):
        raise TypeError(f"dd.load takes a shipped model name ({', '.join(list_models())}) or a model folder path, "
                        f"got {type(path_or_name).__name__}.")
    device = _check_device(device)
    folder = _resolve(path_or_name)
    cfg = read_config(folder)
    model = build_model(cfg, source=folder / CONFIG_NAME)
    wpath = folder / WEIGHTS_NAME
    if not wpath.is_file():
        raise ValueError(f"{wpath}: missing; a model folder needs {CONFIG_NAME} and {WEIGHTS_NAME}.")
    try:
        state = load_file(str(wpath))
    except (SafetensorError, OSError, RuntimeError, ValueError) as e:
        raise ValueError(f"{wpath}: cannot read the weights ({e}); the file is truncated or corrupt.") from None
    check_state_dict(model.net, state, wpath)
    model.net.load_state_dict(state, strict=True)
    if device is not None:
        model = model.to(device)
    model.config = cfg
    model.eval()
    return model
