"""Relight a small synthetic clip end to end and write the frames and a before/after strip.

Until a trained default model ships, the demo runs a tiny model with RANDOM weights (or a checkpoint you pass with
``--checkpoint``): it proves that the whole path (conditioning, guided sampling, chunked decoding, file output)
runs on this machine, not that the light carries over. It says so in its output.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from .pipeline import RelightSettings, ReLumixPipeline


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder (default out/demo)")
    parser.add_argument("--checkpoint", type=Path, help="a ReLumix checkpoint (default: random-weight tiny model)")
    parser.add_argument("--frames", type=int, default=8, help="clip length (default 8)")
    parser.add_argument("--size", type=int, default=64, help="frame side in pixels, a multiple of 64 (default 64)")
    parser.add_argument("--steps", type=int, default=25, help="sampling steps (default 25, as the authors)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace files of an earlier demo run in --out")


def synthetic_clip(frames: int, size: int, seed: int = 0) -> torch.Tensor:
    """A panning scene with a moving disc: [T, 3, S, S] in [0, 1]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = rng.uniform(0.2, 0.8, size=3).astype(np.float32)
    clip = []
    for t in range(frames):
        shift = 0.04 * t
        stripes = 0.5 + 0.5 * np.sin(2 * math.pi * (3 * (xx + shift) + 2 * yy))
        img = base[:, None, None] * (0.6 + 0.4 * stripes[None])
        cx, cy = 0.3 + 0.05 * t, 0.5 + 0.1 * math.sin(t / 2)
        disc = ((xx - cx) ** 2 + (yy - cy) ** 2) < 0.02
        img[:, disc] = np.array([0.9, 0.3, 0.2], dtype=np.float32)[:, None]
        clip.append(img)
    return torch.from_numpy(np.stack(clip)).clamp(0, 1)


def relight_image(image: torch.Tensor) -> torch.Tensor:
    """A stand-in for an image relighting tool: warm light from the left and a cool ambient grade."""
    _, h, w = image.shape
    ramp = torch.linspace(1.3, 0.5, w).expand(h, w)
    warm = torch.tensor([1.15, 0.95, 0.7])[:, None, None]
    return (image * ramp * warm + torch.tensor([0.0, 0.02, 0.06])[:, None, None]).clamp(0, 1)


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """[T,3,H,W] in [0,1] -> [T,H,W,3] uint8."""
    return (frames.clamp(0, 1).permute(0, 2, 3, 1).float().numpy() * 255 + 0.5).astype(np.uint8)


def write_outputs(out: Path, source: torch.Tensor, reference: torch.Tensor, relit: torch.Tensor,
                  overwrite: bool) -> list[Path]:
    """Frames as PNGs, an animated GIF and a strip (source row over relit row, reference first)."""
    out.mkdir(parents=True, exist_ok=True)
    targets = [out / f"relit_{i:04d}.png" for i in range(relit.shape[0])] + [out / "relit.gif", out / "strip.png"]
    existing = [p for p in targets if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]} exists (earlier demo run); pass --overwrite or choose another --out")
    frames = to_uint8(relit)
    for path, frame in zip(targets, frames, strict=False):
        Image.fromarray(frame).save(path)
    images = [Image.fromarray(f) for f in frames]
    images[0].save(targets[-2], save_all=True, append_images=images[1:], duration=120, loop=0)
    top = np.concatenate([to_uint8(reference[None])[0], *to_uint8(source)], axis=1)
    bottom = np.concatenate([to_uint8(reference[None])[0], *frames], axis=1)
    Image.fromarray(np.concatenate([top, bottom], axis=0)).save(targets[-1])
    return targets


def run_demo(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    if args.size % 64:
        raise ValueError(f"--size must be a multiple of 64, got {args.size}")
    if args.checkpoint:
        from .loading import load_relumix

        model, report = load_relumix(args.checkpoint)
        print(report.summary())
    else:
        from .tiny import random_tiny_model

        model = random_tiny_model(args.seed)
        print("NOTE: no trained default model ships yet, so this demo uses a tiny model with RANDOM weights.")
        print("      It shows that the pipeline runs end to end; the output pictures are not meaningful.")
    source = synthetic_clip(args.frames, args.size, args.seed)
    reference = relight_image(source[0])
    settings = RelightSettings(num_steps=args.steps, size=args.size)
    pipe = ReLumixPipeline(model)
    with tqdm(desc="relighting", unit="step") as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        relit = pipe.relight(source, reference, 0, settings, seed=args.seed, progress=progress)
    relit = relit.permute(0, 3, 1, 2)
    paths = write_outputs(args.out, source, reference, relit, args.overwrite)
    print(f"wrote {len(paths) - 2} frames, {paths[-2].name} and {paths[-1].name} to {args.out}")
    print(f"done in {time.perf_counter() - start:.1f}s")
    return 0
