"""Distributional diffusion (math.md §3): bridge, scoring rules, Algorithm 2 with the exact posterior, metrics,
generator models (save/load), the training objective and the CLI group."""

import math

import pytest
import torch
from click.testing import CliRunner

import diffdensity as dd
from diffdensity.distributional import (
    GeneratorMLP,
    GeneratorModel,
    GeneratorUNet,
    MeanGenerator,
    OracleGenerator,
    bridge,
    energy_distance,
    energy_score,
    kernel_score,
    median_bandwidth,
    mmd2,
    sample_distributional,
    time_grid,
)
from diffdensity.objectives.distributional import paper_config, sample_lambda

from conftest import make_mixture


def _as(sch, lam):
    a, s = sch.alpha_sigma(torch.tensor(lam, dtype=torch.float64))
    return float(a), float(s)


PAIRS = [(-6.0, -2.0), (-1.0, 0.5), (0.0, 4.0), (-9.0, 9.0), (2.0, 2.5)]  # (λ_t, λ_s), λ_t < λ_s (t noisier)


# ------------------------------------------------------------------------------------------------ bridge (§3.2)
@pytest.mark.parametrize("lam_t,lam_s", PAIRS)
def test_bridge_limits_ddpm_ddim(schedule, lam_t, lam_s):
    """ε = 1: the DDPM posterior q(x_s | x_t, x₀); ε = 0: DDIM; both in closed form (math.md §3.2)."""
    a_t, s_t = _as(schedule, lam_t)
    a_s, s_s = _as(schedule, lam_s)
    a_ts = a_t / a_s
    s2_ts = s_t**2 - a_ts**2 * s_s**2  # σ²_{t|s}
    a, b, var = bridge(a_s, s_s, a_t, s_t, 1.0)
    assert float(a) == pytest.approx(a_ts * s_s**2 / s_t**2, rel=1e-12)
    assert float(b) == pytest.approx(a_s * s2_ts / s_t**2, rel=1e-10)
    assert float(var) == pytest.approx(s_s**2 * s2_ts / s_t**2, rel=1e-9, abs=1e-15)
    a, b, var = bridge(a_s, s_s, a_t, s_t, 0.0)
    assert float(a) == pytest.approx(s_s / s_t, rel=1e-12)  # x_s = α_s x₀ + σ_s (x_t − α_t x₀)/σ_t
    assert float(b) == pytest.approx(a_s - a_t * s_s / s_t, rel=1e-10, abs=1e-14)
    assert float(var) == 0.0


@pytest.mark.parametrize("churn", [0.0, 0.3, 0.7, 1.0])
def test_bridge_keeps_the_marginal_and_nonnegative_variance(schedule, churn):
    """x_t ~ N(α_t x₀, σ_t²) ⇒ x_s ~ N(α_s x₀, σ_s²) for every ε (a α_t + b = α_s, a² σ_t² + Σ = σ_s²), Σ ≥ 0.

    A σ² ratio in place of σ in r_{i,j} (the third-party bug of math.md §3.2) breaks both identities."""
    lams = torch.linspace(schedule.lambda_min, schedule.lambda_max, 9).tolist()
    for i, lt in enumerate(lams):
        for ls in lams[i + 1 :]:
            a_t, s_t = _as(schedule, lt)
            a_s, s_s = _as(schedule, ls)
            a, b, var = bridge(a_s, s_s, a_t, s_t, churn)
            assert float(var) >= 0
            assert float(a) * a_t + float(b) == pytest.approx(a_s, rel=1e-9, abs=1e-12)
            assert float(a) ** 2 * s_t**2 + float(var) == pytest.approx(s_s**2, rel=1e-9, abs=1e-14)
    # at s = 0 (σ_s = 0, α_s = 1) the step returns x₀
    a, b, var = bridge(1.0, 0.0, 0.5, 0.5, churn)
    assert (float(a), float(b), float(var)) == (0.0, 1.0, 0.0)


def test_bridge_rejects_bad_churn():
    with pytest.raises(ValueError, match="churn"):
        bridge(1.0, 0.5, 0.5, 0.8, 1.5)


