"""``relumix relight``: relight a video file from one relit frame (or several keyframes), with progress, at bounded
memory.

torch is imported only when the command runs, so ``relumix --help`` stays instant. The output is checked before any
work starts and written atomically at the end, so an interrupted or failed run leaves no file behind.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from ..errors import ReLumixError
from .common import (
    DEVICE_CHOICES,
    add_precision_arguments,
    check_checkpoint_exists,
    device_and_precision,
    precision_load_options,
)

#: Where the checkpoint is looked for when --checkpoint is not given.
CHECKPOINT_ENV = "RELUMIX_CHECKPOINT"


def _size(text: str) -> int | tuple[int, int] | str | None:
    """``trained`` (the model's training size), ``512`` (about 512x512 pixels at the input's aspect), ``HxW``, or
    ``native`` (None: the input size)."""
    if text == "native":
        return None
    if text == "trained":
        return "trained"
    try:
        if "x" in text:
            h, w = (int(v) for v in text.lower().split("x"))
            return (h, w)
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number like 512, HxW like 384x704, 'trained' or 'native'; got {text!r}"
        ) from None


def add_relight_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", help="input video: .mp4/.webm/.mov/.gif, a folder of images or a pattern (%%05d.png)")
    parser.add_argument("--reference", "-r", required=True, action="append",
                        help="the relit frame (any image); repeat it, each with its --reference-index, for several "
                             "keyframes")
    parser.add_argument("-o", "--out", required=True,
                        help="output: .mp4, .webm, .gif, a folder ending in '/' or a pattern like out/%%05d.png")
    parser.add_argument("--reference-index", "-k", type=int, action="append", default=None,
                        help="which input frame the reference is a relit version of (default 0); repeatable, paired "
                             "with the --reference options in order")
    add_model_arguments(parser)
    parser.add_argument("--force", action="store_true", help="overwrite an existing output")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The checkpoint, sampling, size and device options, shared with ``relumix relight-batch``."""
    parser.add_argument("--checkpoint", "-c", help=f"ReLumix checkpoint (default: ${CHECKPOINT_ENV})")
    parser.add_argument("--steps", type=int, default=None,
                        help="sampling steps (default: the model's own; 25 for ReLumix)")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    parser.add_argument("--window", type=int, default=None, help="frames per window (default: the trained length)")
    parser.add_argument("--overlap", type=int, default=None, help="frames shared by windows (default window/3)")
    parser.add_argument("--strategy", choices=("anchor", "chain"), default=None,
                        help="long videos: every window sees the reference (anchor) or the last relit frame (chain); "
                             "default: the model's own (chain for ReLumix, anchor for relumix-tiny)")
    parser.add_argument("--min-guidance", type=float, default=1.0, help="guidance at the first frame (default 1.0)")
    parser.add_argument("--max-guidance", type=float, default=1.5, help="guidance at the last frame (default 1.5)")
    parser.add_argument("--fps-id", type=float, default=15, help="fps conditioning (default 15, as the authors)")
    parser.add_argument("--cond-aug", type=float, default=0.02, help="conditioning noise (default 0.02)")
    parser.add_argument("--reference-range", choices=("official", "training"), default="official",
                        help="reference value range seen by the embedders (default official: [0,1])")
    parser.add_argument("--size", type=_size, default="trained",
                        help="processing size: trained (the model's: 512 for ReLumix, 64 for relumix-tiny; default), "
                        "512 (about 512x512 at the input's aspect), HxW, or native")
    parser.add_argument("--fit", choices=("resize", "crop", "pad"), default="resize",
                        help="how frames meet the processing size (default resize)")
    parser.add_argument("--detail", type=float, default=None, metavar="SIGMA",
                        help="detail transfer radius in processing pixels, 0 = off (default: the model's own; "
                             "0 for ReLumix)")
    parser.add_argument("--detail-far", type=float, default=None, metavar="SIGMA",
                        help="detail transfer radius far from every keyframe, past the first window (default: the "
                             "model's own; 0 = --detail everywhere)")
    parser.add_argument("--colour-anchor", action=argparse.BooleanOptionalAction, default=None,
                        help="pin the output's colours to the reference at each keyframe (a global colour map and a "
                             "local gain that fades with distance; default: the model's own, on for relumix-tiny)")
    parser.add_argument("--reference-pin", action=argparse.BooleanOptionalAction, default=None,
                        help="where a frame shows what a keyframe showed (the camera's motion tracked), use the "
                             "keyframe's relit light carried along (default: the model's own, on for relumix-tiny)")
    parser.add_argument("--reference-fit", choices=("auto", "resize", "crop", "pad"), default="auto",
                        help="how a reference of another size is conformed (default auto)")
    parser.add_argument("--decode-chunk-size", type=int, default=None,
                        help="frames per VAE decode; changes the pictures slightly (default: the window, 14 for the "
                        "authors' model, as they do)")
    parser.add_argument("--sequential-branches", action="store_true",
                        help="run the guidance branches one after the other (less memory, slower)")
    parser.add_argument("--offload", action="store_true", help="keep each component on the CPU except while it runs")
    parser.add_argument("--vae-tile", type=int, default=None, metavar="PIXELS",
                        help="VAE encode/decode in overlapping tiles of this side (default: whole frames)")
    parser.add_argument("--memory", choices=("auto", "as-set"), default="auto",
                        help="auto (default): on a GPU, when the run as set would not fit its free memory, switch "
                             "to sequential branches, smaller decode chunks, VAE tiles or a shorter window, the "
                             "fastest that fit (one line says what); as-set: exactly these options")
    add_precision_arguments(parser)
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    parser.add_argument("--fps", type=float, default=None, help="output frame rate (default: the input's)")


