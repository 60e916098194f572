"""The evaluation record: one score call per stage, Δ log p and the lazy HVP only when declared."""

import pytest
import torch
from conftest import make_mixture

import diffdensity as dd
from diffdensity.evaluation import Divergence, evaluate, make_probes
from diffdensity.models import CountingModel


def test_evaluate_adds_only_what_is_needed():
    s = dd.VP()
    m = CountingModel(make_mixture(6, seed=2).diffused(s))
    x = m.sample(5, 0.5, generator=torch.Generator().manual_seed(0))
    ev = evaluate(m, 0.5, x)
    assert ev.lap is None and ev.hvp is None and m.nfe == 1
    assert torch.allclose(ev.s, m.score(x, 0.5), rtol=0, atol=0)
    ev = evaluate(m, 0.5, x, {"lap", "hvp"}, Divergence("exact"))
    assert m.nfe == 3  # one score call for this evaluation (plus the reference call above)
    assert (ev.lap - m.laplacian(x, 0.5)).abs().max() < 1e-10
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=x.dtype)
    assert (ev.hvp(v) - m.hvp(x, 0.5, v)).abs().max() < 1e-10
    assert (ev.hvp(2 * v) - 2 * m.hvp(x, 0.5, v)).abs().max() < 1e-10  # the graph is kept for repeated HVPs
    ev = evaluate(m, 0.5, x, {"hvp"})
    assert ev.lap is None and (ev.hvp(v) - m.hvp(x, 0.5, v)).abs().max() < 1e-10


def test_hutchinson_probes_held_or_redrawn():
    m = make_mixture(4, seed=3).diffused(dd.VP())
    x = m.sample(3, 0.0, generator=torch.Generator().manual_seed(0))
    held = Divergence("hutchinson", n_probes=2, generator=torch.Generator().manual_seed(5))
    a, b = (evaluate(m, 0.0, x, {"lap"}, held).lap for _ in range(2))
    assert torch.equal(a, b)
    fresh = Divergence("hutchinson", n_probes=2, generator=torch.Generator().manual_seed(5), fixed=False)
    c, d = (evaluate(m, 0.0, x, {"lap"}, fresh).lap for _ in range(2))
    assert torch.equal(a, c) and not torch.equal(c, d)
    # the JVP path gives the same estimate for the same probes
    jvp = Divergence("hutchinson", n_probes=2, mode="jvp", probes=held.probes)
    assert (evaluate(m, 0.0, x, {"lap"}, jvp).lap - a).abs().max() < 1e-10


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"kind": "trace"}, "divergence"),
        ({"mode": "jvpp"}, "mode"),
        ({"probe": "sphere"}, "probe"),
        ({"n_probes": 0}, "n_probes"),
        ({"n_probes": True}, "n_probes"),
        ({"chunk_size": -4}, "chunk_size"),
        ({"chunk_size": 2.5}, "chunk_size"),
    ],
)
def test_divergence_rejects_bad_options(kw, match):
    with pytest.raises(ValueError, match=match):
        Divergence(**kw)


def test_evaluate_errors():
    m = make_mixture(2).diffused(dd.VP())
    x = torch.zeros(2, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="divergence"):
        evaluate(m, 0.0, x, {"lap"})
    with pytest.raises(ValueError, match="needs"):
        evaluate(m, 0.0, x, {"jacobian"})
    with pytest.raises(ValueError, match="n_probes"):
        make_probes(x, 0)


def test_exact_and_hutchinson_on_a_diffusers_unet_with_attention():
    """Issue 12 item 6: vmap fails inside diffusers' attention ("NYI: querying is_contiguous inside of vmap");
    the divergence falls back to one VJP per vector and stays exact."""
    pytest.importorskip("diffusers")
    from diffusers import DDPMScheduler, UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=4,
        in_channels=1,
        out_channels=1,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
        attention_head_dim=4,
    )
    m = dd.from_diffusers(unet, DDPMScheduler(num_train_timesteps=100))
    x = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    lam = 0.0
    jac = torch.stack(
        [torch.autograd.functional.jacobian(lambda y: m.score(y[None], lam)[0], x[i]).reshape(16, 16) for i in range(3)]
    )  # the full Jacobian, sample by sample: the reference
    exact = Divergence("exact")
    ev = evaluate(m, lam, x, {"lap"}, exact)
    assert (ev.lap - jac.diagonal(dim1=1, dim2=2).sum(1)).abs().max() < 1e-4 * jac.abs().max() * 16
    hutch = Divergence("hutchinson", n_probes=4, generator=torch.Generator().manual_seed(1))
    h = evaluate(m, lam, x, {"lap"}, hutch).lap
    v = hutch.probes.reshape(4, 3, 16)
    quad = torch.einsum("pbi,bij,pbj->pb", v, jac, v)  # vᵀJv per probe: the same estimate, term by term
    assert (h - quad.mean(0)).abs().max() < 1e-4 * quad.abs().max()
    se = quad.std(0) / 2  # and Hutchinson agrees with the exact trace within its standard error
    assert ((h - ev.lap).abs() <= 4 * se + 1e-6).all()
    assert (evaluate(m, lam, x, {"lap", "hvp"}, Divergence("exact")).lap - ev.lap).abs().max() < 1e-4


def test_auto_chunk_is_chosen_by_speed_within_the_memory_cap_and_changes_nothing():
    """The first exact evaluation times chunks of 1, 2, 4, … basis vectors (up to the memory cap) on the vectors it
    needs anyway and keeps the fastest per vector; the divergence is the same as one chunk of all D."""
    from diffdensity.evaluation import Divergence, evaluate

    s = dd.VP()
    m = make_mixture(24, seed=3).diffused(s)
    x = m.sample(5, 0.0, generator=torch.Generator().manual_seed(0))
    auto = Divergence("exact")
    first = evaluate(m, 0.0, x, {"lap"}, auto)
    assert auto._cap is not None and auto._chunk is not None and auto._chunk <= max(auto._cap, 1)
    assert auto._chunk & (auto._chunk - 1) == 0  # a trial size: a power of two
    again = evaluate(m, 0.0, x, {"lap"}, auto)
    whole = evaluate(m, 0.0, x, {"lap"}, Divergence("exact", chunk_size=None))
    assert torch.allclose(first.lap, whole.lap, atol=1e-10) and torch.allclose(again.lap, whole.lap, atol=1e-10)
    assert torch.allclose(whole.lap, m.laplacian(x, 0.0), atol=1e-8)


def test_exact_divergence_does_not_depend_on_the_chunk_size_to_the_bit():
    """The "auto" chunk is chosen by timing, so its size varies from run to run: the result must not (the sum over
    basis vectors is taken once, in one order; a run-to-run 1e-6 difference made a test flaky)."""
    from diffdensity.evaluation import Divergence, evaluate

    m = make_mixture(24, seed=3).diffused(dd.VP())
    x = m.sample(5, 0.0, generator=torch.Generator().manual_seed(0)).float()
    m32 = make_mixture(24, seed=3, dtype=torch.float32).diffused(dd.VP())
    ref = evaluate(m32, 0.0, x, {"lap"}, Divergence("exact", chunk_size=1)).lap
    for c in (2, 3, 8, 24, None):
        assert torch.equal(evaluate(m32, 0.0, x, {"lap"}, Divergence("exact", chunk_size=c)).lap, ref), c
