"""The pack inside a real ComfyUI server (skipped unless COMFYUI_DIR and COMFYUI_PYTHON are set).

Uses ../shared/tools/comfy_harness.py: the pack is linked into custom_nodes and the basic, long and keyframes API
workflows run as shipped, on the bundled relumix-tiny, with only the video and the steps changed. A run with far too
many steps is interrupted by the harness's timeout, and the workflows after it must still succeed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from frontend_check import PACK_NODES
from PIL import Image

from relumix_core.media.video_io import read_video, write_video

REPO = Path(__file__).resolve().parents[2]
HARNESS = REPO.parent / "shared" / "tools" / "comfy_harness.py"
COMFY_DIR = os.environ.get("COMFYUI_DIR")
COMFY_PYTHON = os.environ.get("COMFYUI_PYTHON")
FRAMES = {"relumix_basic": 8, "relumix_long_video": 30, "relumix_keyframes": 30}
#: Frames each written video holds: the keyframes workflow keeps the first 25 (keyframes at 0 and 24).
KEPT = {"basic": 8, "long": 30, "keyframes": 25}

pytestmark = [pytest.mark.comfyui, pytest.mark.slow, pytest.mark.skipif(
    not (COMFY_DIR and COMFY_PYTHON and HARNESS.is_file()),
    reason="real ComfyUI test: set COMFYUI_DIR (the ComfyUI folder) and COMFYUI_PYTHON (its python); needs "
    f"{HARNESS}",
)]


def _patched(name: str, steps: int, video: str, out: Path) -> Path:
    wf = json.loads((REPO / "workflows" / "api" / f"{name}.json").read_text())
    for node in wf.values():
        kind, inputs = node["class_type"], node["inputs"]
        if kind == "ReLumixSampler":
            inputs["steps"] = steps
        elif kind == "LoadVideo":
            inputs["file"] = video
        elif kind == "SaveVideo":
            inputs["filename_prefix"] = f"relumix_test/{out.stem}"
    out.write_text(json.dumps(wf))
    return out


def test_basic_long_and_keyframes_workflows_run_in_real_comfyui(tmp_path: Path) -> None:
    yy, xx = np.mgrid[0:48, 0:80]
    for name, frames in FRAMES.items():
        clip = np.stack([np.stack([(xx * 3 + t * 4) % 256, yy * 5 % 256, (xx + yy) % 256], -1) for t in range(frames)])
        write_video(tmp_path / f"{name}_in.mp4", clip.astype(np.uint8), 12)
    Image.fromarray(np.full((48, 80, 3), 128, np.uint8)).save(tmp_path / "relumix_reference.png")
    Image.fromarray(np.full((48, 80, 3), (90, 110, 160), np.uint8)).save(tmp_path / "relumix_reference_24.png")
    workflows = [
        _patched("relumix_basic", 2, "relumix_basic_in.mp4", tmp_path / "basic.json"),
        _patched("relumix_long_video", 1000, "relumix_long_video_in.mp4", tmp_path / "interrupted.json"),
        _patched("relumix_long_video", 2, "relumix_long_video_in.mp4", tmp_path / "long.json"),
        _patched("relumix_keyframes", 2, "relumix_keyframes_in.mp4", tmp_path / "keyframes.json"),
    ]
    output = tmp_path / "output"
    command = [
        sys.executable, str(HARNESS), "--comfy-dir", COMFY_DIR, "--venv-python", COMFY_PYTHON,
        "--node-pack", str(REPO), "--pack-name", "relumix", "--output-dir", str(output), "--run-timeout", "150",
        "--summary-out", str(tmp_path / "summary.json"),
        *[arg for name in FRAMES for arg in ("--input", str(tmp_path / f"{name}_in.mp4"))],
        "--input", str(tmp_path / "relumix_reference.png"), "--input", str(tmp_path / "relumix_reference_24.png"),
        *[arg for wf in workflows for arg in ("--workflow", str(wf))],
        *[arg for node in PACK_NODES for arg in ("--expect-node", node)],
    ]
    subprocess.run(command, capture_output=True, text=True, timeout=1200)
    summary = json.loads((tmp_path / "summary.json").read_text())
    (REPO / "out").mkdir(exist_ok=True)
    (REPO / "out" / "real_comfyui_summary.json").write_text(json.dumps(summary, indent=2))
    assert summary["pack"]["ok"], summary["pack"]
    runs = {Path(r["workflow"]).stem: r for r in summary["workflows"]}
    assert runs["basic"]["status"] == "success", runs["basic"]
    assert runs["interrupted"]["status"] != "success"
    assert runs["long"]["status"] == "success", runs["long"]  # the model is still usable after the interrupt
    assert runs["keyframes"]["status"] == "success", runs["keyframes"]  # two relit keyframes through Batch Images
    for stem, kept in KEPT.items():
        written = next(output.glob(f"relumix_test/{stem}*.mp4"))
        frames, _ = read_video(written)
        assert frames.shape == (kept, 48, 80, 3)
