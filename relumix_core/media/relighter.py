"""A small image relighter: one directional light and a colour grade, for a reference frame without IC-Light.

ReLumix only needs *one* relit frame; any image tool may make it. This one needs no weights, so the demo and the
ComfyUI pack work out of the box. It reads the picture's smoothed luminance as a height field (bright = near,
the usual shape-from-shading guess), lights those pseudo-normals with a coloured directional light over a
coloured ambient, adds a soft falloff across the frame from the light's side, and finishes with exposure and
contrast. It is a plausible relight, not a physical one: that is what the video model is then asked to carry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import ReLumixError
from .blur import gaussian_blur

RGB = tuple[float, float, float]


@dataclass(frozen=True)
class Light:
    """Where the light comes from and what it looks like.

    ``azimuth`` is the direction the light comes *from* in the picture, in degrees (0 = from the right, 90 = from
    the top, 180 = from the left); ``elevation`` its height above the picture plane (90 = straight at the camera).
    """

    azimuth: float = 150.0
    elevation: float = 35.0
    color: RGB = (1.0, 0.82, 0.6)
    ambient: RGB = (0.28, 0.34, 0.5)
    intensity: float = 1.1
    #: How strongly image detail is read as relief (0: a flat surface, only the falloff and grade act).
    relief: float = 2.0
    #: Brightness change across the frame towards the light's side (0: none, 1: dark to bright).
    falloff: float = 0.5
    exposure: float = 1.0
    contrast: float = 1.05

    def check(self) -> None:
        for name in ("azimuth", "elevation", "intensity", "relief", "falloff", "exposure", "contrast"):
            value = float(getattr(self, name))
            if not math.isfinite(value):
                raise ReLumixError(f"light {name} must be a finite number, got {value}")
        if not 0.0 <= self.elevation <= 90.0:
            raise ReLumixError(f"light elevation must be within 0..90 degrees, got {self.elevation}")
        for name in ("intensity", "relief", "exposure", "contrast"):
            if getattr(self, name) < 0:
                raise ReLumixError(f"light {name} must be 0 or more, got {getattr(self, name)}")
        if not 0.0 <= self.falloff <= 1.0:
            raise ReLumixError(f"light falloff must be within 0..1, got {self.falloff}")
        for name in ("color", "ambient"):
            rgb = getattr(self, name)
            if len(rgb) != 3 or any(not math.isfinite(c) or c < 0 for c in rgb):
                raise ReLumixError(f"light {name} must be three numbers of 0 or more, got {rgb}")


#: Named looks for the CLI, the demo and the ComfyUI node.
PRESETS: dict[str, Light] = {
    "warm key from the left": Light(),
    "cool moonlight from above": Light(azimuth=80.0, elevation=45.0, color=(0.62, 0.75, 1.0),
                                       ambient=(0.12, 0.15, 0.28), intensity=0.95, exposure=0.9),
    "sunset from the right": Light(azimuth=10.0, elevation=15.0, color=(1.0, 0.55, 0.3),
                                   ambient=(0.25, 0.2, 0.35), intensity=1.25, falloff=0.7),
    "neon magenta": Light(azimuth=200.0, elevation=30.0, color=(1.0, 0.3, 0.85), ambient=(0.1, 0.25, 0.4),
                          intensity=1.2, falloff=0.6),
}


def parse_hex_color(text: str) -> RGB:
    """``"#ffd29a"`` (or without ``#``) -> (1.0, 0.82, 0.6); a clear error for anything else."""
    value = text.strip().lstrip("#")
    if len(value) != 6 or any(c not in "0123456789abcdefABCDEF" for c in value):
        raise ReLumixError(f"colour must be 6 hex digits like #ffd29a, got {text!r}")
    r, g, b = (int(value[i : i + 2], 16) / 255.0 for i in (0, 2, 4))
    return (r, g, b)


def _as_batch(image: torch.Tensor) -> torch.Tensor:
    if image.ndim == 3:
        image = image[None]
    if image.ndim != 4 or image.shape[1] != 3:
        raise ReLumixError(f"relight expects an RGB image [3,H,W] or [N,3,H,W], got shape {tuple(image.shape)}")
    if min(image.shape[-2:]) < 2:
        raise ReLumixError(f"relight needs an image of at least 2x2 pixels, got {tuple(image.shape[-2:])}")
    return image


def shading(image: torch.Tensor, light: Light) -> torch.Tensor:
    """Per-pixel light colour [N, 3, H, W] that :func:`relight_image` multiplies the picture by."""
    x = _as_batch(image).float().clamp(0, 1)
    n, _, h, w = x.shape
    luma = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
    height = gaussian_blur(luma, max(1.0, 0.015 * min(h, w)), edges="reflect") * light.relief
    # gradients per pixel, scaled so the relief does not depend on the resolution
    scale = min(h, w) / 64.0
    gx = (F.pad(height, (1, 1, 0, 0), mode="replicate")[..., 2:] - F.pad(height, (1, 1, 0, 0),
                                                                           mode="replicate")[..., :-2]) * scale
    gy = (F.pad(height, (0, 0, 1, 1), mode="replicate")[..., 2:, :] - F.pad(height, (0, 0, 1, 1),
                                                                              mode="replicate")[..., :-2, :]) * scale
    normal = torch.cat([-gx, gy, torch.ones_like(gx)], dim=1)  # image y grows downwards, the light's upwards
    normal = normal / normal.norm(dim=1, keepdim=True)
    az, el = math.radians(light.azimuth), math.radians(light.elevation)
    direction = torch.tensor([math.cos(az) * math.cos(el), math.sin(az) * math.cos(el), math.sin(el)])
    lambert = (normal * direction.view(1, 3, 1, 1)).sum(1, keepdim=True).clamp_min(0)
    flat = max(math.sin(el), 1e-3)  # a flat surface's response: the relief only redistributes light
    ys = torch.linspace(1, -1, h).view(1, 1, h, 1)
    xs = torch.linspace(-1, 1, w).view(1, 1, 1, w)
    across = (xs * math.cos(az) + ys * math.sin(az)) / math.sqrt(2)  # -0.7..0.7 towards the light
    ramp = 1 + light.falloff * across
    key = torch.tensor(light.color).view(1, 3, 1, 1) * light.intensity * (lambert / flat) * ramp
    return key + torch.tensor(light.ambient).view(1, 3, 1, 1)


def relight_image(image: torch.Tensor, light: Light | None = None) -> torch.Tensor:
    """Relight ``image`` ([3,H,W] or [N,3,H,W], values in 0..1) with ``light``; same shape, values in 0..1."""
    light = light or Light()
    light.check()
    batch = _as_batch(image)
    lit = batch.float().clamp(0, 1) * shading(batch, light) * light.exposure
    lit = ((lit - 0.5) * light.contrast + 0.5).clamp(0, 1)
    out = lit.to(image.dtype)
    return out[0] if image.ndim == 3 else out
