"""Whether each paper finding holds on the data of a panel: the claim, our number with its uncertainty, a verdict
computed from them, one line saying so and a compact table of the quantities that matter (used by the report).

Verdicts: a directional claim (an effect should be positive) *holds* when the effect exceeds twice its standard error
(or its 95 % interval excludes zero), *does not hold* when it is that far on the other side, and is *within noise*
otherwise; a panel whose JSON lacks the quantities is *not measured*. Works on the panels' JSON alone.
"""
from __future__ import annotations

from typing import Any

import math

__all__ = ["VERDICTS", "finding", "findings", "directional", "interval_verdict", "spearman_interval", "paired"]

VERDICTS = ("holds", "does not hold", "within noise", "not measured", "measured")
Z = 2.0  # effects beyond Z standard errors count as resolved (≈ 95 %)


def directional(effect: float, se: float | None, sign: int = 1) -> str:
    """Verdict on the claim sign·effect > 0 from an effect and its standard error."""
    if effect is None or not math.isfinite(effect):
        return "not measured"
    se = se if se is not None and math.isfinite(se) else 0.0
    e = sign * effect
    return "holds" if e > Z * se else "does not hold" if e < -Z * se else "within noise"


def interval_verdict(lo: float, hi: float, sign: int = 1) -> str:
    """Verdict on sign·θ > 0 from a 95 % interval [lo, hi] of θ."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "not measured"
    lo, hi = sorted((sign * lo, sign * hi))
    return "holds" if lo > 0 else "does not hold" if hi < 0 else "within noise"


def spearman_interval(rho: float, n: int) -> tuple[float, float]:
    """95 % interval of a Spearman ρ by Fisher's z with the Bonett–Wright standard error √((1 + ρ²/2)/(n − 3))."""
    if n < 4 or not math.isfinite(rho) or abs(rho) >= 1:
        return float("nan"), float("nan")
    z, se = math.atanh(rho), math.sqrt((1 + rho * rho / 2) / (n - 3))
    return math.tanh(z - 1.96 * se), math.tanh(z + 1.96 * se)


def paired(a: list, b: list) -> tuple[float, float]:
    """Mean and standard error of a − b over paired values."""
    d = [x - y for x, y in zip(a, b)]
    n = len(d)
    if n == 0:
        return float("nan"), float("nan")
    m = sum(d) / n
    sd = math.sqrt(sum((x - m) ** 2 for x in d) / (n - 1)) if n > 1 else float("nan")
    return m, sd / math.sqrt(n)


def _pm(v, se=None, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.{digits}f}" if se is None or not math.isfinite(se) else f"{v:.{digits}f} ± {se:.{digits}f}"


def _result(panel, claim, source, measure, number, verdict, line, header, rows) -> dict:
    return {"panel": panel, "claim": claim, "source": source, "measure": measure, "number": number,
            "verdict": verdict, "line": line, "table": {"header": header, "rows": rows}}


def _pick(data: dict, *keys) -> dict | None:
    """The first JSON of a panel (stem -> object) holding every key (the object itself if it is one)."""
    if all(k in data for k in keys):
        return data
    return next((d for d in data.values() if isinstance(d, dict) and all(k in d for k in keys)), None)


def _missing(panel, claim, source) -> dict:
    return _result(panel, claim, source, "", "–", "not measured",
                   "not measured: this panel's JSON lacks the quantities the verdict needs.", [], [])


