"""The reference repository's three experiments (the ``__main__`` blocks of sampling.py, guidance.py and
score_alignment.py of rafalkarczewski/diffusion-density) on one score model: the same grids, step counts, sample
counts and printed quantities, each line worded as theirs with our value, and our variants on lines of their own.

Conventions that differ are printed once per experiment (lines starting ``#``); our variants start with ``ours:``.
Their ``linspace(a, b, N)`` Euler grids are N − 1 steps: ``steps`` here counts steps (1023 = their 1024 points).
"""
from __future__ import annotations

from typing import Any

from pathlib import Path

import numpy as np
import torch
from scipy.stats import chi
from torch import Tensor

from .._io_utils import write_json
from ..alignment import alignment_fraction, score_alignment
from ..dynamics import HDODE, PFODE
from ..guidance import (InfeasibleGuidance, sample_density_guided, sample_prior_guided,
                        sample_stochastic_density_guided)
from ..integrate import integrate_ode
from ..likelihood import log_prob
from ..sampling import sample_hd, sample_ode, sample_sde, split_steps
from .common import summary

__all__ = ["reproduce", "EXPERIMENTS", "REFERENCE", "QUICK", "reference_prints", "settings_for"]

EXPERIMENTS = ("sampling", "guidance", "alignment")
FILES = {"sampling": "sampling.py", "guidance": "guidance.py", "alignment": "score_alignment.py"}
# the reference's sizes (steps = grid points − 1) and a small run of the same shape (``quick``)
REFERENCE: dict[str, dict[str, Any]] = {"sampling": {"n": 64, "steps": 1023, "thresholds": (8.0, 6.0, 4.0, 2.0)},
             "guidance": {"n": 64, "steps": 63, "sdg_steps": 127, "encoder_steps": 1023, "points": 6,
                          "sdg_points": 3},
             "alignment": {"n": 128, "steps": 1023, "lambda": 1.0}}
QUICK: dict[str, dict[str, Any]] = {"sampling": {"n": 8, "steps": 63}, "guidance": {"n": 8, "steps": 15, "sdg_steps": 31, "encoder_steps": 63},
         "alignment": {"n": 8, "steps": 63}}
# the reference's printed lines, in order (text before the value; {thr} etc. filled by reference_prints)
CONVENTIONS = {
    "sampling": "# conventions: log p of finished samples by their encoder (Euler on the λ grid, one fresh Rademacher "
                "probe per step); their HD split gives the PF-ODE leg the HD segment's share of the steps",
    "guidance": "# conventions: their prior-guidance q is a quantile of the latent NORM (higher q, lower log p); ours "
                "is 1 − it (higher q, higher log p). Density-guidance q means the same in both",
    "alignment": "# conventions: none (Eq 12 with the score, Eq 13 without, v0 = the model's score at λ_min)",
}


def settings_for(experiment: str, quick: bool = False, n: int | None = None, steps: int | None = None) -> dict:
    """The sizes of one experiment: the reference's, ``quick`` ones, or ``n``/``steps`` overriding every count
    (``steps`` sets the encoder's too and the stochastic sampler's to 2×)."""
    cfg = dict(REFERENCE[experiment], **(QUICK[experiment] if quick else {}))
    if n is not None:
        cfg["n"] = int(n)
    if steps is not None:
        cfg.update({k: int(steps) for k in ("steps", "encoder_steps") if k in cfg})
        if "sdg_steps" in cfg:
            cfg["sdg_steps"] = 2 * int(steps)
    return cfg


def _prior_qs(D: int, points: int) -> np.ndarray:
    """The reference's prior-guidance norm quantiles: chi.cdf of norms evenly spaced between the 0.001 and 0.999
    quantiles of χ_D."""
    return chi.cdf(np.linspace(chi.ppf(0.001, df=D), chi.ppf(0.999, df=D), points), df=D)


