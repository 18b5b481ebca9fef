"""What colour relumix-tiny's first-stage latents hold: the root of its pink and green casts (issue 20).

    relumix synth /tmp/relumix_val --scenes 20 --lights 4 --frames 8 --seed 7000   # the validation split
    python bench/latent_chroma.py                                  # the bundled relumix-tiny, about 1 minute
    python bench/latent_chroma.py runs/X/model.safetensors --out bench/results/latent_chroma_X.json

For each model file, on the validation split's ground-truth clips (``load_test_clips``, seed 0, as ``relumix eval``
draws them):

* ``ceiling``: PSNR / SSIM of the clips through the first stage (posterior mean, decoded 8 frames at a time): the
  best any relit frame can be;
* ``kept``: per colour axis (luma, red-blue, green-magenta; ``bench/colour_cast.py``'s ``AXES``), the fraction of
  frame 0's per-pixel variation along the axis that the round trip keeps (least-squares slope, pooled);
* ``latent_r2``: per axis, how much of the frames' 4x4-averaged colour along the axis a least-squares fit can read
  from the latents (each latent cell's 3x3 neighbourhood, 36 values and their squares, plus a constant), fitted on
  the first three quarters of the cells and scored (R^2) on the last quarter. Near 1: the latent carries the axis;
  0 or below: it does not, and no decoder can bring it back.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from colour_cast import AXES, ROOT, axis_retention, axis_value, decode, ref_latent  # noqa: E402

from relumix_core.atomic import write_text  # noqa: E402
from relumix_core.checkpoints.loading import load_relumix  # noqa: E402
from relumix_core.evaluation.clips import load_test_clips  # noqa: E402
from relumix_core.evaluation.metrics import psnr_per_frame, ssim_per_frame  # noqa: E402

DATA = Path("/tmp/relumix_val")
OUT = ROOT / "bench" / "results" / "latent_chroma.json"
FRAMES = 8


def neighbourhood_features(latents: torch.Tensor) -> torch.Tensor:
    """Each latent cell's 3x3 neighbourhood [cells, 36] (edges replicated)."""
    padded = F.pad(latents, (1, 1, 1, 1), mode="replicate")
    return F.unfold(padded, 3).transpose(1, 2).reshape(-1, 9 * latents.shape[1])


def readable_fraction(features: torch.Tensor, values: torch.Tensor) -> float:
    """Held-out R^2 of a least-squares fit of ``values`` from ``features``, their squares and a constant."""
    x = features.double()
    x = torch.cat([x, x.pow(2), torch.ones(len(x), 1, dtype=x.dtype)], 1)
    y = values.double()
    split = len(x) * 3 // 4
    weights = torch.linalg.lstsq(x[:split], y[:split, None]).solution
    residual = y[split:] - (x[split:] @ weights)[:, 0]
    return 1.0 - float(residual.var() / y[split:].var())


@torch.no_grad()
def measure(checkpoint: str, data: Path, clips: int) -> dict:
    model, _ = load_relumix(checkpoint)
    model.eval()
    chosen = load_test_clips(data, FRAMES, pairs_per_scene=2, max_clips=clips, seed=0)
    psnr, ssim, outputs, references, features = [], [], [], [], []
    targets: dict[str, list[torch.Tensor]] = {axis: [] for axis in AXES}
    for clip in chosen:
        latents = ref_latent(model, clip.target)
        decoded = decode(model, latents, FRAMES)
        psnr.append(float(psnr_per_frame(decoded, clip.target).mean()))
        ssim.append(float(ssim_per_frame(decoded, clip.target).mean()))
        outputs.append(decoded[0])
        references.append(clip.target[0])
        features.append(neighbourhood_features(latents))
        factor = clip.target.shape[-1] // latents.shape[-1]
        for axis in AXES:
            targets[axis].append(axis_value(F.avg_pool2d(clip.target, factor), axis).flatten())
    cells = torch.cat(features)
    kept = axis_retention(outputs, references)
    return {
        "clips": len(chosen),
        "ceiling": {"psnr": sum(psnr) / len(psnr), "ssim": sum(ssim) / len(ssim)},
        "kept": {axis: kept[axis]["kept"] for axis in AXES},
        "latent_r2": {axis: readable_fraction(cells, torch.cat(targets[axis])) for axis in AXES},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", nargs="?", default="relumix-tiny", help="model file (default relumix-tiny)")
    parser.add_argument("--data", type=Path, default=DATA, help=f"validation split (default {DATA})")
    parser.add_argument("--clips", type=int, default=40, help="clips (default 40)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"JSON output (default {OUT.relative_to(ROOT)})")
    args = parser.parse_args(argv)
    if not (args.data / "meta.json").is_file():
        parser.error(f"{args.data} is not a dataset: make it with the relumix synth command in this file's docstring")
    torch.set_num_threads(1)
    start = time.perf_counter()
    result = {"model": args.checkpoint, "data": str(args.data), **measure(args.checkpoint, args.data, args.clips)}
    result["seconds"] = round(time.perf_counter() - start, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
