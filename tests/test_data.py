"""Tests for diffdensity.data: datasets in data units, transforms to model space, error messages."""

import json
import math
import pickle

import numpy as np
import pytest
import torch

from diffdensity.data import (
    DATASETS,
    PATCH_TEST_IMAGES,
    PATCH_TRAIN_IMAGES,
    TOY2D,
    Dataset,
    Transform,
    load_dataset,
    sample_toy2d,
)

TOYS = list(TOY2D)


# ------------------------------------------------------------------------------------------------ Transform
def test_transform_per_channel_roundtrip_and_config():
    t = Transform((2, 4, 4), (2, 4, 4), scale=[0.5, 2.0], shift=[-1.0, 3.0], levels=10)
    x = torch.randint(0, 10, (5, 2, 4, 4)).float()
    z = t.forward(x)
    assert torch.allclose(z[:, 0], x[:, 0] * 0.5 - 1) and torch.allclose(z[:, 1], x[:, 1] * 2 + 3)
    assert torch.equal(t.inverse(z, round=True), x)
    assert t.log_abs_det() == pytest.approx(16 * (math.log(0.5) + math.log(2.0)))
    cfg = json.loads(json.dumps(t.to_config()))
    assert Transform.from_config(cfg) == t


def test_transform_reshape_and_rounding_modes():
    t = Transform((8, 8), (1, 8, 8), scale=2 / 17, shift=-1.0, levels=17)
    x = torch.arange(17).repeat(4)[:64].reshape(1, 8, 8).float()
    z = t(x)
    assert z.shape == (1, 1, 8, 8) and torch.allclose(z, x[:, None] * 2 / 17 - 1)
    back = t.inverse(z)
    assert back.shape == (1, 8, 8) and torch.allclose(back, x, atol=1e-5)
    deq = x + torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) * 0.999
    assert torch.equal(t.inverse(t(deq), round="floor"), x)  # the bin holding a dequantized value
    assert t.inverse(torch.full((1, 1, 8, 8), 5.0), round=True).max() == 16  # clamped to levels-1
    assert t.inverse(torch.full((1, 1, 8, 8), -5.0), round=True).min() == 0
    assert t.forward(x.to(torch.uint8)).dtype == torch.get_default_dtype()
    assert t.forward(x.double()).dtype == torch.float64


def test_transform_errors():
    with pytest.raises(ValueError, match="model_shape"):
        Transform((8, 8), (1, 8, 9))
    with pytest.raises(ValueError, match="scale has 2 values"):
        Transform((3, 4), (3, 4), scale=[1.0, 2.0])
    with pytest.raises(ValueError, match="scale must be finite and non-zero"):
        Transform((3,), scale=0.0)
    t = Transform((8, 8), (1, 8, 8), scale=0.1, levels=17)
    with pytest.raises(ValueError, match=r"x has shape \(8, 8\)"):
        t.forward(torch.zeros(8, 8))
    with pytest.raises(ValueError, match="round must be"):
        t.inverse(torch.zeros(1, 1, 8, 8), round="up")
    with pytest.raises(ValueError, match="levels"):
        Transform.identity((2,)).inverse(torch.zeros(1, 2), round=True)


# ------------------------------------------------------------------------------------------------ toys
@pytest.mark.parametrize("name", TOYS)
def test_toy_datasets(name):
    d = load_dataset(name, n_train=2000, n_test=500, seed=3)
    assert isinstance(d, Dataset) and d.name == name
    assert d.train.shape == (2000, 2) and d.test.shape == (500, 2) and d.train.dtype == torch.get_default_dtype()
    assert d.levels is None and d.data_shape == d.model_shape == (2,)
    assert torch.isfinite(d.train).all()
    std = d.train.std(0)
    assert (std > 0.4).all() and (std < 1.6).all() and d.train.mean(0).abs().max() < 0.5  # roughly unit scale
    assert torch.equal(d.train_model_space(), d.train) and d.transform.log_abs_det() == 0.0
    again = load_dataset(name, n_train=2000, n_test=500, seed=3)
    assert torch.equal(again.train, d.train) and torch.equal(again.test, d.test)
    assert not torch.equal(load_dataset(name, n_train=2000, n_test=500, seed=4).train, d.train)


def test_sample_toy2d_generator():
    a = sample_toy2d("checkerboard", 100, torch.Generator().manual_seed(1))
    b = sample_toy2d("checkerboard", 100, torch.Generator().manual_seed(1))
    assert a.shape == (100, 2) and torch.equal(a, b)
    assert sample_toy2d("moons", 10, dtype=torch.float64).dtype == torch.float64
    with pytest.raises(ValueError, match="valid names: 8gaussians"):
        sample_toy2d("spiral", 10)