def reference_prints(experiment: str, D: int, cfg: dict | None = None) -> list[str]:
    """The lines the reference's ``__main__`` block prints, in order, up to their value."""
    cfg = cfg or REFERENCE[experiment]
    if experiment == "sampling":
        return ["Logp correlation betwen Rev-PF-ODE and Fwd-PF-ODE: ", "Logp correlation betwen Rev-SDE and Fwd-PF-ODE: ",
                "Regular sampling mean logp: "] + [f"LogSNR threshold: {t}. HD sampling mean logp: "
                                                    for t in cfg["thresholds"]]
    if experiment == "guidance":
        sdg = [f"{w} noise stochastic density guidance with q={q:g}; average logp: "
               for q in np.linspace(0.3, 0.7, cfg["sdg_points"]) for w in ("Early", "Late")]
        return ([f"Prior guidance with q={q:g}; average logp: " for q in _prior_qs(D, cfg["points"])]
                + [f"Density guidance with q={q:g}; average logp: " for q in np.linspace(0.3, 0.7, cfg["points"])]
                + sdg)
    return ["Correlation of score alignment with and without score: "]


class _Run:
    """One experiment's printer and the encoder it judges samples by."""

    def __init__(self, model, cfg: dict, seed: int, echo):
        self.model, self.cfg, self.seed, self.echo, self.k = model, cfg, seed, echo, 0
        self.lines: list[dict] = []

    def g(self) -> torch.Generator:
        """A fresh generator per use (the reference splits its key likewise)."""
        self.k += 1
        return torch.Generator().manual_seed(self.seed + self.k)

    def encode(self, x: Tensor) -> Tensor:
        """log p by the reference's pf_encoding_fn: Euler on the λ grid, one fresh Rademacher probe per step."""
        steps = self.cfg.get("encoder_steps", self.cfg["steps"])
        return log_prob(self.model, x, divergence="hutchinson", n_probes=1, solver="euler", steps=steps,
                        grid="lambda", generator=self.g()).detach().double().cpu()

    def say(self, text: str, value, fmt: str = "{:.2f}", tail: str = "", ours: bool = False) -> None:
        """Print one line (the reference's wording + our value) and record it."""
        shown = "nan" if value is None else fmt.format(value)
        self.echo(f"    ours: {text}{shown}{tail}" if ours else f"{text}{shown}{tail}")
        self.lines.append({"line": text.strip(), "value": value, "ours": ours, "note": tail.strip()})


def _corr(a: Tensor, b: Tensor) -> float:
    return float(np.corrcoef(a.double().cpu().numpy(), b.double().cpu().numpy())[0, 1])


def _hd_reference_split(model, x_T: Tensor, thr: float, points: int) -> tuple[Tensor, tuple[int, int]]:
    """The reference's hd_sampler with its step counts: PF-ODE λ_min → thr on int(N(λ_max − thr)/range) points,
    HD-ODE thr → λ_max on int(N(thr − λ_min)/range) points (N = steps + 1; Euler, λ grid)."""
    sch = model.schedule
    lo, hi = sch.lambda_min, sch.lambda_max
    n_pf = int(points * (hi - thr) / (hi - lo)) - 1
    n_hd = int(points * (thr - lo) / (hi - lo)) - 1
    x = x_T
    for dyn, a, b, n in ((PFODE(sch), lo, thr, n_pf), (HDODE(sch), thr, hi, n_hd)):
        if n > 0:
            x = integrate_ode(model, dyn, x, a, b, solver="euler", steps=n, grid="lambda", progress=False).x
    return x, (max(n_pf, 0), max(n_hd, 0))


