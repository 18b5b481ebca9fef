"""Evaluate relighting methods on paired test clips: load clips, score every method, write the report.

A test clip is one ordered light pair of a scene from the training layout (``ROOT/<map>/<scene>/<light>/``): the
source-light clip is relit to the target light given some of the target's frames (the references or keyframes:
frame 0 alone by default, or N evenly spaced ones), and the target clip is the ground truth. The baselines of
:mod:`.baselines` always run, so the model's numbers come with the floor every learned method must clear.

Besides the means, every report groups the frames by their distance to the nearest reference (``by_distance``), and
:func:`perturbation_sweep` scores every method again with degraded references (:mod:`.perturb`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import torch

from ..errors import ReLumixError
from ..pipeline.progress import ProgressFn
from .baselines import BASELINES, nearest_keyframe_baseline
from .clips import EvalClip, Method
from .keyframes import keyframe_distances
from .metrics import METRICS, clip_metrics, lpips_status, mae_per_frame, temporal_lpips, temporal_ssim
from .perturb import UNITS, clip_seed, perturb_references

#: Metrics of the ``by_distance`` table and of the ``perturbations`` table.
DISTANCE_METRICS = ("psnr", "ssim", "mae")
PERTURB_METRICS = ("psnr", "ssim", "temporal_error")
#: Clips whose outputs are kept for the report's strip figures.
STRIP_CLIPS = 4
MODEL_METHOD = "relumix"
KEYFRAME_NOTE = (
    "the keyframe frames (frame 0 alone unless --keyframes; each clip's reference_indices) are the references "
    "themselves (the relit frames every method is given), so the psnr/ssim means leave them out; the per-frame "
    "arrays keep them"
)
DISTANCE_NOTE = (
    "by_distance pools every frame of every clip by its distance in frames to the nearest reference (0 = a "
    "reference itself); frames gives how many frames each mean is over"
)
TEMPORAL_NOTE = (
    "temporal_error is the RMSE between the output's and the ground truth's frame-to-frame changes (flicker); "
    "temporal_ssim/temporal_lpips compare consecutive output frames without the ground truth (the authors' "
    "real-video metrics): compare them with the ground truth's own values, since a frozen clip "
    "(reference_repeated) scores a perfect 1"
)




# -------------------------------------------------------------------------------------------------- methods


def baseline_methods() -> dict[str, Method]:
    """Every baseline of :data:`~.baselines.BASELINES` as a method on an :class:`EvalClip`; with several
    references each frame takes the baseline's result from its nearest keyframe."""

    def wrap(fn: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]) -> Method:
        multi = nearest_keyframe_baseline(fn)
        return lambda clip: multi(clip.source, clip.references, clip.reference_indices)

    return {name: wrap(fn) for name, fn in BASELINES.items()}


def first_stage_oracle(model: Any, chunk_size: int) -> Method:
    """Not a method but a ceiling: the ground truth through the model's first stage (posterior mean, decoded in
    chunks of ``chunk_size`` frames like the pipeline). No relighting can score above what its VAE reconstructs."""
    from ..models.vae import decode_latents, first_stage_moments, posterior_parameters

    vae = model.component("vae")

    @torch.no_grad()
    def run(clip: EvalClip) -> torch.Tensor:
        param = next(vae.parameters())
        x = (clip.target * 2 - 1).to(device=param.device, dtype=param.dtype)
        mean = posterior_parameters(first_stage_moments(vae, x))[0]
        frames = decode_latents(vae, mean, chunk_size, scale_factor=1.0)
        return ((frames.float().cpu() + 1) / 2).clamp(0, 1)

    return run


def relumix_method(pipeline: Any, settings: Any, seed: int | None = 0,
                   progress: ProgressFn | None = None) -> Method:
    """The model as a method: ``pipeline.relight`` at the clip's own size (sides rounded to multiples of 8 for the
    VAE and back), the same ``seed`` for every clip so each clip's result is reproducible on its own. A clip with
    one reference passes one image and an int; with several, the batch ``[N,H,W,3]`` and the list of indices."""

    def run(clip: EvalClip) -> torch.Tensor:
        h, w = clip.source.shape[-2:]
        size = None if h % 8 == 0 and w % 8 == 0 else (max(8, round(h / 8) * 8), max(8, round(w / 8) * 8))
        if len(clip.reference_indices) == 1:
            reference, index = clip.reference.permute(1, 2, 0), clip.reference_index
        else:
            reference, index = clip.references.permute(0, 2, 3, 1), list(clip.reference_indices)
        out = pipeline.relight(
            clip.source.permute(0, 2, 3, 1), reference, reference_index=index,
            settings=replace(settings, size=size, fit="resize"), seed=seed, progress=progress, output_type="pt",
        )
        return out.permute(0, 3, 1, 2).float()

    return run