# ------------------------------------------------------------------------------------------------ digits
def test_digits_split_and_transform():
    from sklearn.datasets import load_digits

    d = load_dataset("digits")
    assert d.train.shape == (1437, 8, 8) and d.test.shape == (360, 8, 8)
    assert d.levels == 17 and d.data_shape == (8, 8) and d.model_shape == (1, 8, 8)
    full = torch.cat([d.train, d.test])
    assert torch.equal(full, full.round()) and full.min() == 0 and full.max() == 16
    ref = load_digits()
    perm = np.random.RandomState(0).permutation(1797)
    assert torch.equal(full, torch.as_tensor(ref.images[perm], dtype=full.dtype))
    assert torch.equal(torch.cat([d.train_labels, d.test_labels]), torch.as_tensor(ref.target[perm]))
    z = d.train_model_space(generator=torch.Generator().manual_seed(0))
    assert z.shape == (1437, 1, 8, 8) and z.min() >= -1 and z.max() < 1
    assert torch.allclose(d.to_model(d.test, dequantize=False), d.test[:, None] * 2 / 17 - 1)
    assert torch.equal(d.from_model(d.to_model(d.test, dequantize=False)), d.test)
    assert d.transform.log_abs_det() == pytest.approx(64 * math.log(2 / 17))


# ------------------------------------------------------------------------------------------------ patches16
def test_patches16_shapes_and_disjoint_split():
    assert not set(PATCH_TRAIN_IMAGES) & set(PATCH_TEST_IMAGES)
    d = load_dataset("patches16", n_train=3000, n_test=300)
    assert d.train.shape == (3000, 3, 16, 16) and d.test.shape == (300, 3, 16, 16)
    assert d.train.dtype == torch.uint8 and d.levels == 256 and d.model_shape == (3, 16, 16)
    assert d.train.float().std() > 20  # real photo content, not a constant
    z = d.test_model_space(generator=torch.Generator().manual_seed(0))
    assert z.min() >= -1 and z.max() < 1
    assert torch.equal(d.from_model(d.to_model(d.train, dequantize=False)), d.train)
    train_keys = {bytes(p.numpy().tobytes()) for p in d.train}
    assert not any(bytes(p.numpy().tobytes()) in train_keys for p in d.test)
    again = load_dataset("patches16", n_train=3000, n_test=300)
    assert torch.equal(again.train, d.train) and torch.equal(again.test, d.test)
    with pytest.raises(ValueError, match="n_train"):
        load_dataset("patches16", n_train=10**7)


# ------------------------------------------------------------------------------------------------ CIFAR-10
def _write_fake_cifar(folder, n=4):
    folder.mkdir(parents=True)
    rng = np.random.RandomState(0)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.randint(0, 256, size=(n, 3072)).astype(np.uint8)
        d = {
            b"batch_label": name.encode(),
            b"labels": rng.randint(0, 10, n).tolist(),
            b"data": data,
            b"filenames": [b"x.png"] * n,
        }
        with open(folder / name, "wb") as f:
            pickle.dump(d, f)
        batches[name] = d
    return batches


def test_cifar10_fake_folder(tmp_path):
    batches = _write_fake_cifar(tmp_path / "cifar-10-batches-py")
    for root in (tmp_path, tmp_path / "cifar-10-batches-py"):
        d = load_dataset("cifar10", root=root)
        assert d.train.shape == (20, 3, 32, 32) and d.test.shape == (4, 3, 32, 32) and d.train.dtype == torch.uint8
        assert d.levels == 256 and d.model_shape == (3, 32, 32)
        first = batches["data_batch_1"][b"data"][0]
        assert torch.equal(d.train[0, 0].flatten(), torch.from_numpy(first[:1024]))  # rows are R, G, B planes
        assert torch.equal(d.test[3].flatten(), torch.from_numpy(batches["test_batch"][b"data"][3]))
        assert d.test_labels.tolist() == batches["test_batch"][b"labels"]
    small = load_dataset("cifar10", root=tmp_path, n_train=5, n_test=2)
    assert small.train.shape[0] == 5 and small.test.shape[0] == 2
    z = small.train_model_space()
    assert z.min() >= -1 and z.max() < 1


def test_cifar10_errors(tmp_path):
    with pytest.raises(ValueError, match="cifar10 needs root"):
        load_dataset("cifar10")
    folder = tmp_path / "c"
    _write_fake_cifar(folder)
    (folder / "data_batch_3").unlink()
    with pytest.raises(ValueError, match=r"missing file .*data_batch_3.*cifar-10-python\.tar\.gz"):
        load_dataset("cifar10", root=folder)
    (folder / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="could not read .*data_batch_3"):
        load_dataset("cifar10", root=folder)


