"""Evaluate relighting methods on paired test clips: load clips, score every method, write the report.

A test clip is one ordered light pair of a scene from the training layout (``ROOT/<map>/<scene>/<light>/``): the
source-light clip is relit to the target light given the target's frame ``k`` (the reference, here always frame 0),
and the target clip is the ground truth. The baselines of :mod:`.baselines` always run, so the model's numbers
come with the floor every learned method must clear.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import write_text
from ..data.dataset import SceneIndex, index_scenes, parse_size
from ..errors import ReLumixError
from ..pipeline.progress import ProgressFn
from .baselines import BASELINES
from .metrics import METRICS, clip_metrics, lpips_status, temporal_lpips, temporal_ssim
from .plots import plot_curves, save_png, strip

#: Files a report consists of (plus ``strip_<clip>.png``); an existing one makes :func:`write_report` refuse.
REPORT_FILES = ("report.json", "summary.md", "psnr_per_frame.png")
STRIP_PATTERN = "strip_*.png"
#: Clips that get a strip figure, and the most frames a strip shows.
STRIP_CLIPS = 4
STRIP_FRAMES = 6
MODEL_METHOD = "relumix"
FRAME0_NOTE = (
    "frame 0 is the reference itself (the relit frame every method is given), so the psnr/ssim means leave it out; "
    "the per-frame arrays keep it"
)
TEMPORAL_NOTE = (
    "temporal_error is the RMSE between the output's and the ground truth's frame-to-frame changes (flicker); "
    "temporal_ssim/temporal_lpips compare consecutive output frames without the ground truth (the authors' "
    "real-video metrics): compare them with the ground truth's own values, since a frozen clip "
    "(reference_repeated) scores a perfect 1"
)

Method = Callable[["EvalClip"], torch.Tensor]


@dataclass
class EvalClip:
    """One test pair: relight ``source`` so that it matches ``target``, given ``reference = target[k]``."""

    name: str
    source: torch.Tensor  # [T,3,H,W] in [0,1], the source light
    target: torch.Tensor  # [T,3,H,W] in [0,1], the ground truth under the target light
    reference: torch.Tensor  # [3,H,W] = target[reference_index]
    reference_index: int = 0
    scene: str = ""
    source_light: str = ""
    target_light: str = ""


# -------------------------------------------------------------------------------------------------- loading


def _safe_name(text: str) -> str:
    """A clip name usable in file names (``strip_<name>.png``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_.") or "clip"


def _pairs_for_scene(scene: SceneIndex, root: Path, pairs: int, seed: int) -> list[int]:
    """Pair indices of one scene, drawn by ``seed`` and the scene's own path, so adding scenes changes no choice."""
    rel = scene.path.relative_to(root).as_posix()
    rng = np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(rel.encode())]))
    return [int(k) for k in rng.choice(scene.num_pairs, size=min(pairs, scene.num_pairs), replace=False)]


def _load_frames(paths: Sequence[Path], size: tuple[int, int] | None) -> torch.Tensor:
    from PIL import Image

    frames = []
    for path in paths:
        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
        except (OSError, ValueError) as exc:
            raise ReLumixError(f"cannot read image {path}: {exc}") from None
        if size is not None and im.size != (size[1], size[0]):
            im = im.resize((size[1], size[0]), Image.BICUBIC)
        frames.append(torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()))
        if frames[-1].shape != frames[0].shape:
            raise ReLumixError(f"image {path} is {im.width}x{im.height}, unlike the first frame {paths[0]}")
    return torch.stack(frames).permute(0, 3, 1, 2).float().div_(255.0)


def load_test_clips(
    root: str | Path,
    num_frames: int,
    size: int | tuple[int, int] | None = None,
    pairs_per_scene: int = 2,
    max_clips: int | None = None,
    seed: int = 0,
) -> list[EvalClip]:
    """Test clips from a paired-video folder: up to ``pairs_per_scene`` ordered (source, target) light pairs per
    scene, drawn deterministically by ``seed``; the first ``num_frames`` frames (no stride, no reversal); the
    reference is target frame 0.

    Clips come round-robin over scenes (every scene's first pair, then every scene's second pair, ...), so
    ``max_clips`` keeps as many scenes as possible. ``size`` (int or (H, W), multiples of 8) resizes frames with
    bicubic filtering. All frames are held in memory as float32: bound large sets with ``max_clips``.
    """
    if num_frames < 1:
        raise ReLumixError(f"num_frames must be at least 1, got {num_frames}")
    if pairs_per_scene < 1:
        raise ReLumixError(f"pairs_per_scene must be at least 1, got {pairs_per_scene}")
    if max_clips is not None and max_clips < 1:
        raise ReLumixError(f"max_clips must be at least 1, got {max_clips}")
    root = Path(root).expanduser()
    hw = parse_size(size)
    scenes = index_scenes(root, num_frames)
    chosen = [_pairs_for_scene(s, root, pairs_per_scene, seed) for s in scenes]
    order = [(s, ks[r]) for r in range(pairs_per_scene) for s, ks in zip(scenes, chosen, strict=True) if r < len(ks)]
    clips = []
    for scene, k in order[:max_clips]:
        src, tgt = scene.pair(k)
        source = _load_frames(scene.frames[src][:num_frames], hw)
        target = _load_frames(scene.frames[tgt][:num_frames], hw)
        if source.shape != target.shape:
            raise ReLumixError(f"lights {scene.lights[src]} and {scene.lights[tgt]} of {scene.path} have different "
                               "image sizes; pass size to resize them")
        rel = scene.path.relative_to(root).as_posix()
        name = _safe_name(f"{rel}_{scene.lights[src]}_to_{scene.lights[tgt]}")
        clips.append(EvalClip(name, source, target, target[0].clone(), 0, rel, scene.lights[src], scene.lights[tgt]))
    return clips


