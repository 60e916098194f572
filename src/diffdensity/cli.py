"""The ``diffdensity`` command line: it only parses options and calls the library.

Sub-commands are registered on the click group :func:`main`; ``diffdensity train``'s options are generated from
:class:`diffdensity.training.TrainConfig`'s fields (one each). Every error becomes one line and exit status 1
(``--debug`` or ``DIFFDENSITY_DEBUG=1`` for the traceback).
"""
from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path

import click

__all__ = ["main", "train_options", "options_to_config_dict"]


class _Group(click.Group):
    """The ``diffdensity`` group: every library error of every sub-command becomes one line and exit status 1;
    ``--debug`` (or ``DIFFDENSITY_DEBUG=1``) shows the traceback instead."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            raise click.exceptions.Abort() from None
        except Exception as e:  # noqa: BLE001 - the one place where errors become messages
            if ctx.params.get("debug"):
                raise
            raise click.ClickException(_one_line(e)) from None


def _one_line(e: BaseException) -> str:
    msg = " ".join(str(e).split()) or "(no message)"
    if isinstance(e, (ValueError, TypeError)):
        return msg
    return f"{type(e).__name__}: {msg} (run with --debug for the traceback)"


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option("--debug", is_flag=True, envvar="DIFFDENSITY_DEBUG", help="show Python tracebacks of errors")
@click.version_option(package_name="diffdensity")
def main(debug):
    """diffdensity: density in diffusion models (training, sampling, likelihood)."""


def _parse_kv(ctx, param, values):
    """KEY=VALUE pairs (VALUE parsed as JSON when possible) -> dict."""
    out = {}
    for item in values:
        if "=" not in item:
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE", ctx=ctx, param=param)
        k, v = item.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def _csv(kind):
    """A click callback: comma-separated values of ``kind`` -> tuple."""
    def parse(ctx, param, value):
        try:
            return tuple(kind(v) for v in str(value).split(",") if v.strip())
        except ValueError:
            raise click.BadParameter(f"{value!r}: expected comma-separated numbers", ctx=ctx, param=param) from None
    return parse


# ------------------------------------------------------------------------------------ train: options from TrainConfig
def _field_default(f):
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def _base_type(hint):
    """int | None -> int; other annotations unchanged."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def _field_options(f, hint) -> list:
    """The click options of one TrainConfig field (several when the field is a dict with aliases)."""
    meta, default = f.metadata, _field_default(f)
    opt = meta.get("option", "--" + f.name.replace("_", "-"))
    kind, kw = _base_type(hint), {"help": meta.get("help")}
    if kind is bool:
        if default:
            return [click.option(f"{opt}/--no-{opt[2:]}", f.name, default=True, **kw)]
        return [click.option(opt, f.name, is_flag=True, default=False, **kw)]
    if meta.get("kv"):
        opts = [click.option(opt, f.name, multiple=True, callback=_parse_kv, metavar="KEY=VALUE", **kw)]
        for key, (alias, typ, text) in meta.get("aliases", {}).items():
            opts.append(click.option(alias, _alias_param(alias), type=typ, default=default.get(key), help=text))
        return opts
    if meta.get("choices"):
        return [click.option(opt, f.name, type=click.Choice(meta["choices"]), default=default, **kw)]
    if kind is tuple:
        return [click.option(opt, f.name, type=float, nargs=len(default), default=default, **kw)]
    return [click.option(opt, f.name, type=kind if kind in (int, float) else str, default=default, **kw)]


def _alias_param(option: str) -> str:
    return option.lstrip("-").replace("-", "_")


def _train_fields():
    from .training import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    return [(f, hints[f.name]) for f in dataclasses.fields(TrainConfig)]


def train_options(command):
    """Decorate ``command`` with one option per TrainConfig field (generated, so they cannot drift apart)."""
    for f, hint in reversed(_train_fields()):
        for option in reversed(_field_options(f, hint)):
            command = option(command)
    return command


def _alias_fields() -> dict:
    """click parameter name -> (TrainConfig field, key) of the options that fill one key of a dict field."""
    return {_alias_param(alias): (f.name, key) for f, _ in _train_fields()
            for key, (alias, _, _) in f.metadata.get("aliases", {}).items()}


def options_to_config_dict(ctx, opts: dict) -> dict:
    """Parsed ``train`` options -> TrainConfig fields (dict options merged with their aliases, 0 -> None where
    the field says so); with ``--resume``, options not given on the command line come from the checkpoint."""
    from .training import load_checkpoint
    from .training.checkpoint import CHECKPOINT_NAME
    from .training.config import RUN_CONTROL

    aliases, src = _alias_fields(), click.core.ParameterSource
    given = {aliases.get(p, (p,))[0] for p in opts if ctx.get_parameter_source(p) == src.COMMANDLINE}
    d = {k: v for k, v in opts.items() if k not in aliases}
    for f, _ in _train_fields():
        if f.metadata.get("aliases"):
            d[f.name] = _merge_aliases(ctx, f, opts, aliases)
        if f.metadata.get("zero_is_none") and d[f.name] == 0:
            d[f.name] = None
    if d["resume"] and d["out"] is not None and (Path(d["out"]) / CHECKPOINT_NAME).exists():
        stored = load_checkpoint(Path(d["out"]) / CHECKPOINT_NAME)["config"]
        d = {k: (v if k in given or k in RUN_CONTROL else stored.get(k, v)) for k, v in d.items()}
    elif d["resume"]:
        click.echo(f"--resume: no checkpoint in {d['out']} yet, starting a new run", err=True)
    if ctx.meta.get("train_device") == "cpu":
        d["cpu"] = True
    return d


def _merge_aliases(ctx, f, opts, aliases) -> dict:
    """A dict field from its field default, its alias options and its KEY=VALUE option (in that order)."""
    value = dict(_field_default(f))
    for param, (name, key) in aliases.items():
        if name == f.name:
            value[key] = opts[param]
    if value.get("solver") == "dopri5" and ctx.get_parameter_source("eval_steps") != click.core.ParameterSource.COMMANDLINE:
        value.pop("steps", None)  # adaptive: the default step count does not apply
    return {**value, **opts[f.name]}


def _train_device(command):
    """--device for training: cpu (= --cpu) or cuda (accelerate's GPU, one per process under `accelerate launch`)."""
    def remember(ctx, param, value):
        if value is None:
            return
        from .io import _check_device

        try:
            dev = _check_device(value)
        except ValueError as e:
            raise click.BadParameter(str(e)) from None
        if dev.type not in ("cpu", "cuda"):
            raise click.BadParameter(f"{value!r}: training runs on cpu or cuda.")
        if dev.index is not None:
            raise click.BadParameter(f"{value!r}: accelerate chooses the GPU; pick one with CUDA_VISIBLE_DEVICES="
                                     f"{dev.index} (or `accelerate launch --gpu_ids {dev.index}`) and pass --device cuda.")
        ctx.meta["train_device"] = dev.type

    return click.option("--device", default=None, expose_value=False, callback=remember,
                        help="cpu | cuda (default: a GPU when present; cpu is the same as --cpu)")(command)


