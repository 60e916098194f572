"""A self-contained HTML report (``report/index.html`` with its images beside it) from saved analysis outputs.

The page leads with its findings: one row per paper claim with our number, its uncertainty and a verdict computed
from the data (:mod:`diffdensity.analysis.verdicts`). Each panel then opens with its verdict line and a compact table
of the quantities that matter, shows its figures (pixel grids upscaled without smoothing) and folds the table of
every number of its JSON files into ``<details>``; one folded table of every number closes the page. Any folder that
holds JSON results and PNG figures is a panel: its title and paragraph come from the JSON's ``"title"`` /
``"description"`` keys when present, else from :data:`PANELS` (keyed by the JSON's ``"analysis"`` key or the folder's
name). Nothing is fetched from the network: plain HTML with inline CSS and copied images.
"""
from __future__ import annotations

import html
import math
import shutil
from pathlib import Path

from ._io_utils import atomic_write
from .safe_read import inside, read_json

__all__ = ["build_report", "PANELS", "read_input"]

# neutral headings and what each standard panel shows; the paper's claim is judged in the findings, not asserted here
PANELS = {
    "run": ("The model", "The run's configuration, its training loss and its model card."),
    "mixture": ("Exact mixture: SDE tracking against the closed form",
                "Reverse-SDE samples of a Gaussian mixture with the log-density tracked at no extra score evaluation "
                "(Theorem 1 of Karczewski et al., ICLR 2025), by the authors' Euler–Maruyama rule and by our corrected "
                "tracker, against the exact log p of each sample."),
    "samples": ("PF-ODE, SDE and high-density samples",
                "The same latents through the PF-ODE, the reverse SDE and the high-density sampler at several "
                "thresholds (Algorithm 1 of Karczewski et al., ICLR 2025)."),
    "threshold": ("Log-density versus the high-density threshold",
                  "Mean log p of high-density samples per threshold λ, beside PF-ODE and SDE samples from the same "
                  "latents. The paper finds that an earlier switch to the high-density ODE gives higher-density, "
                  "smoother samples."),
    "png": ("Log-density versus PNG size",
            "log p against the PNG (and zlib) size of samples and held-out data, with Pearson and Spearman "
            "correlations. The paper finds that negative log-density follows image detail (Karczewski et al., "
            "ICLR 2025)."),
    "blur": ("Blur and log-density",
             "Log p of held-out images under growing Gaussian blur, one curve per image and the mean. The paper "
             "finds that blur raises the estimated density."),
    "fig4": ("SDE-tracked versus PF-ODE log-density",
             "The SDE-tracked log p against the PF-ODE log p of the same samples (Fig. 4 of Karczewski et al.); "
             "the paper predicts the tracked value to be biased upward for an approximate score."),
    "guidance": ("Density and prior guidance",
                 "Sweeps of the guidance quantile q: density guidance (Eq. 23 of Karczewski et al., ICML 2025) sets "
                 "the log-density rate; prior guidance rescales the latent's norm (higher q = smaller norm here)."),
    "alignment": ("Score alignment",
                  "Whether the pushed-forward prior score aligns with the target score (Eq. 11–13 of Karczewski et "
                  "al., ICML 2025), which explains why prior guidance controls log-density."),
    "distributional": ("Few-step sampling: distributional versus regression",
                       "A generator trained with a scoring rule (De Bortoli et al., ICML 2025) against the same "
                       "network trained with the regression loss, sampled in few steps: the fraction on the "
                       "checkerboard's squares and the MMD² at 0.05 × the data's range."),
    "likelihood": ("Held-out bits per dimension",
                   "Held-out bits/dim of the model under study by the PF-ODE with uniform dequantization."),
}

