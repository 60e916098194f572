"""Reliability (issue 13): bad inputs get a clear ValueError/TypeError, failures stop with an error naming λ,
nothing returns silent NaNs or wrong numbers; a hypothesis fuzz over the public functions' numeric arguments."""

import warnings

import pytest
import torch
from conftest import make_mixture
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import diffdensity as dd
from diffdensity._checks import NonFiniteError


@pytest.fixture(scope="module")
def digits():
    return dd.load("digits8")


def _nan_net(x, lam):
    return x * float("nan")


BAD_INPUTS = [
    ("empty batch", lambda m: dd.log_prob(m, torch.zeros(0, 1, 8, 8)), "empty batch"),
    ("16x16 into an 8x8 model", lambda m: dd.log_prob(m, torch.zeros(2, 1, 16, 16)), "sample shape"),
    ("bf16 state", lambda m: dd.sample_sde(m, torch.zeros(2, 1, 8, 8, dtype=torch.bfloat16), steps=4), "autocast"),
    ("fp16 state", lambda m: dd.sample_ode(m, torch.zeros(2, 1, 8, 8, dtype=torch.float16), steps=4), "autocast"),
    ("steps=True", lambda m: dd.sample_sde(m, torch.zeros(2, 1, 8, 8), steps=True), "steps"),
    ("steps with dopri5", lambda m: dd.sample_ode(m, torch.zeros(2, 1, 8, 8), steps=10, solver="dopri5"), "dopri5"),
    ("steps with dopri5 (log_prob)", lambda m: dd.log_prob(m, torch.zeros(2, 1, 8, 8), steps=10), "dopri5"),
    ("n_probes=10**6", lambda m: dd.log_prob(m, torch.zeros(2, 1, 8, 8), n_probes=10**6), "n_probes"),
    (
        "negative chunk_size",
        lambda m: dd.log_prob(m, torch.zeros(2, 1, 8, 8), divergence="exact", chunk_size=-3),
        "chunk_size",
    ),
    ("λ outside the schedule", lambda m: m.score(torch.zeros(2, 1, 8, 8), 30.0), "outside"),
    ("load(None)", lambda m: dd.load(None), "model"),
    ("load onto a missing GPU", lambda m: dd.load("digits8", device="cuda:7"), "device"),
    ("mixture with no components", lambda m: dd.GaussianMixture(torch.zeros(0, 2), torch.ones(0)), "component"),
    ("unknown tracker", lambda m: dd.sample_sde(m, torch.zeros(2, 1, 8, 8), tracker="milstein"), "tracker"),
    (
        "network output of the wrong shape",
        lambda m: dd.sample_ode(dd.NetworkModel(lambda x, lam: x[:, :1], dd.VP()), torch.zeros(2, 3), steps=4),
        "shaped like x",
    ),
]


