"""Option decorators and small helpers shared by the sub-commands (torch-free: the command line starts without it)."""
from __future__ import annotations

import json
from pathlib import Path

import click

from ..registry import SAMPLERS, SOLVERS

__all__ = ["parse_kv", "csv", "model_arg", "resolve_model", "fresh_out", "is_adaptive", "solver_option",
           "method_choice", "default_steps", "torch_generator", "DIVERGENCES", "pipeline_options", "PIPELINE_PARAMS"]

DIVERGENCES = ("hutchinson", "exact")


def is_adaptive(solver: str) -> bool:
    """Whether ``solver`` chooses its own steps (then no default step count applies); imports the solver (torch)."""
    from ..solvers import resolve

    return resolve(solver).adaptive


def solver_option(name: str = "--solver", default: str = "euler", **kw):
    """An ODE solver option whose choices are the registered solvers (diffdensity.registry.SOLVERS)."""
    return click.option(name, type=click.Choice(SOLVERS.names()), default=default, **kw)


def method_choice() -> click.Choice:
    """The registered samplers (diffdensity.registry.SAMPLERS)."""
    return click.Choice(SAMPLERS.names())


def default_steps(method: str) -> int:
    """The sampler's own default step count (from its registry entry)."""
    return SAMPLERS.get(method).meta["default_steps"]


def parse_kv(ctx, param, values):
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


def csv(kind):
    """A click callback: comma-separated values of ``kind`` -> tuple."""
    def parse(ctx, param, value):
        try:
            return tuple(kind(v) for v in str(value).split(",") if v.strip())
        except ValueError:
            raise click.BadParameter(f"{value!r}: expected comma-separated numbers", ctx=ctx, param=param) from None
    return parse


def model_arg(f):
    """MODEL as a positional argument or --model (a shipped name, a saved run or a model folder)."""
    f = click.option("--model", "model_opt", default=None, help="a shipped model name, a saved run or a model folder")(f)
    return click.argument("model", required=False, metavar="[MODEL]")(f)


def resolve_model(model, model_opt) -> str:
    """The one model named by MODEL or --model."""
    if model and model_opt and model != model_opt:
        raise click.UsageError(f"two models given: {model!r} and --model {model_opt!r}.")
    name = model or model_opt
    if not name:
        raise click.UsageError("which model? pass MODEL or --model (`diffdensity models` lists the shipped ones).")
    return name


PIPELINE_PARAMS = ("prompt", "negative_prompt", "guidance_scale")


def pipeline_options(scheduler: bool = True):
    """--prompt, --negative-prompt, --guidance-scale (diffusers' meaning) and --scheduler for diffusers models."""
    opts = [click.option("--prompt", default=None, help="text-to-image pipelines (folders, hub ids): the prompt "
                         "(\"\" for the unconditional model)"),
            click.option("--negative-prompt", default=None, help="pipelines: the negative prompt (default \"\")"),
            click.option("--guidance-scale", type=float, default=None,
                         help="pipelines: classifier-free guidance as in diffusers, ε_u + g(ε_c − ε_u) (the library's "
                              "w = g − 1; default: none)")]
    if scheduler:
        opts.append(click.option("--scheduler", default=None,
                                 help="diffusers scheduler folder when MODEL is a model folder without one"))

    def deco(f):
        for o in reversed(opts):
            f = o(f)
        return f
    return deco


def fresh_out(out, overwrite: bool) -> Path:
    """An output folder that holds no earlier results (refused unless --overwrite)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; pass a folder.")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ValueError(f"--out {out} already holds results; pass another folder or --overwrite.")
    out.mkdir(parents=True, exist_ok=True)
    return out


def torch_generator(seed: int, device=None):
    """A torch.Generator seeded with ``seed`` (on ``device``; a CPU one by default)."""
    import torch

    return torch.Generator(device=device or "cpu").manual_seed(int(seed))