# -------------------------------------------------------------------------------------------------- methods


def baseline_methods() -> dict[str, Method]:
    """Every baseline of :data:`~.baselines.BASELINES` as a method on an :class:`EvalClip`."""

    def wrap(fn: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]) -> Method:
        return lambda clip: fn(clip.source, clip.reference, clip.reference_index)

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
    VAE and back), the same ``seed`` for every clip so each clip's result is reproducible on its own."""

    def run(clip: EvalClip) -> torch.Tensor:
        h, w = clip.source.shape[-2:]
        size = None if h % 8 == 0 and w % 8 == 0 else (max(8, round(h / 8) * 8), max(8, round(w / 8) * 8))
        out = pipeline.relight(
            clip.source.permute(0, 2, 3, 1), clip.reference.permute(1, 2, 0), reference_index=clip.reference_index,
            settings=replace(settings, size=size, fit="resize"), seed=seed, progress=progress, output_type="pt",
        )
        return out.permute(0, 3, 1, 2).float()

    return run


def window_seams(window: int, overlap: int, strategy: str) -> Callable[[EvalClip], list[int]]:
    """The seam steps of a clip under these window options, as the pipeline splits and windows it."""
    from ..pipeline.conditioning import split_directions
    from ..pipeline.windows import seam_transitions

    def seams(clip: EvalClip) -> list[int]:
        directions = split_directions(int(clip.source.shape[0]), clip.reference_index)
        return seam_transitions(directions, window, overlap, strategy)  # type: ignore[arg-type]

    return seams


# -------------------------------------------------------------------------------------------------- scoring


def _mean(values: list[float | None]) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else None


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
    Method means are means of the per-clip means (every clip weighs the same). Pass a dict as ``outputs`` to get
    the outputs of the first ``keep_outputs`` clips (``outputs[clip][method]``) for :func:`write_report`'s strips;
    other outputs are dropped at once, so memory stays at one clip. ``progress(done, total)`` counts clips.
    ``seams(clip)`` gives the frame steps (t -> t+1) at window seams (see :func:`window_seams`); every method then
    also gets ``seam_temporal_error``, its temporal error on those steps alone.
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
            "num_frames": int(clip.target.shape[0]), "size": [int(v) for v in clip.target.shape[-2:]],
            "ground_truth": {
                "temporal_ssim": _mean(temporal_ssim(clip.target).tolist()),
                "temporal_lpips": _mean(temporal_lpips(clip.target).tolist()) if use_lpips else None,
            },
            "methods": {},
        }
        for name, method in every.items():
            pred = method(clip)
            if not isinstance(pred, torch.Tensor) or tuple(pred.shape) != tuple(clip.target.shape):
                shape = tuple(pred.shape) if isinstance(pred, torch.Tensor) else type(pred).__name__
                raise ReLumixError(f"method {name} returned {shape} for clip {clip.name}; expected "
                                   f"{tuple(clip.target.shape)}")
            scores = clip_metrics(pred, clip.target, skip_first=True, use_lpips=use_lpips)
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
        "notes": {
            "frame_0": FRAME0_NOTE,
            "temporal": TEMPORAL_NOTE,
            "temporal_lpips": lpips_why if use_lpips else f"temporal LPIPS skipped: {lpips_why}",
        },
    }


# -------------------------------------------------------------------------------------------------- reporting

COLUMNS = (("psnr", "PSNR ↑", 2), ("ssim", "SSIM ↑", 4), ("temporal_error", "temporal error ↓", 4),
           ("seam_temporal_error", "seam error ↓", 4), ("temporal_ssim", "temporal SSIM", 4),
           ("temporal_lpips", "temporal LPIPS ↓", 4))


