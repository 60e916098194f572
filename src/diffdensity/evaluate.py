"""Bits/dim of a whole data set: batched, resumable, on one or several processes through ``accelerate``.

Layout of ``out`` (all files written atomically, so an interruption leaves only whole files):

    out/settings.json          what is evaluated (checked on resume: a different setting is an error)
    out/batches/b000123.npz    one file per finished batch: index, bits/dim per example and per repeat, nfe, seconds
    out/per_example.npz        the gathered result: index (n,), bits_per_dim (n,), bits_per_dim_repeats (n, repeats),
                               bits_per_dim_stderr (n,: the probes' standard error; NaN where the settings give none)
    out/summary.json           mean, sem, n, solver settings, NFE, time, model

Batch b always holds examples [b·B, (b+1)·B) and processes take whole batches round-robin (b mod P), so a batch
is computed with the same batch-mates whichever process runs it (with ``control="batch"`` dopri5 shares its
step-size control across a batch, and this is what makes several processes give exactly one process's numbers). The dequantization noise of
example i, repeat r is drawn from its own generator seeded by (seed, i, r), and so are its Hutchinson probes (seed,
probe stream, i, r); dopri5 controls each example's steps on its own, so an example's value does not depend on its
batch-mates or on ``batch_size`` (to round-off).
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ._io_utils import atomic_write, write_json
from .likelihood import _data_dtype, bits_per_dim, log_prob, stderr_available
from .models import CountingModel
from .solvers import resolve

__all__ = ["evaluate_bits_per_dim", "example_seed", "data_log_prob"]

_DEQ, _PROBE = 0, 1  # stream tags of example_seed


def example_seed(seed: int, *key: int) -> int:
    """A 63-bit seed for one stream (e.g. example i, repeat r) derived from (seed, *key) by numpy's SeedSequence."""
    s = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(seed) >> 32, *[int(k) for k in key]])
    return int(s.generate_state(1, np.uint64)[0] >> np.uint64(1))


def _item(v) -> Tensor:
    """One example of a map-style dataset: a tensor/array, or the first element of a tuple/list/dict ("x", "image")."""
    if isinstance(v, dict):
        for k in ("x", "image", "img", "pixel_values"):
            if k in v:
                v = v[k]
                break
        else:
            raise ValueError(f"dataset items are dicts with keys {sorted(v)}; need 'x' or 'image'.")
    elif isinstance(v, (tuple, list)):
        v = v[0]
    if not isinstance(v, Tensor):
        try:
            v = torch.as_tensor(np.asarray(v))
        except Exception as e:  # noqa: BLE001 - anything not array-like is the same user error
            raise ValueError(f"dataset item of type {type(v).__name__} is not array-like.") from e
    return v


def _get_batch(dataset, idx: range) -> Tensor:
    if isinstance(dataset, Tensor):
        return dataset[idx.start:idx.stop]
    return torch.stack([_item(dataset[i]) for i in idx])


def _length(dataset) -> int:
    if isinstance(dataset, np.ndarray):
        raise TypeError("pass a torch tensor (torch.from_numpy(array)) or a map-style dataset.")
    try:
        return len(dataset)
    except TypeError:
        raise TypeError(f"dataset must be a tensor or a map-style dataset with __len__ and __getitem__, "
                        f"got {type(dataset).__name__}.") from None


def _describe(model, model_name) -> str:
    if model_name:
        return str(model_name)
    cfg = getattr(model, "config", None)
    name = cfg.get("name") if isinstance(cfg, dict) else None
    return name or f"{type(model).__name__}({getattr(model, 'schedule', '')})"


def _read_batch(path: Path):
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _write_npz(path: Path, **arrays) -> None:
    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    atomic_write(path, write)


