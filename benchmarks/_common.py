"""Shared helpers for the benchmark scripts: machine description, table printing, JSON output."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"
# `make bench` writes to results/latest/ (git-ignored) so a run never dirties tracked files; the figures quoted in
# README.md live in results/*.json and are updated on purpose with DIFFDENSITY_BENCH_RECORD=1 (`make bench-record`).
RECORD = os.environ.get("DIFFDENSITY_BENCH_RECORD", "") not in ("", "0")


def machine() -> dict:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def table(rows: list[dict], cols: list[str]) -> str:
    w = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in cols}
    lines = ["  ".join(c.rjust(w[c]) for c in cols), "  ".join("-" * w[c] for c in cols)]
    lines += ["  ".join(_fmt(r.get(c)).rjust(w[c]) for c in cols) for r in rows]
    return "\n".join(lines)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def save(name: str, payload: dict, path=None) -> Path:
    """Write ``payload`` with the machine description as JSON (default: results/latest/<name>.json, or
    results/<name>.json when recording); prints the path."""
    path = Path(path) if path is not None else (RESULTS if RECORD else RESULTS / "latest") / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "machine": machine(), "time": time.strftime("%Y-%m-%d %H:%M:%S"), **payload}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {path}")
    return path
