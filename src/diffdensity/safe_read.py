"""Readers of untrusted files: each checks a schema and size caps before it allocates, and none follows a link out of
the folder it was given (CIFAR-10 batches, image files and folders, JSON such as ``config.json`` and report inputs).

Every refusal is a ValueError naming the file, what is wrong and what to do. Torch-free (numpy and PIL on use).
"""
from __future__ import annotations

import io
import itertools
import json
import math
import os
import pickle
import pickletools
import re
from pathlib import Path

__all__ = ["inside", "folder_files", "read_bytes", "read_json", "read_cifar_batch", "read_image", "read_safetensors_header",
           "MAX_JSON_BYTES", "MAX_JSON_DEPTH", "MAX_CIFAR_BATCH_BYTES", "MAX_CIFAR_ROWS", "MAX_IMAGE_PIXELS"]

MAX_JSON_BYTES = 4 << 20  # a config.json / summary.json is a few KB
MAX_JSON_DEPTH = 64  # nesting of JSON objects and arrays (json.loads recurses: 100,000 levels end in RecursionError)
MAX_CIFAR_BATCH_BYTES = 64 << 20  # a real batch is 31 MB (10,000 rows of 3072 bytes)
MAX_CIFAR_ROWS = 20000
MAX_CIFAR_OPCODES = 1 << 20
MAX_IMAGE_PIXELS = 8192 * 8192


# ------------------------------------------------------------------------------------------------ paths and links
def inside(root, path) -> Path:
    """``path`` with every link resolved; ValueError if it leaves ``root`` (a link to a file outside the folder)."""
    real_root, real = os.path.realpath(root), os.path.realpath(path)
    if os.path.commonpath([real_root, real]) != real_root:
        raise ValueError(f"{path} is a link to {real}, outside the folder {root} it was given in; refusing to read "
                         "it (copy the file into the folder instead of linking it).")
    return Path(real)


def folder_files(root, suffixes=None, recursive: bool = True) -> list[Path]:
    """The files under ``root`` (sorted; only ``suffixes`` if given), without following links to folders; a file
    link that leaves ``root`` is refused (see :func:`inside`)."""
    root = Path(root)
    files = []
    walk = os.walk(root, followlinks=False) if recursive else [(str(root), [], os.listdir(root))]
    for dirpath, _, names in walk:
        for name in names:
            p = Path(dirpath) / name
            if (suffixes is None or p.suffix.lower() in suffixes) and p.is_file():
                inside(root, p)
                files.append(p)
    return sorted(files)


def read_bytes(path, cap: int, root=None, what: str = "file") -> bytes:
    """The bytes of ``path`` (inside ``root`` when given), refused above ``cap`` bytes before reading."""
    real = inside(root, path) if root is not None else Path(path)
    try:
        with open(real, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > cap:
                raise ValueError(f"{path}: {size} bytes is larger than any real {what} ({cap} bytes at most); "
                                 "check that it is the right file.")
            return f.read(cap + 1)[:cap]
    except OSError as e:
        raise ValueError(f"{path}: cannot read the {what} ({e.strerror or e}).") from None


# ------------------------------------------------------------------------------------------------ JSON
_JSON_STRING = re.compile(r'"(?:\\.|[^"\\])*"')


def _json_depth(text: str) -> int:
    """The deepest nesting of objects/arrays in a JSON text (strings skipped), computed without recursion."""
    brackets = (1 if c in "[{" else -1 for c in _JSON_STRING.sub("", text) if c in "[]{}")
    return max(itertools.accumulate(brackets, initial=0))


def read_json(path, root=None, cap: int = MAX_JSON_BYTES, max_depth: int = MAX_JSON_DEPTH, what: str = "JSON file"):
    """A JSON file, refused above ``cap`` bytes or ``max_depth`` levels of nesting (json would hit RecursionError)."""
    text = read_bytes(path, cap, root, what).decode("utf-8", errors="replace")
    if _json_depth(text) > max_depth:
        raise ValueError(f"{path}: JSON nested deeper than {max_depth} levels; this is not a real {what}.")
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        raise ValueError(f"{path}: not valid JSON ({e}); re-create the {what}.") from None


# ------------------------------------------------------------------------------------------------ safetensors
MAX_SAFETENSORS_HEADER = 100 << 20
_ST_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
                "F8_E4M3": 1, "F8_E5M2": 1}


