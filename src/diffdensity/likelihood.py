"""Log-density of given data by the PF-ODE (math.md §1.1), bits/dim, and the SDE-versus-ODE gap (§1.3)."""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ._checks import check_batch, check_choice, check_count, check_finite, check_real_data, flat_sq, prior_values
from ._rng import as_generator
from .data.transforms import to_model_space, unit_interval_transform
from .dynamics import PFODE
from .evaluation import Divergence, Eval, evaluate
from .integrate import Samples, integrate_ode, prepare, solver_steps
from .quadrature import DEFAULT_NODES, NODE_PROBES, ExampleStreams, log_density_quadrature
from .solvers import Solver, resolve
from .tracking import _same_lam

__all__ = ["log_prob", "stderr_available", "bits_per_dim", "ode_sde_gap", "data_end", "prior_end", "DEQUANTIZE", "DENSITIES"]

DEQUANTIZE = ("uniform", "none")
DENSITIES = ("lambda_max", "data")


def log_prob(model, x: Tensor, divergence: str = "hutchinson", solver: str | Solver = "dopri5", steps: int | None = None,
             rtol: float = 1e-5, atol: float = 1e-5, n_probes: int = 1, generator: torch.Generator | None = None,
             *, prior=None, probe: str = "rademacher", chunk_size: int | str | None = "auto",
             return_nfe: bool = False, progress=None, time: str | None = None, grid=None, control: str = "example",
             density: str = "lambda_max", nodes: int | None = None, precision: float | None = None,
             return_stderr: bool = False, batch_size: int | None = 64):
    """log p_{λ_max}(x) in nats -> (batch,): encode x by the PF-ODE to λ_min accumulating Δ = ∫(−div u)dλ, then
    log p(x) = prior(x_enc) − Δ (math.md §1.1). ``prior`` defaults to the schedule's Gaussian prior;
    ``density="data"``: log p₀(x), the data's own density, with both ends beyond the schedule's range closed by
    their limits (math.md §1.1b: :func:`data_end`, :func:`prior_end`; a given ``prior`` is p at λ_min, so only the
    data end is closed). ``solver``: a name of :data:`~diffdensity.registry.SOLVERS` or a solver object; fixed-step
    ones take ``steps`` (default 1024) on ``grid``; ``time``: the integration variable (default: the schedule's
    natural time for an adaptive solver, its ``fixed_time`` for a fixed-step one); ``control``: dopri5's error
    control per example (default: an example's log p does not depend on its batch) or shared by the "batch".

    Hutchinson noise (math.md §I.4): with an adaptive solver x is solved alone and Δ integrated by quadrature at
    ``nodes`` (default 128) with max(4, ``n_probes``) fresh probes per node from each example's own stream (their
    spread gives the standard error; probes at a node share its forward pass, so they are cheaper than nodes);
    ``nodes=0`` is the augmented solve with one probe held for the whole solve (the reference's scheme, noisier).
    Fixed-step solvers draw fresh probes at every evaluation. ``precision`` (nats): spend probes until each example's
    standard error is below it (quadrature scheme). ``return_stderr=True`` also returns the standard errors
    (0 for the exact divergence; a fixed-step solver needs ``n_probes`` ≥ 2: the probes' spread at each evaluation,
    weighted by the solver's own quadrature weights); ``return_nfe=True`` the score evaluations. ``batch_size``: inputs are encoded in
    chunks of this many (memory bounded; results identical). ``generator`` seeds the probes (None: seed 0, so a call
    is reproducible); it may be one generator per example."""
    check_choice(density, "density", DENSITIES)
    check_batch(x, "x")
    check_count(n_probes, "n_probes")
    generator = as_generator(generator, allow_list=True)
    solver = resolve(solver, strict=False, rtol=rtol, atol=atol, control=control, time=_pf_time(time, solver))
    steps = solver_steps(solver, steps, grid, default=1024)
    scheme = _scheme(divergence, solver, nodes, precision, return_stderr, n_probes)
    kw = dict(divergence=divergence, solver=solver, steps=steps, grid=grid, n_probes=n_probes, probe=probe,
              chunk_size=chunk_size, prior=prior, density=density, nodes=nodes, precision=precision,
              progress=progress, scheme=scheme)
    check_count(batch_size, "batch_size", allow_none=True)
    B = x.shape[0]
    chunk = B if batch_size is None else int(batch_size)
    gens = generator if isinstance(generator, (list, tuple)) or generator is None or B <= chunk else \
        ExampleStreams(x, generator).gens  # one stream per example, so that chunks see what the whole batch would
    parts = [_log_prob(model, x[i:i + chunk], gens[i:i + chunk] if isinstance(gens, (list, tuple)) else gens, **kw)
             for i in range(0, B, chunk)]
    lp, se, nfe = (torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]), sum(p[2] for p in parts))
    out = (lp,) + ((se,) if return_stderr else ()) + ((nfe,) if return_nfe else ())
    return out[0] if len(out) == 1 else out


