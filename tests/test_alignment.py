"""Score alignment (Eq 12, Eq 13) and the prior-guidance identity against the exact oracle (math.md §2.1, §2.2, §2.8)."""

import pytest
import torch
from conftest import make_mixture

import diffdensity as dd
from diffdensity.alignment import alignment_fraction, prior_guidance_identity, score_alignment
from diffdensity.dynamics import PFODE
from diffdensity.integrate import integrate_ode

VP = dd.VP()
TIGHT = dict(solver="dopri5", rtol=1e-9, atol=1e-9)


def test_eq12_eq13_and_finite_difference_agree():
    """math.md §2.8 item 5 on a 2-D mixture (λ_target = 1, dopri5): Eq 12, Eq 13 with the exact ∇div u and a central
    finite difference of x_T ↦ log p_t(Φ(x_T)) (exact log p) along the prior score agree to 1e-4 relative
    (measured 3e-9)."""
    m = make_mixture(2, seed=1, scale=2.0).diffused(VP)
    xT = VP.sample_prior((8, 2), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    lt = 1.0
    sa12 = score_alignment(m, xT, lt, "score", **TIGHT)
    sa13 = score_alignment(m, xT, lt, "no_score", divergence="exact", **TIGHT)
    v0 = m.score(xT, VP.lambda_min)

    def F(y):
        out = integrate_ode(m, PFODE(VP), y, VP.lambda_min, lt, solver="dopri5", rtol=1e-11, atol=1e-11)
        return m.log_prob(out.x, lt)

    eps = 1e-4
    fd = (F(xT + eps * v0) - F(xT - eps * v0)) / (2 * eps)
    assert fd.abs().min() > 1e-2  # no near-zero value makes the relative test vacuous
    assert ((sa12 - fd) / fd).abs().max() < 1e-4
    assert ((sa13 - fd) / fd).abs().max() < 1e-4


def test_hutchinson_eq13_correlates_with_eq12():
    """Eq 13 by Hutchinson (one fresh Rademacher probe per step) against Eq 12 over 128 latents, D = 64, 256 Euler
    steps: correlation > 0.9 (measured 0.999; the reference reports this correlation in its demo)."""
    m = make_mixture(64, seed=2).diffused(VP)
    xT = VP.sample_prior((128, 64), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a = score_alignment(m, xT, 1.0, "score", steps=256)
    b = score_alignment(m, xT, 1.0, "no_score", steps=256, generator=torch.Generator().manual_seed(1))
    assert torch.corrcoef(torch.stack([a, b]))[0, 1] > 0.9
    assert not torch.equal(a, b)
    assert 0.0 <= alignment_fraction(a) <= 1.0


def test_prior_guidance_identity_by_finite_differences():
    """math.md §2.1 / §2.8 item 6: d/dc log p_t(Φ(c x_T)) = −(σ_T²/c) SA(c x_T) for the Gaussian prior, log p_t being
    the PF-ODE's own log N(y; 0, σ_T²) − ∫div u. With Euler, Eq 13 is the exact derivative of the discretised
    flow and integral, so the identity holds to the finite difference's O(ε²) at any step count."""
    m = make_mixture(3, seed=4, scale=1.5).diffused(VP)
    xT = VP.sample_prior((6, 3), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for c in (0.8, 1.0, 1.3):
        fd, pred = prior_guidance_identity(m, xT, 1.0, c=c, steps=64)
        assert pred.abs().min() > 1e-2
        assert ((fd - pred) / pred).abs().max() < 1e-6


def test_gaussian_data_always_aligned():
    """For Gaussian data the flow is affine and isotropic, so SA > 0 for every latent (fraction 1)."""
    m = dd.GaussianMixture(
        torch.tensor([[0.5, -1.0, 2.0]], dtype=torch.float64), torch.tensor([0.3], dtype=torch.float64)
    ).diffused(VP)
    xT = VP.sample_prior((32, 3), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sa = score_alignment(m, xT, 2.0, steps=64)
    assert alignment_fraction(sa) == 1.0


def test_validation():
    m = make_mixture(2).diffused(VP)
    xT = VP.sample_prior((2, 2), dtype=torch.float64)
    with pytest.raises(ValueError, match="method"):
        score_alignment(m, xT, 1.0, method="both")
    with pytest.raises(ValueError, match="lambda_max"):
        score_alignment(m, xT, VP.lambda_min)
    with pytest.raises(ValueError, match="prior"):
        score_alignment(m, xT, 1.0, prior="laplace")
    with pytest.raises(ValueError, match="steps"):
        score_alignment(m, xT, 1.0, steps=0)


def test_cli_align(tmp_path):
    """`diffdensity align`: the reference script's summary line, the fraction aligned, JSON, npz and a plot."""
    import json

    import numpy as np
    from click.testing import CliRunner

    from diffdensity.cli import main

    out = tmp_path / "a"
    res = CliRunner().invoke(main, ["align", "toy2d-moons", "--n", "16", "--steps", "16", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "Correlation of score alignment with and without score:" in res.output
    summ = json.loads((out / "summary.json").read_text())
    assert -1 <= summ["correlation"] <= 1 and 0 <= summ["fraction_aligned"] <= 1
    arr = np.load(out / "alignment.npz")
    assert arr["score"].shape == arr["no_score"].shape == (16,)
    assert (out / "alignment.png").is_file()
