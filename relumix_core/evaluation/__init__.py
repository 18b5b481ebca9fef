"""Evaluation of relighting on paired test clips: metrics, baselines, report figures and the report itself.

``relumix eval`` (:mod:`relumix_core.cli.evaluate`) is the command-line front end; the pieces are usable on their own.
"""

from __future__ import annotations

from .baselines import BASELINES, colour_transfer, input_unchanged, ratio_propagation, reference_repeated
from .evaluate import (
    MODEL_METHOD,
    EvalClip,
    baseline_methods,
    check_report_dir,
    evaluate,
    first_stage_oracle,
    format_table,
    load_test_clips,
    relumix_method,
    write_report,
)
from .metrics import (
    clip_metrics,
    lpips_status,
    psnr_per_frame,
    ssim_per_frame,
    temporal_error,
    temporal_lpips,
    temporal_ssim,
)
from .plots import plot_curves, save_png, strip

__all__ = [
    "BASELINES",
    "MODEL_METHOD",
    "EvalClip",
    "baseline_methods",
    "check_report_dir",
    "clip_metrics",
    "colour_transfer",
    "evaluate",
    "format_table",
    "input_unchanged",
    "load_test_clips",
    "lpips_status",
    "plot_curves",
    "psnr_per_frame",
    "ratio_propagation",
    "reference_repeated",
    "first_stage_oracle",
    "relumix_method",
    "save_png",
    "ssim_per_frame",
    "strip",
    "temporal_error",
    "temporal_lpips",
    "temporal_ssim",
    "write_report",
]