def stderr_available(divergence: str = "hutchinson", solver="dopri5", nodes: int | None = None, n_probes: int = 1,
                     **_) -> bool:
    """Whether ``log_prob`` with these settings reports standard errors (the quadrature scheme, a fixed-step solver
    with at least 2 probes, or the exact divergence whose standard error is 0)."""
    scheme = _scheme(divergence, resolve(solver), nodes, None, False)
    return scheme in ("exact", "quadrature") or (scheme == "fresh" and int(n_probes) >= 2)


def _scheme(divergence, solver, nodes, precision, return_stderr, n_probes: int = 1) -> str:
    """How the divergence integral is estimated: "exact", "quadrature" (adaptive + Hutchinson, the default),
    "held" (adaptive, one probe held: nodes=0) or "fresh" (fixed-step, fresh probes per evaluation)."""
    check_choice(divergence, "divergence", ("hutchinson", "exact"))
    if nodes is not None and (isinstance(nodes, bool) or int(nodes) != nodes or nodes < 0):
        raise ValueError(f"nodes={nodes!r}: need a non-negative even integer (0: the augmented solve).")
    scheme = "exact" if divergence == "exact" else ("fresh" if not solver.adaptive else
                                                     ("held" if nodes == 0 else "quadrature"))
    if precision is not None and scheme != "quadrature":
        raise ValueError(f"precision= spends Hutchinson probes at quadrature nodes: it needs divergence='hutchinson' "
                         f"with an adaptive solver and nodes > 0 (this call's scheme: {scheme}).")
    if return_stderr and (scheme == "held" or (scheme == "fresh" and int(n_probes) < 2)):
        raise ValueError(f"return_stderr: the {scheme!r} scheme{' with one probe' if scheme == 'fresh' else ''} has no "
                         "standard error from its probes; "
                         "use an adaptive solver (the quadrature scheme), n_probes >= 2 with a fixed-step solver, or "
                         "divergence='exact' (no Monte-Carlo error).")
    return scheme