def test_time_grid():
    sch = dd.FlowMatching()
    nodes = time_grid(sch, 4, "t")
    ts = [s for _, _, s in nodes]  # FlowMatching: t = σ
    t_K = 1 / (1 + math.exp(-5.0))
    assert ts == pytest.approx([t_K, 0.75 * t_K, 0.5 * t_K, 0.25 * t_K, 0.0], rel=1e-9, abs=1e-12)
    assert nodes[-1][0] == math.inf and nodes[-1][1] == 1.0
    lam_nodes = time_grid(sch, 4, "lambda")
    assert [n[0] for n in lam_nodes[:4]] == pytest.approx([-10.0, -5.0, 0.0, 5.0])
    quad = [s for _, _, s in time_grid(sch, 4, "quadratic")]
    assert quad == pytest.approx([t_K, 0.5625 * t_K, 0.25 * t_K, 0.0625 * t_K, 0.0], rel=1e-9, abs=1e-12)
    cubic = [s for _, _, s in time_grid(sch, 4, "cubic")]
    assert cubic == pytest.approx([t_K, 0.421875 * t_K, 0.125 * t_K, 0.015625 * t_K, 0.0], rel=1e-9, abs=1e-12)
    with pytest.raises(ValueError, match="spacing"):
        time_grid(sch, 4, "log")
    with pytest.raises(ValueError, match="steps"):
        time_grid(sch, 0)


# ------------------------------------------------------------------------------------------------ Algorithm 2 exactness
def test_algorithm2_with_exact_posterior_is_exact():
    """With x̂₀ drawn from the exact posterior, Algorithm 2 samples p₀ exactly for any K and ε (math.md §3.9 item 2):
    MMD² to data is zero within the Monte-Carlo error of the unbiased estimator (its null spread, measured on
    independent exact sample sets); the mean-only denoiser (DDIM/DDPM) is far off at K = 1."""
    torch.manual_seed(0)
    gm = dd.GaussianMixture(
        torch.tensor([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.0]], dtype=torch.float64),
        torch.tensor([0.3, 0.5, 0.4], dtype=torch.float64),
    )
    sch = dd.FlowMatching()
    m = gm.diffused(sch)
    g = torch.Generator().manual_seed(1)
    n = 1536
    data = gm.sample(n, g)
    h = median_bandwidth(data)
    null = torch.tensor([mmd2(gm.sample(n, g), data, h) for _ in range(6)])
    tol = 5 * float(null.pow(2).mean().sqrt())  # 5 × the null RMS of MMD²_u
    x_T = m.sample(n, sch.lambda_min, g)  # the exact marginal at λ_min
    for K in (1, 2, 4):
        for churn in (0.0, 0.5, 1.0):
            out = sample_distributional(OracleGenerator(m), x_T, K, churn, generator=g)
            assert out.nfe == K
            assert abs(mmd2(out.x, data, h)) < tol, (K, churn)
    mean_only = dd.sample_ddim(m, x_T, 1, 1.0, generator=g).x
    assert mmd2(mean_only, data, h) > 20 * tol


def test_mean_generator_is_tweedie_posterior_mean(schedule):
    gm = make_mixture(3)
    m = gm.diffused(schedule)
    x = m.sample(16, 0.5, torch.Generator().manual_seed(0))
    torch.testing.assert_close(MeanGenerator(m).sample_x0(x, 0.5), m.posterior(x, 0.5).mean(), rtol=1e-9, atol=1e-9)


def test_sample_ddim_is_deterministic_at_churn_zero_and_checks_inputs():
    gm = make_mixture(2)
    m = gm.diffused(dd.FlowMatching())
    x_T = torch.randn(8, 2, dtype=torch.float64)
    a = dd.sample_ddim(m, x_T, 3, 0.0, generator=torch.Generator().manual_seed(0)).x
    b = dd.sample_ddim(m, x_T, 3, 0.0, generator=torch.Generator().manual_seed(1)).x
    torch.testing.assert_close(a, b)
    with pytest.raises(TypeError, match="generator model"):
        dd.sample_distributional(m, x_T)
    with pytest.raises(TypeError, match="score"):
        dd.sample_ddim(OracleGenerator(m), x_T)


# ------------------------------------------------------------------------------------------------ scoring rules
def _c(beta):
    """E|Z|^β for Z ~ N(0, 1)."""
    return 2 ** (beta / 2) * math.gamma((beta + 1) / 2) / math.sqrt(math.pi)


