"""``relumix eval``: score ReLumix and simple baselines on paired test clips and write a report folder.

torch is imported only when the command runs, so ``relumix --help`` stays instant. The report folder is checked
before anything is loaded, so a refused overwrite costs nothing.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from ..errors import ReLumixError
from .common import (
    DEVICE_CHOICES,
    add_precision_arguments,
    check_checkpoint_exists,
    device_and_precision,
    precision_load_options,
)

#: Frames per clip without a model (the tiny model's and a quick run's length); with one, its trained length.
DEFAULT_FRAMES = 8


def _size(text: str) -> int | tuple[int, int]:
    """``64`` (square) or ``HxW``; multiples of 8 are checked when the clips load."""
    try:
        if "x" in text.lower():
            h, w = (int(v) for v in text.lower().split("x"))
            return (h, w)
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size like 256 or HxW like 256x448, got {text!r}") from None


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", help="paired test clips: DATA/<map>/<scene>/<light>/<frame>.png (as 'relumix synth')")
    parser.add_argument("-o", "--out", required=True, help="report folder (report.json, summary.md, figures)")
    parser.add_argument("-c", "--checkpoint", default=None,
                        help="ReLumix checkpoint to evaluate; without it only the baselines run")
    parser.add_argument("--frames", type=int, default=None,
                        help=f"frames per clip (default: the model's trained length, or {DEFAULT_FRAMES} without one)")
    parser.add_argument("--size", type=_size, default=None,
                        help="resize frames to S x S or HxW, multiples of 8 (default: the files' size)")
    parser.add_argument("--pairs-per-scene", type=int, default=2,
                        help="ordered (source, target) light pairs per scene, drawn by --seed (default 2)")
    parser.add_argument("--max-clips", type=int, default=None, help="at most this many clips (default: all)")
    parser.add_argument("--steps", type=int, default=None,
                        help="sampling steps (default: the model's own; 25 for ReLumix)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed for the pair choice, the model noise and --reference-perturb noise (default 0)")
    parser.add_argument("--keyframes", type=int, default=1, metavar="N",
                        help="give every method N ground-truth frames as references: 1 = frame 0 (default); N >= 2: "
                             "the first, the last and evenly spaced ones between. Means leave them all out")
    parser.add_argument("--reference-perturb", action="append", default=None, metavar="KIND:L1,L2,...",
                        help="also score every method with perturbed references (the ground truth stays clean), at "
                             "each level plus the clean run: noise:SIGMA (values in [0,1]), color:L (R x (1+L), "
                             "B x (1-L)), blur:SIGMA (pixels), shift:PIXELS (right and down), jpeg:QUALITY (1..100). "
                             "Repeat for several kinds, e.g. --reference-perturb noise:0.02,0.05 "
                             "--reference-perturb jpeg:50,10")
    parser.add_argument("--min-guidance", type=float, default=None,
                        help="guidance at the first frame (default: the relight default)")
    parser.add_argument("--max-guidance", type=float, default=None,
                        help="guidance at the last frame (default: the relight default)")
    parser.add_argument("--window", type=int, default=None, help="frames per window (default: the trained length)")
    parser.add_argument("--overlap", type=int, default=None, help="frames shared by windows (default window/3)")
    parser.add_argument("--strategy", choices=("anchor", "chain"), default=None,
                        help="long clips: every window sees the reference (anchor) or the last relit frame (chain); "
                             "default: the model's own")
    parser.add_argument("--detail", type=float, default=None, metavar="SIGMA",
                        help="detail transfer radius in processing pixels, 0 = off (default: the model's own)")
    parser.add_argument("--detail-far", type=float, default=None, metavar="SIGMA",
                        help="detail transfer radius far from every keyframe (default: the model's own; 0 = --detail "
                             "everywhere)")
    parser.add_argument("--colour-anchor", action=argparse.BooleanOptionalAction, default=None,
                        help="apply the colour anchor to the model's output (default: the model's own, on for "
                             "relumix-tiny)")
    parser.add_argument("--reference-pin", action=argparse.BooleanOptionalAction, default=None,
                        help="apply the reference pin to the model's output (default: the model's own, on for "
                             "relumix-tiny)")
    parser.add_argument("--oracle", action="store_true",
                        help="also score the ground truth through the model's VAE: the ceiling any relighting "
                             "by this model can reach (needs -c)")
    add_precision_arguments(parser)
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    parser.add_argument("--force", action="store_true", help="replace an existing report in OUT")


def _check_counts(args: argparse.Namespace) -> None:
    for flag, value in (("--frames", args.frames), ("--pairs-per-scene", args.pairs_per_scene),
                        ("--max-clips", args.max_clips), ("--keyframes", args.keyframes)):
        if value is not None and value < 1:
            raise ReLumixError(f"{flag} must be at least 1, got {value}")
    if args.frames is not None and args.keyframes > args.frames:
        raise ReLumixError(f"--keyframes {args.keyframes} needs clips of at least {args.keyframes} frames, got "
                           f"--frames {args.frames}")


def _model_methods(args: argparse.Namespace) -> tuple[dict[str, Any], Any, int]:
    """Load the checkpoint; the relumix method (and with --oracle the first-stage ceiling), the resolved settings
    and the model's trained clip length."""
    from ..checkpoints.loading import load_relumix
    from ..evaluation import MODEL_METHOD, first_stage_oracle, relumix_method
    from ..pipeline.pipeline import ReLumixPipeline
    from ..pipeline.settings import RelightSettings

    chosen = {"strategy": args.strategy, "min_guidance": args.min_guidance, "max_guidance": args.max_guidance}
    defaults_otherwise = {key: value for key, value in chosen.items() if value is not None}
    settings = RelightSettings(num_steps=args.steps, window=args.window, overlap=args.overlap, size=None,
                               detail_sigma=args.detail, detail_sigma_far=args.detail_far,
                               colour_anchor=args.colour_anchor, reference_pin=args.reference_pin,
                               **defaults_otherwise)
    settings.check()  # bad options fail before the model loads
    check_checkpoint_exists(args.checkpoint)
    device, precision = device_and_precision(args.device, args.dtype, args.fp8_compute)
    model, report = load_relumix(args.checkpoint, **precision_load_options(precision, device))
    for note in report.notes:
        print(f"note: {note}")
    pipe = ReLumixPipeline(model, device=device)
    settings = settings.resolved(model)
    print(f"model: {args.checkpoint} on {device}, {precision.name}, {settings.num_steps} steps, "
          f"detail transfer {settings.detail_sigma or 'off'} (far {settings.detail_sigma_far or 'the same'}), "
          f"{settings.strategy} windows, "
          f"colour anchor {'on' if settings.colour_anchor else 'off'}, "
          f"reference pin {'on' if settings.reference_pin else 'off'}, trained on {model.config.trained_frames} frames")
    methods = {MODEL_METHOD: relumix_method(pipe, settings, seed=args.seed)}
    if args.oracle:
        methods["first_stage_oracle"] = first_stage_oracle(model, settings.decode_chunk_size)
    return methods, settings, model.config.trained_frames


