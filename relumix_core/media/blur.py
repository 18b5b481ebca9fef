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
    kernel = (kernel / kernel.sum()).to(device=frames.device, dtype=frames.dtype)
    channels = frames.shape[1]
    out = F.pad(frames, (0, 0, radius, radius), mode=edges)
    out = F.conv2d(out, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)
    out = F.pad(out, (radius, radius, 0, 0), mode=edges)
    return F.conv2d(out, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