@main.command("train")
@train_options
@_train_device
@click.pass_context
def train_cmd(ctx, **opts):
    """Train a diffusion model into the run folder OUT (load the result with dd.load(OUT)); --steps and --out are
    required. OUT must not hold an earlier run unless --resume (continue it) or --overwrite (start over).

    Multi-process / multi-GPU: `accelerate launch [--num_processes N] [--cpu] -m diffdensity.cli train ...`.

    Example: diffdensity train --dataset digits --net unet --preset digits --steps 2000 --out runs/digits
    """
    from .training import TrainConfig, train

    out = train(TrainConfig.from_dict(options_to_config_dict(ctx, opts)))
    click.echo(str(out))



# ------------------------------------------------------------------------------------ sampling and likelihood
def _model_shape(model):
    t = getattr(model, "transform", None)
    if t is not None and getattr(t, "model_shape", None):
        return tuple(t.model_shape)
    cfg = getattr(model, "config", {}) or {}
    net = cfg.get("net", {})
    if net.get("type") == "MLP":
        return (int(net["dim"]),)
    raise click.UsageError("cannot tell the sample shape of this model (no data transform in its config).")


@main.command("models")
def models_cmd():
    """List the shipped pretrained models (load one with dd.load(NAME); its card: MODEL/README.md).

    Example: diffdensity models
    """
    from . import list_models

    for name in list_models():
        click.echo(name)


ODE_SOLVERS = ("euler", "heun", "ab2", "dopri5")  # integrate.ODE_SOLVERS, not imported: the CLI starts without torch
SAMPLE_METHODS = ("ode", "sde", "hd", "prior-guided", "density-guided", "stochastic-density-guided",
                  "distributional", "ddim")
_DEFAULT_STEPS = {"ode": 256, "sde": 1024, "hd": 1024, "prior-guided": 64, "density-guided": 64,
                  "stochastic-density-guided": 128, "distributional": 4, "ddim": 4}


def _model_arg(f):
    """MODEL as a positional argument or --model (a shipped name, a saved run or a model folder)."""
    f = click.option("--model", "model_opt", default=None, help="a shipped model name, a saved run or a model folder")(f)
    return click.argument("model", required=False, metavar="[MODEL]")(f)


def _resolve_model(model, model_opt):
    if model and model_opt and model != model_opt:
        raise click.UsageError(f"two models given: {model!r} and --model {model_opt!r}.")
    name = model or model_opt
    if not name:
        raise click.UsageError("which model? pass MODEL or --model (`diffdensity models` lists the shipped ones).")
    return name


