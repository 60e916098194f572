"""``diffdensity train``: one option per :class:`~diffdensity.training.TrainConfig` field, generated on first use."""
from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import click

from . import main
from ._common import FINITE, check_launch, is_adaptive, parse_kv

__all__ = ["train_options", "options_to_config_dict", "train_command", "train_cmd", "LazyParamsCommand"]


class LazyParamsCommand(click.Command):
    """A command whose generated options (``extra_params()``) join its own, before ``--device``, on first use: they
    come from TrainConfig, whose package imports torch, so ``diffdensity --help`` does not build them."""

    def __init__(self, *args, extra_params=None, **kw):
        self._extra = extra_params
        super().__init__(*args, **kw)

    @property
    def params(self):
        if self._extra is not None:
            make, self._extra = self._extra, None
            at = next((i for i, p in enumerate(self._params) if p.name == "device"), len(self._params))
            self._params[at:at] = make()
        return self._params

    @params.setter
    def params(self, value):
        self._params = value

    def format_options(self, ctx, formatter):
        """--help lists the options of the chosen objective only (``--objective NAME --help`` for another's)."""
        chosen = ctx.meta.get("objective") or next((p.default for p in self.params if p.name == "objective"), None)
        own = _objective_fields()
        others = set().union(*own.values()) - own.get(chosen, set())
        field = {p: f for p, (f, _) in _alias_fields().items()}  # alias options belong to their dict field
        rows = [r for p in self.get_params(ctx) if field.get(p.name, p.name) not in others
                for r in [p.get_help_record(ctx)] if r]
        if rows:
            with formatter.section(f"Options (objective: {chosen}; `--objective NAME --help` shows another's)"):
                formatter.write_dl(rows)


def _objective_fields() -> dict:
    """Objective name -> the TrainConfig fields its own config reads (objectives.OBJECTIVES, each ``.Config``)."""
    from ..objectives import OBJECTIVES

    return {name: {f.name for f in dataclasses.fields(OBJECTIVES.load(name).Config)} for name in OBJECTIVES}


def _remember_objective(ctx, param, value):
    """--objective is parsed first (eager), so that --help after it shows that objective's options."""
    ctx.meta["objective"] = value
    return value


def _field_default(f):
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def _base_type(hint):
    """int | None -> int; other annotations unchanged."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def _alias_param(option: str) -> str:
    return option.lstrip("-").replace("-", "_")


def _field_options(f, hint) -> list[click.Option]:
    """The click options of one TrainConfig field (several when the field is a dict with aliases)."""
    meta, default = f.metadata, _field_default(f)
    opt = meta.get("option", "--" + f.name.replace("_", "-"))
    kind, kw = _base_type(hint), {"help": meta.get("help")}
    if kind is bool:
        if default:
            return [click.Option([f"{opt}/--no-{opt[2:]}", f.name], default=True, **kw)]
        return [click.Option([opt, f.name], is_flag=True, default=False, **kw)]
    if meta.get("kv"):
        opts = [click.Option([opt, f.name], multiple=True, callback=parse_kv, metavar="KEY=VALUE", **kw)]
        for key, (alias, typ, text) in meta.get("aliases", {}).items():
            opts.append(click.Option([alias, _alias_param(alias)], type=typ, default=default.get(key), help=text))
        return opts
    if meta.get("choices"):
        eager: dict = {"is_eager": True, "callback": _remember_objective} if f.name == "objective" else {}
        return [click.Option([opt, f.name], type=click.Choice(meta["choices"]), default=default, **kw, **eager)]
    if kind is tuple:
        return [click.Option([opt, f.name], type=FINITE, nargs=len(default), default=default, **kw)]
    typ = {int: int, float: FINITE}.get(kind, str)
    return [click.Option([opt, f.name], type=typ, default=default, **kw)]


def _train_fields():
    from ..training import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    return [(f, hints[f.name]) for f in dataclasses.fields(TrainConfig)]


def _generated_options(recipe: bool = False) -> list[click.Option]:
    """One option per TrainConfig field; with ``recipe`` the paper's distributional recipe as defaults."""
    opts = [o for f, hint in _train_fields() for o in _field_options(f, hint)]
    if recipe:
        from ..objectives.distributional import PAPER_RECIPE

        for o in opts:
            if o.name in PAPER_RECIPE:
                o.default = PAPER_RECIPE[o.name]
    return opts


def train_options(command):
    """Decorate ``command`` with one option per TrainConfig field (generated, so they cannot drift apart)."""
    command.__click_params__ = [*getattr(command, "__click_params__", []), *reversed(_generated_options())]
    return command


