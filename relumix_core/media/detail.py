"""Detail transfer: give the relit frames back the fine texture that the VAE's latent bottleneck blurs away.

The UNet works on latents 8x smaller than the frames, so its decoded output is right in its light but soft in its
texture. Frame t of the source has that texture, in the right place. Light multiplies a surface's colour, so the
source's texture is its ratio to a blurred copy of itself; the output keeps the relit frame's light (its blurred
copy) and takes that ratio from the source:

    out = blur(relit) * (source + eps) / (blur(source) + eps)

Only structure finer than the blur radius moves over, so a wide radius also carries the source's old shadow edges
and hurts; relumix-tiny's radius was chosen on a validation set (see the model card). It is the multiplicative
"detail transfer" that IC-Light users apply after relighting, and is off (radius 0) for the authors' model.

*Far detail*: a small model is right in its light near a keyframe, where its window looks like a training clip, and
less so further away (the reference's view has moved on, errors of earlier windows carry over). There it is trusted
only at a coarse scale: the same transfer with a far radius, its light field ``blur(relit) / blur(source)`` averaged
over a few frames (a field that coarse barely moves, and averaging removes window-to-window flicker), blended in as
``1 - exp(-(distance - start) / FAR_FADE)`` past the first window after the nearest keyframe.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import ReLumixError
from .blur import gaussian_blur

#: Added to both sides of the texture ratio, so near-black source pixels do not turn noise into texture.
DETAIL_EPS = 0.02
#: Frames over which the far radius takes over, and the time radius (frames) of the far light field's average;
#: chosen on the validation split (64-frame clips; docs/evaluation.md gives the numbers).
FAR_FADE = 16.0
FAR_TIME_SIGMA = 2.0


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


def far_detail_weights(num_frames: int, keys: list[int], start: int) -> torch.Tensor:
    """[T] weight of the far transfer per frame: 0 up to ``start`` frames from the nearest of ``keys``, then rising
    towards 1 over :data:`FAR_FADE` frames."""
    if not keys:
        raise ReLumixError("far detail needs at least one keyframe")
    time = torch.arange(num_frames, dtype=torch.float32)
    distance = (time[:, None] - torch.tensor(keys, dtype=torch.float32)[None]).abs().min(dim=1).values
    return 1 - torch.exp(-(distance - start).clamp_min(0) / FAR_FADE)


def smooth_in_time(frames: torch.Tensor, sigma: float) -> torch.Tensor:
    """``frames`` [T,...] averaged over time with a Gaussian of ``sigma`` frames (3 sigma each side, renormalised at
    the clip's ends, so the first and last frames are not pulled towards zero)."""
    if sigma <= 0 or frames.shape[0] < 2:
        return frames
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    out = torch.empty_like(frames)
    count = frames.shape[0]
    for t in range(count):
        lo, hi = max(0, t - radius), min(count, t + radius + 1)
        w = kernel[lo - t + radius: hi - t + radius].to(frames)
        out[t] = torch.tensordot(w / w.sum(), frames[lo:hi], dims=1)
    return out


def blend_far_detail(near: torch.Tensor, relit: torch.Tensor, source: torch.Tensor, sigma_far: float,
                     weights: torch.Tensor, light_size: tuple[int, int] | None = None) -> torch.Tensor:
    """``near`` (frames after the near detail transfer, [T,3,H,W]) blended with ``weights`` [T] towards the far
    transfer of ``relit`` (before the near one) onto ``source``: its light field ``blur(relit) / blur(source)`` at
    ``sigma_far`` pixels, averaged over :data:`FAR_TIME_SIGMA` frames, times the source.

    ``light_size`` (the processing size) is where the light field is computed, ``sigma_far`` in its pixels: the
    model made its light there, and a field that coarse loses nothing when resized up, while a kernel of
    ``6 sigma`` output pixels would cost over a thousand taps per pixel at 1080p."""
    if not math.isfinite(sigma_far) or sigma_far <= 0:
        raise ReLumixError(f"far detail radius must be a positive number of pixels, got {sigma_far}")
    if near.shape != relit.shape or tuple(source.shape) != tuple(relit.shape) or weights.shape != near.shape[:1]:
        raise ReLumixError(f"far detail needs near, relit and source frames [T,3,H,W] of one shape and [T] weights; "
                           f"got {tuple(near.shape)}, {tuple(relit.shape)}, {tuple(source.shape)}, "
                           f"{tuple(weights.shape)}")
    work = torch.float32 if relit.dtype in (torch.float16, torch.bfloat16) else relit.dtype
    r, s = relit.to(work), source.to(device=relit.device, dtype=work)
    size = tuple(r.shape[-2:])
    small_r, small_s = r, s
    if light_size is not None and tuple(light_size) != size:
        small_r, small_s = (F.interpolate(x, size=light_size, mode="area") for x in (r, s))
    light = gaussian_blur(small_r, sigma_far) / (gaussian_blur(small_s, sigma_far) + DETAIL_EPS)
    light = smooth_in_time(light, FAR_TIME_SIGMA)
    if tuple(light.shape[-2:]) != size:
        light = F.interpolate(light, size=size, mode="bilinear", align_corners=False)
    far = (light * (s + DETAIL_EPS)).clamp(0.0, 1.0)
    w = weights.to(device=relit.device, dtype=work).view(-1, 1, 1, 1)
    return ((1 - w) * near.to(work) + w * far).to(near.dtype)


__all__ = ["DETAIL_EPS", "FAR_FADE", "FAR_TIME_SIGMA", "blend_far_detail", "far_detail_weights", "smooth_in_time",
           "transfer_detail"]
