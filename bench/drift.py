"""Drift on long clips (issue 21): PSNR against the distance to the nearest reference, for relumix-tiny with the
``chain`` and ``anchor`` window strategies and 1, 2 and 4 keyframes, next to the ``reference_repeated`` baseline.

    python bench/drift.py                                # 4 clips of 300 frames; writes bench/results/drift.json
                                                         # and docs/drift.png
    python bench/drift.py --clips 1 --frames 40 --out /tmp/drift.json --plot /tmp/drift.png   # a quick check

The clips are synthetic (``relumix synth``: camera and object motion under two lights, 64 x 64), generated once
into ``--data`` (default ``/tmp/relumix_drift_<frames>f_<clips>s_seed<seed>``) unless it already holds them. Each
clip is one light pair of one scene (``load_test_clips``, one pair per scene, seed 0); the references are the
ground truth at ``keyframe_indices(T, K)`` (frame 0 for K=1; the first, the last and evenly spaced ones between
otherwise), as ``relumix eval --keyframes K`` gives them. The model runs at the clip's own size with its own
steps and detail transfer, seed 0, the window it was trained on (8 frames) and the default overlap; the baseline
takes every frame from its nearest keyframe.

The result is resumable: every finished (clip, K, method) run is written to ``--out`` at once, and a later call
with the same options skips it (``--fresh`` starts over). Per method and K the JSON holds, for every distance
0..max, the mean PSNR (dB) over the frames at that distance (pooled over clips) and their count, plus means over
distance ranges; ``docs/drift.png`` plots PSNR against distance (distance 0, the references, left out).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from relumix_core.atomic import write_text
from relumix_core.errors import ReLumixError
from relumix_core.evaluation import (
    EvalClip,
    keyframe_distances,
    keyframe_indices,
    load_test_clips,
    nearest_keyframe_baseline,
    psnr_per_frame,
    reference_repeated,
    relumix_method,
)
from relumix_core.evaluation.plots import plot_curves, save_png

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "results" / "drift.json"
PLOT = ROOT / "docs" / "drift.png"
CHECKPOINT = "relumix-tiny"
SIZE = 64
LIGHTS = 2
DATA_SEED = 9300
SEED = 0
STRATEGIES = ("chain", "anchor")
KEYFRAMES = (1, 2, 4)
BASELINE = "reference_repeated"
#: Distance ranges (in frames, inclusive) of the summary table.
RANGES = ((1, 10), (11, 50), (51, 150), (151, 299))


def run_key(clip: str, method: str, keyframes: int) -> str:
    return f"{clip}|{method}|{keyframes}"


def method_names(strategies: list[str]) -> list[str]:
    return [*(f"relumix {s}" for s in strategies), BASELINE]


def curve_name(method: str, keyframes: int) -> str:
    """The name of one curve (short enough for the plot's legend)."""
    label = "ref. repeated" if method == BASELINE else method
    return f"{label}, {keyframes} key{'s' if keyframes > 1 else ''}"


# ---------------------------------------------------------------------------------------------- data and model


def ensure_data(args: argparse.Namespace) -> tuple[Path, str]:
    """The synthetic clips: ``--data`` if given (or already generated), else rendered now."""
    from relumix_core.data.synth import write_dataset

    root = args.data or Path(f"/tmp/relumix_drift_{args.frames}f_{args.clips}s_seed{args.data_seed}")
    if (root / "meta.json").exists():
        return root, "existing"
    if args.data is not None and root.exists():
        raise ReLumixError(f"--data {root} has no meta.json; pass a 'relumix synth' folder or an absent path")
    print(f"rendering {args.clips} scenes x {LIGHTS} lights x {args.frames} frames into {root}", file=sys.stderr)
    write_dataset(root, args.clips, LIGHTS, args.frames, SIZE, args.data_seed)
    return root, "generated"


def model_methods(args: argparse.Namespace) -> tuple[dict, dict]:
    """``relumix <strategy>`` methods of relumix-tiny and the settings they resolve to."""
    from relumix_core.checkpoints.loading import load_relumix
    from relumix_core.pipeline.pipeline import ReLumixPipeline
    from relumix_core.pipeline.settings import RelightSettings

    model, _ = load_relumix(args.checkpoint)
    model.eval()
    pipe = ReLumixPipeline(model, device=args.device)
    methods, described = {}, {}
    for strategy in args.strategies:
        settings = replace(RelightSettings(), strategy=strategy, num_steps=args.steps).resolved(model)
        methods[f"relumix {strategy}"] = relumix_method(pipe, settings, seed=SEED)
        described[strategy] = {"steps": settings.num_steps, "window": settings.window, "overlap": settings.overlap,
                               "detail_sigma": settings.detail_sigma, "detail_sigma_far": settings.detail_sigma_far,
                               "colour_anchor": settings.colour_anchor, "reference_pin": settings.reference_pin,
                               "min_guidance": settings.min_guidance, "max_guidance": settings.max_guidance}
    return methods, described


# ---------------------------------------------------------------------------------------------- measuring


def measure_run(method, clip: EvalClip) -> dict:
    """One method on one clip: per-frame PSNR, distances to the nearest reference, seconds."""
    start = time.perf_counter()
    with torch.no_grad():
        pred = method(clip)
    psnr = psnr_per_frame(pred.float().clamp(0, 1), clip.target).tolist()
    return {"psnr": [round(v, 4) for v in psnr], "reference_indices": clip.reference_indices,
            "distance": keyframe_distances(clip.target.shape[0], clip.reference_indices),
            "seconds": round(time.perf_counter() - start, 2)}


def by_distance(runs: list[dict]) -> dict:
    """PSNR per distance pooled over the runs' frames, and the frame counts."""
    top = max(max(r["distance"]) for r in runs)
    sums, counts = [0.0] * (top + 1), [0] * (top + 1)
    for run in runs:
        for value, d in zip(run["psnr"], run["distance"], strict=True):
            sums[d] += value
            counts[d] += 1
    return {"psnr": [round(s / c, 4) if c else None for s, c in zip(sums, counts, strict=True)], "frames": counts}


def range_means(runs: list[dict], frames: int) -> dict:
    """Mean PSNR over the frames whose distance falls in each of :data:`RANGES` (cut at the clip length)."""
    out = {}
    for low, high in RANGES:
        if low >= frames:
            break
        values = [v for r in runs for v, d in zip(r["psnr"], r["distance"], strict=True) if low <= d <= high]
        out[f"{low}-{min(high, frames - 1)}"] = round(sum(values) / len(values), 3) if values else None
    return out


def summarise(result: dict, clips: list[str], args: argparse.Namespace) -> None:
    """Fill ``by_distance`` and ``ranges`` from the finished runs (complete when every run is there)."""
    result["by_distance"], result["ranges"] = {}, {}
    for keyframes in args.keyframes:
        for method in method_names(args.strategies):
            runs = [result["runs"][k] for c in clips if (k := run_key(c, method, keyframes)) in result["runs"]]
            if runs:
                name = curve_name(method, keyframes)
                result["by_distance"][name] = by_distance(runs) | {"clips": len(runs)}
                result["ranges"][name] = range_means(runs, args.frames)
    wanted = [run_key(c, m, k) for c in clips for k in args.keyframes for m in method_names(args.strategies)]
    result["complete"] = all(key in result["runs"] for key in wanted)


def plot(result: dict, path: Path) -> None:
    series = {name: [float("nan"), *(v if v is not None else float("nan") for v in table["psnr"][1:])]
              for name, table in result["by_distance"].items()}
    n = len(result["clips"])
    title = f"PSNR against distance to the nearest reference, {n} clip{'s' * (n != 1)} of {result['frames']} frames"
    save_png(plot_curves(series, title, "distance to the nearest reference (frames)", "PSNR (dB)"), path)


def options(args: argparse.Namespace) -> dict:
    """What a resumed run must share with the file it continues."""
    return {"frames": args.frames, "clips": args.clips, "data_seed": args.data_seed, "steps": args.steps,
            "checkpoint": args.checkpoint, "size": SIZE, "seed": SEED}


def load_previous(args: argparse.Namespace) -> dict:
    """Finished runs of an earlier call with the same options, or none (``--fresh``, no file)."""
    if args.fresh or not args.out.exists():
        return {}
    previous = json.loads(args.out.read_text())
    if previous.get("options") != options(args):
        raise ReLumixError(f"{args.out} holds a run with other options ({previous.get('options')}); pass --fresh "
                           "to replace it or --out for another file")
    return previous.get("runs", {})


def measure(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    runs = load_previous(args)
    data, state = ensure_data(args)
    clips = load_test_clips(data, args.frames, pairs_per_scene=1, max_clips=args.clips, seed=0)
    methods, described = model_methods(args)
    methods[BASELINE] = lambda c: nearest_keyframe_baseline(reference_repeated)(c.source, c.references,
                                                                                 c.reference_indices)
    result = {
        "what": "PSNR (dB) against the distance in frames to the nearest reference, relumix-tiny chain/anchor and "
                "the reference_repeated baseline, 1/2/4 keyframes (issue 21)",
        "command": " ".join(["python bench/drift.py", *sys.argv[1:]]),
        "options": options(args),
        "data": {"root": str(data), "state": state, "command": f"relumix synth {data} --scenes {args.clips} "
                 f"--lights {LIGHTS} --frames {args.frames} --size {SIZE} --seed {args.data_seed}"},
        "model": described, "clips": [c.name for c in clips], "frames": args.frames, "runs": runs,
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "threads": args.threads,
                    "device": args.device},
    }
    todo = [(clip, k, m) for clip in clips for k in args.keyframes for m in methods
            if run_key(clip.name, m, k) not in runs]
    print(f"{len(clips)} clips of {args.frames} frames; {len(todo)} runs to do, {len(runs)} already done",
          file=sys.stderr)
    for i, (clip, keyframes, name) in enumerate(todo):
        keyed = clip.with_keyframes(keyframe_indices(args.frames, keyframes))
        runs[run_key(clip.name, name, keyframes)] = measure_run(methods[name], keyed)
        summarise(result, result["clips"], args)
        write_text(args.out, json.dumps(result, indent=1) + "\n")  # resumable after every run
        done = runs[run_key(clip.name, name, keyframes)]
        between = [v for v, d in zip(done["psnr"], done["distance"], strict=True) if d > 0] or done["psnr"]
        print(f"[{i + 1}/{len(todo)}] {clip.name} {curve_name(name, keyframes)}: mean PSNR off the keyframes "
              f"{sum(between) / len(between):.2f} dB in {done['seconds']:.0f} s "
              f"({time.perf_counter() - start:.0f} s so far)", file=sys.stderr)
    summarise(result, result["clips"], args)
    result["seconds_this_call"] = round(time.perf_counter() - start, 1)
    return result


def table(result: dict) -> str:
    names = list(result["ranges"])
    ranges = list(next(iter(result["ranges"].values()))) if names else []
    lines = ["| method, keyframes | " + " | ".join(f"d {r}" for r in ranges) + " |",
             "|---|" + "---:|" * len(ranges)]
    for name in names:
        cells = [f"{v:.2f}" if v is not None else "–" for v in result["ranges"][name].values()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="a 'relumix synth' folder with clips of at least "
                        "--frames frames (default: rendered into /tmp on the first call)")
    parser.add_argument("--clips", type=int, default=4, help="clips (scenes), one light pair each (default 4)")
    parser.add_argument("--frames", type=int, default=300, help="frames per clip (default 300)")
    parser.add_argument("--keyframes", type=lambda t: [int(v) for v in t.split(",")], default=list(KEYFRAMES),
                        help="keyframe counts, comma-separated (default 1,2,4)")
    parser.add_argument("--strategies", type=lambda t: t.split(","), default=list(STRATEGIES),
                        help="window strategies, comma-separated (default chain,anchor)")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's own)")
    parser.add_argument("--checkpoint", default=CHECKPOINT, help=f"model (default {CHECKPOINT})")
    parser.add_argument("--data-seed", type=int, default=DATA_SEED, help=f"synth seed (default {DATA_SEED})")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"JSON output (default {OUT.relative_to(ROOT)})")
    parser.add_argument("--plot", type=Path, default=PLOT, help=f"PNG output (default {PLOT.relative_to(ROOT)})")
    parser.add_argument("--fresh", action="store_true", help="ignore the finished runs in --out and start over")
    args = parser.parse_args(argv)
    if args.clips < 1 or args.frames < max(args.keyframes) or min(args.keyframes) < 1:
        parser.error("--clips and --keyframes must be at least 1 and --frames at least the largest keyframe count")
    if not set(args.strategies) <= set(STRATEGIES):
        parser.error(f"--strategies takes {', '.join(STRATEGIES)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = measure(args)
    except ReLumixError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    write_text(args.out, json.dumps(result, indent=1) + "\n")
    plot(result, args.plot)
    print(table(result))
    print(f"\nwrote {args.out} and {args.plot} ({'complete' if result['complete'] else 'partial'}) in "
          f"{result['seconds_this_call']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
