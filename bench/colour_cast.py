"""Where relumix-tiny's colour cast comes from, measured stage by stage on the validation split (issue 20, step 1).

    relumix synth /tmp/relumix_val --scenes 20 --lights 4 --frames 8 --seed 7000   # the validation split
    python bench/colour_cast.py   # about 2.5 minutes on one CPU thread; writes bench/results/colour_cast.json

The clips are those ``relumix eval`` would take from the validation split (``load_test_clips``, 2 pairs per scene,
seed 0, round-robin over scenes), the first ``--clips`` of them (default 12: 12 scenes' first light pairs). Each
clip is relit from its ground-truth frame 0 (the reference), seed 0, as ``relumix eval`` does. At frame 0 the output
should reproduce the reference it was given, so any difference there is the model's own colour, not the light
transport.

Numbers are in 8-bit levels (0..255) of the clamped [0, 1] output, per channel (R, G, B):

* ``f0 mean diff``: mean of the output at frame 0 minus mean of the reference (signed: the cast's direction;
  a pink cast is R and B above G);
* ``f0 highlight diff``: the same over the reference's brightest 10 % of pixels (by luminance), where the demo's
  cast shows;
* ``f0 MAE``: mean absolute error at frame 0 against the reference;
* ``last mean diff`` / ``last MAE``: the same for the last frame against its ground truth;
* ``PSNR 1..``: mean PSNR (dB) over frames 1.. against the ground truth (as ``relumix eval``), and PSNR at frame 0.

Rows (``variants``): the model as shipped (4 steps, detail transfer 0.75, guidance 1.0 to 1.5, reference range
``official``) and one change at a time: detail transfer off, 25 steps (with and without detail transfer),
``reference_range`` ``training``, guidance 1.0 to 1.0 (no CFG). Then the stages without diffusion (``stages``):

* the VAE round trip of the reference alone: posterior mean (the frame encoder's latent) -> decode, as a clip of
  one frame and as a still clip of 8 copies (the temporal decoder was trained on clips);
* the VAE round trip of the whole ground-truth clip, decode chunk 8 as the pipeline decodes (frame 0 is the
  reference among its clip's frames; the later frames give the ceiling of ``relumix eval --oracle``);
* the shipped run's sampled frame-0 latent (the UNet's final x0 at frame 0: the last Euler step to sigma 0
  returns it) decoded alone, to set against the reference's latent decoded alone (sampling against decoding);
* the shipped run's latents with frame 0 swapped for the reference's own latent, decoded as the pipeline does:
  what the temporal decoder makes of the exact reference latent next to the sampled frames.

``latent_frame0`` compares the sampled frame-0 latent with the reference's posterior mean in latent units. The
detail-off rows are not separate runs: the detail transfer only post-processes the decoded frames (same latents,
seed for seed), so they are their base row's clamped decode.

The cast is then split along three colour axes (``AXES``: luma, red-blue, green-magenta; a pink cast is a move
towards magenta). ``chroma_axes_frame0`` gives, per row, the fraction of the reference's per-pixel variation along
each axis that the frame-0 output keeps; ``vae_axis_probe`` moves ground-truth clips along each axis and measures
how far the encoder's latent moves and how much of the move survives the first stage's round trip.

"Averaged weights against the last": the bundled file is stage 5's exponential weight average (model card); the
script looks for the last (non-averaged) weights of that run, a training checkpoint (``runs/tiny-unet-ema/...``,
``model.safetensors`` beside ``average.safetensors``), in the repository and the folder above it, and records what
it found; it never substitutes other weights.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from relumix_core.atomic import write_text
from relumix_core.checkpoints.loading import load_relumix
from relumix_core.evaluation.clips import EvalClip, load_test_clips
from relumix_core.evaluation.metrics import psnr_per_frame
from relumix_core.models.relumix import ReLumixModel
from relumix_core.models.vae import decode_latents, first_stage_moments, posterior_parameters
from relumix_core.pipeline.pipeline import RelightResult, ReLumixPipeline
from relumix_core.pipeline.settings import RelightSettings

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "results" / "colour_cast.json"
WEIGHTS = ROOT / "relumix_core" / "weights" / "relumix-tiny.safetensors"
DATA = Path("/tmp/relumix_val")
SYNTH = {"scenes": 20, "lights": 4, "frames": 8, "size": 64, "seed": 7000}
SYNTH_CMD = "relumix synth {out} --scenes 20 --lights 4 --frames 8 --seed 7000"
SEED = 0
LEVELS = 255.0
HIGHLIGHT_QUANTILE = 0.9
CHANNELS = ("R", "G", "B")
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".ckpt", ".bin")
SKIP_DIRS = {".git", ".venv", "venv", "site-packages", "node_modules", "__pycache__", ".mirror"}

#: One change at a time from the model as shipped (settings fields; ``None`` values resolve to the model's own).
VARIANTS: dict[str, dict] = {
    "shipped (4 steps, detail 0.75, cfg 1.0-1.5, official)": {},
    "detail transfer off": {"detail_sigma": 0.0},
    "25 steps": {"num_steps": 25},
    "25 steps, detail off (authors' sampler)": {"num_steps": 25, "detail_sigma": 0.0},
    "reference_range training": {"reference_range": "training"},
    "guidance 1.0-1.0 (no CFG)": {"max_guidance": 1.0},
}
#: Rows that are another row without its detail transfer. The transfer only post-processes the decoded frames (the
#: latents and the decode are the same, seed for seed), so these come from that row's run: its clamped decode.
DETAIL_OFF_OF = {"detail transfer off": "shipped (4 steps, detail 0.75, cfg 1.0-1.5, official)",
                 "25 steps, detail off (authors' sampler)": "25 steps"}
#: Colour axes (unit-free weights on R, G, B): the cast's components. A pink or magenta cast is a move along
#: green-magenta towards magenta.
AXES = {"luma": (1 / 3, 1 / 3, 1 / 3), "red-blue": (1.0, 0.0, -1.0), "green-magenta": (-0.5, 1.0, -0.5)}
#: The probe: the ground-truth clip shifted by this much along each axis (in [0, 1] units per unit weight).
PROBE_SHIFT = 0.08
PROBE_CLIPS = 4
SHIPPED = next(iter(VARIANTS))


# ---------------------------------------------------------------------------------------------- measures


def luminance(image: torch.Tensor) -> torch.Tensor:
    """Rec. 709 luma of [3, H, W] -> [H, W]."""
    return 0.2126 * image[0] + 0.7152 * image[1] + 0.0722 * image[2]


def frame_stats(pred: torch.Tensor, ref: torch.Tensor, highlights: torch.Tensor | None = None) -> dict:
    """Per-channel signed mean difference and MAE (8-bit levels) of one frame [3, H, W] against ``ref``."""
    diff = (pred.double() - ref.double()) * LEVELS
    out = {"mean_diff": diff.mean((-2, -1)).tolist(), "mae": diff.abs().mean((-2, -1)).tolist()}
    if highlights is not None:
        out["highlight_diff"] = diff[:, highlights].mean(-1).tolist()
    return out


def clip_stats(frames: torch.Tensor | None, frame0: torch.Tensor, clip: EvalClip) -> dict:
    """Frame-0 stats against the reference; with the whole clip ``frames`` also the last frame's and the PSNRs."""
    ref = clip.reference
    bright = luminance(ref) >= torch.quantile(luminance(ref).flatten(), HIGHLIGHT_QUANTILE)
    out = {"frame0": frame_stats(frame0, ref, bright)}
    out["frame0"]["psnr"] = float(psnr_per_frame(frame0[None].float(), ref[None]))
    if frames is not None:
        out["last"] = frame_stats(frames[-1], clip.target[-1])
        psnr = psnr_per_frame(frames.float(), clip.target)
        out["psnr_1on"] = float(psnr[1:].mean())
    return out


