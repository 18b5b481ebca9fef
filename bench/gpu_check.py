"""Measure the full-size ReLumix on a CUDA GPU next to the memory plan's prediction (``relumix plan``).

    python bench/gpu_check.py                       # about 5 minutes on an H100/H200; refuses to start without CUDA
    python bench/gpu_check.py --cases f14,f61 --steps 3
    python bench/gpu_check.py --predict-only        # no GPU: the simulator's side of the table only

The authors' architecture with random weights (no checkpoint needed), fp16, through the real pipeline. Per case:
``torch.cuda.max_memory_allocated`` / ``max_memory_reserved``, seconds per sampling step (the median over a few
sampled steps) and per clip (the measured run plus the steps it skipped at the median step time), and the simulator's
peak for the same settings, with the ratios measured / simulated. The reserved / allocated ratio is the allocator
factor that docs/memory.md asks for. Writes ``bench/results/gpu-check-<gpu>.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from relight_bench import machine_info, materialise_random_  # noqa: E402

from relumix_core.atomic import write_text  # noqa: E402
from relumix_core.memory.simulate import Plan, simulate  # noqa: E402
from relumix_core.models.full import build_on_meta, builtin_full_config, share_identical_copies  # noqa: E402
from relumix_core.pipeline.pipeline import ReLumixPipeline  # noqa: E402
from relumix_core.pipeline.settings import RelightSettings  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
GIB = 2**30


@dataclass(frozen=True)
class Case:
    name: str
    frames: int
    height: int
    width: int
    settings: RelightSettings
    offload: bool = False


CASES = {
    "f14": Case("f14", 14, 512, 512, RelightSettings()),
    "f14-sequential-offload": Case("f14-sequential-offload", 14, 512, 512, RelightSettings(batch_branches=False),
                                   offload=True),
    "f61": Case("f61", 61, 512, 512, RelightSettings()),
    "f300": Case("f300", 300, 512, 512, RelightSettings()),
    "f14-576x1024": Case("f14-576x1024", 14, 576, 1024, RelightSettings()),
}


def predict(config: Any, case: Case) -> Plan:
    """The simulator's plan for ``case``: fp16, fused attention, the case's settings (CPU only, no GPU needed)."""
    return simulate(config, case.frames, case.height, case.width, case.settings, "fp16", case.offload,
                    architecture="full")


def measure(model: Any, case: Case, steps: int) -> dict[str, Any]:
    """One run of ``case`` with ``steps`` sampling steps: peaks and times."""
    device = torch.device("cuda")
    if case.offload:
        model.to("cpu")
    pipe = ReLumixPipeline(model, device=device, offload=case.offload)
    settings = replace(case.settings, num_steps=steps, size=(case.height, case.width), fit="resize")
    video = np.zeros((case.frames, case.height, case.width, 3), np.uint8)
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    ticks: list[float] = []

    def progress(done: int, total: int) -> None:
        torch.cuda.synchronize()
        ticks.append(time.perf_counter())

    start = time.perf_counter()
    conditioning = pipe.encode(video, video[0], 0, settings, torch.Generator().manual_seed(0))
    torch.cuda.synchronize()
    ticks.append(time.perf_counter())
    result = pipe.generate(conditioning, settings, torch.Generator().manual_seed(0), progress=progress)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    windows = sum(len(d) for d in result.windows)
    per_step = float(np.median(np.diff(ticks)))  # one guided window evaluation; the median skips chain decodes
    default_steps = model.config.default_steps
    return {
        "max_memory_allocated_bytes": torch.cuda.max_memory_allocated(),
        "max_memory_reserved_bytes": torch.cuda.max_memory_reserved(),
        "seconds_per_window_step": round(per_step, 4),
        "window_evaluations_per_step": windows,
        "measured_steps": steps,
        "measured_seconds": round(seconds, 2),
        "seconds_per_clip_at_default_steps": round(seconds + per_step * windows * (default_steps - steps), 2),
    }


def compare(case: Case, plan: Plan, measured: dict[str, Any] | None) -> dict[str, Any]:
    """One row of the table: the prediction, the measurement when there is one, and their ratios."""
    row: dict[str, Any] = {
        "case": case.name, "frames": case.frames, "size": f"{case.height}x{case.width}", "offload": case.offload,
        "batch_branches": case.settings.batch_branches, "simulated_peak_bytes": plan.peak_bytes,
        "simulated_stages": plan.stages, "simulated_tflop_per_clip": round(plan.flops["total"] / 1e12, 1),
        "simulated_tflop_per_window_step": round(plan.flops["unet_step"] / 1e12, 2),
    }
    if measured:
        row |= measured
        row["allocated_over_simulated"] = round(measured["max_memory_allocated_bytes"] / plan.peak_bytes, 3)
        row["reserved_over_simulated"] = round(measured["max_memory_reserved_bytes"] / plan.peak_bytes, 3)
        row["reserved_over_allocated"] = round(measured["max_memory_reserved_bytes"]
                                               / measured["max_memory_allocated_bytes"], 3)
        row["achieved_tflops"] = round(plan.flops["unet_step"] / measured["seconds_per_window_step"] / 1e12, 1)
    return row


def _line(row: dict[str, Any]) -> str:
    text = f"{row['case']:<24} simulated {row['simulated_peak_bytes'] / GIB:6.2f} GB"
    if "max_memory_allocated_bytes" in row:
        text += (f", allocated {row['max_memory_allocated_bytes'] / GIB:6.2f} GB (x{row['allocated_over_simulated']}),"
                 f" reserved {row['max_memory_reserved_bytes'] / GIB:6.2f} GB (x{row['reserved_over_simulated']}),"
                 f" {row['seconds_per_window_step']} s per window step ({row['achieved_tflops']} TFLOP/s),"
                 f" {row['seconds_per_clip_at_default_steps']} s per clip")
    else:
        text += f", {row['simulated_tflop_per_clip']:,.0f} TFLOP per clip (prediction only)"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, from {', '.join(CASES)}")
    parser.add_argument("--steps", type=int, default=3, help="sampling steps measured per case (default 3)")
    parser.add_argument("--out", default=None, help="JSON file (default bench/results/gpu-check-<gpu>.json)")
    parser.add_argument("--predict-only", action="store_true",
                        help="no GPU needed: print the simulator's prediction per case and write nothing")
    args = parser.parse_args(argv)
    unknown = [c for c in args.cases.split(",") if c not in CASES]
    if unknown:
        print(f"error: unknown cases {unknown}; choose from {', '.join(CASES)}", file=sys.stderr)
        return 2
    if not args.predict_only and not torch.cuda.is_available():
        print("error: bench/gpu_check.py needs a CUDA GPU (torch.cuda.is_available() is False); run it on one, "
              "or pass --predict-only for the simulator's side", file=sys.stderr)
        return 2
    if args.steps < 2:
        print("error: --steps must be at least 2 (the step time is a median of step intervals)", file=sys.stderr)
        return 2
    started = time.perf_counter()
    config = share_identical_copies(builtin_full_config())
    model = None
    if not args.predict_only:
        model = build_on_meta(config)
        materialise_random_(model, torch.device("cuda"), torch.float16)
        measure(model, CASES["f14"], 2)  # warm-up: CUDA kernels, cuBLAS handles; not recorded
    rows = []
    for name in args.cases.split(","):
        case = CASES[name]
        plan = predict(config, case)
        measured = measure(model, case, args.steps) if model is not None else None
        if model is not None:
            model.to("cuda")
        rows.append(compare(case, plan, measured))
        print(_line(rows[-1]), flush=True)
    print(f"{time.perf_counter() - started:.0f} s in all")
    if args.predict_only:
        return 0
    gpu = torch.cuda.get_device_name().replace(" ", "-")
    out = Path(args.out) if args.out else RESULTS / f"gpu-check-{gpu}.json"
    write_text(out, json.dumps({"machine": machine_info(torch.device("cuda")), "steps": args.steps, "rows": rows},
                               indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