def _st_entry(path, name, e, itemsize_of=_ST_ITEMSIZE) -> tuple[int, int]:
    """(begin, end) of one tensor entry of a safetensors header, after checking its dtype, shape and size."""
    ok = isinstance(e, dict) and e.get("dtype") in itemsize_of and isinstance(e.get("shape"), list) and isinstance(
        e.get("data_offsets"), list) and len(e["data_offsets"]) == 2
    values = (e.get("shape", []) + e.get("data_offsets", [])) if ok else []
    if not ok or not all(type(v) is int and v >= 0 for v in values):
        raise ValueError(f"{path}: header entry {name!r} is not a tensor description (dtype, shape, data_offsets).")
    begin, end = e["data_offsets"]
    if end - begin != math.prod(e["shape"]) * itemsize_of[e["dtype"]]:
        raise ValueError(f"{path}: tensor {name!r} claims shape {e['shape']} of {e['dtype']} but spans {end - begin} "
                         "bytes; the file is corrupt.")
    return begin, end


def read_safetensors_header(path, root=None) -> dict:
    """The tensor entries of a safetensors file, checked before any tensor is read: a bounded JSON header, known
    dtypes, sizes that match the shapes, and byte ranges that tile the data exactly (no overlap, no gap, no
    tail) -> {name: {"dtype", "shape", "data_offsets"}}."""
    real = inside(root, path) if root is not None else Path(path)
    size = os.path.getsize(real)
    with open(real, "rb") as f:
        head = f.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        if not 2 <= n <= min(MAX_SAFETENSORS_HEADER, size - 8):
            raise ValueError(f"{path}: not a safetensors file (header length {n} for a {size}-byte file); the file "
                             "is truncated or corrupt.")
        text = f.read(n).decode("utf-8", errors="replace")
    if _json_depth(text) > 4:
        raise ValueError(f"{path}: the safetensors header is nested too deeply; the file is corrupt.")
    try:
        header = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: the safetensors header is not JSON ({e}); the file is corrupt.") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: the safetensors header is not a JSON object; the file is corrupt.")
    header.pop("__metadata__", None)
    spans = sorted(_st_entry(path, k, v) for k, v in header.items())
    pos = 0
    for begin, end in spans:
        if begin != pos:
            raise ValueError(f"{path}: tensor byte ranges {'overlap' if begin < pos else 'leave a gap'} at byte "
                             f"{min(begin, pos)}; the file is corrupt or crafted.")
        pos = end
    if pos != size - 8 - n:
        raise ValueError(f"{path}: the tensors span {pos} bytes but the file holds {size - 8 - n}; the file is "
                         "truncated or corrupt.")
    return header


# ------------------------------------------------------------------------------------------------ CIFAR-10 batches
# A real batch: a dict of bytes keys -> a uint8 (N, 3072) numpy array (b'data'), a list of ints (b'labels'), bytes
# (b'batch_label') and a list of bytes (b'filenames'). The pickle's opcodes are checked against a whitelist, and the
# only globals it may name are replaced by stand-ins that accept exactly a uint8 array: no numpy code runs on the
# file's values until they are checked, and nothing is allocated beyond the file's own bytes.
_OPCODES = {
    "PROTO", "FRAME", "STOP", "MARK", "EMPTY_DICT", "EMPTY_LIST", "EMPTY_TUPLE", "TUPLE", "TUPLE1", "TUPLE2",
    "TUPLE3", "DICT", "LIST", "SETITEM", "SETITEMS", "APPEND", "APPENDS", "BININT", "BININT1", "BININT2", "INT",
    "LONG1", "NONE", "NEWTRUE", "NEWFALSE", "BINSTRING", "SHORT_BINSTRING", "BINBYTES", "SHORT_BINBYTES",
    "BINBYTES8", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8", "BYTEARRAY8", "BINPUT", "LONG_BINPUT", "PUT",
    "MEMOIZE", "BINGET", "LONG_BINGET", "GET", "GLOBAL", "STACK_GLOBAL", "REDUCE", "BUILD", "STRING", "UNICODE",
}
_DATA_ERR = "expected (N, 3072) uint8"


