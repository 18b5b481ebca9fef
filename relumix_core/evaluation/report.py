"""The evaluation report on disk: report.json, summary.md, the charts and the strips, never over an old one."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..atomic import write_text
from ..errors import ReLumixError
from .baselines import BASELINES
from .clips import EvalClip
from .evaluate import MODEL_METHOD, STRIP_CLIPS
from .perturb import UNITS
from .plots import plot_curves, save_png, strip

# -------------------------------------------------------------------------------------------------- reporting

#: Files a report consists of (plus the :data:`REPORT_PATTERNS`); an existing one makes :func:`write_report` refuse.
REPORT_FILES = ("report.json", "summary.md", "psnr_per_frame.png", "psnr_by_distance.png")
STRIP_PATTERN = "strip_*.png"
PERTURB_PATTERN = "perturb_*.png"
#: Report files named per clip or per perturbation kind.
REPORT_PATTERNS = (STRIP_PATTERN, PERTURB_PATTERN)
#: The most frames a strip shows.
STRIP_FRAMES = 6

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


def _level(value: float) -> str:
    return f"{value:g}"


def distance_line(report: dict) -> str | None:
    """One line for ``summary.md``: each method's mean PSNR at distance 1 and at the largest distance."""
    table = report.get("by_distance")
    if not table or len(table["distance"]) < 2:
        return None
    far = table["distance"][-1]
    cells = [f"{name} {_cell(v['psnr'][1], 2)} → {_cell(v['psnr'][-1], 2)}" for name, v in table["methods"].items()]
    return (f"PSNR by distance to the nearest reference (dB at 1 → {far} frames; by_distance in report.json, "
            f"psnr_by_distance.png): " + ", ".join(cells) + ".")


def perturbation_lines(report: dict) -> list[str]:
    """One line per perturbation kind for ``summary.md``: each method's mean PSNR at every level."""
    lines = []
    for kind, entry in report.get("perturbations", {}).items():
        levels = " / ".join(_level(v) for v in entry["levels"])
        cells = [f"{name} " + " / ".join(_cell(v, 2) for v in rows["psnr"]) for name, rows in entry["methods"].items()]
        lines.append(f"Reference {kind} ({entry.get('units', UNITS[kind])}) at {levels}, PSNR (dB; "
                     f"perturb_{kind}.png): " + "; ".join(cells) + ".")
    return lines


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
    extra = [line for line in (distance_line(report), *perturbation_lines(report)) if line]
    if extra:
        lines += [""] + extra
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
    patterned = sorted(p for pattern in REPORT_PATTERNS for p in out_dir.glob(pattern))
    return [out_dir / n for n in REPORT_FILES if (out_dir / n).exists()] + patterned


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


def _nan(values: Sequence[float | None]) -> list[float]:
    return [math.nan if v is None else v for v in values]


def _keyframes_of_report(report: dict) -> set[int]:
    """Frames that are a reference in at least one clip (left out of the per-frame chart)."""
    return {k for clip in report["clips"] for k in clip.get("reference_indices", [clip.get("reference_index", 0)])}


def _write_charts(report: dict, out: Path) -> list[Path]:
    """``psnr_per_frame.png``, ``psnr_by_distance.png`` and one ``perturb_<kind>.png`` per perturbation kind."""
    n = report["num_clips"]
    keys = _keyframes_of_report(report)
    series = {name: _nan(values) for name, values in report["per_frame_psnr"].items()}
    for values in series.values():
        if len(values) > 1:
            for k in keys & set(range(len(values))):
                values[k] = math.nan  # the references: ~100 dB for some baselines would flatten the chart
    save_png(plot_curves(series, f"PSNR per frame, mean over {n} clips (references left out)", "frame",
                         "PSNR (dB)"), out / "psnr_per_frame.png")
    table = report["by_distance"]
    series = {name: _nan(rows["psnr"]) for name, rows in table["methods"].items()}
    for values in series.values():
        if len(values) > 1:
            values[0] = math.nan  # distance 0 is the references themselves
    save_png(plot_curves(series, f"PSNR by distance to the nearest reference, {n} clips (0 left out)",
                         "distance to the nearest reference (frames)", "PSNR (dB)"), out / "psnr_by_distance.png")
    written = []
    for kind, entry in report.get("perturbations", {}).items():
        series = {name: _nan(rows["psnr"]) for name, rows in entry["methods"].items()}
        path = out / f"perturb_{kind}.png"
        save_png(plot_curves(series, f"PSNR with a perturbed reference: {kind}, {n} clips",
                             f"{kind} level ({entry.get('units', UNITS[kind])})", "PSNR (dB)",
                             x_labels=[_level(v) for v in entry["levels"]]), path)
        written.append(path)
    return written


def _write_strips(report: dict, clips: Sequence[EvalClip], outputs: dict[str, dict[str, torch.Tensor]], out: Path,
                  strip_clips: int) -> list[Path]:
    best = _best_baseline(report)
    written = []
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
        written.append(path)
    return written


def write_report(
    report: dict,
    clips: Sequence[EvalClip],
    outputs: dict[str, dict[str, torch.Tensor]],
    out_dir: str | Path,
    overwrite: bool = False,
    strip_clips: int = STRIP_CLIPS,
) -> Path:
    """Write ``report.json``, ``psnr_per_frame.png``, ``psnr_by_distance.png``, ``perturb_<kind>.png`` (one per
    perturbation kind in the report), ``strip_<clip>.png`` (first ``strip_clips`` clips with outputs: input, first
    reference, relumix output if any, the best baseline by PSNR, ground truth) and ``summary.md`` into
    ``out_dir``. Every file is written atomically; existing report files are refused unless ``overwrite``, and
    then stale strips and perturbation plots of an earlier run are removed. Returns the path of ``report.json``."""
    out = check_report_dir(out_dir, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    written = set(_write_charts(report, out)) | set(_write_strips(report, clips, outputs, out, strip_clips))
    for stale in [p for pattern in REPORT_PATTERNS for p in out.glob(pattern)]:
        if stale not in written:
            stale.unlink()
    write_text(out / "summary.md", _summary_md(report))
    return write_text(out / "report.json", json.dumps(_json_safe(report), indent=1, allow_nan=False) + "\n")


__all__ = ["REPORT_FILES", "REPORT_PATTERNS", "check_report_dir", "format_table", "summary_rows", "write_report"]