def mean_of(per_clip: list[dict]) -> dict:
    """Means over clips of every number in the per-clip dicts (lists element-wise); also how many clips have frame
    0 redder than green (R diff above G diff)."""

    def avg(values: list) -> object:
        if isinstance(values[0], dict):
            return {k: avg([v[k] for v in values]) for k in values[0]}
        if isinstance(values[0], list):
            return [sum(col) / len(col) for col in zip(*values, strict=True)]
        return sum(values) / len(values)

    out = avg(per_clip)
    d = [c["frame0"]["mean_diff"] for c in per_clip]
    r, g, b = out["frame0"]["mean_diff"]
    out["frame0"]["chroma_r_minus_g_b_minus_g"] = [r - g, b - g]
    out["frame0"]["clips_red_above_green"] = sum(r > g for r, g, _ in d)
    out["frame0"]["clips_blue_above_green"] = sum(b > g for _, g, b in d)
    out["clips"] = len(per_clip)
    return out


# ---------------------------------------------------------------------------------------------- running


def run_pipeline(pipe: ReLumixPipeline, clip: EvalClip, settings: RelightSettings) -> RelightResult:
    """``pipeline.relight`` as ``relumix eval`` calls it (seed 0, noise in the official order), keeping the
    latents and the raw decode."""
    generator = torch.Generator().manual_seed(SEED)
    frames = clip.source.permute(0, 2, 3, 1)
    cond = pipe.encode(frames, clip.reference.permute(1, 2, 0), clip.reference_index, settings, generator)
    return pipe.generate(cond, settings, generator)