def _expected_score(s, beta, lam):
    """E_y E S_{β,λ}(N(0, s²), y) for y ~ N(0, 1): c_β[(1 + s²)^{β/2} − (λ/2)(2 s²)^{β/2}]."""
    return _c(beta) * ((1 + s**2) ** (beta / 2) - lam / 2 * (2 * s**2) ** (beta / 2))


def _mc_score(s, beta, lam, n=40000, m=4, seed=0):
    g = torch.Generator().manual_seed(seed)  # common random numbers across s
    y = torch.randn(n, 1, generator=g, dtype=torch.float64)
    x = s * torch.randn(n, m, 1, generator=g, dtype=torch.float64)
    v = energy_score(x, y, beta, lam)
    return float(v.mean()), float(v.std() / math.sqrt(n))


def test_energy_score_properness_by_monte_carlo():
    """math.md §3.9 item 3: y ~ N(0,1), P = N(0, s²): minimised at s = 1 (λ = 1, β < 2), flat for β = 2,
    at s < 1 for λ < 1, at the smallest s for λ = 0; each MC mean matches the closed form within 5 SE."""
    grid = [0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0]
    for beta, lam, argmin in [(0.5, 1, 1.0), (1.0, 1, 1.0), (1.5, 1, 1.0), (1.0, 0.5, None), (1.0, 0.0, 0.25)]:
        vals = []
        for s in grid:
            mc, se = _mc_score(s, beta, lam)
            assert abs(mc - _expected_score(s, beta, lam)) < 5 * se, (beta, lam, s)
            vals.append(mc)
        best = grid[min(range(len(grid)), key=vals.__getitem__)]
        if argmin is not None:
            assert best == argmin, (beta, lam, vals)
        else:
            assert best < 1.0, vals
    flat = [_mc_score(s, 2.0, 1)[0] for s in grid]
    assert max(flat) - min(flat) < 0.05 and all(abs(v - 1.0) < 0.05 for v in flat)


def test_energy_score_is_unbiased_u_statistic():
    """The m = 2 estimator averages to the population score (closed form); the V-statistic (pairs averaged over
    m² with the zero diagonal — a normalisation error) does not."""
    beta, lam, s = 1.0, 1.0, 0.8
    g = torch.Generator().manual_seed(3)
    n, m = 200000, 2
    y = torch.randn(n, 1, generator=g, dtype=torch.float64)
    x = s * torch.randn(n, m, 1, generator=g, dtype=torch.float64)
    v = energy_score(x, y, beta, lam)
    se = float(v.std() / math.sqrt(n))
    assert abs(float(v.mean()) - _expected_score(s, beta, lam)) < 5 * se
    conf = (x - y[:, None]).abs().mean((1, 2))
    v_stat = conf - lam / 2 * (x[:, :, None] - x[:, None, :]).abs().mean((1, 2, 3))
    assert abs(float(v_stat.mean()) - _expected_score(s, beta, lam)) > 20 * se


def test_energy_score_beta2_no_interaction_is_mse():
    g = torch.Generator().manual_seed(0)
    y = torch.randn(6, 3, 4, generator=g)
    for m in (1, 5):
        x = torch.randn(6, m, 3, 4, generator=g)
        mse = (x - y[:, None]).pow(2).flatten(2).sum(-1).mean(1)
        torch.testing.assert_close(energy_score(x, y, beta=2.0, interaction=0.0), mse)


def test_energy_score_permutation_invariant_finite_and_checked():
    g = torch.Generator().manual_seed(0)
    y = torch.randn(4, 2, generator=g)
    x = torch.randn(4, 6, 2, generator=g)
    perm = torch.randperm(6, generator=g)
    torch.testing.assert_close(energy_score(x, y), energy_score(x[:, perm], y))
    # coinciding samples (and a sample equal to the target): finite score and gradient
    xc = y[:, None].repeat(1, 3, 1).clone().requires_grad_(True)
    v = energy_score(xc, y, beta=1.0).sum()
    v.backward()
    assert torch.isfinite(v) and torch.isfinite(xc.grad).all()
    with pytest.raises(ValueError, match="m >= 2"):
        energy_score(x[:, :1], y)
    with pytest.raises(ValueError, match="shape"):
        energy_score(x, y[:, :1])
    with pytest.raises(ValueError, match="beta"):
        energy_score(x, y, beta=2.5)


