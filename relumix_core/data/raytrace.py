"""A second, independent synthetic renderer: a small perspective ray tracer writing the layout of :mod:`.synth`.

The height-field generator (:mod:`.synth`) sees its world from straight above; a model trained on it should also be
tested on "paired clips from a renderer it has never seen". This one traces a pinhole camera over a textured ground
plane with spheres and boxes (:mod:`.raytrace_scene`), with visible sky when the horizon is in view, hard shadows
from shadow rays, Lambert + Blinn-Phong shading, ambient occlusion and aerial haze, 2x2 supersampling, and the same
tone map as :mod:`.synth`. All lights of a scene share one geometry pass per frame (:func:`frame_geometry`), so
they see identical motion.

Determinism as in :mod:`.synth`: scene ``i`` comes from ``SeedSequence([seed, i])``, its light kinds from
``[seed, i, 1]`` and light ``j`` from ``[seed, i, 1, j]``; frame ``t`` depends only on its index. The same arguments
give byte-identical PNGs. numpy (and Pillow for PNG) only; everything is vectorised over pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .light import to_srgb8
from .raytrace_scene import KINDS, NOISE_CELLS, Primitive, RTLight, RTSceneParams, Surface, sample_light, sample_scene
from .scene import value_noise
from .synth import LAYOUT, SCENES_PER_MAP, check_args, shuffled_kinds, write_scenes

GENERATOR_VERSION = 1
SUPERSAMPLE = 2  # rays per pixel along each axis; averaged in linear light before tone mapping
BIAS = 1e-3  # world units a shadow ray starts off its surface, so a lit surface does not shadow itself
AO_DIRECTIONS = 6  # sky directions tested per ray for ambient occlusion (rotated per sub-pixel)
AO_RANGE = 2.5  # only occluders this close darken the ambient light
POINT_SOFTENING = 0.05  # added to the squared distance of a point light, so falloff stays finite near it
_LIGHT_STREAM = 1


@dataclass
class RTScene:
    """A sampled scene: light-independent parameters, the noise table of its ground, and its lights."""

    index: int
    params: RTSceneParams
    noise: np.ndarray
    lights: list[RTLight]


@dataclass
class Primitives:
    """The objects at one frame as arrays (spheres and boxes apart), for camera rays and shadow rays."""

    sphere_center: np.ndarray  # [K, 3]
    sphere_radius: np.ndarray  # [K]
    box_lo: np.ndarray  # [M, 3]
    box_hi: np.ndarray  # [M, 3]

    @classmethod
    def at(cls, objects: list[Primitive], frame: int) -> Primitives:
        """Positions after ``frame`` frames of linear motion."""
        spheres = [o for o in objects if o.shape == "sphere"]
        boxes = [o for o in objects if o.shape == "box"]

        def centers(items: list[Primitive]) -> np.ndarray:
            return np.array([np.add(o.center, np.multiply(o.velocity, frame)) for o in items]).reshape(-1, 3)

        half = np.array([o.half for o in boxes], np.float64).reshape(-1, 3)
        box_c = centers(boxes)
        return cls(centers(spheres), np.array([o.half[0] for o in spheres], np.float64), box_c - half, box_c + half)

    def intervals(self, origins: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Entry and exit distances [N, K+M] of rays against every object (entry inf on a miss), and for boxes the
        axis [N, M] through which the ray enters (for normals)."""
        oc = origins[:, None, :] - self.sphere_center[None]
        b = np.einsum("nkc,nc->nk", oc, dirs)
        disc = b * b - (np.einsum("nkc,nkc->nk", oc, oc) - self.sphere_radius**2)
        root = np.sqrt(np.maximum(disc, 0.0))
        s_near, s_far = np.where(disc >= 0, -b - root, np.inf), np.where(disc >= 0, -b + root, -np.inf)
        safe = np.where(np.abs(dirs) < 1e-12, 1e-12, dirs)[:, None, :]
        t1 = (self.box_lo[None] - origins[:, None, :]) / safe
        t2 = (self.box_hi[None] - origins[:, None, :]) / safe
        lo, hi = np.minimum(t1, t2), np.maximum(t1, t2)
        b_near, b_far = lo.max(-1), hi.min(-1)
        miss = b_far < b_near
        b_near, b_far = np.where(miss, np.inf, b_near), np.where(miss, -np.inf, b_far)
        return np.concatenate([s_near, b_near], 1), np.concatenate([s_far, b_far], 1), lo.argmax(-1)

    def occluded(self, origins: np.ndarray, dirs: np.ndarray, max_t: np.ndarray | float = np.inf) -> np.ndarray:
        """True where the segment from ``origins`` along unit ``dirs`` [N, 3] up to ``max_t`` hits any object."""
        if not len(origins) or not len(self.sphere_radius) + len(self.box_lo):
            return np.zeros(len(origins), bool)
        near, far, _ = self.intervals(origins, dirs)
        limit = np.broadcast_to(np.asarray(max_t, np.float64), (len(origins),))[:, None]
        return ((near < limit) & (far > BIAS) & (near <= far)).any(1)