@pytest.mark.parametrize("name,call,match", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_inputs_get_clear_errors(digits, name, call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call(digits)


def test_levels_none_uses_the_models_transform(digits):
    x = torch.randint(0, 17, (2, 8, 8))
    g = lambda: torch.Generator().manual_seed(0)
    a = dd.bits_per_dim(digits, x, levels=None, solver="euler", steps=4, generator=g())
    b = dd.bits_per_dim(digits, x, levels=17, solver="euler", steps=4, generator=g())
    assert torch.equal(a, b)


NAN_NET = dd.NetworkModel(_nan_net, dd.VP())
DIVERGING = dd.NetworkModel(lambda x, lam: -1e3 * x * torch.exp(x.abs()), dd.VP(), "score")
BLOWUP = dd.NetworkModel(lambda x, lam: 50 * x**3, dd.VP(), "score")  # dx/dλ ∝ x³: infinite in finite λ
NON_FINITE = [
    ("NaN network, Euler", lambda: dd.sample_ode(NAN_NET, torch.zeros(2, 3), steps=4)),
    ("NaN network, dopri5 log_prob", lambda: dd.log_prob(NAN_NET, torch.zeros(2, 3))),
    ("NaN network, SDE", lambda: dd.sample_sde(NAN_NET, torch.zeros(2, 3), steps=4)),
    ("diverging PF-ODE", lambda: dd.sample_ode(DIVERGING, torch.ones(2, 3), steps=8)),
    ("PF-ODE blowing up in finite time, dopri5", lambda: dd.sample_ode(BLOWUP, 3 * torch.ones(2, 3), solver="dopri5")),
]


@pytest.mark.parametrize("name,call", NON_FINITE, ids=[n[0] for n in NON_FINITE])
def test_non_finite_states_stop_with_the_lambda_reached(name, call):
    with pytest.raises((NonFiniteError, RuntimeError), match="λ"):
        call()


def test_all_zero_dw_gives_finite_tracking():
    """A zero Brownian increment makes the corrected tracker's Laplacian-free term 0/0; its limit is 0."""
    m = make_mixture(2, seed=1).diffused(dd.VP())
    xT = torch.zeros(3, 2, dtype=torch.float64)
    out = dd.sample_sde(m, xT, steps=8, dw=torch.zeros(8, 3, 2, dtype=torch.float64))
    assert torch.isfinite(out.logp).all()


def test_dopri5_step_cap_names_the_lambda_reached():
    stiff = dd.NetworkModel(lambda x, lam: -1e4 * torch.sin(50 * x), dd.VP(), "score")
    with pytest.raises(RuntimeError, match="max_steps=20 at λ"):
        from diffdensity.dynamics import PFODE
        from diffdensity.integrate import integrate_ode

        integrate_ode(stiff, PFODE(dd.VP()), torch.ones(2, 2), -10.0, 10.0, solver="dopri5", max_steps=20)


def test_train_mode_warns_once(digits):
    model = dd.load("digits8").train()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        dd.sample_ode(model, torch.zeros(1, 1, 8, 8), steps=2, progress=False)
        dd.sample_ode(model, torch.zeros(1, 1, 8, 8), steps=2, progress=False)
    assert sum("train mode" in str(x.message) for x in w) == 1


def test_fp16_training_on_cpu_is_refused(tmp_path):
    with pytest.raises(ValueError, match="fp16"):
        dd.train(
            dataset="8gaussians",
            net="mlp",
            steps=2,
            out=str(tmp_path / "r"),
            mixed_precision="fp16",
            cpu=True,
            progress=False,
            eval_final=False,
        )
    assert not (tmp_path / "r" / "checkpoint.pt").exists()


# ------------------------------------------------------------------ fuzz: a clear error or a finite result
ORACLE = make_mixture(2, seed=3).diffused(dd.VP())
NUM = st.one_of(
    st.integers(-5, 300), st.floats(allow_nan=True, allow_infinity=True, width=32), st.booleans(), st.none()
)


def _clear_or_finite(call):
    try:
        out = call()
    except (ValueError, TypeError):
        return
    t = out.logp if hasattr(out, "logp") else out
    assert t is None or torch.isfinite(t).all()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=NUM, rtol=NUM, n_probes=NUM, chunk=NUM)
def test_fuzz_log_prob_arguments(steps, rtol, n_probes, chunk):
    x = ORACLE.sample(2, 10.0, generator=torch.Generator().manual_seed(0))
    solver = "euler" if isinstance(steps, int) and not isinstance(steps, bool) and 0 < steps <= 300 else "dopri5"
    kw = {"steps": steps} if solver == "euler" else {"rtol": rtol if rtol is not None else 1e-3, "atol": 1e-3}
    _clear_or_finite(lambda: dd.log_prob(ORACLE, x, solver=solver, n_probes=n_probes, chunk_size=chunk, **kw))


@settings(max_examples=25, deadline=None)
@given(steps=NUM, lam=NUM, std=NUM)
def test_fuzz_samplers_and_oracle(steps, lam, std):
    xT = torch.randn(2, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    small = steps if isinstance(steps, int) and not isinstance(steps, bool) and steps <= 64 else 3
    _clear_or_finite(lambda: dd.sample_sde(ORACLE, xT, steps=small if steps is not None else steps))
    _clear_or_finite(
        lambda: dd.sample_ode(
            ORACLE, xT, steps=small if steps is not None else steps, track_logp=True, divergence="exact"
        )
    )
    _clear_or_finite(lambda: ORACLE.log_prob(xT, lam))
    _clear_or_finite(lambda: dd.GaussianMixture(torch.zeros(1, 2), [std]).log_prob(xT))


# ------------------------------------------------------------------ issue 24: one finiteness and dtype contract
class _NoGrad(torch.nn.Module):
    def forward(self, x, lam):
        with torch.no_grad():
            return -x


def _guided_nan():
    m = make_mixture(2).diffused(dd.VP())
    return dd.Guided(m, m, guidance_scale=float("nan"))


CONTRACT = [
    (
        "float64 output for float32 input",
        lambda: dd.sample_ode(dd.NetworkModel(lambda x, lam: x.double(), dd.VP()), torch.zeros(2, 3), steps=2),
        TypeError,
        "x's dtype",
    ),
    (
        "integer output",
        lambda: dd.sample_sde(dd.NetworkModel(lambda x, lam: x.long(), dd.VP()), torch.zeros(2, 3), steps=2),
        TypeError,
        "x's dtype",
    ),
    (
        "network under no_grad",
        lambda: dd.sample_ode(dd.NetworkModel(_NoGrad(), dd.VP()), torch.ones(2, 3), steps=2, track_logp=True),
        ValueError,
        "no_grad",
    ),
    (
        "sample_ddim of a NaN network",
        lambda: dd.sample_ddim(NAN_NET, torch.zeros(2, 3), steps=2),
        NonFiniteError,
        "sample_ddim: NaN",
    ),
    (
        "score_alignment of a NaN network",
        lambda: dd.score_alignment(NAN_NET, torch.zeros(2, 3), 1.0, steps=2),
        NonFiniteError,
        "score_alignment: NaN",
    ),
    (
        "energy_distance of NaN",
        lambda: dd.energy_distance(torch.full((3, 2), float("nan")), torch.zeros(3, 2)),
        ValueError,
        "NaN",
    ),
    (
        "energy_distance of empty samples",
        lambda: dd.energy_distance(torch.zeros(3, 0), torch.zeros(3, 0)),
        ValueError,
        "empty",
    ),
    ("alignment_fraction of nothing", lambda: dd.alignment_fraction(torch.zeros(0)), ValueError, "non-empty"),
    ("alignment_fraction of NaN", lambda: dd.alignment_fraction(torch.tensor([float("nan")])), ValueError, "finite"),
    ("GaussianMixture.sample(-1)", lambda: dd.GaussianMixture(torch.zeros(1, 2), [1.0]).sample(-1), ValueError, "n=-1"),
    (
        "stds of 1e-300",
        lambda: dd.GaussianMixture(torch.zeros(1, 2, dtype=torch.float64), [1e-300]),
        ValueError,
        "stds",
    ),
    ("Guided(guidance_scale=nan)", _guided_nan, ValueError, "guidance_scale"),
    (
        "track_logp='no'",
        lambda: dd.sample_ode(make_mixture(2).diffused(dd.VP()), torch.zeros(2, 2), steps=2, track_logp="no"),
        TypeError,
        "track_logp",
    ),
    (
        "a list of generators for a sampler",
        lambda: dd.sample_sde(ORACLE, torch.zeros(2, 2), steps=2, generator=[torch.Generator()]),
        TypeError,
        "list",
    ),
    (
        "a prior of the wrong shape",
        lambda: dd.sample_ode(
            ORACLE, torch.zeros(2, 2, dtype=torch.float64), steps=2, track_logp=True, prior=lambda x: torch.zeros(2, 2)
        ),
        ValueError,
        "one log-density per sample",
    ),
]


@pytest.mark.parametrize("name,call,exc,match", CONTRACT, ids=[c[0] for c in CONTRACT])
def test_sampler_and_metric_contract(name, call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_an_int_seed_is_a_generator():
    xT = torch.zeros(3, 2, dtype=torch.float64)
    a = dd.sample_sde(ORACLE, xT, steps=4, generator=42)
    b = dd.sample_sde(ORACLE, xT, steps=4, generator=torch.Generator().manual_seed(42))
    assert torch.equal(a.x, b.x)
    from diffdensity.sampling import sample

    assert torch.equal(sample(ORACLE, xT, "sde", 4, 42).x, a.x)
    assert torch.equal(
        ORACLE.sample(3, 1.0, generator=7), ORACLE.sample(3, 1.0, generator=torch.Generator().manual_seed(7))
    )
    with pytest.raises(TypeError, match="int seed"):
        dd.sample_sde(ORACLE, xT, steps=4, generator="42")


def test_a_prior_returning_b_by_1_gives_one_value_per_sample():
    xT = torch.zeros(3, 2, dtype=torch.float64)
    out = dd.sample_ode(
        ORACLE,
        xT,
        steps=2,
        track_logp=True,
        divergence="exact",
        prior=lambda x: ORACLE.log_prob(x, ORACLE.schedule.lambda_min)[:, None],
    )
    assert out.logp.shape == (3,)


BAD_CONFIGS = [
    ({"lr": float("inf")}, "lr=inf"),
    ({"lambda_min": float("nan")}, "lambda_min=nan"),
    ({"dataset": "moons", "net_kwargs": {"hidden": -5}}, r"net_kwargs\['hidden'\]=-5"),
    ({"net_kwargs": {"no_such": 1}}, "unknown argument 'no_such'"),
    ({"dataset": "moons", "dataset_kwargs": {"n_train": "many"}}, r"dataset_kwargs\['n_train'\]='many'"),
    ({"dataset": "folder", "dataset_kwargs": {"grayscale": "False"}}, "True or False"),
    ({"eval_kwargs": {"divergence": "foo"}}, r"eval_kwargs\['divergence'\]='foo'"),
    ({"betas": (0.9, float("nan"))}, "betas"),
]


@pytest.mark.parametrize("change,match", BAD_CONFIGS, ids=[m for _, m in BAD_CONFIGS])
def test_train_config_checks_every_field_and_nested_kwargs(change, match):
    from diffdensity.training import TrainConfig

    with pytest.raises(ValueError, match=match):
        TrainConfig(steps=2, out="unused", **change).validate()


@pytest.mark.parametrize("args", [(-100, 100), (-1e6, 1e6), ("-10", 10), (True, 10)])
def test_schedules_refuse_ranges_float32_cannot_resolve_and_non_numbers(args):
    with pytest.raises(ValueError, match="float32|need a number"):
        dd.VP(*args)


def test_a_wide_but_resolvable_range_gives_the_closed_form():
    m = make_mixture(2, seed=0, dtype=torch.float32).diffused(dd.VP(-80, 80))
    x = m.sample(4, 80.0, generator=0)
    assert (dd.log_prob(m, x, divergence="exact") - m.log_prob(x, 80.0)).abs().max() < 0.01


# ------------------------------------------------------------------ issue 24: training runs are never lost
def _toy_run(out, **kw):
    return {
        **dict(
            dataset="8gaussians",
            net="mlp",
            hidden=16,
            depth=1,
            steps=4,
            checkpoint_every=2,
            batch_size=16,
            out=str(out),
            progress=False,
            eval_final=False,
            cpu=True,
            log_every=1,
        ),
        **kw,
    }


def test_a_full_disk_during_a_checkpoint_keeps_the_previous_one_and_resumes(tmp_path, monkeypatch):
    import diffdensity.training.checkpoint as ck
    from diffdensity._io_utils import DiskFullError

    real, calls = torch.save, []

    def full_disk(obj, f, *a, **k):
        calls.append(1)
        if len(calls) == 2:  # the step-4 checkpoint: the disk is full
            raise RuntimeError(
                "[enforce fail at inline_container.cc:603] . PytorchStreamWriter failed writing file "
                "data/0: file write failed"
            )
        return real(obj, f, *a, **k)

    monkeypatch.setattr(ck.torch, "save", full_disk)
    monkeypatch.setattr("diffdensity._io_utils._low_space", lambda folder, need=1 << 20: True)
    with pytest.raises(DiskFullError, match="no space left on device.*checkpoint.pt.*kept"):
        dd.train(**_toy_run(tmp_path / "r"))
    assert ck.load_checkpoint(tmp_path / "r" / "checkpoint.pt")["step"] == 2
    monkeypatch.undo()
    dd.train(**_toy_run(tmp_path / "r", resume=True))
    assert ck.load_checkpoint(tmp_path / "r" / "checkpoint.pt")["step"] == 4


def test_resume_refuses_a_finished_run_without_checkpoint_and_changed_precision_or_root(tmp_path):
    out = tmp_path / "r"
    dd.train(**_toy_run(out))
    with pytest.raises(ValueError, match="mixed_precision"):
        dd.train(**_toy_run(out, resume=True, steps=6, mixed_precision="bf16"))
    with pytest.raises(ValueError, match="root"):
        dd.train(**_toy_run(out, resume=True, steps=6, root=str(tmp_path)))
    (out / "checkpoint.pt").unlink()
    before = (out / "model.safetensors").read_bytes()
    with pytest.raises(ValueError, match="no checkpoint.pt to continue from"):
        dd.train(**_toy_run(out, resume=True, steps=6))
    assert (out / "model.safetensors").read_bytes() == before


def test_a_checkpoint_without_config_is_a_clear_error(tmp_path):
    out = tmp_path / "r"
    dd.train(**_toy_run(out))
    torch.save({"version": 2, "step": 3}, out / "checkpoint.pt")
    with pytest.raises(ValueError, match="incomplete training checkpoint"):
        dd.train(**_toy_run(out, resume=True, steps=6))


def test_final_evaluation_interrupted_leaves_a_resumable_checkpoint(tmp_path, monkeypatch):
    from diffdensity.training.checkpoint import load_checkpoint
    from diffdensity.training.trainer import Trainer

    def interrupted(self):
        raise KeyboardInterrupt  # Ctrl-C twice during the final evaluation

    monkeypatch.setattr(Trainer, "evaluate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        dd.train(**{**_toy_run(tmp_path / "r"), "eval_final": True})
    assert load_checkpoint(tmp_path / "r" / "checkpoint.pt")["step"] == 4
    assert (tmp_path / "r" / "model.safetensors").exists()


def test_a_diffusers_model_refuses_another_sample_size():
    pytest.importorskip("diffusers")
    from diffusers import DDPMScheduler
    from test_adapters import tiny_unet

    m = dd.from_diffusers(tiny_unet(attn=False), DDPMScheduler(num_train_timesteps=1000))
    m.score(torch.zeros(2, 1, 8, 8), 0.0)
    with pytest.raises(ValueError, match="trained on"):
        m.score(torch.zeros(2, 1, 16, 16), 0.0)


def test_log_prob_of_a_network_under_no_grad_is_refused():
    with pytest.raises(ValueError, match="no_grad"):
        dd.log_prob(dd.NetworkModel(_NoGrad(), dd.VP()), torch.ones(2, 3), solver="euler", steps=2)


def test_check_real_data_refuses_complex_and_bool():
    from diffdensity._checks import check_real_data

    check_real_data(torch.zeros(2, 3, dtype=torch.uint8))
    for bad in (torch.zeros(2, 3, dtype=torch.complex64), torch.zeros(2, 3, dtype=torch.bool), [1, 2]):
        with pytest.raises(TypeError, match="real integer data"):
            check_real_data(bad)


def test_evaluate_bits_per_dim_input_errors(digits):
    from diffdensity.evaluate import evaluate_bits_per_dim

    items = [torch.zeros(8, 8), torch.zeros(16, 16)]
    with pytest.raises(ValueError, match="different shapes"):
        evaluate_bits_per_dim(digits, items, batch_size=2, levels=17, solver="euler", steps=2, progress=False)
    with pytest.raises(ValueError, match="levels=0"):
        evaluate_bits_per_dim(digits, torch.zeros(2, 8, 8), levels=0, solver="euler", steps=2, progress=False)


def test_guided_samplers_take_an_int_seed():
    xT = torch.zeros(3, 2, dtype=torch.float64)
    a = dd.sample_stochastic_density_guided(ORACLE, xT, 0.5, "late", steps=64, generator=5, check=False)
    b = dd.sample_stochastic_density_guided(
        ORACLE, xT, 0.5, "late", steps=64, check=False, generator=torch.Generator().manual_seed(5)
    )
    assert torch.equal(a.x, b.x)
