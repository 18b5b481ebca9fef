"""Scenes and lights for the ray-traced generator (:mod:`.raytrace`): sampling only, no rendering.

A scene is a perspective camera orbiting and dollying over a textured ground plane with 3-6 spheres and boxes, one or
two of which move in straight lines. Its lights are one of :data:`KINDS`. Everything is a dataclass of plain floats so
that a scene round-trips through ``meta.json``, and motion depends on the frame index only, so a longer clip starts
with the same frames as a shorter one. This sampler shares no code with the height-field generator on purpose: the
point of a second renderer is data the model has never seen the like of. numpy only.
"""

from __future__ import annotations

import colorsys
from dataclasses import asdict, dataclass, field

import numpy as np

KINDS = ("day", "sunset", "night", "studio", "overcast")
GROUND_PATTERNS = ("checker", "stripes", "patches")
OBJECT_PATTERNS = ("solid", "stripes")
NOISE_CELLS = 16  # lattice size of the periodic value noise behind the "patches" ground
SCENE_RADIUS = 2.4  # objects start within this distance of the origin
MAX_OBJECT_HEIGHT = 1.4  # point lights hang above this, so no light starts inside an object


def _r(values) -> list[float]:
    """Rounded floats: meta.json stays readable and the stored numbers are exactly the ones rendered."""
    return [round(float(v), 4) for v in values]


def _f(value: float) -> float:
    return round(float(value), 4)


@dataclass
class Camera:
    """Pinhole camera looking at a ground point: orbits about it, dollies in or out, and the point pans.

    ``pitch`` and ``fov`` are degrees (the frame is square: one fov for both axes); ``azimuth`` is radians from the
    target towards the eye; rates are per frame (``dolly`` is the change of log-distance).
    """

    target: list[float]
    pan: list[float]
    distance: float
    dolly: float
    pitch: float
    azimuth: float
    orbit: float
    fov: float


@dataclass
class Surface:
    """Albedo pattern (two colours, ``period`` world units, rotated by ``angle``) and Blinn-Phong response."""

    pattern: str
    color_a: list[float]
    color_b: list[float]
    period: float
    angle: float
    specular: float
    shininess: float


@dataclass
class Primitive:
    """A sphere (``half`` = radius three times) or an axis-aligned box, at ``center`` + ``velocity`` * frame."""

    shape: str
    center: list[float]
    half: list[float]
    velocity: list[float]
    surface: Surface


@dataclass
class RTSceneParams:
    """Everything light-independent: camera path, ground, objects and the haze distance of aerial perspective."""

    camera: Camera
    ground: Surface
    objects: list[Primitive]
    fog: float

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class PointLight:
    """A coloured point light with inverse-square falloff."""

    position: list[float]
    color: list[float]
    intensity: float


@dataclass
class RTLight:
    """One lighting condition: a directional sun (intensity 0 for none), hemispherical ambient, point lights, and
    the sky it implies (``zenith``/``horizon`` gradient plus a glow around the sun); ``exposure`` scales it all."""

    kind: str
    sun_direction: list[float]
    sun_color: list[float]
    sun_intensity: float
    ambient: list[float]
    zenith: list[float]
    horizon: list[float]
    glow: float
    points: list[PointLight] = field(default_factory=list)
    exposure: float = 1.0

    def to_json(self) -> dict:
        return asdict(self)


# -------------------------------------------------------------------------------------------------- scenes


def _color(rng: np.random.Generator, saturation: tuple[float, float], value: tuple[float, float]) -> list[float]:
    return _r(colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(*saturation), rng.uniform(*value)))


def _camera(rng: np.random.Generator) -> Camera:
    """Half the cameras look shallow enough that the horizon, hence sky, is in the upper part of the frame."""
    fov = rng.uniform(50, 65)
    pitch = rng.uniform(20, fov / 2 - 3) if rng.random() < 0.5 else rng.uniform(fov / 2 + 3, 50)
    return Camera(
        target=_r(rng.uniform(-0.3, 0.3, 2)),
        pan=_r(rng.uniform(-0.008, 0.008, 2)),
        distance=_f(rng.uniform(6.5, 9.5)),
        dolly=_f(rng.uniform(-0.004, 0.004)),
        pitch=_f(pitch),
        azimuth=_f(rng.uniform(0, 2 * np.pi)),
        orbit=_f(rng.uniform(0.004, 0.012) * rng.choice((-1, 1))),
        fov=_f(fov),
    )


