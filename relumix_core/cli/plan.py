"""``relumix plan``: will a run fit my GPU, and how much compute is it? Answered without a GPU or the weights.

The run's real code path is traced on torch's meta device (:mod:`relumix_core.memory`): the same settings as
``relumix relight``, the full-size architecture (or a checkpoint's), no weights read. ``--vram`` searches the memory
switches for the fastest combination that fits. The JSON field names are read by other tools: keep them stable.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from .common import positive_int

PRECISIONS = ("fp16", "bf16", "fp32", "fp8", "fp8_e4m3fn", "fp8_e5m2")
GIB = 2**30


def plan_size(text: str) -> tuple[int, int]:
    """``512`` (square) or ``HxW``."""
    try:
        if "x" in text.lower():
            h, w = (int(v) for v in text.lower().split("x"))
        else:
            h = w = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size like 512 or HxW like 576x1024, got {text!r}") from None
    if h < 1 or w < 1:
        raise argparse.ArgumentTypeError(f"sides must be positive, got {text!r}")
    return h, w


def positive_gb(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of GB like 24, got {text!r}") from None
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"--vram must be a positive number of GB, got {text}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {value}")
    return value


def _model_config(args: argparse.Namespace) -> tuple[Any, str]:
    """The config to plan for, and its name in the report."""
    if args.checkpoint:
        from ..checkpoints.loading import load_relumix
        from .common import check_checkpoint_exists

        check_checkpoint_exists(args.checkpoint)
        model, _ = load_relumix(args.checkpoint, device="meta")
        return model.config, args.checkpoint
    if args.architecture == "tiny":
        from ..models.tiny import relumix_tiny_config

        return relumix_tiny_config(), "tiny"
    from ..models.full import builtin_full_config, share_identical_copies

    return share_identical_copies(builtin_full_config()), "full"


def _rounded_size(size: tuple[int, int], multiple: int, notes: list[str]) -> tuple[int, int]:
    """Sides as the nearest multiples of the model's ``multiple`` (at least one), with a note: the size that
    ``relumix relight --size HxW`` names as the nearest valid one."""
    rounded = tuple(max(multiple, round(side / multiple) * multiple) for side in size)
    if rounded != size:
        notes.append(f"size {size[0]}x{size[1]} rounded to {rounded[0]}x{rounded[1]} (multiples of {multiple}, "
                     "as the model needs)")
    return rounded  # type: ignore[return-value]


def run(args: argparse.Namespace) -> int:
    from ..memory.search import Candidate, search_budget
    from ..memory.simulate import simulate
    from ..pipeline.settings import RelightSettings

    config, name = _model_config(args)
    notes: list[str] = []
    height, width = _rounded_size(args.size, config.size_multiple, notes)
    settings = RelightSettings(
        num_steps=args.steps, window=args.window, overlap=args.overlap, strategy=args.strategy,
        batch_branches=not args.sequential_branches, decode_chunk_size=args.decode_chunk_size,
        vae_tile=args.vae_tile,
    )
    settings.check()

    def plan_for(frames: int, candidate: Candidate, attention: str = args.attention) -> Any:
        return simulate(config, frames, height, width, candidate.settings, candidate.precision, candidate.offload,
                        attention, name)  # type: ignore[arg-type]

    chosen = Candidate(settings, args.precision, args.offload)
    if args.vram is not None:
        window = settings.window or config.trained_frames
        chosen, plan, _ = search_budget(lambda frames, c: plan_for(frames, c), chosen, args.frames, window,
                                        int(args.vram * GIB), max(height, width), notes=notes)
    else:
        plan = plan_for(args.frames, chosen)
    plan.notes.extend(notes)
    report = plan.to_dict()
    if args.attention == "fused":
        # efficient attention off adds the score matrices of one window's sampling step: one window shows them
        math_plan = plan_for(min(args.frames, plan.settings["window"]), chosen, "math")
        report["math_attention_peak_bytes"] = max(plan.peak_bytes, math_plan.peak_bytes)
    if args.vram is not None:
        fits = plan.peak_with_context_bytes <= args.vram * GIB
        report |= {"vram_bytes": int(args.vram * GIB), "fits": fits}
        report["notes"].append(("fits " if fits else "does not fit even ")
                               + ("as requested" if not chosen.changes else f"with {chosen.change}"))
    if args.json:
        json.dump(report, sys.stdout, indent=1)
        print()
    else:
        print(_table(report))
    return 0


def _table(report: dict[str, Any]) -> str:
    flops = report["flops"]
    lines = [f"{report['architecture']}: {report['frames']} frames at {report['height']}x{report['width']}, "
             f"{report['precision']}, attention {report['attention']} (simulated on the meta device)",
             f"{'stage':<10}{'peak GiB':>9}{'TFLOP':>10}"]
    lines += [f"{stage:<10}{peak / GIB:>9.2f}{report['stage_flops'].get(stage, 0) / 1e12:>10.1f}"
              for stage, peak in report["stages"].items()]
    s = report["settings"]
    peak, with_context = report["peak_bytes"] / GIB, report["peak_with_context_bytes"] / GIB
    if "math_attention_peak_bytes" in report:
        lines.append(f"with efficient attention off (math path): {report['math_attention_peak_bytes'] / GIB:.2f} GiB")
    lines.append(
        f"peak {peak:.2f} GiB allocated, {with_context:.2f} GiB with the CUDA context; weights resident at the peak "
        f"{report['weights_bytes'] / GIB:.2f} GiB; "
        f"{flops['total'] / 1e12:.0f} TFLOP per clip ({flops['ratio_to_floor']:.2f}x the UNet floor; "
        f"{flops['unet_step'] / 1e12:.1f} TFLOP per guided window step); window {s['window']}, overlap {s['overlap']}, "
        f"{s['strategy']}, {'batched' if s['batch_branches'] else 'sequential'} branches, decode chunk "
        f"{s['decode_chunk_size']}, {f'VAE tiles of {t} px' if (t := s.get('vae_tile')) else 'whole-frame VAE'}, "
        f"{'offload' if report['offload'] else 'all on GPU'}, {s['num_steps']} steps"
    )
    if "fits" in report:
        lines.append(f"{'fits' if report['fits'] else 'does NOT fit'} in {report['vram_bytes'] / GIB:.1f} GiB")
    lines += [f"note: {note}" for note in report["notes"]]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``relumix plan``."""
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", "-c", default=None, help="plan for this checkpoint's architecture")
    source.add_argument("--architecture", choices=("full", "tiny"), default="full",
                        help="the authors' full-size ReLumix (default) or relumix-tiny")
    parser.add_argument("--frames", type=positive_int, required=True, help="frames in the clip")
    parser.add_argument("--size", type=plan_size, default=(512, 512), help="processing size: 512 or HxW (default 512)")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp16",
                        help="weights: fp16 (default), bf16, fp32, or fp8 storage of the UNet (computed in fp16)")
    parser.add_argument("--steps", type=positive_int, default=None, help="sampling steps (default: the model's own)")
    parser.add_argument("--window", type=positive_int, default=None,
                        help="frames per window (default: the trained length)")
    parser.add_argument("--overlap", type=non_negative_int, default=None,
                        help="frames shared by windows (default window/3)")
    parser.add_argument("--strategy", choices=("anchor", "chain"), default=None,
                        help="long clips (default: the model's own)")
    parser.add_argument("--sequential-branches", action="store_true", help="guidance branches one after the other")
    parser.add_argument("--offload", action="store_true", help="each component on the GPU only during its stage")
    parser.add_argument("--decode-chunk-size", type=positive_int, default=None,
                        help="frames per VAE decode (default: the window)")
    parser.add_argument("--vae-tile", type=positive_int, default=None, metavar="PIXELS",
                        help="VAE encode/decode in overlapping tiles of this side (default: whole frames)")
    parser.add_argument("--attention", choices=("fused", "math"), default="fused",
                        help="fused (flash / memory-efficient, as on a GPU; default) or math (efficient attention off)")
    parser.add_argument("--vram", type=positive_gb, default=None, metavar="GB",
                        help="search the memory switches for the fastest settings that fit in GB")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "plan",
        help="GPU memory and compute of a run, simulated without a GPU or the weights (will it fit?)",
        description=__doc__.split("\n\n")[0],
    )
    add_arguments(parser)
    parser.set_defaults(func=run)
