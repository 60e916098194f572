"""The analyses of diffdensity.analysis on inputs whose answers are known: the exact mixture oracle (log p in closed
form), hand-made images (compressed sizes), scipy's Gaussian filter, and a deliberately wrong score (§1.3 bias)."""

import json
import zlib

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import make_mixture
from scipy import ndimage, stats

import diffdensity as dd
from diffdensity.analysis import (
    blur_curve,
    compression_vs_logp,
    correlations,
    gaussian_blur,
    ode_vs_sde,
    png_size,
    threshold_sweep,
    to_uint8_images,
    zlib_size,
)

VP = dd.VP()


def exact_kw(m):
    """Exact divergence, dopri5 and the exact prior: dd.log_prob then equals the oracle's log p to ~1e-4."""
    return {
        "divergence": "exact",
        "solver": "dopri5",
        "rtol": 1e-7,
        "atol": 1e-7,
        "prior": lambda z: m.log_prob(z, VP.lambda_min),
    }


def test_threshold_sweep_values_on_the_oracle(tmp_path):
    m = make_mixture(2, K=3, seed=1, std=0.4).diffused(VP)
    xT = VP.sample_prior((48, 2), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    res = threshold_sweep(
        m,
        xT,
        (6, 2, 0),
        steps=64,
        solver="heun",
        log_prob_kw=exact_kw(m),
        generator=torch.Generator().manual_seed(1),
        out=tmp_path,
        progress=False,
    )
    for t in (6, 2, 0):
        x = res["samples"][f"hd {t:g}"]
        exact = m.log_prob(x, VP.lambda_max)
        assert abs(res["hd"][f"{t:g}"]["mean"] - float(exact.mean())) < 1e-3
        assert abs(res["hd"][f"{t:g}"]["std"] - float(exact.std())) < 1e-3
        # the same latents: the HD sampler with this threshold gives these samples
        direct = dd.sample_hd(m, xT, float(t), steps=64, solver="heun", progress=False).x
        assert torch.allclose(direct, x)
    means = [res["hd"][k]["mean"] for k in ("6", "2", "0")]
    assert means[0] < means[1] < means[2] and means[0] > res["pf_ode"]["mean"]
    assert abs(res["pf_ode"]["mean"] - float(m.log_prob(res["samples"]["pf_ode"], VP.lambda_max).mean())) < 1e-3
    saved = json.loads((tmp_path / "threshold_sweep.json").read_text())
    assert saved["hd"]["2"]["mean"] == pytest.approx(means[1]) and len(saved["sde"]["logp"]) == 48
    assert (tmp_path / "threshold_sweep.png").stat().st_size > 1000


def test_sizes_and_correlations_of_known_images():
    flat = np.full((2, 8, 8), 128, dtype=np.uint8)
    noise = np.random.default_rng(0).integers(0, 256, (2, 8, 8), dtype=np.uint8)
    assert (png_size(flat) < png_size(noise)).all() and (zlib_size(flat) < zlib_size(noise)).all()
    assert zlib_size(noise)[1] == len(zlib.compress(noise[1].tobytes(), 9))
    assert png_size(noise, level=0)[0] > png_size(noise, level=9)[0] - 1  # level 0 stores
    a = np.array([3.0, 1.0, 4.0, 1.5, 9.0, 2.6])
    c = correlations(a, -2 * a + 1)
    assert c["pearson"] == pytest.approx(-1) and c["spearman"] == pytest.approx(-1)
    c = correlations(a, a**3)  # monotone but not linear
    assert c["spearman"] == pytest.approx(1) and c["pearson"] == pytest.approx(stats.pearsonr(a, a**3)[0])
    with pytest.raises(ValueError, match="equal length"):
        correlations([1, 2, 3], [1, 2])


def test_compression_vs_logp_on_the_oracle(tmp_path):
    """Images in [−1, 1] on an 8×8 grid: detail (noise amplitude 1e-3..1e-1, log-spaced) lowers log p of an isotropic
    Gaussian model centred on a flat image and raises the compressed size, so both correlations are strongly
    negative (sizes measured 98..140 PNG bytes); the log p values are the oracle's."""
    shape = (1, 8, 8)
    m = dd.GaussianMixture(
        torch.zeros(1, *shape, dtype=torch.float64), torch.tensor([0.3], dtype=torch.float64)
    ).diffused(VP)
    g = torch.Generator().manual_seed(0)
    amp = torch.logspace(-3, -1, 12, dtype=torch.float64)[:, None, None, None]
    x = amp * torch.randn(12, *shape, generator=g, dtype=torch.float64)
    res = compression_vs_logp(m, {"a": x[:6], "b": x[6:]}, log_prob_kw=exact_kw(m), out=tmp_path)
    lp = res["sets"]["a"]["per_sample"]["logp"] + res["sets"]["b"]["per_sample"]["logp"]
    assert np.allclose(lp, m.log_prob(x, VP.lambda_max).numpy(), atol=1e-3)
    imgs = to_uint8_images(m, x)
    assert imgs.shape == (12, 8, 8)
    assert res["sets"]["a"]["per_sample"]["zlib"] == zlib_size(imgs[:6]).tolist()
    pooled = res["pooled"]
    assert pooled["logp_vs_zlib"]["spearman"] < -0.6 and pooled["logp_vs_png"]["spearman"] < -0.6
    assert pooled["logp_vs_png"]["pearson"] == pytest.approx(stats.pearsonr(lp, png_size(imgs))[0])
    assert (tmp_path / "compression.png").exists() and (tmp_path / "compression.json").exists()
    # given log p: no density evaluation at all
    given = compression_vs_logp(m, {"a": x}, logp={"a": -torch.as_tensor(png_size(imgs), dtype=torch.float64)})
    assert given["sets"]["a"]["logp_vs_png"]["pearson"] == pytest.approx(-1)


@pytest.mark.parametrize("sigma", [0.5, 1.0, 3.0])
def test_gaussian_blur_matches_scipy(sigma):
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ours = gaussian_blur(x, sigma).numpy()
    ref = np.stack([np.stack([ndimage.gaussian_filter(c, sigma, mode="mirror") for c in im]) for im in x.numpy()])
    assert np.abs(ours - ref).max() < 1e-12
    assert torch.allclose(gaussian_blur(torch.full((1, 8, 8), 0.3), sigma), torch.full((1, 8, 8), 0.3))
    assert torch.equal(gaussian_blur(x, 0.0), x)
    with pytest.raises(ValueError, match="sigma"):
        gaussian_blur(x, -1.0)


def test_blur_curve_on_a_gaussian_oracle(tmp_path):
    """Data N(0, c² I) on 1×6×6 images: blur shrinks ‖x‖ (the kernel averages), so log p rises monotonically for
    every image; the values are the oracle's log p of the blurred images."""
    shape = (1, 6, 6)
    m = dd.GaussianMixture(
        torch.zeros(1, *shape, dtype=torch.float64), torch.tensor([0.5], dtype=torch.float64)
    ).diffused(VP)
    x = m.mixture.sample(5, torch.Generator().manual_seed(0))
    sig = (0.0, 0.5, 1.0, 2.0)
    res = blur_curve(m, x, sig, log_prob_kw=exact_kw(m), out=tmp_path)
    exact = torch.stack([m.log_prob(gaussian_blur(x, s), VP.lambda_max) for s in sig])
    assert np.allclose(res["logp"], exact.numpy(), atol=1e-3)
    assert res["monotone_fraction"] == 1.0 and res["falling_fraction"] == 0.0
    assert np.all(np.diff(res["mean"]) > 0)
    assert (tmp_path / "blur.png").exists()


class ScaledScore:
    """c × the exact score: the approximate model of math.md §1.3 (its SDE-tracked log p is biased upward)."""

    def __init__(self, m, c):
        self.m, self.c, self.schedule, self.transform = m, c, m.schedule, None

    def score(self, x, lam):
        return self.c * self.m.score(x, lam)


def test_ode_vs_sde_gap_vanishes_for_the_exact_score_and_is_positive_for_a_wrong_one(tmp_path):
    D = 2
    m = make_mixture(D, seed=3, std=0.5).diffused(VP)
    xT = m.sample(64, VP.lambda_min, generator=torch.Generator().manual_seed(0))
    kw = {"divergence": "exact", "solver": "heun", "steps": 128}
    res = ode_vs_sde(
        {"exact": m, "scaled 0.8": ScaledScore(m, 0.8)},
        xT,
        steps=1024,
        log_prob_kw=kw,
        generator=torch.Generator().manual_seed(1),
        out=tmp_path,
    )
    ex, sc = res["models"]["exact"], res["models"]["scaled 0.8"]
    # exact score: tracked log p^SDE = log p^ODE up to the corrected tracker's order-1 error (RMS 0.15 at 512
    # steps, about half at 1024) and the Gaussian prior's ~5e-3
    assert abs(ex["gap"]["mean"]) < 0.05 and ex["gap"]["std"] < 0.12 and ex["correlation"]["pearson"] > 0.95
    exact = m.log_prob(res["samples"]["exact"], VP.lambda_max).numpy()
    assert np.allclose(ex["per_sample"]["pf_ode"], exact, atol=0.02)  # Gaussian prior vs exact p_λmin: ~5e-3
    # 0.8 × score: E X > 0 (math.md §1.3), many standard errors above zero
    assert sc["gap"]["mean"] > 5 * sc["gap"]["sem"] and sc["gap"]["mean"] > 0.1
    assert (tmp_path / "ode_sde.png").exists()


@pytest.mark.parametrize(
    "name,args,files",
    [
        ("threshold", ["--thresholds", "4,0", "--steps", "8"], ["threshold_sweep.json", "threshold_grid.png"]),
        ("png", ["--steps", "8"], ["compression.json", "compression.png"]),
        ("blur", ["--sigmas", "0,1"], ["blur.json", "blur.png"]),
        ("ode-sde", ["--steps", "8"], ["ode_sde.json", "ode_sde.png"]),
    ],
)
def test_analyze_cli_on_digits(tmp_path, name, args, files):
    from diffdensity.cli import main

    out = tmp_path / name
    r = CliRunner().invoke(
        main,
        [
            "analyze",
            name,
            "--n",
            "3",
            "--seed",
            "0",
            "--out",
            str(out),
            "--logp-steps",
            "2",
            "--logp-probes",
            "1",
            "--logp-solver",
            "heun",
            "--no-progress",
            *args,
        ],
    )
    assert r.exit_code == 0, r.output
    for f in files:
        assert (out / f).stat().st_size > 0
    assert "wrote" in r.output