@dataclass
class FrameGeometry:
    """What camera rays see in one frame, at ``SUPERSAMPLE`` x the frame size, flattened to N rays.

    Light-independent by construction (no light is an argument of :func:`frame_geometry`), so every light of a
    scene is shaded on the same hits. Sky rays have ``hit`` False and ``dist`` inf.
    """

    shape: tuple[int, int]  # rays per column and row (frame size x supersample)
    dirs: np.ndarray  # [N, 3] unit ray directions
    hit: np.ndarray  # [N] bool, False where the ray sees sky
    dist: np.ndarray  # [N] distance to the hit
    points: np.ndarray  # [N, 3]
    normals: np.ndarray  # [N, 3]
    albedo: np.ndarray  # [N, 3]
    specular: np.ndarray  # [N]
    shininess: np.ndarray  # [N]
    sky_vis: np.ndarray  # [N] fraction of nearby sky not blocked by objects (ambient occlusion)
    fog: np.ndarray  # [N] 0 near the camera, towards 1 far away: haze blends into the horizon colour
    prims: Primitives


# -------------------------------------------------------------------------------------------------- camera


def camera_rays(params: RTSceneParams, frame: int, rays: int) -> tuple[np.ndarray, np.ndarray]:
    """Eye [3] and unit ray directions [rays*rays, 3] (row-major, top row first) of the camera at ``frame``."""
    cam = params.camera
    target = np.array([*np.add(cam.target, np.multiply(cam.pan, frame)), 0.0])
    azimuth = cam.azimuth + cam.orbit * frame
    distance = cam.distance * np.exp(cam.dolly * frame)
    pitch = np.radians(cam.pitch)
    eye = target + distance * np.array([np.cos(pitch) * np.cos(azimuth), np.cos(pitch) * np.sin(azimuth),
                                        np.sin(pitch)])
    forward = (target - eye) / distance
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    coords = ((np.arange(rays) + 0.5) / rays * 2 - 1) * np.tan(np.radians(cam.fov) / 2)
    x, y = np.meshgrid(coords, -coords)
    dirs = forward + x.reshape(-1, 1) * right + y.reshape(-1, 1) * up
    return eye, dirs / np.linalg.norm(dirs, axis=1, keepdims=True)


# -------------------------------------------------------------------------------------------------- materials


