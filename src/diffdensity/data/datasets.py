"""The :class:`Dataset` record and :func:`load_dataset`, the one entry point for every data set."""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from . import images
from .toy2d import TOY2D, sample_toy2d
from .transforms import Transform, dequantize, to_model_space, unit_interval_transform

__all__ = ["Dataset", "load_dataset", "DATASETS", "dequantize"]


@dataclass(repr=False)
class Dataset:
    """A train/test pair in DATA units plus the :class:`Transform` to model space.

    ``train``/``test`` are (N, *data_shape): integer-valued (uint8 for photos, float for digits) when ``levels`` is
    set, float for continuous toys. ``info`` documents the source and the split.
    """

    name: str
    train: Tensor
    test: Tensor
    transform: Transform
    levels: int | None
    data_shape: tuple[int, ...]
    model_shape: tuple[int, ...]
    train_labels: Tensor | None = None
    test_labels: Tensor | None = None
    info: dict = field(default_factory=dict)

    @property
    def dim(self) -> int:
        """Number of values per sample."""
        return math.prod(self.data_shape)

    def to_model(self, x: Tensor, dequantize: bool = True, generator: torch.Generator | None = None) -> Tensor:
        """Data units -> model space; discrete data is uniformly dequantized first unless ``dequantize=False``."""
        return to_model_space(x, self.transform, self.levels is not None and dequantize, generator)

    def from_model(self, z: Tensor, round: bool | str = True) -> Tensor:
        """Model space -> data units (rounded to valid integers for discrete data, see :meth:`Transform.inverse`)."""
        return self.transform.inverse(z, round=round if self.levels is not None else False)

    def train_model_space(self, dequantize: bool = True, generator: torch.Generator | None = None) -> Tensor:
        """The train split in model space (B, *model_shape), float."""
        return self.to_model(self.train, dequantize, generator)

    def test_model_space(self, dequantize: bool = True, generator: torch.Generator | None = None) -> Tensor:
        """The test split in model space (B, *model_shape), float."""
        return self.to_model(self.test, dequantize, generator)

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, train={tuple(self.train.shape)} {self.train.dtype}, "
            f"test={tuple(self.test.shape)}, levels={self.levels}, data_shape={self.data_shape}, "
            f"model_shape={self.model_shape})"
        )


# ------------------------------------------------------------------------------------------------ loaders
def _check_count(v, name: str, allow_none: bool = False) -> None:
    if v is None and allow_none:
        return
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{name} must be a positive integer{' or None' if allow_none else ''}, got {v!r}.")


def _toy(name: str, root=None, n_train: int = 20000, n_test: int = 5000, seed: int = 0) -> Dataset:
    """A 2-D toy: train then test drawn from one generator seeded with ``seed``; identity transform."""
    _check_count(n_train, "n_train")
    _check_count(n_test, "n_test")
    g = torch.Generator().manual_seed(int(seed))
    train = sample_toy2d(name, n_train, g)
    test = sample_toy2d(name, n_test, g)
    return Dataset(
        name, train, test, Transform.identity((2,)), None, (2,), (2,),
        info={"source": f"diffdensity.data.sample_toy2d({name!r})", "split": f"train then test from seed {seed}"},
    )


def _digits(root=None) -> Dataset:
    """sklearn digits, 8×8 values 0..16, fixed split, z = x·2/17 − 1 with a channel axis."""
    train, test, ytr, yte = images.load_digits_split()
    return Dataset(
        "digits", train, test, unit_interval_transform((8, 8), (1, 8, 8), 17), 17, (8, 8), (1, 8, 8), ytr, yte,
        info={
            "source": "sklearn.datasets.load_digits().images",
            "split": "np.random.RandomState(0).permutation(1797): first 1437 train, last 360 test",
        },
    )