def _log_prob(model, x, generator, *, divergence, solver, steps, grid, n_probes, probe, chunk_size, prior, density,
              nodes, precision, progress, scheme):
    """log p of one chunk → (logp, stderr, nfe)."""
    m = prepare(model, x, "x")
    sch = model.schedule
    per_example = generator if isinstance(generator, (list, tuple)) else ExampleStreams(x, generator).gens
    div = Divergence(divergence, n_probes=n_probes if scheme != "quadrature" else max(NODE_PROBES, n_probes), probe=probe,
                     generator=per_example, chunk_size=chunk_size, fixed=scheme == "held")
    first, offset = None, 0.0
    if density == "data":  # enter at α(λ_max)·x; the first stage reuses this evaluation
        a = float(sch.alpha_sigma(torch.tensor(sch.lambda_max, dtype=torch.float64))[0])
        x = a * x
        first = evaluate(m, sch.lambda_max, x, {"lap"}, div)
        offset = data_end(sch, first)
    if scheme == "quadrature":
        enc = log_density_quadrature(m, PFODE(sch), x, sch.lambda_max, sch.lambda_min, solver=solver,
                                     nodes=DEFAULT_NODES if nodes is None else int(nodes),
                                     n_probes=max(NODE_PROBES, n_probes),
                                     generator=per_example, precision=precision, probe=probe, first_eval=first,
                                     progress=progress, desc="log_prob")
    else:
        enc = integrate_ode(m, PFODE(sch), x, sch.lambda_max, sch.lambda_min, track=True, solver=solver,
                            steps=steps, grid=grid, divergence=div, progress=progress, desc="log_prob",
                            first_eval=first)
    if prior is not None or density == "lambda_max":
        lp0 = prior_values((prior or sch.prior_log_prob)(enc.x), enc.x)
    else:
        lp0 = prior_end(sch, _end_eval(m, sch.lambda_min, enc))
    se = enc.stderr if enc.stderr is not None else torch.zeros_like(enc.logp)
    return lp0 - enc.logp + offset, se, m.nfe


def data_end(schedule, ev: Eval) -> Tensor:
    """log p₀(x) − log p_{λ_max}(α x) for data x, from the evaluation ``ev`` at (λ_max, α x) (math.md §1.1b):
    D log α − ½σ²(‖s‖² + Δ log p), α and σ at λ_max (the heat equation's first term; the next is O(e^{−2λ_max}))."""
    lam = torch.tensor(float(ev.lam), dtype=torch.float64)
    a, s = (float(v) for v in schedule.alpha_sigma(lam))
    D = ev.x[0].numel()
    assert ev.lap is not None, "data_end needs the evaluation's Laplacian (lap=True)"
    return D * math.log(a) - 0.5 * s**2 * (flat_sq(ev.s) + ev.lap)


def prior_end(schedule, ev: Eval) -> Tensor:
    """log p_{λ_min}(z) from the score at (λ_min, z) (math.md §1.1b): log N(z; z + σ²s, σ²I) = log N(σ²s; 0, σ²I),
    σ at λ_min (the schedule's prior density at σ²s); exact as λ_min → −∞, its leading residual −tr Cov[x₀]·α²/σ²,
    where the Gaussian prior leaves αzᵀE[x₀]/σ²."""
    if not _same_lam(ev.lam, schedule.lambda_min):
        raise ValueError(f"prior_end needs the evaluation at λ_min = {schedule.lambda_min:g}; got λ = {ev.lam}.")
    return schedule.prior_log_prob(schedule.prior_std**2 * ev.s)


def _end_eval(model, lam: float, enc: Samples) -> Eval:
    """The solve's own evaluation at its end point when it made one (dopri5's last stage), else one score call."""
    ev = enc.last
    if ev is not None and ev.x.shape == enc.x.shape and _same_lam(ev.lam, lam):  # λ: a float or per sample
        tol = 64 * torch.finfo(enc.x.dtype).eps * (1 + float(enc.x.abs().max()))
        if float((ev.x - enc.x).abs().max()) <= tol:  # dense output at the end: equal up to round-off
            return ev
    return evaluate(model, lam, enc.x)


def _pf_time(time, solver):
    """The PF-ODE's integration variable: as given, else the natural time for an adaptive solver and the fixed-step
    default."""
    return time if time is not None else ("natural" if resolve(solver).adaptive else None)


def _data_dtype(model, x: Tensor) -> torch.dtype:
    """Integer data (any dtype: uint8 images, float64 from scikit-learn) goes to the network's dtype; a model
    without parameters (the oracle) keeps a floating x's dtype."""
    params = getattr(model, "parameters", None)
    p = next(iter(params()), None) if callable(params) else None
    if p is not None:
        return p.dtype
    return x.dtype if x.is_floating_point() else torch.get_default_dtype()


