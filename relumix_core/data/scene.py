"""Procedural 2.5D scenes for the synthetic generator: a height field with materials, seen by a moving camera.

The world is a set of analytic functions of world (x, y), so a frame is rendered by evaluating them at the world
positions of its pixels: pan, zoom and rotation are just an affine map from pixel grid to world, and moving objects
are the same functions with a shifted centre. Everything depends on frame *index* (not on the clip length), so a
longer clip starts with the same frames as a shorter one. numpy only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

SHAPES = ("sphere", "box", "cylinder")
PATTERNS = ("solid", "stripes", "checker", "noise")
GROUND_PATTERNS = ("checker", "stripes", "noise", "patches")
NOISE_CELLS = 32  # lattice size of the periodic value noise


@dataclass
class Material:
    """Albedo pattern and Blinn-Phong response; two colours so patterns have contrast."""

    pattern: str
    color_a: list[float]
    color_b: list[float]
    frequency: float
    angle: float
    specular: float
    shininess: float


@dataclass
class SceneObject:
    """One object on the ground; ``velocity`` is world units per frame (zero for static objects)."""

    shape: str
    center: list[float]
    radius: float
    height: float
    angle: float
    velocity: list[float]
    material: Material


@dataclass
class Camera:
    """Orthographic top-down camera: view width ``scale`` (world units), changing by per-frame rates."""

    center: list[float]
    pan: list[float]
    scale: float
    zoom: float
    angle: float
    spin: float


@dataclass
class SceneParams:
    """Everything that defines a scene's geometry and motion, independent of the lights."""

    ground: Material
    bumps: list[list[float]]  # [x, y, sigma, amplitude]
    objects: list[SceneObject]
    camera: Camera
    patches: list[list[float]] = field(default_factory=list)  # [x, y, r, g, b] Voronoi colour sites

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class Geometry:
    """Per-frame maps in view space; ``height`` is padded by ``pad`` pixels so shadows can come from off-screen."""

    height: np.ndarray  # [T, S+2P, S+2P] world units
    normal: np.ndarray  # [T, S, S, 3] world-space unit normals
    albedo: np.ndarray  # [T, S, S, 3] linear
    specular: np.ndarray  # [T, S, S]
    shininess: np.ndarray  # [T, S, S]
    world: np.ndarray  # [T, S, S, 3] world positions (x, y, height)
    axes: np.ndarray  # [T, 2, 2] world direction of the grid's column (u) and row (v) axes
    pixel: np.ndarray  # [T] world size of one pixel
    pad: int


# -------------------------------------------------------------------------------------------------- sampling


def _color(rng: np.random.Generator, lo: float = 0.15, hi: float = 0.9) -> list[float]:
    return [round(float(c), 4) for c in rng.uniform(lo, hi, 3)]


def _material(rng: np.random.Generator, patterns: tuple[str, ...], specular_max: float) -> Material:
    return Material(
        pattern=str(rng.choice(patterns)),
        color_a=_color(rng),
        color_b=_color(rng),
        frequency=round(float(rng.uniform(3.0, 12.0)), 4),
        angle=round(float(rng.uniform(0, np.pi)), 4),
        specular=round(float(rng.uniform(0.02, specular_max)), 4),
        shininess=round(float(np.exp(rng.uniform(np.log(6), np.log(120)))), 3),
    )


def _object(rng: np.random.Generator, moving: bool) -> SceneObject:
    shape = str(rng.choice(SHAPES))
    radius = float(rng.uniform(0.06, 0.16))
    speed = rng.uniform(0.006, 0.02) if moving else 0.0
    heading = rng.uniform(0, 2 * np.pi)
    return SceneObject(
        shape=shape,
        center=[round(float(v), 4) for v in rng.uniform(-0.45, 0.45, 2)],
        radius=round(radius, 4),
        height=round(float(radius if shape == "sphere" else rng.uniform(0.05, 0.25)), 4),
        angle=round(float(rng.uniform(0, np.pi)), 4),
        velocity=[round(float(speed * np.cos(heading)), 5), round(float(speed * np.sin(heading)), 5)],
        material=_material(rng, PATTERNS, 0.6),
    )


