"""A self-contained HTML report (``report/index.html`` with its images beside it) from saved analysis outputs.

Any folder that holds JSON results and PNG figures is a panel: its title and paragraph come from the JSON's
``"title"`` / ``"description"`` keys when present, else from :data:`PANELS` (keyed by the folder's name or the JSON's
``"analysis"`` key); every number in its JSON files goes into the panel's table and into one table of every number at
the end. Nothing is fetched from the network: the page is plain HTML with inline CSS and copied images.
"""
from __future__ import annotations

import html
import json
import math
import shutil
from pathlib import Path

__all__ = ["build_report", "PANELS"]

# what each standard panel shows and which paper result it reproduces
PANELS = {
    "mixture": ("Exact mixture: SDE tracking against the closed form",
                "Reverse-SDE samples of a Gaussian mixture with the log-density tracked at no extra score evaluation "
                "(Theorem 1 of Karczewski et al., ICLR 2025), by the authors' Euler–Maruyama rule and by our corrected "
                "tracker, against the exact log p of each sample."),
    "samples": ("PF-ODE, SDE and high-density samples",
                "The same latents through the PF-ODE, the reverse SDE and the high-density sampler at several "
                "thresholds (Algorithm 1 of Karczewski et al., ICLR 2025): the highest-density samples are smoother, "
                "more cartoon-like."),
    "threshold": ("Log-density versus the high-density threshold",
                  "Mean log p of high-density samples as the threshold λ falls, beside PF-ODE and SDE samples from the "
                  "same latents: an earlier switch to the high-density ODE gives higher-density samples."),
    "png": ("Log-density versus PNG size",
            "Negative log-density follows image detail: log p against the PNG (and zlib) size of samples and held-out "
            "data, with Pearson and Spearman correlations (Karczewski et al., ICLR 2025)."),
    "blur": ("Blur raises log-density",
             "Log p of held-out images under growing Gaussian blur, one curve per image and the mean."),
    "fig4": ("SDE-tracked versus PF-ODE log-density",
             "The SDE-tracked log p against the PF-ODE log p of the same samples for the maximum-likelihood and the "
             "sample-quality model (Fig. 4 of Karczewski et al.): the tracked value is biased upward for an "
             "approximate score."),
    "guidance": ("Density and prior guidance",
                 "Sweeps of the guidance quantile q: density guidance (Eq. 23 of Karczewski et al., ICML 2025) sets the "
                 "log-density rate exactly; prior guidance rescales the latent's norm. Higher q, higher log p, less "
                 "detail."),
    "alignment": ("Score alignment",
                  "Whether the pushed-forward prior score aligns with the target score (Eq. 11–13 of Karczewski et "
                  "al., ICML 2025), which explains why prior guidance controls log-density."),
    "distributional": ("Few-step sampling: distributional versus regression",
                       "A generator trained with a scoring rule (De Bortoli et al., ICML 2025) against the same "
                       "network trained with the regression loss, sampled in few steps: the fraction on the "
                       "checkerboard's squares and the MMD² at 0.05 × the data's range."),
    "likelihood": ("Held-out bits per dimension",
                   "Held-out bits/dim of the shipped models by the PF-ODE with uniform dequantization."),
}