def _mixture(data: dict, model: str) -> dict:
    claim = "log p tracked along the reverse SDE at no extra cost equals the exact log p (Theorem 1)"
    d = _pick(data, "corrected", "em")
    if d is None:
        return _missing("mixture", claim, "ICLR 2025, Thm 1")
    c = d["corrected"]
    se = c.get("sem")
    err = c["mean_error"]
    verdict = "holds" if abs(err) <= 0.1 + Z * (se or 0.0) else "does not hold"
    rows = [[k, _pm(d[k]["mean_error"], d[k].get("sem")), _pm(d[k]["mean_abs_error"]), d[k]["nfe"]]
            for k in ("corrected", "em")]
    if "pf_ode_log_prob" in d:
        rows.append(["PF-ODE log_prob", "–", f"{d['pf_ode_log_prob']['mean_abs_error']:.1e}", d["pf_ode_log_prob"]["nfe"]])
    line = (f"the corrected tracker's mean error is {_pm(err, se, 3)} nats on an exact 2-D mixture "
            f"({'within' if verdict == 'holds' else 'outside'} 0.1 nats + 2 s.e.); the authors' rule: "
            f"{_pm(d['em']['mean_error'], d['em'].get('sem'), 3)}.")
    return _result("mixture", claim, "ICLR 2025, Thm 1", "mean tracked − exact log p (nats)", _pm(err, se, 3),
                   verdict, line, ["tracker", "mean error", "mean |error|", "NFE"], rows)


def _threshold(data: dict, model: str) -> dict:
    claim = "an earlier switch to the high-density ODE (lower threshold λ) gives higher log p (Algorithm 1)"
    d = _pick(data, "hd", "pf_ode", "thresholds")
    if d is None or not d["thresholds"]:
        return _missing("threshold", claim, "ICLR 2025, Alg. 1")
    low = f"{min(d['thresholds']):g}"
    eff, se = paired(d["hd"][low].get("logp", []), d["pf_ode"].get("logp", []))
    verdict = directional(eff, se)
    rows = [[f"λ = {k}", _pm(v["mean"], v.get("sem"))] for k, v in d["hd"].items()]
    rows += [["PF-ODE", _pm(d["pf_ode"]["mean"], d["pf_ode"].get("sem"))]]
    rows += [["reverse SDE", _pm(d["sde"]["mean"], d["sde"].get("sem"))]] if "sde" in d else []
    line = (f"at λ = {low} the samples' log p is {_pm(eff, se)} nats above the PF-ODE's from the same latents "
            f"(paired, n = {d['pf_ode'].get('n', '?')}).")
    return _result("threshold", claim, "ICLR 2025, Alg. 1", f"log p(HD, λ={low}) − log p(PF-ODE)", _pm(eff, se),
                   verdict, line, ["sampler", "mean log p ± s.e."], rows)


def _png(data: dict, model: str) -> dict:
    claim = "log p falls as image detail (PNG size) grows: a negative correlation"
    d = _pick(data, "sets")
    if d is None:
        return _missing("png", claim, "ICLR 2025, Fig. 6")
    from scipy import stats

    rows: list = []
    lp: list[float] = []
    png: list[float] = []
    for name, s in d["sets"].items():
        ps = s.get("per_sample", {})
        lp, png = lp + ps.get("logp", []), png + ps.get("png", [])
        r = s["logp_vs_png"]
        lo, hi = spearman_interval(r["spearman"], r["n"])
        rows.append([name, r["n"], f"{r['spearman']:.2f} [{lo:.2f}, {hi:.2f}]", f"{r['pearson']:.2f}"])
    if len(lp) < 4:
        return _missing("png", claim, "ICLR 2025, Fig. 6")
    c = {"spearman": float(stats.spearmanr(lp, png)[0]), "pearson": float(stats.pearsonr(lp, png)[0]), "n": len(lp)}
    lo, hi = spearman_interval(c["spearman"], len(lp))
    rows.append(["pooled", c["n"], f"{c['spearman']:.2f} [{lo:.2f}, {hi:.2f}]", f"{c['pearson']:.2f}"])
    number = f"ρ = {c['spearman']:.2f} [{lo:.2f}, {hi:.2f}]"
    line = f"Spearman ρ of log p with PNG size, pooled over {c['n']} images: {number} (95 % interval)."
    return _result("png", claim, "ICLR 2025, Fig. 6", "Spearman ρ(log p, PNG bytes)", number,
                   interval_verdict(lo, hi, sign=-1), line, ["set", "n", "Spearman ρ [95 %]", "Pearson r"], rows)


