"""Lights for the synthetic generator: sun/moon with height-field shadows, ambient sky, coloured point lights.

Shading is Lambert + Blinn-Phong on the light-independent :class:`~relumix_core.data.scene.Geometry`, so every light
of a scene sees exactly the same motion. Shadows march from each pixel towards the sun through the padded height
map; a soft shadow averages several directions spread over the sun's angular radius. numpy only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from .scene import Geometry

KINDS = ("noon", "soft_day", "sunset", "night", "colored")
SOFT_SAMPLES = 6  # directions averaged for a soft shadow
SHADOW_BIAS = 1e-3  # world units; keeps a lit surface from shadowing itself
WHITE_POINT = 2.0  # extended Reinhard: radiance that maps to white


@dataclass
class PointLight:
    """A coloured point light at world (x, y, z) with inverse-square falloff softened by ``radius``."""

    position: list[float]
    color: list[float]
    intensity: float
    radius: float


@dataclass
class LightParams:
    """One lighting condition; ``softness`` is the sun's angular radius in radians (0 = hard shadows)."""

    kind: str
    sun_direction: list[float]
    sun_color: list[float]
    sun_intensity: float
    softness: float
    ambient: list[float]
    points: list[PointLight] = field(default_factory=list)
    exposure: float = 1.0

    def to_json(self) -> dict:
        return asdict(self)


# -------------------------------------------------------------------------------------------------- sampling


def _r(values) -> list[float]:
    return [round(float(v), 4) for v in values]


def _direction(rng: np.random.Generator, elevation_deg: tuple[float, float]) -> list[float]:
    azimuth = rng.uniform(0, 2 * np.pi)
    elevation = np.radians(rng.uniform(*elevation_deg))
    return _r((np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)))


def _tint(rng: np.random.Generator, base: tuple[float, float, float], jitter: float) -> list[float]:
    return _r(np.clip(np.asarray(base) + rng.uniform(-jitter, jitter, 3), 0.0, 1.0))


def _points(rng: np.random.Generator, count: int, warm: bool, power: tuple[float, float]) -> list[PointLight]:
    lights = []
    for _ in range(count):
        hue = (1.0, 0.62, 0.3) if warm else tuple(rng.dirichlet((0.6, 0.6, 0.6)) * 1.6)
        lights.append(
            PointLight(
                position=_r((*rng.uniform(-0.45, 0.45, 2), rng.uniform(0.12, 0.35))),
                color=_tint(rng, hue, 0.08),
                intensity=round(float(rng.uniform(*power)), 4),
                radius=round(float(rng.uniform(0.15, 0.3)), 4),
            )
        )
    return lights


def sample_light(rng: np.random.Generator, kind: str) -> LightParams:
    """Draw one lighting condition of the given kind (see :data:`KINDS`)."""
    if kind == "noon":
        return LightParams(kind, _direction(rng, (45, 75)), _tint(rng, (1.0, 0.96, 0.9), 0.04),
                           round(float(rng.uniform(1.3, 1.9)), 4), 0.0, _tint(rng, (0.16, 0.2, 0.28), 0.04))
    if kind == "soft_day":
        return LightParams(kind, _direction(rng, (30, 60)), _tint(rng, (1.0, 0.97, 0.93), 0.04),
                           round(float(rng.uniform(0.9, 1.4)), 4), round(float(rng.uniform(0.08, 0.2)), 4),
                           _tint(rng, (0.25, 0.27, 0.32), 0.05))
    if kind == "sunset":
        return LightParams(kind, _direction(rng, (7, 18)), _tint(rng, (1.0, 0.55, 0.25), 0.06),
                           round(float(rng.uniform(2.0, 3.0)), 4), round(float(rng.uniform(0.0, 0.05)), 4),
                           _tint(rng, (0.16, 0.13, 0.2), 0.03))
    if kind == "night":
        return LightParams(kind, _direction(rng, (30, 70)), _tint(rng, (0.6, 0.7, 1.0), 0.05),
                           round(float(rng.uniform(0.06, 0.14)), 4), round(float(rng.uniform(0.03, 0.1)), 4),
                           _tint(rng, (0.015, 0.02, 0.05), 0.008), _points(rng, int(rng.integers(1, 4)), True,
                                                                           (0.02, 0.06)))
    if kind == "colored":
        return LightParams(kind, _direction(rng, (40, 80)), _tint(rng, (0.9, 0.9, 0.9), 0.1),
                           round(float(rng.uniform(0.2, 0.5)), 4), round(float(rng.uniform(0.0, 0.15)), 4),
                           _tint(rng, (0.06, 0.06, 0.08), 0.03), _points(rng, int(rng.integers(2, 4)), False,
                                                                         (0.05, 0.12)))
    raise ValueError(f"unknown light kind {kind!r}; expected one of {', '.join(KINDS)}")


# -------------------------------------------------------------------------------------------------- shadows