def test_kernel_score_is_half_mmd_to_the_point_mass():
    """RBF, interaction 1: S = ½ (E k(X,X') − 2 E k(X,y) + k(y,y)) with the U-statistic for E k(X,X')."""
    g = torch.Generator().manual_seed(0)
    y = torch.randn(5, 2, generator=g, dtype=torch.float64)
    x = torch.randn(5, 7, 2, generator=g, dtype=torch.float64)
    h = 0.7
    k = lambda a, b: torch.exp(-0.5 * (a - b).pow(2).sum(-1) / h**2)  # noqa: E731
    kxx = k(x[:, :, None], x[:, None, :])
    kxx_u = (kxx.sum((1, 2)) - kxx.diagonal(dim1=1, dim2=2).sum(1)) / (7 * 6)
    expected = 0.5 * (kxx_u - 2 * k(x, y[:, None]).mean(1) + 1.0)
    torch.testing.assert_close(kernel_score(x, y, "rbf", h, 1.0), expected)
    assert torch.isfinite(kernel_score(x, y, "imq", 1.0, 0.5)).all()
    with pytest.raises(ValueError, match="kernel"):
        kernel_score(x, y, "exp")


# ------------------------------------------------------------------------------------------------ metrics
def test_energy_distance_and_mmd_closed_form():
    """1-D N(0,1) vs N(μ,1): ED = 2E|Z_{μ,2}| − 2E|Z_{0,2}| within 4 SE over replicates; MMD²_u ≈ 0 within one law."""
    g = torch.Generator().manual_seed(0)
    n, mu, reps = 1500, 1.0, 8
    sd = math.sqrt(2)
    e_abs = sd * math.sqrt(2 / math.pi) * math.exp(-(mu**2) / 4) + mu * math.erf(mu / 2)  # E|N(μ, 2)|
    expected = 2 * e_abs - 2 * sd * math.sqrt(2 / math.pi)
    eds = []
    for _ in range(reps):
        x = torch.randn(n, 1, generator=g, dtype=torch.float64)
        y = mu + torch.randn(n, 1, generator=g, dtype=torch.float64)
        eds.append(energy_distance(x, y))
    eds = torch.tensor(eds)
    assert abs(float(eds.mean()) - expected) < 4 * float(eds.std() / math.sqrt(reps))
    x2 = torch.randn(n, 1, generator=g, dtype=torch.float64)
    assert abs(mmd2(x, x2)) < 3e-3 < mmd2(x, y)
    assert dd.mmd(x, y) == pytest.approx(math.sqrt(mmd2(x, y, unbiased=False)))


# ------------------------------------------------------------------------------------------------ generator models
def test_generator_population_is_one_batched_forward_and_saves(tmp_path):
    torch.manual_seed(0)
    net = GeneratorMLP(2, hidden=16, depth=1)
    model = GeneratorModel(net, dd.FlowMatching())
    x = torch.randn(3, 2)
    xi = torch.randn(3, 4, 2)
    pop = model.sample_population(x, torch.tensor([-1.0, 0.0, 2.0]), 4, xi=xi)
    assert pop.shape == (3, 4, 2)
    torch.testing.assert_close(pop[1, 2], net(x[1:2], torch.tensor([0.0]), xi[1, 2:3])[0])
    dd.save(model, tmp_path / "gen", dataset="toy")
    loaded = dd.load(tmp_path / "gen")
    assert isinstance(loaded, GeneratorModel) and loaded.config["kind"] == "generator"
    torch.testing.assert_close(loaded.sample_population(x, 0.0, 4, xi=xi), model.sample_population(x, 0.0, 4, xi=xi))
    assert isinstance(dd.load("toy2d-checkerboard"), dd.NetworkModel)  # score models still load


