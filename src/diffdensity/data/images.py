"""Image data: sklearn digits, 16×16 photo patches, CIFAR-10 batches and a folder of images.

Every loader returns uint8/integer-valued data in CHW layout and data units 0..levels-1.
"""
from __future__ import annotations

import functools
import pickle
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "load_digits_split",
    "photo_patches",
    "PATCH_TRAIN_IMAGES",
    "PATCH_TEST_IMAGES",
    "load_cifar10_batches",
    "load_image_folder",
    "load_images",
    "IMAGE_EXTENSIONS",
]

# ----------------------------------------------------------------------------------------------- digits
DIGITS_N_TRAIN = 1437  # of 1797; the remaining 360 are the test split


def load_digits_split() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """sklearn digits (values 0..16) split by ``np.random.RandomState(0).permutation(1797)``: first 1437 train, last 360 test.

    Returns (train (1437, 8, 8), test (360, 8, 8), train_labels, test_labels); images in the default float dtype.
    """
    from sklearn.datasets import load_digits

    d = load_digits()
    perm = np.random.RandomState(0).permutation(len(d.images))
    images = torch.as_tensor(d.images[perm], dtype=torch.get_default_dtype())
    labels = torch.as_tensor(d.target[perm], dtype=torch.long)
    n = DIGITS_N_TRAIN
    return images[:n], images[n:], labels[:n], labels[n:]


# ----------------------------------------------------------------------------------------------- patches
# Colour photographs bundled with scikit-image and scikit-learn (no download). Test images are never used for training.
PATCH_TRAIN_IMAGES = ("skimage:astronaut", "skimage:coffee", "skimage:rocket", "skimage:motorcycle_left", "sklearn:china")
PATCH_TEST_IMAGES = ("skimage:chelsea", "sklearn:flower")


def _load_photo(name: str) -> np.ndarray:
    """One bundled photograph as an (H, W, 3) uint8 array."""
    src, key = name.split(":")
    if src == "skimage":
        import skimage.data

        if key == "motorcycle_left":
            return skimage.data.stereo_motorcycle()[0]
        return getattr(skimage.data, key)()
    from sklearn.datasets import load_sample_image

    return load_sample_image(f"{key}.jpg")


@functools.lru_cache(maxsize=4)
def _downscaled_photos(names: tuple[str, ...], downscale: int) -> tuple[Tensor, ...]:
    """The photos reduced by ``downscale`` with box (area) averaging, as (3, H, W) uint8 tensors."""
    from PIL import Image

    out = []
    for name in names:
        im = Image.fromarray(np.ascontiguousarray(_load_photo(name)[..., :3])).convert("RGB")
        if downscale > 1:
            im = im.reduce(downscale)
        out.append(torch.from_numpy(np.array(im)).permute(2, 0, 1).contiguous())
    return tuple(out)


def photo_patches(names: tuple[str, ...], n: int, size: int, downscale: int, seed: int) -> Tensor:
    """n distinct size×size crops (n, 3, size, size) uint8, drawn without replacement from all stride-1 positions."""
    photos = _downscaled_photos(tuple(names), int(downscale))
    counts = [(p.shape[1] - size + 1) * (p.shape[2] - size + 1) for p in photos]
    if any(c <= 0 for c in counts):
        raise ValueError(f"downscale={downscale} leaves a photo smaller than {size}×{size}; use a smaller downscale.")
    total = sum(counts)
    if n > total:
        raise ValueError(f"asked for {n} patches but these photos hold only {total} distinct crops; lower n_train/n_test.")
    g = torch.Generator().manual_seed(int(seed))
    idx = torch.randperm(total, generator=g)[:n]
    out = torch.empty(n, 3, size, size, dtype=torch.uint8)
    start = 0
    for p, c in zip(photos, counts):
        sel = (idx >= start) & (idx < start + c)
        local = idx[sel] - start
        w = p.shape[2] - size + 1
        windows = p.unfold(1, size, 1).unfold(2, size, 1)  # (3, H', W', size, size)
        out[sel] = windows[:, local // w, local % w].permute(1, 0, 2, 3)
        start += c
    return out


# ----------------------------------------------------------------------------------------------- CIFAR-10
CIFAR_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


# The only globals a CIFAR-10 python batch refers to: numpy's array reconstruction (numpy 1 and 2 spellings) and the
# latin-1 codec that protocol-2 pickles use for bytes. Everything else (os.system, builtins.eval, ...) is refused.
_CIFAR_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
}