def _sampling(run: _Run, x_T: Tensor) -> dict:
    """sampling.py: reverse PF-ODE log p against its re-encoding, reverse-SDE tracked log p against the encoding,
    the regular mean, then high-density sampling per threshold (their split, and ours beside)."""
    m, S = run.model, run.cfg["steps"]
    refs = reference_prints("sampling", 0, run.cfg)
    ode = sample_ode(m, x_T, steps=S, solver="euler", grid="lambda", track_logp=True, generator=run.g(), progress=False)
    assert ode.logp is not None  # tracked
    ode_lp, ode_enc = ode.logp.double().cpu(), run.encode(ode.x)
    run.say(refs[0], _corr(ode_lp, ode_enc), "{:.4f}")
    noise = run.seed + 1000
    em = sample_sde(m, x_T, steps=S, tracker="em", generator=torch.Generator().manual_seed(noise), progress=False)
    assert em.logp is not None  # tracked
    em_lp, em_enc = em.logp.double().cpu(), run.encode(em.x)
    run.say(refs[1], _corr(em_lp, em_enc), "{:.4f}", "  (their tracker: Euler–Maruyama on the augmented SDE)")
    cor = sample_sde(m, x_T, steps=S, tracker="corrected", generator=torch.Generator().manual_seed(noise),
                     progress=False)
    assert cor.logp is not None  # tracked
    cor_lp, cor_enc = cor.logp.double().cpu(), run.encode(cor.x)
    run.say("corrected tracker, same noise: correlation ", _corr(cor_lp, cor_enc), "{:.4f}", ours=True)
    gap = summary(cor_lp - cor_enc)
    run.say("SDE sampling: average tracked logp ", float(cor_lp.mean()), tail=f", ODE estimate of the same samples "
            f"{float(cor_enc.mean()):.2f} (difference {gap['mean']:+.2f} ± {gap['sem']:.2f})", ours=True)
    run.say(refs[2], float(ode_lp.mean()))
    res: dict[str, Any] = {"n": int(x_T.shape[0]), "steps": S, "rev_ode_logp": ode_lp.tolist(), "fwd_ode_logp": ode_enc.tolist(),
           "sde_em_logp": em_lp.tolist(), "sde_em_encoded": em_enc.tolist(), "sde_corrected_logp": cor_lp.tolist(),
           "sde_corrected_encoded": cor_enc.tolist(), "nfe": cor.nfe, "hd": {}, "hd_ours": {}}
    for thr, ref in zip(run.cfg["thresholds"], refs[3:]):
        x, (n1, n2) = _hd_reference_split(m, x_T, thr, S + 1)
        res["hd"][f"{thr:g}"] = float(run.encode(x).mean())
        run.say(ref, res["hd"][f"{thr:g}"], tail=".")
        p1, p2 = split_steps(m.schedule, thr, n1 + n2)
        lp = run.encode(sample_hd(m, x_T, thr, steps=n1 + n2, progress=False).x)
        res["hd_ours"][f"{thr:g}"] = summary(lp)
        run.say(f"HD sampling with threshold {thr:g}: average logp ", float(lp.mean()),
                tail=f" ± {res['hd_ours'][f'{thr:g}']['sem']:.2f} (proportional split: PF-ODE {p1} + HD-ODE {p2} "
                     f"steps; theirs {n1} + {n2})", ours=True)
    return res


def _guided(run: _Run, sampler, *args, **kw) -> tuple[Tensor, str]:
    """Samples of a guided sampler with our feasibility check; where it stops, the unchecked run (what the
    reference computes) and a note saying so."""
    try:
        return sampler(*args, search=False, progress=False, **kw).x, ""
    except InfeasibleGuidance as e:
        x = sampler(*args, check=False, search=False, progress=False, **kw).x
        return x, f"  (ours: flagged infeasible at λ = {e.lam:.3g}, {e.n_bad} of {e.n} samples)"


