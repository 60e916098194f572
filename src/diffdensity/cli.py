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


@main.command("train")
@train_options
@click.pass_context
def train_cmd(ctx, **opts):
    """Train a diffusion model into the run folder OUT (load the result with dd.load(OUT)); --steps and --out are
    required. OUT must not hold an earlier run unless --resume (continue it) or --overwrite (start over).

    Multi-process / multi-GPU: `accelerate launch [--num_processes N] [--cpu] -m diffdensity.cli train ...`.
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
    """List the shipped pretrained models."""
    from . import list_models

    for name in list_models():
        click.echo(name)


@main.command("sample")
@click.argument("model")
@click.option("--n", "n", type=int, default=64, help="number of samples")
@click.option("--sampler", type=click.Choice(["sde", "ode"]), default="sde")
@click.option("--steps", type=int, default=1024)
@click.option("--tracker", type=click.Choice(["corrected", "em"]), default="corrected", help="SDE log-density tracker")
@click.option("--no-track", "track", is_flag=True, flag_value=False, default=True, help="do not track log p")
@click.option("--solver", type=click.Choice(["euler", "heun", "dopri5"]), default="euler", help="ODE solver")
@click.option("--divergence", type=click.Choice(["hutchinson", "exact"]), default="hutchinson", help="ODE tracking")
@click.option("--seed", type=int, default=0)
@click.option("--out", type=click.Path(), default="samples", help="output folder")
def sample_cmd(model, n, sampler, steps, tracker, track, solver, divergence, seed, out):
    """Sample MODEL (a shipped name or a model folder) with tracked log-density; writes samples.npz, a PNG, JSON."""
    import numpy as np
    import torch

    from . import load, sample_ode, sample_sde

    m = load(model)
    g = torch.Generator().manual_seed(seed)
    x_T = m.schedule.sample_prior((n, *_model_shape(m)), generator=g)
    if sampler == "sde":
        smp = sample_sde(m, x_T, steps=steps, track_logp=track, tracker=tracker, generator=g)
    else:
        smp = sample_ode(m, x_T, steps=steps, solver=solver, track_logp=track, divergence=divergence, generator=g)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    arrays = {"x": smp.x.numpy(), "nfe": np.array(smp.nfe)}
    if smp.logp is not None:
        arrays["logp"] = smp.logp.numpy()
    if m.transform is not None:
        arrays["x_data"] = m.transform.inverse(smp.x).numpy()
    np.savez(out / "samples.npz", **arrays)
    summary = {"model": model, "sampler": sampler, "steps": steps, "n": n, "nfe": smp.nfe, "seed": seed}
    if smp.logp is not None:
        summary.update(logp_mean=float(smp.logp.mean()), logp_min=float(smp.logp.min()), logp_max=float(smp.logp.max()))
    cfg = getattr(m, "config", {}) or {}
    if cfg.get("dataset"):
        from .data import load_dataset
        from .training.visual import save_samples_png

        try:
            ds = load_dataset(cfg["dataset"], **cfg.get("dataset_kwargs", {}))
            order = torch.argsort(smp.logp, descending=True) if smp.logp is not None else torch.arange(n)
            if save_samples_png(ds, smp.x[order], out / "samples.png"):
                summary["png"] = str(out / "samples.png")
        except ValueError as e:  # e.g. a folder data set that is not on this machine
            click.echo(f"no picture: {e}", err=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    click.echo(json.dumps(summary, indent=2))


@main.command("log-prob")
@click.argument("model")
@click.option("--data", "data", default=None, help="a .npz/.npy file of samples in model space, or a data set name "
              "(default: the model's own data set, test split)")
@click.option("--split", type=click.Choice(["test", "train"]), default="test")
@click.option("--n", "n", type=int, default=128, help="how many examples")
@click.option("--bpd/--no-bpd", default=True, help="bits/dim of integer data (uniform dequantization)")
@click.option("--divergence", type=click.Choice(["hutchinson", "exact"]), default="hutchinson")
@click.option("--solver", type=click.Choice(["euler", "heun", "dopri5"]), default="dopri5")
@click.option("--steps", type=int, default=None)
@click.option("--repeats", type=int, default=1, help="dequantization draws averaged for bits/dim")
@click.option("--seed", type=int, default=0)
@click.option("--out", type=click.Path(), default="log_prob.json")
def log_prob_cmd(model, data, split, n, bpd, divergence, solver, steps, repeats, seed, out):
    """Log-likelihood (nats) or bits/dim of data under MODEL by the PF-ODE; writes per-example values as JSON."""
    import numpy as np
    import torch

    from . import bits_per_dim, load, log_prob

    m = load(model)
    g = torch.Generator().manual_seed(seed)
    kw = dict(divergence=divergence, solver=solver, steps=steps, generator=g)
    if data is not None and Path(data).suffix in (".npz", ".npy"):
        arr = np.load(data)
        x = torch.as_tensor(arr["x"] if hasattr(arr, "files") else arr, dtype=torch.float32)[:n]
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
    res = {"model": model, "data": data, "n": int(values.shape[0]), kind: values.tolist(),
           "mean": float(values.mean()), "standard_error": float(values.std() / max(1, values.shape[0]) ** 0.5)}
    Path(out).write_text(json.dumps(res, indent=2))
    click.echo(f"{kind}: {res['mean']:.4f} ± {res['standard_error']:.4f} over {res['n']} examples -> {out}")


@main.command("demo")
@click.option("--out", type=click.Path(), default="demo_out")
@click.option("--quick", is_flag=True, help="a smaller, faster run")
@click.option("--seed", type=int, default=0)
def demo_cmd(out, quick, seed):
    """The main job: the exact mixture and the shipped digits model end to end (PNGs, summary.json, report.md)."""
    from .demo import run_demo

    run_demo(out, quick=quick, seed=seed)



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
@click.argument("model")
@click.option("--data", default=None, help="images: a file or folder of PNG/JPEG, a uint8 .npz (array 'x'), a local "
              "CIFAR-10 folder, or a data set name (default: the model's own data set)")
@click.option("--split", type=click.Choice(["test", "train"]), default="test", help="split of a data set / CIFAR-10")
@click.option("--scheduler", default=None, help="diffusers scheduler folder when MODEL is a model folder without one")
@click.option("--n", "limit", type=int, default=None, help="only the first N examples (default: all)")
@click.option("--batch-size", type=int, default=64)
@click.option("--levels", type=int, default=None, help="integer levels of the data (default: the data's, 256 for images)")
@click.option("--repeats", type=int, default=1, help="dequantization draws averaged per example")
@click.option("--solver", type=click.Choice(["euler", "heun", "dopri5"]), default="dopri5")
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
def likelihood_cmd(model, data, split, scheduler, limit, batch_size, levels, repeats, solver, steps, divergence,
                   n_probes, rtol, atol, seed, out, device, autocast, image_size, progress):
    """Bits/dim of a whole data set under MODEL (a shipped name, a saved run, or a diffusers folder); writes
    OUT/per_example.npz and OUT/summary.json and resumes an interrupted run.

    Several GPUs / processes: `accelerate launch [--num_processes N] -m diffdensity.cli likelihood ...`.
    """
    from . import evaluate_bits_per_dim

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


def _csv(kind):
    def parse(ctx, param, value):
        try:
            return tuple(kind(v) for v in str(value).split(",") if v.strip())
        except ValueError:
            raise click.BadParameter(f"{value!r}: expected comma-separated numbers", ctx=ctx, param=param) from None
    return parse


@distributional_group.command("train")
@click.option("--regression", is_flag=True, help="the regression baseline: β = 2, interaction = 0 (MSE of x̂₀)")
@_recipe_defaults
@click.pass_context
def distributional_train_cmd(ctx, regression, **opts):
    """Train a generator with a scoring rule (Algorithm 1); defaults: the paper's recipe (flow matching, Adam 1e-3,
    100 warm-up steps + cosine decay, clipping at norm 1, EMA 0.99, m = 8). --steps and --out are required."""
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
@click.option("--out", type=click.Path(), default="nfe_sweep")
def distributional_nfe_cmd(models, dataset, nfes, n, churn, spacing, seed, out):
    """MMD and energy distance to held-out data vs number of steps for MODELS (generator models by Algorithm 2,
    score models by the same bridge with their mean): OUT/nfe_sweep.{json,md,png}."""
    from . import load
    from .distributional.experiments import format_table, nfe_sweep, write_nfe_report

    _, ref = _reference(dataset, n, seed + 1)
    res = nfe_sweep({m: load(m) for m in models}, ref, nfes, n, churn, seed, spacing)
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
@click.pass_context
def distributional_sweep_cmd(ctx, interactions, grid_betas, nfes, n_eval, churn, **opts):
    """Train one model per (β, interaction) into OUT/beta<β>_int<λ> (the train options apply to each), then the
    NFE sweep of all of them: OUT/nfe_sweep.{json,md,png}."""
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
    res = nfe_sweep({k: load(v) for k, v in runs.items()}, ref, nfes, n_eval, churn, base["seed"])
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
@click.option("--out", type=click.Path(), default="samples_distributional")
def distributional_sample_cmd(model, steps, n, churn, spacing, seed, out):
    """N samples of MODEL in STEPS steps (Algorithm 2; a score model: the mean bridge): OUT/samples.npz (model
    space and data units) and OUT/samples.png."""
    import numpy as np

    from . import load
    from .data import load_dataset
    from .distributional.experiments import draw_samples
    from .training.visual import save_samples_png

    m = load(model)
    z = draw_samples(m, n, steps, churn, torch_generator(seed), spacing)
    outp = Path(out)
    outp.mkdir(parents=True, exist_ok=True)
    np.savez(outp / "samples.npz", z=z.numpy(), x=m.transform.inverse(z).numpy())
    ds = load_dataset(m.config.get("dataset", "")) if m.config.get("dataset") else None
    if ds is not None and save_samples_png(ds, z, outp / "samples.png"):
        click.echo(str(outp / "samples.png"))
    click.echo(str(outp / "samples.npz"))


if __name__ == "__main__":
    main()
