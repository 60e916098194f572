"""Saving and loading model folders: exact round trips and clear errors for corrupt or mismatched files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import diffdensity.io as io
from diffdensity.data import Transform, unit_interval_transform
from diffdensity.models import NetworkModel
from diffdensity.nets import MLP, UNet
from diffdensity.schedules import VE, VP, FlowMatching

torch.set_num_threads(1)


def _mlp_model(param="eps", schedule=None, hidden=16):
    torch.manual_seed(0)
    return NetworkModel(MLP(2, hidden=hidden, depth=1), schedule or VP(), param, transform=Transform.identity((2,)))


def _unet_model():
    torch.manual_seed(0)
    net = UNet(
        in_channels=1,
        resolution=8,
        ch=8,
        ch_mult=(1, 2),
        num_res_blocks=1,
        attn_resolutions=(4,),
        dropout=0.1,
        head_dim=8,
        norm_groups=4,
    )
    return NetworkModel(net, VP(), "eps", transform=unit_interval_transform((8, 8), (1, 8, 8), 17))


@pytest.mark.parametrize("param,schedule", [("eps", VP()), ("v", VE()), ("flow", FlowMatching()), ("x0", VP(-8, 9))])
def test_round_trip_mlp_exact(tmp_path, param, schedule):
    m = _mlp_model(param, schedule)
    io.save(m, tmp_path / "m", dataset="8gaussians", training={"steps": 3})
    r = io.load(tmp_path / "m")
    assert not r.training and r.parametrization == param and r.schedule == schedule
    assert r.transform == m.transform
    assert r.config["dataset"] == "8gaussians" and r.config["training"] == {"steps": 3}
    x, lam = torch.randn(7, 2), torch.linspace(schedule.lambda_min, schedule.lambda_max, 7)
    m.eval()
    assert torch.equal(m.score(x, lam), r.score(x, lam))
    assert torch.equal(m.eps(x, lam), r.eps(x, lam))


def test_round_trip_unet_exact_and_paths(tmp_path):
    m = _unet_model().eval()
    io.save(m, tmp_path / "u")
    x = torch.randn(3, 1, 8, 8)
    for where in (
        tmp_path / "u",
        str(tmp_path / "u"),
        tmp_path / "u" / "config.json",
        tmp_path / "u" / "model.safetensors",
    ):
        r = io.load(where)
        assert torch.equal(m.score(x, 1.5), r.score(x, 1.5))
        assert r.transform.levels == 17 and r.transform.model_shape == (1, 8, 8)


def test_save_explicit_weights(tmp_path):
    m = _mlp_model()
    other = {k: torch.full_like(v, 0.5) for k, v in m.net.state_dict().items()}
    io.save(m, tmp_path / "w", weights=other)
    r = io.load(tmp_path / "w")
    assert all(torch.equal(v, torch.full_like(v, 0.5)) for v in r.net.state_dict().values())


def test_save_errors(tmp_path):
    class Plain(torch.nn.Module):
        def forward(self, x, lam):
            return x

    with pytest.raises(ValueError, match="config"):
        io.save(NetworkModel(Plain(), VP()), tmp_path / "p")
    with pytest.raises(ValueError, match="reserved"):
        io.save(_mlp_model(), tmp_path / "p", schedule="x")
    with pytest.raises(ValueError, match="JSON"):
        io.save(_mlp_model(), tmp_path / "p", meta=object())
    with pytest.raises(ValueError, match="folder"):
        io.save(_mlp_model(), tmp_path / "p.safetensors")


@pytest.fixture
def saved(tmp_path):
    io.save(_mlp_model(), tmp_path / "m")
    return tmp_path / "m"


def _edit_config(folder, fn):
    p = Path(folder) / "config.json"
    cfg = json.loads(p.read_text())
    fn(cfg)
    p.write_text(json.dumps(cfg))


def test_truncated_safetensors(saved):
    p = saved / "model.safetensors"
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"model\.safetensors.*truncated or corrupt"):
        io.load(saved)


def test_garbage_safetensors(saved):
    (saved / "model.safetensors").write_bytes(b"\x00" * 5)
    with pytest.raises(ValueError, match=r"model\.safetensors"):
        io.load(saved)


def _rewrite_weights(folder, fn):
    from safetensors.torch import load_file, save_file

    p = str(Path(folder) / "model.safetensors")
    state = load_file(p)
    fn(state)
    save_file(state, p)


def test_missing_key(saved):
    _rewrite_weights(saved, lambda s: s.pop(sorted(s)[0]))
    with pytest.raises(ValueError, match=r"model\.safetensors.*missing keys"):
        io.load(saved)


def test_unexpected_key(saved):
    _rewrite_weights(saved, lambda s: s.__setitem__("extra.weight", torch.zeros(2)))
    with pytest.raises(ValueError, match=r"model\.safetensors.*unexpected keys \['extra.weight'\]"):
        io.load(saved)


def test_wrong_shapes(saved):
    _edit_config(saved, lambda c: c["net"].__setitem__("hidden", 17))
    with pytest.raises(ValueError, match=r"model\.safetensors.*wrong shapes"):
        io.load(saved)


def test_bad_json(saved):
    (saved / "config.json").write_text('{"format": "diffdensity-model", ')
    with pytest.raises(ValueError, match=r"config\.json: not valid JSON"):
        io.load(saved)


@pytest.mark.parametrize(
    "edit,match",
    [
        (lambda c: c["schedule"].__setitem__("name", "Cosine"), r"config\.json: bad schedule"),
        (lambda c: c.__setitem__("parametrization", "eta"), r"config\.json: unknown parametrization"),
        (lambda c: c["net"].__setitem__("type", "Transformer"), r"config\.json: cannot build the network"),
        (lambda c: c.__setitem__("format", "other"), r"config\.json: not a diffdensity model"),
        (lambda c: c.__setitem__("version", 99), r"config\.json: config version"),
        (lambda c: c.pop("net"), r"config\.json: missing keys \['net'\]"),
        (lambda c: c.__setitem__("transform", {"bogus": 1}), r"config\.json: bad data transform"),
    ],
    ids=["schedule", "parametrization", "net", "format", "version", "missing", "transform"],
)
def test_bad_config(saved, edit, match):
    _edit_config(saved, edit)
    with pytest.raises(ValueError, match=match):
        io.load(saved)


def test_missing_files_and_unknown_name(saved, tmp_path):
    (saved / "model.safetensors").unlink()
    with pytest.raises(ValueError, match=r"model\.safetensors: missing"):
        io.load(saved)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"config\.json: missing"):
        io.load(tmp_path / "empty")
    with pytest.raises(ValueError, match="shipped models"):
        io.load("no-such-model-anywhere")


def test_shipped_names_resolve(tmp_path, monkeypatch):
    io.save(_mlp_model(), tmp_path / "pre" / "toy-a")
    (tmp_path / "pre" / "not-a-model").mkdir()
    monkeypatch.setattr(io, "PRETRAINED_DIR", tmp_path / "pre")
    assert io.list_models() == ["toy-a"]
    monkeypatch.chdir(tmp_path)
    assert io.load("toy-a").parametrization == "eps"


def test_shipped_models_load():
    names = io.list_models()
    for name in names:
        m = io.load(name)
        assert m.transform is not None and not m.training
        folder = io.PRETRAINED_DIR / name
        assert (folder / "README.md").is_file(), f"{name} has no model card"
        size = sum(p.stat().st_size for p in folder.iterdir())
        assert size < 20e6, f"{name} is {size / 1e6:.1f} MB"
    if names:
        assert all(" " not in n for n in names)


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")

    def boom(tmp):
        Path(tmp).write_text("half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        io.atomic_write(target, boom)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]
    io.atomic_write(target, lambda tmp: Path(tmp).write_text("new"))
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["f.txt"]


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_saved_files_follow_the_umask(tmp_path, umask):
    """model.safetensors used to end up 0600 whatever the umask (safetensors writes 0600 files)."""
    import os

    old = os.umask(umask)
    try:
        folder = io.save(NetworkModel(MLP(2, hidden=8, depth=1), VP()), tmp_path / "m")
        io.atomic_write(tmp_path / "t.txt", lambda tmp: Path(tmp).write_text("x"))
    finally:
        os.umask(old)
    for p in (folder / io.WEIGHTS_NAME, folder / io.CONFIG_NAME, tmp_path / "t.txt"):
        assert p.stat().st_mode & 0o777 == 0o666 & ~umask, (p.name, oct(p.stat().st_mode))


def test_clean_temp_files_removes_only_atomic_write_leftovers(tmp_path):
    (tmp_path / ".checkpoint.pt.k3j2.tmp").write_bytes(b"x" * 100)
    (tmp_path / ".model.safetensors.a1.tmp").write_bytes(b"x")
    (tmp_path / "keep.tmp").write_text("not ours: no leading dot")
    (tmp_path / "checkpoint.pt").write_text("ckpt")
    removed = io.clean_temp_files(tmp_path)
    assert sorted(p.name for p in removed) == [".checkpoint.pt.k3j2.tmp", ".model.safetensors.a1.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt", "keep.tmp"]
    assert io.clean_temp_files(tmp_path / "missing") == []
