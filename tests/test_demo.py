"""The main job end to end: `diffdensity demo --quick` writes every panel and a report that opens in headless
Chromium with every image loaded and no console error; `diffdensity reproduce` on tiny inputs."""

import json

from click.testing import CliRunner
from test_report import open_in_chromium

from diffdensity.cli import main

PANELS = ("mixture", "threshold", "png", "blur", "fig4", "guidance", "distributional", "likelihood")


def test_quick_demo_builds_a_report_that_opens_in_chromium(tmp_path):
    """The main job end to end (about 40 s: every demo panel in quick mode, then headless Chromium on the page)."""
    out = tmp_path / "demo"
    res = CliRunner().invoke(main, ["demo", "--out", str(out), "--quick"])
    assert res.exit_code == 0, res.output
    assert str(out / "report" / "index.html") in res.output  # it prints the report's path
    summary = json.loads((out / "summary.json").read_text())
    for panel in PANELS:
        assert (out / panel).is_dir(), panel
        assert not (isinstance(summary.get(panel), dict) and "skipped" in summary[panel]), summary.get(panel)
    mix = summary["mixture"]
    assert mix["corrected"]["mean_abs_error"] < mix["em"]["mean_abs_error"]  # the corrected tracker wins
    assert abs(mix["corrected"]["mean_error"]) < 0.1
    assert mix["pf_ode_log_prob"]["mean_abs_error"] < 1e-3
    d = summary["digits8"]
    assert 1.0 < d["likelihood"]["bits_per_dim"] < 2.5
    page = (out / "report" / "index.html").read_text()
    assert "Every number" in page and page.count("<figure>") >= 8
    dom, log = open_in_chromium(out / "report" / "index.html")
    assert 'data-images-ok="yes"' in dom, dom[:300]
    assert not [line for line in log.splitlines() if "CONSOLE" in line or "Uncaught" in line]


