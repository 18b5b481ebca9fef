"""How long the finishing post-processes take: colour anchor, detail transfer, far detail and reference pin.

    python bench/finishing.py                      # about 2 minutes on 2 CPU cores; writes bench/results/finishing.json
    python bench/finishing.py --cases tiny-64f     # one case

The pipeline runs them on the host (CPU) after decoding, on frames at the output size, with radii scaled from
processing pixels as ``pipeline.finish_frames`` does; the pin tracks the camera at the processing size. Each case
is a synthetic clip that pans across a smooth random texture (so the camera tracker has real work), one keyframe at
frame 0, relumix-tiny's radii (detail 0.75, far 24 processing pixels). Times are the median of ``--repeats`` runs
after one warm-up, per step and in all, in seconds and per frame.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from relumix_core.atomic import write_text
from relumix_core.media.colour_anchor import LOCAL_SIGMA, anchor_colours
from relumix_core.media.detail import blend_far_detail, far_detail_weights, transfer_detail
from relumix_core.media.reference_pin import PIN_BLUR, pin_to_references

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "finishing.json"
#: name -> (frames, output height, output width, processing height, processing width, window)
CASES = {
    "tiny-64f": (64, 64, 64, 64, 64, 8),            # relumix-tiny on a 64-frame clip
    "official-14f-512": (14, 512, 512, 512, 512, 14),  # one window of the authors' model at its size
    "official-14f-1080p": (14, 1080, 1920, 576, 1024, 14),  # the same, output at full HD
}
DETAIL_SIGMA, FAR_SIGMA = 0.75, 24.0


def panning_clip(frames: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """[T, 3, H, W] in [0, 1]: a window moving 1 % of the width per frame over a larger smooth random texture."""
    gen = torch.Generator().manual_seed(seed)
    pad = int(width * 0.01 * frames) + 1
    texture = torch.rand(1, 3, height // 8 + 2, (width + pad) // 8 + 2, generator=gen)
    texture = F.interpolate(texture, size=(height, width + pad), mode="bicubic", align_corners=False).clamp(0, 1)
    return torch.stack([texture[0, :, :, round(t * width * 0.01):round(t * width * 0.01) + width]
                        for t in range(frames)])


def run_case(frames: int, height: int, width: int, proc_h: int, proc_w: int, window: int,
             repeats: int) -> dict:
    source = panning_clip(frames, height, width)
    relit = (source * torch.tensor([1.2, 0.9, 0.7]).view(1, 3, 1, 1)).clamp(0, 1)  # a warm new light
    output = (relit + 0.03 * torch.randn(relit.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    keys, references = [0], relit[:1]
    scale = height / proc_h

    def anchor() -> torch.Tensor:
        return anchor_colours(output, keys, references, LOCAL_SIGMA * scale)

    def detail() -> torch.Tensor:
        return transfer_detail(output, source, DETAIL_SIGMA * scale)

    weights = far_detail_weights(frames, keys, start=window - 1)

    def far() -> torch.Tensor:
        if not bool((weights > 0).any()):
            return output
        return blend_far_detail(output, output, source, FAR_SIGMA, weights, light_size=(proc_h, proc_w))

    def pin() -> torch.Tensor:
        return pin_to_references(output, source, references, keys, track_size=(proc_h, proc_w),
                                 blur=PIN_BLUR * scale)

    steps = {"colour_anchor": anchor, "detail_transfer": detail, "far_detail": far, "reference_pin": pin}
    result: dict = {"frames": frames, "output": [height, width], "processing": [proc_h, proc_w], "window": window,
                    "far_detail_frames": int((weights > 0).sum()), "seconds": {}, "ms_per_frame": {}}
    for name, step in steps.items():
        step()  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        median = statistics.median(times)
        result["seconds"][name] = round(median, 4)
        result["ms_per_frame"][name] = round(1000 * median / frames, 2)
    result["seconds"]["all"] = round(sum(result["seconds"].values()), 4)
    result["ms_per_frame"]["all"] = round(1000 * result["seconds"]["all"] / frames, 2)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per step (default 3; the median counts)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"JSON output (default {OUT.relative_to(ROOT)})")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.cases.split(",") if n.strip()]
    unknown = [n for n in names if n not in CASES]
    if unknown or not names:
        parser.error(f"unknown case(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(CASES)}")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    result = {"what": "finishing post-processes on the host, median seconds (bench/finishing.py)",
              "machine": {"cpu_threads": torch.get_num_threads(), "torch": torch.__version__,
                          "python": platform.python_version()},
              "cases": {}}
    for name in names:
        result["cases"][name] = run_case(*CASES[name], repeats=args.repeats)
        print(name, json.dumps(result["cases"][name]["seconds"]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