def ref_latent(model: ReLumixModel, image: torch.Tensor) -> torch.Tensor:
    """Posterior mean (unscaled) of images [N, 3, H, W] in [0, 1]: the frame encoder's latent."""
    vae = model.component("vae")
    return posterior_parameters(first_stage_moments(vae, image * 2 - 1))[0]


def decode(model: ReLumixModel, latents_unscaled: torch.Tensor, chunk: int) -> torch.Tensor:
    """Latents (unscaled) -> frames in [0, 1], clamped, ``chunk`` frames per decode call."""
    x = decode_latents(model.component("vae"), latents_unscaled, chunk, scale_factor=1.0)
    return ((x.float() + 1) / 2).clamp(0, 1)


def find_weights(roots: list[Path]) -> list[dict]:
    """Weight files under ``roots`` (not in virtual environments or git folders), with their sizes; sha256 of the
    ones named like relumix-tiny or a training checkpoint."""
    found, seen = [], set()

    def walk(folder: Path) -> None:
        try:
            entries = sorted(folder.iterdir())
        except OSError:
            return
        for entry in entries:
            if entry.is_symlink():
                continue
            if entry.is_dir():
                if entry.name not in SKIP_DIRS:
                    walk(entry)
            elif entry.name.endswith(WEIGHT_SUFFIXES) and entry.resolve() not in seen:
                seen.add(entry.resolve())
                item = {"path": str(entry), "bytes": entry.stat().st_size}
                if "relumix-tiny" in entry.name or entry.name in ("model.safetensors", "average.safetensors"):
                    item["sha256"] = hashlib.sha256(entry.read_bytes()).hexdigest()
                found.append(item)

    for root in roots:
        walk(root)
    return found


def _shown(path: Path) -> str:
    """A path as the results file records it: relative to the repository when inside it."""
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def last_weights_report() -> dict:
    roots = [ROOT, ROOT.parent]
    files = find_weights(roots)
    shipped = hashlib.sha256(WEIGHTS.read_bytes()).hexdigest()
    tiny = [f for f in files if "sha256" in f]
    others = [f for f in tiny if f["sha256"] != shipped]
    checkpoints = [f for f in files if Path(f["path"]).name in ("model.safetensors", "average.safetensors")]
    return {
        "available": bool(checkpoints or others),
        "shipped_weights": "stage 5 (tiny-unet-ema) exponential weight average, decay 0.999, step 1514 (model card)",
        "shipped_sha256": shipped,
        "searched": [str(r) for r in roots],
        "relumix_tiny_files": tiny,
        "training_checkpoints": checkpoints,
        "note": (
            "no last (non-averaged) weights of the stage-5 run exist here: every relumix-tiny file found is the "
            "shipped average (same sha256) and no runs/<stage>/ checkpoint (model.safetensors + "
            "average.safetensors) was found, so the averaged-against-last comparison cannot be measured without "
            "re-running stage 5 (relumix train tiny-unet-ema --max-steps 1514, about 0.67 h on 2 CPU cores, after "
            "stages 1-4, which are not here either)"
            if not (checkpoints or others)
            else "other weight files were found; see the lists"
        ),
    }


