"""Structure-seeing sample metrics (distributional/quality.py) on cases with known values; tolerances are the
metrics' own standard errors or exact binomial / closed-form values."""

import math

import pytest
import torch

from diffdensity.data.toy2d import sample_toy2d
from diffdensity.distributional.quality import (
    checkerboard_fraction,
    gaussians8_stats,
    kernel_stats,
    kid,
    over_sets,
    poly_mmd2,
    random_conv_features,
    range_bandwidths,
    structure_metrics,
)


def _g(seed):
    return torch.Generator().manual_seed(seed)


def test_task_metrics_of_exact_data_and_uniform():
    """Checkerboard data lie on the squares (fraction 1); uniform on [−2, 2]² gives 1/2 within 4 binomial SEs."""
    n = 20000
    assert checkerboard_fraction(sample_toy2d("checkerboard", n, _g(0))) == 1.0
    u = torch.rand(n, 2, generator=_g(1), dtype=torch.float64) * 4 - 2
    assert abs(checkerboard_fraction(u) - 0.5) < 4 * math.sqrt(0.25 / n)
    assert checkerboard_fraction(u + 10) == 0.0


def test_gaussians8_within_3sigma_is_the_chi2_mass():
    """For exact data P(‖z‖ < 3σ) = 1 − e^{−9/2} (χ² with 2 dof), all 8 modes covered; one mode covers one."""
    n = 20000
    s = gaussians8_stats(sample_toy2d("8gaussians", n, _g(0)))
    p = 1 - math.exp(-4.5)
    assert abs(s["within_3sigma"] - p) < 4 * math.sqrt(p * (1 - p) / n)
    assert s["modes_covered"] == 8
    one = torch.tensor([[math.sqrt(2.0), 0.0]]) + 0.15 * torch.randn(1000, 2, generator=_g(1))
    assert gaussians8_stats(one)["modes_covered"] == 1


def test_energy_distance_and_mmd_same_distribution_is_zero_within_se():
    """Two samples of one distribution: ED and every MMD² are 0 within 4 standard errors over sample sets."""
    x, y = sample_toy2d("checkerboard", 4000, _g(0)), sample_toy2d("checkerboard", 4000, _g(1))
    bws = range_bandwidths(y)
    assert bws[0.05] == pytest.approx(0.2, rel=0.01)  # range of the board is 4
    r = over_sets(lambda a, b: kernel_stats(a, b, bws.values()), x, y, sets=4)
    for k, v in r.items():
        assert abs(v["mean"]) < 4 * v["se"] + 1e-6, k


def test_rbf_mmd2_matches_gaussian_closed_form():
    """X ~ N(0, s²I), Y ~ N(μ, s²I) in d dims: MMD² = 2c(1 − exp(−‖μ‖²/(2(h² + 2s²)))), c = (h²/(h² + 2s²))^{d/2}."""
    d, s, h = 2, 1.0, 0.5
    mu = torch.tensor([0.5, 0.0], dtype=torch.float64)
    x = torch.randn(8000, d, generator=_g(0), dtype=torch.float64) * s
    y = torch.randn(8000, d, generator=_g(1), dtype=torch.float64) * s + mu
    c = (h**2 / (h**2 + 2 * s**2)) ** (d / 2)
    exact = 2 * c * (1 - math.exp(-float(mu @ mu) / (2 * (h**2 + 2 * s**2))))
    r = over_sets(lambda a, b: kernel_stats(a, b, [h]), x, y, sets=4)[f"mmd2@{h:g}"]
    assert abs(r["mean"] - exact) < 4 * r["se"]
    assert r["mean"] > 4 * r["se"]


def test_small_bandwidth_sees_the_squares_where_the_median_one_barely_does():
    """Uniform noise on [−2, 2]² vs the board: MMD² at h = 0.05·R = 0.2 is more than 10 SEs from 0, and the
    on-squares fraction of uniform noise is 1/2."""
    x = torch.rand(4000, 2, generator=_g(0), dtype=torch.float64) * 4 - 2
    y = sample_toy2d("checkerboard", 4000, _g(1))
    m = structure_metrics(x, y, "checkerboard", sets=4)
    assert m["mmd2@0.05R"]["mean"] > 10 * m["mmd2@0.05R"]["se"]
    assert abs(m["on_squares"]["mean"] - 0.5) < 0.05
    assert set(m["bandwidths"]) == {0.05, 0.1, 0.2, 0.5}


def test_kid_pixels_and_random_features():
    """KID of two samples of one image distribution is 0 within 4 SEs; a brightness shift is far above its SE.
    The random conv features are deterministic in the seed."""
    a = torch.rand(400, 1, 8, 8, generator=_g(0))
    b = torch.rand(400, 1, 8, 8, generator=_g(1))
    for feats in ("pixels", "random_conv"):
        r = kid(a, b, feats)
        assert abs(r["mean"]) < 4 * r["se"] + 1e-9, feats
        shifted = kid(a, b + 0.3, feats)
        assert shifted["mean"] > 4 * shifted["se"], feats
    f1, f2 = random_conv_features(a[:5], seed=3), random_conv_features(a[:5], seed=3)
    assert torch.equal(f1, f2) and f1.shape == (5, 128)
    assert poly_mmd2(a.flatten(1), a.flatten(1) + 1) > 0
    with pytest.raises(ValueError, match="features"):
        kid(a, b, "inception")
    with pytest.raises(ValueError, match="sets"):
        over_sets(poly_mmd2, a, b, sets=1)
