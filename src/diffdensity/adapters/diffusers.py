"""diffusers networks as models: the λ ↔ timestep map, folder loading, the condition as keyword arguments."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor, nn

from .._checks import check_count
from ..schedules import VP, FlowMatching
from .core import _accepted_kwargs, _expand, _ForeignNetModel, classic_attention, required_kwargs

PREDICTION_TYPES = {"epsilon": "eps", "v_prediction": "v", "sample": "x0", "flow_prediction": "flow"}
INSTALL_HINT = "pip install diffusers  (or pip install 'diffdensity[diffusers]')"


# ------------------------------------------------------------------------------------------------ λ <-> timestep
def lambda_table(alphas_cumprod) -> Tensor:
    """λ_k = log(ᾱ_k / (1 − ᾱ_k)) for k = 0..T−1 in float64, strictly decreasing (ValueError otherwise)."""
    a = torch.as_tensor(alphas_cumprod, dtype=torch.float64).reshape(-1)
    if a.numel() < 2 or not ((a > 0) & (a <= 1)).all():
        raise ValueError("alphas_cumprod must hold at least 2 values in (0, 1]; is this a diffusion scheduler?")
    lam = torch.log(a) - torch.log1p(-a)
    finite = torch.isfinite(lam)
    if not bool((lam[finite][1:] < lam[finite][:-1]).all()):
        raise ValueError("the scheduler's log-SNR table log(ᾱ/(1−ᾱ)) is not strictly decreasing in the timestep.")
    return lam


def timestep_from_lambda(lam: Tensor, table: Tensor) -> Tensor:
    """The fractional timestep t(λ) by inverse linear interpolation of the decreasing table λ_k (module docstring).
    Exact at grid points: λ = λ_k gives t = k. λ must lie within [λ_{T−1}, λ_0] (finite entries)."""
    lam64 = lam.to(torch.float64)
    ks = torch.nonzero(torch.isfinite(table)).reshape(-1).to(table.device)
    asc = table[ks].flip(0).to(lam64.device)              # increasing λ
    kasc = ks.flip(0).to(lam64.device, torch.float64)     # the matching (decreasing) timesteps
    i = torch.searchsorted(asc, lam64.contiguous(), right=True).clamp(1, asc.numel() - 1)
    lo, hi = asc[i - 1], asc[i]
    w = (lam64 - lo) / (hi - lo)
    t = kasc[i - 1] + w * (kasc[i] - kasc[i - 1])
    return torch.where(lam64 == lo, kasc[i - 1], t)


# ------------------------------------------------------------------------------------------------ diffusers
def _require_diffusers():
    try:
        import diffusers  # noqa: F401
    except ImportError as e:
        raise ImportError(f"dd.from_diffusers needs the diffusers package: {INSTALL_HINT}") from e
    return diffusers


def _read_class_name(folder: Path, fname: str) -> str | None:
    f = folder / fname
    if not f.is_file():
        return None
    try:
        return json.loads(f.read_text()).get("_class_name")
    except (json.JSONDecodeError, AttributeError):
        return None


def _load_folder(folder: Path, scheduler):
    """(model, scheduler) from a pipeline folder (unet/ or transformer/ + scheduler/) or a model folder."""
    diffusers = _require_diffusers()
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder; pass a diffusers model instance or a save_pretrained folder.")
    model_dir = None
    for sub in ("unet", "transformer"):
        if _read_class_name(folder / sub, "config.json"):
            model_dir = folder / sub
            break
    if model_dir is None and _read_class_name(folder, "config.json"):
        model_dir = folder
    if model_dir is None:
        raise ValueError(f"{folder} holds no diffusers model: expected config.json with _class_name, or a pipeline "
                         f"folder with unet/ or transformer/ (written by save_pretrained).")
    cls_name = _read_class_name(model_dir, "config.json")
    assert cls_name is not None  # model_dir was chosen for having one
    cls = getattr(diffusers, cls_name, None)
    if cls is None:
        raise ValueError(f"{model_dir}/config.json names class {cls_name!r}, which this diffusers version lacks.")
    model = cls.from_pretrained(model_dir)
    if scheduler is None:
        for cand in (folder / "scheduler", model_dir.parent / "scheduler", folder):
            if _read_class_name(cand, "scheduler_config.json"):
                scheduler = cand
                break
    if isinstance(scheduler, (str, Path)):
        scheduler = _load_scheduler(Path(scheduler))
    return model, scheduler


def _load_scheduler(folder: Path):
    diffusers = _require_diffusers()
    if (folder / "scheduler" / "scheduler_config.json").is_file():
        folder = folder / "scheduler"
    name = _read_class_name(folder, "scheduler_config.json")
    cls = getattr(diffusers, name or "", None)
    if cls is None:
        raise ValueError(f"{folder} holds no diffusers scheduler (scheduler_config.json with a known _class_name).")
    return cls.from_pretrained(folder)


class DiffusersModel(_ForeignNetModel):
    """A diffusers network + scheduler as a model (see :func:`from_diffusers` and the module docstring)."""

    timestep_dtype = torch.float32  # float16 would round timesteps near 1000 to 0.5

    def __init__(self, net, scheduler, *, condition=None, uncondition=None, guidance_scale=None, lambda_range=None,
                 prediction_type=None, autocast=None):
        super().__init__()
        cfg = getattr(scheduler, "config", {}) or {}
        pred = prediction_type or cfg.get("prediction_type")
        self.num_train_timesteps = int(cfg.get("num_train_timesteps", 1000))
        if hasattr(scheduler, "alphas_cumprod"):
            self.kind = "discrete"
            pred = pred or "epsilon"
            # float64, not a buffer: .to(dtype) must not round it
            self.lam_table = lambda_table(scheduler.alphas_cumprod)
            finite = self.lam_table[torch.isfinite(self.lam_table)]
            trained = (float(finite.min()), float(finite.max()))
            schedule_cls = VP
        elif type(scheduler).__name__.startswith("FlowMatch"):
            self.kind = "flow"
            pred = pred or "flow_prediction"
            fresh = type(scheduler).from_config(scheduler.config) if hasattr(scheduler, "config") else scheduler
            sig = torch.as_tensor(fresh.sigmas, dtype=torch.float64)  # the training σ's (set_timesteps changes them)
            sig = sig[(sig > 0) & (sig < 1)]
            to_lam = FlowMatching().time_to_lam  # its time t = σ = sigmoid(−λ/2)
            trained = (float(to_lam(sig.max())), float(to_lam(sig.min())))
            schedule_cls = FlowMatching
        else:
            raise ValueError(f"scheduler {type(scheduler).__name__} is not supported: need a discrete-time scheduler "
                             "with alphas_cumprod (DDPM, DDIM, PNDM, Euler, DPM-Solver, ...) or "
                             "FlowMatchEulerDiscreteScheduler.")
        if pred not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type={pred!r}; supported: {sorted(PREDICTION_TYPES)}.")
        if (self.kind == "flow") != (pred == "flow_prediction"):
            raise ValueError(f"prediction_type={pred!r} does not fit {type(scheduler).__name__}.")
        self.trained_lambda_range = trained
        lo, hi = trained if lambda_range is None else (float(lambda_range[0]), float(lambda_range[1]))
        tol = 1e-9 * max(1.0, abs(trained[0]), abs(trained[1]))
        if lo < trained[0] - tol or hi > trained[1] + tol:
            raise ValueError(f"lambda_range=({lo:g}, {hi:g}) leaves the range the model was trained on "
                             f"[{trained[0]:g}, {trained[1]:g}] (from its scheduler); pass a range inside it.")
        self._accepts = _accepted_kwargs(net)
        self._required = required_kwargs(net)
        self._init_common(net, schedule_cls(lo, hi), PREDICTION_TYPES[pred], condition, uncondition,
                          guidance_scale, autocast)
        self.scheduler = scheduler
        self.in_channels = getattr(getattr(net, "config", None), "in_channels", None)

    def timestep(self, lam_b: Tensor) -> Tensor:
        """The (fractional) timestep the network is told at λ (module docstring), float64."""
        if self.kind == "flow":
            return self.num_train_timesteps * self.schedule.lam_to_time(lam_b.to(torch.float64))  # T·σ
        return timestep_from_lambda(lam_b, self.lam_table)

    def timestep_grid(self, steps: int) -> Tensor:
        """λ values (increasing, float64) of ``steps`` + 1 of the model's own training timesteps, evenly spaced from
        T − 1 (noise) to 0 (data) as DDIM's "linspace" spacing, within the schedule's range (its ends exactly):
        a preset for ``grid=`` of every sampler. A flow-matching scheduler's time is continuous: uniform in t."""
        check_count(steps, "steps")
        sch = self.schedule
        if self.kind == "flow":
            return sch.grid(int(steps), dtype=torch.float64, kind="t")
        ks = torch.linspace(self.num_train_timesteps - 1, 0, int(steps) + 1, dtype=torch.float64).round().long()
        lam = self.lam_table[ks].clamp(sch.lambda_min, sch.lambda_max)
        lam[0], lam[-1] = sch.lambda_min, sch.lambda_max
        return torch.unique_consecutive(lam)

    def _call(self, x: Tensor, t: Tensor, cond) -> Tensor:
        kw = _condition_kwargs(cond, x.shape[0], self._accepts)
        if self._required - set(kw):
            raise ValueError(f"this network is conditional: it needs {', '.join(sorted(self._required - set(kw)))}; "
                             "pass condition= (or prompt= for a pipeline; --prompt on the command line).")
        if "return_dict" in self._accepts:
            kw["return_dict"] = False
        # transformers take (hidden_states, encoder_hidden_states, ..., timestep=): pass the timestep by name
        out = self.net(x, timestep=t, **kw) if "timestep" in self._accepts else self.net(x, t, **kw)
        out = out[0] if isinstance(out, (tuple, list)) else getattr(out, "sample", out)
        if out.shape[1] == 2 * x.shape[1] and out.shape[2:] == x.shape[2:]:
            out = out[:, : x.shape[1]]  # learned-variance models (variance_type learned*): the mean part
        if out.shape != x.shape:
            raise ValueError(f"the network returned shape {tuple(out.shape)} for input {tuple(x.shape)}.")
        return out

    def extra_repr(self) -> str:
        return f"kind={self.kind}, parametrization={self.parametrization}, schedule={self.schedule}"