def require_checkpoint(args: argparse.Namespace) -> str:
    """--checkpoint or $RELUMIX_CHECKPOINT; missing both is the first thing to tell the user."""
    checkpoint = args.checkpoint or os.environ.get(CHECKPOINT_ENV)
    if not checkpoint:
        raise ReLumixError(
            f"no checkpoint: pass --checkpoint PATH or set {CHECKPOINT_ENV} (the authors' relumix.pth from "
            "huggingface.co/lez/relumix, or a file made by 'relumix convert' / 'relumix init-tiny')"
        )
    return checkpoint


def settings_from_args(args: argparse.Namespace) -> Any:
    """The :class:`RelightSettings` of the command-line options, checked so bad options fail before the model loads."""
    from ..pipeline.settings import RelightSettings

    settings = RelightSettings(
        num_steps=args.steps, min_guidance=args.min_guidance, max_guidance=args.max_guidance, fps_id=args.fps_id,
        cond_aug=args.cond_aug, reference_range=args.reference_range, decode_chunk_size=args.decode_chunk_size,
        batch_branches=not args.sequential_branches, window=args.window, overlap=args.overlap,
        strategy=args.strategy, size=args.size, fit=args.fit, reference_fit=args.reference_fit,
        detail_sigma=args.detail, detail_sigma_far=args.detail_far, vae_tile=args.vae_tile,
        colour_anchor=args.colour_anchor, reference_pin=args.reference_pin,
    )
    settings.check()
    return settings


def load_pipeline(
    checkpoint: str, args: argparse.Namespace, device: Any, precision: Any, quiet: bool = False
) -> Any:
    """Load the model once (on the CPU with --offload or fp8 storage) and wrap it in a :class:`ReLumixPipeline`.

    ``precision`` is a :class:`~relumix_core.models.precision.Precision`. ``quiet`` drops the load notes, which
    every process of a batch would otherwise print alike.
    """
    from ..checkpoints.loading import load_relumix
    from ..pipeline.pipeline import ReLumixPipeline

    model, report = load_relumix(checkpoint, **precision_load_options(precision, device, args.offload))
    for note in [] if quiet else report.notes:
        print(f"note: {note}")
    return ReLumixPipeline(model, device=device, offload=args.offload)