def _check_args(dataset, batch_size, repeats, dequantize, limit) -> int:
    """The number of examples to evaluate, after checking the arguments."""
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: need a positive integer.")
    if int(repeats) != repeats or repeats < 1:
        raise ValueError(f"repeats={repeats}: need a positive integer.")
    if dequantize not in ("uniform", "none"):
        raise ValueError(f"dequantize={dequantize!r}; choose 'uniform' or 'none'.")
    n = _length(dataset)
    if limit is not None:
        n = min(n, int(limit))
    if n < 1:
        raise ValueError("the dataset is empty; nothing to evaluate.")
    return n


def _settings(model, model_name, solver_kw: dict, log_prob_kw: dict, **fields) -> dict:
    """What is evaluated, JSON-able (a custom prior is named, not serialised)."""
    settings = {"model": _describe(model, model_name), **fields, **solver_kw,
                **{k: (v if isinstance(v, (int, float, str, bool, type(None))) else repr(v))
                   for k, v in log_prob_kw.items() if k != "prior"}}
    if "prior" in log_prob_kw:
        settings["prior"] = "custom"
    return settings


def _check_settings(out: Path, settings: dict, state) -> None:
    """Write OUT/settings.json, or refuse an ``out`` that holds results of a different evaluation."""
    sfile = out / "settings.json"
    if state.is_main_process:
        if sfile.exists():
            old = json.loads(sfile.read_text())
            diff = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
            if diff:
                raise ValueError(f"{out} holds results of a different evaluation ({diff} as (saved, now)); "
                                 "pass another out= or delete the folder.")
        else:
            write_json(sfile, settings)
    state.wait_for_everyone()


def _run_batches(dataset, n: int, batch_size: int, evaluate, out, state, progress) -> tuple[list, int, int]:
    """This process's batches (b mod P), each read back from OUT/batches when done before: (results, computed,
    resumed)."""
    bdir = out / "batches" if out is not None else None
    mine = list(range(state.process_index, math.ceil(n / batch_size), state.num_processes))
    results, computed, resumed = [], 0, 0
    disable = True if (progress is False or not state.is_local_main_process) else (None if progress is None else False)
    bar = tqdm(mine, desc="bits/dim", disable=disable, dynamic_ncols=True)
    for b in bar:
        path = bdir / f"b{b:06d}.npz" if bdir is not None else None
        if path is not None and path.exists():
            results.append(_read_batch(path))
            resumed += 1
            continue
        idx = range(b * batch_size, min((b + 1) * batch_size, n))
        res = evaluate(_get_batch(dataset, idx), idx, b)
        if path is not None:
            _write_npz(path, **res)
        results.append(res)
        computed += 1
        bar.set_postfix(bpd=f"{float(np.mean(np.concatenate([r['bpd'] for r in results]))):.4f}")
    bar.close()
    return results, computed, resumed


def _gather(state, results: list, computed: int, resumed: int, n: int, n_batches: int) -> tuple:
    """Every process's results in example order: (summary numbers, index, bits/dim per example and repeat)."""
    from accelerate.utils import gather_object

    gathered = gather_object([(state.process_index, results, computed, resumed)]) if state.num_processes > 1 \
        else [(0, results, computed, resumed)]
    allres = [r for _, rs, _, _ in gathered for r in rs]
    index = np.concatenate([r["index"] for r in allres])
    order = np.argsort(index, kind="stable")
    index = index[order]
    if not np.array_equal(index, np.arange(n)):
        raise RuntimeError(f"gathered {index.size} results for {n} examples; some batches are missing.")
    bpd_rep = np.concatenate([r["bpd_repeats"] for r in allres])[order]
    stderr = np.concatenate([r.get("stderr", np.full(len(r["index"]), np.nan)) for r in allres])[order]
    bpd = bpd_rep.mean(1)
    nfe = np.array([int(r["nfe"]) for r in allres])
    numbers = {
        "mean": float(bpd.mean()),
        "sem": float(bpd.std(ddof=1) / math.sqrt(n)) if n > 1 else None,
        "n_evaluated": int(n),
        "nfe_per_batch_mean": float(nfe.mean()),
        "nfe_total": int(nfe.sum()),
        "seconds": float(sum(float(r["seconds"]) for r in allres)),
        "processes": state.num_processes,
        "batches": n_batches,
        "batches_computed": int(sum(g[2] for g in gathered)),
        "batches_resumed": int(sum(g[3] for g in gathered)),
        "probe_seeding": "per-example (seed, example, repeat)",
        "median_stderr": None if np.isnan(stderr).all() else float(np.nanmedian(stderr)),
    }
    return numbers, index, bpd_rep, stderr