def axis_value(image: torch.Tensor, axis: str) -> torch.Tensor:
    """Projection of [..., 3, H, W] onto a colour axis of :data:`AXES`."""
    w = torch.tensor(AXES[axis], dtype=image.dtype).view(3, 1, 1)
    return (image * w).sum(-3)


def axis_retention(images: list[torch.Tensor], references: list[torch.Tensor]) -> dict:
    """Per colour axis, pooled over every pixel of every clip's frame 0: the least-squares slope ``a`` of
    ``out - ref`` on ``ref`` (projected on the axis) and ``1 + a``, the fraction of the reference's variation along
    that axis the output keeps (1: all of it; 0: the output is flat along the axis), with the offset in levels."""
    out = {}
    for axis in AXES:
        x = torch.cat([axis_value(r.double(), axis).flatten() for r in references])
        y = torch.cat([axis_value(i.double(), axis).flatten() for i in images]) - x
        xc = x - x.mean()
        slope = float((xc * (y - y.mean())).sum() / xc.pow(2).sum())
        corr = float(torch.corrcoef(torch.stack([x, y]))[0, 1])
        out[axis] = {"kept": 1 + slope, "slope": slope, "offset_levels": float(y.mean() * LEVELS), "corr": corr}
    return out


@torch.no_grad()
def vae_probe(model: ReLumixModel, clips: list[EvalClip]) -> dict:
    """The first stage alone on controlled colour moves: each ground-truth clip shifted by :data:`PROBE_SHIFT`
    along each axis. Reports how far the encoder's latent moves (mean |change| / latent std) and how much of the
    input's move along the axis survives the round trip (decode chunk = the clip), averaged over the clips."""
    out: dict[str, dict] = {}
    for axis, weights in AXES.items():
        latent_moves, kept, shifts = [], [], []
        for clip in clips:
            w = torch.tensor(weights).view(1, 3, 1, 1)
            moved = (clip.target + PROBE_SHIFT * w).clamp(0, 1)
            mu0, mu1 = ref_latent(model, clip.target), ref_latent(model, moved)
            d0, d1 = decode(model, mu0, clip.target.shape[0]), decode(model, mu1, clip.target.shape[0])
            latent_moves.append(float((mu1 - mu0).abs().mean() / mu0.std()))
            kept.append(float(axis_value(d1 - d0, axis).mean() / axis_value(moved - clip.target, axis).mean()))
            shifts.append(((d1 - d0).mean((0, 2, 3)) * LEVELS).tolist())
        out[axis] = {
            "latent_move_over_std": sum(latent_moves) / len(latent_moves),
            "kept": sum(kept) / len(kept),
            "output_shift_levels_rgb": [sum(c) / len(c) for c in zip(*shifts, strict=True)],
            "input_shift_levels_rgb": [PROBE_SHIFT * v * LEVELS for v in weights],
        }
    out["clips"] = len(clips)
    return out


def per_clip_summary(per_clip: list[dict]) -> dict:
    """The casts' spread over clips (a mean over clips can cancel opposite casts) and how closely the shipped
    output's frame-0 cast follows the VAE round trip's, clip by clip."""
    keys = [k for k in per_clip[0] if k not in ("clip", "reference_mean")]
    values = {k: torch.tensor([c[k] for c in per_clip], dtype=torch.float64) for k in keys}
    out: dict = {"rms_over_clips": {k: v.pow(2).mean(0).sqrt().tolist() for k, v in values.items()}}
    ship, vae = values["shipped"], values["vae_clip"]
    if len(per_clip) > 2:
        out["corr_shipped_vs_vae_clip"] = [float(torch.corrcoef(torch.stack([ship[:, i], vae[:, i]]))[0, 1])
                                           for i in range(3)]
    out["mean_abs_shipped_minus_vae_clip"] = (ship - vae).abs().mean(0).tolist()
    return out


def ensure_data(root: Path) -> str:
    if (root / "meta.json").exists():
        return "existing"
    from relumix_core.data.synth import write_dataset

    write_dataset(root, **SYNTH)
    return "generated"


