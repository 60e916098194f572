import pytest
import torch
from conftest import make_mixture
from torch import nn

import diffdensity as dd
from diffdensity.models import CountingModel


class ExactPrediction(nn.Module):
    """A 'network' returning the oracle's exact prediction in a given parametrization, from first principles."""

    def __init__(self, m, parametrization):
        super().__init__()
        self.m, self.p = m, parametrization

    def forward(self, x, lam):
        a, s = self.m.schedule.alpha_sigma(lam)
        a, s = a[:, None], s[:, None]
        score = self.m.score(x, lam)
        eps = -s * score  # x = α x0 + σ ε, ε̂ = E[ε | x]
        x0 = (x + s**2 * score) / a  # Tweedie
        return {"eps": eps, "x0": x0, "v": a * eps - s * x0, "score": score, "flow": eps - x0}[self.p]


@pytest.mark.parametrize("param", dd.PARAMETRIZATIONS)
def test_parametrizations_reproduce_exact_score(schedule, param):
    m = make_mixture(4, seed=1).diffused(schedule)
    model = dd.NetworkModel(ExactPrediction(m, param), schedule, parametrization=param)
    g = torch.Generator().manual_seed(0)
    for lam in (schedule.lambda_min + 0.5, -1.0, 2.0, schedule.lambda_max - 0.5):
        x = m.sample(32, lam, generator=g)
        exact = m.score(x, lam)
        assert (model.score(x, lam) - exact).abs().max() < 1e-6 * max(1.0, exact.abs().max().item())
    lam_b = torch.linspace(-3, 3, 32, dtype=torch.float64)  # per-sample λ
    x = torch.randn(32, 4, generator=g, dtype=torch.float64)
    assert (model.score(x, lam_b) - m.score(x, lam_b)).abs().max() < 1e-6 * max(
        1.0, m.score(x, lam_b).abs().max().item()
    )


def test_model_errors():
    with pytest.raises(ValueError, match="parametrization"):
        dd.NetworkModel(nn.Identity(), dd.VP(), parametrization="velocity")
    with pytest.raises(ValueError, match="Schedule"):
        dd.NetworkModel(nn.Identity(), "VP")
    with pytest.raises(ValueError, match="not a model"):
        CountingModel(nn.Identity())
    m = make_mixture(2).diffused(dd.VP())
    with pytest.raises(ValueError, match="batch"):
        dd.NetworkModel(ExactPrediction(m, "eps"), dd.VP()).score(
            torch.zeros(4, 2, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
        )


def test_network_dtype_mismatch_is_a_clear_error_and_float64_works():
    from diffdensity.nets import MLP

    model = dd.NetworkModel(MLP(3, hidden=8, depth=1), dd.VP())
    with pytest.raises(ValueError, match="float64 but the network's weights are torch.float32"):
        model.score(torch.zeros(2, 3, dtype=torch.float64), 0.0)
    model = model.to(torch.float64)
    assert model.score(torch.zeros(2, 3, dtype=torch.float64), 0.0).dtype == torch.float64


@pytest.mark.parametrize("param", dd.PARAMETRIZATIONS)
def test_a_plain_function_is_a_network_for_every_parametrization(schedule, param):
    """dd.NetworkModel accepts any callable net(x, lam_batch), not only an nn.Module (no dtype check: no weights)."""
    m = make_mixture(4, seed=2).diffused(schedule)
    exact = ExactPrediction(m, param)

    def net(x, lam):  # a plain function, no parameters
        return exact.forward(x, lam)

    model = dd.NetworkModel(net, schedule, parametrization=param)
    assert not list(model.parameters())
    g = torch.Generator().manual_seed(3)
    for lam in (schedule.lambda_min + 0.5, 0.0, schedule.lambda_max - 0.5):
        x = m.sample(16, lam, generator=g)
        ref = m.score(x, lam)
        assert (model.score(x, lam) - ref).abs().max() < 1e-6 * max(1.0, ref.abs().max().item())
    with pytest.raises(TypeError, match="callable"):
        dd.NetworkModel(torch.zeros(3), schedule, parametrization=param)
