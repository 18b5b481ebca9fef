"""The UI workflows in ComfyUI's real web frontend, driven by headless Chromium (tests/frontend_check.py).

Skipped unless COMFYUI_DIR (the ComfyUI folder) and COMFYUI_PYTHON (its python) are set and a ``chromium`` binary is
on PATH. Each workflow in workflows/*.json must load with every node, link and widget value of the file, our four
node types registered (not "missing" placeholders), and no frontend errors other than failed resource loads (absent
example inputs, no internet). In relumix_iclight.json only the kijai/ComfyUI-IC-Light nodes may be missing.

tests/comfyui/legacy/relumix_basic.json is relumix_basic.json as saved before Reference Replace and Embedding Fuse
gained the optional keyframe_indices widget (issue 21) and the sampler its reference_pin (issue 20): it must still
load, each old value in its widget, the new widgets at their defaults, and queue the prompt of its API twin.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import frontend_check as fc
import pytest

LEGACY_BASIC = Path(__file__).resolve().parent / "legacy" / "relumix_basic.json"

COMFY_DIR = os.environ.get("COMFYUI_DIR")
COMFY_PYTHON = os.environ.get("COMFYUI_PYTHON")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [pytest.mark.comfyui, pytest.mark.browser, pytest.mark.slow, pytest.mark.skipif(
    not (COMFY_DIR and COMFY_PYTHON and CHROMIUM),
    reason="frontend test: set COMFYUI_DIR (the ComfyUI folder) and COMFYUI_PYTHON (its python) and install "
    "Chromium (a `chromium` binary on PATH, e.g. apt-get install chromium)",
)]


def _unexpected(errors: list[str]) -> list[str]:
    """Errors other than failed resource loads (404s of absent inputs/user files, no network)."""
    return [e for e in errors if not e.startswith("log: Failed to load resource")]


def test_ui_workflows_load_in_the_frontend(tmp_path: Path) -> None:
    shipped = sorted(fc.WORKFLOWS.glob("*.json"))
    report = fc.run_checks(Path(COMFY_DIR), COMFY_PYTHON, CHROMIUM, screenshot=tmp_path / "basic.png",
                           workflows=[*shipped, LEGACY_BASIC])
    (fc.REPO / "out").mkdir(exist_ok=True)
    (fc.REPO / "out" / "frontend_report.json").write_text(json.dumps(report, indent=2))
    *checked, legacy = report["workflows"]
    names = {p.name for p in shipped}
    results = {r["workflow"]: r for r in checked}
    assert set(results) == names
    pack_words = ("relumix", *fc.PACK_NODES)
    assert not [e for e in report["startup_errors"] if any(w.lower() in e.lower() for w in pack_words)]
    for name, result in results.items():
        assert result["problems"] == [], (name, result["problems"])
        assert result["nodes_loaded"] == result["nodes_in_file"], name
        assert result["links_loaded"] == result["links_in_file"], name
        assert result["widget_mismatches"] == [], (name, result["widget_mismatches"])
        allowed = set(fc.ICLIGHT_NODES) if name == "relumix_iclight.json" else set()
        assert set(result["missing_types"]) <= allowed, (name, result["missing_types"])
        assert not set(result["missing_types"]) & set(fc.PACK_NODES)
        assert _unexpected(result["errors"]) == [], (name, result["errors"])
        if name != "relumix_iclight.json":  # graphToPrompt of the loaded graph == the shipped API workflow
            assert result["prompt_matches_api"] is True, name
    assert report["screenshot"]["bytes"] < 500_000
    _check_legacy(legacy)


def _check_legacy(result: dict) -> None:
    """The pre-keyframes basic workflow: loads whole, each newer widget appears at its default after the old widgets
    (keyframe_indices "", the sampler's reference_pin off: the only differences from the file), and its prompt is
    the shipped API workflow's as it was then (legacy/api/: colour anchor off and chain, as that file saved them;
    reference_pin off, its default)."""
    assert result["problems"] == [] and result["missing_types"] == [], result
    assert result["nodes_loaded"] == result["nodes_in_file"] and result["links_loaded"] == result["links_in_file"]
    assert _unexpected(result["errors"]) == [], result["errors"]
    new_defaults = {"ReferenceReplace": "", "EmbeddingFuse": "", "ReLumixSampler": False}  # issues 21 and 20
    grown = {m["type"] for m in result["widget_mismatches"]
             if m["shown"] == [*m["file"], new_defaults.get(m["type"])]
             and m["serialized"] == [*m["file"], new_defaults.get(m["type"])]}
    assert grown == set(new_defaults) == {m["type"] for m in result["widget_mismatches"]}, \
        result["widget_mismatches"]
    assert result["prompt_matches_api"] is True
