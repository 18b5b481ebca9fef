"""``relumix convert``: any supported checkpoint to the project's single file (or a diffusers-style folder)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from .common import add_shape_options, disk_size, head_width_hint, shape_load_options

DTYPE_CHOICES = ("fp16", "bf16", "fp32")


def is_folder_target(dst: str) -> bool:
    """A destination ending in '/' or naming an existing folder gets the folder format."""
    return dst.endswith(("/", os.sep)) or Path(dst).is_dir()


def run(args: argparse.Namespace) -> int:
    """Convert once, so that every later load needs no guessing."""
    from ..checkpoints.loading import convert_checkpoint

    dst = Path(args.dst).expanduser()
    folder = is_folder_target(args.dst)
    with head_width_hint():
        report = convert_checkpoint(
            args.src, str(dst) + (os.sep if folder else ""), dtype=args.dtype, overwrite=args.overwrite,
            detail_sigma=args.detail_sigma, default_steps=args.default_steps,
            colour_anchor=args.colour_anchor, detail_sigma_far=args.detail_sigma_far,
            window_strategy=args.window_strategy, reference_pin=args.reference_pin, **shape_load_options(args),
        )
    print(report.summary())
    kind = "diffusers-style folder" if folder else "single file"
    print(f"Wrote {dst} ({kind}, {args.dtype or 'dtype as stored'}, {disk_size(dst)})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "convert",
        help="convert a checkpoint (official .pth/.safetensors, own format, folder) to the single-file format",
        description="Convert SRC to the ReLumix single-file .safetensors; a DST ending in '/' (or an existing "
        "folder) gets a diffusers-style folder instead. Prints the load report.",
    )
    parser.add_argument("src", help="checkpoint to read (e.g. relumix.pth)")
    parser.add_argument("dst", help="file to write (.safetensors), or a folder ending in '/'")
    parser.add_argument("--dtype", choices=DTYPE_CHOICES, default=None, help="cast floating-point weights")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing DST")
    parser.add_argument("--detail-sigma", type=float, default=None, metavar="SIGMA",
                        help="record the detail-transfer radius the model should run with (default: keep the "
                             "source's; 0 = off)")
    parser.add_argument("--default-steps", type=int, default=None, metavar="N",
                        help="record the sampling steps the model should run with by default (default: keep the "
                             "source's; 25 for ReLumix)")
    parser.add_argument("--colour-anchor", action=argparse.BooleanOptionalAction, default=None,
                        help="record whether runs apply the colour anchor by default (default: keep the source's; "
                             "off for ReLumix)")
    parser.add_argument("--detail-sigma-far", type=float, default=None, metavar="SIGMA",
                        help="record the detail-transfer radius far from every keyframe (default: keep the "
                             "source's; 0 = the --detail-sigma everywhere)")
    parser.add_argument("--window-strategy", choices=("anchor", "chain"), default=None,
                        help="record how runs join windows on long clips by default (default: keep the source's; "
                             "chain for ReLumix)")
    parser.add_argument("--reference-pin", action=argparse.BooleanOptionalAction, default=None,
                        help="record whether runs pin what a keyframe showed to its carried light by default "
                             "(default: keep the source's; off for ReLumix)")
    add_shape_options(parser)
    parser.set_defaults(func=run)
