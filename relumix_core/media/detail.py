"""Detail transfer: give the relit frames back the fine texture that the VAE's latent bottleneck blurs away.

The UNet works on latents 8x smaller than the frames, so its decoded output is right in its light but soft in its
texture. Frame t of the source has that texture, in the right place. Light multiplies a surface's colour, so the
source's texture is its ratio to a blurred copy of itself; the output keeps the relit frame's light (its blurred
copy) and takes that ratio from the source:

    out = blur(relit) * (source + eps) / (blur(source) + eps)

Only structure finer than the blur radius moves over, so a wide radius also carries the source's old shadow edges
and hurts; relumix-tiny's radius was chosen on a validation set (see the model card). It is the multiplicative
"detail transfer" that IC-Light users apply after relighting, and is off (radius 0) for the authors' model.
"""

from __future__ import annotations

import math

import torch

from ..errors import ReLumixError
from .blur import gaussian_blur

#: Added to both sides of the texture ratio, so near-black source pixels do not turn noise into texture.
DETAIL_EPS = 0.02


def transfer_detail(relit: torch.Tensor, source: torch.Tensor, sigma: float) -> torch.Tensor:
    """Relit frames ``[T, 3, H, W]`` in [0, 1] with the texture finer than ``sigma`` pixels taken from ``source``
    (the same frames before relighting, same shape). ``sigma`` 0 returns ``relit`` unchanged."""
    if not math.isfinite(sigma) or sigma < 0:
        raise ReLumixError(f"detail radius must be 0 (off) or a positive number of pixels, got {sigma}")
    if relit.dim() != 4 or tuple(relit.shape) != tuple(source.shape):
        raise ReLumixError(
            f"detail transfer needs relit and source frames of the same shape [T,3,H,W]; got {tuple(relit.shape)} "
            f"and {tuple(source.shape)}"
        )
    if sigma == 0:
        return relit
    work = torch.float32 if relit.dtype in (torch.float16, torch.bfloat16) else relit.dtype
    r, s = relit.to(work), source.to(device=relit.device, dtype=work)
    texture = (s + DETAIL_EPS) / (gaussian_blur(s, sigma) + DETAIL_EPS)
    return (gaussian_blur(r, sigma) * texture).clamp(0.0, 1.0).to(relit.dtype)


__all__ = ["DETAIL_EPS", "transfer_detail"]