def _ground(rng: np.random.Generator) -> Surface:
    a = np.asarray(_color(rng, (0.1, 0.6), (0.35, 0.75)))
    b = a * rng.uniform(0.35, 0.7) if rng.random() < 0.5 else np.asarray(_color(rng, (0.1, 0.7), (0.2, 0.7)))
    return Surface(str(rng.choice(GROUND_PATTERNS)), _r(a), _r(b), _f(rng.uniform(0.6, 2.0)),
                   _f(rng.uniform(0, np.pi)), _f(rng.uniform(0.0, 0.15)), 16.0)


def _object_surface(rng: np.random.Generator) -> Surface:
    a = np.asarray(_color(rng, (0.3, 0.9), (0.4, 0.95)))
    b = a * 0.45 if rng.random() < 0.5 else np.asarray(_color(rng, (0.2, 0.9), (0.5, 0.95)))
    return Surface(str(rng.choice(OBJECT_PATTERNS, p=(0.6, 0.4))), _r(a), _r(b), _f(rng.uniform(0.2, 0.6)),
                   _f(rng.uniform(0, np.pi)), _f(rng.uniform(0.0, 0.6)), _f(rng.uniform(8, 80)))


def _objects(rng: np.random.Generator) -> list[Primitive]:
    """3-6 spheres and boxes standing on the ground without overlapping (at frame 0); 1-2 of them move."""
    count = int(rng.integers(3, 7))
    moving = set(rng.choice(count, size=int(rng.integers(1, 3)), replace=False).tolist())
    objects: list[Primitive] = []
    for k in range(count):
        shape = "sphere" if rng.random() < 0.5 else "box"
        if shape == "sphere":
            r = rng.uniform(0.3, MAX_OBJECT_HEIGHT / 2)
            half = np.array([r, r, r])
        else:
            half = np.array([rng.uniform(0.2, 0.7), rng.uniform(0.2, 0.7), rng.uniform(0.15, MAX_OBJECT_HEIGHT / 2)])
        reach = float(np.hypot(half[0], half[1]))
        for _ in range(30):  # rejection sampling with a fixed number of draws keeps the stream deterministic
            xy = rng.uniform(-SCENE_RADIUS, SCENE_RADIUS, 2)
            free = all(np.hypot(*(xy - o.center[:2])) > reach + float(np.hypot(*o.half[:2])) for o in objects)
            if np.hypot(*xy) <= SCENE_RADIUS and free:
                break
        velocity = [0.0, 0.0, 0.0]
        if k in moving:
            heading, speed = rng.uniform(0, 2 * np.pi), rng.uniform(0.008, 0.025)
            velocity = _r((speed * np.cos(heading), speed * np.sin(heading), 0.0))
        objects.append(Primitive(shape, _r((xy[0], xy[1], half[2])), _r(half), velocity, _object_surface(rng)))
    return objects


def sample_scene(rng: np.random.Generator) -> RTSceneParams:
    """Draw the light-independent part of a scene."""
    camera = _camera(rng)
    ground = _ground(rng)
    objects = _objects(rng)
    return RTSceneParams(camera, ground, objects, _f(rng.uniform(30, 60)))


# -------------------------------------------------------------------------------------------------- lights


def _direction(rng: np.random.Generator, elevation_deg: tuple[float, float]) -> list[float]:
    azimuth = rng.uniform(0, 2 * np.pi)
    elevation = np.radians(rng.uniform(*elevation_deg))
    return _r((np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)))


def _tint(rng: np.random.Generator, base: tuple[float, float, float], jitter: float, scale: float = 1.0) -> list[float]:
    return _r(np.clip((np.asarray(base) + rng.uniform(-jitter, jitter, 3)) * scale, 0.0, None))


