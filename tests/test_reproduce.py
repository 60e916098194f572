"""`diffdensity reproduce` prints what the reference's three __main__ blocks print (sampling.py, guidance.py,
score_alignment.py of rafalkarczewski/diffusion-density), in their order, with our values; the values are the
library's own functions at the reference's settings."""

import re

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from scipy.stats import chi

import diffdensity as dd
from diffdensity.analysis.reproduce import QUICK, REFERENCE, reproduce, settings_for
from diffdensity.cli import main
from diffdensity.data.loading import prior_latents

# the reference's printouts up to the value, in order (read off its __main__ blocks; D = 2 for the prior q's)
SAMPLING = [
    "Logp correlation betwen Rev-PF-ODE and Fwd-PF-ODE: ",
    "Logp correlation betwen Rev-SDE and Fwd-PF-ODE: ",
    "Regular sampling mean logp: ",
] + [f"LogSNR threshold: {t}. HD sampling mean logp: " for t in ("8.0", "6.0", "4.0", "2.0")]
DENSITY_Q = ("0.3", "0.38", "0.46", "0.54", "0.62", "0.7")
SDG = [
    f"{w} noise stochastic density guidance with q={q}; average logp: "
    for q in ("0.3", "0.5", "0.7")
    for w in ("Early", "Late")
]
ALIGNMENT = ["Correlation of score alignment with and without score: "]


@pytest.fixture(scope="module")
def run():
    lines = []
    model = dd.load("toy2d-moons")
    return model, reproduce(model, quick=True, echo=lines.append), lines


def _reference_lines(lines):
    return [ln for ln in lines if not ln.startswith(("#", "    ours:"))]


def test_every_reference_line_in_order(run):
    _, res, lines = run
    printed = _reference_lines(lines)
    prior_q = chi.cdf(np.linspace(chi.ppf(0.001, df=2), chi.ppf(0.999, df=2), 6), df=2)
    expected = (
        SAMPLING
        + [f"Prior guidance with q={q:g}; average logp: " for q in prior_q]
        + [f"Density guidance with q={q}; average logp: " for q in DENSITY_Q]
        + SDG
        + ALIGNMENT
    )
    assert len(printed) == len(expected) == 26
    for line, prefix in zip(printed, expected):
        assert line.startswith(prefix), (line, prefix)
        assert re.match(r"-?\d+\.\d+|nan", line[len(prefix) :]), line  # a value follows
    # the conventions are said once per experiment, our variants are marked
    assert sum(ln.startswith("# conventions") for ln in lines) == 3
    assert any("ours: HD sampling with threshold 4: average logp" in ln for ln in lines)
    assert any("ours: corrected tracker" in ln for ln in lines)


def test_sizes_are_the_references():
    assert REFERENCE["sampling"]["n"] == 64 and REFERENCE["sampling"]["steps"] == 1023  # 1024 grid points
    assert REFERENCE["guidance"]["steps"] == 63 and REFERENCE["guidance"]["sdg_steps"] == 127
    assert REFERENCE["guidance"]["encoder_steps"] == 1023
    assert REFERENCE["alignment"] == {"n": 128, "steps": 1023, "lambda": 1.0}
    assert settings_for("alignment", quick=True)["steps"] == QUICK["alignment"]["steps"]
    assert settings_for("guidance", n=5, steps=10)["sdg_steps"] == 20


def test_values_are_the_librarys(run):
    """Recomputed by the library's own functions from the same latents and seeds."""
    model, res, _ = run
    cfg = settings_for("sampling", quick=True)
    x_T = prior_latents(model, cfg["n"], torch.Generator().manual_seed(0))
    ode = dd.sample_ode(
        model,
        x_T,
        steps=cfg["steps"],
        solver="euler",
        grid="lambda",
        track_logp=True,
        generator=torch.Generator().manual_seed(1),
    )
    lines = {ln["line"]: ln["value"] for ln in res["sampling"]["lines"]}
    assert lines["Regular sampling mean logp:"] == pytest.approx(float(ode.logp.mean()), abs=1e-6)
    enc = dd.log_prob(
        model,
        ode.x,
        divergence="hutchinson",
        n_probes=1,
        solver="euler",
        steps=cfg["steps"],
        grid="lambda",
        generator=torch.Generator().manual_seed(2),
    )
    assert lines["Logp correlation betwen Rev-PF-ODE and Fwd-PF-ODE:"] == pytest.approx(
        float(np.corrcoef(ode.logp.double().numpy(), enc.double().numpy())[0, 1]), abs=1e-9
    )
    cfg = settings_for("alignment", quick=True)
    x_T = prior_latents(model, cfg["n"], torch.Generator().manual_seed(0))
    a = dd.score_alignment(model, x_T, 1.0, "score", steps=cfg["steps"])
    b = dd.score_alignment(model, x_T, 1.0, "no_score", steps=cfg["steps"], generator=torch.Generator().manual_seed(1))
    assert res["alignment"]["lines"][0]["value"] == pytest.approx(float(np.corrcoef(a.numpy(), b.numpy())[0, 1]))
    # the first prior-guidance line: their norm quantile 0.001 is our q = 0.999; log p by their encoder
    g = settings_for("guidance", quick=True)
    x_T = prior_latents(model, g["n"], torch.Generator().manual_seed(0))
    x = dd.sample_prior_guided(model, x_T, 1 - 0.001, steps=g["steps"]).x
    lp = dd.log_prob(
        model,
        x,
        divergence="hutchinson",
        n_probes=1,
        solver="euler",
        steps=g["encoder_steps"],
        grid="lambda",
        generator=torch.Generator().manual_seed(1),
    )
    assert res["guidance"]["lines"][0]["value"] == pytest.approx(float(lp.mean()), abs=1e-6)
    dens = [r for r in res["guidance"]["lines"] if r["line"].startswith("Density guidance")]
    assert [round(r["value"], 6) for r in dens[:6]] == [round(r["mean"], 6) for r in res["guidance"]["density"]]
    assert [r["q"] for r in res["guidance"]["prior"]] == pytest.approx(
        [1 - q for q in chi.cdf(np.linspace(chi.ppf(0.001, df=2), chi.ppf(0.999, df=2), 6), df=2)]
    )


def test_cli_quick(tmp_path):
    res = CliRunner().invoke(
        main, ["reproduce", "alignment", "--quick", "--model", "toy2d-moons", "--out", str(tmp_path)]
    )
    assert res.exit_code == 0, res.output
    assert "Correlation of score alignment with and without score: " in res.output
    assert (tmp_path / "alignment.json").is_file()
