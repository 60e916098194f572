"""Models and data as the command line names them: a shipped name, a run or a diffusers folder; a data set name,
a .npz/.npy file, image files or a CIFAR-10 folder. Each error is a ValueError with a message for the user."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .datasets import load_dataset
from ..safe_read import folder_files
from .images import IMAGE_EXTENSIONS, load_cifar10_batches, load_images

__all__ = ["read_array", "is_diffusers_folder", "load_model", "model_shape", "data_shape", "model_dataset",
           "held_out", "fit_images", "likelihood_data", "prior_latents"]


def read_array(path) -> np.ndarray:
    """The array ``x`` of a .npz (or a .npy) file, with a clear error for a missing, corrupt or unsafe file."""
    if not Path(path).is_file():
        raise ValueError(f"--data {path}: no such file.")
    try:
        arr = np.load(path, allow_pickle=False)
        return arr["x"] if hasattr(arr, "files") else arr
    except KeyError:
        raise ValueError(f"--data {path}: the .npz has no array 'x' (it has {list(arr.files)}).") from None
    except (OSError, ValueError, EOFError) as e:
        msg = " ".join(str(e).split())[:120]
        raise ValueError(f"--data {path}: not a readable .npz/.npy file of numbers ({msg}).") from None


def is_diffusers_folder(path) -> bool:
    """Whether ``path`` is a diffusers pipeline or model folder."""
    path = Path(path)
    if not path.is_dir():
        return False
    if (path / "model_index.json").is_file() or (path / "unet").is_dir() or (path / "transformer").is_dir():
        return True
    cfg = path / "config.json"
    try:
        return cfg.is_file() and "_diffusers_version" in json.loads(cfg.read_text())
    except json.JSONDecodeError:
        return False


def load_model(spec: str, scheduler=None, autocast: str | None = None, device=None, **pipeline):
    """A shipped name or saved run (dd.load), or a diffusers folder or hub id (dd.from_diffusers, optionally under
    autocast; ``pipeline``: prompt=, negative_prompt=, guidance_scale= for text-to-image pipelines)."""
    from ..adapters import from_diffusers
    from ..adapters.pipelines import is_hub_id
    from ..io import load

    pipeline = {k: v for k, v in pipeline.items() if v is not None}
    if is_diffusers_folder(Path(spec).expanduser()) or is_hub_id(spec):
        return from_diffusers(spec, scheduler, autocast=autocast, device=device, **pipeline)
    if autocast is not None:
        raise ValueError("--autocast applies to diffusers models only.")
    given = [*pipeline, *(["scheduler"] if scheduler is not None else [])]
    if given:
        raise ValueError(f"{', '.join('--' + k.replace('_', '-') for k in given)}: for diffusers models only.")
    return load(spec, device=device)


def model_shape(model) -> tuple:
    """The model-space shape of one sample of ``model`` (from its data transform or its MLP config)."""
    t = getattr(model, "transform", None)
    if t is not None and getattr(t, "model_shape", None):
        return tuple(t.model_shape)
    shape = _net_shape(model) if getattr(model, "net", None) is not None else None
    if shape is not None:  # diffusers: latents / pixels
        return shape
    net = (getattr(model, "config", {}) or {}).get("net", {})
    if net.get("type") == "MLP":
        return (int(net["dim"]),)
    raise ValueError("cannot tell the sample shape of this model (no data transform in its config).")


def prior_latents(model, n: int, generator: torch.Generator | None = None) -> Tensor:
    """``n`` draws from the model's prior, one sample shape each."""
    return model.schedule.sample_prior((n, *model_shape(model)), generator=generator)


def data_shape(model) -> tuple | None:
    """The data-unit shape of one example (its transform's, or a diffusers network's channels and size)."""
    t = getattr(model, "transform", None)
    if t is not None:
        return tuple(t.data_shape)
    if getattr(model, "image_shape", None):
        return tuple(model.image_shape)
    return _net_shape(model)


