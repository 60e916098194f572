"""Pipelines as models: tiny random SD (ε, v) and SD3 (flow) pipelines built in the test, no downloads."""

import shutil

import pytest
import torch

import diffdensity as dd

pytest.importorskip("diffusers")
pytest.importorskip("transformers")
from diffdensity.adapters.tiny import tiny_pipeline  # noqa: E402
from diffdensity.schedules import FlowMatching  # noqa: E402


@pytest.fixture(scope="module")
def pipes():
    return {k: tiny_pipeline(k) for k in ("sd-eps", "sd-v", "sd3")}


def lam_of_timestep(m, t):
    """λ of a pipeline timestep (an integer of the trained table, or T·σ for flow matching)."""
    if m.kind == "flow":
        return float(FlowMatching().time_to_lam(torch.tensor(float(t) / m.num_train_timesteps, dtype=torch.float64)))
    return float(m.lam_table[int(t)])


def first_step(pipe, gs, prompt="a cat"):
    """(model_output, timestep, latents) the pipeline's own __call__ hands its scheduler at its second step."""
    seen = []
    step = pipe.scheduler.step

    def spy(out, t, x, *a, **k):
        seen.append((out.clone(), t, x.clone()))
        return step(out, t, x, *a, **k)

    pipe.scheduler.step = spy
    try:
        pipe(
            prompt,
            num_inference_steps=2,
            guidance_scale=gs,
            output_type="latent",
            height=16,
            width=16,
            generator=torch.Generator().manual_seed(0),
        )
    finally:
        del pipe.scheduler.step
    return seen[1]  # the second: a flow pipeline starts at σ = 1 (λ = −∞), outside every trained range


@pytest.mark.parametrize("kind", ["sd-eps", "sd-v", "sd3"])
def test_guidance_scale_is_the_pipelines_own_field(pipes, kind):
    pipe = pipes[kind]
    out, t, x = first_step(pipe, 7.5)
    m = dd.from_diffusers(pipe, prompt="a cat", guidance_scale=7.5)
    lam = lam_of_timestep(m, t)
    want = m.score_from_output(out, x, lam)
    got = m.score(x, lam)
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))
    trap = dd.from_diffusers(
        pipe.unet if kind != "sd3" else pipe.transformer,
        pipe.scheduler,
        condition=m.condition,
        uncondition=m.uncondition,
        guidance_scale=7.5,
    )  # library w = 7.5
    assert not torch.allclose(trap.score(x, lam), want, rtol=1e-3)
    assert dd.adapters.library_w(7.5) == 6.5


def test_decode_encode_round_trip_is_the_vaes_own_reconstruction(pipes):
    m = dd.from_diffusers(pipes["sd-eps"], prompt="")
    img = m.decode(torch.randn(2, *m.latent_shape))
    assert img.dtype == torch.uint8 and img.shape == (2, 3, 16, 16)
    vae = m.vae
    own = vae.decode(vae.encode(2 * img.float() / 255 - 1).latent_dist.mode()).sample
    own = ((own / 2 + 0.5).clamp(0, 1) * 255).round()
    assert (m.decode(m.encode(img)).float() - own).abs().max() <= 1.0
    lp = m.log_prob_images(img, solver="euler", steps=2, divergence="hutchinson")
    assert lp.shape == (2,) and torch.isfinite(lp).all()
    with pytest.raises(ValueError, match="uint8 or floats"):
        m.encode(img.float())


def test_sd3_decode_uses_the_shift_factor(pipes):
    m = dd.from_diffusers(pipes["sd3"], prompt="a cat")
    z = torch.randn(1, *m.latent_shape)
    vae = m.vae
    want = vae.decode(z / vae.config.scaling_factor + vae.config.shift_factor).sample
    assert torch.allclose(m.decode(z, output="float"), (want / 2 + 0.5).clamp(0, 1), atol=1e-6)


def hub_cache(root, folder, repo="org--tiny"):
    snap = root / f"models--{repo}" / "snapshots" / ("0" * 40)
    shutil.copytree(folder, snap)
    (root / f"models--{repo}" / "refs").mkdir()
    (root / f"models--{repo}" / "refs" / "main").write_text("0" * 40)
    return root


def test_hub_id_resolves_from_the_local_cache_offline(pipes, tmp_path, monkeypatch):
    import huggingface_hub.constants as hc

    pipes["sd-eps"].save_pretrained(tmp_path / "saved")
    cache = hub_cache(tmp_path / "hub", tmp_path / "saved")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    m = dd.from_diffusers("org/tiny", prompt="a cat", guidance_scale=3.0)
    x = torch.randn(1, *m.latent_shape)
    ref = dd.from_diffusers(pipes["sd-eps"], prompt="a cat", guidance_scale=3.0)
    assert torch.allclose(m.score(x, 0.0), ref.score(x, 0.0), atol=1e-5)
    with pytest.raises(ValueError, match=r"'org/missing'.*local_files_only=True"):
        dd.from_diffusers("org/missing", prompt="a", local_files_only=True)


def test_pipeline_folder_and_conditional_network_errors(pipes, tmp_path):
    pipes["sd-eps"].save_pretrained(tmp_path)
    m = dd.from_diffusers(tmp_path, prompt=["a cat", "a dog"], guidance_scale=2.0)
    assert m.score(torch.randn(2, *m.latent_shape), 0.0).shape == (2, 4, 8, 8)
    bare = dd.from_diffusers(tmp_path)  # the UNet alone: conditional, no condition given
    with pytest.raises(ValueError, match="conditional: it needs encoder_hidden_states") as e:
        bare.score(torch.randn(1, 4, 8, 8), 0.0)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="prompt="):
        dd.from_diffusers(pipes["sd-eps"])
    with pytest.raises(ValueError, match="text-to-image pipeline"):
        dd.from_diffusers(pipes["sd-eps"].unet, pipes["sd-eps"].scheduler, prompt="a")


def test_derivatives_go_through_diffusers_attention():
    """JVPs (forward mode), score alignment and HVPs on a UNet2DModel with attention blocks."""
    from diffusers import DDPMScheduler
    from test_adapters import tiny_unet

    from diffdensity.evaluation import Divergence, evaluate

    m = dd.from_diffusers(tiny_unet(), DDPMScheduler(num_train_timesteps=1000))
    x = torch.randn(2, 1, 8, 8)
    sa = dd.score_alignment(m, x, 0.0, steps=2)
    assert torch.isfinite(torch.as_tensor(sa)).all()
    ev = evaluate(m, 0.0, x, {"lap"}, Divergence("hutchinson", mode="jvp", generator=torch.Generator().manual_seed(0)))
    assert torch.isfinite(ev.lap).all()
    ev = evaluate(m, 0.0, x, {"hvp"}, Divergence("exact"))
    assert torch.isfinite(ev.hvp(torch.randn_like(x))).all()