class _CifarUnpickler(pickle.Unpickler):
    """An unpickler that builds only dicts, lists, bytes/str, numbers and numpy arrays (no code can run)."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _CIFAR_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name} (not part of a CIFAR-10 batch)")
        return super().find_class(module, name)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch, read with :class:`_CifarUnpickler` (no arbitrary objects are unpickled)."""
    try:
        with open(path, "rb") as f:
            d = _CifarUnpickler(f, encoding="bytes").load()
    except Exception as e:  # noqa: BLE001 - any unpickling failure is the same user error
        raise ValueError(f"cifar10: could not read {path} as a CIFAR-10 python batch ({e}); re-extract {CIFAR_URL}.") from None
    if not isinstance(d, dict) or b"data" not in d or b"labels" not in d:
        raise ValueError(f"cifar10: {path} is not a CIFAR-10 python batch (need a dict with b'data' and b'labels').")
    data = d[b"data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(f"cifar10: {path} has b'data' of shape {getattr(data, 'shape', None)} and dtype "
                         f"{getattr(data, 'dtype', type(data).__name__)}; expected (N, 3072) uint8.")
    try:
        labels = np.asarray(d[b"labels"], dtype=np.int64)
    except (TypeError, ValueError):
        labels = None
    if labels is None or labels.shape != (data.shape[0],):
        raise ValueError(f"cifar10: {path} has b'labels' that are not {data.shape[0]} integers.")
    return data, labels


def load_cifar10_batches(root) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """CIFAR-10 from the standard python batches in ``root`` (or ``root/cifar-10-batches-py``): (train, test, labels...)."""
    if root is None:
        raise ValueError(
            f"cifar10 needs root=<folder with data_batch_1..5 and test_batch>; download {CIFAR_URL} and extract it."
        )
    root = Path(root).expanduser()
    if not (root / CIFAR_FILES[0]).exists() and (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    for f in CIFAR_FILES:
        if not (root / f).is_file():
            raise ValueError(
                f"cifar10: missing file {root / f}; root must hold data_batch_1..5 and test_batch "
                f"(download {CIFAR_URL} and extract it, then pass root=<.../cifar-10-batches-py>)."
            )
    parts = [_read_cifar_batch(root / f) for f in CIFAR_FILES]
    train = np.concatenate([p[0] for p in parts[:5]])
    train_labels = np.concatenate([p[1] for p in parts[:5]])
    test, test_labels = parts[5]
    to_img = lambda a: torch.from_numpy(a.reshape(-1, 3, 32, 32).copy())  # noqa: E731 - rows are R, G, B planes
    return to_img(train), to_img(test), torch.from_numpy(train_labels), torch.from_numpy(test_labels)


# ----------------------------------------------------------------------------------------------- folder
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


def _load_one(path: Path, size: int, grayscale: bool) -> np.ndarray:
    """Resize the shorter side to ``size`` (bicubic, antialiased) and centre-crop to size×size; (C, size, size) uint8."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("L" if grayscale else "RGB")
            w, h = im.size
            s = size / min(w, h)
            nw, nh = max(size, round(w * s)), max(size, round(h * s))
            im = im.resize((nw, nh), Image.Resampling.BICUBIC)
            left, top = (nw - size) // 2, (nh - size) // 2
            im = im.crop((left, top, left + size, top + size))
            a = np.array(im, dtype=np.uint8)
    except Exception as e:  # noqa: BLE001 - any decoding failure is the same user error
        raise ValueError(f"folder: could not read image {path} ({type(e).__name__}: {e}); remove or fix the file.") from e
    return a[None] if grayscale else a.transpose(2, 0, 1)


def load_images(files, size: int, grayscale: bool) -> np.ndarray:
    """Image files resized and centre-cropped to size×size: uint8 (N, C, size, size); ValueError for an unreadable one."""
    return np.stack([_load_one(Path(p), int(size), grayscale) for p in files])


def load_image_folder(root, size: int, grayscale: bool, test_fraction: float, seed: int) -> tuple[Tensor, Tensor, list[Path]]:
    """All PNG/JPEG files under ``root`` (recursive, sorted) as uint8 (N, C, size, size), split by a seeded permutation.

    The test split is the first ``max(1, round(test_fraction·N))`` images of ``torch.randperm(N)`` under
    ``torch.Generator().manual_seed(seed)``; the rest is train. Returns (train, test, files in load order).
    """
    if root is None:
        raise ValueError("folder needs root=<a folder of .png/.jpg/.jpeg images>.")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ValueError(f"folder: root {root} is not an existing directory; pass root=<a folder of .png/.jpg images>.")
    if int(size) != size or size < 1:
        raise ValueError(f"size must be a positive integer (the side of the square images), got {size!r}.")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}.")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if len(files) < 2:
        raise ValueError(
            f"folder: found {len(files)} image file(s) ({', '.join(IMAGE_EXTENSIONS)}) under {root}; "
            f"need at least 2 (one for train, one for test)."
        )
    images = torch.from_numpy(load_images(files, size, grayscale))
    perm = torch.randperm(len(files), generator=torch.Generator().manual_seed(int(seed)))
    n_test = max(1, round(test_fraction * len(files)))
    n_test = min(n_test, len(files) - 1)
    return images[perm[n_test:]], images[perm[:n_test]], files
