"""The README's main job, ``relumix demo``, at a tiny budget."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from relumix_core.cli import main


def test_demo_writes_frames_and_strip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--frames", "4", "--steps", "2"]) == 0
    printed = capsys.readouterr().out
    assert "RANDOM weights" in printed
    frames = sorted(out.glob("relit_*.png"))
    assert len(frames) == 4
    strip = np.asarray(Image.open(out / "strip.png"))
    assert strip.shape == (128, 64 * 5, 3)
    assert strip.std() > 0


def test_demo_does_not_overwrite_earlier_run(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--frames", "4", "--steps", "1"]
    assert main(args) == 0
    before = (out / "strip.png").read_bytes()
    assert main(args) == 2
    assert (out / "strip.png").read_bytes() == before
    assert main([*args, "--overwrite"]) == 0