def _sweep(report: dict, clips: list, methods: dict[str, Any], perturbations: dict[str, list[float]],
           seed: int) -> dict:
    """The perturbation table, with a progress bar; the model alone of ``methods`` (the oracle ignores the
    reference) next to the baselines."""
    from tqdm import tqdm

    from ..evaluation import MODEL_METHOD, perturbation_sweep

    model = {name: fn for name, fn in methods.items() if name == MODEL_METHOD}
    total = sum(len(levels) - 1 for levels in perturbations.values()) * len(clips)
    with tqdm(total=total, desc="perturbed references", unit="clip", dynamic_ncols=True) as bar:

        def progress(done: int, _total: int) -> None:
            bar.update(done - bar.n)

        return perturbation_sweep(report, clips, model, perturbations, seed=seed, progress=progress)


def run_eval(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..data.dataset import index_scenes
    from ..evaluation import check_report_dir, evaluate, format_table, load_test_clips, write_report
    from ..evaluation.evaluate import window_seams
    from ..evaluation.perturb import parse_perturb_specs

    start = time.perf_counter()
    out = check_report_dir(args.out, overwrite=args.force)  # fail now, not after the work
    _check_counts(args)
    perturbations = parse_perturb_specs(args.reference_perturb)
    root = Path(args.data).expanduser()
    index_scenes(root, args.frames or 1)  # a wrong data folder fails before any model loads
    methods = {}
    frames = args.frames or DEFAULT_FRAMES
    settings = None
    if args.checkpoint:
        methods, settings, trained = _model_methods(args)
        frames = args.frames or trained
    else:
        if args.oracle:
            raise ReLumixError("--oracle needs a checkpoint (-c): it scores the ground truth through its VAE")
        print("no checkpoint (-c): evaluating the baselines only")
    try:
        clips = load_test_clips(root, frames, size=args.size, pairs_per_scene=args.pairs_per_scene,
                                max_clips=args.max_clips, seed=args.seed, keyframes=args.keyframes)
    except ReLumixError as err:
        if args.frames is None and "fewer than" in str(err):
            raise ReLumixError(f"{err} (clips default to {frames} frames; pass --frames N for shorter ones)") from None
        raise
    h, w = clips[0].target.shape[-2:]
    print(f"{len(clips)} clips of {frames} frames at {w}x{h} from {root}, references at frames "
          f"{clips[0].reference_indices}")
    outputs: dict = {}
    with tqdm(total=len(clips), desc="evaluating", unit="clip", dynamic_ncols=True) as bar:

        def progress(done: int, total: int) -> None:
            bar.update(done - bar.n)

        seams = window_seams(settings.window, settings.overlap, settings.strategy) if settings else None
        report = evaluate(clips, methods, progress=progress, outputs=outputs, seams=seams)
    if perturbations:
        report["perturbations"] = _sweep(report, clips, methods, perturbations, args.seed)
    report["config"] = {
        "data": str(root), "checkpoint": args.checkpoint, "frames": frames, "size": args.size,
        "pairs_per_scene": args.pairs_per_scene, "max_clips": args.max_clips, "seed": args.seed,
        "keyframes": args.keyframes, "reference_perturb": list(args.reference_perturb or []),
        **({"steps": settings.num_steps, "window": settings.window, "overlap": settings.overlap,
            "strategy": settings.strategy, "min_guidance": settings.min_guidance,
            "max_guidance": settings.max_guidance, "detail_sigma": settings.detail_sigma,
            "detail_sigma_far": settings.detail_sigma_far,
            "colour_anchor": settings.colour_anchor, "reference_pin": settings.reference_pin} if settings else {}),
    }
    path = write_report(report, clips, outputs, out, overwrite=args.force)
    print(format_table(report))
    print(f"(psnr/ssim means leave out the reference frames {clips[0].reference_indices}; "
          f"{report['notes']['temporal_lpips']})")
    print(f"wrote {path} and figures in {out} in {time.perf_counter() - start:.1f}s")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "eval",
        help="score a model and simple baselines on a paired test set (PSNR, SSIM, temporal error; JSON + plots)",
        description="Relight held-out clips of a paired dataset (ROOT/<map>/<scene>/<light>/<frame>.png) from their "
        "ground-truth first frame (or --keyframes N frames) and compare with the ground truth, next to simple "
        "baselines (input unchanged, reference repeated, global colour transfer, ratio propagation). Writes "
        "report.json, summary.md and PNG plots, including PSNR against the distance to the nearest reference and, "
        "with --reference-perturb, PSNR against reference perturbation levels. Without -c only the baselines are "
        "scored.",
    )
    add_eval_arguments(parser)
    parser.set_defaults(func=run_eval)