def measure(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    data_state = ensure_data(args.data)
    model, _ = load_relumix(str(args.checkpoint))
    model.eval()
    pipe = ReLumixPipeline(model)
    cfg = model.config
    clips = load_test_clips(args.data, cfg.trained_frames, pairs_per_scene=2, max_clips=args.clips, seed=SEED)
    print(f"{len(clips)} clips of {cfg.trained_frames} frames from {args.data} ({data_state}); model: "
          f"{cfg.default_steps} steps, detail {cfg.detail_sigma}", file=sys.stderr)
    variants: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    stage_names = ("vae round trip, reference alone (1-frame decode)",
                   "vae round trip, reference as a still 8-frame clip",
                   "vae round trip, ground-truth clip (decode chunk 8)",
                   "sampled frame-0 latent (UNet x0), decoded alone",
                   "shipped latents, frame 0 := reference latent, decoded as the pipeline")
    stages: dict[str, list[dict]] = {name: [] for name in stage_names}
    latent: list[dict] = []
    per_clip_f0: list[dict] = []
    timings: dict[str, float] = {name: 0.0 for name in VARIANTS if name not in DETAIL_OFF_OF}
    f0_images: dict[str, list[torch.Tensor]] = {name: [] for name in (SHIPPED, "detail transfer off", *stage_names)}
    references: list[torch.Tensor] = []
    for i, clip in enumerate(clips):
        shipped: RelightResult | None = None
        results: dict[str, RelightResult] = {}
        for name, change in VARIANTS.items():
            if name in DETAIL_OFF_OF:
                continue
            settings = replace(RelightSettings(), **change)
            t0 = time.perf_counter()
            results[name] = run_pipeline(pipe, clip, settings)
            timings[name] += time.perf_counter() - t0
        for name in VARIANTS:
            if name in DETAIL_OFF_OF:
                base = results[DETAIL_OFF_OF[name]]
                frames = ((base.decoded.float() + 1) / 2).clamp(0, 1)
                if frames.shape != base.frames.shape:
                    raise RuntimeError("detail-off rows are derived at the processing size; the clip must be at it")
            else:
                frames = results[name].frames
            variants[name].append(clip_stats(frames, frames[0], clip))
            if name in (SHIPPED, "detail transfer off"):
                f0_images[name].append(frames[0])
        shipped = results[SHIPPED]
        with torch.no_grad():
            chunk = shipped.latents.shape[0]  # the pipeline's decode chunk: the window (8) = the clip here
            scale = cfg.scale_factor
            mu_ref = ref_latent(model, clip.reference[None])
            mu_clip = ref_latent(model, clip.target)
            alone = decode(model, mu_ref, 1)
            still = decode(model, mu_ref.repeat(chunk, 1, 1, 1), chunk)
            oracle = decode(model, mu_clip, chunk)
            z0 = shipped.latents[:1].float() / scale
            z0_alone = decode(model, z0, 1)
            swapped = shipped.latents.float() / scale
            swapped[0] = mu_ref[0]
            swap = decode(model, swapped, chunk)
        stages[stage_names[0]].append(clip_stats(None, alone[0], clip))
        stages[stage_names[1]].append(clip_stats(None, still[0], clip))
        stages[stage_names[2]].append(clip_stats(oracle, oracle[0], clip))
        stages[stage_names[3]].append(clip_stats(None, z0_alone[0], clip))
        stages[stage_names[4]].append(clip_stats(swap, swap[0], clip))
        for name, image in zip(stage_names, (alone, still, oracle, z0_alone, swap), strict=True):
            f0_images[name].append(image[0])
        references.append(clip.reference)
        # the UNet's frame-0 latent against the reference's, and the decoded x0 against the decoded reference latent
        dz = z0[0].double() - mu_ref[0].double()
        latent.append({
            "mean_diff": dz.mean((-2, -1)).tolist(),
            "mae": dz.abs().mean((-2, -1)).tolist(),
            "relative_rmse": float(dz.pow(2).mean().sqrt() / mu_ref.double().std()),
            "decoded_x0_vs_decoded_ref_latent": frame_stats(z0_alone[0], alone[0]),
        })
        per_clip_f0.append({
            "clip": clip.name,
            "reference_mean": (clip.reference.double().mean((-2, -1)) * LEVELS).tolist(),
            **{key: entries[-1]["frame0"]["mean_diff"] for key, entries in (
                ("shipped", variants[SHIPPED]), ("detail_off", variants["detail transfer off"]),
                ("vae_alone", stages[stage_names[0]]), ("vae_still", stages[stage_names[1]]),
                ("vae_clip", stages[stage_names[2]]), ("x0_alone", stages[stage_names[3]]))},
        })
        print(f"clip {i + 1}/{len(clips)} {clip.name}: f0 diff shipped "
              f"{fmt(variants[SHIPPED][-1]['frame0']['mean_diff'])}, vae alone "
              f"{fmt(stages[stage_names[0]][-1]['frame0']['mean_diff'])}  ({time.perf_counter() - start:.0f} s)",
              file=sys.stderr)
    latent_mean = {
        "mean_diff": [sum(col) / len(col) for col in zip(*(x["mean_diff"] for x in latent), strict=True)],
        "mae": [sum(col) / len(col) for col in zip(*(x["mae"] for x in latent), strict=True)],
        "relative_rmse": sum(x["relative_rmse"] for x in latent) / len(latent),
        "decoded_x0_vs_decoded_ref_latent": mean_of(
            [{"frame0": x["decoded_x0_vs_decoded_ref_latent"]} for x in latent])["frame0"],
    }
    latent_mean["decoded_x0_vs_decoded_ref_latent"].pop("clips_red_above_green", None)
    latent_mean["decoded_x0_vs_decoded_ref_latent"].pop("clips_blue_above_green", None)
    return {
        "what": "relumix-tiny colour cast, per stage, on the validation split (issue 20, step 1: measurement only)",
        "units": "8-bit levels (0..255) of the clamped [0, 1] output, channels R, G, B; diff = output - reference "
                 "(frame 0) or output - ground truth (last frame); PSNR in dB, data range 1",
        "data": {"root": str(args.data), "command": SYNTH_CMD.format(out=args.data), "state": data_state,
                 "clips": [c.name for c in clips], "selection": "load_test_clips(pairs_per_scene=2, seed=0), the "
                 "first N: each scene's first light pair, as relumix eval orders them",
                 "frames": cfg.trained_frames, "size": list(clips[0].target.shape[-2:])},
        "model": {"weights": _shown(args.checkpoint), "default_steps": cfg.default_steps,
                  "detail_sigma": cfg.detail_sigma, "scale_factor": cfg.scale_factor, "seed": SEED},
        "variants": {name: {"settings": VARIANTS[name], **({"derived_from": DETAIL_OFF_OF[name]}
                                                            if name in DETAIL_OFF_OF else {}), **mean_of(v)}
                     for name, v in variants.items()},
        "stages": {name: mean_of(v) for name, v in stages.items()},
        "latent_frame0": latent_mean,
        "per_clip_frame0": per_clip_summary(per_clip_f0),
        "chroma_axes_frame0": {name: axis_retention(images, references) for name, images in f0_images.items()},
        "vae_axis_probe": vae_probe(model, clips[:PROBE_CLIPS]),
        "per_clip_frame0_mean_diff": per_clip_f0,
        "last_weights": last_weights_report(),
        "seconds": {"total": round(time.perf_counter() - start, 1),
                    **{k: round(v, 1) for k, v in timings.items()}},
        "threads": args.threads,
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpu": platform.processor()
                    or platform.machine()},
    }


