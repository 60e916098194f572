"""The safe readers (diffdensity.safe_read): a table of hostile files per format, each refused with a clear
ValueError, nothing executed, crashed, allocated beyond the caps or read from outside the folder given."""

import json
import os
import pickle

import numpy as np
import pytest

from diffdensity import safe_read as sr
from diffdensity.data import load_dataset


def _batch(n=3, over=None):
    d = {
        b"batch_label": b"x",
        b"labels": list(range(n)),
        b"data": np.arange(n * 3072, dtype=np.uint64).astype(np.uint8).reshape(n, 3072),
        b"filenames": [b"a.png"] * n,
    }
    d.update(over or {})
    return d


class _Reduce:
    """Pickles as whatever ``__reduce__`` tuple it is given (to craft hostile pickles without running them)."""

    def __init__(self, *rv):
        self.rv = rv

    def __reduce__(self):
        return self.rv


def _array(shape, raw, dtype_state=(3, "|", None, None, None, -1, -1, 0)):
    dt = _Reduce(np.dtype, ("u1", False, True), dtype_state)
    return _Reduce(np._core.multiarray._reconstruct, (np.ndarray, (0,), b"b"), (1, shape, dt, False, raw))


def _object_field_dtype():
    # uint8 whose state claims an object field: numpy's own dtype.__setstate__ on this crashed with signal 11
    state = (3, "|", None, ("f",), {"f": (np.dtype("O"), 0)}, 8, 1, 0x3F)
    return {b"data": _array((1, 3072), bytes(3072), state), b"labels": [0]}


def _amplified():
    row = list(range(10000))  # memoized once, referenced 20,000 times: 2·10^8 ints if converted
    return {b"data": np.zeros((1, 3072), np.uint8), b"labels": [row] * 20000}


HOSTILE_BATCHES = [
    ("code execution", lambda: _Reduce(os.system, ("echo pwned",)), "refusing to load global"),
    ("object field set through dtype.__setstate__", _object_field_dtype, "uint8"),
    ("memo amplification of a list", _amplified, "labels"),
    (
        "shape larger than the bytes",
        lambda: {b"data": _array((10**6, 3072), bytes(3072)), b"labels": [0]},
        "claims shape",
    ),
    ("float data", lambda: _batch(over={b"data": np.zeros((3, 3072), np.float32)}), "uint8"),
    ("wrong row length", lambda: _batch(over={b"data": np.zeros((3, 100), np.uint8)}), "3072"),
    ("labels of bytes", lambda: _batch(over={b"labels": [b"x"] * 3}), "labels"),
    ("labels of floats", lambda: _batch(over={b"labels": [0.5, 1.0, 2.0]}), "BINFLOAT"),
    ("not a dict", lambda: [1, 2, 3], "need a dict"),
]


@pytest.mark.parametrize("name,make,match", HOSTILE_BATCHES, ids=[c[0] for c in HOSTILE_BATCHES])
def test_hostile_cifar_batches_are_refused(tmp_path, name, make, match):
    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps(make(), protocol=2))
    with pytest.raises(ValueError, match=match):
        sr.read_cifar_batch(path)


@pytest.mark.parametrize(
    "raw,match",
    [
        (b"\x80\x02\x82\x01.", "EXT1"),  # copyreg extension registry: a global lookup outside find_class
        (b"\x80\x02T\xff\xff\xff\x7fabc.", "could not read"),  # a length far beyond the file
        (b"\x80\x02(I1\n\x81.", "NEWOBJ"),
    ],
)
def test_hostile_pickle_opcodes_are_refused(tmp_path, raw, match):
    path = tmp_path / "b"
    path.write_bytes(raw)
    with pytest.raises(ValueError, match=match):
        sr.read_cifar_batch(path)


