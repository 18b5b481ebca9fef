"""ComfyUI's partial loading streams ReLumix's UNet and the pictures do not change (real ComfyUI, on the CPU).

Skipped unless COMFYUI_DIR and COMFYUI_PYTHON are set. The check runs in ComfyUI's own Python
(tests/comfyui/lowvram_check.py); its figures go to out/real_comfyui_lowvram.json.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COMFY_DIR = os.environ.get("COMFYUI_DIR")
COMFY_PYTHON = os.environ.get("COMFYUI_PYTHON")

pytestmark = [pytest.mark.comfyui, pytest.mark.slow, pytest.mark.skipif(
    not (COMFY_DIR and COMFY_PYTHON),
    reason="real ComfyUI test: set COMFYUI_DIR (the ComfyUI folder) and COMFYUI_PYTHON (its python)",
)]


def test_a_partially_loaded_unet_relights_as_the_normal_run() -> None:
    done = subprocess.run([COMFY_PYTHON, str(REPO / "tests" / "comfyui" / "lowvram_check.py"), COMFY_DIR, str(REPO)],
                          capture_output=True, text=True, timeout=600, cwd=COMFY_DIR)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    (REPO / "out").mkdir(exist_ok=True)
    (REPO / "out" / "real_comfyui_lowvram.json").write_text(json.dumps(report, indent=2))
    streamed = report["fp32"]
    assert streamed["partially_loaded"] and streamed["layers_streamed"] > 0
    assert streamed["layers_streamed"] < streamed["layers_swapped"]  # a quarter of the UNet stayed loaded
    assert streamed["max_abs_vs_normal"] == 0.0  # same weights, same dtype: streaming changes nothing
    fp8 = report["fp8_e4m3fn"]
    assert fp8["partially_loaded"] and 0 < fp8["mean_abs_vs_normal"] < 0.05
