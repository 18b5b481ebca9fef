"""The ReLumix Sampler's live preview shows on its node in ComfyUI's real frontend (tests/frontend_preview.py).

Skipped unless COMFYUI_DIR (the ComfyUI folder) and COMFYUI_PYTHON (its python) are set and a ``chromium`` binary is
on PATH. The page queues the basic workflow itself, so the previews go to its own websocket client; the sampler node
must then hold a loaded preview image drawn by the frontend's image-preview widget, fed only by previews that name
the sampler, and the run must end as interrupted. The summary goes to out/frontend_preview_report.json.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import frontend_check as fc
import frontend_preview as fp
import pytest
from PIL import Image

COMFY_DIR = os.environ.get("COMFYUI_DIR")
COMFY_PYTHON = os.environ.get("COMFYUI_PYTHON")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
STEPS, SHOT_AT_STEP = 32, 2

pytestmark = [pytest.mark.comfyui, pytest.mark.browser, pytest.mark.slow, pytest.mark.skipif(
    not (COMFY_DIR and COMFY_PYTHON and CHROMIUM),
    reason="frontend preview test: set COMFYUI_DIR (the ComfyUI folder) and COMFYUI_PYTHON (its python) and install "
    "Chromium (a `chromium` binary on PATH, e.g. apt-get install chromium)",
)]


def test_sampler_preview_shows_on_the_node(tmp_path: Path) -> None:
    shot = tmp_path / "sampler_preview.png"
    report = fp.run(Path(COMFY_DIR), COMFY_PYTHON, CHROMIUM, shot, steps=STEPS, shot_at_step=SHOT_AT_STEP)
    (fc.REPO / "out").mkdir(exist_ok=True)
    (fc.REPO / "out" / "frontend_preview_report.json").write_text(json.dumps(report, indent=2))
    assert report["node_type"] == "ReLumixSampler" and report["steps"] == STEPS
    assert report["preview_shown_on_sampler"] is True, report
    assert report["preview_widget"] is True
    assert any(i["complete"] and i["blob"] and i["width"] > 0 and i["height"] > 0 for i in report["sampler_images"])
    assert report["previews_received"] >= 1
    assert report["preview_nodes"] == [str(fp.SAMPLER)] and report["preview_types"] == ["image/jpeg"]
    values = [value for value, _ in report["sampler_progress"]]
    assert values[:SHOT_AT_STEP] == list(range(1, SHOT_AT_STEP + 1))
    assert {total for _, total in report["sampler_progress"]} == {STEPS}
    assert report["end_event"] == "execution_interrupted"
    pack_words = ("relumix", *fc.PACK_NODES)
    assert not [e for e in report["errors"] if any(w.lower() in e.lower() for w in pack_words)]
    assert report["screenshot"]["path"] == str(shot) and report["screenshot"]["sampler_step"][0] >= SHOT_AT_STEP
    assert 0 < shot.stat().st_size <= fp.MAX_BYTES
    with Image.open(shot) as image:
        assert image.size == tuple(report["screenshot"]["size"]) and image.width >= 600
