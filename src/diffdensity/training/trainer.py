"""The trainer: ε-prediction denoising in λ on one device or many (``accelerate``), resumable bit for bit.

A run folder holds

* ``checkpoint.pt`` — everything needed to continue exactly: network, EMA, optimizer, λ-sampler, step, the
  data-order and training ``torch.Generator`` states, the data permutation and position, the global torch RNG.
  Written atomically (temporary file in the same folder, then ``os.replace``).
* ``model.safetensors`` + ``config.json`` — the EMA model as a model folder (:func:`diffdensity.load` reads it).
* ``log.jsonl`` — one JSON line per log / eval event; ``samples_<step>.png`` — sample grids.

Randomness never comes from the global RNG except inside the network (dropout): the data order uses its own
generator, and λ, the noise ε and the dequantization noise come from a second one. Every process draws the
*global* batch's λ/ε/u from identical generators and keeps its own slice, so a run is (up to floating-point
reduction order) the same whatever the number of processes, and the histogram of the importance sampler stays
identical on every process (it is updated from the gathered global batch).

SIGINT / SIGTERM: the current step finishes, a checkpoint is written, and :meth:`Trainer.run` returns (a second
SIGINT interrupts at once). Resuming (``resume=True``) continues as if never interrupted.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ..io import WEIGHTS_NAME, atomic_write, save
from ..models import PARAMETRIZATIONS, NetworkModel
from .ema import EMA
from .importance import ImportanceSampler
from .objective import WEIGHTINGS, UniformLambda, denoising_loss, low_discrepancy

__all__ = ["TrainConfig", "Trainer", "train", "CHECKPOINT_NAME", "load_checkpoint"]

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_VERSION = 1

# settings that define the model and the training trajectory; a resumed run must not change them
_STRUCTURAL = (
    "dataset", "dataset_kwargs", "net", "preset", "hidden", "depth", "net_kwargs", "schedule", "lambda_min",
    "lambda_max", "parametrization", "weighting", "importance", "is_bins", "is_decay", "is_uniform_mix",
    "batch_size", "lr", "optimizer", "weight_decay", "betas", "warmup", "clip", "ema_decay", "dequantize", "seed",
)


@dataclass
class TrainConfig:
    """Every training setting (the CLI's ``diffdensity train`` options map one to one onto these fields)."""

    # data
    dataset: str = "digits"
    root: str | None = None
    dataset_kwargs: dict = field(default_factory=dict)
    dequantize: bool = True  # uniform dequantization of discrete data (x + u, u ~ U[0,1))
    # network: "mlp", "unet" or "auto" (a UNet preset named like the dataset if one exists, else an MLP)
    net: str = "auto"
    preset: str | None = None  # UNet preset name (defaults to the dataset name)
    hidden: int | None = None  # MLP width (default 256)
    depth: int | None = None  # MLP residual blocks (default 3)
    net_kwargs: dict = field(default_factory=dict)  # extra keyword arguments / overrides for the network
    # diffusion
    schedule: str = "VP"
    lambda_min: float | None = None
    lambda_max: float | None = None
    parametrization: str = "eps"
    weighting: str = "elbo"
    importance: bool = True
    is_bins: int = 100
    is_decay: float = 0.99
    is_uniform_mix: float = 0.0
    # optimisation
    steps: int = 10000
    batch_size: int = 128  # global batch, split over processes
    lr: float = 2e-4
    optimizer: str = "adamw"
    weight_decay: float = 0.0
    betas: tuple = (0.9, 0.999)
    warmup: int = 200
    clip: float | None = 1.0
    ema_decay: float = 0.999
    # monitoring
    log_every: int = 50
    eval_every: int = 0  # held-out bits/dim every N steps (0: only at the end if eval_final)
    eval_final: bool = True
    eval_n: int = 128
    eval_kwargs: dict = field(default_factory=lambda: {"solver": "euler", "steps": 128})
    sample_every: int = 0
    n_samples: int = 64
    sample_steps: int = 128
    checkpoint_every: int = 1000
    # run
    seed: int = 0
    out: str = "runs/run"
    resume: bool = False
    mixed_precision: str = "no"
    cpu: bool = False
    threads: int | None = None
    progress: bool = True

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["betas"] = list(d["betas"])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown training settings {sorted(unknown)}; valid ones: {sorted(names)}.")
        d = dict(d)
        if "betas" in d:
            d["betas"] = tuple(d["betas"])
        return cls(**d)

    def validate(self) -> None:
        if self.parametrization not in PARAMETRIZATIONS:
            raise ValueError(f"parametrization={self.parametrization!r}; choose one of {PARAMETRIZATIONS}.")
        if not callable(self.weighting) and self.weighting not in WEIGHTINGS:
            raise ValueError(f"weighting={self.weighting!r}; choose one of {sorted(WEIGHTINGS)}.")
        if self.net not in ("auto", "mlp", "unet"):
            raise ValueError(f"net={self.net!r}; choose 'auto', 'mlp' or 'unet'.")
        if self.optimizer not in ("adam", "adamw"):
            raise ValueError(f"optimizer={self.optimizer!r}; choose 'adam' or 'adamw'.")
        for name in ("steps", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or int(v) != v or v < 1:
                raise ValueError(f"{name}={v!r}: need a positive integer.")
        for name in ("warmup", "log_every", "eval_every", "sample_every", "checkpoint_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or int(v) != v or v < 0:
                raise ValueError(f"{name}={v!r}: need a non-negative integer (0 turns it off).")
        if not self.lr > 0:
            raise ValueError(f"lr={self.lr}: need a positive learning rate.")
        if self.clip is not None and not self.clip > 0:
            raise ValueError(f"clip={self.clip}: need a positive gradient-norm bound (or None for no clipping).")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay={self.ema_decay}: need 0 <= decay < 1.")


# ------------------------------------------------------------------------------------------------ building blocks
def make_net_config(cfg: TrainConfig, ds) -> dict:
    """The network config (``nets.build_net`` input) for a training config and a dataset.

    ``net="auto"``: a UNet for image data (C, H, W) — the preset named like the dataset if there is one, else
    "patches16" (H < 32) or "cifar10" — and an MLP otherwise. A UNet's ``in_channels`` and ``resolution`` follow
    the data unless ``net_kwargs`` sets them.
    """
    from .. import nets

    kind = cfg.net
    image = len(ds.model_shape) == 3
    if kind == "auto":
        kind = "unet" if image else "mlp"
    if kind == "mlp":
        kw = {"hidden": cfg.hidden or 256, "depth": cfg.depth or 3, **cfg.net_kwargs}
        return nets.MLP(math.prod(ds.model_shape), **kw).config
    if not image:
        raise ValueError(f"net='unet' needs image data (C, H, W); {ds.name} has model shape {ds.model_shape}.")
    preset = cfg.preset or (ds.name if ds.name in nets.UNET_PRESETS else ("patches16" if ds.model_shape[1] < 32 else "cifar10"))
    kw = {"in_channels": ds.model_shape[0], "resolution": ds.model_shape[1], **cfg.net_kwargs}
    return nets.unet_preset(preset, **kw).config


def make_schedule(cfg: TrainConfig):
    from ..schedules import SCHEDULES

    if cfg.schedule not in SCHEDULES:
        raise ValueError(f"schedule={cfg.schedule!r}; choose one of {sorted(SCHEDULES)}.")
    cls = SCHEDULES[cfg.schedule]
    kw = {}
    if cfg.lambda_min is not None:
        kw["lambda_min"] = cfg.lambda_min
    if cfg.lambda_max is not None:
        kw["lambda_max"] = cfg.lambda_max
    return cls(**kw)


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up over ``warmup`` steps, then constant."""
    if cfg.warmup <= 0:
        return cfg.lr
    return cfg.lr * min(1.0, (step + 1) / cfg.warmup)


def load_checkpoint(path) -> dict:
    """Read a ``checkpoint.pt`` (ValueError naming the file if it is unreadable)."""
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to unpickle is a corrupt file
        raise ValueError(f"{path}: cannot read the training checkpoint ({type(e).__name__}: {e}).") from None
    if not isinstance(ckpt, dict) or ckpt.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: not a diffdensity training checkpoint (version {CHECKPOINT_VERSION}).")
    return ckpt


class _StopFlag:
    """Set by SIGINT/SIGTERM; the trainer checks it after every step."""

    def __init__(self):
        self.requested = False
        self.signum = None
        self._old = {}

    def install(self):
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.getsignal(sig)
            signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        self.signum = signum

    def restore(self):
        for sig, h in self._old.items():
            signal.signal(sig, h)
        self._old = {}


# ------------------------------------------------------------------------------------------------ trainer
class Trainer:
    """Train a :class:`~diffdensity.NetworkModel` on a dataset; see the module docstring.

    ``callbacks``: callables ``cb(trainer, step, logs)`` run after every optimisation step (on every process).
    """

    def __init__(self, config: TrainConfig, callbacks: tuple[Callable, ...] = (), accelerator=None):
        if isinstance(config, dict):
            config = TrainConfig.from_dict(config)
        config.validate()
        self.cfg = config
        self.callbacks = tuple(callbacks)
        self.out = Path(config.out)
        self._accelerator = accelerator

    # -------------------------------------------------------------- helpers
    def log(self, msg: str) -> None:
        if self.is_main:
            if self.cfg.progress and getattr(self, "_bar", None) is not None:
                self._bar.write(msg)
            else:
                print(msg, file=sys.stderr, flush=True)

    def _log_json(self, record: dict) -> None:
        if self.is_main:
            with open(self.out / "log.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")

    # -------------------------------------------------------------- set-up
    def setup(self) -> None:
        from accelerate import Accelerator

        from ..data import load_dataset
        from ..nets import build_net

        cfg = self.cfg
        if cfg.threads:
            torch.set_num_threads(int(cfg.threads))
        if self._accelerator is None and int(os.environ.get("WORLD_SIZE", "1")) == 1:
            _reset_single_process_accelerate_state()  # several runs in one process may differ in cpu/mixed precision
        self.acc = self._accelerator or Accelerator(cpu=cfg.cpu, mixed_precision=cfg.mixed_precision)
        self.is_main = self.acc.is_main_process
        self.world, self.rank = self.acc.num_processes, self.acc.process_index
        if cfg.batch_size % self.world:
            raise ValueError(f"batch_size={cfg.batch_size} must be divisible by the number of processes ({self.world}).")
        self.local_bs = cfg.batch_size // self.world
        self.device = self.acc.device

        self.ckpt_path = self.out / CHECKPOINT_NAME
        resume_state = None
        if cfg.resume and self.ckpt_path.exists():
            resume_state = load_checkpoint(self.ckpt_path)
            stored = resume_state["config"]
            mine = _jsonable_config(cfg)
            diff = [k for k in _STRUCTURAL if k in stored and _norm(stored[k]) != _norm(mine[k])]
            if diff:
                raise ValueError(
                    f"{self.ckpt_path}: cannot resume with different settings for {diff} "
                    f"(checkpoint: {[stored[k] for k in diff]}, now: {[mine[k] for k in diff]})."
                )
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        self.acc.wait_for_everyone()

        ds = load_dataset(cfg.dataset, root=cfg.root, **cfg.dataset_kwargs)
        self.ds = ds
        self.train_data = ds.train
        self.test_data = ds.test
        self.dim = math.prod(ds.model_shape)

        torch.manual_seed(cfg.seed)  # network initialisation: identical on every process
        self.net_config = make_net_config(cfg, ds)
        net = build_net(self.net_config)
        self.schedule = make_schedule(cfg)
        if cfg.importance:
            self.sampler = ImportanceSampler(self.schedule.lambda_min, self.schedule.lambda_max, cfg.is_bins,
                                             cfg.is_decay, cfg.is_uniform_mix)
        else:
            self.sampler = UniformLambda(self.schedule.lambda_min, self.schedule.lambda_max)
        opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
        optimizer = opt_cls(net.parameters(), lr=lr_at(cfg, 0), betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
        self.ema = EMA(net, cfg.ema_decay)
        self.data_gen = torch.Generator().manual_seed(cfg.seed * 1000 + 1)
        self.train_gen = torch.Generator().manual_seed(cfg.seed * 1000 + 2)
        self.step = 0
        self.epoch = 0
        self.pointer = 0
        self.perm = None
        self.elapsed = 0.0
        self.last_eval = None

        if resume_state is not None:
            net.load_state_dict(resume_state["net"], strict=True)
            optimizer.load_state_dict(resume_state["optimizer"])
            self.ema.load_state_dict(resume_state["ema"])
            self.sampler.load_state_dict(resume_state["sampler"])
            self.data_gen.set_state(resume_state["data_gen"])
            self.train_gen.set_state(resume_state["train_gen"])
            torch.set_rng_state(resume_state["torch_rng"])
            if torch.cuda.is_available() and resume_state.get("cuda_rng") is not None:
                torch.cuda.set_rng_state_all(resume_state["cuda_rng"])
            self.step = int(resume_state["step"])
            self.epoch = int(resume_state["epoch"])
            self.pointer = int(resume_state["pointer"])
            self.perm = resume_state["perm"]
            self.elapsed = float(resume_state.get("elapsed", 0.0))
            self.last_eval = resume_state.get("last_eval")
            self.log(f"resumed from {self.ckpt_path} at step {self.step}")

        self.net, self.optimizer = self.acc.prepare(net, optimizer)
        self.train_model = NetworkModel(self.net, self.schedule, cfg.parametrization, transform=ds.transform)
        self.ema_net = build_net(self.net_config).to(self.device)
        self.ema_net.requires_grad_(False)

    # -------------------------------------------------------------- data
    def _next_indices(self) -> torch.Tensor:
        n = self.train_data.shape[0]
        B = self.cfg.batch_size
        if B > n:
            raise ValueError(f"batch_size={B} is larger than the training set ({n} examples).")
        if self.perm is None or self.pointer + B > n:
            if self.perm is not None:
                self.epoch += 1
            self.perm = torch.randperm(n, generator=self.data_gen)
            self.pointer = 0
        idx = self.perm[self.pointer:self.pointer + B]
        self.pointer += B
        return idx

    def _batch(self):
        """One global batch's randomness (identical on every process) and this process's slice of it."""
        ds, B = self.ds, self.cfg.batch_size
        idx = self._next_indices()
        x = self.train_data[idx].to(torch.get_default_dtype())
        if ds.levels is not None and self.cfg.dequantize:
            x = x + torch.rand(x.shape, generator=self.train_gen, dtype=x.dtype)
        z = ds.transform.forward(x)
        u = low_discrepancy(B, self.train_gen)
        lam, q = self.sampler.sample(u)
        eps = torch.randn(z.shape, generator=self.train_gen, dtype=z.dtype)
        sl = slice(self.rank * self.local_bs, (self.rank + 1) * self.local_bs)
        dev = self.device
        return (z[sl].to(dev), lam[sl].to(dev, z.dtype), q[sl].to(dev, z.dtype), eps[sl].to(dev), lam)

    # -------------------------------------------------------------- one step
    def train_step(self) -> dict:
        cfg = self.cfg
        for g in self.optimizer.param_groups:
            g["lr"] = lr_at(cfg, self.step)
        self.net.train()
        z, lam, q, eps, lam_global = self._batch()
        with self.acc.autocast():
            loss_vec, unweighted = denoising_loss(self.train_model, z, lam, eps, cfg.weighting, density=q,
                                                  return_unweighted=True)
        loss = loss_vec.mean() / self.dim
        self.optimizer.zero_grad(set_to_none=True)
        self.acc.backward(loss)
        grad_norm = float("nan")
        if cfg.clip is not None:
            grad_norm = float(self.acc.clip_grad_norm_(self.net.parameters(), cfg.clip))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        values = self.acc.gather(unweighted.detach()).cpu() if self.world > 1 else unweighted.detach().cpu()
        self.sampler.update(lam_global, values)
        self.ema.update(self.acc.unwrap_model(self.net))
        loss_mean = float(self.acc.gather(loss_vec.detach()).mean()) if self.world > 1 else float(loss_vec.detach().mean())
        self.step += 1
        return {"loss": loss_mean, "grad_norm": grad_norm, "lr": lr_at(cfg, self.step - 1)}

    # -------------------------------------------------------------- evaluation, samples, checkpoints
    def ema_model(self) -> NetworkModel:
        self.ema.copy_to(self.ema_net)
        self.ema_net.eval()
        return NetworkModel(self.ema_net, self.schedule, self.cfg.parametrization, transform=self.ds.transform)

    def evaluate(self) -> dict:
        """Held-out bits/dim of the EMA model (cheap settings, ``cfg.eval_kwargs``)."""
        from ..likelihood import bits_per_dim

        cfg, ds = self.cfg, self.ds
        x = self.test_data[: cfg.eval_n].to(self.device)
        gen = torch.Generator(device=self.device).manual_seed(cfg.seed * 1000 + 3)
        t0 = time.time()
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            model = self.ema_model()
            if ds.levels is not None:
                bpd = bits_per_dim(model, x, levels=ds.levels, dequantize="uniform", generator=gen, **cfg.eval_kwargs)
            else:
                bpd = bits_per_dim(model, x.to(torch.get_default_dtype()), levels=None, dequantize="none",
                                   generator=gen, **cfg.eval_kwargs)
        value = float(bpd.mean())
        stderr = float(bpd.std() / math.sqrt(bpd.numel())) if bpd.numel() > 1 else float("nan")
        return {"test_bpd": value, "test_bpd_stderr": stderr, "test_bpd_median": float(bpd.median()),
                "eval_n": int(x.shape[0]),
                "eval_kwargs": dict(cfg.eval_kwargs), "eval_seconds": time.time() - t0}

    def sample_png(self) -> Path | None:
        from ..sampling import sample_ode
        from .visual import save_samples_png

        cfg, ds = self.cfg, self.ds
        gen = torch.Generator(device=self.device).manual_seed(cfg.seed * 1000 + 4)
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            model = self.ema_model()
            x_T = self.schedule.sample_prior((cfg.n_samples, *ds.model_shape), generator=gen,
                                             dtype=torch.get_default_dtype())
            z = sample_ode(model, x_T, steps=cfg.sample_steps, generator=gen, progress=False).x
        path = self.out / f"samples_{self.step:07d}.png"
        if save_samples_png(ds, z.cpu(), path):
            return path
        return None

    def checkpoint(self) -> None:
        """Write checkpoint.pt and the EMA model folder atomically (main process only)."""
        self.acc.wait_for_everyone()
        if self.is_main:
            state = {
                "version": CHECKPOINT_VERSION,
                "step": self.step,
                "epoch": self.epoch,
                "pointer": self.pointer,
                "perm": self.perm,
                "config": _jsonable_config(self.cfg),
                "net_config": self.net_config,
                "net": self.acc.unwrap_model(self.net).state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "ema": self.ema.state_dict(),
                "sampler": self.sampler.state_dict(),
                "data_gen": self.data_gen.get_state(),
                "train_gen": self.train_gen.get_state(),
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "elapsed": self.elapsed,
                "last_eval": self.last_eval,
            }
            atomic_write(self.ckpt_path, lambda tmp: torch.save(state, tmp))
            self.export()
        self.acc.wait_for_everyone()

    def export(self, path=None) -> Path:
        """Write the EMA model as a model folder (``model.safetensors`` + ``config.json``)."""
        model = self.ema_model()
        meta = {
            "dataset": self.cfg.dataset,
            "dataset_kwargs": self.cfg.dataset_kwargs,
            "levels": self.ds.levels,
            "training": {
                **_jsonable_config(self.cfg),
                "step": self.step,
                "wall_time_s": round(self.elapsed, 1),
                "processes": self.world,
                "device": str(self.device),
                "torch": torch.__version__,
                "weights": "ema" if self.cfg.ema_decay > 0 else "raw",
            },
        }
        if self.last_eval is not None:
            meta["metrics"] = self.last_eval
        return save(model, path or self.out, **meta)

    # -------------------------------------------------------------- the loop
    def run(self) -> Path:
        """Train until ``steps`` (or a signal); returns the run folder."""
        self.setup()
        cfg = self.cfg
        stop = _StopFlag()
        stop.install()
        self._bar = None
        try:
            if self.step >= cfg.steps:
                self.log(f"nothing to do: checkpoint is at step {self.step} >= steps={cfg.steps}")
                if self.is_main and not (self.out / WEIGHTS_NAME).exists():
                    self.export()
                return self.out
            if cfg.progress and self.is_main:
                from tqdm.auto import tqdm

                self._bar = tqdm(total=cfg.steps, initial=self.step, desc="train", dynamic_ncols=True)
            run_loss, run_n = 0.0, 0
            t_last = time.time()
            interrupted = False
            while self.step < cfg.steps:
                logs = self.train_step()
                now = time.time()
                self.elapsed += now - t_last
                t_last = now
                run_loss += logs["loss"]
                run_n += 1
                if not math.isfinite(logs["loss"]):
                    raise FloatingPointError(f"the training loss became {logs['loss']} at step {self.step}; "
                                             "lower the learning rate or enable gradient clipping.")
                if self._bar is not None:
                    self._bar.update(1)
                    self._bar.set_postfix(loss=f"{logs['loss'] / self.dim:.4f}", refresh=False)
                for cb in self.callbacks:
                    cb(self, self.step, logs)
                if cfg.log_every and self.step % cfg.log_every == 0:
                    mean = run_loss / run_n
                    self._log_json({"step": self.step, "loss": mean, "loss_per_dim": mean / self.dim, "lr": logs["lr"],
                                    "grad_norm": logs["grad_norm"], "time": round(self.elapsed, 3)})
                    run_loss, run_n = 0.0, 0
                done = self.step >= cfg.steps
                if cfg.eval_every and self.step % cfg.eval_every == 0 and not done:
                    self._do_eval()
                if cfg.sample_every and self.step % cfg.sample_every == 0 and self.is_main:
                    self.sample_png()
                t_last = time.time()
                if self._stop_requested(stop):
                    interrupted = True
                    break
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0 and not done:
                    self.checkpoint()
                    t_last = time.time()
            if self._bar is not None:
                self._bar.close()
                self._bar = None
            if interrupted:
                self.log(f"signal {stop.signum} received: stopping after step {self.step}, writing {self.ckpt_path}")
                self.checkpoint()
                return self.out
            if cfg.eval_final or cfg.eval_every:
                self._do_eval()
            if cfg.sample_every and self.is_main and self.step % cfg.sample_every:
                self.sample_png()
            self.checkpoint()
            self.log(f"done: {self.step} steps in {self.elapsed:.1f} s; model folder {self.out}")
            return self.out
        finally:
            stop.restore()
            if self._bar is not None:
                self._bar.close()

    def _do_eval(self) -> None:
        if self.is_main:
            res = self.evaluate()
            self.last_eval = {"step": self.step, **res}
            self._log_json({"step": self.step, **res})
            self.log(f"step {self.step}: held-out bits/dim {res['test_bpd']:.4f} ± {res['test_bpd_stderr']:.4f}")
        self.acc.wait_for_everyone()

    def _stop_requested(self, stop: _StopFlag) -> bool:
        if self.world == 1:
            return stop.requested
        flag = torch.tensor([1.0 if stop.requested else 0.0], device=self.device)
        return bool(self.acc.gather(flag).max() > 0)


def _reset_single_process_accelerate_state() -> None:
    try:
        from accelerate.state import AcceleratorState, GradientState

        AcceleratorState._reset_state()
        GradientState._reset_state()
    except (ImportError, AttributeError):  # private accelerate API; without it, settings must not change in-process
        pass


def _norm(v):
    if isinstance(v, tuple):
        return list(v)
    return v


def _jsonable_config(cfg: TrainConfig) -> dict:
    d = cfg.to_dict()
    if callable(d.get("weighting")):
        d["weighting"] = getattr(cfg.weighting, "__name__", "custom")
    return d


def train(config: TrainConfig | dict | None = None, callbacks=(), **kwargs) -> Path:
    """Train with a :class:`TrainConfig` (or its fields as keyword arguments); returns the run folder."""
    if config is None:
        config = TrainConfig(**kwargs)
    elif isinstance(config, dict):
        config = TrainConfig.from_dict({**config, **kwargs})
    elif kwargs:
        config = dataclasses.replace(config, **kwargs)
    return Trainer(config, callbacks=callbacks).run()