_CSS = """*{box-sizing:border-box}body{font-family:system-ui,sans-serif;max-width:1240px;margin:0 auto;padding:.6em 1em;
color:#222;line-height:1.35;overflow-wrap:break-word}h1{font-size:1.45em;margin:.3em 0}
h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}p{margin:.35em 0}
figure{display:inline-block;margin:.4em;vertical-align:top;max-width:100%}figure img{max-width:100%;border:1px solid #eee}
figure:has(>img.px){display:block}figure img.px{image-rendering:pixelated;image-rendering:crisp-edges;width:100%}
figcaption{font-size:.85em;color:#555}.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-size:.88em;margin:.4em 0}td,th{border:1px solid #ddd;padding:2px 7px;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}table.findings td{vertical-align:top}
table.findings td.n{white-space:nowrap;font-variant-numeric:tabular-nums}
.v{display:inline-block;padding:0 .45em;border-radius:.6em;font-weight:600;white-space:nowrap;font-size:.9em}
.v-holds{background:#d8f0dc;color:#13531f}.v-does-not-hold{background:#f8d7d5;color:#7a1610}
.v-within-noise{background:#fbefc9;color:#6b4e00}.v-not-measured,.v-measured{background:#e6e8ec;color:#333}
p.verdict{font-size:1.02em}p.desc{max-width:62em;color:#333}.src{color:#777;font-size:.8em}
details{margin:.4em 0}summary{cursor:pointer;color:#225}
@media (max-width:700px){table.findings,table.findings tbody,table.findings tr,table.findings td{display:block}
table.findings tr:first-child{display:none}table.findings tr{border:1px solid #ddd;margin:.4em 0;padding:.2em .4em}
table.findings td{border:0;padding:1px 0}table.findings td.n{font-weight:600}}"""

# on load: every image loaded, the page's horizontal overflow and where the findings table ends (read by the tests)
_SCRIPT = """window.addEventListener('load',function(){var im=document.images,ok=true,b=document.body;
for(var i=0;i<im.length;i++){if(!im[i].complete||im[i].naturalWidth===0){ok=false;}}
b.setAttribute('data-images-ok',ok?'yes':'no');b.setAttribute('data-images',im.length);
var de=document.documentElement;b.setAttribute('data-overflow',de.scrollWidth>window.innerWidth+1?'yes':'no');
var f=document.getElementById('findings');
b.setAttribute('data-findings-bottom',f?Math.ceil(f.getBoundingClientRect().bottom+window.scrollY):-1);
b.setAttribute('data-viewport',window.innerWidth+'x'+window.innerHeight);});"""


def read_input(path: Path, root=None):
    """One JSON input of the report (every input is read here, by diffdensity.safe_read: size and nesting capped,
    no link out of the folder ``root``)."""
    return read_json(path, root=root, what="analysis output (re-run the analysis that wrote it)")


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
    return f"<div class='scroll'><table><tr><th>quantity</th><th>value</th></tr>{cells}</table></div>" if rows else ""


def _grid(header, rows, cls: str = "") -> str:
    """A small table from a header and rows of cells (already formatted)."""
    if not rows:
        return ""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<div class='scroll'><table class='{cls}'><tr>{head}</tr>{body}</table></div>"


def _badge(verdict: str) -> str:
    return f"<span class='v v-{verdict.replace(' ', '-')}'>{html.escape(verdict)}</span>"


def _figures(folder: Path, out: Path, index: int) -> str:
    """Copy the panel's PNGs beside the page; pixel grids (names with "grid") are shown wide and unsmoothed."""
    figs = []
    for png in sorted(folder.glob("*.png")):
        name = f"p{index:02d}_{png.name}"
        src = inside(folder, png)  # never a file from outside the folder, never written through a link
        atomic_write(out / name, lambda tmp, src=src: shutil.copyfile(src, tmp))
        img_cls = " class='px'" if "grid" in png.stem else ""
        figs.append(f"<figure><img src='{html.escape(name)}' alt='{html.escape(png.stem)}'{img_cls}>"
                    f"<figcaption>{html.escape(png.stem)}</figcaption></figure>")
    return "".join(figs)


