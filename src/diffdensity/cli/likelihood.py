"""``diffdensity log-prob`` (log p of samples or a data set's examples) and ``diffdensity likelihood`` (bits/dim of
a whole data set, resumable, several processes through accelerate)."""
from __future__ import annotations

import click

from . import main
from ._common import (COUNT, DEVICE, DIVERGENCES, LEVELS, SEED, TOLERANCE, check_launch, is_adaptive, model_arg,
                      overwrite_option, overwriting, pipeline_options, resolve_model, solver_option, torch_generator)


@main.command("log-prob")
@model_arg
@click.option("--data", "data", default=None, help="a .npz/.npy file of samples in model space, or a data set name "
              "(default: the model's own data set, test split)")
@click.option("--split", type=click.Choice(["test", "train"]), default="test")
@click.option("--n", "n", type=click.IntRange(min=1), default=128, help="how many examples")
@click.option("--bpd/--no-bpd", default=True, help="bits/dim of integer data (uniform dequantization)")
@click.option("--divergence", type=click.Choice(DIVERGENCES), default="hutchinson")
@solver_option(default="dopri5")
@click.option("--steps", type=COUNT, default=None)
@click.option("--repeats", type=COUNT, default=1, help="dequantization draws averaged for bits/dim")
@click.option("--density", type=click.Choice(["lambda_max", "data"]), default="lambda_max", show_default=True,
              help="log p at the schedule's λ_max, or the data's own density with both ends closed (math.md §1.1b)")
@click.option("--seed", type=SEED, default=0)
@click.option("--out", type=click.Path(), default="log_prob.json")
@overwrite_option
@click.option("--device", type=DEVICE, default="cpu", help="cpu | cuda | cuda:N")
@pipeline_options()
def log_prob_cmd(model, model_opt, device, data, split, n, bpd, divergence, solver, steps, repeats, density, seed,
                 out, prompt, negative_prompt, guidance_scale, scheduler):
    """Log-likelihood (nats) or bits/dim of data under MODEL by the PF-ODE; writes per-example values as JSON.

    Example: diffdensity log-prob --model toy2d-moons --data samples/samples.npz --n 64
    """
    from .._io_utils import output_file, write_json
    from ..data.loading import load_model
    from ..evaluate import data_log_prob

    model = resolve_model(model, model_opt)
    out = output_file(out, overwriting(), inputs=[data, model])
    m = load_model(model, scheduler, None, device, prompt=prompt, negative_prompt=negative_prompt,
                   guidance_scale=guidance_scale)
    values, errs, kind = data_log_prob(m, data, split, n, bpd, repeats, divergence=divergence, solver=solver,
                                       steps=steps, generator=torch_generator(seed), density=density)
    res = {"model": model, "data": data, "density": density, "n": int(values.shape[0]), kind: values.tolist(),
           f"{kind}_stderr": None if errs is None else errs.tolist(),
           "mean": float(values.mean()),
           "standard_error": float(values.std() / values.shape[0] ** 0.5) if values.shape[0] > 1 else None}
    write_json(out, res)
    click.echo(f"{kind}: {res['mean']:.4f} ± {res['standard_error'] or 0:.4f} over {res['n']} examples -> {out}")


@main.command("likelihood")
@model_arg
@click.option("--data", default=None, help="images: a file or folder of PNG/JPEG, a uint8 .npz (array 'x'), a local "
              "CIFAR-10 folder, or a data set name (default: the model's own data set)")
@click.option("--split", type=click.Choice(["test", "train"]), default="test", help="split of a data set / CIFAR-10")
@click.option("--scheduler", default=None, help="diffusers scheduler folder when MODEL is a model folder without one")
@click.option("--n", "limit", type=COUNT, default=None, help="only the first N examples (default: all)")
@click.option("--batch-size", type=COUNT, default=64)
@click.option("--levels", type=LEVELS, default=None, help="integer levels of the data (default: the data's, 256 for images)")
@click.option("--repeats", type=COUNT, default=1, help="dequantization draws averaged per example")
@solver_option(default="dopri5")
@click.option("--steps", type=COUNT, default=None, help="steps of a fixed-grid solver (default 1024)")
@click.option("--divergence", type=click.Choice(DIVERGENCES), default="hutchinson")
@click.option("--n-probes", type=COUNT, default=1, help="Hutchinson probes (per quadrature node: at least 4)")
@click.option("--nodes", type=click.IntRange(min=0), default=None,
              help="quadrature nodes of the divergence integral (adaptive solver + Hutchinson; default 128; 0: one "
                   "probe held for the whole solve)")
