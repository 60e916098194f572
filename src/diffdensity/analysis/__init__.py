"""The first paper's findings as analyses (Karczewski et al. 2025a; math.md §1.6–1.8): each a library function that
returns its numbers, writes JSON and, given an output folder, draws a matplotlib figure (Agg backend).

- :func:`threshold_sweep` — log p of high-density samples per threshold beside PF-ODE and SDE samples (same latents);
- :func:`compression_vs_logp` — log p versus PNG and zlib size, Pearson and Spearman;
- :func:`blur_curve` — log p of images under growing Gaussian blur;
- :func:`ode_vs_sde` — SDE-tracked versus PF-ODE log p of the same samples (the paper's Fig. 4);
- :func:`guidance_sweep` — the second paper's q sweep: density beside prior guidance;
- :func:`alignment_study` — score alignment by Eq 12 and Eq 13;
- :func:`reproduce` — the reference repository's three experiments.
"""
from .common import LOG_PROB_DEFAULTS, evaluate_log_prob, to_uint8_images
from .compression import compression_vs_logp, correlations, png_size, zlib_size
from .blur import blur_curve, gaussian_blur
from .ode_sde import ode_vs_sde
from .threshold import threshold_sweep
from .guidance import guidance_sweep
from .alignment import alignment_study
from .reproduce import reproduce

__all__ = ["threshold_sweep", "guidance_sweep", "alignment_study", "reproduce", "compression_vs_logp", "blur_curve", "ode_vs_sde", "png_size", "zlib_size",
           "correlations", "gaussian_blur", "evaluate_log_prob", "to_uint8_images", "LOG_PROB_DEFAULTS"]
