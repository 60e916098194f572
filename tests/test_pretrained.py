"""Shipped models: ``patches16`` loads with the right shapes and transform and beats the Gaussian baseline on a few
held-out patches; the model cards' numbers are reproducible (slow: `make slow`)."""

from __future__ import annotations

import math

import pytest
import torch

import diffdensity as dd
from diffdensity.data import images, load_dataset

# benchmarks/patches16_baselines.py on all 2000 held-out patches (uniform dequantization, bits/dim)
GAUSSIAN_BPD = 5.0142
HISTOGRAM_BPD = 7.8329


def test_patches16_loads_with_shapes_and_transform():
    m = dd.load("patches16")
    assert not m.training and m.parametrization == "eps"
    t = m.transform
    assert t.levels == 256 and tuple(t.data_shape) == (3, 16, 16) and tuple(t.model_shape) == (3, 16, 16)
    x = torch.tensor([0.0, 128.0, 256.0]).expand(3, 16, 16, 3).permute(3, 0, 1, 2)  # (3, 3, 16, 16) data units
    z = t.forward(x)
    torch.testing.assert_close(z[:, 0, 0, 0], torch.tensor([-1.0, 0.0, 1.0]))  # z = 2x/256 − 1
    assert math.isclose(float(t.log_abs_det()), 768 * math.log(2 / 256), rel_tol=1e-6)
    with torch.no_grad():
        out = m.net(torch.zeros(2, 3, 16, 16), torch.tensor([0.0, 1.0]))
    assert out.shape == (2, 3, 16, 16) and torch.isfinite(out).all()


def test_patches16_heldout_bpd_beats_gaussian_baseline():
    torch.manual_seed(0)
    m = dd.load("patches16")
    x = images.photo_patches(images.PATCH_TEST_IMAGES, 8, 16, 4, 1)  # the first 8 of load_dataset's 2000 test patches
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        bpd = dd.bits_per_dim(m, x, levels=256, generator=g, solver="heun", steps=16)
    assert bpd.shape == (8,) and torch.isfinite(bpd).all()
    # shipped model: 3.71 here (per-patch spread ≈ 1 bits/dim, stderr ≈ 0.38 on 8 patches); an untrained net: 15.5
    assert float(bpd.mean()) < GAUSSIAN_BPD < HISTOGRAM_BPD


@pytest.mark.slow
def test_digits8_model_card_bits_per_dim():
    """The card: 1.7481 ± 0.0130 held-out bits/dim (360 digits, dopri5 1e-5, one Hutchinson probe, seed 0)."""
    model = dd.load("digits8")
    x = load_dataset("digits").test
    bpd = dd.bits_per_dim(model, x, levels=17, generator=torch.Generator().manual_seed(0))
    assert bpd.shape == (360,)
    assert abs(bpd.mean().item() - 1.7481) < 0.05