@click.option("--rtol", type=TOLERANCE, default=1e-5)
@click.option("--atol", type=TOLERANCE, default=1e-5)
@click.option("--seed", type=SEED, default=0)
@click.option("--out", type=click.Path(), default="likelihood_out", help="result folder (resumed if it holds this "
              "evaluation; --overwrite starts it afresh)")
@overwrite_option
@click.option("--device", type=DEVICE, default=None, help="cpu | cuda | cuda:N (default: the process's device under accelerate, "
              "else cpu)")
@click.option("--autocast", type=click.Choice(["no", "bf16", "fp16"]), default="no",
              help="run a diffusers network under autocast (ODE state and log p stay float32)")
@click.option("--image-size", type=COUNT, default=None, help="side of image files when the model does not say")
@click.option("--no-progress", "progress", is_flag=True, flag_value=False, default=None)
@pipeline_options(scheduler=False)
def likelihood_cmd(model, model_opt, data, split, scheduler, limit, batch_size, levels, repeats, solver, steps,
                   divergence, n_probes, nodes, rtol, atol, seed, out, device, autocast, image_size, progress, prompt,
                   negative_prompt, guidance_scale):
    """Bits/dim of a whole data set under MODEL (a shipped name, a saved run, or a diffusers folder); writes
    OUT/per_example.npz and OUT/summary.json and resumes an interrupted run.

    Several GPUs / processes: `accelerate launch --multi_gpu --num_processes N -m diffdensity.cli likelihood ...`.
    Example: diffdensity likelihood --model digits8 --n 64 --out lik
    """
    from ..data.loading import likelihood_data, load_model
    from ..evaluate import clear_evaluation, evaluate_bits_per_dim, evaluation_folder

    model = resolve_model(model, model_opt)
    check_launch()
    with evaluation_folder(out, overwriting(), inputs=[data, scheduler, model]) as out_dir:
        if overwriting():
            clear_evaluation(out_dir)
        m = load_model(model, scheduler, None if autocast == "no" else autocast, device, prompt=prompt,
                       negative_prompt=negative_prompt, guidance_scale=guidance_scale)
        x, data_levels = likelihood_data(data, m, split, image_size)
        if steps is None and not is_adaptive(solver):
            steps = 1024
        if hasattr(m, "encode"):  # a latent pipeline: log p of the images' latents, in nats (no bits/dim)
            return _pipeline_likelihood(m, x, limit, batch_size, out_dir, model, solver=solver, steps=steps,
                                        divergence=divergence, n_probes=n_probes, rtol=rtol, atol=atol,
                                        generator=torch_generator(seed))
        res = evaluate_bits_per_dim(m, x, batch_size=batch_size, levels=levels or data_levels or 256, repeats=repeats,
                                    out=out_dir, seed=seed, solver=solver, steps=steps, divergence=divergence,
                                    n_probes=n_probes, rtol=rtol, atol=atol, limit=limit, device=device,
                                    model_name=model, progress=progress,
                                    identity={"data": data, "split": split, "autocast": autocast},
                                    **({} if nodes is None else {"nodes": nodes}))
    from accelerate import PartialState

    if PartialState().is_main_process:
        se = "" if res.get("median_stderr") is None else f"; per-example s.e. (median) {res['median_stderr']:.4f}"
        click.echo(f"bits/dim: {res['mean']:.4f} ± {res['sem'] or 0:.4f}{se} over {res['n']} examples "
                   f"({res['batches_computed']} batches computed, {res['batches_resumed']} resumed) -> {out}")


def _pipeline_likelihood(m, x, limit, batch_size, out, model_name, **log_prob_kw):
    """log p(E(x)) in nats of each image's VAE latent (adapters.pipelines.image_log_probs) -> OUT/summary.json."""
    from pathlib import Path

    from .._io_utils import write_json
    from ..adapters.pipelines import image_log_probs

    x = x[:limit] if limit else x
    values = image_log_probs(m, x, batch_size, **log_prob_kw)
    res = {"model": model_name, "measure": "log p of the VAE latents E(x) (nats), not an image density",
           "n": int(values.shape[0]), "log_prob_nats": values.tolist(), "mean": float(values.mean()),
           "standard_error": float(values.std() / max(1, values.shape[0]) ** 0.5)}
    Path(out).mkdir(parents=True, exist_ok=True)
    write_json(Path(out) / "summary.json", res)
    click.echo(f"log p of latents: {res['mean']:.2f} ± {res['standard_error']:.2f} nats over {res['n']} images "
               f"-> {out}")