def _jittered(direction: np.ndarray, softness: float) -> list[np.ndarray]:
    """Directions spread over a disk of angular radius ``softness`` (a fixed Vogel spiral: deterministic)."""
    if softness <= 0:
        return [direction]
    helper = np.array([0.0, 0.0, 1.0]) if abs(direction[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    e1 = np.cross(direction, helper)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(direction, e1)
    dirs = []
    for i in range(SOFT_SAMPLES):
        r = softness * np.sqrt((i + 0.5) / SOFT_SAMPLES)
        a = i * 2.39996323
        d = direction + r * (np.cos(a) * e1 + np.sin(a) * e2)
        d[2] = max(d[2], 0.02)
        dirs.append(d / np.linalg.norm(d))
    return dirs


def _frame_visibility(height: np.ndarray, pad: int, axes: np.ndarray, ds: float, direction: np.ndarray) -> np.ndarray:
    """1 where the view pixel sees the light along ``direction``, 0 where the height field blocks it."""
    size = height.shape[0] - 2 * pad
    centre = height[pad:pad + size, pad:pad + size]
    flat = float(np.hypot(direction[0], direction[1]))
    if flat < 1e-6:
        return np.ones_like(centre)
    du = (direction[0] * axes[0, 0] + direction[1] * axes[0, 1]) / flat  # grid step per pixel travelled
    dv = (direction[0] * axes[1, 0] + direction[1] * axes[1, 1]) / flat
    rise = ds * direction[2] / flat  # the ray's height gain per pixel
    steps = min(pad, int(np.ceil((float(height.max()) - float(centre.min())) / max(rise, 1e-9))))
    lit = np.ones(centre.shape, bool)
    for k in range(1, steps + 1):
        r, c = pad + int(round(k * dv)), pad + int(round(k * du))
        lit &= height[r:r + size, c:c + size] <= centre + k * rise + SHADOW_BIAS
    return lit.astype(np.float32)


def shadow_mask(geom: Geometry, light: LightParams) -> np.ndarray:
    """Sun visibility [T, S, S] in [0, 1]: 0 in full shadow, fractional in a soft shadow's penumbra."""
    dirs = _jittered(np.asarray(light.sun_direction, np.float64), light.softness)
    vis = np.zeros(geom.albedo.shape[:3], np.float32)
    for t in range(vis.shape[0]):
        for d in dirs:
            vis[t] += _frame_visibility(geom.height[t], geom.pad, geom.axes[t], float(geom.pixel[t]), d)
    return vis / len(dirs)


# -------------------------------------------------------------------------------------------------- shading


def _blinn_phong(geom: Geometry, to_light: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lambert term and specular lobe for unit ``to_light`` [..., 3]; the camera looks straight down (+z)."""
    n = geom.normal
    ndl = np.clip(np.sum(n * to_light, -1), 0.0, None)
    half = to_light + np.array([0.0, 0.0, 1.0], np.float32)
    half /= np.linalg.norm(half, axis=-1, keepdims=True)
    ndh = np.clip(np.sum(n * half, -1), 0.0, None)
    spec = geom.specular * ndh ** geom.shininess * (ndl > 0)
    return ndl, spec


def _point_light(geom: Geometry, point: PointLight) -> np.ndarray:
    delta = np.asarray(point.position, np.float32) - geom.world
    dist2 = np.sum(delta * delta, -1, keepdims=True)
    ndl, spec = _blinn_phong(geom, delta / np.sqrt(dist2))
    falloff = point.intensity / (dist2[..., 0] + point.radius**2)
    color = np.asarray(point.color, np.float32)
    return (geom.albedo * ndl[..., None] + spec[..., None]) * (falloff[..., None] * color)


def shade(geom: Geometry, light: LightParams, shadows: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Linear radiance [T, S, S, 3] and sun visibility [T, S, S]; ``shadows=False`` gives the unshadowed shading."""
    vis = shadow_mask(geom, light) if shadows else np.ones(geom.albedo.shape[:3], np.float32)
    sun = np.asarray(light.sun_direction, np.float32)
    ndl, spec = _blinn_phong(geom, sun)
    sun_rgb = np.asarray(light.sun_color, np.float32) * light.sun_intensity
    sky = np.asarray(light.ambient, np.float32) * (0.55 + 0.45 * geom.normal[..., 2:3])
    direct = (geom.albedo * ndl[..., None] + spec[..., None]) * (vis[..., None] * sun_rgb)
    radiance = geom.albedo * sky + direct
    for point in light.points:
        radiance = radiance + _point_light(geom, point)
    return radiance * light.exposure, vis


def to_srgb8(radiance: np.ndarray) -> np.ndarray:
    """Extended Reinhard tone map, then the sRGB curve, to uint8."""
    x = np.clip(radiance, 0.0, None)
    mapped = np.clip(x * (1 + x / WHITE_POINT**2) / (1 + x), 0.0, 1.0)
    srgb = np.where(mapped <= 0.0031308, 12.92 * mapped, 1.055 * mapped ** (1 / 2.4) - 0.055)
    return np.round(srgb * 255).astype(np.uint8)
