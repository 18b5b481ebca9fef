"""The "Will it fit?" table: the authors' full-size model, simulated by ``relumix plan`` (no GPU needed).

    python bench/plan_table.py            # simulates (about an hour on 2 cores), writes bench/results/plan-table.json
    python bench/plan_table.py --budgets  # only the 12 and 8 GB plans (a few minutes), into the same JSON
    python bench/plan_table.py --print    # the README's Markdown tables from that JSON (a test keeps them equal)

Rows: 512x512 and 576x1024 at 14, 61 and 300 frames. Columns: everything on the GPU in fp16 (batched branches,
decode chunk = window), then one switch at a time: offload, sequential branches, bf16, fp8 UNet weights. Peaks
include a fixed CUDA-context term (``relumix_core.memory.simulate.CUDA_CONTEXT_BYTES``).

Budget plans: for 512x512 and 576x1024 at 14 frames, the fastest settings that fit 12 and 8 GB cards, as
``relumix plan --vram GB`` finds them (every switch allowed, VAE tiles included).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from relumix_core.atomic import write_text
from relumix_core.memory.search import Candidate, search_budget
from relumix_core.memory.simulate import simulate
from relumix_core.models.full import builtin_full_config, share_identical_copies
from relumix_core.pipeline.settings import RelightSettings

OUT = Path(__file__).resolve().parent / "results" / "plan-table.json"
SIZES = ((512, 512), (576, 1024))
FRAMES = (14, 61, 300)
COLUMNS = {
    "keep on GPU, fp16": (RelightSettings(), "fp16", False),
    "offload": (RelightSettings(), "fp16", True),
    "sequential branches": (RelightSettings(batch_branches=False), "fp16", False),
    "bf16": (RelightSettings(), "bf16", False),
    "fp8 UNet": (RelightSettings(), "fp8", False),
    "all four switches": (RelightSettings(batch_branches=False, decode_chunk_size=4), "fp8", True),
}
GIB = 2**30
BUDGET_GB = (12, 8)
BUDGET_FRAMES = 14


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--print"]:
        stored = json.loads(OUT.read_text())
        print(markdown(stored["rows"]) + "\n\n" + budget_markdown(stored["budgets"]))
        return 0
    config = share_identical_copies(builtin_full_config())
    if args == ["--budgets"]:
        stored = json.loads(OUT.read_text())
        stored["budgets"] = budget_plans(config)
        write_text(OUT, json.dumps(stored, indent=1) + "\n")
        print(budget_markdown(stored["budgets"]))
        return 0
    rows = []
    for height, width in SIZES:
        for frames in FRAMES:
            row = {"size": f"{height}x{width}", "frames": frames, "columns": {}}
            for name, (settings, precision, offload) in COLUMNS.items():
                start = time.perf_counter()
                plan = simulate(config, frames, height, width, settings, precision, offload, architecture="full")
                row["columns"][name] = plan.to_dict()
                print(f"{height}x{width} {frames:>3} {name:<22} {plan.peak_with_context_bytes / GIB:6.2f} GiB "
                      f"({time.perf_counter() - start:.0f} s)", file=sys.stderr)
            rows.append(row)
    budgets = budget_plans(config)
    write_text(OUT, json.dumps({"rows": rows, "budgets": budgets}, indent=1) + "\n")
    print(markdown(rows) + "\n\n" + budget_markdown(budgets))
    return 0


def budget_plans(config: object) -> list[dict]:
    """The fastest settings that fit each budget, searched as ``relumix plan --vram GB`` searches."""
    plans = []
    for height, width in SIZES:
        for gb in BUDGET_GB:
            start = time.perf_counter()

            def plan_for(frames: int, candidate: Candidate, h: int = height, w: int = width) -> object:
                return simulate(config, frames, h, w, candidate.settings, candidate.precision, candidate.offload,
                                architecture="full")

            request = Candidate(RelightSettings(), "fp16", False)
            chosen, plan, fits = search_budget(plan_for, request, BUDGET_FRAMES, 14, gb * GIB, max(height, width))
            plans.append({"size": f"{height}x{width}", "frames": BUDGET_FRAMES, "vram_gb": gb, "fits": fits,
                          "change": chosen.change, "plan": plan.to_dict()})
            print(f"{height}x{width} {gb} GB: {chosen.change}: {plan.peak_with_context_bytes / GIB:.2f} GiB "
                  f"({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    return plans


def budget_markdown(budgets: list[dict]) -> str:
    lines = ["| size | frames | card | fits | settings `auto` picks | simulated peak GiB |",
             "|---|---|---|---|---|---|"]
    for b in budgets:
        lines.append(f"| {b['size']} | {b['frames']} | {b['vram_gb']} GB | {'yes' if b['fits'] else 'no'} | "
                     f"{b['change']} | {b['plan']['peak_with_context_bytes'] / GIB:.1f} |")
    return "\n".join(lines)


def markdown(rows: list[dict]) -> str:
    names = list(COLUMNS)
    lines = ["| size | frames | " + " | ".join(names) + " | TFLOP per clip (x floor) |",
             "|---|---|" + "---|" * (len(names) + 1)]
    for row in rows:
        cells = [f"{row['columns'][n]['peak_with_context_bytes'] / GIB:.1f}" for n in names]
        flops = row["columns"][names[0]]["flops"]
        lines.append(f"| {row['size']} | {row['frames']} | " + " | ".join(cells)
                     + f" | {flops['total'] / 1e12:,.0f} ({flops['ratio_to_floor']:.2f}x) |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
