"""The ray-traced generator: determinism, the synth layout the evaluation reads, one geometry for all lights,
shadow rays, sky above the horizon, safe writes and the ``--renderer`` flag."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from relumix_core.cli.main import main
from relumix_core.data.light import to_srgb8
from relumix_core.data.raytrace import (
    SUPERSAMPLE,
    Primitives,
    frame_geometry,
    make_scene,
    render_frame,
    scene_clips,
    shade,
    sky_color,
    surface_geometry,
    write_raytrace_dataset,
)
from relumix_core.data.raytrace_scene import Camera, Primitive, Surface, sample_light
from relumix_core.errors import ReLumixError

SMALL = {"scenes": 2, "lights": 2, "frames": 4, "size": 32}


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def _light(kind: str, seed: int = 0):
    return sample_light(np.random.default_rng(seed), kind)


# -------------------------------------------------------------------------------------------------- determinism, layout


def test_same_args_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    a = _files(write_raytrace_dataset(tmp_path / "a", seed=3, **SMALL))
    b = _files(write_raytrace_dataset(tmp_path / "b", seed=3, **SMALL))
    c = _files(write_raytrace_dataset(tmp_path / "c", seed=4, **SMALL))
    assert len(a) == 2 * 2 * 4 and a == b
    assert a.keys() == c.keys() and all(a[k] != c[k] for k in a)


def test_longer_clips_and_more_lights_start_the_same() -> None:
    short = scene_clips(make_scene(1, 0, 2), frames=2, size=16)
    long = scene_clips(make_scene(1, 0, 3), frames=3, size=16)
    assert np.array_equal(short, long[:2, :2])


def test_layout_meta_and_evaluation_reads_it(tmp_path: Path) -> None:
    from relumix_core.evaluation import load_test_clips

    out = write_raytrace_dataset(tmp_path / "ds", seed=0, **SMALL)
    assert sorted(p.name for p in out.iterdir()) == ["map_00", "meta.json"]
    assert (out / "map_00/scene_0001/light_01/00003.png").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name != "ds"]  # no temporary sibling left behind
    meta = json.loads((out / "meta.json").read_text())
    assert meta["generator"] == "relumix_core.data.raytrace" and meta["version"] >= 1
    assert meta["args"] == {"scenes": 2, "lights": 2, "frames": 4, "size": 32, "seed": 0, "stride": 1}
    assert [s["folder"] for s in meta["scenes"]] == ["map_00/scene_0000", "map_00/scene_0001"]
    assert len(meta["scenes"][1]["lights"]) == 2 and meta["scenes"][0]["scene"]["objects"]

    clips = load_test_clips(out, 4)
    assert len(clips) == 2 * 2  # both ordered pairs of each scene
    for clip in clips:
        assert tuple(clip.source.shape) == (4, 3, 32, 32) and clip.source_light != clip.target_light
        assert (clip.source - clip.target).abs().mean() > 0.01


# -------------------------------------------------------------------------------------------------- geometry and motion


def test_one_geometry_for_every_light() -> None:
    scene = make_scene(2, 1, 2)
    more = make_scene(2, 1, 4)  # more lights must not change the scene itself
    clips = scene_clips(scene, frames=2, size=32)
    for t in range(2):
        geom = frame_geometry(scene.params, scene.noise, t, 32)
        other = frame_geometry(more.params, more.noise, t, 32)
        for name in ("hit", "dist", "points", "normals", "albedo", "sky_vis", "fog"):
            assert np.array_equal(getattr(geom, name), getattr(other, name)), name
        for j, light in enumerate(scene.lights):
            assert np.array_equal(render_frame(geom, light), clips[j, t])
    assert scene.lights[0].kind != scene.lights[1].kind
    assert np.abs(clips[0].astype(int) - clips[1].astype(int)).mean() > 5


@pytest.mark.parametrize("shape", ["sphere", "box"])
def test_camera_rays_hit_the_nearest_surface(shape: str) -> None:
    scene = make_scene(0, 0, 2)
    surface = Surface("solid", [0.9, 0.1, 0.1], [0.0, 0.0, 0.0], 1.0, 0.0, 0.0, 16.0)
    behind = Primitive("box", [-1.5, 0.0, 0.5], [0.3, 0.3, 0.5], [0.0, 0.0, 0.0], replace(surface, color_a=[0, 0, 1]))
    front = Primitive(shape, [0.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.0, 0.0, 0.0], surface)  # half-sunk at the target
    camera = Camera([0.0, 0.0], [0.0, 0.0], 8.0, 0.0, 30.0, 0.0, 0.0, 50.0)  # eye on +x, 30 degrees up
    params = replace(scene.params, camera=camera, objects=[behind, front])
    geom = frame_geometry(params, scene.noise, 0, 64)
    rays = 64 * SUPERSAMPLE  # the four rays nearest the image centre, which looks at the object's centre
    centre = [r * rays + c for r in (rays // 2 - 1, rays // 2) for c in (rays // 2 - 1, rays // 2)]
    expected = 8.0 - 0.5 if shape == "sphere" else 8.0 - 0.5 / np.cos(np.radians(30))
    assert np.allclose(geom.dist[centre], expected, atol=0.05)
    assert np.allclose(geom.albedo[centre], [0.9, 0.1, 0.1])
    if shape == "sphere":
        assert (np.sum(geom.normals[centre] * -geom.dirs[centre], 1) > 0.99).all()
    else:
        assert np.allclose(geom.normals[centre], [1.0, 0.0, 0.0])


def test_camera_and_objects_move_but_frames_overlap() -> None:
    scene = make_scene(0, 2, 2)
    assert any(o.velocity != [0.0, 0.0, 0.0] for o in scene.params.objects)
    g0, g1 = (frame_geometry(scene.params, scene.noise, t, 32) for t in (0, 1))
    assert not np.allclose(g0.dirs, g1.dirs)  # the camera turns
    moved = Primitives.at(scene.params.objects, 0), Primitives.at(scene.params.objects, 10)
    assert not (np.array_equal(moved[0].sphere_center, moved[1].sphere_center)
                and np.array_equal(moved[0].box_lo, moved[1].box_lo))
    clip = scene_clips(scene, frames=2, size=32)[0].astype(float)
    step = np.abs(clip[1] - clip[0]).mean()
    other = scene_clips(make_scene(0, 3, 2), frames=1, size=32)[0, 0].astype(float)
    assert 0 < step < 0.3 * np.abs(other - clip[0]).mean()


# -------------------------------------------------------------------------------------------------- shading


def test_sphere_casts_a_sun_shadow_on_the_ground() -> None:
    sphere = Primitives(np.array([[0.0, 0.0, 0.5]]), np.array([0.5]), np.zeros((0, 3)), np.zeros((0, 3)))
    light = _light("day")
    light.sun_direction = [float(v) for v in np.array([1.0, 0.3, 1.2]) / np.linalg.norm([1.0, 0.3, 1.2])]
    sun = np.asarray(light.sun_direction)
    behind = np.array([0.0, 0.0, 0.5]) - sun * (0.5 / sun[2])  # ground point whose sun ray passes the centre
    points = np.array([behind, [4.0, -4.0, 0.0]])
    geom = surface_geometry(points, np.tile([0.0, 0.0, 1.0], (2, 1)), np.full((2, 3), 0.5), sphere,
                            eye=np.array([0.0, -8.0, 5.0]))
    radiance = shade(geom, light).sum(1)
    assert radiance[0] < 0.5 * radiance[1]
    open_sky = shade(surface_geometry(points, geom.normals, geom.albedo, Primitives.at([], 0), geom.points[0] + 5),
                     light).sum(1)
    assert np.isclose(open_sky[0], open_sky[1], rtol=0.02)  # without the sphere both points are lit alike


def test_point_light_is_shadowed_and_falls_off() -> None:
    box = Primitives(np.zeros((0, 3)), np.zeros(0), np.array([[0.8, -0.5, 0.0]]), np.array([[1.2, 0.5, 1.0]]))
    light = replace(_light("studio"), ambient=[0.0, 0.0, 0.0])
    light.points = light.points[:1]
    light.points[0].position = [0.0, 0.0, 0.5]
    points = np.array([[2.0, 0.0, 0.0], [-2.0, 0.0, 0.0], [-4.0, 0.0, 0.0]])  # behind the box, open, open and far
    geom = surface_geometry(points, np.tile([0.0, 0.0, 1.0], (3, 1)), np.full((3, 3), 0.5), box,
                            eye=np.array([0.0, -6.0, 4.0]))
    radiance = shade(geom, light).sum(1)
    assert radiance[0] == 0.0 and radiance[1] > radiance[2] > 0.0


def test_sky_fills_the_top_when_the_horizon_is_in_view() -> None:
    scene = make_scene(0, 0, 2)
    shallow = replace(scene.params, camera=replace(scene.params.camera, pitch=18.0, fov=60.0))
    steep = replace(scene.params, camera=replace(scene.params.camera, pitch=50.0, fov=60.0))
    rays = 32 * SUPERSAMPLE
    hit = frame_geometry(shallow, scene.noise, 0, 32).hit.reshape(rays, rays)
    assert not hit[0].any() and hit[-1].all() and 0.05 < (~hit).mean() < 0.4
    assert frame_geometry(steep, scene.noise, 0, 32).hit.all()

    day, sunset, night = _light("day"), _light("sunset"), _light("night")
    frames = {k: render_frame(frame_geometry(shallow, scene.noise, 0, 32), v).astype(int)
              for k, v in {"day": day, "sunset": sunset, "night": night}.items()}
    top = {k: f[0].mean(0) for k, f in frames.items()}
    assert top["day"][2] > top["day"][0] + 20  # blue day sky
    assert top["sunset"][0] > top["sunset"][2] + 20  # orange sunset sky
    assert top["night"].sum() < 0.3 * top["day"].sum() and top["night"][2] >= top["night"][0]  # dark blue night
    expected = to_srgb8(sky_color(frame_geometry(shallow, scene.noise, 0, 32).dirs[:rays], day).astype(np.float32)
                        * day.exposure)
    assert np.abs(expected.mean(0).astype(int) - top["day"]).max() <= 3
    zenith, horizon = sky_color(np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]), replace(day, glow=0.0))
    assert zenith[2] / zenith[0] > 1.5 * horizon[2] / horizon[0]  # a gradient: deep blue overhead, pale at the horizon


def test_sampled_scenes_mix_sky_and_ground_only_views() -> None:
    sky = [not frame_geometry(s.params, s.noise, 0, 16).hit.all() for s in (make_scene(5, i, 2) for i in range(12))]
    assert 2 <= sum(sky) <= 10


# -------------------------------------------------------------------------------------------------- writing and CLI


def test_refuses_a_non_empty_folder_and_overwrite_replaces(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ReLumixError, match="not empty"):
        write_raytrace_dataset(out, seed=0, **SMALL)
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]
    write_raytrace_dataset(out, seed=0, overwrite=True, **{**SMALL, "scenes": 1})
    assert not (out / "keep.txt").exists() and len(_files(out)) == 2 * 4


def test_cli_renderer_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    common = ["--scenes", "1", "--lights", "2", "--frames", "2", "--size", "16", "--seed", "1"]
    assert main(["synth", str(tmp_path / "rt"), "--renderer", "raytrace", *common]) == 0
    assert "clips/min" in capsys.readouterr().out
    assert main(["synth", str(tmp_path / "hf"), *common]) == 0
    generators = {name: json.loads((tmp_path / name / "meta.json").read_text())["generator"] for name in ("rt", "hf")}
    assert generators == {"rt": "relumix_core.data.raytrace", "hf": "relumix_core.data.synth"}
    assert len(_files(tmp_path / "rt")) == 4 and _files(tmp_path / "rt") != _files(tmp_path / "hf")
    capsys.readouterr()

    assert main(["synth", str(tmp_path / "bad"), "--renderer", "raytrace", *common, "--lights", "1"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "two lights" in lines[0], lines
    assert main(["synth", str(tmp_path / "bad"), "--renderer", "pathtrace", *common]) == 2
    assert "invalid choice: 'pathtrace'" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