def _net_shape(model) -> tuple | None:
    """(channels, height, width) of a diffusers network's input, from its config."""
    cfg = getattr(getattr(model, "net", None), "config", None)
    size, ch = getattr(cfg, "sample_size", None), getattr(cfg, "in_channels", None)
    if size is None or ch is None:
        return None
    size = (size, size) if isinstance(size, int) else tuple(size)
    return (int(ch), *size)


def model_dataset(model, why: str = "pass --data"):
    """The data set the model's config names (with its options); ValueError saying ``why`` if it names none."""
    cfg = getattr(model, "config", {}) or {}
    if not cfg.get("dataset"):
        raise ValueError(f"this model names no data set; {why}.")
    return load_dataset(cfg["dataset"], **cfg.get("dataset_kwargs", {}))


def held_out(model, n: int, device=None) -> Tensor:
    """The first ``n`` test examples of the model's data set in model space (integers, no dequantization)."""
    ds = model_dataset(model, "the analysis needs held-out data")
    return ds.transform.forward(ds.test[:n].float()).to(device or "cpu")


def fit_images(arr, shape, source) -> Tensor:
    """uint8 images (N, C, H, W) / (N, H, W, C) / (N, H, W) to the model's data shape."""
    x = torch.as_tensor(arr)
    if shape is None or tuple(x.shape[1:]) == tuple(shape):
        return x
    if x.ndim == 4 and len(shape) == 3 and tuple(x.shape[1:]) == (shape[1], shape[2], shape[0]):  # channels last
        return x.permute(0, 3, 1, 2).contiguous()
    if x.ndim == 4 and len(shape) == 2 and x.shape[1] == 1 and tuple(x.shape[2:]) == tuple(shape):
        return x[:, 0]
    raise ValueError(f"{source}: images of shape {tuple(x.shape[1:])} do not fit the model's data shape {shape}.")


def _npz_images(path: Path) -> np.ndarray:
    with np.load(path) as z:
        key = "x" if "x" in z.files else (z.files[0] if len(z.files) == 1 else None)
        if key is None:
            raise ValueError(f"{path} holds arrays {z.files}; name the images 'x'.")
        arr = z[key]
    if arr.dtype != np.uint8:
        raise ValueError(f"{path}: array {key!r} is {arr.dtype}; pass uint8 images (0..255).")
    return arr


def _is_cifar_folder(path: Path) -> bool:
    return path.is_dir() and ((path / "test_batch").is_file() or (path / "cifar-10-batches-py").is_dir())


def _image_files(path: Path, shape, image_size) -> np.ndarray:
    files = [path] if path.is_file() else folder_files(path, IMAGE_EXTENSIONS)  # no links out of the folder
    if not files:
        raise ValueError(f"no .png/.jpg images under {path}.")
    if shape is None and image_size is None:
        raise ValueError("cannot tell the image size of this model; pass --image-size.")
    gray = shape is not None and (len(shape) == 2 or shape[0] == 1)
    return load_images(files, image_size or shape[-1], gray, None if path.is_file() else path)


def _named_dataset(spec: str):
    try:
        return load_dataset(spec)
    except ValueError as e:
        raise ValueError(f"--data {spec!r}: not a file, folder or data set name ({e}).") from None


def likelihood_data(spec, model, split: str = "test", image_size: int | None = None) -> tuple[Tensor, int | None]:
    """(integer data, levels) from the model's data set (``spec`` None), a data set name, a uint8 .npz, an image
    file or folder, or a local CIFAR-10 folder."""
    if spec is None:
        ds = model_dataset(model, "pass --data (images, a .npz, a CIFAR-10 folder)")
        return getattr(ds, split), ds.levels
    if not str(spec).strip():
        raise ValueError("--data is empty; pass image files, a .npz, a CIFAR-10 folder or a data set name.")
    shape, path = data_shape(model), Path(spec).expanduser()
    if path.suffix == ".npz":
        return fit_images(_npz_images(path), shape, path), 256
    if _is_cifar_folder(path):
        train, test, _, _ = load_cifar10_batches(path)
        return fit_images(train if split == "train" else test, shape, path), 256
    if path.is_file() or path.is_dir():
        return fit_images(_image_files(path, shape, image_size), shape, path), 256
    ds = _named_dataset(spec)
    return getattr(ds, split), ds.levels