def _blur(data: dict, model: str) -> dict:
    claim = "Blur raises log-density: blurring an image increases its estimated density"
    d = _pick(data, "sigmas", "logp")
    if d is None or len(d["sigmas"]) < 2:
        return _missing("blur", claim, "ICLR 2025, poster Fig. 5")
    lp = d["logp"]
    eff, se = paired(lp[-1], lp[0])
    n = len(lp[0])
    rising = round(d.get("monotone_fraction", float("nan")) * n)
    rows = [[f"σ = {s:g}", _pm(sum(r) / n, paired(r, [0.0] * n)[1])] for s, r in zip(d["sigmas"], lp)]
    rows.append(["images whose log p never falls", f"{rising} of {n}"])
    line = (f"blur σ = {d['sigmas'][-1]:g} changes log p by {_pm(eff, se)} nats on average; "
            f"{rising} of {n} images rise at every step.")
    return _result("blur", claim, "ICLR 2025, poster Fig. 5", f"log p(σ={d['sigmas'][-1]:g}) − log p(σ=0)",
                   _pm(eff, se), directional(eff, se), line, ["blur", "mean log p ± s.e."], rows)


def _fig4(data: dict, model: str) -> dict:
    claim = "with a learned score the SDE-tracked log p exceeds the PF-ODE log p of the same samples (E X ≥ 0)"
    d = _pick(data, "models")
    if d is None or not d["models"]:
        return _missing("fig4", claim, "ICLR 2025, Fig. 4")
    rows = [[name, _pm(r["gap"]["mean"], r["gap"].get("sem")), _pm(r["sde_tracked"]["mean"]), _pm(r["pf_ode"]["mean"])]
            for name, r in d["models"].items()]
    name = model if model in d["models"] else next(iter(d["models"]))
    g = d["models"][name]["gap"]
    line = f"{name}: tracked − PF-ODE log p = {_pm(g['mean'], g.get('sem'))} nats (n = {g.get('n', '?')})."
    return _result("fig4", claim, "ICLR 2025, Fig. 4", "tracked − PF-ODE log p (nats)", _pm(g["mean"], g.get("sem")),
                   directional(g["mean"], g.get("sem")), line, ["model", "gap ± s.e.", "tracked", "PF-ODE"], rows)


def _guidance_kind(d: dict, kind: str) -> tuple[float, float, str]:
    ok = [r for r in d["results"].get(kind, []) if "mean" in r]
    if len(ok) < 2:
        return float("nan"), float("nan"), ""
    lo, hi = min(ok, key=lambda r: r["q"]), max(ok, key=lambda r: r["q"])
    eff = hi["mean"] - lo["mean"]
    return eff, math.hypot(hi.get("sem", 0.0), lo.get("sem", 0.0)), f"q {lo['q']:g} → {hi['q']:g}"


def _guidance(data: dict, model: str) -> list[dict]:
    d = _pick(data, "results")
    claims = {"density": "density guidance sets log p: higher q, higher log p (Eq. 23)",
              "prior": "prior guidance (the latent's norm) also controls log p: higher q, higher log p"}
    if d is None:
        return [_missing("guidance", c, "ICML 2025") for c in claims.values()]
    qs = sorted({r["q"] for rows in d["results"].values() for r in rows})
    header = ["q"] + list(d["results"])
    rows = [[f"{q:g}"] + [next((_pm(r["mean"], r.get("sem")) if "mean" in r else "infeasible"
                                for r in d["results"][k] if r["q"] == q), "–") for k in d["results"]] for q in qs]
    out = []
    for kind, claim in claims.items():
        eff, se, span = _guidance_kind(d, kind)
        line = (f"{kind} guidance, {span}: mean log p changes by {_pm(eff, se)} nats." if span else
                f"{kind} guidance: fewer than two feasible q, no trend to judge.")
        out.append(_result("guidance", claim, "ICML 2025, Eq. 23" if kind == "density" else "ICML 2025, §3",
                           f"mean log p, {span or 'q range'}", _pm(eff, se), directional(eff, se), line,
                           header, rows if kind == "density" else []))
    return out