def test_generator_fourier_features_and_preconditioning(tmp_path):
    """EDM preconditioning: with F = 0 the generator returns c_skip·x/α = σ_d²/(σ̃² + σ_d²)·x/α, σ̃² = e^{−λ}
    (so x̂₀ → x/α as λ → ∞); Fourier features and the flag survive save/load."""
    sch = dd.FlowMatching()
    net = GeneratorMLP(2, hidden=16, depth=1, fourier=8, precondition=True, sigma_data=0.5)
    torch.nn.init.zeros_(net.out[1].weight)
    torch.nn.init.zeros_(net.out[1].bias)
    model = GeneratorModel(net, sch)
    x, lam = torch.randn(4, 2, dtype=torch.float64), torch.tensor([-10.0, -1.0, 2.0, 10.0], dtype=torch.float64)
    model.double()
    a = sch.alpha_sigma(lam)[0][:, None]
    c_skip = (0.25 / (torch.exp(-lam) + 0.25))[:, None]
    torch.testing.assert_close(model.sample_x0(x, lam), c_skip * x / a)
    assert net.config["fourier"] == 8 and net.config["precondition"] is True
    dd.save(model.float(), tmp_path / "g", dataset="toy")
    loaded = dd.load(tmp_path / "g")
    assert loaded.net.config == net.config
    torch.testing.assert_close(loaded.net.fourier_B, net.fourier_B)


def test_generator_unet_concatenates_noise_channels():
    net = GeneratorUNet(in_channels=1, preset="digits", ch=8, num_res_blocks=1, dropout=0.0)
    assert net.unet.config["in_channels"] == 2 and net.noise_shape == (1, 8, 8)
    model = GeneratorModel(net, dd.FlowMatching())
    out = model.sample_population(torch.randn(2, 1, 8, 8), 0.0, 3, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 3, 1, 8, 8)
    assert GeneratorUNet(**{k: v for k, v in net.config.items() if k != "type"}).config == net.config


# ------------------------------------------------------------------------------------------------ training objective
def test_sample_lambda_is_uniform_in_t_within_the_safety_margin():
    sch = dd.FlowMatching()
    lam = sample_lambda(sch, torch.linspace(0, 1, 11, dtype=torch.float64))
    t = sch.alpha_sigma(lam)[1]  # FlowMatching: t = σ
    eps = 1 / (1 + math.exp(5.0))
    assert float(t[0]) == pytest.approx(eps) and float(t[-1]) == pytest.approx(1 - eps)
    assert torch.diff(t).std() < 1e-9


def test_distributional_training_run_and_cli(tmp_path):
    """Two paper-recipe runs of a few steps (distributional and regression) train, export and load; the CLI's nfe
    sub-command writes its table, JSON and plot; bad settings are refused."""
    common = dict(
        dataset="checkerboard",
        dataset_kwargs={"n_train": 512, "n_test": 256},
        steps=6,
        batch_size=64,
        hidden=16,
        depth=1,
        population=4,
        eval_n=64,
        checkpoint_every=0,
        progress=False,
        threads=1,
    )
    cfg = paper_config(out=str(tmp_path / "d"), **common)
    assert (cfg.lr, cfg.warmup, cfg.lr_decay, cfg.ema_decay, cfg.schedule) == (
        1e-3,
        100,
        "cosine",
        0.99,
        "FlowMatching",
    )
    run = dd.train(cfg)
    reg = dd.train(paper_config(out=str(tmp_path / "r"), regression=True, **common))
    for r in (run, reg):
        m = dd.load(r)
        assert isinstance(m, GeneratorModel) and m.config["metrics"]["mmd_4"] > 0
        assert 0 <= m.config["metrics"]["on_squares_2"] <= 1 and "mmd2@0.05R_4" in m.config["metrics"]
    assert dd.load(reg).config["training"]["beta"] == 2.0
    from diffdensity.cli import main

    res = CliRunner().invoke(
        main,
        [
            "distributional",
            "nfe",
            str(run),
            str(reg),
            "--dataset",
            "checkerboard",
            "--nfe",
            "1,2",
            "--n",
            "128",
            "--out",
            str(tmp_path / "nfe"),
        ],
    )
    assert res.exit_code == 0, res.output
    for f in ("nfe_sweep.json", "nfe_sweep.md", "nfe_sweep.png"):
        assert (tmp_path / "nfe" / f).is_file()
    with pytest.raises(ValueError, match="population"):
        paper_config(
            out=str(tmp_path / "x"), population=1, **{k: v for k, v in common.items() if k != "population"}
        ).validate()


