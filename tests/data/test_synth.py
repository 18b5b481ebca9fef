"""The synthetic paired-video generator: layout, determinism, same motion under every light, shadows, safe writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from relumix_core.cli.main import main
from relumix_core.data.light import sample_light, shade, shadow_mask
from relumix_core.data.synth import make_scene, render_light, render_scene, scene_geometry, write_dataset
from relumix_core.errors import ReLumixError

SMALL = {"lights": 2, "frames": 3, "size": 16}


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def _light(kind: str, seed: int = 0):
    return sample_light(np.random.default_rng(seed), kind)


# -------------------------------------------------------------------------------------------------- layout


def test_layout_counts_and_meta(tmp_path: Path) -> None:
    out = write_dataset(tmp_path / "ds", scenes=26, lights=3, frames=2, size=16, seed=1)
    files = _files(out)
    assert len(files) == 26 * 3 * 2
    assert "map_00/scene_0000/light_00/00000.png" in files
    assert "map_00/scene_0024/light_02/00001.png" in files
    assert "map_01/scene_0025/light_00/00000.png" in files
    assert sorted(p.name for p in out.iterdir()) == ["map_00", "map_01", "meta.json"]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["args"] == {"scenes": 26, "lights": 3, "frames": 2, "size": 16, "seed": 1, "stride": 1}
    assert len(meta["scenes"]) == 26 and len(meta["scenes"][5]["lights"]) == 3
    assert meta["scenes"][25]["folder"] == "map_01/scene_0025"
    assert not [p for p in tmp_path.iterdir() if p.name != "ds"]  # no temporary sibling left behind


def test_png_shape(tmp_path: Path) -> None:
    from PIL import Image

    out = write_dataset(tmp_path / "ds", scenes=1, seed=0, **SMALL)
    image = Image.open(out / "map_00/scene_0000/light_01/00002.png")
    assert image.size == (16, 16) and image.mode == "RGB"


# -------------------------------------------------------------------------------------------------- determinism


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    a = _files(write_dataset(tmp_path / "a", scenes=2, seed=7, **SMALL))
    b = _files(write_dataset(tmp_path / "b", scenes=2, seed=7, **SMALL))
    c = _files(write_dataset(tmp_path / "c", scenes=2, seed=8, **SMALL))
    assert a == b
    assert a.keys() == c.keys() and all(a[k] != c[k] for k in a)


def test_scene_independent_of_scene_count(tmp_path: Path) -> None:
    few = _files(write_dataset(tmp_path / "few", scenes=4, seed=3, **SMALL))
    many = _files(write_dataset(tmp_path / "many", scenes=10, seed=3, **SMALL))
    scene3 = {k: v for k, v in few.items() if "scene_0003" in k}
    assert len(scene3) == 2 * 3
    assert scene3 == {k: v for k, v in many.items() if "scene_0003" in k}
    assert scene3 != {k.replace("0003", "0002"): v for k, v in many.items() if "scene_0002" in k}


def test_more_lights_and_frames_extend_without_changing() -> None:
    small = render_scene(5, 2, lights=2, frames=3, size=24)
    big = render_scene(5, 2, lights=4, frames=5, size=24)
    assert small.shape == (2, 3, 24, 24, 3) and small.dtype == np.uint8
    assert np.array_equal(small, big[:2, :3])


# -------------------------------------------------------------------------------------------------- motion and light


def test_every_light_sees_the_same_geometry() -> None:
    scene = make_scene(0, 1, 5)
    geom = scene_geometry(scene, 4, 32)
    clips = render_scene(0, 1, lights=5, frames=4, size=32)
    for light, clip in zip(scene.lights, clips, strict=True):
        assert np.array_equal(render_light(geom, light), clip)
    assert np.array_equal(geom.normal, scene_geometry(make_scene(0, 1, 2), 4, 32).normal)  # lights don't move things
    for i in range(len(clips)):
        for j in range(i + 1, len(clips)):
            assert np.abs(clips[i].astype(int) - clips[j].astype(int)).mean() > 2, (i, j)


def test_frame_changes_are_correlated_across_lights() -> None:
    clips = render_scene(2, 0, lights=5, frames=3, size=48).astype(np.float64).mean(-1)
    change = np.abs(np.diff(clips, axis=1)).reshape(5, -1)
    other = np.abs(np.diff(render_scene(2, 1, lights=5, frames=3, size=48).astype(np.float64).mean(-1), axis=1))
    same = np.corrcoef(change)[np.triu_indices(5, 1)]
    unrelated = np.corrcoef(change[0], other.reshape(5, -1)[0])[0, 1]
    assert same.mean() > 0.3 and same.mean() > unrelated + 0.2, (same, unrelated)


def test_camera_moves_and_stride_skips_frames() -> None:
    scene = make_scene(4, 0, 2)
    geom = scene_geometry(scene, 3, 32)
    for t in range(2):
        assert not np.allclose(geom.albedo[t], geom.albedo[t + 1])
        assert not np.allclose(geom.height[t], geom.height[t + 1])
    strided = scene_geometry(scene, 2, 32, stride=2)
    assert np.array_equal(strided.albedo[1], geom.albedo[2])
    clip = render_scene(4, 0, lights=2, frames=3, size=32)[0]
    assert all((clip[t] != clip[t + 1]).any() for t in range(2))


def test_low_sun_casts_shadows() -> None:
    geom = scene_geometry(make_scene(0, 0, 2), 2, 48)
    sunset = _light("sunset")
    sunset.softness = 0.0
    vis = shadow_mask(geom, sunset)
    facing = np.sum(geom.normal * np.asarray(sunset.sun_direction, np.float32), -1) > 0.05
    shadowed = facing & (vis == 0)
    assert shadowed.mean() > 0.02
    lit, _ = shade(geom, sunset, shadows=True)
    unlit, _ = shade(geom, sunset, shadows=False)
    darker = lit.sum(-1) < unlit.sum(-1) - 1e-4
    assert darker[shadowed].all()  # every shadowed sun-facing pixel is darker than its unshadowed shading
    assert (vis[darker] < 1).all() and (lit <= unlit + 1e-6).all()  # and only shadows make anything darker


def test_soft_shadows_have_penumbra() -> None:
    geom = scene_geometry(make_scene(0, 0, 2), 1, 48)
    light = _light("sunset")
    light.softness = 0.0
    hard = shadow_mask(geom, light)
    light.softness = 0.15
    soft = shadow_mask(geom, light)
    assert set(np.unique(hard)) <= {0.0, 1.0}
    assert ((soft > 0) & (soft < 1)).mean() > 0.01


def test_night_is_darker_than_day() -> None:
    for index in range(3):
        geom = scene_geometry(make_scene(9, index, 2), 2, 32)
        day = render_light(geom, _light("noon", index)).mean()
        night = render_light(geom, _light("night", index)).mean()
        assert night < 0.7 * day, (index, night, day)


# -------------------------------------------------------------------------------------------------- errors and CLI


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lights", "1"], "at least two lights to make pairs"),
        (["--frames", "0"], "--frames must be at least 1"),
        (["--size", "20"], "multiple of 8"),
        (["--size", "8"], "at least 16"),
        (["--scenes", "0"], "--scenes must be at least 1"),
    ],
)
def test_cli_bad_options(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    assert main(["synth", str(tmp_path / "ds"), "--size", "16", *args]) == 2
    assert message in _error_line(capsys)
    assert not (tmp_path / "ds").exists()


def test_api_bad_options() -> None:
    with pytest.raises(ReLumixError, match="two lights"):
        render_scene(0, 0, lights=1, frames=2, size=16)


def test_cli_refuses_non_empty_out_and_force_replaces(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    cmd = ["synth", str(out), "--scenes", "1", "--lights", "2", "--frames", "2", "--size", "16"]
    assert main(cmd) == 2
    assert "not empty" in _error_line(capsys)
    assert (out / "keep.txt").read_text() == "mine"
    assert main([*cmd, "--force"]) == 0
    assert "clips/min" in capsys.readouterr().out
    assert not (out / "keep.txt").exists() and len(_files(out)) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_empty_out_folder_is_fine(tmp_path: Path) -> None:
    (tmp_path / "ds").mkdir()
    assert len(_files(write_dataset(tmp_path / "ds", scenes=1, seed=0, **SMALL))) == 6


def test_interrupted_run_leaves_nothing(tmp_path: Path) -> None:
    def stop(done: int, total: int) -> None:
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_dataset(tmp_path / "ds", scenes=4, seed=0, progress=stop, **SMALL)
    assert list(tmp_path.iterdir()) == []