def _ground_albedo(surface: Surface, noise: np.ndarray, points: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """Ground pattern at ``points``; the pattern fades to its mean where a pixel covers more than a fraction of a
    period (a cheap mip map), so far-away checkers turn into haze instead of moire."""
    c, s = np.cos(surface.angle), np.sin(surface.angle)
    u = (points[:, 0] * c + points[:, 1] * s) / surface.period
    v = (-points[:, 0] * s + points[:, 1] * c) / surface.period
    if surface.pattern == "checker":
        pattern = (np.floor(2 * u) + np.floor(2 * v)) % 2
    elif surface.pattern == "stripes":
        pattern = np.floor(2 * u) % 2
    else:
        pattern = np.clip((value_noise(noise.T, u, v) - 0.5) * 6 + 0.5, 0.0, 1.0)
    contrast = np.clip(1.5 - 2 * footprint / surface.period, 0.0, 1.0)
    mix = 0.5 + (pattern - 0.5) * contrast
    a, b = np.asarray(surface.color_a), np.asarray(surface.color_b)
    return a + (b - a) * mix[:, None]


def _object_albedo(surface: Surface, local: np.ndarray) -> np.ndarray:
    """Solid colour or bands in the object's own frame (``local`` = point - centre), so the pattern moves with it."""
    a, b = np.asarray(surface.color_a), np.asarray(surface.color_b)
    if surface.pattern == "solid":
        return np.broadcast_to(a, local.shape).copy()
    axis = np.array([0.5 * np.cos(surface.angle), 0.5 * np.sin(surface.angle), 0.85])
    bands = np.floor(2 * (local @ (axis / np.linalg.norm(axis))) / surface.period) % 2
    return a + (b - a) * bands[:, None]


def _sky_directions(rotation: np.ndarray) -> np.ndarray:
    """``AO_DIRECTIONS`` cosine-weighted upper-hemisphere directions per ray [N, D, 3], spun by ``rotation`` [N]."""
    k = np.arange(AO_DIRECTIONS)
    sin_theta = np.sqrt((k + 0.5) / AO_DIRECTIONS)
    phi = k * 2.39996323 + rotation[:, None]
    z = np.broadcast_to(np.sqrt(1 - sin_theta**2), phi.shape)
    return np.stack([sin_theta * np.cos(phi), sin_theta * np.sin(phi), z], -1)


def _ambient_occlusion(prims: Primitives, points: np.ndarray, normals: np.ndarray, sub: np.ndarray) -> np.ndarray:
    """Fraction of nearby sky each point sees, weighted by the cosine to its normal (1 for an open plane)."""
    if not len(points):
        return np.zeros(0)
    dirs = _sky_directions(2 * np.pi * sub / (SUPERSAMPLE**2 * AO_DIRECTIONS))
    weight = np.clip(np.einsum("ndc,nc->nd", dirs, normals), 0.0, None)
    origins = points + BIAS * normals
    open_sky = np.stack([~prims.occluded(origins, dirs[:, d], AO_RANGE) for d in range(AO_DIRECTIONS)], 1)
    total = weight.sum(1)
    return np.where(total > 1e-6, (weight * open_sky).sum(1) / np.maximum(total, 1e-6), 1.0)


# -------------------------------------------------------------------------------------------------- geometry


def frame_geometry(params: RTSceneParams, noise: np.ndarray, frame: int, size: int) -> FrameGeometry:
    """Trace the camera rays of one frame: nearest hit, normal, material, ambient occlusion, haze."""
    rays = size * SUPERSAMPLE
    eye, dirs = camera_rays(params, frame, rays)
    n = len(dirs)
    prims = Primitives.at(params.objects, frame)
    origins = np.broadcast_to(eye, dirs.shape)

    with np.errstate(divide="ignore"):
        ground_t = np.where(dirs[:, 2] < -1e-9, -eye[2] / dirs[:, 2], np.inf)
    near, far, box_axis = prims.intervals(origins, dirs)
    obj_t = np.where(near > BIAS, near, np.where(far > BIAS, far, np.inf))  # far: the eye is inside an object
    which = obj_t.argmin(1) if obj_t.shape[1] else np.zeros(n, np.int64)
    best = obj_t[np.arange(n), which] if obj_t.shape[1] else np.full(n, np.inf)
    on_object = best < ground_t
    dist = np.where(on_object, best, ground_t)
    hit = np.isfinite(dist)
    points = eye + dirs * np.where(hit, dist, 0.0)[:, None]

    normals = np.zeros((n, 3))
    normals[:, 2] = 1.0
    pixel = 2 * np.tan(np.radians(params.camera.fov) / 2) / (rays / SUPERSAMPLE)  # one output pixel, radians
    footprint = np.where(hit, dist, 0.0) * pixel / np.maximum(np.abs(dirs[:, 2]), 0.05)
    albedo = _ground_albedo(params.ground, noise, points, footprint)
    specular = np.full(n, params.ground.specular)
    shininess = np.full(n, params.ground.shininess)

    spheres = len(prims.sphere_radius)
    ordered = [o for o in params.objects if o.shape == "sphere"] + [o for o in params.objects if o.shape == "box"]
    for k, obj in enumerate(ordered):
        mask = on_object & (which == k)
        if not mask.any():
            continue
        p = points[mask]
        if k < spheres:
            center = prims.sphere_center[k]
            normals[mask] = (p - center) / prims.sphere_radius[k]
        else:
            lo, hi = prims.box_lo[k - spheres], prims.box_hi[k - spheres]
            center = (lo + hi) / 2
            axis = box_axis[mask, k - spheres]
            outward = np.zeros((len(p), 3))
            outward[np.arange(len(p)), axis] = -np.sign(dirs[mask, axis])
            normals[mask] = outward
        albedo[mask] = _object_albedo(obj.surface, p - center)
        specular[mask] = obj.surface.specular
        shininess[mask] = obj.surface.shininess

    sub = ((np.arange(rays)[:, None] % SUPERSAMPLE) * SUPERSAMPLE + np.arange(rays)[None] % SUPERSAMPLE).reshape(-1)
    sky_vis = np.ones(n)
    sky_vis[hit] = _ambient_occlusion(prims, points[hit], normals[hit], sub[hit])
    fog = np.where(hit, 1 - np.exp(-((np.where(hit, dist, 0.0) / params.fog) ** 2)), 1.0)  # clear near, hazy far
    return FrameGeometry((rays, rays), dirs, hit, dist, points, normals, albedo, specular, shininess, sky_vis, fog,
                         prims)


def surface_geometry(points: np.ndarray, normals: np.ndarray, albedo: np.ndarray, prims: Primitives,
                     eye: np.ndarray) -> FrameGeometry:
    """Hand-placed surface points [N, 3] seen from ``eye`` (matte, open sky, no haze), to probe :func:`shade`."""
    points = np.asarray(points, np.float64)
    delta = points - np.asarray(eye, np.float64)
    dist = np.linalg.norm(delta, axis=1)
    n = len(points)
    return FrameGeometry((1, n), delta / dist[:, None], np.ones(n, bool), dist, points,
                         np.asarray(normals, np.float64), np.asarray(albedo, np.float64), np.zeros(n), np.ones(n),
                         np.ones(n), np.zeros(n), prims)


# -------------------------------------------------------------------------------------------------- shading


def sky_color(dirs: np.ndarray, light: RTLight) -> np.ndarray:
    """Sky radiance [N, 3] along ``dirs``: horizon-to-zenith gradient plus a glow around the sun."""
    up = np.sqrt(np.clip(dirs[:, 2], 0.0, 1.0))[:, None]
    horizon, zenith = np.asarray(light.horizon), np.asarray(light.zenith)
    sky = horizon + (zenith - horizon) * up
    if light.glow > 0 and light.sun_intensity > 0:
        sun = np.asarray(light.sun_direction)
        near_sun = np.clip(dirs @ sun, 0.0, 1.0) ** 16
        sky = sky + (light.glow * light.sun_intensity * near_sun)[:, None] * np.asarray(light.sun_color)
    return sky


def _blinn_phong(geom_view: np.ndarray, normals: np.ndarray, to_light: np.ndarray, specular: np.ndarray,
                 shininess: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lambert term and specular lobe [N] for unit ``to_light`` [N, 3] (or [3]) seen from unit ``geom_view``."""
    ndl = np.clip(np.sum(normals * to_light, -1), 0.0, None)
    half = to_light + geom_view
    half = half / np.maximum(np.linalg.norm(half, axis=-1, keepdims=True), 1e-9)
    ndh = np.clip(np.sum(normals * half, -1), 0.0, None)
    return ndl, specular * ndh**shininess * (ndl > 0)


def shade(geom: FrameGeometry, light: RTLight) -> np.ndarray:
    """Linear radiance [N, 3] of every camera ray of ``geom`` under ``light`` (exposure applied)."""
    out = sky_color(geom.dirs, light)
    h = geom.hit
    p, n, albedo = geom.points[h], geom.normals[h], geom.albedo[h]
    spec_k, shin = geom.specular[h], geom.shininess[h]
    view = -geom.dirs[h]
    origins = p + BIAS * n
    ambient = np.asarray(light.ambient) * (geom.sky_vis[h] * (0.55 + 0.45 * n[:, 2]))[:, None]
    radiance = albedo * ambient
    if light.sun_intensity > 0:
        sun = np.asarray(light.sun_direction, np.float64)
        sun = sun / np.linalg.norm(sun)
        ndl, spec = _blinn_phong(view, n, sun, spec_k, shin)
        lit = ndl > 0
        lit[lit] = ~geom.prims.occluded(origins[lit], np.broadcast_to(sun, (int(lit.sum()), 3)))
        rgb = np.asarray(light.sun_color) * light.sun_intensity
        radiance = radiance + (albedo * ndl[:, None] + spec[:, None]) * (lit[:, None] * rgb)
    for point in light.points:
        delta = np.asarray(point.position) - p
        dist = np.linalg.norm(delta, axis=1)
        to_light = delta / np.maximum(dist, 1e-9)[:, None]
        ndl, spec = _blinn_phong(view, n, to_light, spec_k, shin)
        lit = ndl > 0
        lit[lit] = ~geom.prims.occluded(origins[lit], to_light[lit], dist[lit] - BIAS)
        falloff = point.intensity / (dist**2 + POINT_SOFTENING)
        radiance = radiance + (albedo * ndl[:, None] + spec[:, None]) * (lit * falloff)[:, None] * np.asarray(
            point.color)
    fog = geom.fog[h][:, None]
    out[h] = radiance * (1 - fog) + np.asarray(light.horizon) * fog
    return out * light.exposure


def render_frame(geom: FrameGeometry, light: RTLight) -> np.ndarray:
    """One frame [S, S, 3] uint8: shade, average the supersamples in linear light, tone-map like :mod:`.synth`."""
    rows, cols = geom.shape
    radiance = shade(geom, light).reshape(rows // SUPERSAMPLE, SUPERSAMPLE, cols // SUPERSAMPLE, SUPERSAMPLE, 3)
    return to_srgb8(radiance.mean((1, 3)).astype(np.float32))


# -------------------------------------------------------------------------------------------------- scenes


def make_scene(seed: int, index: int, lights: int) -> RTScene:
    """Draw scene ``index`` of the dataset ``seed``; depends only on (seed, index) and on j < lights."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
    params = sample_scene(rng)
    noise = rng.random((NOISE_CELLS, NOISE_CELLS))
    rigs = [
        sample_light(np.random.default_rng(np.random.SeedSequence([seed, index, _LIGHT_STREAM, j])), kind)
        for j, kind in enumerate(shuffled_kinds(seed, index, lights, KINDS))
    ]
    return RTScene(index=index, params=params, noise=noise, lights=rigs)


def scene_clips(scene: RTScene, frames: int, size: int, stride: int = 1) -> np.ndarray:
    """All lights of a scene as uint8 [L, T, S, S, 3]: one geometry pass per frame, shaded once per light."""
    clips = np.zeros((len(scene.lights), frames, size, size, 3), np.uint8)
    for t in range(frames):
        geom = frame_geometry(scene.params, scene.noise, t * stride, size)
        for j, light in enumerate(scene.lights):
            clips[j, t] = render_frame(geom, light)
    return clips


def render_scene(seed: int, index: int, lights: int, frames: int, size: int, stride: int = 1) -> np.ndarray:
    """All lights of one scene as uint8 [L, T, S, S, 3]; the motion is identical across L."""
    check_args(1, lights, frames, size, stride)
    return scene_clips(make_scene(seed, index, lights), frames, size, stride)


# -------------------------------------------------------------------------------------------------- writing


def write_raytrace_dataset(
    out: str | Path,
    scenes: int,
    lights: int,
    frames: int,
    size: int,
    seed: int,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    stride: int = 1,
) -> Path:
    """Render ``scenes`` x ``lights`` clips into ``out`` in the layout of :func:`.synth.write_dataset`, atomically
    (a temporary sibling renamed at the end; a non-empty ``out`` only with ``overwrite``)."""
    check_args(scenes, lights, frames, size, stride)
    args = {"scenes": scenes, "lights": lights, "frames": frames, "size": size, "seed": seed, "stride": stride}
    header = {"generator": "relumix_core.data.raytrace", "version": GENERATOR_VERSION, "layout": LAYOUT,
              "scenes_per_map": SCENES_PER_MAP, "supersample": SUPERSAMPLE}
    return write_scenes(out, scenes, args, header, lambda i: make_scene(seed, i, lights),
                        lambda scene: scene_clips(scene, frames, size, stride), overwrite, progress)
