"""The evaluation record: one score call per stage, Δ log p and the lazy HVP only when declared."""
import pytest
import torch

import diffdensity as dd
from diffdensity.evaluation import Divergence, evaluate, make_probes
from diffdensity.models import CountingModel

from conftest import make_mixture


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


@pytest.mark.parametrize("kw,match", [
    ({"kind": "trace"}, "divergence"), ({"mode": "jvpp"}, "mode"), ({"probe": "sphere"}, "probe"),
    ({"n_probes": 0}, "n_probes"), ({"n_probes": True}, "n_probes"), ({"chunk_size": -4}, "chunk_size"),
    ({"chunk_size": 2.5}, "chunk_size"),
])
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
