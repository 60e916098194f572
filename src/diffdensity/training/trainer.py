"""The training loop: batches, optimizer, EMA, accelerate, checkpoints and evaluation hooks around an objective.

The loss itself comes from an :class:`~diffdensity.objectives.protocol.Objective` (by default the one
``TrainConfig.objective`` names in :data:`diffdensity.objectives.OBJECTIVES`), as NVlabs/edm hands its ``Loss``
to the loop. A run folder holds

* ``checkpoint.pt`` — everything needed to continue exactly (:mod:`~diffdensity.training.checkpoint`);
* ``model.safetensors`` + ``config.json`` — the EMA model as a model folder (:func:`diffdensity.load` reads it);
* ``log.jsonl`` — one JSON line per log / eval event; ``samples_<step>.png`` — sample grids;
* ``.lock`` while a trainer runs (:mod:`~diffdensity.training.runfolder`).

Randomness never comes from the global RNG except inside the network (dropout): the data order uses its own
generator, and the dequantization noise and the objective's noise come from a second one. Every process draws
the *global* batch's noise from identical generators and keeps its own rows (:class:`Shard`), so a run is (up
to floating-point reduction order) the same whatever the number of processes.

SIGINT / SIGTERM: the current step finishes, a checkpoint is written, and :meth:`Trainer.run` returns (a second
SIGINT interrupts at once). Resuming (``resume=True``) continues as if never interrupted.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

from ..data.transforms import to_model_space
from ..io import WEIGHTS_NAME
from ..objectives import OBJECTIVES
from ..objectives.protocol import Shard
from .checkpoint import CHECKPOINT_NAME, check_resumable, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .config import RESUME_FIXED, TrainConfig, lr_at
from .ema import EMA
from .runfolder import LOG_NAME, RunLock, prepare_run_folder, truncate_log
from .signals import StopFlag

__all__ = ["TrainConfig", "Trainer", "train", "CHECKPOINT_NAME", "load_checkpoint"]


class Trainer:
    """Train ``objective``'s network on the configured dataset; see the module docstring.

    ``objective``: an :class:`~diffdensity.objectives.protocol.Objective` (default: the one ``config.objective``
    names). ``callbacks``: callables ``cb(trainer, step, logs)`` run after every optimisation step (every process).
    Every setting is checked here, before any work starts.
    """

    # set by setup(): the network and optimizer (accelerate-wrapped), the run-folder lock, the epoch's permutation
    net: Any
    optimizer: Any
    ema_net: Any
    _lock: RunLock | None
    perm: torch.Tensor | None
    last_eval: dict | None

    def __init__(self, config: TrainConfig, callbacks: tuple[Callable, ...] = (), accelerator=None, objective=None):
        if isinstance(config, dict):
            config = TrainConfig.from_dict(config)
        config.validate()
        assert config.out is not None  # validate() requires it
        self.cfg, self.callbacks, self.out = config, tuple(callbacks), Path(config.out)
        if objective is None:
            objective = OBJECTIVES.load(config.objective).from_train_config(config)
        self.objective = objective
        for hook, every in (("evaluate", config.eval_every), ("sample", config.sample_every)):
            if every and not callable(getattr(self.objective, hook, None)):
                raise ValueError(f"{hook.replace('evaluate', 'eval')}_every={every} but the objective "
                                 f"{type(self.objective).__name__} has no {hook}() hook; set it to 0.")
        self._accelerator, self._bar, self._lock, self.is_main = accelerator, None, None, True

    # -------------------------------------------------------------- messages
    def log(self, msg: str) -> None:
        if self.is_main:
            if self._bar is not None:
                self._bar.write(msg)
            else:
                print(msg, file=sys.stderr, flush=True)

    def _log_json(self, record: dict) -> None:
        if self.is_main:
            with open(self.out / LOG_NAME, "a") as f:
                f.write(json.dumps(record) + "\n")

    # -------------------------------------------------------------- set-up
    def setup(self) -> None:
        """Accelerate, the run folder (lock, protection), data, network, optimizer, EMA; resume state if asked."""
        self._init_accelerate()
        self._claim_run_folder()
        state = self._read_resume_state()
        self._load_data()
        self._build(init=state is None)  # a resumed run takes its weights from the checkpoint, not init_from
        if state is not None:
            self._restore(state)
        self.net, self.optimizer = self.acc.prepare(self.net, self.optimizer)
        self.ema_net = self.ema_net.to(self.device)

    def _init_accelerate(self) -> None:
        from accelerate import Accelerator

        cfg = self.cfg
        if cfg.threads:
            torch.set_num_threads(int(cfg.threads))
        if self._accelerator is None and int(os.environ.get("WORLD_SIZE", "1")) == 1:
            _reset_single_process_accelerate_state()  # several runs in one process may differ in cpu/mixed precision
        self.acc = self._accelerator or Accelerator(cpu=cfg.cpu, mixed_precision=cfg.mixed_precision)
        self.is_main = self.acc.is_main_process
        self.world, self.rank, self.device = self.acc.num_processes, self.acc.process_index, self.acc.device
        if cfg.mixed_precision == "fp16" and self.device.type == "cpu":
            raise ValueError("mixed_precision='fp16' needs a GPU: on the CPU accelerate would silently train in "
                             "float32. Use --mixed-precision bf16 (CPU autocast) or no.")
        if cfg.batch_size % self.world:
            raise ValueError(f"batch_size={cfg.batch_size} must be divisible by the number of processes ({self.world}).")
        self.local_bs = cfg.batch_size // self.world

    def _claim_run_folder(self) -> None:
        """Main process: create OUT, refuse an earlier run, take the lock, clean leftovers; errors reach every rank."""
        error = None
        if self.is_main:
            try:
                self._lock = prepare_run_folder(self.out, self.cfg.resume, self.cfg.overwrite)
            except ValueError as e:
                error = str(e)
        if self.world > 1:
            from accelerate.utils import broadcast_object_list

            error = broadcast_object_list([error])[0]
        if error:
            raise ValueError(error)

    def _read_resume_state(self) -> dict | None:
        self.ckpt_path = self.out / CHECKPOINT_NAME
        if not (self.cfg.resume and self.ckpt_path.exists()):
            if self.cfg.resume and (self.out / WEIGHTS_NAME).exists():
                raise ValueError(f"{self.out} holds a trained model ({WEIGHTS_NAME}) but no {CHECKPOINT_NAME} to "
                                 "continue from; pass --overwrite to start over there, or another --out.")
            if self.cfg.resume and self.is_main:
                truncate_log(self.out, 0)  # killed before its first checkpoint: nothing of it is kept
            return None
        state = check_resumable(load_checkpoint(self.ckpt_path), self.ckpt_path)
        stored, mine = state["config"], _jsonable_config(self.cfg)
        diff = [k for k in RESUME_FIXED if k in stored and _norm(stored[k]) != _norm(mine[k])]
        if diff:
            raise ValueError(f"{self.ckpt_path}: cannot resume with different settings for {diff} "
                             f"(checkpoint: {[stored[k] for k in diff]}, now: {[mine[k] for k in diff]}).")
        if self.is_main:
            truncate_log(self.out, int(state["step"]))
        return state

    def _load_data(self) -> None:
        from ..data import load_dataset

        ds = load_dataset(self.cfg.dataset, root=self.cfg.root, **self.cfg.dataset_kwargs)
        if self.cfg.batch_size > ds.train.shape[0]:
            raise ValueError(f"batch_size={self.cfg.batch_size} is larger than the training set "
                             f"({ds.train.shape[0]} examples).")
        self.ds, self.dim = ds, math.prod(ds.model_shape)

    def _build(self, init: bool = True) -> None:
        cfg = self.cfg
        torch.manual_seed(cfg.seed)  # network initialisation: identical on every process
        self.net = self.objective.setup(self.ds)
        if cfg.init_from and init:
            _init_weights(self.net, cfg.init_from)
        opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
        self.optimizer = opt_cls(self.net.parameters(), lr=lr_at(cfg, 0), betas=tuple(cfg.betas),
                                 weight_decay=cfg.weight_decay)
        self.ema = EMA(self.net, cfg.ema_decay)
        self.ema_net = copy.deepcopy(self.net).requires_grad_(False)
        self.data_gen = torch.Generator().manual_seed(cfg.seed * 1000 + 1)
        self.train_gen = torch.Generator().manual_seed(cfg.seed * 1000 + 2)
        self.step, self.epoch, self.pointer, self.perm = 0, 0, 0, None
        self.elapsed, self.last_eval = 0.0, None

    def _restore(self, state: dict) -> None:
        self.net.load_state_dict(state["net"], strict=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.ema.load_state_dict(state["ema"])
        self.objective.load_state_dict(state["objective"])
        self.data_gen.set_state(state["data_gen"])
        self.train_gen.set_state(state["train_gen"])
        set_rng_state(state)
        self.step, self.epoch, self.pointer = int(state["step"]), int(state["epoch"]), int(state["pointer"])
        self.perm, self.elapsed = state["perm"], float(state.get("elapsed", 0.0))
        self.last_eval = state.get("last_eval")
        self.log(f"resumed from {self.ckpt_path} at step {self.step}")

    def state_dict(self) -> dict:
        """Everything :meth:`_restore` needs (the checkpoint's content)."""
        return {"step": self.step, "epoch": self.epoch, "pointer": self.pointer, "perm": self.perm,
                "config": _jsonable_config(self.cfg), "net_config": getattr(self.ema_net, "config", None),
                "net": self.acc.unwrap_model(self.net).state_dict(), "optimizer": self.optimizer.state_dict(),
                "ema": self.ema.state_dict(), "objective": self.objective.state_dict(),
                "data_gen": self.data_gen.get_state(), "train_gen": self.train_gen.get_state(), **rng_state(),
                "elapsed": self.elapsed, "last_eval": self.last_eval}

    # -------------------------------------------------------------- data
    def _next_indices(self) -> torch.Tensor:
        n, B = self.ds.train.shape[0], self.cfg.batch_size
        if self.perm is None or self.pointer + B > n:
            if self.perm is not None:
                self.epoch += 1
            self.perm = torch.randperm(n, generator=self.data_gen)
            self.pointer = 0
        idx = self.perm[self.pointer:self.pointer + B]
        self.pointer += B
        return idx

    def _gather(self, t: torch.Tensor) -> torch.Tensor:
        return self.acc.gather(t) if self.world > 1 else t

    def _batch(self) -> tuple[torch.Tensor, Shard]:
        """The global batch in model space (identical on every process), this process's rows, and its Shard."""
        ds = self.ds
        x = to_model_space(ds.train[self._next_indices()], ds.transform, ds.levels is not None and self.cfg.dequantize,
                           self.train_gen, dtype=torch.get_default_dtype())
        shard = Shard(self.train_gen, self.cfg.batch_size, slice(self.rank * self.local_bs, (self.rank + 1) * self.local_bs),
                      self.device, self._gather)
        return shard.local(x), shard

    # -------------------------------------------------------------- one step
    def train_step(self) -> dict:
        cfg = self.cfg
        for g in self.optimizer.param_groups:
            g["lr"] = lr_at(cfg, self.step)
        self.net.train()
        x0, shard = self._batch()
        with self.acc.autocast():
            loss_vec = self.objective(self.net, x0, shard)
        self.optimizer.zero_grad(set_to_none=True)
        self.acc.backward(loss_vec.mean() / self.dim)
        grad_norm = float("nan")
        if cfg.clip is not None:
            grad_norm = float(self.acc.clip_grad_norm_(self.net.parameters(), cfg.clip))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.ema.update(self.acc.unwrap_model(self.net))
        self.step += 1
        return {"loss": float(shard.gather(loss_vec).mean()), "grad_norm": grad_norm, "lr": lr_at(cfg, self.step - 1)}

    # -------------------------------------------------------------- the EMA network and the objective's hooks
    def _synced_ema_net(self):
        self.ema.copy_to(self.ema_net)
        return self.ema_net.eval()

    def ema_model(self):
        """The EMA network as the objective's model (a NetworkModel for the ε-objective)."""
        return self.objective.model(self._synced_ema_net())

    def evaluate(self) -> dict:
        """The objective's held-out metrics of the EMA network on the first ``eval_n`` test examples."""
        cfg = self.cfg
        x = self.ds.test[: cfg.eval_n].to(self.device)
        gen = torch.Generator(device=self.device).manual_seed(cfg.seed * 1000 + 3)
        t0 = time.time()
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            res = self.objective.evaluate(self._synced_ema_net(), x, gen)
        return {**res, "eval_n": int(x.shape[0]), "eval_seconds": time.time() - t0}

    def sample_png(self) -> Path | None:
        from .visual import save_samples_png

        cfg = self.cfg
        gen = torch.Generator(device=self.device).manual_seed(cfg.seed * 1000 + 4)
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            z = self.objective.sample(self._synced_ema_net(), cfg.n_samples, cfg.sample_steps, gen)
        path = self.out / f"samples_{self.step:07d}.png"
        return path if save_samples_png(self.ds, z.cpu(), path) else None

    def export(self, path=None) -> Path | None:
        """Write the EMA model folder through the objective's ``export`` hook (None if it has none)."""
        if not callable(getattr(self.objective, "export", None)):
            return None
        training = {**_jsonable_config(self.cfg), "step": self.step, "wall_time_s": round(self.elapsed, 1),
                    "processes": self.world, "device": str(self.device), "torch": torch.__version__,
                    "weights": "ema" if self.cfg.ema_decay > 0 else "raw"}
        meta = {"dataset": self.cfg.dataset, "dataset_kwargs": self.cfg.dataset_kwargs, "levels": self.ds.levels,
                "training": training, **({"metrics": self.last_eval} if self.last_eval is not None else {})}
        return self.objective.export(self._synced_ema_net(), Path(path or self.out), meta)

    def checkpoint(self) -> None:
        """Write checkpoint.pt and the EMA model folder atomically (main process only)."""
        self.acc.wait_for_everyone()
        if self.is_main:
            save_checkpoint(self.ckpt_path, self.state_dict())
            self.export()
        self.acc.wait_for_everyone()

    # -------------------------------------------------------------- the loop
    def run(self) -> Path:
        """Train until ``steps`` (or a signal); returns the run folder."""
        try:
            self.setup()
            assert self.cfg.steps is not None  # validate() requires it
            if self.step >= self.cfg.steps:
                self.log(f"nothing to do: checkpoint is at step {self.step} >= steps={self.cfg.steps}")
                if self.is_main:
                    self.export()
            else:
                with StopFlag() as stop:
                    self._finish(self._loop(stop), stop)
            self._end_distributed()
            return self.out
        finally:
            self._close_bar()
            if self._lock is not None:
                self._lock.release()

    def _loop(self, stop: StopFlag) -> bool:
        """Optimisation steps until ``steps``; True if a signal stopped it."""
        cfg = self.cfg
        assert cfg.steps is not None  # validate() requires it
        if cfg.progress and self.is_main:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=cfg.steps, initial=self.step, desc="train", dynamic_ncols=True)
        self._window = [0.0, 0]  # loss sum and count since the last log record
        while self.step < cfg.steps:
            t0 = time.time()
            logs = self.train_step()
            self.elapsed += time.time() - t0
            self._after_step(logs)
            if self._stop_requested(stop):
                return True
            if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0 and self.step < cfg.steps:
                self.checkpoint()
        return False

    def _after_step(self, logs: dict) -> None:
        cfg = self.cfg
        assert cfg.steps is not None  # validate() requires it
        if not math.isfinite(logs["loss"]):
            raise FloatingPointError(f"the training loss became {logs['loss']} at step {self.step}; "
                                     "lower the learning rate or enable gradient clipping.")
        self._window = [self._window[0] + logs["loss"], self._window[1] + 1]
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(loss=f"{logs['loss'] / self.dim:.4f}", refresh=False)
        for cb in self.callbacks:
            cb(self, self.step, logs)
        if cfg.log_every and self.step % cfg.log_every == 0:
            mean = self._window[0] / self._window[1]
            self._log_json({"step": self.step, "loss": mean, "loss_per_dim": mean / self.dim, "lr": logs["lr"],
                            "grad_norm": logs["grad_norm"], "time": round(self.elapsed, 3)})
            self._window = [0.0, 0]
        if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < cfg.steps:
            self._do_eval()
        if cfg.sample_every and self.step % cfg.sample_every == 0 and self.is_main:
            self.sample_png()

    def _finish(self, interrupted: bool, stop: StopFlag) -> None:
        cfg = self.cfg
        self._close_bar()
        if interrupted:
            self.log(f"signal {stop.signum} received: stopping after step {self.step}, writing {self.ckpt_path}")
            self.checkpoint()
            return
        evaluates = (cfg.eval_final or cfg.eval_every) and callable(getattr(self.objective, "evaluate", None))
        if evaluates:  # the trained state first: an interrupted final evaluation never loses the run
            self.checkpoint()
            self._do_eval()
        if cfg.sample_every and self.is_main and self.step % cfg.sample_every:
            self.sample_png()
        self.checkpoint()
        self.log(f"done: {self.step} steps in {self.elapsed:.1f} s; run folder {self.out}")

    def _do_eval(self) -> None:
        if self.is_main:
            res = self.evaluate()
            self.last_eval = {"step": self.step, **res}
            self._log_json(self.last_eval)
            shown = ", ".join(f"{k} {v:.4f}" for k, v in res.items() if isinstance(v, float) and k != "eval_seconds")
            self.log(f"step {self.step}: {shown}")
        self.acc.wait_for_everyone()

    def _stop_requested(self, stop: StopFlag) -> bool:
        if self.world == 1:
            return stop.requested
        flag = torch.tensor([1.0 if stop.requested else 0.0], device=self.device)
        return bool(self.acc.gather(flag).max() > 0)

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _end_distributed(self) -> None:
        """Tear the process group down on every rank together (after the last barrier), not at interpreter exit:
        left to exit-time destructors, gloo could abort a rank ("terminate called without an active exception")."""
        if self.world > 1 and self._accelerator is None:
            self.acc.wait_for_everyone()
            self.acc.end_training()


