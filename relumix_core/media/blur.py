"""The one Gaussian blur of frames: detail transfer and the simple relighter both use it."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

EdgeMode = Literal["replicate", "reflect"]


def gaussian_blur(frames: torch.Tensor, sigma: float, edges: EdgeMode = "replicate") -> torch.Tensor:
    """Separable Gaussian blur of ``[N, C, H, W]`` (kernel 3 sigma each side).

    ``edges``: ``replicate`` repeats the border pixels; ``reflect`` mirrors the image and shrinks the kernel on
    images smaller than it (mirroring cannot reach further than the image).
    """
    radius = max(1, math.ceil(3 * sigma))
    if edges == "reflect":
        radius = min(radius, frames.shape[-1] - 1, frames.shape[-2] - 1)
        if radius < 1:
            return frames
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    weights = (kernel / kernel.sum()).tolist()
    out = _blur_along(F.pad(frames, (0, 0, radius, radius), mode=edges), weights, dim=-2)
    return _blur_along(F.pad(out, (radius, radius, 0, 0), mode=edges), weights, dim=-1)


def _blur_along(padded: torch.Tensor, weights: list[float], dim: int) -> torch.Tensor:
    """One pass of the separable blur as a weighted sum of shifted views: on the CPU 2 to 6 times faster than a
    depthwise convolution at every radius measured (14 full-HD frames, radius 5: 0.8 s against 4.6 s)."""
    size = padded.shape[dim] - len(weights) + 1
    out = padded.narrow(dim, 0, size) * weights[0]
    for offset, weight in enumerate(weights[1:], start=1):
        out.add_(padded.narrow(dim, offset, size), alpha=weight)
    return out