def _distributional(data: dict, model: str) -> dict:
    claim = "a distributional (energy-score) generator keeps its quality at few steps, unlike regression"
    d = _pick(data, "rows")
    if d is None or not d["rows"]:
        return _missing("distributional", claim, "De Bortoli et al. 2025")
    by = {(r["model"], r["nfe"]): r["mmd"] for r in d["rows"]}
    nfes = sorted({r["nfe"] for r in d["rows"]})
    rows = [[n, _pm(by.get(("distributional", n)), digits=4), _pm(by.get(("regression", n)), digits=4)] for n in nfes]
    a, b = by.get(("distributional", nfes[0])), by.get(("regression", nfes[0]))
    if a is None or b is None:
        return _missing("distributional", claim, "De Bortoli et al. 2025")
    line = (f"at {nfes[0]} step(s) the MMD to held-out data is {a:.4f} (distributional) against {b:.4f} "
            "(regression); one estimate each, no error bar.")
    return _result("distributional", claim, "De Bortoli et al. 2025", f"MMD ratio regression/distributional, "
                   f"{nfes[0]} step(s)", f"{b / a:.2f}×" if a else "–", "holds" if a < b else "does not hold", line,
                   ["NFE", "MMD distributional", "MMD regression"], rows)


def _likelihood(data: dict, model: str) -> dict:
    d = _pick(data, "bits_per_dim")
    if d is None:
        return _missing("likelihood", "held-out bits/dim", "")
    number = _pm(d["bits_per_dim"], d.get("sem"), 3)
    line = f"{d.get('model', model)}: {number} bits/dim on {d.get('n', '?')} held-out images."
    rows = [["this run", number, d.get("n", "–")]]
    if d.get("model_card"):
        rows.append(["model card", d["model_card"], "–"])
        line += f" Model card: {d['model_card']}."
    return _result("likelihood", f"held-out bits/dim of {d.get('model', model)} (a measurement, not a claim)", "",
                   "bits/dim", number, "measured", line, ["", "bits/dim", "n"], rows)


def _run(data: dict, model: str) -> dict:
    d = _pick(data, "configuration") or {}
    c = d.get("configuration", {})
    keys = ("dataset", "root", "objective", "net", "preset", "steps", "batch_size", "lr", "weighting", "seed")
    rows = [[k, str(c[k])] for k in keys if c.get(k) not in (None, "", {})]
    loss = d.get("final_loss_per_dim")
    rows.append(["final training loss per dim", _pm(loss, digits=4)])
    card = d.get("model_card")
    rows += [[f"model card: {k}", _pm(v, digits=4) if isinstance(v, float) else str(v)] for k, v in card.items()] \
        if isinstance(card, dict) else [["model card", str(card)]]
    line = f"trained on {c.get('dataset', '?')} for {c.get('step', c.get('steps', '?'))} steps."
    return _result("run", f"the model under study: {model}", "", "training", f"loss/dim {_pm(loss, digits=4)}",
                   "measured", line, ["setting", "value"], rows)


_FINDINGS = {"run": _run, "mixture": _mixture, "threshold": _threshold, "png": _png, "blur": _blur, "fig4": _fig4,
             "guidance": _guidance, "distributional": _distributional, "likelihood": _likelihood}


def finding(panel: str, data: dict, model: str = "") -> list[dict]:
    """The findings of one panel (``data``: its JSON, or stem -> JSON for several files); [] for panels without."""
    fn = _FINDINGS.get(panel)
    if fn is None:
        return []
    out: Any = fn(data, model)
    return out if isinstance(out, list) else [out]


def findings(panels: dict, model: str = "") -> list[dict]:
    """Every finding of ``panels`` (panel name -> JSON), in the panels' order."""
    return [f for name, data in panels.items() for f in finding(name, data, model)]