def test_reproduce_prints_the_reference_summary_lines(tmp_path):
    out = tmp_path / "r"
    res = CliRunner().invoke(
        main, ["reproduce", "--model", "toy2d-moons", "--n", "8", "--steps", "16", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert "SDE sampling: average tracked logp" in res.output
    assert "HD sampling with threshold 4: average logp" in res.output
    assert "Density guidance with q=0.5; average logp" in res.output
    assert "Correlation of score alignment with and without score" in res.output
    sampling = json.loads((out / "sampling.json").read_text())
    assert set(sampling["hd"]) == {"8", "6", "4", "2"} and sampling["nfe"] == 17
    assert len(json.loads((out / "alignment.json").read_text())["eq12"]) == 8
    assert (out / "guidance.json").is_file()


def test_demo_runs_on_a_users_run_folder(tmp_path):
    """`demo --model RUN --device cpu`: the score-model panels use a freshly trained run (a tiny digits UNet), the
    report names it, the held-out data come from the run's own config, and Fig. 4 has that one model. (About 20 s:
    it trains that run first.)"""
    run = tmp_path / "run"
    res = CliRunner().invoke(
        main,
        [
            "train",
            "--dataset",
            "digits",
            "--net",
            "unet",
            "--preset",
            "digits",
            "--net-opt",
            "ch=8",
            "--net-opt",
            "ch_mult=[1]",
            "--net-opt",
            "attn_resolutions=[]",
            "--net-opt",
            "head_dim=8",
            "--net-opt",
            "norm_groups=4",
            "--net-opt",
            "emb_dim=16",
            "--steps",
            "100",
            "--lr",
            "3e-3",
            "--eval-every",
            "0",
            "--sample-every",
            "0",
            "--device",
            "cpu",
            "--no-progress",
            "--out",
            str(run),
        ],
    )
    assert res.exit_code == 0, res.output
    out = tmp_path / "demo"
    res = CliRunner().invoke(main, ["demo", "--quick", "--model", str(run), "--device", "cpu", "--out", str(out)])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == str(run) and summary["device"] == "cpu"
    for panel in PANELS:
        assert (out / panel).is_dir(), panel
        assert not (isinstance(summary.get(panel), dict) and {"skipped", "failed"} & set(summary[panel]))
    mine = summary[str(run)]
    assert not {"skipped", "failed"} & set(mine), mine
    assert set(mine["fig4"]) == {str(run)}  # no digits8-quality twin for a user's model
    lik = json.loads((out / "likelihood" / "likelihood.json").read_text())
    assert lik["model"] == str(run) and "model_card" not in lik and 1.0 < lik["bits_per_dim"] < 8.0
    assert f"model {run}" in (out / "report" / "index.html").read_text()


def test_demo_refuses_bad_models_and_devices_before_any_work(tmp_path):
    for args, msg in (
        (["--model", "no-such-model"], "shipped models"),
        (["--device", "cuda:7"], "device"),
        (["--model", "toy2d-moons"], "image model"),
    ):
        res = CliRunner().invoke(main, ["demo", "--quick", "--out", str(tmp_path / "d"), *args])
        assert res.exit_code == 1 and msg in res.output and "Traceback" not in res.output, res.output
        assert not (tmp_path / "d" / "mixture").exists()  # refused before the first panel


def test_demo_finds_the_held_out_data_of_a_folder_run(tmp_path):
    """A run trained on an image folder records its root (in the run's training config); the demo reads its held-out
    split from there instead of failing with "folder needs root=" (issue 23)."""
    import numpy as np
    from PIL import Image

    from diffdensity.demo import _held_out_images
    from diffdensity.io import load

    imgs = tmp_path / "imgs"
    imgs.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(imgs / f"{i:02d}.png")
    run = tmp_path / "run"
    res = CliRunner().invoke(
        main,
        [
            "train",
            "--dataset",
            "folder",
            "--root",
            str(imgs),
            "--data-opt",
            "size=8",
            "--data-opt",
            "grayscale=true",
            "--net",
            "mlp",
            "--hidden",
            "16",
            "--depth",
            "1",
            "--steps",
            "2",
            "--batch-size",
            "4",
            "--eval-every",
            "0",
            "--sample-every",
            "0",
            "--device",
            "cpu",
            "--no-progress",
            "--out",
            str(run),
        ],
    )
    assert res.exit_code == 0, res.output
    test = _held_out_images(load(str(run)))
    assert test.shape[0] >= 1 and tuple(test.shape[-2:]) == (8, 8)


def test_other_models_are_reported_apart(tmp_path):
    """The demo's page judges the model under study: the exact mixture and the distributional pair come after their
    own heading and stay out of the findings; a run's own panel (configuration, loss, card) comes first."""
    from diffdensity.demo import _report

    for name, obj in (
        ("run", {"analysis": "run", "title": "The model: r", "configuration": {"dataset": "digits"}}),
        (
            "mixture",
            {
                "analysis": "mixture",
                "corrected": {"mean_error": 0.0, "mean_abs_error": 0.1, "nfe": 9},
                "em": {"mean_error": 1.0, "mean_abs_error": 1.0, "nfe": 8},
            },
        ),
        ("likelihood", {"analysis": "likelihood", "model": "r", "bits_per_dim": 2.0, "sem": 0.1}),
    ):
        (tmp_path / name).mkdir()
        (tmp_path / name / f"{name}.json").write_text(json.dumps(obj))
    summary = {"model": "r", "version": "x", "seed": 0, "quick": True, "device": "cpu", "seconds": 1.0}
    page = _report(tmp_path, summary, is_run=True).read_text()
    findings = page[page.index("id='findings'") : page.index("</section>")]
    assert "the model under study: r" in findings and "bits/dim" in findings and "Theorem 1" not in findings
    h2 = [
        page.index(f">{h}")
        for h in (
            "The model: r</h2>",
            "Held-out bits per dimension</h2>",
            "Other models",
            "Exact mixture: SDE tracking against the closed form</h2>",
        )
    ]
    assert h2 == sorted(h2), h2