def _alias_fields() -> dict:
    """click parameter name -> (TrainConfig field, key) of the options that fill one key of a dict field."""
    return {_alias_param(alias): (f.name, key) for f, _ in _train_fields()
            for key, (alias, _, _) in f.metadata.get("aliases", {}).items()}


def _from_checkpoint(d: dict, given: set) -> dict:
    """--resume: options not given on the command line come from the run's checkpoint (if it has one yet)."""
    from ..training import load_checkpoint
    from ..training.checkpoint import CHECKPOINT_NAME, check_resumable
    from ..training.config import RUN_CONTROL

    path = Path(d["out"]) / CHECKPOINT_NAME if d["out"] is not None else None
    if path is not None and path.exists():
        stored = check_resumable(load_checkpoint(path), path)["config"]
        return {k: (v if k in given or k in RUN_CONTROL else stored.get(k, v)) for k, v in d.items()}
    click.echo(f"--resume: no checkpoint in {d['out']} yet, starting a new run", err=True)
    return d


def options_to_config_dict(ctx, opts: dict) -> dict:
    """Parsed ``train`` options -> TrainConfig fields (dict options merged with their aliases, 0 -> None where
    the field says so); with ``--resume``, options not given on the command line come from the checkpoint."""
    aliases, src = _alias_fields(), click.core.ParameterSource
    given = {aliases.get(p, (p,))[0] for p in opts if ctx.get_parameter_source(p) == src.COMMANDLINE}
    d = {k: v for k, v in opts.items() if k not in aliases}
    for f, _ in _train_fields():
        if f.metadata.get("aliases"):
            d[f.name] = _merge_aliases(ctx, f, opts, aliases)
        if f.metadata.get("zero_is_none") and d[f.name] == 0:
            d[f.name] = None
    if d["resume"]:
        d = _from_checkpoint(d, given)
    if ctx.meta.get("train_device") == "cpu":
        d["cpu"] = True
    if d.get("threads") is None:  # the command line's thread policy (diffdensity._threads), not torch's default;
        _policy_threads()        # applied now, not written into the run's config
    return d


def _policy_threads() -> None:
    from .._threads import apply_threads, default_threads

    apply_threads(default_threads())  # an explicit count: set in torch, which the training options already loaded


def _merge_aliases(ctx, f, opts, aliases) -> dict:
    """A dict field from its field default, its alias options and its KEY=VALUE option (in that order)."""
    value = dict(_field_default(f))
    for param, (name, key) in aliases.items():
        if name == f.name:
            value[key] = opts[param]
    given = ctx.get_parameter_source("eval_steps") == click.core.ParameterSource.COMMANDLINE
    if "solver" in value and is_adaptive(value["solver"]) and not given:
        value.pop("steps", None)  # adaptive: the default step count does not apply
    return {**value, **opts[f.name]}


def _remember_device(ctx, param, value):
    """--device for training: cpu (= --cpu) or cuda (accelerate picks the GPU)."""
    if value is None:
        return
    from ..io import _check_device

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


def train_command(group, name: str, recipe: bool = False):
    """Register a training command on ``group``: its own options, then the TrainConfig ones (built lazily; with
    ``recipe`` the paper's distributional defaults), then --device (cpu | cuda)."""
    def decorate(f):
        device = click.Option(["--device"], default=None, expose_value=False, callback=_remember_device,
                              help="cpu | cuda (default: a GPU when present; cpu is the same as --cpu)")
        f.__click_params__ = [device, *getattr(f, "__click_params__", [])]  # click lists these last to first
        return group.command(name, cls=LazyParamsCommand, extra_params=lambda: _generated_options(recipe))(
            click.pass_context(f))
    return decorate


@train_command(main, "train")  # type: ignore[has-type]  # import cycle: cli/__init__ imports this module after defining main
def train_cmd(ctx, **opts):
    """Train a diffusion model into the run folder OUT (load the result with dd.load(OUT)); --steps and --out are
    required. OUT must not hold an earlier run unless --resume (continue it) or --overwrite (start over).

    Multi-process / multi-GPU: `accelerate launch --multi_gpu --num_processes N [--cpu] -m diffdensity.cli train ...`.

    Example: diffdensity train --dataset digits --net unet --preset digits --steps 2000 --out runs/digits
    """
    from ..training import TrainConfig, train

    check_launch()  # --num_processes N without --multi_gpu starts one process

    click.echo(str(train(TrainConfig.from_dict(options_to_config_dict(ctx, opts)))))