def window_seams(window: int, overlap: int, strategy: str) -> Callable[[EvalClip], list[int]]:
    """The seam steps of a clip under these window options, as the pipeline splits it into runs (one per keyframe
    and direction) and windows each run. The cross-fade where two keyframes' runs meet is not a window seam."""
    from ..pipeline.conditioning import split_keyframe_runs
    from ..pipeline.windows import seam_transitions

    def seams(clip: EvalClip) -> list[int]:
        runs = split_keyframe_runs(int(clip.source.shape[0]), clip.reference_indices, overlap)
        return seam_transitions([list(r.indices) for r in runs], window, overlap, strategy)  # type: ignore[arg-type]

    return seams


# -------------------------------------------------------------------------------------------------- scoring


def _mean(values: list[float | None]) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else None


def _score(name: str, pred: Any, clip: EvalClip, use_lpips: bool) -> dict:
    """One method's metrics on one clip (keyframes left out of the psnr/ssim means), plus per-frame MAE."""
    if not isinstance(pred, torch.Tensor) or tuple(pred.shape) != tuple(clip.target.shape):
        shape = tuple(pred.shape) if isinstance(pred, torch.Tensor) else type(pred).__name__
        raise ReLumixError(f"method {name} returned {shape} for clip {clip.name}; expected "
                           f"{tuple(clip.target.shape)}")
    scores = clip_metrics(pred, clip.target, use_lpips=use_lpips, skip=clip.reference_indices)
    scores["per_frame"]["mae"] = mae_per_frame(pred, clip.target).tolist()
    return scores


def distance_table(per_clip: Sequence[dict], methods: Sequence[str]) -> dict:
    """The ``by_distance`` table from the report's clip entries: every frame of every clip pooled by its distance
    to the nearest reference; per method the mean of each of :data:`DISTANCE_METRICS`, and the frame counts."""
    distances = [keyframe_distances(c["num_frames"], c["reference_indices"]) for c in per_clip]
    top = max(max(d) for d in distances)
    frames = [sum(d.count(k) for d in distances) for k in range(top + 1)]
    table: dict[str, dict[str, list[float | None]]] = {}
    for name in methods:
        table[name] = {}
        for metric in DISTANCE_METRICS:
            pooled: list[list[float | None]] = [[] for _ in range(top + 1)]
            for clip, dist in zip(per_clip, distances, strict=True):
                for value, k in zip(clip["methods"][name]["per_frame"][metric], dist, strict=True):
                    pooled[k].append(value)
            table[name][metric] = [_mean(values) for values in pooled]
    return {"distance": list(range(top + 1)), "frames": frames, "methods": table}