class _NDArray:
    """Stands for ``numpy.ndarray`` inside a batch pickle."""


class _Dtype:
    """Stands for ``numpy.dtype``: only uint8, with the plain state of a uint8 dtype (no fields, no objects)."""

    def __init__(self, name, align=0, copy=1):
        name = name.decode("latin1") if isinstance(name, bytes) else name
        if name not in ("u1", "uint8"):
            raise pickle.UnpicklingError(f"b'data' has dtype {name!r}; {_DATA_ERR}")

    def __setstate__(self, state):
        ok = isinstance(state, tuple) and len(state) in (8, 9) and state[1] in ("|", b"|") and state[2:5] == (
            None, None, None)
        if not ok:
            raise pickle.UnpicklingError(f"b'data' has a dtype with fields or sub-arrays; {_DATA_ERR}")


class _Array:
    """Stands for a numpy array: its state is checked (uint8, sizes that match the bytes) before a view is made."""

    array = None

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) == 5):
            raise pickle.UnpicklingError(f"b'data' is not a plain array; {_DATA_ERR}")
        _, shape, dtype, _, raw = state
        self.array = _uint8_view(raw, shape, dtype)


def _uint8_view(raw, shape, dtype):
    import numpy as np

    raw = raw.encode("latin1") if isinstance(raw, str) else raw
    shape_ok = isinstance(shape, tuple) and all(type(s) is int and s >= 0 for s in shape)
    if not isinstance(dtype, _Dtype) or not isinstance(raw, (bytes, bytearray)) or not shape_ok:
        raise pickle.UnpicklingError(f"b'data' is not a uint8 array of bytes; {_DATA_ERR}")
    if math.prod(shape) != len(raw):
        raise pickle.UnpicklingError(f"b'data' claims shape {shape} but holds {len(raw)} bytes; {_DATA_ERR}")
    return np.frombuffer(raw, dtype=np.uint8).reshape(shape)  # a view of the file's bytes: no allocation


def _reconstruct(cls, shape, typecode):
    if cls is not _NDArray:
        raise pickle.UnpicklingError(f"array reconstruction of {cls!r}; {_DATA_ERR}")
    return _Array()


def _frombuffer(buf, dtype, shape, order="C"):
    out = _Array()
    out.array = _uint8_view(bytes(buf) if isinstance(buf, bytearray) else buf, shape, dtype)
    return out


def _latin1(text, encoding="latin1"):
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("only latin-1 encoded bytes are allowed in a CIFAR-10 batch")
    return text.encode("latin1")


_STANDINS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct, ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer, ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): _NDArray, ("numpy", "dtype"): _Dtype, ("_codecs", "encode"): _latin1,
}


class _BatchUnpickler(pickle.Unpickler):
    """Resolves only the globals of a CIFAR-10 batch, to the checked stand-ins above."""

    def find_class(self, module: str, name: str):
        try:
            return _STANDINS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name} (not part of a CIFAR-10 batch)") \
                from None


def _check_opcodes(raw: bytes) -> None:
    """Every opcode on the whitelist, at most MAX_CIFAR_OPCODES of them, every length within the file."""
    for count, (op, _, _) in enumerate(pickletools.genops(io.BytesIO(raw))):
        if op.name not in _OPCODES:
            raise pickle.UnpicklingError(f"pickle opcode {op.name} is not used by CIFAR-10 batches")
        if count > MAX_CIFAR_OPCODES:
            raise pickle.UnpicklingError(f"more than {MAX_CIFAR_OPCODES} pickle opcodes")


