"""Variance reduction for the Hutchinson divergence (issue 25, item 3): every estimator at equal cost, on exact Jacobians.

For each case, images are carried along their PF-ODE paths (Heun, 256 λ-uniform steps, data → noise) and at 128 of
the path's nodes the full Jacobian J of the score is computed (exact: D VJPs per node; the oracle's Hessian in closed
form). Each estimator of tr J with K matrix-vector products is then drawn R times from J alone (no further network
calls), which gives its variance Var_n at every node; the per-image standard error of log p is
√(Σ_n (w_n · ½g²(λ_n))² Var_n) with the trapezoid weights w_n in λ — the structure of the quadrature scheme
(math.md §I.4), where Δ log p enters the rate with coefficient ½g². Estimators (K products each):

* ``rademacher`` — iid Rademacher probes (the default); also its exact variance (2/K)Σ_{i≠j} S_ij², S = (J + Jᵀ)/2;
* ``gaussian`` — iid N(0, I) probes (variance (2/K)‖S‖²_F: never better);
* ``orthogonal`` — K distinct columns of a Sylvester–Hadamard matrix with random signs (±1 probes, mutually
  orthogonal; D a power of 2);
* ``hutch++`` — Meyer et al. (2021): a Gaussian sketch of K/4 columns, Q = orth(J S), tr(QᵀJQ) exactly and
  Rademacher Hutchinson on (I − QQᵀ)J(I − QQᵀ) with the remaining products (K/4 + K/4 + K/2);
* ``gaussian-cv`` — Rademacher probes on J − A plus tr A exactly, A = −(α²Σ + σ²I)⁻¹ the score Jacobian of the data's
  Gaussian fit (mean and covariance of the training data in model space): a control variate with an exact trace.
  A diagonal or isotropic A would be useless: Rademacher quadratic forms see only off-diagonal entries.

Antithetic probes are not listed: v and −v give the same quadratic form, so pairing them reduces nothing.

Run: .venv/bin/python benchmarks/variance_reduction.py [--quick]   (one thread; digits8 ≈ a few minutes)
Prints a table and writes benchmarks/results/variance_reduction.json (results/latest/ unless DIFFDENSITY_BENCH_RECORD=1).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

import diffdensity as dd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save, table  # noqa: E402

ESTIMATORS = ("rademacher", "gaussian", "orthogonal", "hutch++", "gaussian-cv")


def oracle_case(D: int, n: int):
    """An anisotropic mixture (as benchmarks/precision.py), n data points, its exact Hessian, its data covariance."""
    g = torch.Generator().manual_seed(0)
    means = torch.randn(3, D, generator=g, dtype=torch.float64)
    stds = 0.4 * (0.5 + torch.rand(3, D, generator=g, dtype=torch.float64))
    m = dd.GaussianMixture(means, stds, 0.2 + torch.rand(3, generator=g, dtype=torch.float64)).diffused(dd.VP())
    x = m.sample(n, m.schedule.lambda_max, generator=g)
    train = m.sample(20000, m.schedule.lambda_max, generator=g)
    return m, x, train, lambda x, lam: m.hessian(x, lam)


def digits_case(n: int):
    """digits8 on n held-out digits (dequantized, model space); exact Jacobians by D batched VJPs."""
    from diffdensity.data.loading import model_dataset
    from diffdensity.data.transforms import to_model_space

    m = dd.load("digits8")
    ds = model_dataset(m, "held-out images")
    g = torch.Generator().manual_seed(0)
    x = to_model_space(ds.test[:n], m.transform, True, g).double()
    train = to_model_space(ds.train, m.transform, True, g).double()
    m = m.double()

    def jac(x, lam):
        D = x[0].numel()
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            s = m.score(xg, torch.full((x.shape[0],), float(lam), dtype=x.dtype))
            eye = torch.eye(D, dtype=x.dtype)[:, None, :].expand(D, x.shape[0], D).reshape(D, *x.shape)
            rows = torch.autograd.grad(s, xg, eye, is_grads_batched=True)[0]  # (D, B, ...): row i of each J
        return rows.reshape(D, x.shape[0], D).transpose(0, 1)

    return m, x, train, jac


def path(model, x, steps: int):
    """States along the PF-ODE from λ_max to λ_min (Heun, λ-uniform): (λ (steps+1,), x (steps+1, B, ...))."""
    from diffdensity.dynamics import PFODE
    from diffdensity.integrate import integrate_ode

    sch = model.schedule
    xs = [x]
    integrate_ode(
        model,
        PFODE(sch),
        x,
        sch.lambda_max,
        sch.lambda_min,
        solver="heun",
        steps=steps,
        grid="lambda",
        callback=lambda info: xs.append(info["x"]),
        progress=False,
    )
    return torch.linspace(sch.lambda_max, sch.lambda_min, steps + 1, dtype=torch.float64), torch.stack(xs)


def hadamard(D: int) -> torch.Tensor:
    if D & (D - 1):
        raise ValueError(f"orthogonal probes here need D a power of 2 (got {D}).")
    H = torch.ones(1, 1, dtype=torch.float64)
    while H.shape[0] < D:
        H = torch.cat([torch.cat([H, H], 1), torch.cat([H, -H], 1)], 0)
    return H


def quad(V, J):
    """vᵀJv for probes V (R, K, B, D) and Jacobians J (B, D, D) -> (R, K, B)."""
    return torch.einsum("rkbd,bde,rkbe->rkb", V, J, V)


def draws(kind: str, J, K: int, R: int, g, A=None, H=None):
    """R draws of one estimator of tr J (per image) -> (R, B)."""
    B, D, _ = J.shape
    rad = lambda k: torch.randint(0, 2, (R, k, B, D), generator=g).double() * 2 - 1  # noqa: E731
    if kind == "rademacher":
        return quad(rad(K), J).mean(1)
    if kind == "gaussian":
        return quad(torch.randn(R, K, B, D, generator=g, dtype=torch.float64), J).mean(1)
    if kind == "orthogonal":
        cols = torch.argsort(torch.rand(R, B, D, generator=g), -1)[..., :K]  # K distinct columns per draw and image
        signs = rad(1)[:, 0]  # (R, B, D)
        V = H[:, cols].permute(1, 3, 2, 0) * signs[:, None]  # (R, K, B, D)
        return quad(V, J).mean(1)
    if kind == "hutch++":
        k = max(1, K // 4)
        S = torch.randn(R, B, D, k, generator=g, dtype=torch.float64)
        Q = torch.linalg.qr(torch.einsum("bde,rbek->rbdk", J, S))[0]  # (R, B, D, k)
        exact = torch.einsum("rbdk,bde,rbek->rb", Q, J, Q)
        v = rad(K - 2 * k)
        P = v - torch.einsum("rbdk,rbek,rjbe->rjbd", Q, Q, v)  # (I − QQᵀ)v
        return exact + quad(P, J).mean(1)
    if kind == "gaussian-cv":
        return quad(rad(K), J - A).mean(1) + torch.diagonal(A, dim1=-2, dim2=-1).sum(-1)
    raise ValueError(kind)


def run_case(name, model, x, train, jac, K: int, R: int, steps: int, nodes: int) -> dict:
    sch = model.schedule
    t0 = time.perf_counter()
    lams, xs = path(model, x, steps)
    stride = steps // nodes
    lams, xs = lams[::stride], xs[::stride]
    w = torch.full_like(lams, abs(float(lams[1] - lams[0])))
    w[0] = w[-1] = w[0] / 2  # trapezoid in λ
    coef = 0.5 * sch.g2(lams)
    B, D = x.shape[0], x[0].numel()
    flat = train.reshape(train.shape[0], -1)
    cov = torch.cov(flat.T)  # the Gaussian fit's mean does not enter its score Jacobian
    H = hadamard(D) if not D & (D - 1) else None
    g = torch.Generator().manual_seed(0)
    var = {k: torch.zeros(B, dtype=torch.float64) for k in (*ESTIMATORS, "rademacher (exact)")}
    for lam, xn, wn, cn in zip(lams.tolist(), xs, w, coef):
        J = jac(xn.reshape(B, *x.shape[1:]), lam).reshape(B, D, D)
        a, s = (float(v) for v in sch.alpha_sigma(torch.tensor(lam, dtype=torch.float64)))
        A = -torch.linalg.inv(a * a * cov + s * s * torch.eye(D, dtype=torch.float64))
        scale = float(wn * cn) ** 2
        for kind in ESTIMATORS:
            if kind == "orthogonal" and H is None:
                continue
            var[kind] += scale * draws(kind, J, K, R, g, A, H).var(0)
        S = 0.5 * (J + J.transpose(1, 2))
        off = S.pow(2).sum((1, 2)) - torch.diagonal(S, dim1=1, dim2=2).pow(2).sum(1)
        var["rademacher (exact)"] += scale * 2 * off / K
    se = {k: v.sqrt() for k, v in var.items() if v.any()}
    base = se["rademacher (exact)"]
    rows = [
        {
            "case": name,
            "estimator": k,
            "K": K,
            "median s.e. (nats)": float(v.median()),
            "variance vs rademacher": float((v.pow(2) / base.pow(2)).median()),
        }
        for k, v in se.items()
    ]
    return {"rows": rows, "seconds": time.perf_counter() - t0, "n": B, "D": D, "nodes": len(lams)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="4 images, 32 nodes, R = 128")
    ap.add_argument("--only", default="oracle64,digits8")
    ap.add_argument("--K", default="4,16", help="products per node (comma-separated)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    n, steps, nodes, R = (4, 64, 32, 128) if args.quick else (16, 256, 128, 512)
    cases = {"oracle64": lambda: oracle_case(64, n), "digits8": lambda: digits_case(n)}
    out, rows = {}, []
    for name in args.only.split(","):
        model, x, train, jac = cases[name]()
        for K in (int(k) for k in args.K.split(",")):
            res = run_case(name, model, x, train, jac, K, R, steps, nodes)
            out[f"{name}/K={K}"] = res
            rows += res["rows"]
            print(table(res["rows"], list(res["rows"][0])), f"\n({res['seconds']:.0f} s)\n", flush=True)
    print(table(rows, list(rows[0])))
    save("variance_reduction", {"cases": out, "quick": args.quick, "R": R})


if __name__ == "__main__":
    main()