def evaluate_bits_per_dim(model, dataset, *, batch_size: int = 64, levels: int | None = 256, repeats: int = 1,
                          out=None, generator: torch.Generator | None = None, seed: int | None = None,
                          dequantize: str = "uniform", solver: str = "dopri5", steps: int | None = None,
                          divergence: str = "hutchinson", n_probes: int = 1, rtol: float = 1e-5, atol: float = 1e-5,
                          limit: int | None = None, device=None, model_name: str | None = None,
                          progress: bool | None = None, **log_prob_kw) -> dict:
    """Bits/dim of every example of ``dataset`` (a tensor or map-style dataset of integer data, batch first) by
    :func:`dd.bits_per_dim` (uniform dequantization, PF-ODE log p). Returns a dict with "mean", "sem", "n",
    "per_example" (a numpy array in dataset order), "index", the settings, NFE and time; with ``out`` also writes
    the files of the module docstring and resumes from them. The seed is ``seed``, else
    ``generator.initial_seed()``, else 0. Under ``accelerate launch`` each process takes whole batches and every
    process returns the gathered result. ``limit`` evaluates only the first ``limit`` examples; other keywords
    (``prior=``, ``probe=``, ``chunk_size=``) go to :func:`dd.log_prob`."""
    from accelerate import PartialState

    n = _check_args(dataset, batch_size, repeats, dequantize, limit)
    seed = int(seed if seed is not None else (generator.initial_seed() if generator is not None else 0))
    batch_size, repeats = int(batch_size), int(repeats)
    reps = repeats if dequantize == "uniform" else 1
    on_cpu = not torch.cuda.is_available() or (device is not None and torch.device(device).type == "cpu")
    state = PartialState(cpu=on_cpu)  # cpu=True: several CPU processes talk through gloo
    if device is None and state.num_processes > 1:
        device = state.device
    if device is not None and hasattr(model, "to"):
        model = model.to(device)
    solver_kw = dict(solver=solver, steps=steps, divergence=divergence, n_probes=n_probes, rtol=rtol, atol=atol)
    if resolve(solver).adaptive:  # per-example error control: an example's value does not depend on its batch
        solver_kw["control"] = log_prob_kw.pop("control", "example")
    settings = _settings(model, model_name, solver_kw, log_prob_kw, n=n, batch_size=batch_size, levels=levels,
                         repeats=reps, dequantize=dequantize, seed=seed)
    solver_kw.update(log_prob_kw)
    out = Path(out) if out is not None else None
    if out is not None:
        _check_settings(out, settings, state)

    def evaluate(batch, idx, b):
        return _evaluate_batch(model, batch, idx, b, seed, levels, reps, dequantize, solver_kw, device)

    results, computed, resumed = _run_batches(dataset, n, batch_size, evaluate, out, state, progress)
    numbers, index, bpd_rep, stderr = _gather(state, results, computed, resumed, n, math.ceil(n / batch_size))
    summary = {**settings, **numbers}
    bpd = bpd_rep.mean(1)
    if out is not None and state.is_main_process:
        _write_npz(out / "per_example.npz", index=index, bits_per_dim=bpd, bits_per_dim_repeats=bpd_rep,
                   bits_per_dim_stderr=stderr)
        write_json(out / "summary.json", summary)
    if out is not None:
        state.wait_for_everyone()
    return {**summary, "per_example": bpd, "per_example_repeats": bpd_rep, "per_example_stderr": stderr,
            "index": index}