_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ddd}
figure{display:inline-block;margin:.5em;vertical-align:top}figure img{max-width:520px;border:1px solid #eee}
figcaption{font-size:.85em;color:#555}table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
td,th{border:1px solid #ddd;padding:2px 8px;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
p.desc{max-width:60em}.src{color:#777;font-size:.8em}"""

# marks the page when every image has loaded with a non-zero natural width (read by the end-to-end test)
_SCRIPT = """window.addEventListener('load',function(){var im=document.images,ok=true;
for(var i=0;i<im.length;i++){if(!im[i].complete||im[i].naturalWidth===0){ok=false;}}
document.body.setAttribute('data-images-ok',ok?'yes':'no');document.body.setAttribute('data-images',im.length);});"""


def _flatten(obj, prefix="", out=None, max_list=8):
    """Scalars of a JSON object as (dotted key, value) rows; short numeric lists inline, long ones summarised."""
    out = [] if out is None else out
    if isinstance(obj, dict):
        for k, v in obj.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out, max_list)
    elif isinstance(obj, list):
        nums = [v for v in obj if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if obj and len(nums) == len(obj):
            if len(obj) <= max_list:
                out.append((prefix, ", ".join(_fmt(v) for v in obj)))
            else:
                finite = [v for v in nums if math.isfinite(v)]
                mean = sum(finite) / len(finite) if finite else float("nan")
                out.append((prefix, f"{len(obj)} values, mean {_fmt(mean)}"))
        elif obj and all(isinstance(v, dict) for v in obj) and len(obj) <= 32:
            for i, v in enumerate(obj):
                _flatten(v, f"{prefix}[{i}]", out, max_list)
        elif obj and all(isinstance(v, (str, bool)) for v in obj) and len(obj) <= max_list:
            out.append((prefix, ", ".join(map(str, obj))))
    elif isinstance(obj, (int, float, str, bool)) or obj is None:
        out.append((prefix, obj))
    return out


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return "" if v is None else str(v)


def _table(rows) -> str:
    cells = "".join(
        f"<tr><td>{html.escape(k)}</td><td class='num'>{html.escape(_fmt(v))}</td></tr>" for k, v in rows)
    return f"<table><tr><th>quantity</th><th>value</th></tr>{cells}</table>" if rows else ""


def _panel(folder: Path, out: Path, index: int) -> tuple[str, str, list]:
    jsons = sorted(folder.glob("*.json"))
    data = {}
    for p in jsons:
        try:
            data[p.stem] = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{p}: not readable JSON ({e}); re-run the analysis that wrote it.") from None
    meta = next((d for d in data.values() if isinstance(d, dict) and ("title" in d or "analysis" in d)), {})
    key = meta.get("analysis", folder.name)
    title, desc = PANELS.get(key, PANELS.get(folder.name, (folder.name, "")))
    title, desc = meta.get("title", title), meta.get("description", desc)
    figs = []
    for png in sorted(folder.glob("*.png")):
        name = f"p{index:02d}_{png.name}"
        shutil.copyfile(png, out / name)
        figs.append(f"<figure><img src='{html.escape(name)}' alt='{html.escape(png.stem)}'>"
                    f"<figcaption>{html.escape(png.stem)}</figcaption></figure>")
    rows = [(f"{stem}.{k}" if len(data) > 1 else k, v) for stem, d in data.items() for k, v in _flatten(d)]
    body = (f"<h2 id='panel{index}'>{html.escape(str(title))}</h2>"
            f"<p class='desc'>{html.escape(str(desc))}</p>{''.join(figs)}{_table(rows)}"
            f"<p class='src'>from {html.escape(str(folder))}</p>")
    nums = [(f"{title} — {k}", v) for k, v in rows if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return str(title), body, nums


def build_report(run_dirs, out="report", title: str = "diffdensity report", intro: str = "") -> Path:
    """Build ``out/index.html`` (images copied beside it) from analysis output folders; returns its path.

    Each folder (or each sub-folder of a folder that holds no JSON itself) becomes a panel."""
    out = Path(out)
    folders = []
    for d in map(Path, run_dirs):
        if not d.is_dir():
            raise ValueError(f"{d}: not a folder of analysis outputs (JSON and PNG files).")
        subs = [d] if list(d.glob("*.json")) or list(d.glob("*.png")) else sorted(p for p in d.iterdir() if p.is_dir())
        folders += [s for s in subs if list(s.glob("*.json")) or list(s.glob("*.png"))]
    if not folders:
        raise ValueError(f"no analysis outputs (JSON/PNG files) in {', '.join(map(str, run_dirs))}.")
    out.mkdir(parents=True, exist_ok=True)
    titles, panels, numbers = [], [], []
    for i, f in enumerate(folders):
        t, body, nums = _panel(f, out, i)
        titles.append(t)
        panels.append(body)
        numbers += nums
    toc = "".join(f"<li><a href='#panel{i}'>{html.escape(t)}</a></li>" for i, t in enumerate(titles))
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style><script>{_SCRIPT}</script></head><body><h1>{html.escape(title)}</h1>"
            f"<p class='desc'>{html.escape(intro)}</p><ul>{toc}</ul>{''.join(panels)}"
            f"<h2 id='numbers'>Every number</h2>{_table(numbers)}</body></html>")
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