def _fresh_out(out, overwrite: bool) -> Path:
    """An output folder that holds no earlier results (refused unless --overwrite)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; pass a folder.")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ValueError(f"--out {out} already holds results; pass another folder or --overwrite.")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _call(fn, *args, **kw):
    """fn(*args, **kw) keeping only the keywords fn accepts (samplers differ in their options)."""
    import inspect

    params = inspect.signature(fn).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        kw = {k: v for k, v in kw.items() if k in params}
    return fn(*args, **kw)


def run_sampler(m, method, x_T, *, steps, generator, track_logp=True, tracker="corrected", solver="euler",
                divergence="hutchinson", threshold=4.0, first="ode", q=0.5, noise="late", churn=None):
    """One sampler of the library by its CLI name -> Samples (used by `sample` and the demo)."""
    import diffdensity as dd

    common = dict(generator=generator, track_logp=track_logp, progress=None)
    if method == "ode":
        return _call(dd.sample_ode, m, x_T, steps=steps, solver=solver, divergence=divergence, **common)
    if method == "sde":
        return _call(dd.sample_sde, m, x_T, steps=steps, tracker=tracker, **common)
    if method == "hd":
        return _call(dd.sample_hd, m, x_T, threshold, steps=steps, first=first, divergence=divergence, **common)
    if method == "prior-guided":
        return _call(dd.sample_prior_guided, m, x_T, q, steps=steps, divergence=divergence, **common)
    if method == "density-guided":
        return _call(dd.sample_density_guided, m, x_T, q, steps=steps, divergence=divergence, **common)
    if method == "stochastic-density-guided":
        return _call(dd.sample_stochastic_density_guided, m, x_T, q, noise, steps=steps, divergence=divergence, **common)
    if method == "distributional":
        return _call(dd.sample_distributional, m, x_T, steps=steps, churn=1.0 if churn is None else churn, **common)
    if method == "ddim":
        return _call(dd.sample_ddim, m, x_T, steps=steps, churn=0.0 if churn is None else churn, **common)
    raise ValueError(f"method={method!r}; choose one of {SAMPLE_METHODS}.")


@main.command("sample")
@_model_arg
@click.option("--method", type=click.Choice(SAMPLE_METHODS), default=None, help="sampler (default: sde)")
@click.option("--sampler", type=click.Choice(["sde", "ode"]), default=None, hidden=True, help="old name of --method")
@click.option("--n", "n", type=click.IntRange(min=1), default=64, help="number of samples")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="steps (default: the method's usual count)")
@click.option("--track-logp/--no-track-logp", "track", default=True, help="track log p along the sampler")
@click.option("--no-track", "track", flag_value=False, hidden=True)
@click.option("--tracker", type=click.Choice(["corrected", "em"]), default="corrected", help="SDE log-density tracker")
@click.option("--solver", type=click.Choice(ODE_SOLVERS), default="euler", help="ODE solver")
@click.option("--divergence", type=click.Choice(["hutchinson", "exact"]), default="hutchinson",
              help="Δ log p estimator where a sampler needs it")
@click.option("--threshold", type=float, default=4.0, help="hd: the λ where the high-density ODE takes over")
@click.option("--first", type=click.Choice(["ode", "sde"]), default="ode", help="hd: the sampler before the threshold")
@click.option("--q", type=float, default=0.6, help="guided samplers: the quantile (higher q, higher log p)")
@click.option("--noise", default="late", help="stochastic-density-guided: noise window preset (early | late)")
@click.option("--churn", type=float, default=None, help="distributional / ddim: 0 = DDIM, 1 = DDPM posterior")
@click.option("--seed", type=int, default=0)
@click.option("--device", default="cpu", help="cpu | cuda | cuda:N")
@click.option("--out", type=click.Path(), default="samples", help="output folder (must be new or empty)")
@click.option("--overwrite", is_flag=True, help="write into an --out that already holds results")
def sample_cmd(model, model_opt, method, sampler, n, steps, track, tracker, solver, divergence, threshold, first, q,
               noise, churn, seed, device, out, overwrite):
    """Sample a model with any of the library's samplers; writes samples.npz (model space `x`, data units `x_data`,
    `logp`, `nfe`), samples.png (a grid, highest log p first, each labelled) and summary.json.

    Example: diffdensity sample --model digits8 --method hd --threshold 4 --n 16 --out hd_samples
    """
    import numpy as np
    import torch

    from . import __version__, load
    from .plots import sample_grid

    model = _resolve_model(model, model_opt)
    method = method or sampler or "sde"
    steps = steps or _DEFAULT_STEPS[method]
    out = _fresh_out(out, overwrite)
    m = load(model, device=device)
    g = torch.Generator(device=device).manual_seed(seed)
    x_T = m.schedule.sample_prior((n, *_model_shape(m)), generator=g)
    smp = run_sampler(m, method, x_T, steps=steps, generator=g, track_logp=track, tracker=tracker, solver=solver,
                      divergence=divergence, threshold=threshold, first=first, q=q, noise=noise, churn=churn)
    x = smp.x.detach().cpu()
    logp = None if smp.logp is None else smp.logp.detach().cpu()
    arrays = {"x": x.numpy(), "nfe": np.array(smp.nfe)}
    if logp is not None:
        arrays["logp"] = logp.numpy()
    t = getattr(m, "transform", None)
    if t is not None and getattr(t, "levels", None):
        arrays["x_data"] = t.inverse(x, round=True).numpy().astype(np.uint8 if t.levels <= 256 else np.int32)
    np.savez(out / "samples.npz", **arrays)
    summary = {"model": model, "method": method, "steps": steps, "n": n, "nfe": smp.nfe, "seed": seed,
               "solver": solver if method in ("ode", "hd", "prior-guided", "density-guided") else None,
               "tracker": tracker if method == "sde" and track else None, "divergence": divergence,
               "device": device, "version": __version__}
    summary.update({"threshold": threshold, "first": first} if method == "hd" else {})
    summary.update({"q": q} if "guided" in method else {})
    summary.update({"noise": noise} if method == "stochastic-density-guided" else {})
    if logp is not None:
        summary.update(logp_mean=float(logp.mean()), logp_min=float(logp.min()), logp_max=float(logp.max()))
    if sample_grid(m, x, logp, out / "samples.png"):
        summary["png"] = str(out / "samples.png")
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    click.echo(json.dumps(summary, indent=2))


def _read_array(path):
    """The array ``x`` of a .npz (or a .npy) file, with a clear error for a missing, corrupt or unsafe file."""
    import numpy as np

    if not Path(path).is_file():
        raise ValueError(f"--data {path}: no such file.")
    try:
        arr = np.load(path, allow_pickle=False)
        return arr["x"] if hasattr(arr, "files") else arr
    except KeyError:
        raise ValueError(f"--data {path}: the .npz has no array 'x' (it has {list(arr.files)}).") from None
    except (OSError, ValueError, EOFError) as e:
        raise ValueError(f"--data {path}: not a readable .npz/.npy file of numbers ({' '.join(str(e).split())[:120]}).") from None


@main.command("log-prob")
@_model_arg
@click.option("--data", "data", default=None, help="a .npz/.npy file of samples in model space, or a data set name "
              "(default: the model's own data set, test split)")
@click.option("--split", type=click.Choice(["test", "train"]), default="test")
@click.option("--n", "n", type=click.IntRange(min=1), default=128, help="how many examples")
@click.option("--bpd/--no-bpd", default=True, help="bits/dim of integer data (uniform dequantization)")
@click.option("--divergence", type=click.Choice(["hutchinson", "exact"]), default="hutchinson")
@click.option("--solver", type=click.Choice(ODE_SOLVERS), default="dopri5")
@click.option("--steps", type=int, default=None)
@click.option("--repeats", type=int, default=1, help="dequantization draws averaged for bits/dim")
@click.option("--density", type=click.Choice(["lambda_max", "data"]), default="lambda_max", show_default=True,
              help="log p at the schedule's λ_max, or the data's own density with both ends closed (math.md §1.1b)")
@click.option("--seed", type=int, default=0)
@click.option("--out", type=click.Path(), default="log_prob.json")
@click.option("--device", default="cpu", help="cpu | cuda | cuda:N")
def log_prob_cmd(model, model_opt, device, data, split, n, bpd, divergence, solver, steps, repeats, density, seed,
                 out):
    """Log-likelihood (nats) or bits/dim of data under MODEL by the PF-ODE; writes per-example values as JSON.

    Example: diffdensity log-prob --model toy2d-moons --data samples/samples.npz --n 64
    """
    import numpy as np
    import torch

    from . import bits_per_dim, load, log_prob

    model = _resolve_model(model, model_opt)
    m = load(model, device=device)
    g = torch.Generator().manual_seed(seed)
    kw = dict(divergence=divergence, solver=solver, steps=steps, generator=g, density=density)
    if data is not None and Path(data).suffix in (".npz", ".npy"):
        x = torch.as_tensor(_read_array(data), dtype=torch.float32)[:n]
        values, kind = log_prob(m, x, **kw), "log_prob_nats"
    else:
        from .data import load_dataset

        cfg = getattr(m, "config", {}) or {}
        name = data or cfg.get("dataset")
        if not name:
            raise click.UsageError("pass --data (a data set name or a .npz of model-space samples).")
        ds = load_dataset(name, **(cfg.get("dataset_kwargs", {}) if name == cfg.get("dataset") else {}))
        x = getattr(ds, split)[:n]
        if bpd and ds.levels is not None:
            values, kind = bits_per_dim(m, x, levels=ds.levels, repeats=repeats, **kw), "bits_per_dim"
        else:
            values, kind = log_prob(m, ds.transform.forward(x.float()), **kw), "log_prob_nats"
    res = {"model": model, "data": data, "density": density, "n": int(values.shape[0]), kind: values.tolist(),
           "mean": float(values.mean()), "standard_error": float(values.std() / max(1, values.shape[0]) ** 0.5)}
    Path(out).write_text(json.dumps(res, indent=2))
    click.echo(f"{kind}: {res['mean']:.4f} ± {res['standard_error']:.4f} over {res['n']} examples -> {out}")


@main.command("demo")
@click.option("--out", type=click.Path(), default="demo_out")
@click.option("--quick", is_flag=True, help="a smaller, faster run")
@click.option("--seed", type=int, default=0)
@click.option("--model", default="digits8", show_default=True,
              help="score model of the sampling, guidance and likelihood panels (a shipped name or a run folder)")
@click.option("--device", default="cpu", help="cpu | cuda | cuda:N")
def demo_cmd(out, quick, seed, model, device):
    """The main job: every capability on the shipped models; writes OUT/<panel>/ (JSON + PNG) and OUT/report/index.html.

    Example: diffdensity demo --quick --out demo_out   (or --model patches16 for natural-image patches; slower)
    """
    from .demo import run_demo

    run_demo(out, quick=quick, seed=seed, model=model, device=device)



# ------------------------------------------------------------------------------------------------ likelihood (data sets)
def _is_diffusers_folder(path: Path) -> bool:
    if not path.is_dir():
        return False
    if (path / "model_index.json").is_file() or (path / "unet").is_dir() or (path / "transformer").is_dir():
        return True
    cfg = path / "config.json"
    try:
        return cfg.is_file() and "_diffusers_version" in json.loads(cfg.read_text())
    except json.JSONDecodeError:
        return False


def _likelihood_model(spec: str, scheduler, autocast, device):
    """A shipped name or saved run (dd.load), or a diffusers folder (dd.from_diffusers)."""
    from . import from_diffusers, load

    if _is_diffusers_folder(Path(spec).expanduser()):
        return from_diffusers(spec, scheduler, autocast=None if autocast == "no" else autocast, device=device)
    if autocast != "no":
        raise click.UsageError("--autocast applies to diffusers models only.")
    return load(spec, device=device)


def _data_shape_of(model):
    t = getattr(model, "transform", None)
    if t is not None:
        return tuple(t.data_shape)
    cfg = getattr(getattr(model, "net", None), "config", None)
    size, ch = getattr(cfg, "sample_size", None), getattr(cfg, "in_channels", None)
    if size is None or ch is None:
        return None
    size = (size, size) if isinstance(size, int) else tuple(size)
    return (int(ch), *size)


def _fit_images(arr, shape, source):
    """uint8 images (N, C, H, W) / (N, H, W, C) / (N, H, W) to the model's data shape."""
    import torch

    x = torch.as_tensor(arr)
    if shape is None or tuple(x.shape[1:]) == tuple(shape):
        return x
    if x.ndim == 4 and tuple(x.shape[1:]) == (shape[1], shape[2], shape[0]):  # channels last
        return x.permute(0, 3, 1, 2).contiguous()
    if x.ndim == 4 and len(shape) == 2 and x.shape[1] == 1 and tuple(x.shape[2:]) == tuple(shape):
        return x[:, 0]
    raise click.UsageError(f"{source}: images of shape {tuple(x.shape[1:])} do not fit the model's data shape {shape}.")


