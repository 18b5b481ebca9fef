"""Reference perturbations: how much worse every method gets when the relit reference it is given is imperfect.

An artist's relit frame is never exactly the frame the ground truth has: it may be noisy, colour-balanced a little
differently, soft, a pixel off, or JPEG-compressed. ``relumix eval --reference-perturb KIND:L1,L2,...`` degrades the
references (never the ground truth) by these functions and scores every method again at each level.

Every perturbation takes references ``[N, 3, H, W]`` in ``[0, 1]``, a level and a seed, returns new ones in
``[0, 1]``, and is the identity at level 0 (for ``jpeg`` level 0 means "no compression"):

* ``noise``: additive Gaussian noise, level = sigma in [0, 1] value units, drawn from the seed (one draw per clip,
  scaled by the level, so the levels of a clip differ only in strength); clamped to [0, 1];
* ``color``: a white-balance error, level L in [0, 1]: red gain ``1 + L``, green 1, blue ``1 - L`` (a warm cast),
  clamped;
* ``blur``: Gaussian blur, level = sigma in pixels (:func:`relumix_core.media.blur.gaussian_blur`, replicated edges);
* ``shift``: misalignment, level = whole pixels: the image moves right and down, the top and left edges repeat;
* ``jpeg``: a JPEG round trip through Pillow (8-bit, Pillow's default 4:2:0 chroma subsampling), level = quality
  1..100.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from io import BytesIO

import numpy as np
import torch

from ..errors import ReLumixError
from ..media.blur import gaussian_blur

Perturbation = Callable[[torch.Tensor, float, int], torch.Tensor]


def _check_images(images: torch.Tensor) -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ReLumixError(f"references to perturb must be a [N,3,H,W] tensor, got {shape}")
    return images.float()


def add_noise(images: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    """Gaussian noise of standard deviation ``sigma`` (value units), from ``seed``; clamped to [0, 1]."""
    x = _check_images(images)
    if sigma == 0:
        return x.clone()
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float32)
    return (x + sigma * noise).clamp(0.0, 1.0)


def white_balance(images: torch.Tensor, level: float, seed: int = 0) -> torch.Tensor:
    """Per-channel gains R ``1 + level``, G 1, B ``1 - level`` (a warm white-balance error); clamped to [0, 1]."""
    x = _check_images(images)
    gains = torch.tensor([1.0 + level, 1.0, 1.0 - level], dtype=x.dtype).view(1, 3, 1, 1)
    return (x * gains).clamp(0.0, 1.0)


def blur(images: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    """Gaussian blur of ``sigma`` pixels (replicated edges): a soft or upscaled reference."""
    x = _check_images(images)
    if sigma == 0:
        return x.clone()
    return gaussian_blur(x, float(sigma)).clamp(0.0, 1.0)


def shift(images: torch.Tensor, pixels: float, seed: int = 0) -> torch.Tensor:
    """The image moved ``pixels`` (whole) right and down; the uncovered top rows and left columns repeat the edge."""
    x = _check_images(images)
    n = int(pixels)
    rows = (torch.arange(x.shape[-2]) - n).clamp_min(0)
    cols = (torch.arange(x.shape[-1]) - n).clamp_min(0)
    return x[..., rows, :][..., cols].clone()


def jpeg(images: torch.Tensor, quality: float, seed: int = 0) -> torch.Tensor:
    """A JPEG round trip at ``quality`` (1..100) through Pillow, per image; quality 0 returns the images unchanged."""
    from PIL import Image

    x = _check_images(images)
    if quality == 0:
        return x.clone()
    out = []
    for image in x:
        arr = (image.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()
        buffer = BytesIO()
        Image.fromarray(np.ascontiguousarray(arr)).save(buffer, format="JPEG", quality=int(quality))
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            back = np.asarray(decoded.convert("RGB"), dtype=np.uint8).copy()
        out.append(torch.from_numpy(back).permute(2, 0, 1).float() / 255.0)
    return torch.stack(out)


#: Every kind of ``--reference-perturb``, in report order.
PERTURBATIONS: dict[str, Perturbation] = {
    "noise": add_noise,
    "color": white_balance,
    "blur": blur,
    "shift": shift,
    "jpeg": jpeg,
}
#: What a level means, per kind (plot axes and error messages).
UNITS = {
    "noise": "sigma, in [0, 1] value units",
    "color": "L: gains R x (1+L), B x (1-L)",
    "blur": "sigma, in pixels",
    "shift": "pixels right and down",
    "jpeg": "quality, 0 = no JPEG",
}


def _number(kind: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ReLumixError(f"--reference-perturb {kind}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ReLumixError(f"--reference-perturb {kind}: levels must be finite numbers, got {text!r}")
    return value


def check_level(kind: str, value: float) -> float:
    """``value`` if it is a valid level of ``kind`` (as an int for the whole-number kinds), else a clear error."""
    if kind in ("noise", "blur") and value < 0:
        raise ReLumixError(f"--reference-perturb {kind}: sigma must be 0 or more, got {value:g}")
    if kind == "color" and not 0 <= value <= 1:
        raise ReLumixError(f"--reference-perturb color: L must be in 0..1 (blue gain 1 - L), got {value:g}")
    if kind == "shift" and (value < 0 or not value.is_integer()):
        raise ReLumixError(f"--reference-perturb shift: levels are whole pixels, 0 or more, got {value:g}")
    if kind == "jpeg" and (not value.is_integer() or not 1 <= value <= 100):
        raise ReLumixError(f"--reference-perturb jpeg: quality must be a whole number in 1..100, got {value:g} "
                           "(the clean run is always included)")
    return int(value) if kind in ("shift", "jpeg") else value


def parse_perturb_spec(text: str) -> tuple[str, list[float]]:
    """``"KIND:L1,L2,..."`` -> ``(kind, [0, L1, L2, ...])``: level 0 (clean) first, repeats dropped, order kept."""
    kind, sep, rest = text.partition(":")
    kind = kind.strip().lower()
    if not sep:
        raise ReLumixError(f"--reference-perturb expects KIND:L1,L2,... (e.g. noise:0.02,0.05), got {text!r}")
    if kind not in PERTURBATIONS:
        raise ReLumixError(f"--reference-perturb: unknown kind {kind!r}; choose one of {', '.join(PERTURBATIONS)}")
    parts = [p.strip() for p in rest.split(",")]
    if not any(parts):
        raise ReLumixError(f"--reference-perturb {kind}: give at least one level, e.g. {kind}:{_EXAMPLE[kind]}")
    if not all(parts):
        raise ReLumixError(f"--reference-perturb {kind}: empty level in {text!r}")
    levels: list[float] = [0]
    for part in parts:
        value = check_level(kind, _number(kind, part))
        if value not in levels:
            levels.append(value)
    return kind, levels


_EXAMPLE = {"noise": "0.02,0.05", "color": "0.05,0.1", "blur": "1,2", "shift": "1,2,4", "jpeg": "90,50,10"}


def parse_perturb_specs(texts: Sequence[str] | None) -> dict[str, list[float]]:
    """Every ``--reference-perturb`` value -> ``{kind: levels}`` in the order given; a kind may appear once."""
    out: dict[str, list[float]] = {}
    for text in texts or ():
        kind, levels = parse_perturb_spec(text)
        if kind in out:
            raise ReLumixError(f"--reference-perturb {kind} is given twice; list all its levels in one, e.g. "
                               f"{kind}:{_EXAMPLE[kind]}")
        out[kind] = levels
    return out


def clip_seed(seed: int, clip_name: str) -> int:
    """The noise seed of one clip: from the run's seed and the clip's name, so a clip's noise does not depend on
    which other clips are evaluated and runs reproduce."""
    return zlib.crc32(f"{seed}:{clip_name}".encode())


def perturb_references(references: torch.Tensor, kind: str, level: float, seed: int) -> torch.Tensor:
    """``references`` ``[N,3,H,W]`` perturbed by ``kind`` at ``level`` (each reference gets its own noise)."""
    if kind not in PERTURBATIONS:
        raise ReLumixError(f"unknown perturbation {kind!r}; choose one of {', '.join(PERTURBATIONS)}")
    return PERTURBATIONS[kind](references, check_level(kind, float(level)) if level else 0, seed)


__all__ = [
    "PERTURBATIONS",
    "UNITS",
    "add_noise",
    "blur",
    "check_level",
    "clip_seed",
    "jpeg",
    "parse_perturb_spec",
    "parse_perturb_specs",
    "perturb_references",
    "shift",
    "white_balance",
]