def evaluate(
    clips: Sequence[EvalClip],
    methods: dict[str, Method] | None = None,
    progress: ProgressFn | None = None,
    include_baselines: bool = True,
    outputs: dict[str, dict[str, torch.Tensor]] | None = None,
    keep_outputs: int = STRIP_CLIPS,
    use_lpips: bool | None = None,
    seams: Callable[[EvalClip], list[int]] | None = None,
) -> dict:
    """Score every method on every clip; returns the JSON-ready report.

    The baselines run first (unless ``include_baselines`` is False), then ``methods`` (e.g. ``{"relumix": ...}``).
    Method means are means of the per-clip means (every clip weighs the same); psnr/ssim means leave out each
    clip's keyframes (its references). ``by_distance`` pools frames by their distance to the nearest reference
    (:func:`distance_table`). Pass a dict as ``outputs`` to get the outputs of the first ``keep_outputs`` clips
    (``outputs[clip][method]``) for :func:`write_report`'s strips; other outputs are dropped at once, so memory
    stays at one clip. ``progress(done, total)`` counts clips. ``seams(clip)`` gives the frame steps (t -> t+1) at
    window seams (see :func:`window_seams`); every method then also gets ``seam_temporal_error``, its temporal
    error on those steps alone.
    """
    if not clips:
        raise ReLumixError("no clips to evaluate")
    every = {**(baseline_methods() if include_baselines else {}), **(methods or {})}
    if not every:
        raise ReLumixError("no methods to evaluate")
    lpips_ok, lpips_why = lpips_status()
    use_lpips = lpips_ok if use_lpips is None else use_lpips
    per_clip = []
    for i, clip in enumerate(clips):
        entry: dict[str, Any] = {
            "name": clip.name, "scene": clip.scene, "source_light": clip.source_light,
            "target_light": clip.target_light, "reference_index": clip.reference_index,
            "reference_indices": list(clip.reference_indices),
            "num_frames": int(clip.target.shape[0]), "size": [int(v) for v in clip.target.shape[-2:]],
            "ground_truth": {
                "temporal_ssim": _mean(temporal_ssim(clip.target).tolist()),
                "temporal_lpips": _mean(temporal_lpips(clip.target).tolist()) if use_lpips else None,
            },
            "methods": {},
        }
        for name, method in every.items():
            pred = method(clip)
            scores = _score(name, pred, clip, use_lpips)
            if seams is not None:
                steps = seams(clip)
                errors = scores["per_frame"]["temporal_error"]
                scores["mean"]["seam_temporal_error"] = _mean([errors[t] for t in steps]) if steps else None
            entry["methods"][name] = scores
            if outputs is not None and i < keep_outputs:
                outputs.setdefault(clip.name, {})[name] = pred.detach().float().cpu()
        per_clip.append(entry)
        if progress is not None:
            progress(i + 1, len(clips))

    keys = (*METRICS, "seam_temporal_error") if seams is not None else METRICS
    means = {name: {m: _mean([c["methods"][name]["mean"][m] for c in per_clip]) for m in keys} for name in every}
    length = max(c["num_frames"] for c in per_clip)
    per_frame_psnr = {
        name: [_mean([c["methods"][name]["per_frame"]["psnr"][t] for c in per_clip if c["num_frames"] > t])
               for t in range(length)]
        for name in every
    }
    return {
        "methods": means,
        "ground_truth": {m: _mean([c["ground_truth"][m] for c in per_clip]) for m in ("temporal_ssim",
                                                                                      "temporal_lpips")},
        "num_clips": len(per_clip),
        "num_frames": length,
        "clips": per_clip,
        "per_frame_psnr": per_frame_psnr,
        "by_distance": distance_table(per_clip, list(every)),
        "perturbations": {},
        "notes": {
            "keyframes": KEYFRAME_NOTE,
            "by_distance": DISTANCE_NOTE,
            "temporal": TEMPORAL_NOTE,
            "temporal_lpips": lpips_why if use_lpips else f"temporal LPIPS skipped: {lpips_why}",
        },
    }


def perturbed_clip(clip: EvalClip, kind: str, level: float, seed: int = 0) -> EvalClip:
    """``clip`` with its references perturbed (:mod:`.perturb`; noise seeded by ``seed`` and the clip's name); the
    ground truth stays clean."""
    refs = perturb_references(clip.references, kind, level, clip_seed(seed, clip.name))
    return replace(clip, references=refs)


def perturbation_sweep(
    report: dict,
    clips: Sequence[EvalClip],
    methods: dict[str, Method] | None,
    perturbations: dict[str, list[float]],
    seed: int = 0,
    include_baselines: bool = True,
    progress: ProgressFn | None = None,
) -> dict:
    """The ``perturbations`` table: for each kind and level, every method scored again (:func:`evaluate`, no LPIPS)
    on ``clips`` with perturbed references. Level 0 (first in each list, as :func:`~.perturb.parse_perturb_spec`
    gives) is the clean run and is taken from ``report``, the clean report of the same clips and methods.
    ``progress(done, total)`` counts clip evaluations over every perturbed level."""
    names = [*(BASELINES if include_baselines else ()), *(methods or {})]
    missing = [n for n in names if n not in report["methods"]]
    if missing:
        raise ReLumixError(f"the clean report has no scores for {', '.join(missing)}; evaluate them first")
    total = sum(len(levels) - 1 for levels in perturbations.values()) * len(clips)
    table: dict[str, dict] = {}
    done = 0
    for kind, levels in perturbations.items():
        if not levels or levels[0] != 0:
            raise ReLumixError(f"perturbation {kind}: the levels must start with 0 (the clean run), got {levels}")
        rows = {n: {m: [report["methods"][n][m]] for m in PERTURB_METRICS} for n in names}
        for level in levels[1:]:
            start = done

            def tick(d: int, _t: int, start: int = start) -> None:
                if progress is not None:
                    progress(start + d, total)

            result = evaluate([perturbed_clip(c, kind, level, seed) for c in clips], methods, progress=tick,
                              include_baselines=include_baselines, use_lpips=False)
            done += len(clips)
            for n in names:
                for m in PERTURB_METRICS:
                    rows[n][m].append(result["methods"][n][m])
        table[kind] = {"levels": list(levels), "units": UNITS[kind], "methods": rows}
    return table


__all__ = ["MODEL_METHOD", "baseline_methods", "distance_table", "evaluate", "first_stage_oracle",
           "perturbation_sweep", "perturbed_clip", "relumix_method", "window_seams"]
