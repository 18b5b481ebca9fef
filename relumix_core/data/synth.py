"""Synthetic paired videos for training ReLumix: the same camera and object motion rendered under several lights.

A scene is a procedural 2.5D height field (textured ground with bumps, boxes, cylinders, sphere domes; one or two
objects move) seen by a top-down camera that pans, zooms and turns. Each scene gets ``lights`` lighting conditions
(noon with hard shadows, soft daylight, low sunset sun with long shadows, night with warm point lights, coloured
point lights); all of them see identical geometry, so any two lights of a scene form a training pair.

Layout written by :func:`write_dataset` (the authors' map/scene/light/frame layout)::

    OUT/meta.json
    OUT/map_00/scene_0000/light_00/00000.png ... (scenes 0-24 in map_00, 25-49 in map_01, ...)

Determinism: scene ``i`` is drawn from ``SeedSequence([seed, i])`` and light ``j`` of it from ``[seed, i, 1, j]``;
frame ``t`` depends only on its index. So the same arguments give byte-identical PNGs, and adding scenes, lights or
frames leaves the existing ones unchanged. numpy (and Pillow for PNG) only; no torch.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ReLumixError
from .light import KINDS, LightParams, sample_light, shade, to_srgb8
from .scene import NOISE_CELLS, Geometry, SceneParams, render_geometry, sample_scene

GENERATOR_VERSION = 1
SCENES_PER_MAP = 25
LAYOUT = "map_NN/scene_NNNN/light_NN/NNNNN.png"
_LIGHT_STREAM = 1


@dataclass
class Scene:
    """A sampled scene: geometry parameters, the noise table its textures use, and its lights."""

    index: int
    params: SceneParams
    noise: np.ndarray
    lights: list[LightParams]


# -------------------------------------------------------------------------------------------------- checks


def check_args(scenes: int, lights: int, frames: int, size: int, stride: int = 1) -> None:
    """One clear message per bad option, before anything is written."""
    if scenes < 1:
        raise ReLumixError(f"--scenes must be at least 1, got {scenes}")
    if lights < 2:
        raise ReLumixError(f"each scene needs at least two lights to make pairs, got --lights {lights}")
    if frames < 1:
        raise ReLumixError(f"--frames must be at least 1, got {frames}")
    if size < 16 or size % 8:
        raise ReLumixError(f"--size must be a multiple of 8 and at least 16, got {size}")
    if stride < 1:
        raise ReLumixError(f"--stride must be at least 1, got {stride}")


# -------------------------------------------------------------------------------------------------- rendering


def shuffled_kinds(seed: int, index: int, lights: int, kinds: tuple[str, ...]) -> list[str]:
    """Kinds of the scene's lights: a per-scene shuffle of all ``kinds``, repeated, so small L still mixes day and
    night (both renderers draw their lights this way)."""
    order = np.random.default_rng(np.random.SeedSequence([seed, index, _LIGHT_STREAM])).permutation(len(kinds))
    return [kinds[int(order[j % len(kinds)])] for j in range(lights)]


def light_kinds(seed: int, index: int, lights: int) -> list[str]:
    """The height-field renderer's light kinds of scene ``index``."""
    return shuffled_kinds(seed, index, lights, KINDS)