# ---------------------------------------------------------------------------------------------- report


def fmt(values: list[float] | None, digits: int = 1) -> str:
    if values is None:
        return "–"
    return " / ".join(f"{v:+.{digits}f}" for v in values)


def fmt_abs(values: list[float] | None, digits: int = 1) -> str:
    return "–" if values is None else " / ".join(f"{v:.{digits}f}" for v in values)


def table(result: dict) -> str:
    head = ("| row | f0 mean diff R/G/B | f0 chroma R-G / B-G | f0 highlight diff R/G/B | f0 MAE R/G/B | f0 PSNR "
            "| last mean diff R/G/B | last MAE R/G/B | PSNR 1.. | clips R>G at f0 |")
    lines = [head, "|---|" + "---:|" * 9]
    rows: list[tuple[str, dict]] = [(k, v) for k, v in result["variants"].items()]
    rows += [(k, v) for k, v in result["stages"].items()]
    get: Callable[[dict, str, str], list[float] | None] = lambda v, part, key: v.get(part, {}).get(key)  # noqa: E731
    for name, v in rows:
        last, psnr = v.get("last"), v.get("psnr_1on")
        lines.append(
            f"| {name} | {fmt(get(v, 'frame0', 'mean_diff'))} "
            f"| {fmt(get(v, 'frame0', 'chroma_r_minus_g_b_minus_g'))} | {fmt(get(v, 'frame0', 'highlight_diff'))} "
            f"| {fmt_abs(get(v, 'frame0', 'mae'))} | {v['frame0']['psnr']:.2f} "
            f"| {fmt(last['mean_diff']) if last else '–'} | {fmt_abs(last['mae']) if last else '–'} "
            f"| {f'{psnr:.2f}' if psnr is not None else '–'} "
            f"| {v['frame0']['clips_red_above_green']}/{v['clips']} |"
        )
    lines += ["", "Colour axes at frame 0, pooled over all pixels of all clips: the fraction of the reference's "
              "variation along each axis that the output keeps (1 + slope of out - ref on ref; 1 = all).", "",
              "| row | " + " | ".join(f"{a} kept" for a in AXES) + " |", "|---|" + "---:|" * len(AXES)]
    for name, axes in result["chroma_axes_frame0"].items():
        lines.append(f"| {name} | " + " | ".join(f"{axes[a]['kept']:.2f}" for a in AXES) + " |")
    probe = result["vae_axis_probe"]
    lines += ["", f"First stage alone, ground-truth clips moved by {PROBE_SHIFT} along each axis "
              f"({probe['clips']} clips):", "",
              "| axis | input move R/G/B | output move R/G/B | kept along the axis | latent move / latent std |",
              "|---|---:|---:|---:|---:|"]
    for a in AXES:
        v = probe[a]
        lines.append(f"| {a} | {fmt(v['input_shift_levels_rgb'])} | {fmt(v['output_shift_levels_rgb'])} "
                     f"| {v['kept']:.2f} | {v['latent_move_over_std']:.3f} |")
    spread = result["per_clip_frame0"]
    rms = spread["rms_over_clips"]
    lines += ["", "Frame-0 cast per clip (the means above let opposite casts cancel): RMS over clips R/G/B: "
              + "; ".join(f"{k} {fmt_abs(v)}" for k, v in rms.items())
              + f". Shipped against the VAE round trip of the clip, clip by clip: correlation "
              f"{fmt(spread.get('corr_shipped_vs_vae_clip'), 2)}, mean |difference| "
              f"{fmt_abs(spread['mean_abs_shipped_minus_vae_clip'])}."]
    lat = result["latent_frame0"]
    dec = lat["decoded_x0_vs_decoded_ref_latent"]
    lines += [
        "",
        f"Latent at frame 0, sampled (shipped) minus the reference's posterior mean, per latent channel: mean "
        f"{fmt(lat['mean_diff'], 3)}, MAE {fmt_abs(lat['mae'], 3)}, RMSE / latent std {lat['relative_rmse']:.3f}. "
        f"Decoded alone, x0 minus reference latent: mean diff {fmt(dec['mean_diff'])}, MAE {fmt_abs(dec['mae'])} "
        f"(8-bit levels).",
        "",
        f"Averaged against last weights: {'measured' if result['last_weights']['available'] else 'not available'}"
        f" — {result['last_weights']['note']}.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help=f"validation split (default {DATA}; generated "
                        f"there with '{SYNTH_CMD.format(out=DATA)}' when absent)")
    parser.add_argument("--clips", type=int, default=12,
                        help="validation clips (default 12: the first 12 scenes' first light pairs)")
    parser.add_argument("--checkpoint", type=Path, default=WEIGHTS,
                        help="the model to measure (default: the bundled relumix-tiny)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"JSON output (default {OUT.relative_to(ROOT)})")
    args = parser.parse_args(argv)
    if args.clips < 1:
        parser.error("--clips must be at least 1")
    result = measure(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"\nwrote {args.out} in {result['seconds']['total']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
