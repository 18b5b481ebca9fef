"""Measure the full-size ReLumix on a CUDA GPU next to the memory plan's prediction (``relumix plan``).

    python bench/gpu_check.py            # about 5 minutes on an H100/H200; refuses to start without CUDA
    python bench/gpu_check.py --cases f14,f61 --steps 3

The authors' architecture with random weights (no checkpoint needed), fp16, through the real pipeline. Per case:
``torch.cuda.max_memory_allocated`` / ``max_memory_reserved``, seconds per sampling step and per clip (a few steps
are sampled; the clip time is encode + decode + steps x the mean step), and the simulator's peak for the same
settings, with the ratio measured / simulated. Writes ``bench/results/gpu-check-<gpu>.json`` and prints a table.
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
from relumix_core.memory.simulate import simulate  # noqa: E402
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
    start = time.perf_counter()
    conditioning = pipe.encode(video, video[0], 0, settings, torch.Generator().manual_seed(0))
    torch.cuda.synchronize()
    encoded = time.perf_counter()

    def progress(done: int, total: int) -> None:
        torch.cuda.synchronize()
        ticks.append(time.perf_counter())

    result = pipe.generate(conditioning, settings, torch.Generator().manual_seed(0), progress=progress)
    torch.cuda.synchronize()
    end = time.perf_counter()
    windows = sum(len(d) for d in result.windows)
    per_step = float(np.mean(np.diff([encoded, *ticks]))) if ticks else float("nan")  # one window evaluation
    sampling = ticks[-1] - encoded if ticks else 0.0
    other = (end - start) - sampling
    default_steps = model.config.default_steps
    return {
        "max_memory_allocated_bytes": torch.cuda.max_memory_allocated(),
        "max_memory_reserved_bytes": torch.cuda.max_memory_reserved(),
        "seconds_per_window_step": round(per_step, 4),
        "window_evaluations_per_step": windows,
        "seconds_per_clip_at_default_steps": round(other + per_step * windows * default_steps, 2),
        "measured_steps": steps,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, from {', '.join(CASES)}")
    parser.add_argument("--steps", type=int, default=3, help="sampling steps measured per case (default 3)")
    parser.add_argument("--out", default=None, help="JSON file (default bench/results/gpu-check-<gpu>.json)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("error: bench/gpu_check.py needs a CUDA GPU (torch.cuda.is_available() is False); run it on one",
              file=sys.stderr)
        return 2
    unknown = [c for c in args.cases.split(",") if c not in CASES]
    if unknown:
        print(f"error: unknown cases {unknown}; choose from {', '.join(CASES)}", file=sys.stderr)
        return 2
    config = share_identical_copies(builtin_full_config())
    model = build_on_meta(config)
    materialise_random_(model, torch.device("cuda"), torch.float16)
    rows = []
    for name in args.cases.split(","):
        case = CASES[name]
        plan = simulate(config, case.frames, case.height, case.width, case.settings, "fp16", case.offload,
                        architecture="full")
        measured = measure(model, case, args.steps)
        model.to("cuda")
        row = {"case": name, "frames": case.frames, "size": f"{case.height}x{case.width}", **measured,
               "simulated_peak_bytes": plan.peak_bytes,
               "allocated_over_simulated": round(measured["max_memory_allocated_bytes"] / plan.peak_bytes, 3),
               "reserved_over_simulated": round(measured["max_memory_reserved_bytes"] / plan.peak_bytes, 3)}
        rows.append(row)
        print(f"{name:<24} allocated {row['max_memory_allocated_bytes'] / GIB:6.2f} GB, reserved "
              f"{row['max_memory_reserved_bytes'] / GIB:6.2f} GB, simulated {plan.peak_bytes / GIB:6.2f} GB "
              f"(x{row['allocated_over_simulated']}), {row['seconds_per_window_step']} s per window step, "
              f"{row['seconds_per_clip_at_default_steps']} s per clip", flush=True)
    gpu = torch.cuda.get_device_name().replace(" ", "-")
    out = Path(args.out) if args.out else RESULTS / f"gpu-check-{gpu}.json"
    write_text(out, json.dumps({"machine": machine_info(torch.device("cuda")), "rows": rows}, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