def test_oversized_batch_refused_before_reading(tmp_path):
    path = tmp_path / "b"
    with open(path, "wb") as f:
        f.truncate(sr.MAX_CIFAR_BATCH_BYTES + 1)  # sparse: nothing is written
    with pytest.raises(ValueError, match="larger than any real CIFAR-10 batch"):
        sr.read_cifar_batch(path)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_real_batches_of_every_protocol_read(tmp_path, protocol):
    d = _batch()
    (tmp_path / "b").write_bytes(pickle.dumps(d, protocol=protocol))
    data, labels = sr.read_cifar_batch(tmp_path / "b")
    assert np.array_equal(data, d[b"data"]) and labels.tolist() == [0, 1, 2] and data.flags.writeable


def test_cifar_folder_link_out_of_the_folder_refused(tmp_path):
    folder, outside = tmp_path / "c", tmp_path / "secret"
    folder.mkdir()
    outside.write_bytes(pickle.dumps(_batch()))
    for f in [f"data_batch_{i}" for i in range(1, 6)]:
        (folder / f).write_bytes(pickle.dumps(_batch()))
    (folder / "test_batch").symlink_to(outside)
    with pytest.raises(ValueError, match="outside the folder"):
        load_dataset("cifar10", root=folder)


# ------------------------------------------------------------------------------------------------ JSON
def test_json_depth_and_size_caps(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(ValueError, match="nested deeper"):
        sr.read_json(deep)
    tricky = tmp_path / "ok.json"
    tricky.write_text(json.dumps({"s": "[[[[{{{{" * 100, "a": [[1]]}))  # brackets inside strings do not count
    assert sr.read_json(tricky)["a"] == [[1]]
    big = tmp_path / "big.json"
    with open(big, "wb") as f:
        f.truncate(sr.MAX_JSON_BYTES + 1)
    with pytest.raises(ValueError, match="larger than"):
        sr.read_json(big)
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(ValueError, match="not valid JSON"):
        sr.read_json(tmp_path / "bad.json")


# ------------------------------------------------------------------------------------------------ images
def _png(path, array, mode=None):
    from PIL import Image

    Image.fromarray(array, mode=mode).save(path)


def test_sixteen_bit_png_is_scaled_not_saturated(tmp_path):
    a = np.array([[0, 1000, 32768, 65535]], dtype=np.uint16).repeat(4, 0)
    _png(tmp_path / "g16.png", a)
    out = sr.read_image(tmp_path / "g16.png", 4, grayscale=True)
    assert out[0, 0].tolist() == [0, 4, 128, 255]


def test_image_folder_link_out_of_the_folder_refused(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        _png(folder / f"{i}.png", np.full((8, 8, 3), i * 40, np.uint8))
    _png(tmp_path / "private.png", np.zeros((8, 8, 3), np.uint8))
    (folder / "z.png").symlink_to(tmp_path / "private.png")
    with pytest.raises(ValueError, match="outside the folder"):
        load_dataset("folder", root=folder, size=8)
    (folder / "z.png").unlink()
    (folder / "in.png").symlink_to(folder / "0.png")  # a link that stays inside is fine
    assert load_dataset("folder", root=folder, size=8).train.shape[1:] == (3, 8, 8)


def test_report_does_not_copy_a_linked_png_from_outside(tmp_path):
    from diffdensity.report import build_report

    run = tmp_path / "run"
    run.mkdir()
    (run / "r.json").write_text('{"x": 1}')
    (tmp_path / "secret.png").write_bytes(b"\x89PNG secret")
    (run / "fig.png").symlink_to(tmp_path / "secret.png")
    with pytest.raises(ValueError, match="outside the folder"):
        build_report([run], tmp_path / "rep")
    assert not any(p.read_bytes() == b"\x89PNG secret" for p in (tmp_path / "rep").glob("*.png"))
    (run / "fig.png").unlink()
    (tmp_path / "secret.json").write_text('{"secret": 42}')
    (run / "s.json").symlink_to(tmp_path / "secret.json")
    with pytest.raises(ValueError, match="outside the folder"):
        build_report([run], tmp_path / "rep2")


# ------------------------------------------------------------------------------------------------ model folders
@pytest.fixture()
def folder(tmp_path):
    import diffdensity as dd

    return dd.save(dd.load("toy2d-moons"), tmp_path / "m")


def _rewrite_header(path, edit):
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    edit(header)
    text = json.dumps(header).encode()
    path.write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + n :])