def _camera(rng: np.random.Generator) -> Camera:
    heading = rng.uniform(0, 2 * np.pi)
    speed = rng.uniform(0.004, 0.015)
    return Camera(
        center=[round(float(v), 4) for v in rng.uniform(-0.1, 0.1, 2)],
        pan=[round(float(speed * np.cos(heading)), 5), round(float(speed * np.sin(heading)), 5)],
        scale=round(float(rng.uniform(0.8, 1.2)), 4),
        zoom=round(float(rng.uniform(-0.012, 0.012)), 5),
        angle=round(float(rng.uniform(0, 2 * np.pi)), 4),
        spin=round(float(rng.uniform(-0.012, 0.012)), 5),
    )


def sample_scene(rng: np.random.Generator) -> SceneParams:
    """Draw a scene: textured ground with bumps, 3-6 static objects, 1-2 moving ones, a drifting camera."""
    ground = _material(rng, GROUND_PATTERNS, 0.15)
    bumps = [
        [round(float(v), 4) for v in (*rng.uniform(-0.8, 0.8, 2), rng.uniform(0.1, 0.3), rng.uniform(-0.04, 0.06))]
        for _ in range(int(rng.integers(2, 6)))
    ]
    n_static, n_moving = int(rng.integers(3, 7)), int(rng.integers(1, 3))
    objects = [_object(rng, False) for _ in range(n_static)] + [_object(rng, True) for _ in range(n_moving)]
    patches = [[round(float(v), 4) for v in (*rng.uniform(-1.2, 1.2, 2), *_color(rng))] for _ in range(16)]
    return SceneParams(ground=ground, bumps=bumps, objects=objects, camera=_camera(rng), patches=patches)


# -------------------------------------------------------------------------------------------------- textures