def _cell(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def summary_rows(report: dict) -> list[list[str]]:
    """Header plus one row per method (and the ground truth's own temporal values): shared by the console table
    and ``summary.md``."""
    columns = [c for c in COLUMNS if any(c[0] in values for values in report["methods"].values())]
    rows = [["method", *(title for _, title, _ in columns)]]
    for name, values in report["methods"].items():
        rows.append([name, *(_cell(values.get(key), d) for key, _, d in columns)])
    gt = report.get("ground_truth", {})
    rows.append(["(ground truth)", *(_cell(gt.get(key), d) for key, _, d in columns)])
    return rows


def format_table(report: dict) -> str:
    """The summary rows as an aligned plain-text table for the terminal."""
    rows = summary_rows(report)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _summary_md(report: dict) -> str:
    rows = summary_rows(report)
    lines = ["# ReLumix evaluation", "",
             f"{report['num_clips']} clips of {report['num_frames']} frames.", ""]
    config = report.get("config")
    if config:
        lines += ["Settings: " + ", ".join(f"{k}={v}" for k, v in config.items()), ""]
    lines.append("| " + " | ".join(rows[0]) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(rows[0]) - 1)) + "|")
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    lines += ["", "Notes:", ""] + [f"- {text}" for text in report.get("notes", {}).values()]
    return "\n".join(lines) + "\n"


def _json_safe(value: Any) -> Any:
    """NaN/inf become None, so report.json is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def existing_report_files(out_dir: Path) -> list[Path]:
    """Report files already in ``out_dir`` (what writing a report there would replace)."""
    if not out_dir.is_dir():
        return []
    return [out_dir / n for n in REPORT_FILES if (out_dir / n).exists()] + sorted(out_dir.glob(STRIP_PATTERN))


def check_report_dir(out_dir: str | Path, overwrite: bool = False) -> Path:
    """Fail early, before any work, if the report cannot or must not be written to ``out_dir``."""
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise ReLumixError(f"report folder {out} is a file; choose a folder")
    ancestor = out
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ReLumixError(f"cannot create report folder {out}: {ancestor} is a file")
    found = existing_report_files(out)
    if found and not overwrite:
        names = ", ".join(p.name for p in found[:4]) + (" ..." if len(found) > 4 else "")
        raise ReLumixError(f"{out} already holds an evaluation report ({names}); choose another folder or pass "
                           "--force (overwrite=True) to replace it")
    return out


def _strip_frames(num_frames: int) -> list[int]:
    count = min(STRIP_FRAMES, num_frames)
    return sorted({round(i * (num_frames - 1) / max(1, count - 1)) for i in range(count)})


def _best_baseline(report: dict) -> str | None:
    scored = [(v["psnr"], n) for n, v in report["methods"].items() if n in BASELINES and v["psnr"] is not None]
    return max(scored)[1] if scored else None


def write_report(
    report: dict,
    clips: Sequence[EvalClip],
    outputs: dict[str, dict[str, torch.Tensor]],
    out_dir: str | Path,
    overwrite: bool = False,
    strip_clips: int = STRIP_CLIPS,
) -> Path:
    """Write ``report.json``, ``psnr_per_frame.png``, ``strip_<clip>.png`` (first ``strip_clips`` clips with
    outputs: input, reference, relumix output if any, the best baseline by PSNR, ground truth) and
    ``summary.md`` into ``out_dir``. Every file is written atomically; existing report files are refused unless
    ``overwrite``, and then stale strips of an earlier run are removed. Returns the path of ``report.json``."""
    out = check_report_dir(out_dir, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    series = {n: [math.nan if v is None else v for v in values] for n, values in report["per_frame_psnr"].items()}
    for values in series.values():
        if len(values) > 1:
            values[0] = math.nan  # the reference frame: ~100 dB for some baselines would flatten the chart
    chart = plot_curves(series, f"PSNR per frame, mean over {report['num_clips']} clips (frame 0 = reference, left "
                        "out)", "frame", "PSNR (dB)")
    save_png(chart, out / "psnr_per_frame.png")
    best = _best_baseline(report)
    written = set()
    for clip in [c for c in clips if c.name in outputs][:strip_clips]:
        rows: dict[str, torch.Tensor] = {"input": clip.source, "reference": clip.reference}
        if MODEL_METHOD in outputs[clip.name]:
            rows[MODEL_METHOD] = outputs[clip.name][MODEL_METHOD]
        if best is not None and best in outputs[clip.name]:
            rows[f"{best} (best baseline)"] = outputs[clip.name][best]
        rows["ground truth"] = clip.target
        scale = max(1, 128 // max(clip.target.shape[-2:]))
        path = out / f"strip_{clip.name}.png"
        save_png(strip(rows, _strip_frames(clip.target.shape[0]), scale), path)
        written.add(path)
    for stale in out.glob(STRIP_PATTERN):
        if stale not in written:
            stale.unlink()
    write_text(out / "summary.md", _summary_md(report))
    return write_text(out / "report.json", json.dumps(_json_safe(report), indent=1, allow_nan=False) + "\n")


__all__ = [
    "MODEL_METHOD",
    "REPORT_FILES",
    "EvalClip",
    "baseline_methods",
    "check_report_dir",
    "evaluate",
    "format_table",
    "load_test_clips",
    "relumix_method",
    "summary_rows",
    "write_report",
]