def _panel(folder: Path, out: Path, index: int, model: str = "") -> tuple[str, str, list, list]:
    """(title, HTML, numbers, findings) of one analysis folder."""
    from .analysis.verdicts import finding

    data = {p.stem: read_input(p, folder) for p in sorted(folder.glob("*.json"))}
    meta = next((d for d in data.values() if isinstance(d, dict) and ("title" in d or "analysis" in d)), {})
    key = meta.get("analysis", folder.name)
    key = key if key in PANELS else folder.name
    title, desc = PANELS.get(key, (folder.name, ""))
    title, desc = meta.get("title", title), meta.get("description", desc)
    found = finding(key, data, model)
    for f in found:
        f["anchor"] = f"panel{index}"
    verdicts = "".join(f"<p class='verdict'>{_badge(f['verdict'])} <b>{html.escape(f['claim'])}</b> — "
                       f"{html.escape(f['line'])}</p>" for f in found)
    compact = "".join(_grid(f["table"]["header"], f["table"]["rows"]) for f in found)
    rows = [(f"{stem}.{k}" if len(data) > 1 else k, v) for stem, d in data.items() for k, v in _flatten(d)]
    folded = (f"<details><summary>All {len(rows)} numbers of this panel</summary>{_table(rows)}</details>"
              if rows else "")
    body = (f"<h2 id='panel{index}'>{html.escape(str(title))}</h2>{verdicts}{compact}{_figures(folder, out, index)}"
            f"<p class='desc'>{html.escape(str(desc))}</p>{folded}<p class='src'>from {html.escape(str(folder))}</p>")
    nums = [(f"{title} — {k}", v) for k, v in rows if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return str(title), body, nums, found


def _summary(found: list) -> str:
    """The findings table: one row per claim with our number, its uncertainty and the verdict."""
    if not found:
        return ""
    rows = "".join(
        f"<tr><td><a href='#{f['anchor']}'>{html.escape(f['claim'])}</a> <span class='src'>{html.escape(f['source'])}"
        f"</span></td><td class='n'>{html.escape(f['number'])}</td><td>{_badge(f['verdict'])}</td>"
        f"<td>{html.escape(f['measure'])}</td></tr>" for f in found)
    head = ("<tr><th>claim (paper) or measurement</th><th>our number (± s.e. or 95 % interval)</th><th>verdict</th>"
            "<th>measured as</th></tr>")
    return (f"<section id='findings'><h2>Findings</h2><div class='scroll'><table class='findings'>{head}{rows}"
            f"</table></div></section>")


def _folders(run_dirs) -> list[Path]:
    """The analysis folders among ``run_dirs``: a folder's sub-folders with outputs, else the folder itself; a built
    report (a folder with an index.html) is not one."""
    has = lambda p: (any(p.glob("*.json")) or any(p.glob("*.png"))) and not (p / "index.html").exists()  # noqa: E731
    folders = []
    for d in map(Path, run_dirs):
        if not d.is_dir():
            raise ValueError(f"{d}: not a folder of analysis outputs (JSON and PNG files).")
        subs = [p for p in sorted(d.iterdir()) if p.is_dir() and has(p)]
        folders += subs or ([d] if has(d) else [])
    return folders


def build_report(run_dirs, out="report", title: str = "diffdensity report", intro: str = "", model: str = "",
                 others=()) -> Path:
    """Build ``out/index.html`` (images beside it) from analysis folders, findings first; returns its path. ``others``:
    folders of other models' panels, shown apart and left out of the findings; ``model``: the model judged."""
    out = Path(out)
    folders, extra = _folders(run_dirs), _folders(others) if others else []
    if not folders:
        raise ValueError(f"no analysis outputs (JSON/PNG files) in {', '.join(map(str, run_dirs))}.")
    out.mkdir(parents=True, exist_ok=True)
    titles, panels, numbers, found = [], [], [], []
    for i, f in enumerate(folders + extra):
        t, body, nums, fs = _panel(f, out, i, model)
        if i == len(folders):
            panels.append("<h2 id='others'>Other models (library checks, not the model above)</h2>")
        titles.append(t)
        panels.append(body)
        numbers += nums
        found += fs if i < len(folders) else []
    toc = "".join(f"<li><a href='#panel{i}'>{html.escape(t)}</a></li>" for i, t in enumerate(titles))
    page = (f"<!doctype html><html><head><meta charset='utf-8'><meta name='viewport' content='width=device-width, "
            f"initial-scale=1'><title>{html.escape(title)}</title><style>{_CSS}</style><script>{_SCRIPT}</script>"
            f"</head><body><h1>{html.escape(title)}</h1><p class='desc'>{html.escape(intro)}</p>{_summary(found)}"
            f"<details><summary>Panels</summary><ul>{toc}</ul></details>{''.join(panels)}"
            f"<h2 id='numbers'>Every number</h2><details><summary>{len(numbers)} numbers</summary>{_table(numbers)}"
            f"</details></body></html>")
    index = out / "index.html"
    atomic_write(index, lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))
    return index
