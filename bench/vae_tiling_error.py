"""How far spatially tiled VAE decode and encode are from untiled, and what they cost: relumix-tiny, real weights.

    python bench/vae_tiling_error.py      # about 2.5 minutes on one CPU thread, writes bench/results/vae_tiling.json

The clip is one scene of the project's generator (``relumix synth``, seed 424242, the demo's seed, light 0), 14
frames rendered at 224x224 and centre-cropped to each processing size; decode chunk 14 (one temporal chunk, as the
authors decode). For each size and (tile, overlap) in pixels:

* decode: ``tiled_decode`` against ``decode_latents`` of the same latents (the untiled encode of the clip);
* encode: ``tiled_encode`` against the untiled encoder, in latent units (and relative to the latents' standard
  deviation), and in image units after decoding both latents untiled.

Image errors are in [0, 1] units on the clamped output, as the pipeline delivers it; PSNR is of tiled against
untiled (higher is closer). ``reconstruction_psnr_db`` (untiled decode against the source clip) gives the scale of
the VAE's own error. ``picture_norms_psnr_db`` (decode rows) is a diagnostic: the same tiled decode with every
GroupNorm fed the statistics of the whole picture (:class:`PictureNorms`), which shows how much of the error the
GroupNorms cause.

Why the error is not zero: a tile sees only its own pixels. The temporal decoder's mid block runs spatial
self-attention over the whole latent and every GroupNorm of the encoder and decoder normalises with statistics of
the whole picture; on a tile both see a different, smaller picture. Convolutions near a tile border see zero padding
instead of the neighbour; the overlap and its ramps hide that part, but not the first. The diagnostic column shows
that the GroupNorm statistics are most of it. So the error is spread over the whole tile (a low-frequency shift per
tile), falls quickly as tiles grow, and hardly depends on the overlap once it is a few latent pixels. relumix-tiny
was trained at 64x64 (16x16 latents): tiles smaller than that are outside what it has seen, so small tiles may
exaggerate the error compared with the full model at its 512-pixel scale. Times are single runs with one thread on
a shared machine and include the first-call set-up of each new tile shape.
"""

from __future__ import annotations

import json
import math
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from relumix_core.atomic import write_text
from relumix_core.checkpoints import bundled
from relumix_core.checkpoints.loading import load_relumix
from relumix_core.data.synth import render_scene
from relumix_core.models.relumix import ReLumixModel
from relumix_core.models.vae import decode_latents
from relumix_core.models.vae_tiling import Tiling, tile_spans, tiled_decode, tiled_encode

OUT = Path(__file__).resolve().parent / "results" / "vae_tiling.json"
SEED, SCENE, FRAMES, CHUNK, RENDER = 424242, 1, 14, 14, 224
SIZES = ((128, 128), (128, 224))
TILINGS = ((32, 8), (64, 0), (64, 16), (96, 24), (128, 32))


class PictureNorms:
    """Diagnostic only: makes every GroupNorm of the decoder use the statistics it saw on the whole picture.

    ``record`` during an untiled decode, then ``replay`` during a tiled one (same temporal chunk, so the calls line
    up). What error is left then comes from attention and borders; what goes away was the GroupNorm share. Not a
    usable method: the statistics come from the untiled decode that tiling is there to avoid.
    """

    def __init__(self, decoder: nn.Module) -> None:
        self.mode, self.index, self.stats = "off", 0, []
        decoder.register_forward_pre_hook(self._reset)
        for module in decoder.modules():
            if isinstance(module, nn.GroupNorm):
                module.register_forward_hook(self._norm)

    def _reset(self, module: nn.Module, args: tuple) -> None:
        self.index = 0

    def _norm(self, module: nn.GroupNorm, args: tuple, out: torch.Tensor) -> torch.Tensor | None:
        x = args[0]
        groups = x.reshape(x.shape[0], module.num_groups, -1)
        if self.mode == "record":
            self.stats.append((groups.mean(-1, keepdim=True), groups.var(-1, unbiased=False, keepdim=True)))
        if self.mode != "replay":
            return None
        mean, var = self.stats[self.index]
        self.index += 1
        shape = [1, -1] + [1] * (x.dim() - 2)
        normed = ((groups - mean) / torch.sqrt(var + module.eps)).reshape(x.shape)
        return normed * module.weight.reshape(shape) + module.bias.reshape(shape)


def source_clip(height: int, width: int) -> torch.Tensor:
    """The generator's clip, centre-cropped: [T, 3, H, W] in [-1, 1]."""
    video = torch.from_numpy(render_scene(SEED, SCENE, 2, FRAMES, RENDER)[0]).permute(0, 3, 1, 2).float() / 255
    top, left = (RENDER - height) // 2, (RENDER - width) // 2
    return video[:, :, top : top + height, left : left + width] * 2 - 1