def _condition_kwargs(cond, B: int, accepts: set[str]) -> dict:
    """A condition as keyword arguments of the network: a dict is passed as is (tensors broadcast to the batch);
    an integer tensor or int is ``class_labels``; a floating tensor is ``encoder_hidden_states``."""
    if cond is None:
        return {}
    if isinstance(cond, dict):
        return {k: _expand(v, B, k) for k, v in cond.items()}
    if isinstance(cond, int):
        cond = torch.tensor(cond)
    if not isinstance(cond, Tensor):
        raise TypeError(f"condition must be a tensor, an int or a dict of network keyword arguments, "
                        f"got {type(cond).__name__}.")
    key = "encoder_hidden_states" if cond.is_floating_point() else "class_labels"
    if accepts and key not in accepts:
        raise ValueError(f"a {'floating' if key == 'encoder_hidden_states' else 'integer'} condition is passed as "
                         f"{key}, which this network does not take; pass condition as a dict of its keyword arguments.")
    return {key: _expand(cond, B, key)}


def from_diffusers(model, scheduler=None, *, prompt=None, negative_prompt=None, condition=None, guidance_scale=None,
                   lambda_range=None, uncondition=None, prediction_type=None, autocast=None, device=None,
                   attention: str = "classic", **load) -> DiffusersModel:
    """A diffusers model or pipeline as a diffdensity model (module docstring: which λ ↔ timestep map and why).

    ``model``: a diffusers network (``UNet2DModel``, ``UNet2DConditionModel``, a transformer) or any callable
    ``net(x, timestep, **cond)``; a local ``save_pretrained`` folder (a pipeline folder with ``unet/`` or
    ``transformer/`` and ``scheduler/``, or a model folder); a pipeline instance; or a hub id "org/name" (loaded by
    ``DiffusionPipeline.from_pretrained``; ``load``: ``local_files_only``, ``revision``, ``torch_dtype``,
    ``variant``, ``cache_dir``). With ``prompt`` (and a text pipeline) the model is a
    :class:`~diffdensity.adapters.pipelines.PipelineModel` of latents and ``guidance_scale`` is *diffusers'*
    (ε_u + g(ε_c − ε_u), the library's w = g − 1); for a bare network ``condition`` is class labels (int tensor),
    embeddings (float tensor → ``encoder_hidden_states``) or a dict of keyword arguments, and ``guidance_scale`` is
    the library's w: (1 + w) s(x|c) − w s(x | uncondition). ``lambda_range`` narrows the trained λ range.
    ``autocast``: "bf16"/"fp16" runs the network under autocast while x, the score and log p stay in x's dtype.
    ``attention``: "classic" (default: every derivative the library takes works) or "fused" (kept as loaded)."""
    kw = dict(lambda_range=lambda_range, prediction_type=prediction_type, autocast=autocast)
    if _is_pipeline_source(model, prompt, negative_prompt):
        from .pipelines import from_pipeline

        if condition is not None or uncondition is not None:
            raise ValueError("a pipeline is conditioned by prompt=/negative_prompt=, not condition=/uncondition=.")
        return from_pipeline(model, prompt, negative_prompt, guidance_scale, load=load, device=device,
                             attention=attention, scheduler=scheduler, **kw)
    if load:
        raise TypeError(f"{', '.join(sorted(load))}: options of loading a hub id, which {model!r} is not.")
    if isinstance(model, (str, Path)):
        model, scheduler = _load_folder(Path(model).expanduser(), scheduler)
    elif isinstance(scheduler, (str, Path)):
        _require_diffusers()
        scheduler = _load_scheduler(Path(scheduler).expanduser())
    if scheduler is None:
        raise ValueError("from_diffusers needs the scheduler the model was trained with (scheduler=... an instance "
                         "or a folder), or a pipeline folder that contains scheduler/.")
    if not callable(model):
        raise TypeError(f"model must be a diffusers model, a callable net(x, timestep) or a folder, "
                        f"got {type(model).__name__}.")
    if isinstance(model, nn.Module):
        model.eval().requires_grad_(False)
        classic_attention(model, attention)
    m = DiffusersModel(model, scheduler, condition=condition, uncondition=uncondition, guidance_scale=guidance_scale,
                       **kw)
    return m.to(device) if device is not None else m


def _is_pipeline_source(model, prompt, negative_prompt) -> bool:
    """A pipeline instance, a hub id, or a pipeline folder asked for a prompt."""
    from .pipelines import is_hub_id

    if hasattr(model, "components") and hasattr(model, "scheduler"):
        return True
    if is_hub_id(model):
        return True
    asked = prompt is not None or negative_prompt is not None
    if asked and not (isinstance(model, (str, Path)) and (Path(model).expanduser() / "model_index.json").is_file()):
        raise ValueError("prompt= needs a text-to-image pipeline (an instance, a pipeline folder with model_index.json"
                         " or a hub id); for a bare network pass condition= embeddings.")
    return asked
