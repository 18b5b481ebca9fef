"""``relumix synth``: synthetic paired clips (same motion under several lights) for training; numpy only."""

from __future__ import annotations

import argparse
import time

RENDERERS = ("heightfield", "raytrace")


def run(args: argparse.Namespace) -> int:
    if args.renderer == "raytrace":
        from ..data.raytrace import write_raytrace_dataset as write_dataset
    else:
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


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "synth",
        help="write synthetic paired clips (same motion under several lights) for training",
        description="Render procedural scenes with camera and object motion under several lights into "
        "OUT/map_NN/scene_NNNN/light_NN/NNNNN.png (25 scenes per map) plus OUT/meta.json. Deterministic by --seed. "
        "Two independent renderers: top-down 2.5D height fields (heightfield, for training) and a perspective ray "
        "tracer with sky, spheres and boxes (raytrace, e.g. to test on scenes unlike the training data).",
    )
    parser.add_argument("out", help="folder to create (must be empty or absent unless --force)")
    parser.add_argument("--scenes", type=int, default=10, help="number of scenes (default 10)")
    parser.add_argument("--lights", type=int, default=4, help="lights per scene, at least 2 (default 4)")
    parser.add_argument("--frames", type=int, default=14, help="frames per clip (default 14)")
    parser.add_argument("--size", type=int, default=64, help="frame width and height, a multiple of 8 (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    parser.add_argument("--stride", type=int, default=1, help="render every N-th frame of the motion (default 1)")
    parser.add_argument("--renderer", choices=RENDERERS, default="heightfield",
                        help="heightfield: top-down 2.5D scenes; raytrace: perspective ray-traced scenes with sky "
                        "(default heightfield)")
    parser.add_argument("--force", action="store_true", help="replace a non-empty OUT")
    parser.set_defaults(func=run)
