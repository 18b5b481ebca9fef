"""The ``relumix`` command: convert checkpoints, inspect them, make a tiny random model, run the demo.

torch and diffusers are imported inside the commands, so ``relumix --help`` answers at once. Mistakes in the input
(a wrong file, an existing destination, a bad option) end with one ``error: ...`` line and exit status 2, not a
traceback; set ``RELUMIX_DEBUG=1`` to see the traceback anyway.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import ReLumixError
from .relight import add_relight_arguments

#: Exit status for user errors (as argparse uses for usage errors) and for Ctrl-C (128 + SIGINT).
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
DTYPE_CHOICES = ("fp16", "bf16", "fp32")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _add_shape_options(parser: argparse.ArgumentParser) -> None:
    """Head widths cannot be read from weight shapes; official-layout files need them (the defaults fit ReLumix)."""
    parser.add_argument(
        "--head-channels",
        type=_positive_int,
        default=None,
        metavar="N",
        help="UNet attention head width for official-layout files (default 64, as the authors use)",
    )
    parser.add_argument(
        "--clip-head-width",
        type=_positive_int,
        default=None,
        metavar="N",
        help="CLIP tower head width for official-layout files (default 80, ViT-H/14)",
    )


def _load_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if args.head_channels is not None:
        options["num_head_channels"] = args.head_channels
    if args.clip_head_width is not None:
        options["clip_head_width"] = args.clip_head_width
    return options


@contextmanager
def _head_width_hint() -> Iterator[None]:
    """A head width that does not divide the layer widths is the usual sign of a model smaller than ReLumix."""
    try:
        yield
    except ValueError as err:
        if "head" not in str(err):
            raise
        raise ReLumixError(
            f"{err} (head widths are not stored in official checkpoints: set --head-channels / --clip-head-width)"
        ) from None


def _is_folder_target(dst: str) -> bool:
    return dst.endswith(("/", os.sep)) or Path(dst).is_dir()


def _size(path: Path) -> str:
    total = path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return f"{total / 2**20:.1f} MiB"


# -------------------------------------------------------------------------------------------------- commands


def cmd_convert(args: argparse.Namespace) -> int:
    """Any supported checkpoint -> the project's single file (or a folder): loading later needs no guessing."""
    from ..checkpoints.loading import convert_checkpoint

    dst = Path(args.dst).expanduser()
    folder = _is_folder_target(args.dst)
    with _head_width_hint():
        report = convert_checkpoint(
            args.src, str(dst) + (os.sep if folder else ""), dtype=args.dtype, overwrite=args.overwrite,
            detail_sigma=args.detail_sigma, default_steps=args.default_steps, **_load_options(args),
        )
    print(report.summary())
    kind = "diffusers-style folder" if folder else "single file"
    print(f"Wrote {dst} ({kind}, {args.dtype or 'dtype as stored'}, {_size(dst)})")
    return 0


def cmd_init_tiny(args: argparse.Namespace) -> int:
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
        f"Wrote {out} ({_size(out)}, {params:,} parameters): a tiny ReLumix with RANDOM weights (seed {args.seed}). "
        "It has the real architecture but produces meaningless pictures; use it only to test the tools."
    )
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """Show what a checkpoint contains and how it would load, without keeping the weights in memory."""
    from ..checkpoints.loading import load_relumix

    with _head_width_hint():
        _, report = load_relumix(args.ckpt, device="meta", **_load_options(args))
    print(report.summary())
    return 0


def cmd_relight(args: argparse.Namespace) -> int:
    from .relight import run_relight

    return run_relight(args)


def cmd_demo(args: argparse.Namespace) -> int:
    """Hand over to relumix_core.cli.demo (own options); imported only here because it pulls in the whole pipeline."""
    import importlib

    try:
        demo = importlib.import_module(f"{__package__}.demo")
    except ModuleNotFoundError as err:
        if err.name != f"{__package__}.demo":
            raise  # the demo exists but one of its own imports is missing: show the real cause
        print(
            "error: 'relumix demo' is not available in this installation (relumix_core.cli.demo is missing)",
            file=sys.stderr,
        )
        return EXIT_USER_ERROR
    parser = argparse.ArgumentParser(prog="relumix demo", description=demo.__doc__)
    demo.add_demo_arguments(parser)
    try:
        demo_args = parser.parse_args(args.demo_args)
    except SystemExit as stop:
        return _exit_code(stop)
    return int(demo.run_demo(demo_args) or 0)