def _patches16(root=None, n_train: int = 20000, n_test: int = 2000, downscale: int = 4, seed: int = 0) -> Dataset:
    """16×16 RGB crops of bundled photos reduced ``downscale``× (box filter); test photos are never used for train."""
    _check_count(n_train, "n_train")
    _check_count(n_test, "n_test")
    _check_count(downscale, "downscale")
    train = images.photo_patches(images.PATCH_TRAIN_IMAGES, n_train, 16, downscale, seed)
    test = images.photo_patches(images.PATCH_TEST_IMAGES, n_test, 16, downscale, seed + 1)
    return Dataset(
        "patches16", train, test, unit_interval_transform((3, 16, 16), (3, 16, 16), 256), 256,
        (3, 16, 16), (3, 16, 16),
        info={
            "source": f"16×16 crops of photos reduced {downscale}× by box averaging",
            "train_images": list(images.PATCH_TRAIN_IMAGES),
            "test_images": list(images.PATCH_TEST_IMAGES),
            "split": "train crops come only from train_images, test crops only from test_images "
            f"(distinct stride-1 positions drawn with seeds {seed} and {seed + 1})",
        },
    )


def _cifar10(root=None, n_train: int | None = None, n_test: int | None = None) -> Dataset:
    """CIFAR-10 from local python batches; optional n_train/n_test keep the first n of each split."""
    _check_count(n_train, "n_train", allow_none=True)
    _check_count(n_test, "n_test", allow_none=True)
    train, test, ytr, yte = images.load_cifar10_batches(root)
    return Dataset(
        "cifar10", train[:n_train], test[:n_test], unit_interval_transform((3, 32, 32), (3, 32, 32), 256), 256,
        (3, 32, 32), (3, 32, 32), ytr[:n_train], yte[:n_test],
        info={"source": f"CIFAR-10 python batches at {root}", "split": "data_batch_1..5 train, test_batch test"},
    )


def _folder(root=None, size: int = 32, grayscale: bool = False, test_fraction: float = 0.1, seed: int = 0) -> Dataset:
    """PNG/JPEG files under ``root``, resized + centre-cropped to size×size; seeded split (see load_image_folder)."""
    train, test, files = images.load_image_folder(root, size, bool(grayscale), test_fraction, seed)
    c = 1 if grayscale else 3
    shape = (c, int(size), int(size))
    return Dataset(
        "folder", train, test, unit_interval_transform(shape, shape, 256), 256, shape, shape,
        info={
            "source": f"{len(files)} images under {root}",
            "split": f"torch.randperm(N) with seed {seed}: first max(1, round({test_fraction}·N)) test, rest train",
        },
    )


_LOADERS = {
    **{name: (lambda n: (lambda root=None, **kw: _toy(n, root, **kw)))(name) for name in TOY2D},
    "digits": _digits,
    "patches16": _patches16,
    "cifar10": _cifar10,
    "folder": _folder,
}
_KWARGS = {
    **{name: inspect.signature(_toy).parameters for name in TOY2D},
    **{k: inspect.signature(f).parameters for k, f in _LOADERS.items() if k not in TOY2D},
}
DATASETS = tuple(_LOADERS)


def loader_function(name: str):
    """The function whose signature lists ``name``'s keyword arguments (for checking them before loading)."""
    if name not in _LOADERS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}.")
    return _toy if name in TOY2D else _LOADERS[name]


def load_dataset(name: str, root=None, **kw) -> Dataset:
    """Load a data set by name (one of :data:`DATASETS`); ``root`` is used by "cifar10" and "folder" only.

    Keyword arguments: toys ``n_train, n_test, seed``; "patches16" ``n_train, n_test, downscale, seed``;
    "cifar10" ``n_train, n_test``; "folder" ``size, grayscale, test_fraction, seed``; "digits" none.
    """
    if name not in _LOADERS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}.")
    allowed = [p for p in _KWARGS[name] if p not in ("name", "root")]
    for k in kw:
        if k not in allowed:
            raise ValueError(
                f"load_dataset({name!r}) got an unknown argument {k!r}; valid keyword arguments: "
                f"{', '.join(allowed) or 'none'}."
            )
    return _LOADERS[name](root=root, **kw)
