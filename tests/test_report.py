"""The HTML report: panels from analysis folders, every number in a table, and an end-to-end check in headless
Chromium that every image loads and the page logs no console error."""

import json
import shutil
import subprocess

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest
from click.testing import CliRunner

from diffdensity.cli import main
from diffdensity.report import build_report

CHROMIUM_HELP = (
    "headless Chromium is needed for this test: `make test` installs Debian's `chromium` package when "
    "it is missing; by hand: `sudo apt-get install chromium` (Debian/Ubuntu)."
)


def _analysis(folder, name, values):
    folder.mkdir(parents=True)
    (folder / f"{name}.json").write_text(
        json.dumps(
            {"analysis": name, "mean_logp": values, "n": len(values), "solver": {"name": "dopri5", "rtol": 1e-5}}
        )
    )
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot(values)
    fig.savefig(folder / f"{name}.png", dpi=50)
    plt.close(fig)


def test_report_collects_panels_and_numbers(tmp_path):
    _analysis(tmp_path / "runs" / "threshold", "threshold", [1.5, 2.5, 3.5])
    _analysis(tmp_path / "runs" / "blur", "blur", [0.1, 0.2])
    index = build_report([tmp_path / "runs"], tmp_path / "report", title="t")
    page = index.read_text()
    assert "Log-density versus the high-density threshold" in page and "Blur raises log-density" in page
    assert "threshold.mean_logp" not in page and "mean_logp" in page and "3.5" in page and "dopri5" in page
    assert (tmp_path / "report" / "p00_blur.png").is_file() and (tmp_path / "report" / "p01_threshold.png").is_file()
    res = CliRunner().invoke(main, ["report", str(tmp_path / "runs" / "blur"), "--out", str(tmp_path / "r2")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "r2" / "index.html").is_file()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no analysis outputs"):
        build_report([tmp_path / "empty"], tmp_path / "r3")


def chromium():
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None:
        pytest.fail(CHROMIUM_HELP)
    return exe


def open_in_chromium(index):
    """(DOM after load, stderr) of headless Chromium; console messages go to stderr with --enable-logging."""
    args = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--enable-logging=stderr",
        "--v=0",
        f"--user-data-dir={index.parent / '.chromium'}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        index.resolve().as_uri(),
    ]
    r = subprocess.run(args, capture_output=True, text=True, timeout=120)
    return r.stdout, r.stderr


