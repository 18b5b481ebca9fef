"""``relumix info`` and ``relumix init-tiny``: look into a checkpoint, or make a tiny random one to try the tools."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_shape_options, disk_size, head_width_hint, shape_load_options


def run_info(args: argparse.Namespace) -> int:
    """Show what a checkpoint contains and how it would load, without keeping the weights in memory."""
    from ..checkpoints.loading import load_relumix

    with head_width_hint():
        _, report = load_relumix(args.ckpt, device="meta", **shape_load_options(args))
    print(report.summary())
    return 0


def run_init_tiny(args: argparse.Namespace) -> int:
    """A tiny random model to try the tools on without downloading the real checkpoint."""
    from ..checkpoints.single_file import save_single_file
    from ..models.tiny import random_tiny_model

    out = Path(args.out).expanduser()
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} already exists; choose another name or pass --overwrite")
    model = random_tiny_model(args.seed)
    save_single_file(model, out, overwrite=args.overwrite)
    params = model.num_parameters()
    print(
        f"Wrote {out} ({disk_size(out)}, {params:,} parameters): a tiny ReLumix with RANDOM weights "
        f"(seed {args.seed}). "
        "It has the real architecture but produces meaningless pictures; use it only to test the tools."
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    tiny = sub.add_parser(
        "init-tiny",
        help="write a tiny ReLumix with random weights (for testing the tools)",
        description="Write a tiny model with the ReLumix architecture and RANDOM weights in the single-file format.",
    )
    tiny.add_argument("out", help="file to write (.safetensors)")
    tiny.add_argument("--seed", type=int, default=0, help="weights seed (default 0)")
    tiny.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    tiny.set_defaults(func=run_init_tiny)

    info = sub.add_parser(
        "info", help="print the load report of a checkpoint", description="Print what CKPT holds and how it loads."
    )
    info.add_argument("ckpt", help="checkpoint file or folder")
    add_shape_options(info)
    info.set_defaults(func=run_info)
