"""Evaluation of relighting on paired test clips: metrics, baselines, report figures and the report itself.

``relumix eval`` (:mod:`relumix_core.cli.evaluate`) is the command-line front end; the pieces are usable on their own.
"""

from __future__ import annotations

from .baselines import (
    BASELINES,
    colour_transfer,
    input_unchanged,
    nearest_keyframe_baseline,
    ratio_propagation,
    reference_repeated,
)
from .clips import EvalClip, load_test_clips
from .evaluate import (
    MODEL_METHOD,
    baseline_methods,
    distance_table,
    evaluate,
    first_stage_oracle,
    perturbation_sweep,
    perturbed_clip,
    relumix_method,
)
from .keyframes import keyframe_distances, keyframe_indices, nearest_keyframe
from .metrics import (
    clip_metrics,
    lpips_status,
    mae_per_frame,
    psnr_per_frame,
    ssim_per_frame,
    temporal_error,
    temporal_lpips,
    temporal_ssim,
)
from .perturb import PERTURBATIONS, parse_perturb_spec, parse_perturb_specs, perturb_references
from .plots import plot_curves, save_png, strip
from .report import check_report_dir, format_table, write_report

__all__ = [
    "BASELINES",
    "MODEL_METHOD",
    "PERTURBATIONS",
    "EvalClip",
    "baseline_methods",
    "check_report_dir",
    "clip_metrics",
    "colour_transfer",
    "distance_table",
    "evaluate",
    "format_table",
    "input_unchanged",
    "keyframe_distances",
    "keyframe_indices",
    "load_test_clips",
    "lpips_status",
    "mae_per_frame",
    "nearest_keyframe",
    "nearest_keyframe_baseline",
    "parse_perturb_spec",
    "parse_perturb_specs",
    "perturb_references",
    "perturbation_sweep",
    "perturbed_clip",
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