def test_report_opens_in_headless_chromium(tmp_path):
    _analysis(tmp_path / "runs" / "png", "png", [3.0, 1.0, 2.0])
    _analysis(tmp_path / "runs" / "fig4", "fig4", [0.5])
    index = build_report([tmp_path / "runs"], tmp_path / "report")
    dom, log = open_in_chromium(index)
    assert 'data-images-ok="yes"' in dom and 'data-images="2"' in dom, dom[:500]
    console = [line for line in log.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console
    # the check can fail: a missing image is reported
    (tmp_path / "report" / "p00_fig4.png").unlink()
    dom, _ = open_in_chromium(index)
    assert 'data-images-ok="no"' in dom


# --- summary first: findings with numbers and verdicts, readable at 1400 px and on a phone (issue 23) -------------


def _panels(root, blur_falls=True):
    """Analysis folders shaped like the demo's, with per-sample numbers (8 images) and one pixel grid."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    pf = list(rng.normal(50, 5, 8))
    data = {
        "threshold": {
            "threshold_sweep": {
                "thresholds": [8.0, 0.0],
                "pf_ode": {"mean": 50.0, "sem": 1.8, "logp": pf},
                "sde": {"mean": 48.0, "sem": 2.0, "n": 8},
                "hd": {
                    "8": {"mean": 55.0, "sem": 1.8, "logp": [v + 5 for v in pf]},
                    "0": {"mean": 70.0, "sem": 1.8, "logp": [v + 20 + rng.normal() for v in pf]},
                },
            }
        },
        "png": {
            "compression": {
                "analysis": "png",
                "sets": {
                    "samples": {
                        "logp_vs_png": {"spearman": -0.8, "pearson": -0.7, "n": 8},
                        "per_sample": {"logp": list(range(8)), "png": list(range(100, 92, -1))},
                    }
                },
            }
        },
        "blur": {
            "blur": {
                "sigmas": [0.0, 1.0],
                "monotone_fraction": 0.0 if blur_falls else 1.0,
                "logp": [pf, [v - 30 if blur_falls else v + 30 for v in pf]],
            }
        },
        "fig4": {
            "ode_sde": {
                "models": {
                    "m": {
                        "gap": {"mean": 0.3, "sem": 0.5, "n": 8},
                        "sde_tracked": {"mean": 50.3},
                        "pf_ode": {"mean": 50.0},
                    }
                }
            }
        },
        "guidance": {
            "guidance": {
                "analysis": "guidance",
                "results": {
                    "density": [{"q": 0.3, "mean": 10.0, "sem": 2.0}, {"q": 0.6, "mean": 60.0, "sem": 2.0}],
                    "prior": [{"q": 0.3, "mean": 40.0, "sem": 2.0}, {"q": 0.6, "mean": 41.0, "sem": 2.0}],
                },
            }
        },
        "likelihood": {
            "likelihood": {"analysis": "likelihood", "model": "m", "bits_per_dim": 1.75, "sem": 0.02, "n": 16}
        },
    }
    for panel, files in data.items():
        (root / panel).mkdir(parents=True)
        for stem, obj in files.items():
            (root / panel / f"{stem}.json").write_text(json.dumps(obj))
    Image.fromarray(rng.integers(0, 255, (40, 330), dtype=np.uint8)).save(root / "threshold" / "threshold_grid.png")
    return [root / p for p in data]


def _chromium_at(index, size, *extra):
    w, h = size
    args = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--window-size={w},{h}",
        f"--user-data-dir={index.parent / '.chromium'}",
        "--virtual-time-budget=5000",
        *extra,
        index.resolve().as_uri(),
    ]
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=index.parent).stdout


def _framed(index, w, h):
    """The report's load-time measurements at an exact viewport: the page in a w × h iframe of a harness page
    (headless windows have a minimum width), its body attributes copied out."""
    harness = index.parent / f"frame_{w}x{h}.html"
    harness.write_text(
        f"<!doctype html><html><body style='margin:0'><iframe id='f' src='index.html' width='{w}' height='{h}' "
        "style='border:0'></iframe><script>document.getElementById('f').addEventListener('load',function(){"
        "var b=this.contentDocument.body;for(var i=0;i<b.attributes.length;i++){var a=b.attributes[i];"
        "document.body.setAttribute(a.name,a.value);}});</script></body></html>"
    )
    dom = _chromium_at(harness, (max(w, 800) + 40, h + 200), "--allow-file-access-from-files", "--dump-dom")
    return dom.split("<iframe")[0]


def test_findings_come_first_and_fit_the_first_screen(tmp_path):
    """Every finding's verdict, number and uncertainty on the first 1400 × 900 screen, verdicts from the data, no
    horizontal overflow at 1400 or 390 px, every raw number still in the page; a screenshot is taken."""
    index = build_report(_panels(tmp_path / "runs"), tmp_path / "report", title="t", model="m")
    page = index.read_text()
    assert page.index("id='findings'") < page.index("id='panel0'")
    assert page.count("<tr><td><a href='#panel") == 7  # one summary row per finding
    assert "does not hold" in page and "Blur raises log-density" in page and "within noise" in page
    assert "image-rendering:pixelated" in page and "class='px'" in page and "<details>" in page
    assert "1.75" in page and "threshold_sweep.pf_ode.mean" not in page and "pf_ode.mean" in page
    dom = _framed(index, 1400, 900)
    assert 'data-viewport="1400x900"' in dom, dom[:400]
    bottom = int(dom.split('data-findings-bottom="')[1].split('"')[0])
    assert 0 < bottom <= 900, bottom
    assert 'data-overflow="no"' in dom and 'data-images-ok="yes"' in dom
    phone = _framed(index, 390, 844)
    assert 'data-viewport="390x844"' in phone and 'data-overflow="no"' in phone, phone[:400]
    assert int(phone.split('data-findings-bottom="')[1].split('"')[0]) < 2500  # findings stack, not squeeze
    shot = tmp_path / "first_screen.png"
    _chromium_at(index, (1400, 900), f"--screenshot={shot}")
    from PIL import Image

    with Image.open(shot) as im:
        lo, hi = im.convert("L").getextrema()
        assert im.size == (1400, 900) and hi - lo > 100  # not blank


def test_verdicts_follow_the_data():
    from diffdensity.analysis.verdicts import directional, interval_verdict, paired, spearman_interval

    assert directional(3.0, 1.0) == "holds" and directional(-3.0, 1.0) == "does not hold"
    assert directional(1.0, 1.0) == "within noise" and directional(float("nan"), 1.0) == "not measured"
    lo, hi = spearman_interval(-0.8, 30)
    assert -1 < lo < -0.8 < hi < 0 and interval_verdict(lo, hi, sign=-1) == "holds"
    assert interval_verdict(-0.2, 0.3) == "within noise"
    m, se = paired([2.0, 3.0, 4.0], [1.0, 1.0, 1.0])
    assert m == 2.0 and abs(se - (1.0 / 3**0.5)) < 1e-12


def test_report_never_writes_through_a_link_at_its_destination(tmp_path):
    """Issue 24: the page and the copied figures replace a link at the destination, never the link's target."""
    import os

    from diffdensity.report import build_report

    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps({"mean": 1.0}))
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    os.symlink(victim, out / "index.html")
    page = build_report([run], out=out)
    assert victim.read_text() == "keep me" and not page.is_symlink() and "<html" in page.read_text()