def _guidance(run: _Run, x_T: Tensor) -> dict:
    """guidance.py: prior guidance at 6 norm quantiles, density guidance at 6 q in [0.3, 0.7], stochastic density
    guidance with early and late noise at 3 q."""
    m, c = run.model, run.cfg
    D = x_T[0].numel()
    refs = reference_prints("guidance", D, c)
    res: dict[str, Any] = {"n": int(x_T.shape[0]), "prior": [], "density": [], "stochastic": []}
    for qn, ref in zip(_prior_qs(D, c["points"]), refs):
        lp = run.encode(sample_prior_guided(m, x_T, float(1.0 - qn), steps=c["steps"], progress=False).x)
        res["prior"].append({"q_norm": float(qn), "q": float(1.0 - qn), **summary(lp)})
        run.say(ref, float(lp.mean()), tail=f"  (our q = {1.0 - qn:.4g})")
    for q, ref in zip(np.linspace(0.3, 0.7, c["points"]), refs[c["points"]:]):
        x, note = _guided(run, sample_density_guided, m, x_T, float(q), steps=c["steps"])
        res["density"].append({"q": float(q), "flagged": bool(note), **summary(run.encode(x))})
        run.say(ref, res["density"][-1]["mean"], tail=note)
    base = run.encode(sample_density_guided(m, x_T, 0.5, steps=c["steps"], progress=False).x)
    res["density_q05"] = summary(base)
    run.say("Density guidance with q=0.5; average logp: ", float(base.mean()),
            tail="  (the unguided baseline: PF-ODE from the median-norm latent)", ours=True)
    sdg = [(q, w) for q in np.linspace(0.3, 0.7, c["sdg_points"]) for w in ("early", "late")]
    for (q, w), ref in zip(sdg, refs[2 * c["points"]:]):
        seed = run.seed + 2000 + int(round(1000 * q))  # early and late share their noise, as in the reference
        x, note = _guided(run, sample_stochastic_density_guided, m, x_T, float(q), w, steps=c["sdg_steps"],
                          generator=torch.Generator().manual_seed(seed))
        res["stochastic"].append({"q": float(q), "noise": w, "flagged": bool(note), **summary(run.encode(x))})
        run.say(ref, res["stochastic"][-1]["mean"], tail=note)
    return res


def _alignment(run: _Run, x_T: Tensor) -> dict:
    """score_alignment.py: Eq 12 against Eq 13 at λ = 1 on 1023 Euler steps."""
    m, c = run.model, run.cfg
    a = score_alignment(m, x_T, c["lambda"], "score", steps=c["steps"]).double().cpu()
    b = score_alignment(m, x_T, c["lambda"], "no_score", steps=c["steps"], generator=run.g()).double().cpu()
    corr = _corr(a, b)
    run.say(reference_prints("alignment", 0)[0], corr, "{:.4f}")
    run.say("score alignment holds (SA > 0) for ", 100 * alignment_fraction(a), "{:.1f}",
            f"% of latents by Eq 12, {100 * alignment_fraction(b):.1f}% by Eq 13", ours=True)
    return {"n": int(x_T.shape[0]), "steps": c["steps"], "correlation": corr, "eq12": a.tolist(), "eq13": b.tolist(),
            "fraction_eq12": alignment_fraction(a), "fraction_eq13": alignment_fraction(b)}


def reproduce(model, experiments=EXPERIMENTS, quick: bool = False, n: int | None = None, steps: int | None = None,
              seed: int = 0, out=None, echo=print, device=None) -> dict:
    """Run ``experiments`` at the reference's sizes (``quick``: small; ``n``/``steps`` override), ``echo`` their lines,
    write one JSON each into ``out``; returns experiment -> results (``lines``: the printed quantities in order)."""
    run_fn = {"sampling": _sampling, "guidance": _guidance, "alignment": _alignment}
    unknown = [e for e in experiments if e not in run_fn]
    if unknown:
        raise ValueError(f"unknown experiment(s) {unknown}; choose from {', '.join(EXPERIMENTS)}.")
    from ..data.loading import prior_latents

    results = {}
    for name in experiments:
        cfg = settings_for(name, quick, n, steps)
        x_T = prior_latents(model, cfg["n"], torch.Generator().manual_seed(seed)).to(device or "cpu")
        echo(f"# {FILES[name]} of the reference: n={cfg['n']}, "
             + ", ".join(f"{k}={v}" for k, v in cfg.items() if k not in ("n", "thresholds", "points", "sdg_points")))
        echo(CONVENTIONS[name])
        run = _Run(model, cfg, seed, echo)
        results[name] = {**run_fn[name](run, x_T), "settings": {k: list(v) if isinstance(v, tuple) else v
                                                                 for k, v in cfg.items()}, "lines": run.lines}
        if out is not None:
            write_json(Path(out) / f"{name}.json", results[name])
    return results