def cmd_synth(args: argparse.Namespace) -> int:
    """Synthetic paired clips (same motion, several lights) for training; numpy only, imported here."""
    import time

    from ..data.synth import write_dataset

    start = time.perf_counter()
    out = write_dataset(
        args.out, scenes=args.scenes, lights=args.lights, frames=args.frames, size=args.size, seed=args.seed,
        overwrite=args.force, stride=args.stride,
    )
    seconds = time.perf_counter() - start
    clips = args.scenes * args.lights
    print(f"Wrote {out}: {args.scenes} scenes x {args.lights} lights x {args.frames} frames of {args.size}x{args.size} "
          f"({clips} clips in {seconds:.1f} s, {clips / max(seconds, 1e-9) * 60:.0f} clips/min)")
    return 0


def cmd_relight_batch(args: argparse.Namespace) -> int:
    from .batch import run_batch

    return run_batch(args)


def cmd_eval(args: argparse.Namespace) -> int:
    from .eval import run_eval

    return run_eval(args)


def cmd_train(args: argparse.Namespace) -> int:
    """Train (or resume) as the config says; accelerate decides the devices, so `accelerate launch` scales it."""
    from ..training import load_config, train

    config = load_config(args.config, args.set or [])
    if args.max_steps is not None:
        config.run.max_steps = args.max_steps
    if args.output_dir is not None:
        config.run.output_dir = args.output_dir
    out = train(config, show_progress=not args.quiet)
    print(f"Wrote {out}")
    return 0