def _hue(hue: float, saturation: float = 0.8) -> list[float]:
    return _r(colorsys.hsv_to_rgb(hue % 1.0, saturation, 1.0))


def _point(rng: np.random.Generator, color: list[float], height: tuple[float, float], power: tuple[float, float],
           xy: np.ndarray | None = None) -> PointLight:
    xy = rng.uniform(-SCENE_RADIUS, SCENE_RADIUS, 2) if xy is None else xy
    return PointLight(_r((xy[0], xy[1], rng.uniform(*height))), color, _f(rng.uniform(*power)))


def sample_light(rng: np.random.Generator, kind: str) -> RTLight:
    """Draw one lighting condition of the given kind (see :data:`KINDS`)."""
    exposure = _f(rng.uniform(0.85, 1.15))
    if kind == "day":
        return RTLight(kind, _direction(rng, (35, 70)), _tint(rng, (1.0, 0.96, 0.9), 0.04),
                       _f(rng.uniform(1.4, 2.0)), _tint(rng, (0.16, 0.2, 0.28), 0.04),
                       _tint(rng, (0.22, 0.42, 0.85), 0.05), _tint(rng, (0.65, 0.78, 0.95), 0.05), 0.3,
                       exposure=exposure)
    if kind == "sunset":
        return RTLight(kind, _direction(rng, (4, 12)), _tint(rng, (1.0, 0.5, 0.2), 0.06),
                       _f(rng.uniform(2.0, 3.0)), _tint(rng, (0.12, 0.1, 0.16), 0.03),
                       _tint(rng, (0.12, 0.14, 0.35), 0.04), _tint(rng, (1.0, 0.45, 0.15), 0.05, rng.uniform(0.8, 1.2)),
                       1.0, exposure=exposure)
    if kind == "night":
        count = int(rng.integers(1, 4))
        points = [_point(rng, _tint(rng, (1.0, 0.6, 0.3), 0.1) if rng.random() < 0.6 else _hue(rng.uniform(0, 1)),
                         (1.6, 2.4), (1.5, 3.5)) for _ in range(count)]
        return RTLight(kind, _direction(rng, (30, 70)), _tint(rng, (0.6, 0.7, 1.0), 0.05),
                       _f(rng.uniform(0.04, 0.1)), _tint(rng, (0.012, 0.016, 0.04), 0.005),
                       _tint(rng, (0.004, 0.006, 0.025), 0.003), _tint(rng, (0.015, 0.02, 0.06), 0.005), 0.0,
                       points, exposure)
    if kind == "studio":
        hue, angle = rng.uniform(0, 1), rng.uniform(0, 2 * np.pi)
        points = []
        for k, offset in enumerate((0.0, rng.uniform(0.33, 0.67))):  # two clearly different hues, opposite sides
            a = angle + k * (np.pi + rng.uniform(-0.6, 0.6))
            xy = rng.uniform(2.0, 3.0) * np.array([np.cos(a), np.sin(a)])
            points.append(_point(rng, _hue(hue + offset), (2.0, 3.0), (3.0, 6.0), xy))
        return RTLight(kind, [0.0, 0.0, 1.0], [0.0, 0.0, 0.0], 0.0, _tint(rng, (0.03, 0.03, 0.035), 0.01),
                       _tint(rng, (0.03, 0.03, 0.035), 0.01), _tint(rng, (0.08, 0.08, 0.09), 0.02), 0.0, points,
                       exposure)
    if kind == "overcast":
        scale = rng.uniform(0.8, 1.2)
        return RTLight(kind, [0.0, 0.0, 1.0], [0.0, 0.0, 0.0], 0.0, _tint(rng, (0.55, 0.58, 0.62), 0.03, scale),
                       _tint(rng, (0.55, 0.57, 0.6), 0.03, scale), _tint(rng, (0.75, 0.76, 0.78), 0.03, scale), 0.0,
                       exposure=exposure)
    raise ValueError(f"unknown light kind {kind!r}; expected one of {', '.join(KINDS)}")
