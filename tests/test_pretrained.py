"""Shipped models: their model cards' numbers are reproducible (slow: `make slow`)."""
import pytest
import torch

import diffdensity as dd
from diffdensity.data import load_dataset


@pytest.mark.slow
def test_digits8_model_card_bits_per_dim():
    """The card: 1.7481 ± 0.0130 held-out bits/dim (360 digits, dopri5 1e-5, one Hutchinson probe, seed 0)."""
    model = dd.load("digits8")
    x = load_dataset("digits").test
    bpd = dd.bits_per_dim(model, x, levels=17, generator=torch.Generator().manual_seed(0))
    assert bpd.shape == (360,)
    assert abs(bpd.mean().item() - 1.7481) < 0.05
