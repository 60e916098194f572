"""Option decorators and small helpers shared by the sub-commands (torch-free: the command line starts without it)."""
from __future__ import annotations

import json
import math
import re

import click

from ..registry import SAMPLERS, SOLVERS

__all__ = ["parse_kv", "csv", "model_arg", "resolve_model", "is_adaptive", "solver_option",
           "method_choice", "default_steps", "torch_generator", "DIVERGENCES", "overwrite_option", "overwriting",
           "claim_out", "check_launch", "COUNT", "SEED", "LEVELS", "FINITE", "UNIT", "QUANTILE",
           "TOLERANCE", "DEVICE", "pipeline_options", "PIPELINE_PARAMS"]

DIVERGENCES = ("hutchinson", "exact")


class Finite(click.FloatRange):
    """A finite float (NaN and ±inf refused; click's FloatRange lets NaN through), optionally in a range."""

    name = "finite float"

    def convert(self, value, param, ctx):
        v = super().convert(value, param, ctx)
        if v is not None and not math.isfinite(v):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return v


class Device(click.ParamType):
    """cpu, cuda, cuda:N or mps (``cpu:1`` and other spellings refused before any work)."""

    name = "device"

    def convert(self, value, param, ctx):
        if value is None or re.fullmatch(r"cpu|mps|cuda(:\d+)?", str(value)):
            return value
        self.fail(f"{value!r}: choose cpu, cuda, cuda:N or mps.", param, ctx)


COUNT = click.IntRange(min=1)  # samples, steps, probes, batch sizes, repeats
SEED = click.IntRange(0, 2**63 - 1)
LEVELS = click.IntRange(min=2)
FINITE = Finite()
UNIT = Finite(0.0, 1.0)  # churn
QUANTILE = Finite(0.0, 1.0, min_open=True, max_open=True)
TOLERANCE = Finite(0.0, 1.0, min_open=True)
DEVICE = Device()


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
    """KEY=VALUE pairs -> dict; VALUE is parsed as JSON when possible, and True/False/None in any case are the
    Python values (``grayscale=False`` is False, not the truthy string 'False')."""
    out = {}
    for item in values:
        if "=" not in item or not item.split("=", 1)[0]:
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE", ctx=ctx, param=param)
        k, v = item.split("=", 1)
        words = {"true": True, "false": False, "none": None, "null": None}
        if v.strip().lower() in words:
            out[k] = words[v.strip().lower()]
            continue
        try:
            out[k] = json.loads(v)
        except (json.JSONDecodeError, RecursionError):
            out[k] = v
    return out


def csv(kind, low=None, high=None, allow_empty: bool = False):
    """A click callback: comma-separated finite values of ``kind`` (strictly between ``low`` and ``high`` when
    given) -> a tuple (non-empty unless ``allow_empty``)."""
    def parse(ctx, param, value):
        try:
            vals = tuple(kind(v) for v in str(value).split(",") if v.strip())
        except ValueError:
            raise click.BadParameter(f"{value!r}: expected comma-separated numbers", ctx=ctx, param=param) from None
        bad = [v for v in vals if not math.isfinite(v) or (low is not None and v <= low) or (high is not None and
                                                                                          v >= high)]
        if bad or not (vals or allow_empty):
            where = f" between {low:g} and {high:g} (exclusive)" if low is not None and high is not None else ""
            raise click.BadParameter(f"{value!r}: need finite numbers{where}", ctx=ctx, param=param)
        return vals
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
            click.option("--guidance-scale", type=FINITE, default=None,
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


def overwrite_option(f):
    """--overwrite: write into an --out that already holds results (read back by :func:`overwriting`)."""
    return click.option("--overwrite", is_flag=True, expose_value=False, help="replace the results --out holds",
                        callback=lambda ctx, param, value: ctx.meta.__setitem__("overwrite", value))(f)


def overwriting() -> bool:
    """Whether --overwrite was given to the running command."""
    return bool(click.get_current_context().meta.get("overwrite"))


def claim_out(out, inputs=()):
    """Claim the output folder ``out`` until the command ends (diffdensity._io_utils.output_folder: exclusive,
    refused over earlier results without --overwrite and over the command's inputs) -> its Path."""
    from .._io_utils import output_folder

    return click.get_current_context().with_resource(output_folder(out, overwriting(), inputs))


def check_launch() -> None:
    """ValueError if ``accelerate launch --num_processes N`` (N > 1) started a single process: without
    ``--multi_gpu`` accelerate runs one process, also on CPU, and says nothing."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 or "ACCELERATE_USE_CPU" not in os.environ:
        return
    try:
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as f:
            args = f.read().decode(errors="replace").split("\0")
    except OSError:
        return
    for i, a in enumerate(args):
        value = a.split("=", 1)[1] if a.startswith("--num_processes=") else (
            args[i + 1] if a == "--num_processes" and i + 1 < len(args) else None)
        if value is not None and value.isdigit() and int(value) > 1 and "--multi_gpu" not in args:
            raise ValueError(f"accelerate launch --num_processes {value} started ONE process (accelerate needs "
                             "--multi_gpu for several processes, also on CPU); add --multi_gpu.")


def torch_generator(seed: int, device=None):
    """A torch.Generator seeded with ``seed`` (on ``device``; a CPU one by default)."""
    import torch

    return torch.Generator(device=device or "cpu").manual_seed(int(seed))