def memory_settings(pipe: Any, shape: tuple[int, ...], settings: Any, args: argparse.Namespace) -> Any:
    """With ``--memory auto`` the settings that fit the GPU for frames of ``shape`` [T,H,W,C], said in one line."""
    if args.memory != "auto":
        return settings
    from ..memory.auto import auto_settings
    from ..models.precision import dtype_name, is_storage_dtype

    stored = [p.dtype for p in pipe.model.component("unet").parameters() if is_storage_dtype(p.dtype)]
    chosen, line = auto_settings(pipe, shape[0], shape[1], shape[2], settings,
                                 dtype_name(stored[0] if stored else pipe.dtype))
    print(line)
    return chosen


def keyframe_args(args: argparse.Namespace) -> list[tuple[str, int]]:
    """(reference file, frame) pairs of the repeated --reference / --reference-index options, in the given order:
    one --reference alone means frame 0; otherwise the counts must match."""
    references: list[str] = args.reference
    indices: list[int] | None = args.reference_index
    if indices is None and len(references) == 1:
        indices = [0]
    if indices is None or len(indices) != len(references):
        given = len(indices or [])
        raise ReLumixError(f"{len(references)} --reference but {given} --reference-index; give one --reference-index "
                           "per --reference (they are paired in order)")
    return list(zip(references, indices, strict=True))


def check_keyframe_frames(pairs: list[tuple[str, int]], video: str, num_frames: int) -> None:
    """Every --reference-index inside the clip and none twice, before the model loads."""
    seen: set[int] = set()
    for _, k in pairs:
        if not 0 <= k < num_frames:
            raise ReLumixError(f"--reference-index {k} is outside {video}, which has {num_frames} frames "
                               f"(use 0..{num_frames - 1})")
        if k in seen:
            raise ReLumixError(f"--reference-index {k} is given twice; give each keyframe once")
        seen.add(k)


def run_relight(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..media.video_io import check_output, read_image, read_video, write_video

    start = time.perf_counter()
    checkpoint = require_checkpoint(args)
    pairs = keyframe_args(args)
    check_output(args.out, overwrite=args.force)  # fail now, not after the work
    check_checkpoint_exists(checkpoint)
    frames, fps = read_video(args.video)
    references = [read_image(path) for path, _ in pairs]
    settings = settings_from_args(args)  # bad options fail before the model loads
    check_keyframe_frames(pairs, args.video, frames.shape[0])
    device, precision = device_and_precision(args.device, args.dtype, args.fp8_compute)
    pipe = load_pipeline(checkpoint, args, device, precision)
    settings = memory_settings(pipe, frames.shape, settings, args)
    print(f"relighting {frames.shape[0]} frames of {frames.shape[2]}x{frames.shape[1]} from "
          + ", ".join(f"{path} (reference = frame {k})" for path, k in pairs) + f" on {device}, {precision.name}")
    if len(pairs) == 1:
        reference, index = references[0], pairs[0][1]
    else:
        reference, index = references, [k for _, k in pairs]
    with tqdm(desc="relighting", unit="step", dynamic_ncols=True) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        relit = pipe.relight(frames, reference, index, settings, seed=args.seed, progress=progress,
                             output_type="np")
    written = write_video(args.out, relit, args.fps or fps, overwrite=args.force)
    print(f"wrote {written} ({relit.shape[0]} frames, {relit.shape[2]}x{relit.shape[1]}) "
          f"in {time.perf_counter() - start:.1f}s")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "relight",
        help="relight a video from one relit frame (or several keyframes)",
        description="Relight VIDEO so that it carries the light of --reference, the relit version of frame "
        "--reference-index. Several keyframes: repeat --reference and --reference-index (paired in order); each "
        "keyframe's light propagates both ways and neighbouring keyframes are cross-faded where they meet. Long "
        "videos are processed in windows at bounded memory.",
    )
    add_relight_arguments(parser)
    parser.set_defaults(func=run_relight)