def _likelihood_data(spec, model, split, image_size):
    """(integer data tensor, levels) from the model's data set, a data set name, a uint8 .npz, an image file or
    folder, or a local CIFAR-10 folder."""
    import numpy as np
    import torch

    from .data import load_dataset
    from .data.images import IMAGE_EXTENSIONS, _load_one, load_cifar10_batches

    shape = _data_shape_of(model)
    if spec is None:
        cfg = getattr(model, "config", {}) or {}
        if not cfg.get("dataset"):
            raise click.UsageError("this model names no data set; pass --data (images, a .npz, a CIFAR-10 folder).")
        ds = load_dataset(cfg["dataset"], **cfg.get("dataset_kwargs", {}))
        return getattr(ds, split), ds.levels
    path = Path(spec).expanduser()
    if path.suffix == ".npz":
        with np.load(path) as z:
            key = "x" if "x" in z.files else (z.files[0] if len(z.files) == 1 else None)
            if key is None:
                raise click.UsageError(f"{path} holds arrays {z.files}; name the images 'x'.")
            arr = z[key]
        if arr.dtype != np.uint8:
            raise click.UsageError(f"{path}: array {key!r} is {arr.dtype}; pass uint8 images (0..255).")
        return _fit_images(arr, shape, path), 256
    if path.is_dir() and ((path / "test_batch").is_file() or (path / "cifar-10-batches-py").is_dir()):
        train, test, _, _ = load_cifar10_batches(path)
        return _fit_images(train if split == "train" else test, shape, path), 256
    if path.is_file() or path.is_dir():
        files = [path] if path.is_file() else sorted(
            p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise click.UsageError(f"no .png/.jpg images under {path}.")
        if shape is None and image_size is None:
            raise click.UsageError("cannot tell the image size of this model; pass --image-size.")
        size = image_size or shape[-1]
        gray = shape is not None and (len(shape) == 2 or shape[0] == 1)
        try:
            arr = np.stack([_load_one(p, size, gray) for p in files])
        except ValueError as e:
            raise click.UsageError(str(e)) from None
        return _fit_images(arr, shape, path), 256
    try:
        ds = load_dataset(spec)
    except ValueError as e:
        raise click.UsageError(f"--data {spec!r}: not a file, folder or data set name ({e}).") from None
    return getattr(ds, split), ds.levels


@main.command("likelihood")
@_model_arg
@click.option("--data", default=None, help="images: a file or folder of PNG/JPEG, a uint8 .npz (array 'x'), a local "
              "CIFAR-10 folder, or a data set name (default: the model's own data set)")
@click.option("--split", type=click.Choice(["test", "train"]), default="test", help="split of a data set / CIFAR-10")
@click.option("--scheduler", default=None, help="diffusers scheduler folder when MODEL is a model folder without one")
@click.option("--n", "limit", type=int, default=None, help="only the first N examples (default: all)")
@click.option("--batch-size", type=int, default=64)
@click.option("--levels", type=int, default=None, help="integer levels of the data (default: the data's, 256 for images)")
@click.option("--repeats", type=int, default=1, help="dequantization draws averaged per example")
@click.option("--solver", type=click.Choice(ODE_SOLVERS), default="dopri5")
@click.option("--steps", type=int, default=None, help="steps of a fixed-grid solver (default 1024)")
@click.option("--divergence", type=click.Choice(["hutchinson", "exact"]), default="hutchinson")
@click.option("--n-probes", type=int, default=1, help="Hutchinson probes")
@click.option("--rtol", type=float, default=1e-5)
@click.option("--atol", type=float, default=1e-5)
@click.option("--seed", type=int, default=0)
@click.option("--out", type=click.Path(), default="likelihood_out", help="result folder (resumed if it exists)")
@click.option("--device", default=None, help="cpu | cuda | cuda:N (default: the process's device under accelerate, "
              "else cpu)")
@click.option("--autocast", type=click.Choice(["no", "bf16", "fp16"]), default="no",
              help="run a diffusers network under autocast (ODE state and log p stay float32)")
@click.option("--image-size", type=int, default=None, help="side of image files when the model does not say")
@click.option("--no-progress", "progress", is_flag=True, flag_value=False, default=None)
def likelihood_cmd(model, model_opt, data, split, scheduler, limit, batch_size, levels, repeats, solver, steps, divergence,
                   n_probes, rtol, atol, seed, out, device, autocast, image_size, progress):
    """Bits/dim of a whole data set under MODEL (a shipped name, a saved run, or a diffusers folder); writes
    OUT/per_example.npz and OUT/summary.json and resumes an interrupted run.

    Several GPUs / processes: `accelerate launch [--num_processes N] -m diffdensity.cli likelihood ...`.
    Example: diffdensity likelihood --model digits8 --n 64 --out lik
    """
    from . import evaluate_bits_per_dim

    model = _resolve_model(model, model_opt)
    try:
        m = _likelihood_model(model, scheduler, autocast, device)
        x, data_levels = _likelihood_data(data, m, split, image_size)
        if solver != "dopri5" and steps is None:
            steps = 1024
        res = evaluate_bits_per_dim(m, x, batch_size=batch_size, levels=levels or data_levels or 256, repeats=repeats,
                                    out=out, seed=seed, solver=solver, steps=steps, divergence=divergence,
                                    n_probes=n_probes, rtol=rtol, atol=atol, limit=limit, device=device,
                                    model_name=model, progress=progress)
    except (ValueError, TypeError, ImportError) as e:
        raise click.ClickException(str(e)) from None
    from accelerate import PartialState

    if PartialState().is_main_process:
        click.echo(f"bits/dim: {res['mean']:.4f} ± {res['sem'] or 0:.4f} over {res['n']} examples "
                   f"({res['batches_computed']} batches computed, {res['batches_resumed']} resumed) -> {out}")


# ------------------------------------------------------------------------------------ analyze (issue 8)
def _analysis_common(f):
    """--model, --n, --seed, --out, the log-density settings and --no-progress for every `analyze` command."""
    opts = [
        click.option("--n", "n", type=int, default=32, help="number of samples / held-out images"),
        click.option("--seed", type=int, default=0),
        click.option("--out", type=click.Path(), default=None, help="output folder (default: analysis_<name>)"),
        click.option("--logp-divergence", type=click.Choice(["hutchinson", "exact"]), default="hutchinson",
                     help="divergence of the PF-ODE encoder that scores finished samples"),
        click.option("--logp-probes", type=int, default=8, help="Hutchinson probes of that encoder"),
        click.option("--logp-solver", type=click.Choice(ODE_SOLVERS), default="heun"),
        click.option("--logp-steps", type=int, default=64),
        click.option("--no-progress", "progress", is_flag=True, flag_value=False, default=None),
        click.option("--device", default="cpu", expose_value=False, help="cpu | cuda | cuda:N",
                     callback=lambda ctx, param, value: ctx.meta.__setitem__("device", value)),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _analysis_setup(model, n, seed, logp_divergence, logp_probes, logp_solver, logp_steps):
    import torch

    from . import load

    torch.manual_seed(seed)
    device = click.get_current_context().meta.get("device", "cpu")
    m = load(model, device=device)
    g = torch.Generator(device=device).manual_seed(seed)
    kw = {"divergence": logp_divergence, "solver": logp_solver, "steps": logp_steps}
    if logp_divergence == "hutchinson":
        kw["n_probes"] = logp_probes
    if n < 1:
        raise click.UsageError(f"--n {n}: need at least one sample.")
    return m, g, kw


def _held_out(m, n):
    from .data import load_dataset

    cfg = getattr(m, "config", {}) or {}
    if not cfg.get("dataset"):
        raise click.UsageError("this model names no data set; the analysis needs held-out data.")
    ds = load_dataset(cfg["dataset"], **cfg.get("dataset_kwargs", {}))
    device = click.get_current_context().meta.get("device", "cpu")  # the integer images themselves (no dequantization)
    return ds.transform.forward(ds.test[:n].float()).to(device)


def _done(out, names):
    click.echo("wrote " + ", ".join(str(Path(out) / n) for n in names))


@main.group("analyze")
def analyze():
    """The first paper's analyses (high-density samples, PNG size, blur, SDE vs ODE log p); JSON + figures."""


@analyze.command("threshold")
@click.option("--model", default="digits8", help="a shipped model name or a model folder")
@click.option("--thresholds", default="8,6,4,2,0", help="comma-separated λ thresholds")
@click.option("--steps", type=int, default=256, help="sampler steps (split between the legs)")
@click.option("--first", type=click.Choice(["ode", "sde"]), default="ode")
@_analysis_common
def analyze_threshold(model, thresholds, steps, first, n, seed, out, logp_divergence, logp_probes, logp_solver,
                      logp_steps, progress):
    """Mean/spread of log p of high-density samples per threshold beside PF-ODE and SDE samples (same latents).

    Example: diffdensity analyze threshold --model digits8 --thresholds 8,4,0 --n 16 --out an_thr
    """
    from .analysis import threshold_sweep

    m, g, kw = _analysis_setup(model, n, seed, logp_divergence, logp_probes, logp_solver, logp_steps)
    out = out or "analysis_threshold"
    x_T = m.schedule.sample_prior((n, *_model_shape(m)), generator=g)
    res = threshold_sweep(m, x_T, [float(t) for t in thresholds.split(",")], steps=steps, first=first,
                          log_prob_kw=kw, generator=g, out=out, progress=progress)
    for t in res["thresholds"]:
        r = res["hd"][f"{t:g}"]
        click.echo(f"λ_thr={t:g}: log p {r['mean']:.2f} ± {r['sem']:.2f} (std {r['std']:.2f})")
    for k in ("pf_ode", "sde"):
        click.echo(f"{k}: log p {res[k]['mean']:.2f} ± {res[k]['sem']:.2f} (std {res[k]['std']:.2f})")
    _done(out, ["threshold_sweep.json", "threshold_sweep.png", "threshold_grid.png"])


@analyze.command("png")
@click.option("--model", default="digits8")
@click.option("--steps", type=int, default=256, help="PF-ODE sampler steps")
@click.option("--level", type=int, default=9, help="PNG / zlib compression level")
@_analysis_common
def analyze_png(model, steps, level, n, seed, out, logp_divergence, logp_probes, logp_solver, logp_steps, progress):
    """log p versus PNG and zlib size of PF-ODE samples and held-out images (Pearson, Spearman).

    Example: diffdensity analyze png --model digits8 --n 32 --out an_png
    """
    from . import sample_ode
    from .analysis import compression_vs_logp

    m, g, kw = _analysis_setup(model, n, seed, logp_divergence, logp_probes, logp_solver, logp_steps)
    out = out or "analysis_png"
    x_T = m.schedule.sample_prior((n, *_model_shape(m)), generator=g)
    sets = {"samples": sample_ode(m, x_T, steps=steps, progress=progress).x, "held-out": _held_out(m, n)}
    res = compression_vs_logp(m, sets, level=level, log_prob_kw=kw, generator=g, out=out, progress=progress)
    for name, r in {**res["sets"], "pooled": res["pooled"]}.items():
        c, z = r["logp_vs_png"], r["logp_vs_zlib"]
        click.echo(f"{name}: log p vs PNG Pearson {c['pearson']:.3f} Spearman {c['spearman']:.3f}; "
                   f"vs zlib Pearson {z['pearson']:.3f} Spearman {z['spearman']:.3f}")
    _done(out, ["compression.json", "compression.png"])


@analyze.command("blur")
@click.option("--model", default="digits8")
@click.option("--sigmas", default="0,0.25,0.5,0.75,1,1.5,2", help="comma-separated blur stds in pixels")
@_analysis_common
def analyze_blur(model, sigmas, n, seed, out, logp_divergence, logp_probes, logp_solver, logp_steps, progress):
    """log p of held-out images under growing Gaussian blur: one curve per image and the mean.

    Example: diffdensity analyze blur --model patches16 --sigmas 0,0.5,1,2 --n 8 --out an_blur
    """
    from .analysis import blur_curve

    m, g, kw = _analysis_setup(model, n, seed, logp_divergence, logp_probes, logp_solver, logp_steps)
    out = out or "analysis_blur"
    res = blur_curve(m, _held_out(m, n), [float(s) for s in sigmas.split(",")], log_prob_kw=kw, generator=g,
                     out=out, progress=progress)
    for s, mu in zip(res["sigmas"], res["mean"]):
        click.echo(f"σ={s:g}: mean log p {mu:.2f}")
    click.echo(f"monotone curves: {res['monotone_fraction']:.0%}")
    _done(out, ["blur.json", "blur.png"])


@analyze.command("ode-sde")
@click.option("--model", "models", multiple=True, default=("digits8", "digits8-quality"), show_default=True,
              help="repeat for several models")
@click.option("--steps", type=int, default=1024, help="reverse-SDE steps")
@_analysis_common
def analyze_ode_sde(models, steps, n, seed, out, logp_divergence, logp_probes, logp_solver, logp_steps, progress):
    """SDE-tracked versus PF-ODE log p of the same samples, per model (the paper's Fig. 4).

    Example: diffdensity analyze ode-sde --model digits8 --model digits8-quality --n 16 --out an_fig4
    """
    from .analysis import ode_vs_sde

    loaded = {}
    for name in models:
        m, g, kw = _analysis_setup(name, n, seed, logp_divergence, logp_probes, logp_solver, logp_steps)
        loaded[name] = m
    first = next(iter(loaded.values()))
    g = __import__("torch").Generator().manual_seed(seed)
    x_T = first.schedule.sample_prior((n, *_model_shape(first)), generator=g)
    out = out or "analysis_ode_sde"
    res = ode_vs_sde(loaded, x_T, steps=steps, log_prob_kw=kw, generator=g, out=out, progress=progress)
    for name, r in res["models"].items():
        click.echo(f"{name}: tracked {r['sde_tracked']['mean']:.2f}, PF-ODE {r['pf_ode']['mean']:.2f}, "
                   f"gap {r['gap']['mean']:.2f} ± {r['gap']['sem']:.2f} nats")
    _done(out, ["ode_sde.json", "ode_sde.png"])


# --- guidance and score alignment (math.md §2) -------------------------------------------------------------------

@main.command("guide")
@_model_arg
@click.option("--q", "qs", default="0.3,0.4,0.5,0.6,0.7", callback=_csv(float),
              help="log-density quantiles (higher q = higher log p, for prior and density guidance alike)")
@click.option("--n", "n", type=int, default=32, help="samples per q (the same latents for every q)")
@click.option("--steps", type=int, default=64, help="Euler steps of the guided samplers")
@click.option("--noise", type=click.Choice(["none", "early", "late"]), default="none",
              help="also run stochastic density guidance with this noise window (128 steps)")
@click.option("--eval-steps", type=int, default=256, help="Euler steps of the PF-ODE encoder that evaluates log p")
@click.option("--divergence", type=click.Choice(["hutchinson", "exact"]), default="hutchinson",
              help="divergence of the log-p evaluation")
@click.option("--seed", type=int, default=0)
@click.option("--out", type=click.Path(), default="guide_out", help="output folder")
@click.option("--device", default="cpu", help="cpu | cuda | cuda:N")
def guide_cmd(model, model_opt, device, qs, n, steps, noise, eval_steps, divergence, seed, out):
    """q sweep of density guidance beside prior guidance (and optionally stochastic density guidance) on MODEL:
    per q a sample grid and the mean log p (model space, PF-ODE encoder); OUT/guidance.json, OUT/logp_vs_q.png and
    a grid per sampler.

    Example: diffdensity guide digits8 --q 0.3,0.5,0.6 --n 16 --out guide_out
    """
    import torch

    from . import load
    from .analysis import guidance_sweep

    m = load(_resolve_model(model, model_opt), device=device)
    g = torch.Generator(device=device).manual_seed(seed)
    x_T = m.schedule.sample_prior((n, *_model_shape(m)), generator=g)
    res = guidance_sweep(m, x_T, qs, steps=steps, noise=None if noise == "none" else noise,
                         log_prob_kw={"divergence": divergence, "solver": "euler", "steps": eval_steps}, generator=g,
                         out=out)
    for kind, rows in res["results"].items():
        for r in rows:
            if "mean" in r:
                click.echo(f"{kind} guidance with q={r['q']:g}; average logp: {r['mean']:.2f}")
            else:
                click.echo(f"{kind} guidance with q={r['q']:g}: infeasible (feasible q ≤ {r['feasible_q']:.4g})")
    click.echo(f"-> {Path(out) / 'guidance.json'}")


@main.command("align")
@_model_arg
@click.option("--n", "n", type=int, default=128, help="number of latents")
@click.option("--lambda-target", type=float, default=1.0, help="the target λ of the flow (the reference uses 1)")
@click.option("--steps", type=int, default=1024, help="Euler steps of both estimators")
@click.option("--n-probes", type=int, default=1, help="Hutchinson probes per step of Eq 13")
@click.option("--seed", type=int, default=0)
@click.option("--out", type=click.Path(), default="align_out", help="output folder")
@click.option("--device", default="cpu", help="cpu | cuda | cuda:N")
def align_cmd(model, model_opt, device, n, lambda_target, steps, n_probes, seed, out):
    """Score alignment of MODEL over N latents by Eq 12 (with the target score) and Eq 13 (without: Hutchinson),
    their correlation and the fraction of latents with SA > 0; OUT/summary.json, OUT/alignment.npz, OUT/alignment.png.

    Example: diffdensity align digits8 --n 64 --out align_out
    """
    import numpy as np
    import torch

    from . import alignment_fraction, load, score_alignment

    model = _resolve_model(model, model_opt)
    m = load(model, device=device)
    g = torch.Generator(device=device).manual_seed(seed)
    x_T = m.schedule.sample_prior((n, *_model_shape(m)), generator=g)
    with_score = score_alignment(m, x_T, lambda_target, "score", steps=steps)
    without = score_alignment(m, x_T, lambda_target, "no_score", steps=steps, generator=g, n_probes=n_probes)
    corr = float(np.corrcoef(with_score.numpy(), without.numpy())[0, 1])
    click.echo(f"Correlation of score alignment with and without score: {corr}")
    fr, fr13 = alignment_fraction(with_score), alignment_fraction(without)
    click.echo(f"Score alignment holds for {fr:.1%} of latents (Eq 12; {fr13:.1%} by Eq 13)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "alignment.npz", score=with_score.numpy(), no_score=without.numpy())
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4))
    ax.scatter(with_score.numpy(), without.numpy(), s=8)
    lo, hi = float(min(with_score.min(), without.min())), float(max(with_score.max(), without.max()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.set_xlabel("SA, Eq 12 (score at target)")
    ax.set_ylabel("SA, Eq 13 (Hutchinson)")
    ax.set_title(f"corr {corr:.3f}, aligned {fr:.0%}")
    fig.tight_layout()
    fig.savefig(out / "alignment.png", dpi=100)
    plt.close(fig)
    summary = {"model": model, "n": n, "lambda_target": lambda_target, "steps": steps, "n_probes": n_probes,
               "seed": seed, "correlation": corr, "fraction_aligned": fr, "fraction_aligned_eq13": fr13,
               "mean_sa": float(with_score.mean()), "plot": str(out / "alignment.png")}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    click.echo(f"-> {out / 'summary.json'}")

# ------------------------------------------------------------------------------------ distributional (math.md §3)
@main.group("distributional")
def distributional_group():
    """Distributional diffusion models with scoring rules (De Bortoli et al. 2025): train, sweep, nfe, sample."""


def _recipe_defaults(command):
    """Train options whose defaults are the paper's recipe (distributional.objective.PAPER_RECIPE)."""
    from .distributional.objective import PAPER_RECIPE

    command = train_options(command)
    for p in command.__click_params__:  # the options attached so far (the command is not built yet)
        if p.name in PAPER_RECIPE:
            p.default = PAPER_RECIPE[p.name]
    return command


@distributional_group.command("train")
@click.option("--regression", is_flag=True, help="the regression baseline: β = 2, interaction = 0 (MSE of x̂₀)")
@_recipe_defaults
@_train_device
@click.pass_context
def distributional_train_cmd(ctx, regression, **opts):
    """Train a generator with a scoring rule (Algorithm 1); defaults: the paper's recipe (flow matching, Adam 1e-3,
    100 warm-up steps + cosine decay, clipping at norm 1, EMA 0.99, m = 8). --steps and --out are required.

    Example: diffdensity distributional train --dataset checkerboard --steps 5000 --out runs/cb-dist
    """
    from .training import TrainConfig, train

    d = options_to_config_dict(ctx, opts)
    if regression:
        d.update(beta=2.0, interaction=0.0)
    click.echo(str(train(TrainConfig.from_dict(d))))


def _reference(dataset, n, seed):
    from .data import load_dataset

    ds = load_dataset(dataset)
    return ds, ds.test_model_space(generator=torch_generator(seed))[:n]


def torch_generator(seed):
    import torch

    return torch.Generator().manual_seed(int(seed))


@distributional_group.command("nfe")
@click.argument("models", nargs=-1, required=True)
@click.option("--dataset", required=True, help="held-out data of this data set (its test split) is the reference")
@click.option("--nfe", "nfes", default="1,2,4,8,16,32", callback=_csv(int), help="step counts")
@click.option("--n", "n", type=int, default=4096, help="samples per model and step count (and reference size)")
@click.option("--churn", type=float, default=1.0, help="bridge churn ε (0 = DDIM, 1 = DDPM posterior)")
@click.option("--spacing", type=click.Choice(["t", "lambda"]), default="t")
@click.option("--seed", type=int, default=0)
@click.option("--device", default="cpu", help="cpu | cuda | cuda:N (sampling runs there; distances on the CPU)")
@click.option("--out", type=click.Path(), default="nfe_sweep")
def distributional_nfe_cmd(models, dataset, nfes, n, churn, spacing, seed, device, out):
    """MMD and energy distance to held-out data vs number of steps for MODELS (generator models by Algorithm 2,
    score models by the same bridge with their mean): OUT/nfe_sweep.{json,md,png}.

    Example: diffdensity distributional nfe checkerboard-distributional checkerboard-regression --dataset checkerboard
    """
    from . import load
    from .distributional.experiments import format_table, nfe_sweep, write_nfe_report

    _, ref = _reference(dataset, n, seed + 1)
    res = nfe_sweep({m: load(m, device=device) for m in models}, ref, nfes, n, churn, seed, spacing)
    res["dataset"] = dataset
    write_nfe_report(res, out, title=dataset)
    click.echo(format_table(res))


@distributional_group.command("sweep")
@click.option("--interaction-grid", "interactions", default="0,0.1,0.5,1", callback=_csv(float),
              help="interaction λ values")
@click.option("--beta-grid", "grid_betas", default="1", callback=_csv(float), help="energy-score β values")
@click.option("--nfe", "nfes", default="1,2,4,8,16,32", callback=_csv(int), help="step counts of the evaluation")
@click.option("--n-eval", type=int, default=4096, help="samples per model and step count")
@click.option("--churn", type=float, default=1.0)
@_recipe_defaults
@_train_device
@click.pass_context
def distributional_sweep_cmd(ctx, interactions, grid_betas, nfes, n_eval, churn, **opts):
    """Train one model per (β, interaction) into OUT/beta<β>_int<λ> (the train options apply to each), then the
    NFE sweep of all of them: OUT/nfe_sweep.{json,md,png}.

    Example: diffdensity distributional sweep --dataset moons --steps 2000 --interaction-grid 0,1 --out sweep_out
    """
    from . import load
    from .distributional.experiments import format_table, nfe_sweep, write_nfe_report
    from .training import TrainConfig, train

    base = options_to_config_dict(ctx, opts)
    root = Path(base["out"] or "sweep")
    runs = {}
    for b in grid_betas:
        for lam in interactions:
            name = f"beta{b:g}_int{lam:g}"
            runs[name] = train(TrainConfig.from_dict({**base, "beta": b, "interaction": lam, "out": str(root / name)}))
    _, ref = _reference(base["dataset"], n_eval, base["seed"] + 1)
    device = "cpu" if base["cpu"] else ctx.meta.get("train_device")  # evaluate where training ran
    res = nfe_sweep({k: load(v, device=device) for k, v in runs.items()}, ref, nfes, n_eval, churn, base["seed"])
    res["dataset"] = base["dataset"]
    write_nfe_report(res, root, title=f"{base['dataset']}: β × interaction sweep")
    click.echo(format_table(res))


@distributional_group.command("sample")
@click.argument("model")
@click.option("--steps", type=int, default=4)
@click.option("--n", "n", type=int, default=64)
@click.option("--churn", type=float, default=1.0)
@click.option("--spacing", type=click.Choice(["t", "lambda"]), default="t")
@click.option("--seed", type=int, default=0)
@click.option("--device", default="cpu", help="cpu | cuda | cuda:N")
@click.option("--out", type=click.Path(), default="samples_distributional")
def distributional_sample_cmd(model, steps, n, churn, spacing, seed, device, out):
    """N samples of MODEL in STEPS steps (Algorithm 2; a score model: the mean bridge): OUT/samples.npz (model
    space and data units) and OUT/samples.png.

    Example: diffdensity distributional sample checkerboard-distributional --steps 2 --n 512 --out cb_samples
    """
    import numpy as np

    from . import load
    from .data import load_dataset
    from .distributional.experiments import draw_samples
    from .training.visual import save_samples_png

    m = load(model, device=device)
    z = draw_samples(m, n, steps, churn, torch_generator(seed), spacing)  # a CPU generator: same samples on any device
    outp = Path(out)
    outp.mkdir(parents=True, exist_ok=True)
    np.savez(outp / "samples.npz", z=z.numpy(), x=m.transform.inverse(z).numpy())
    ds = load_dataset(m.config.get("dataset", "")) if m.config.get("dataset") else None
    if ds is not None and save_samples_png(ds, z, outp / "samples.png"):
        click.echo(str(outp / "samples.png"))
    click.echo(str(outp / "samples.npz"))


# ------------------------------------------------------------------------------------ report
@main.command("report")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", type=click.Path(), default="report", help="report folder (index.html + images)")
@click.option("--title", default="diffdensity report")
def report_cmd(run_dirs, out, title):
    """Build OUT/index.html from saved analysis outputs (folders of JSON + PNG files).

    Example: diffdensity report demo_out/threshold demo_out/blur --out my_report
    """
    from .report import build_report

    click.echo(str(build_report(run_dirs, out, title=title)))


# ------------------------------------------------------------------------------------ reproduce
@main.command("reproduce")
@click.argument("experiment", type=click.Choice(["sampling", "guidance", "alignment", "all"]), default="all")
@click.option("--model", default="digits8", help="a shipped score model or a model folder")
@click.option("--n", "n", type=click.IntRange(min=2), default=16, help="latents per experiment")
@click.option("--steps", type=click.IntRange(min=2), default=256, help="sampler / estimator steps")
@click.option("--seed", type=int, default=0)
@click.option("--device", default="cpu")
@click.option("--out", type=click.Path(), default="reproduce_out", help="folder for one JSON per experiment")
def reproduce_cmd(experiment, model, n, steps, seed, device, out):
    """The reference repository's three experiments (sampling.py, guidance.py, score_alignment.py of
    rafalkarczewski/diffusion-density) on MODEL, printing the same kind of summary lines.

    Example: diffdensity reproduce sampling --model digits8 --n 16 --steps 256
    """
    import numpy as np
    import torch

    from . import alignment_fraction, load, ode_sde_gap, sample_hd, sample_sde, score_alignment
    from .analysis import evaluate_log_prob, guidance_sweep

    m = load(model, device=device)
    shape = _model_shape(m)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    logp_kw = {"divergence": "hutchinson", "n_probes": 4, "solver": "heun", "steps": 64}
    g = lambda k: torch.Generator(device=device).manual_seed(seed + k)  # noqa: E731
    x_T = m.schedule.sample_prior((n, *shape), generator=g(0)).to(device)
    todo = ["sampling", "guidance", "alignment"] if experiment == "all" else [experiment]
    if "sampling" in todo:  # sampling.py: Theorem-1 tracking vs the ODE, then high-density sampling per threshold
        smp = sample_sde(m, x_T, steps=steps, generator=g(1))
        gap = ode_sde_gap(m, smp, generator=g(2), **logp_kw)
        res = {"sde_tracked_logp": float(smp.logp.mean()), "ode_logp": float((smp.logp - gap).mean()),
               "gap": float(gap.mean()), "nfe": smp.nfe, "hd": {}}
        click.echo(f"SDE sampling: average tracked logp {res['sde_tracked_logp']:.2f}, "
                   f"ODE estimate of the same samples {res['ode_logp']:.2f} (difference {res['gap']:+.2f})")
        for thr in (8.0, 6.0, 4.0, 2.0):
            x = sample_hd(m, x_T, thr, steps=steps, progress=False).x
            res["hd"][f"{thr:g}"] = float(evaluate_log_prob(m, x, logp_kw, generator=g(3)).mean())
            click.echo(f"HD sampling with threshold {thr:g}: average logp {res['hd'][f'{thr:g}']:.2f}")
        (out / "sampling.json").write_text(json.dumps(res, indent=2))
    if "guidance" in todo:  # guidance.py: prior, density and stochastic density guidance
        res = guidance_sweep(m, x_T, (0.3, 0.5, 0.6), steps=64, noise="late", log_prob_kw=logp_kw, generator=g(4))
        for kind, rows in res["results"].items():
            for r in rows:
                tail = f"average logp: {r['mean']:.2f}" if "mean" in r else \
                    f"infeasible (feasible q ≤ {r['feasible_q']:.3g})"
                click.echo(f"{kind.capitalize()} guidance with q={r['q']:g}; {tail}")
        (out / "guidance.json").write_text(json.dumps(res, indent=2, default=float))
    if "alignment" in todo:  # score_alignment.py: Eq 12 vs Eq 13 at λ = 1
        a = score_alignment(m, x_T, 1.0, "score", steps=steps)
        b = score_alignment(m, x_T, 1.0, "no_score", steps=steps, generator=g(5))
        corr = float(np.corrcoef(a.cpu().numpy(), b.cpu().numpy())[0, 1])
        click.echo(f"Correlation of score alignment with and without score: {corr:.4f}")
        click.echo(f"Score alignment holds for {alignment_fraction(a):.1%} of latents (Eq 12), "
                   f"{alignment_fraction(b):.1%} (Eq 13)")
        (out / "alignment.json").write_text(json.dumps({"correlation": corr, "eq12": a.tolist(), "eq13": b.tolist(),
                                                        "fraction_eq12": alignment_fraction(a)}, indent=2))
    click.echo(f"-> {out}")


if __name__ == "__main__":
    main()
