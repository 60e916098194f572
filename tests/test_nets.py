"""Tests for diffdensity.nets: shapes, config round trip, float64, per-sample independence, trainability."""

import json

import pytest
import torch
from torch import nn

from diffdensity.nets import MLP, UNET_PRESETS, UNet, build_net, unet_preset

SMALL = {"digits": (1, 8, 8), "patches16": (3, 16, 16)}


def _randomize(net, std=0.05, seed=0):
    """Non-zero weights everywhere (the zero-initialised output layers would hide bugs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * std)
    return net


def _nets():
    yield "mlp", MLP(6, hidden=32, depth=2, emb_dim=16), (2, 3)
    yield "digits", unet_preset("digits"), SMALL["digits"]
    yield "patches16", unet_preset("patches16", ch=16), SMALL["patches16"]
    yield (
        "odd7",
        UNet(
            in_channels=2,
            resolution=7,
            ch=16,
            ch_mult=(1, 2, 2),
            num_res_blocks=1,
            attn_resolutions=(4,),
            dropout=0.0,
            norm_groups=4,
        ),
        (2, 7, 7),
    )


@pytest.mark.parametrize("name,net,shape", list(_nets()), ids=[n for n, _, _ in _nets()])
def test_shapes_lambda_and_config_roundtrip(name, net, shape):
    net = _randomize(net).eval()
    x = torch.randn(3, *shape, generator=torch.Generator().manual_seed(1))
    lam = torch.tensor([-20.0, 0.5, 20.0])
    y = net(x, lam)
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert torch.allclose(net(x, 0.5)[1], y[1], atol=1e-5)  # scalar λ broadcasts; per-sample λ is per-sample
    assert not torch.allclose(y[0], net(x, 0.5)[0])  # λ matters
    cfg = json.loads(json.dumps(net.config))
    assert cfg["type"] in ("MLP", "UNet")
    twin = build_net(cfg)
    twin.load_state_dict(net.state_dict(), strict=True)
    assert [(k, v.shape) for k, v in twin.state_dict().items()] == [(k, v.shape) for k, v in net.state_dict().items()]
    assert torch.equal(twin.eval()(x, lam), y)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())


@pytest.mark.parametrize("name", ["mlp", "digits"])
def test_float64_and_samples_independent(name):
    net, shape = {n: (m, s) for n, m, s in _nets()}[name]
    net = _randomize(net).double().eval()
    x = torch.randn(4, *shape, dtype=torch.float64)
    lam = torch.linspace(-5, 5, 4, dtype=torch.float64)
    y = net(x, lam)
    assert y.dtype == torch.float64
    x2 = x.clone()
    x2[2] += torch.randn(shape, dtype=torch.float64)
    y2 = net(x2, lam)
    assert torch.equal(y2[[0, 1, 3]], y[[0, 1, 3]]) and not torch.equal(y2[2], y[2])
    lam2 = lam.clone()
    lam2[0] = 17.0
    assert torch.equal(net(x, lam2)[1:], y[1:])


def test_unet_output_zero_initialised_and_dropout_used():
    net = unet_preset("digits")
    x = torch.randn(2, 1, 8, 8)
    assert net(x, torch.zeros(2)).abs().max() == 0
    assert any(isinstance(m, nn.Dropout) and m.p == 0.1 for m in net.modules())


def test_cifar10_preset_parameter_count_shape_and_config():
    torch.manual_seed(0)
    net = unet_preset("cifar10").eval()
    n = sum(p.numel() for p in net.parameters())
    print(f"cifar10 preset parameters: {n / 1e6:.2f}M")
    assert 35e6 < n < 70e6  # DDPM++ (Song et al. 2021) with this layout: ~62M
    c = net.config
    assert (c["ch"], c["ch_mult"], c["num_res_blocks"], c["attn_resolutions"], c["dropout"]) == (
        128,
        [1, 2, 2, 2],
        4,
        [16],
        0.1,
    )
    assert (c["num_heads"], c["head_dim"]) == (8, 16)
    twin = build_net(json.loads(json.dumps(c)))
    twin.load_state_dict(net.state_dict(), strict=True)
    with torch.no_grad():
        y = net(torch.randn(2, 3, 32, 32), torch.tensor([-3.0, 4.0]))
    assert y.shape == (2, 3, 32, 32)


def test_presets_and_errors():
    assert set(UNET_PRESETS) == {"cifar10", "digits", "patches16"}
    assert unet_preset("digits", ch=16).config["ch"] == 16
    with pytest.raises(ValueError, match="valid presets: cifar10, digits, patches16"):
        unet_preset("imagenet")
    with pytest.raises(ValueError, match="valid types"):
        build_net({"type": "Transformer"})
    with pytest.raises(ValueError, match="unexpected key"):
        build_net({"type": "MLP", "dim": 2, "width": 3})
    with pytest.raises(ValueError, match=r"need \(batch, 1, H, W\)"):
        unet_preset("digits")(torch.zeros(2, 8, 8), 0.0)
    with pytest.raises(ValueError, match="6 values per sample"):
        MLP(6)(torch.zeros(2, 5), 0.0)
    with pytest.raises(ValueError, match="lam has 3 values"):
        MLP(2)(torch.zeros(2, 2), torch.zeros(3))


@pytest.mark.parametrize("name", ["mlp", "digits"])
def test_adam_reduces_denoising_loss(name):
    torch.manual_seed(0)
    if name == "mlp":
        net, shape = MLP(2, hidden=64, depth=2), (2,)
    else:
        net, shape = unet_preset("digits", ch=16, dropout=0.0, norm_groups=4), (1, 8, 8)
    g = torch.Generator().manual_seed(0)
    x0 = torch.sign(torch.randn(32, *shape, generator=g))  # simple data: ±1 everywhere
    eps = torch.randn(32, *shape, generator=g)
    lam = torch.rand(32, generator=g) * 8 - 4
    a, s = torch.sigmoid(lam).sqrt(), torch.sigmoid(-lam).sqrt()
    xt = a.view(-1, *[1] * len(shape)) * x0 + s.view(-1, *[1] * len(shape)) * eps

    def loss():
        return (net(xt, lam) - eps).pow(2).mean()

    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    before = loss().item()
    for _ in range(25):
        opt.zero_grad()
        loss().backward()
        opt.step()
    assert loss().item() < 0.8 * before