# -------------------------------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="relumix",
        description="ReLumix video relighting: relight videos, checkpoint tools and a demo.",
    )
    parser.add_argument("--version", action="version", version=f"relumix {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    convert = sub.add_parser(
        "convert",
        help="convert a checkpoint (official .pth/.safetensors, own format, folder) to the single-file format",
        description="Convert SRC to the ReLumix single-file .safetensors; a DST ending in '/' (or an existing "
        "folder) gets a diffusers-style folder instead. Prints the load report.",
    )
    convert.add_argument("src", help="checkpoint to read (e.g. relumix.pth)")
    convert.add_argument("dst", help="file to write (.safetensors), or a folder ending in '/'")
    convert.add_argument("--dtype", choices=DTYPE_CHOICES, default=None, help="cast floating-point weights")
    convert.add_argument("--overwrite", action="store_true", help="replace an existing DST")
    convert.add_argument("--detail-sigma", type=float, default=None, metavar="SIGMA",
                         help="record the detail-transfer radius the model should run with (default: keep the "
                              "source's; 0 = off)")
    convert.add_argument("--default-steps", type=int, default=None, metavar="N",
                         help="record the sampling steps the model should run with by default (default: keep the "
                              "source's; 25 for ReLumix)")
    _add_shape_options(convert)
    convert.set_defaults(func=cmd_convert)

    tiny = sub.add_parser(
        "init-tiny",
        help="write a tiny ReLumix with random weights (for testing the tools)",
        description="Write a tiny model with the ReLumix architecture and RANDOM weights in the single-file format.",
    )
    tiny.add_argument("out", help="file to write (.safetensors)")
    tiny.add_argument("--seed", type=int, default=0, help="weights seed (default 0)")
    tiny.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    tiny.set_defaults(func=cmd_init_tiny)

    info = sub.add_parser(
        "info", help="print the load report of a checkpoint", description="Print what CKPT holds and how it loads."
    )
    info.add_argument("ckpt", help="checkpoint file or folder")
    _add_shape_options(info)
    info.set_defaults(func=cmd_info)

    relight = sub.add_parser(
        "relight",
        help="relight a video from one relit frame",
        description="Relight VIDEO so that it carries the light of --reference, the relit version of frame "
        "--reference-index. Long videos are processed in windows at bounded memory.",
    )
    add_relight_arguments(relight)
    relight.set_defaults(func=cmd_relight)

    synth = sub.add_parser(
        "synth",
        help="write synthetic paired clips (same motion under several lights) for training",
        description="Render procedural 2.5D scenes with camera and object motion under several lights into "
        "OUT/map_NN/scene_NNNN/light_NN/NNNNN.png (25 scenes per map) plus OUT/meta.json. Deterministic by --seed.",
    )
    synth.add_argument("out", help="folder to create (must be empty or absent unless --force)")
    synth.add_argument("--scenes", type=int, default=10, help="number of scenes (default 10)")
    synth.add_argument("--lights", type=int, default=4, help="lights per scene, at least 2 (default 4)")
    synth.add_argument("--frames", type=int, default=14, help="frames per clip (default 14)")
    synth.add_argument("--size", type=int, default=64, help="frame width and height, a multiple of 8 (default 64)")
    synth.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    synth.add_argument("--stride", type=int, default=1, help="render every N-th frame of the motion (default 1)")
    synth.add_argument("--force", action="store_true", help="replace a non-empty OUT")
    synth.set_defaults(func=cmd_synth)

    from .batch import DESCRIPTION as BATCH_DESCRIPTION
    from .batch import add_batch_arguments

    batch = sub.add_parser(
        "relight-batch",
        help="relight many videos from a job list (split across processes with accelerate launch)",
        description=BATCH_DESCRIPTION,
    )
    add_batch_arguments(batch)
    batch.set_defaults(func=cmd_relight_batch)

    evaluate = sub.add_parser(
        "eval",
        help="score a model and simple baselines on a paired test set (PSNR, SSIM, temporal error; JSON + plots)",
        description="Relight held-out clips of a paired dataset (ROOT/<map>/<scene>/<light>/<frame>.png) from their "
        "ground-truth first frame and compare with the ground truth, next to simple baselines (input unchanged, "
        "reference repeated, global colour transfer, ratio propagation). Writes report.json, summary.md and PNG "
        "plots. Without -c only the baselines are scored.",
    )
    from .eval import add_eval_arguments

    add_eval_arguments(evaluate)
    evaluate.set_defaults(func=cmd_eval)

    train = sub.add_parser(
        "train",
        help="train ReLumix or relumix-tiny from a config (resumes a stopped run; scales with accelerate launch)",
        description="Train as CONFIG says (a TOML file, or a built-in: relumix-svd, tiny-vae, tiny-unet). Running "
        "the same command again resumes from the newest checkpoint in run.output_dir. On several GPUs or nodes: "
        "accelerate launch -m relumix_core.cli.main train CONFIG.",
    )
    train.add_argument("config", help="TOML config file or built-in config name")
    train.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="override a config value, e.g. --set run.max_steps=100 (repeatable)")
    train.add_argument("--max-steps", type=_positive_int, default=None, help="shortcut for --set run.max_steps=N")
    train.add_argument("--output-dir", default=None, help="shortcut for --set run.output_dir=DIR")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(func=cmd_train)

    demo = sub.add_parser(
        "demo",
        help="relight a video (run 'relumix demo --help' for its options)",
        add_help=False,  # its options (and --help) belong to relumix_core.cli.demo
    )
    demo.set_defaults(func=cmd_demo, demo_args=[])
    return parser


def _exit_code(stop: SystemExit) -> int:
    code = stop.code
    if code is None:
        return 0
    return code if isinstance(code, int) else 1


def _one_line(err: BaseException) -> str:
    text = " ".join(part.strip() for part in str(err).splitlines() if part.strip())
    return text or type(err).__name__


def _run(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    debug = bool(os.environ.get("RELUMIX_DEBUG"))
    try:
        return func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ReLumixError, OSError, ValueError) as err:
        if debug:
            raise
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return EXIT_USER_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``relumix`` console script; returns the exit status."""
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
        if args.command == "demo":
            args.demo_args = extra
        elif extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as stop:
        return _exit_code(stop)
    return _run(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