def make_scene(seed: int, index: int, lights: int) -> Scene:
    """Draw scene ``index`` of the dataset ``seed``; depends only on (seed, index) and on j < lights."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
    params = sample_scene(rng)
    noise = rng.random((NOISE_CELLS, NOISE_CELLS))
    kinds = light_kinds(seed, index, lights)
    rigs = [
        sample_light(np.random.default_rng(np.random.SeedSequence([seed, index, _LIGHT_STREAM, j])), kind)
        for j, kind in enumerate(kinds)
    ]
    return Scene(index=index, params=params, noise=noise, lights=rigs)


def scene_geometry(scene: Scene, frames: int, size: int, stride: int = 1) -> Geometry:
    """Per-frame height, normals and materials; shared by all lights of the scene."""
    return render_geometry(scene.params, scene.noise, [t * stride for t in range(frames)], size)


def render_light(geom: Geometry, light: LightParams) -> np.ndarray:
    """One clip [T, S, S, 3] uint8 of the geometry under one light."""
    radiance, _ = shade(geom, light)
    return to_srgb8(radiance)


def render_scene(seed: int, index: int, lights: int, frames: int, size: int, stride: int = 1) -> np.ndarray:
    """All lights of one scene as uint8 [L, T, S, S, 3]; the motion is identical across L."""
    check_args(1, lights, frames, size, stride)
    scene = make_scene(seed, index, lights)
    geom = scene_geometry(scene, frames, size, stride)
    return np.stack([render_light(geom, light) for light in scene.lights])


# -------------------------------------------------------------------------------------------------- writing


def scene_dir(index: int) -> Path:
    """Relative folder of scene ``index``: ``map_NN/scene_NNNN`` with 25 scenes per map."""
    return Path(f"map_{index // SCENES_PER_MAP:02d}") / f"scene_{index:04d}"


def save_png(path: Path, image: np.ndarray) -> None:
    """Write one frame as PNG; compress level 1 because datasets are large and speed matters more than bytes."""
    from PIL import Image

    Image.fromarray(image).save(path, format="PNG", compress_level=1)


def prepare_out(out: Path, overwrite: bool) -> Path:
    """Refuse a non-empty OUT unless overwriting; return a fresh temporary sibling to write into."""
    if out.exists() and not out.is_dir():
        raise ReLumixError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ReLumixError(f"{out} is not empty; choose another folder or pass --force")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    return tmp


def publish(tmp: Path, out: Path) -> None:
    """Swap the finished dataset in: the old OUT (if any) disappears only once the new one is complete."""
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old)
    else:
        tmp.rename(out)


def write_scenes(
    out: str | Path,
    scenes: int,
    args: dict,
    header: dict,
    draw: Callable[[int], Any],
    clips: Callable[[Any], Iterable[np.ndarray]],
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """The writing both renderers share: scene ``i`` drawn by ``draw(i)`` (with ``params`` and ``lights``), its
    clips ([T,S,S,3] uint8, one per light) from ``clips(scene)``, written into ``out`` atomically (a temporary
    sibling renamed at the end) with ``meta.json`` = ``header`` + ``args`` + the scenes' parameters."""
    out = Path(out).expanduser()
    tmp = prepare_out(out, overwrite)
    try:
        records = []
        for i in range(scenes):
            scene = draw(i)
            for j, clip in enumerate(clips(scene)):
                folder = tmp / scene_dir(i) / f"light_{j:02d}"
                folder.mkdir(parents=True)
                for t, image in enumerate(clip):
                    save_png(folder / f"{t:05d}.png", image)
            records.append({"index": i, "folder": scene_dir(i).as_posix(), "scene": scene.params.to_json(),
                            "lights": [light.to_json() for light in scene.lights]})
            if progress is not None:
                progress(i + 1, scenes)
        meta = {**header, "args": args, "scenes": records}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
        publish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def write_dataset(
    out: str | Path,
    scenes: int,
    lights: int,
    frames: int,
    size: int,
    seed: int,
    overwrite: bool = False,
    stride: int = 1,
    progress=None,
) -> Path:
    """Render ``scenes`` x ``lights`` clips into ``out`` atomically (a temporary sibling renamed at the end)."""
    check_args(scenes, lights, frames, size, stride)
    args = {"scenes": scenes, "lights": lights, "frames": frames, "size": size, "seed": seed, "stride": stride}
    header = {"generator": "relumix_core.data.synth", "version": GENERATOR_VERSION, "layout": LAYOUT,
              "scenes_per_map": SCENES_PER_MAP}

    def clips(scene: Scene) -> Iterable[np.ndarray]:
        geom = scene_geometry(scene, frames, size, stride)
        return (render_light(geom, light) for light in scene.lights)

    return write_scenes(out, scenes, args, header, lambda i: make_scene(seed, i, lights), clips, overwrite, progress)