def value_noise(table: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Smooth periodic value noise in [0, 1] (bilinear with smoothstep) sampled at lattice coordinates."""
    n = table.shape[0]
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = x - x0, y - y0
    fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    i0, j0 = x0.astype(np.int64) % n, y0.astype(np.int64) % n
    i1, j1 = (i0 + 1) % n, (j0 + 1) % n
    top = table[j0, i0] * (1 - fx) + table[j0, i1] * fx
    bottom = table[j1, i0] * (1 - fx) + table[j1, i1] * fx
    return top * (1 - fy) + bottom * fy


def _pattern_mix(mat: Material, x: np.ndarray, y: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Blend weight of colour b, in [0, 1], for a pattern evaluated at world positions."""
    c, s = np.cos(mat.angle), np.sin(mat.angle)
    u, v = (x * c + y * s) * mat.frequency, (-x * s + y * c) * mat.frequency
    if mat.pattern == "stripes":
        return np.clip(0.5 + 1.5 * np.sin(2 * np.pi * u), 0.0, 1.0)
    if mat.pattern == "checker":
        return ((np.floor(u) + np.floor(v)) % 2).astype(np.float32)
    if mat.pattern == "noise":
        return value_noise(noise, u, v) * 0.65 + value_noise(noise, 2.3 * u + 7, 2.3 * v + 3) * 0.35
    return np.zeros_like(x)


def _ground_albedo(params: SceneParams, x: np.ndarray, y: np.ndarray, noise: np.ndarray) -> np.ndarray:
    mat = params.ground
    if mat.pattern == "patches":
        sites = np.asarray(params.patches, dtype=np.float32)
        d2 = (x[..., None] - sites[:, 0]) ** 2 + (y[..., None] - sites[:, 1]) ** 2
        base = sites[np.argmin(d2, axis=-1), 2:]
        grain = value_noise(noise, x * 20, y * 20)[..., None]
        return base * (0.8 + 0.4 * grain)
    w = _pattern_mix(mat, x, y, noise)[..., None]
    return np.asarray(mat.color_a, np.float32) * (1 - w) + np.asarray(mat.color_b, np.float32) * w


# -------------------------------------------------------------------------------------------------- geometry


def _object_height(obj: SceneObject, cx: float, cy: float, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Height of the object above the ground at (x, y); -inf outside its footprint."""
    dx, dy = x - cx, y - cy
    r = obj.radius
    if obj.shape == "box":
        c, s = np.cos(obj.angle), np.sin(obj.angle)
        inside = (np.abs(dx * c + dy * s) < r) & (np.abs(-dx * s + dy * c) < 0.7 * r)
        return np.where(inside, obj.height, -np.inf)
    d2 = dx * dx + dy * dy
    if obj.shape == "cylinder":
        return np.where(d2 < r * r, obj.height, -np.inf)
    return np.where(d2 < r * r, np.sqrt(np.maximum(r * r - d2, 0.0)), -np.inf)  # dome of a sphere


def _ground_height(params: SceneParams, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    h = np.zeros_like(x)
    for bx, by, sigma, amp in params.bumps:
        h += amp * np.exp(-((x - bx) ** 2 + (y - by) ** 2) / (2 * sigma * sigma))
    return h


def camera_frame(cam: Camera, t: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Centre, grid axes (u = columns, v = rows) in world, and view width at frame index ``t``."""
    angle = cam.angle + cam.spin * t
    c, s = np.cos(angle), np.sin(angle)
    center = np.asarray(cam.center) + np.asarray(cam.pan) * t
    return center, np.array([[c, s], [-s, c]]), cam.scale * float(np.exp(cam.zoom * t))


def _frame_world(cam: Camera, t: int, size: int, pad: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """World x, y of every pixel of the padded grid, plus the axes and pixel size."""
    center, axes, width = camera_frame(cam, t)
    ds = width / size
    n = size + 2 * pad
    g = (np.arange(n, dtype=np.float64) - (n - 1) / 2) * ds
    gu, gv = g[None, :], g[:, None]
    x = center[0] + gu * axes[0, 0] + gv * axes[1, 0]
    y = center[1] + gu * axes[0, 1] + gv * axes[1, 1]
    return x, y, axes, ds


def _layers(params: SceneParams, t: int, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Height field and which layer wins (0 = ground, k = object k-1) for frame ``t``."""
    ground = _ground_height(params, x, y)
    height, owner = ground.copy(), np.zeros(x.shape, np.int64)
    for k, obj in enumerate(params.objects, start=1):
        cx, cy = obj.center[0] + obj.velocity[0] * t, obj.center[1] + obj.velocity[1] * t
        h = ground + _object_height(obj, cx, cy, x, y)
        top = h > height
        height = np.where(top, h, height)
        owner[top] = k
    return height, owner


def _materials(params: SceneParams, owner: np.ndarray, x: np.ndarray, y: np.ndarray, noise: np.ndarray, t: int):
    """Albedo, specular strength and shininess per pixel; object textures move with their object."""
    albedo = _ground_albedo(params, x, y, noise).astype(np.float32)
    spec = np.full(x.shape, params.ground.specular, np.float32)
    shin = np.full(x.shape, params.ground.shininess, np.float32)
    for k, obj in enumerate(params.objects, start=1):
        mask = owner == k
        if not mask.any():
            continue
        ox, oy = x[mask] - obj.velocity[0] * t, y[mask] - obj.velocity[1] * t
        w = _pattern_mix(obj.material, ox, oy, noise)[:, None]
        albedo[mask] = np.asarray(obj.material.color_a) * (1 - w) + np.asarray(obj.material.color_b) * w
        spec[mask], shin[mask] = obj.material.specular, obj.material.shininess
    return albedo, spec, shin


def _normals(height: np.ndarray, axes: np.ndarray, ds: float) -> np.ndarray:
    """World-space normals of the height field by central differences along the grid axes."""
    gv, gu = np.gradient(height, ds)
    gx = gu * axes[0, 0] + gv * axes[1, 0]
    gy = gu * axes[0, 1] + gv * axes[1, 1]
    n = np.stack([-gx, -gy, np.ones_like(gx)], axis=-1)
    return n / np.linalg.norm(n, axis=-1, keepdims=True)


def render_geometry(params: SceneParams, noise: np.ndarray, frames: list[int], size: int) -> Geometry:
    """Rasterise the scene for the given frame indices: the light-independent half of rendering."""
    pad = size // 2
    crop = (slice(pad, pad + size), slice(pad, pad + size))
    out: dict[str, list] = {k: [] for k in ("height", "normal", "albedo", "spec", "shin", "world", "axes", "ds")}
    for t in frames:
        x, y, axes, ds = _frame_world(params.camera, t, size, pad)
        height, owner = _layers(params, t, x, y)
        normal = _normals(height, axes, ds)[crop]
        xc, yc, hc = x[crop], y[crop], height[crop]
        albedo, spec, shin = _materials(params, owner[crop], xc, yc, noise, t)
        for key, value in zip(
            out, (height, normal, albedo, spec, shin, np.stack([xc, yc, hc], -1), axes, ds), strict=True
        ):
            out[key].append(value)
    f32 = {k: np.asarray(v, np.float32) for k, v in out.items()}
    return Geometry(
        height=f32["height"], normal=f32["normal"], albedo=f32["albedo"], specular=f32["spec"],
        shininess=f32["shin"], world=f32["world"], axes=f32["axes"], pixel=f32["ds"], pad=pad,
    )