def test_cosine_lr_schedule():
    from diffdensity.training.config import lr_at

    cfg = paper_config(steps=1100, out="x")
    assert lr_at(cfg, 0) == pytest.approx(1e-5) and lr_at(cfg, 99) == pytest.approx(1e-3)
    assert lr_at(cfg, 600) == pytest.approx(0.5e-3) and lr_at(cfg, 1100) == pytest.approx(0.0, abs=1e-12)


def test_cli_sweep_and_sample(tmp_path):
    """`distributional sweep` trains one run per (β, interaction) and writes the NFE report; `sample` writes npz+png."""
    from diffdensity.cli import main

    runner = CliRunner()
    res = runner.invoke(
        main,
        [
            "distributional",
            "sweep",
            "--dataset",
            "moons",
            "--data-opt",
            "n_train=256",
            "--data-opt",
            "n_test=128",
            "--steps",
            "3",
            "--batch-size",
            "32",
            "--hidden",
            "8",
            "--depth",
            "1",
            "--population",
            "2",
            "--interaction-grid",
            "0,1",
            "--beta-grid",
            "1",
            "--nfe",
            "1,2",
            "--n-eval",
            "64",
            "--eval-n",
            "32",
            "--checkpoint-every",
            "0",
            "--no-progress",
            "--threads",
            "1",
            "--out",
            str(tmp_path / "sw"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert {p.name for p in (tmp_path / "sw").iterdir()} >= {"beta1_int0", "beta1_int1", "nfe_sweep.json"}
    assert dd.load(tmp_path / "sw" / "beta1_int0").config["training"]["interaction"] == 0.0
    res = runner.invoke(
        main,
        [
            "distributional",
            "sample",
            str(tmp_path / "sw" / "beta1_int1"),
            "--steps",
            "2",
            "--n",
            "16",
            "--out",
            str(tmp_path / "s"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "s" / "samples.npz").is_file()


def test_shipped_checkerboard_pair_learns_the_squares():
    """The shipped pair load as generators. The distributional model puts ≥ 0.9 of its samples on the squares at 2
    and 4 steps (cubic grid; measured 0.92 and 0.945 with 3 × 4096 samples; 1024 here, binomial SE ≤ 0.009, so ≥ 0.88
    and ≥ 0.905 are 4 SE below); the regression baseline collapses to the mean at 1 step (MMD² at h = 0.2 many times
    the generator's)."""
    from diffdensity.data import load_dataset
    from diffdensity.distributional.quality import checkerboard_fraction, kernel_stats

    ref = load_dataset("checkerboard").test_model_space()[:1024]
    out = {}
    for kind in ("distributional", "regression"):
        g = dd.load(f"checkerboard-{kind}")
        assert isinstance(g, GeneratorModel)
        x_T = g.schedule.sample_prior((1024, 2), generator=torch.Generator().manual_seed(0))
        x1 = dd.sample_distributional(g, x_T, 1, generator=torch.Generator().manual_seed(1)).x
        out[kind] = kernel_stats(x1, ref, [0.2])["mmd2@0.2"]
    assert out["regression"] > 10 * abs(out["distributional"])
    g = dd.load("checkerboard-distributional")
    x_T = g.schedule.sample_prior((1024, 2), generator=torch.Generator().manual_seed(0))
    for steps, floor in ((2, 0.88), (4, 0.905)):
        x = dd.sample_distributional(g, x_T, steps, generator=torch.Generator().manual_seed(1), spacing="cubic").x
        assert checkerboard_fraction(x) >= floor, steps


def test_image_generator_convergence_check_logs_a_kernel_distance_in_features(tmp_path):
    """On image data the held-out check logs the KID-style distance in the random conv features (kid_conv_K), not
    MMD² at 0.05·R (a bandwidth that sees nothing in 64 dimensions)."""
    cfg = paper_config(
        out=str(tmp_path / "g"),
        dataset="digits",
        net="unet",
        net_kwargs={
            "ch": 8,
            "ch_mult": [1],
            "num_res_blocks": 1,
            "attn_resolutions": [],
            "norm_groups": 4,
            "emb_dim": 16,
            "head_dim": 8,
        },
        population=2,
        steps=2,
        batch_size=4,
        eval_n=16,
        progress=False,
        threads=1,
    )
    metrics = dd.load(dd.train(cfg)).config["metrics"]
    assert {"kid_conv_1", "kid_conv_2", "kid_conv_4"} <= set(metrics) and not any("0.05R" in k for k in metrics)