def image_error(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    """Max and mean absolute error and PSNR in [0, 1] units of two decoder outputs (clamped, as delivered)."""
    diff = (a.clamp(-1, 1) - b.clamp(-1, 1)).double() / 2
    mse = float(diff.square().mean())
    psnr = math.inf if mse == 0 else 10 * math.log10(1 / mse)
    return {"max_abs": round(float(diff.abs().max()), 5), "mean_abs": round(float(diff.abs().mean()), 6),
            "psnr_db": round(psnr, 2) if math.isfinite(psnr) else None}


def timed(fn: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, float]:
    start = time.perf_counter()
    out = fn()
    return out, round(time.perf_counter() - start, 3)


def tile_count(height: int, width: int, tiling: Tiling, factor: int) -> tuple[int, float]:
    """(tiles, area of all tiles over the picture's area): what the overlap costs."""
    rows = tile_spans(height // factor, tiling.tile // factor, tiling.overlap // factor)
    cols = tile_spans(width // factor, tiling.tile // factor, tiling.overlap // factor)
    area = sum(r1 - r0 for r0, r1 in rows) * sum(c1 - c0 for c0, c1 in cols)
    return len(rows) * len(cols), round(area * factor * factor / (height * width), 3)


def measure_size(model: ReLumixModel, norms: PictureNorms, height: int, width: int) -> list[dict]:
    """Every tiling at one processing size, decode and encode."""
    vae, encoder = model.component("vae"), model.component("frame_encoder")
    scale, factor = model.config.scale_factor, model.latent_factor
    clip = source_clip(height, width)
    latents, encode_seconds = timed(lambda: encoder(clip))
    decoded, decode_seconds = timed(lambda: decode_latents(vae, latents * scale, CHUNK, scale))
    norms.mode, norms.stats = "record", []
    decode_latents(vae, latents * scale, CHUNK, scale)
    base = {"size": f"{height}x{width}", "reconstruction_psnr_db": image_error(decoded, clip)["psnr_db"]}
    rows = []
    for tile, overlap in TILINGS:
        tiling = Tiling(tile, overlap)
        tiles, area = tile_count(height, width, tiling, factor)
        common = {**base, "tile": tile, "overlap": overlap, "tiles": tiles, "tile_area_ratio": area}
        tiled, seconds = timed(lambda t=tiling: tiled_decode(vae, latents * scale, CHUNK, scale, t, factor))
        norms.mode = "replay"
        oracle = tiled_decode(vae, latents * scale, CHUNK, scale, tiling, factor)
        norms.mode = "off"
        rows.append({**common, "op": "decode", **image_error(tiled, decoded), "seconds": seconds,
                     "untiled_seconds": decode_seconds,
                     "picture_norms_psnr_db": image_error(oracle, decoded)["psnr_db"]})
        tiled_latents, seconds = timed(lambda t=tiling: tiled_encode(encoder, clip, t, factor))
        latent_diff = (tiled_latents - latents).abs()
        redecoded = decode_latents(vae, tiled_latents * scale, CHUNK, scale)
        rows.append({**common, "op": "encode", **image_error(redecoded, decoded), "seconds": seconds,
                     "untiled_seconds": encode_seconds, "latent_max_abs": round(float(latent_diff.max()), 5),
                     "latent_mean_abs": round(float(latent_diff.mean()), 6),
                     "latent_mean_abs_over_std": round(float(latent_diff.mean() / latents.std()), 5)})
        print(markdown_row(rows[-2]), markdown_row(rows[-1]), sep="\n", flush=True)
    return rows


def _psnr(value: float | str | None) -> str:
    return "exact" if value is None else value if isinstance(value, str) else f"{value:.1f}"


def markdown_row(row: dict) -> str:
    psnr = _psnr(row["psnr_db"])
    return (f"| {row['op']} | {row['size']} | {row['tile']} | {row['overlap']} | {row['tiles']} | "
            f"{row['max_abs']:.4f} | {row['mean_abs']:.4f} | {psnr} | {row['seconds']:.2f} | "
            f"{row['untiled_seconds']:.2f} | {_psnr(row.get('picture_norms_psnr_db', ''))} |")


HEADER = ("| op | size | tile | overlap | tiles | max abs | mean abs | PSNR dB | s tiled | s untiled | "
          "PSNR dB, picture norms |\n|---|---|---|---|---|---|---|---|---|---|---|")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0]) if args else OUT
    weights = bundled.BUNDLED_DIR / bundled.TINY_FILE
    if not weights.is_file():
        print(f"relumix-tiny weights not found at {weights}", file=sys.stderr)
        return 1
    # One thread: on a shared 2-core machine two OpenMP threads wait on each other whenever another process holds
    # a core (a tiled decode measured 5x slower), so single-threaded times are the comparable ones.
    torch.set_num_threads(1)
    model, _ = load_relumix(weights)
    norms = PictureNorms(model.component("vae").decoder)
    print(HEADER)
    started = time.perf_counter()
    with torch.inference_mode():
        rows = [row for height, width in SIZES for row in measure_size(model, norms, height, width)]
    result = {
        "what": "tiled against untiled VAE decode and encode (bench/vae_tiling_error.py docstring)",
        "model": "relumix-tiny", "factor": model.latent_factor, "frames": FRAMES, "decode_chunk": CHUNK,
        "clip": {"generator_seed": SEED, "scene": SCENE, "light": 0, "rendered": RENDER},
        "picture_norms_psnr_db": "diagnostic: tiled decode with the whole picture's GroupNorm statistics",
        "units": "image errors in [0, 1] of the clamped output; latent errors in unscaled latent units",
        "machine": {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": platform.processor()},
        "total_seconds": round(time.perf_counter() - started, 1),
        "rows": rows,
    }
    write_text(out, json.dumps(result, indent=1) + "\n")
    print(f"wrote {out} in {result['total_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