def _init_weights(net, source: str) -> None:
    """Load a trained model's network weights (``dd.load(source)``) into ``net`` (fine-tuning): same architecture."""
    from ..io import load

    try:
        other = getattr(load(source), "net", None)
    except (OSError, ValueError) as e:
        raise ValueError(f"init_from={source!r}: {e}") from None
    if other is None or getattr(other, "config", None) != getattr(net, "config", None):
        raise ValueError(f"init_from={source!r}: its network {getattr(other, 'config', None)} is not this run's "
                         f"{getattr(net, 'config', None)}; give the same network options (or none for a new network).")
    net.load_state_dict(other.state_dict())


def _reset_single_process_accelerate_state() -> None:
    try:
        from accelerate.state import AcceleratorState, GradientState

        AcceleratorState._reset_state()
        GradientState._reset_state()
    except (ImportError, AttributeError):  # private accelerate API; without it, settings must not change in-process
        pass


def _norm(v):
    return list(v) if isinstance(v, tuple) else v


def _jsonable_config(cfg: TrainConfig) -> dict:
    d = cfg.to_dict()
    if callable(d.get("weighting")):
        d["weighting"] = getattr(cfg.weighting, "__name__", "custom")
    return d


def train(config: TrainConfig | dict | None = None, callbacks=(), objective=None, **kwargs) -> Path:
    """Train with a :class:`TrainConfig` (or its fields as keyword arguments); returns the run folder.

    ``objective``: an :class:`~diffdensity.objectives.protocol.Objective` instead of the one ``config.objective`` names
    (a string is the config field: ``train(objective="distributional", ...)``).
    """
    if isinstance(objective, str):
        kwargs["objective"], objective = objective, None
    if config is None:
        config = TrainConfig(**kwargs)
    elif isinstance(config, dict):
        config = TrainConfig.from_dict({**config, **kwargs})
    elif kwargs:
        config = dataclasses.replace(config, **kwargs)
    return Trainer(config, callbacks=callbacks, objective=objective).run()
