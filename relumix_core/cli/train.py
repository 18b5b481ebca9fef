"""``relumix train``: train (or resume) as a config says; accelerate decides the devices, so it scales."""

from __future__ import annotations

import argparse

from .common import positive_int


def run(args: argparse.Namespace) -> int:
    from ..training import load_config, train

    config = load_config(args.config, args.set or [])
    if args.max_steps is not None:
        config.run.max_steps = args.max_steps
    if args.output_dir is not None:
        config.run.output_dir = args.output_dir
    out = train(config, show_progress=not args.quiet)
    print(f"Wrote {out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "train",
        help="train ReLumix or relumix-tiny from a config (resumes a stopped run; scales with accelerate launch)",
        description="Train as CONFIG says (a TOML file, or a built-in: relumix-svd, tiny-vae, tiny-unet). Running "
        "the same command again resumes from the newest checkpoint in run.output_dir. On several GPUs or nodes: "
        "accelerate launch -m relumix_core train CONFIG.",
    )
    parser.add_argument("config", help="TOML config file or built-in config name")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override a config value, e.g. --set run.max_steps=100 (repeatable)")
    parser.add_argument("--max-steps", type=positive_int, default=None, help="shortcut for --set run.max_steps=N")
    parser.add_argument("--output-dir", default=None, help="shortcut for --set run.output_dir=DIR")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