def bits_per_dim(model, x_int: Tensor, levels: int | None = 256, dequantize: str = "uniform", repeats: int = 1,
                 generator: torch.Generator | None = None, *, return_stderr: bool = False, **log_prob_kw):
    """Bits per dimension of integer data -> (batch,); with ``return_stderr`` also each value's Monte-Carlo standard
    error from the divergence probes (``log_prob``'s, math.md §I.4; the draws of u are the estimator's own).

    With data units x ∈ {0, …, levels−1} and the model's data transform z = T(x) (its own, or by default
    z = 2x/levels − 1), uniform dequantization bounds the discrete log-likelihood by
        log P(x) ≥ E_u[ log p_z(T(x + u)) + log|det ∂T/∂x| ],  u ~ U[0, 1)^D,
    and bits/dim = −E_u[·] / (D ln 2), D = number of data dimensions (the unit cells have volume 1, so no
    other offset appears). ``repeats`` averages that many draws of u. ``dequantize="none"`` treats x as
    continuous data in data units: bits/dim = −(log p_z(T(x)) + log|det|) / (D ln 2).
    """
    if dequantize not in DEQUANTIZE:
        raise ValueError(f"dequantize={dequantize!r}; choose one of {DEQUANTIZE}.")
    check_count(repeats, "repeats")
    generator = as_generator(generator, allow_list=True)
    if not isinstance(x_int, Tensor):
        x_int = torch.as_tensor(x_int)
    check_real_data(x_int)
    check_finite(x_int.float(), "x_int")
    transform = getattr(model, "transform", None)
    t_levels = getattr(transform, "levels", None)
    if levels is None:
        levels = t_levels
    if t_levels is not None and levels is not None and int(t_levels) != int(levels):
        raise ValueError(f"levels={levels} but the model's data transform expects {t_levels} levels; pass levels={t_levels}.")
    xf = x_int.to(_data_dtype(model, x_int))
    if dequantize == "uniform":
        if (xf != xf.round()).any() or (xf < 0).any() or (xf > levels - 1).any():  # type: ignore[operator]  # levels=None here: no transform, see below
            raise ValueError(
                f"x_int must hold integers in [0, {levels - 1}] for uniform dequantization with levels={levels}; "  # type: ignore[operator]  # as above
                "pass dequantize='none' for continuous data."
            )
    if xf.ndim < 2:
        raise ValueError(f"x_int has shape {tuple(xf.shape)}; need (batch, ...).")
    if transform is None:
        if levels is None:
            raise ValueError("the model has no data transform and levels=None; pass levels (e.g. levels=256).")
        transform = unit_interval_transform(xf.shape[1:], xf.shape[1:], levels)
    D = xf[0].numel()
    log_det = transform.log_abs_det()
    total = torch.zeros(xf.shape[0], dtype=xf.dtype, device=xf.device)
    var = torch.zeros_like(total)
    reps = int(repeats) if dequantize == "uniform" else 1
    for _ in range(reps):
        z = to_model_space(xf, transform, dequantize == "uniform", generator)
        check_batch(z, "transformed x")
        lp = log_prob(model, z, generator=generator, return_stderr=return_stderr, **log_prob_kw)
        if return_stderr:
            lp, se = lp
            var = var + se.to(var.dtype) ** 2
        total = total + lp + log_det
    bpd = -(total / reps) / (D * math.log(2.0))
    return (bpd, var.sqrt() / (reps * D * math.log(2.0))) if return_stderr else bpd


def ode_sde_gap(model, samples: Samples, **log_prob_kw) -> Tensor:
    """Per-sample tracked SDE log-density minus its PF-ODE re-estimate, log p̂ − log p^ODE (Fig. 4 of Karczewski
    et al. 2025a); its mean is ≥ 0 up to estimator noise when the score is approximate (math.md §1.3)."""
    if samples.logp is None:
        raise ValueError("samples carry no tracked log-density; sample with dd.sample_sde(..., track_logp=True).")
    return samples.logp - log_prob(model, samples.x, **log_prob_kw)
