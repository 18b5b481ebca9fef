"""The README's main job, ``relumix demo``, at a tiny budget (2 steps, 3 frames)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from relumix_core.cli.demo import CLIP_FRAMES, OUTPUTS, PHOTO_SIZE, panned_photo, synthetic_clip
from relumix_core.cli.main import main
from relumix_core.evaluation import BASELINES
from relumix_core.media.video_io import read_video

pytestmark = pytest.mark.slow  # whole commands: the demo relights two clips


def test_bundled_clips() -> None:
    source, truth = synthetic_clip()
    assert source.shape == truth.shape == (CLIP_FRAMES, 3, 64, 64)
    assert (source - truth).abs().mean() > 0.05  # two different lights
    assert (source[1:] - source[:-1]).abs().mean() > 0.005  # the camera moves
    photo = panned_photo(5)
    assert photo.shape == (5, 3, *PHOTO_SIZE) and 0 <= float(photo.min()) and float(photo.max()) <= 1
    assert (photo[-1] - photo[0]).abs().mean() > 0.02


def test_demo_writes_videos_strips_and_metrics(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--frames", "3", "--steps", "2", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "synthetic clip" in printed and "ratio_propagation" in printed
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == sorted(OUTPUTS)
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["synthetic_clip"]) == {"relumix", *BASELINES}
    for scores in metrics["synthetic_clip"].values():
        assert all(np.isfinite(v) for v in scores.values())
    video, _ = read_video(out / "synthetic" / "relit.mp4")
    assert video.shape == (3, 64, 64, 3)
    video, _ = read_video(out / "photo" / "relit.mp4")
    assert video.shape == (3, *PHOTO_SIZE, 3)
    strip = np.asarray(Image.open(out / "synthetic" / "strip.png"))
    assert strip.ndim == 3 and strip.std() > 0


def test_demo_refuses_to_overwrite_and_checks_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    out.mkdir()
    (out / "metrics.json").write_text("mine")
    assert main(["demo", "--out", str(out), "--frames", "2", "--steps", "1"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "metrics.json").read_text() == "mine"
    assert main(["demo", "--out", str(tmp_path / "x"), "--frames", "99"]) == 2
    assert "--frames" in capsys.readouterr().err
