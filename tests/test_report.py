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

CHROMIUM_HELP = ("headless Chromium is needed for this test: `make test` installs Debian's `chromium` package when "
                 "it is missing; by hand: `sudo apt-get install chromium` (Debian/Ubuntu).")


def _analysis(folder, name, values):
    folder.mkdir(parents=True)
    (folder / f"{name}.json").write_text(json.dumps({"analysis": name, "mean_logp": values, "n": len(values),
                                                      "solver": {"name": "dopri5", "rtol": 1e-5}}))
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
    args = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--enable-logging=stderr", "--v=0",
            f"--user-data-dir={index.parent / '.chromium'}", "--virtual-time-budget=5000", "--dump-dom",
            index.resolve().as_uri()]
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
