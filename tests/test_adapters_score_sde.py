"""score_sde continuous-time VP networks: the closed-form time map and exact log p through the oracle."""

import torch
from conftest import make_mixture

import diffdensity as dd
from diffdensity.adapters import vp_lambda_from_time, vp_time_from_lambda


def test_time_map_inverts_and_matches_the_linear_beta_marginal():
    t = torch.linspace(1e-3, 1.0, 101, dtype=torch.float64)
    lam = vp_lambda_from_time(t)
    assert torch.allclose(vp_time_from_lambda(lam), t, atol=1e-10) and (lam[1:] < lam[:-1]).all()
    mean_coef = torch.exp(-0.25 * t**2 * (20.0 - 0.1) - 0.5 * t * 0.1)  # score_sde's VPSDE.marginal_prob
    assert torch.allclose(dd.VP().alpha_sigma(lam)[0], mean_coef, atol=1e-12)


def test_score_sde_network_reproduces_the_exact_log_p():
    m = dd.from_score_sde(lambda x, label: x)  # any net: the schedule is what is checked next
    oracle = make_mixture(8, seed=2).diffused(m.schedule)

    def eps_net(x, label):  # the oracle's ε̂ told as score_sde tells its networks: 999·t
        lam = vp_lambda_from_time(label.double() / 999.0)
        return -torch.sigmoid(-lam).sqrt()[:, None] * oracle.score(x, lam)

    model = dd.from_score_sde(eps_net)
    lo, hi = model.schedule.lambda_min, model.schedule.lambda_max
    assert abs(lo - float(vp_lambda_from_time(1.0))) < 1e-12 and abs(hi - float(vp_lambda_from_time(1e-3))) < 1e-12
    x = oracle.sample(6, hi, generator=torch.Generator().manual_seed(0))
    lp = dd.log_prob(model, x, divergence="exact", solver="dopri5", prior=lambda z: oracle.log_prob(z, lo))
    assert (lp - oracle.log_prob(x, hi)).abs().max() < 0.02