def _overlap(h):
    names = sorted((k for k in h if k != "__metadata__"), key=lambda k: h[k]["data_offsets"][0])
    a, b = h[names[0]], h[names[1]]
    if a["data_offsets"][1] - a["data_offsets"][0] == b["data_offsets"][1] - b["data_offsets"][0]:
        b["data_offsets"] = list(a["data_offsets"])
    else:
        b["data_offsets"] = [b["data_offsets"][0] - 4, b["data_offsets"][1] - 4]


HOSTILE_FOLDERS = [
    ("overlapping tensor offsets", lambda f: _rewrite_header(f / "model.safetensors", _overlap), "overlap|gap|span"),
    (
        "a size that does not match the shape",
        lambda f: _rewrite_header(
            f / "model.safetensors", lambda h: h[next(k for k in h if k != "__metadata__")].update(shape=[10**6])
        ),
        "claims shape",
    ),
    (
        "100,000-deep config.json",
        lambda f: (f / "config.json").write_text("[" * 100000 + "]" * 100000),
        "nested deeper",
    ),
    (
        "lambda_min as a string",
        lambda f: (f / "config.json").write_text(
            (f / "config.json").read_text().replace('"lambda_min": -10.0', '"lambda_min": "-10"')
        ),
        "must be numbers",
    ),
    (
        "net that is not an object",
        lambda f: (f / "config.json").write_text(
            json.dumps({**json.loads((f / "config.json").read_text()), "net": [1, 2]})
        ),
        "net must be an object",
    ),
    (
        "weights linked from outside",
        lambda f: (
            (f / "model.safetensors").rename(f.parent / "elsewhere"),
            (f / "model.safetensors").symlink_to(f.parent / "elsewhere"),
        ),
        "outside the folder",
    ),
    (
        "truncated weights",
        lambda f: (f / "model.safetensors").write_bytes((f / "model.safetensors").read_bytes()[:-7]),
        "truncated",
    ),
]


@pytest.mark.parametrize("name,spoil,match", HOSTILE_FOLDERS, ids=[c[0] for c in HOSTILE_FOLDERS])
def test_hostile_model_folders_are_refused(folder, name, spoil, match):
    import diffdensity as dd

    assert "lambda_min" in (folder / "config.json").read_text()
    spoil(folder)
    with pytest.raises(ValueError, match=match):
        dd.load(folder)


def test_save_refuses_weights_that_would_not_load(folder, tmp_path):
    import torch

    import diffdensity as dd

    m = dd.load(folder)
    with pytest.raises(ValueError, match="weights do not match"):
        dd.save(m, tmp_path / "bad", weights={"x": torch.zeros(3)})
    assert not (tmp_path / "bad" / "model.safetensors").exists()
    dd.load(dd.save(m, tmp_path / "good", weights=m.net.state_dict()))


def _huge_png(path):
    """A valid PNG whose header claims 100,000 × 100,000 pixels (a decompression bomb)."""
    import struct
    import zlib

    _png(path, np.zeros((2, 2), np.uint8))
    raw = bytearray(path.read_bytes())
    ihdr = raw[12:29]  # b"IHDR" + 13 bytes
    ihdr[4:12] = struct.pack(">II", 100000, 100000)
    raw[12:29] = ihdr
    raw[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    path.write_bytes(bytes(raw))


HOSTILE_IMAGES = [
    ("decompression bomb", _huge_png, "more than|exceeds limit"),
    ("not an image", lambda p: p.write_bytes(b"#!/bin/sh\necho hi\n"), "could not read image"),
    (
        "truncated",
        lambda p: (_png(p, np.zeros((64, 64, 3), np.uint8)), p.write_bytes(p.read_bytes()[:60])),
        "could not read image",
    ),
]


@pytest.mark.parametrize("name,make,match", HOSTILE_IMAGES, ids=[c[0] for c in HOSTILE_IMAGES])
def test_hostile_images_are_refused(tmp_path, name, make, match):
    make(tmp_path / "x.png")
    with pytest.raises(ValueError, match=match):
        sr.read_image(tmp_path / "x.png", 8, grayscale=False)