class _Payload:
    """Unpickling this calls open(marker, "w"): the file appears if the pickle's code runs."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("where", ["top", "inside_dict", "labels"])
def test_cifar10_malicious_batch_is_refused_and_never_runs(tmp_path, where):
    """A batch file whose unpickling would run code (create a marker file) is refused; the marker never appears."""
    folder = tmp_path / "c"
    batches = _write_fake_cifar(folder)
    marker = tmp_path / "PWNED"
    d = dict(batches["data_batch_2"])
    payload = {
        "top": _Payload(marker),
        "inside_dict": {**d, b"extra": _Payload(marker)},
        "labels": {**d, b"labels": [1, _Payload(marker)]},
    }[where]
    with open(folder / "data_batch_2", "wb") as f:
        pickle.dump(payload, f)
    with pytest.raises(ValueError, match=r"data_batch_2.*refusing to load global (builtins|io)\.open"):
        load_dataset("cifar10", root=folder)
    assert not marker.exists()
    # the same file under plain pickle would have run the payload: the test can fail
    with open(folder / "data_batch_2", "rb") as f:
        pickle.load(f, encoding="bytes")
    assert marker.exists()


def test_cifar10_batch_with_wrong_contents(tmp_path):
    folder = tmp_path / "c"
    batches = _write_fake_cifar(folder)
    bad = {**batches["test_batch"], b"data": np.zeros((4, 3072), dtype=object)}
    with open(folder / "test_batch", "wb") as f:
        pickle.dump(bad, f)
    with pytest.raises(ValueError, match="expected \\(N, 3072\\) uint8"):
        load_dataset("cifar10", root=folder)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({**batches["test_batch"], b"labels": [b"x"] * 4}, f)
    with pytest.raises(ValueError, match="labels"):
        load_dataset("cifar10", root=folder)


# ------------------------------------------------------------------------------------------------ to model space
def test_one_data_to_model_space_path():
    """Dataset.to_model, the trainer's batches and bits_per_dim share to_model_space: z = T(x + u) or T(x)."""
    from diffdensity.data import to_model_space

    ds = load_dataset("digits")
    x = ds.test[:5]
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    u = torch.rand(x.shape, generator=torch.Generator().manual_seed(7), dtype=x.dtype)
    assert torch.equal(ds.to_model(x, generator=g1), to_model_space(x, ds.transform, True, g2))
    assert torch.allclose(
        ds.to_model(x, generator=torch.Generator().manual_seed(7)), ((x + u) * 2 / 17 - 1).reshape(5, 1, 8, 8)
    )
    assert torch.equal(ds.to_model(x, dequantize=False), x.reshape(5, 1, 8, 8) * (2 / 17) - 1)
    zi = to_model_space(x.to(torch.uint8), ds.transform, False)
    assert zi.dtype == torch.get_default_dtype() and torch.equal(zi, ds.to_model(x, dequantize=False))
    z64 = to_model_space(x, ds.transform, True, torch.Generator().manual_seed(7), dtype=torch.float64)
    assert z64.dtype == torch.float64
    toy = load_dataset("moons", n_train=10, n_test=10)
    assert torch.equal(toy.to_model(toy.test), toy.test)  # continuous data: never dequantized


# ------------------------------------------------------------------------------------------------ folder
def _write_images(folder, n=10):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(0)
    for i in range(n):
        h, w = 20 + 3 * i, 30 - i
        a = rng.randint(0, 256, size=(h, w, 3)).astype(np.uint8)
        ext = "jpg" if i % 3 == 0 else "png"
        Image.fromarray(a).save(folder / f"img{i:02d}.{ext}")


def test_image_folder(tmp_path):
    _write_images(tmp_path / "imgs" / "sub")
    d = load_dataset("folder", root=tmp_path / "imgs", size=8)
    assert d.train.shape == (9, 3, 8, 8) and d.test.shape == (1, 3, 8, 8) and d.train.dtype == torch.uint8
    assert d.levels == 256 and d.data_shape == d.model_shape == (3, 8, 8)
    z = d.train_model_space()
    assert z.min() >= -1 and z.max() < 1
    g = load_dataset("folder", root=tmp_path / "imgs", size=6, grayscale=True, test_fraction=0.3, seed=1)
    assert g.train.shape == (7, 1, 6, 6) and g.test.shape == (3, 1, 6, 6) and g.model_shape == (1, 6, 6)
    again = load_dataset("folder", root=tmp_path / "imgs", size=6, grayscale=True, test_fraction=0.3, seed=1)
    assert torch.equal(again.test, g.test)
    all_imgs = {p.numpy().tobytes() for p in torch.cat([g.train, g.test])}
    assert len(all_imgs) == 10  # every image lands in exactly one split


def test_image_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="not an existing directory"):
        load_dataset("folder", root=tmp_path / "nope")
    with pytest.raises(ValueError, match="folder needs root"):
        load_dataset("folder")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="found 0 image"):
        load_dataset("folder", root=tmp_path / "empty")
    _write_images(tmp_path / "bad", n=3)
    (tmp_path / "bad" / "broken.png").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="could not read image .*broken.png"):
        load_dataset("folder", root=tmp_path / "bad", size=8)
    with pytest.raises(ValueError, match="test_fraction"):
        load_dataset("folder", root=tmp_path / "bad", test_fraction=1.5)


# ------------------------------------------------------------------------------------------------ load_dataset
def test_load_dataset_errors():
    with pytest.raises(ValueError, match="valid names: .*digits.*patches16.*cifar10.*folder"):
        load_dataset("mnist")
    with pytest.raises(ValueError, match="unknown argument 'size'.*n_train, n_test, seed"):
        load_dataset("moons", size=3)
    with pytest.raises(ValueError, match="n_train must be a positive integer"):
        load_dataset("moons", n_train=0)
    assert set(DATASETS) == set(TOYS) | {"digits", "patches16", "cifar10", "folder"}