def _unpickle_batch(path, root) -> dict:
    raw = read_bytes(path, MAX_CIFAR_BATCH_BYTES, root, what="CIFAR-10 batch")
    try:
        _check_opcodes(raw)
        return _BatchUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as e:  # noqa: BLE001 - any unpickling failure is the same user error
        raise ValueError(f"cifar10: could not read {path} as a CIFAR-10 python batch ({e}); re-extract it from "
                         "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz.") from None


def read_cifar_batch(path, root=None):
    """One CIFAR-10 python batch (inside ``root`` when given) -> (data uint8 (N, 3072), labels int64 (N,));
    hostile bytes are refused before anything is built from them."""
    import numpy as np

    d = _unpickle_batch(path, root)
    if not isinstance(d, dict) or b"data" not in d or b"labels" not in d:
        raise ValueError(f"cifar10: {path} is not a CIFAR-10 python batch (need a dict with b'data' and b'labels').")
    data, labels = getattr(d[b"data"], "array", None), d[b"labels"]
    if data is None or data.ndim != 2 or data.shape[1] != 3072 or data.shape[0] > MAX_CIFAR_ROWS:
        raise ValueError(f"cifar10: {path} has b'data' of shape {getattr(data, 'shape', None)}; {_DATA_ERR} "
                         f"with N <= {MAX_CIFAR_ROWS}.")
    if not isinstance(labels, list) or len(labels) != data.shape[0] or any(type(v) is not int for v in labels):
        raise ValueError(f"cifar10: {path} has b'labels' that are not a list of {data.shape[0]} integers.")
    return data.copy(), np.asarray(labels, dtype=np.int64)


# ------------------------------------------------------------------------------------------------ images
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def _eight_bit(im):
    """A PIL image with 16-bit (or 32-bit integer) samples scaled to 8 bits (v·255/65535, rounded), not clipped."""
    import numpy as np
    from PIL import Image

    if im.mode not in _SIXTEEN_BIT:
        return im
    a = np.asarray(im, dtype=np.int64)
    if a.min() < 0 or a.max() > 65535:
        raise ValueError(f"integer samples outside 0..65535 (mode {im.mode}); save the image as 8 or 16 bits.")
    return Image.fromarray(np.rint(a * (255 / 65535)).astype(np.uint8), mode="L")


def read_image(path, size: int, grayscale: bool, root=None):
    """An image file resized (shorter side, bicubic) and centre-cropped to size×size: uint8 (C, size, size).
    16-bit images are scaled to 8 bits; more than MAX_IMAGE_PIXELS pixels is refused before decoding."""
    import numpy as np
    from PIL import Image

    real = inside(root, path) if root is not None else Path(path)
    try:
        with Image.open(real) as im:
            if im.size[0] * im.size[1] > MAX_IMAGE_PIXELS:
                raise ValueError(f"{im.size[0]}×{im.size[1]} pixels is more than {MAX_IMAGE_PIXELS}")
            im = _eight_bit(im).convert("L" if grayscale else "RGB")
            w, h = im.size
            s = size / min(w, h)
            nw, nh = max(size, round(w * s)), max(size, round(h * s))
            im = im.resize((nw, nh), Image.Resampling.BICUBIC)
            left, top = (nw - size) // 2, (nh - size) // 2
            a = np.array(im.crop((left, top, left + size, top + size)), dtype=np.uint8)
    except Exception as e:  # noqa: BLE001 - any decoding failure is the same user error
        raise ValueError(f"folder: could not read image {path} ({type(e).__name__}: {e}); remove or fix the file.") \
            from None
    return a[None] if grayscale else a.transpose(2, 0, 1)
