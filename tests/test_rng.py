"""_rng.draw: numbers come from the generator's device and land on the tensor's device."""

import pytest
import torch

from diffdensity._rng import draw


@pytest.mark.parametrize("kind", ["normal", "uniform", "rademacher"])
def test_draw_uses_the_generator_stream_and_moves_to_the_device(kind):
    g = torch.Generator().manual_seed(5)
    a = draw(kind, (3, 4), g, dtype=torch.float64)
    g.manual_seed(5)
    ref = {
        "normal": lambda: torch.randn((3, 4), generator=g, dtype=torch.float64),
        "uniform": lambda: torch.rand((3, 4), generator=g, dtype=torch.float64),
        "rademacher": lambda: (torch.randint(0, 2, (3, 4), generator=g) * 2 - 1).double(),
    }[kind]()
    assert torch.equal(a, ref)  # the same stream as before: seeds keep their results
    if kind == "rademacher":
        assert set(a.unique().tolist()) <= {-1.0, 1.0}
    # drawn where the generator lives, returned where asked (meta stands in for a GPU: none on the CI machine)
    m = draw(kind, (3, 4), g, dtype=torch.float32, device="meta")
    assert m.device.type == "meta" and m.shape == (3, 4) and m.dtype == torch.float32


def test_draw_rejects_unknown_kinds():
    with pytest.raises(ValueError, match="normal, uniform or rademacher"):
        draw("cauchy", (2,))
