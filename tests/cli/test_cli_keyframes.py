"""``relumix relight`` with several keyframes: repeated --reference / --reference-index, paired in order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from relumix_core.cli.main import main
from relumix_core.data.synth import render_scene
from relumix_core.media.video_io import read_video, write_video

FRAMES = 8


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic scene (the source light) and two relit keyframes under two other lights, as PNG files."""
    root = tmp_path_factory.mktemp("keyframes")
    lights = render_scene(7, 0, 3, FRAMES, 64)
    source, light_a, light_b = lights
    write_video(root / "in.mp4", source, 12)
    Image.fromarray(light_a[0]).save(root / "a.png")
    Image.fromarray(light_b[-1]).save(root / "b.png")
    np.save(root / "lights.npy", lights)
    return root


def _args(root: Path, out: str, *keyframes: str) -> list[str]:
    return ["relight", str(root / "in.mp4"), "-o", str(root / out), "-c", "relumix-tiny", "--steps", "2",
            "--size", "64", "--device", "cpu", *keyframes]


def test_two_keyframes_write_the_video(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = str(workdir / "a.png"), str(workdir / "b.png")
    assert main(_args(workdir, "two.mp4", "--reference", a, "-k", "0", "-r", b, "--reference-index", "7")) == 0
    said = capsys.readouterr().out
    assert "memory: auto" in said  # the default --memory auto planned the run (nothing to plan on a CPU)
    assert f"{a} (reference = frame 0), {b} (reference = frame 7)" in said
    frames, _ = read_video(workdir / "two.mp4")
    assert frames.shape == (FRAMES, 64, 64, 3)
    lights = np.load(workdir / "lights.npy").astype(np.float32)
    last = frames[-1].astype(np.float32)
    error_b, error_a = np.abs(last - lights[2, -1]).mean(), np.abs(last - lights[1, -1]).mean()
    assert error_b < 0.5 * error_a, (error_b, error_a)  # the second keyframe's light, paired with -k 7, is at the end


@pytest.mark.parametrize(
    ("keyframes", "words"),
    [
        (["-r", "a.png", "-r", "b.png", "-k", "0"], "2 --reference but 1 --reference-index; give one "
                                                     "--reference-index per --reference"),
        (["-r", "a.png", "-r", "b.png"], "2 --reference but 0 --reference-index"),
        (["-r", "a.png", "-k", "0", "-k", "7"], "1 --reference but 2 --reference-index"),
        (["-r", "a.png", "-k", "3", "-r", "b.png", "-k", "3"], "--reference-index 3 is given twice"),
        (["-r", "a.png", "-k", "0", "-r", "b.png", "-k", "8"], "--reference-index 8 is outside"),
    ],
)
def test_keyframe_mistakes_are_one_clear_line(workdir: Path, capsys: pytest.CaptureFixture[str],
                                              keyframes: list[str], words: str) -> None:
    paths = [str(workdir / v) if v.endswith(".png") else v for v in keyframes]
    assert main(_args(workdir, "bad.mp4", *paths)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and words in err[0], err
    assert not (workdir / "bad.mp4").exists()