def _evaluate_batch(model, x: Tensor, idx: range, b: int, seed: int, levels, reps: int, dequantize: str,
                    solver_kw: dict, device) -> dict:
    """Bits/dim of one batch: per-example dequantization from (seed, i, r), then dd.bits_per_dim of x + u as
    continuous data units (so the bits/dim formula stays in one place)."""
    t0 = time.perf_counter()
    if device is not None:
        x = x.to(device)
    xf = x.to(_data_dtype(model, x))
    if dequantize == "uniform" and ((xf != xf.round()).any() or (xf < 0).any()
                                    or (levels is not None and (xf > levels - 1).any())):
        raise ValueError(f"examples {idx.start}..{idx.stop - 1} are not integers in [0, {levels - 1}]; pass integer "
                         "data (e.g. uint8 images) or dequantize='none' for continuous data.")
    vals, errs, nfe = [], [], 0
    u: Tensor | float  # the dequantization noise, or none
    for r in range(reps):
        if dequantize == "uniform":
            u = torch.stack([torch.rand(xf.shape[1:], dtype=xf.dtype,
                                        generator=torch.Generator().manual_seed(example_seed(seed, _DEQ, i, r)))
                             for i in idx]).to(xf.device)
        else:
            u = 0.0
        g = [torch.Generator(device=xf.device).manual_seed(example_seed(seed, _PROBE, i, r)) for i in idx]
        counter = CountingModel(model)
        se = stderr_available(**solver_kw)
        v = bits_per_dim(counter, xf + u, levels=levels, dequantize="none", generator=g, progress=False,  # type: ignore[arg-type]  # log_prob takes one generator per example
                         return_stderr=se, **solver_kw)
        v, s = v if se else (v, torch.full_like(v, float("nan")))
        vals.append(v.detach().double().cpu().numpy())
        errs.append(s.detach().double().cpu().numpy())
        nfe += counter.nfe
    return {"index": np.arange(idx.start, idx.stop), "bpd": np.mean(vals, 0), "bpd_repeats": np.stack(vals, 1),
            "stderr": np.sqrt(np.sum(np.square(errs), 0)) / reps, "nfe": np.array(nfe),
            "seconds": np.array(time.perf_counter() - t0)}


def data_log_prob(model, data=None, split: str = "test", n: int = 128, bpd: bool = True, repeats: int = 1,
                  **log_prob_kw) -> tuple[Tensor, Tensor | None, str]:
    """Log p (nats) of the model-space samples in a .npz/.npy ``data`` file, or of the first ``n`` examples of a
    data set's ``split`` (default the model's own; bits/dim of integer data with ``bpd``) -> (values, their
    standard errors or None where the settings give none, kind)."""
    from .data import load_dataset
    from .data.loading import model_dataset, read_array

    se = stderr_available(**log_prob_kw)
    if data is not None and Path(data).suffix in (".npz", ".npy"):
        x = torch.as_tensor(read_array(data), dtype=torch.float32)[:n]
        return (*_with_se(log_prob(model, x, return_stderr=se, **log_prob_kw), se), "log_prob_nats")
    own = (getattr(model, "config", {}) or {}).get("dataset")
    if not (data or own):
        raise ValueError("pass --data (a data set name or a .npz of model-space samples).")
    ds = model_dataset(model) if data in (None, own) else load_dataset(data)
    x = getattr(ds, split)[:n]
    if bpd and ds.levels is not None:
        out = bits_per_dim(model, x, levels=ds.levels, repeats=repeats, return_stderr=se, **log_prob_kw)
        return (*_with_se(out, se), "bits_per_dim")
    return (*_with_se(log_prob(model, ds.transform.forward(x.float()), return_stderr=se, **log_prob_kw), se),
            "log_prob_nats")


def _with_se(out, se: bool) -> tuple:
    return out if se else (out, None)
