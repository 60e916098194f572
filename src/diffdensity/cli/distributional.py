"""``diffdensity distributional``: train, sweep, nfe and sample (diffdensity.distributional, math.md §3)."""
from __future__ import annotations

from pathlib import Path

import click

from . import main
from ._common import COUNT, DEVICE, SEED, UNIT, claim_out, csv, overwrite_option, torch_generator
from .train import options_to_config_dict, train_command


@main.group("distributional")
def distributional_group():
    """Distributional diffusion models with scoring rules (De Bortoli et al. 2025): train, sweep, nfe, sample."""


@train_command(distributional_group, "train", recipe=True)
@click.option("--regression", is_flag=True, help="the regression baseline: β = 2, interaction = 0 (MSE of x̂₀)")
def distributional_train_cmd(ctx, regression, **opts):
    """Train a generator with a scoring rule (Algorithm 1); defaults: the paper's recipe (flow matching, Adam 1e-3,
    100 warm-up steps + cosine decay, clipping at norm 1, EMA 0.99, m = 8). --steps and --out are required.

    Example: diffdensity distributional train --dataset checkerboard --steps 5000 --out runs/cb-dist
    """
    from ..training import TrainConfig, train

    d = options_to_config_dict(ctx, opts)
    if regression:
        d.update(beta=2.0, interaction=0.0)
    click.echo(str(train(TrainConfig.from_dict(d))))


# the bridge's time grids (diffdensity.distributional.bridge.SPACINGS; listed here so the CLI loads no torch)
SPACING = click.option("--spacing", type=click.Choice(["t", "lambda", "quadratic", "cubic"]), default="t",
                       help="bridge time grid: uniform in t, uniform in λ, or t_k ∝ k² / k³ (finer near the data)")


@distributional_group.command("nfe")
@click.argument("models", nargs=-1, required=True)
@click.option("--dataset", required=True, help="held-out data of this data set (its test split) is the reference")
@click.option("--nfe", "nfes", default="1,2,4,8,16,32", callback=csv(int), help="step counts")
@click.option("--n", "n", type=COUNT, default=4096, help="samples per model and step count (and reference size)")
@click.option("--churn", type=UNIT, default=1.0, help="bridge churn ε (0 = DDIM, 1 = DDPM posterior)")
@SPACING
@click.option("--seed", type=SEED, default=0)
@click.option("--device", type=DEVICE, default="cpu", help="cpu | cuda | cuda:N (sampling runs there; distances on the CPU)")
@click.option("--out", type=click.Path(), default="nfe_sweep")
@overwrite_option
def distributional_nfe_cmd(models, dataset, nfes, n, churn, spacing, seed, device, out):
    """MMD and energy distance to held-out data vs number of steps for MODELS (generator models by Algorithm 2,
    score models by the same bridge with their mean): OUT/nfe_sweep.{json,md,png}.

    Example: diffdensity distributional nfe checkerboard-distributional checkerboard-regression --dataset checkerboard
    """
    from ..distributional.experiments import compare_models, format_table
    from ..io import load

    out = claim_out(out)
    res = compare_models({m: load(m, device=device) for m in models}, dataset, nfes, n, churn, seed, spacing, out)
    click.echo(format_table(res))


@train_command(distributional_group, "sweep", recipe=True)
@click.option("--interaction-grid", "interactions", default="0,0.1,0.5,1", callback=csv(float),
              help="interaction λ values")
@click.option("--beta-grid", "grid_betas", default="1", callback=csv(float), help="energy-score β values")
@click.option("--nfe", "nfes", default="1,2,4,8,16,32", callback=csv(int), help="step counts of the evaluation")
@click.option("--n-eval", type=COUNT, default=4096, help="samples per model and step count")
@click.option("--churn", type=UNIT, default=1.0)
def distributional_sweep_cmd(ctx, interactions, grid_betas, nfes, n_eval, churn, **opts):
    """Train one model per (β, interaction) into OUT/beta<β>_int<λ> (the train options apply to each), then the
    NFE sweep of all of them: OUT/nfe_sweep.{json,md,png}.

    Example: diffdensity distributional sweep --dataset moons --steps 2000 --interaction-grid 0,1 --out sweep_out
    """
    from ..distributional.experiments import compare_models, format_table, train_sweep
    from ..io import load

    base = options_to_config_dict(ctx, opts)
    root = Path(base["out"] or "sweep")
    runs = train_sweep(base, grid_betas, interactions, root)
    device = "cpu" if base["cpu"] else ctx.meta.get("train_device")  # evaluate where training ran
    res = compare_models({k: load(v, device=device) for k, v in runs.items()}, base["dataset"], nfes, n_eval, churn,
                         base["seed"], out=root, title=f"{base['dataset']}: β × interaction sweep")
    click.echo(format_table(res))


@distributional_group.command("sample")
@click.argument("model")
@click.option("--steps", type=COUNT, default=4)
@click.option("--n", "n", type=COUNT, default=64)
@click.option("--churn", type=UNIT, default=1.0)
@SPACING
@click.option("--seed", type=SEED, default=0)
@click.option("--device", type=DEVICE, default="cpu", help="cpu | cuda | cuda:N")
@click.option("--out", type=click.Path(), default="samples_distributional")
@overwrite_option
def distributional_sample_cmd(model, steps, n, churn, spacing, seed, device, out):
    """N samples of MODEL in STEPS steps (Algorithm 2; a score model: the mean bridge): OUT/samples.npz (model
    space and data units) and OUT/samples.png.

    Example: diffdensity distributional sample checkerboard-distributional --steps 2 --n 512 --out cb_samples
    """
    from ..distributional.experiments import draw_samples, save_samples
    from ..io import load

    out = claim_out(out)
    m = load(model, device=device)
    z = draw_samples(m, n, steps, churn, torch_generator(seed), spacing)  # a CPU generator: same samples on any device
    for path in save_samples(m, z, out):
        click.echo(str(path))
