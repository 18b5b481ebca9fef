"""Our workflows: API and UI formats agree, every API workflow validates, and basic, long and keyframes ones run end
to end."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from comfy_graph import PromptError, check_input_types, core_definition, definition_of, execute, validate_prompt
from pack_loader import load_pack
from PIL import Image

from relumix_core.cli.main import main
from relumix_core.media.video_io import read_video, write_video

REPO = Path(__file__).resolve().parents[2]
API = sorted((REPO / "workflows" / "api").glob("*.json"))
TINY = "relumix-tiny-random.safetensors"


def _pack_nodes() -> dict[str, type]:
    return load_pack().NODE_CLASS_MAPPINGS


def _defs() -> dict:
    used = {n["class_type"] for wf in API for n in json.loads(wf.read_text()).values()}
    defs = {name: core_definition(name) for name in used if name not in _pack_nodes()}
    defs.update({name: definition_of(cls) for name, cls in _pack_nodes().items()})
    return defs


def test_every_node_input_types_is_valid() -> None:
    for name, cls in _pack_nodes().items():
        check_input_types(name, cls)


def test_the_checker_rejects_what_comfyui_rejects() -> None:
    wf = json.loads((REPO / "workflows" / "api" / "relumix_basic.json").read_text())
    files = {"relumix_input.mp4", "relumix_reference.png", "relumix-tiny.safetensors"}
    validate_prompt(wf, _defs(), files)
    broken = copy.deepcopy(wf)
    broken["9"]["inputs"]["strategy"] = "zigzag"
    with pytest.raises(PromptError, match="strategy"):
        validate_prompt(broken, _defs(), files)
    broken = copy.deepcopy(wf)
    broken["8"]["inputs"]["model"] = ["2", 0]  # IMAGE into RELUMIX_MODEL
    with pytest.raises(PromptError, match="RELUMIX_MODEL"):
        validate_prompt(broken, _defs(), files)
    broken = copy.deepcopy(wf)
    del broken["9"]["inputs"]["steps"]
    with pytest.raises(PromptError, match="steps"):
        validate_prompt(broken, _defs(), files)


@pytest.mark.parametrize("path", API, ids=[p.stem for p in API])
def test_api_workflow_validates(path: Path) -> None:
    wf = json.loads(path.read_text())
    keys = ("file", "image", "checkpoint", "ckpt_name", "model_path")
    files = {n["inputs"][k] for n in wf.values() for k in keys if isinstance(n["inputs"].get(k), str)}
    validate_prompt(wf, _defs(), files)


def _tiny_run(tmp_path: Path, name: str, frames: int) -> tuple[np.ndarray, Path]:
    inputs, outputs, models = tmp_path / "input", tmp_path / "output", tmp_path / "models" / "relumix"
    for folder in (inputs, outputs, models):
        folder.mkdir(parents=True)
    assert main(["init-tiny", str(models / TINY)]) == 0
    yy, xx = np.mgrid[0:48, 0:80]
    clip = np.stack([np.stack([(xx * 3 + t * 4) % 256, yy * 5 % 256, (xx + yy) % 256], -1) for t in range(frames)])
    write_video(inputs / "relumix_input.mp4", clip.astype(np.uint8), 12)
    wf = json.loads((REPO / "workflows" / "api" / name).read_text())
    for node in wf.values():  # every relit image the graph loads (one reference, or a keyframe each)
        if node["class_type"] == "LoadImage":
            Image.fromarray(clip[0].astype(np.uint8)[..., ::-1].copy()).save(inputs / node["inputs"]["image"])
    for node in wf.values():  # the tiny model, small and fast; everything else as shipped
        if node["class_type"] == "LoadReLumixModel":
            node["inputs"]["checkpoint"] = TINY
        if node["class_type"] == "EmbeddingFuse":
            node["inputs"]["resolution"], node["inputs"]["size"] = "custom", 64
        if node["class_type"] == "ReLumixSampler":
            node["inputs"]["steps"] = 2
    return clip, _execute(wf, tmp_path)


def _execute(wf: dict, root: Path) -> Path:
    import os

    old = os.environ.get("RELUMIX_MODELS_DIR")
    os.environ["RELUMIX_MODELS_DIR"] = str(root / "models" / "relumix")
    try:
        execute(wf, _pack_nodes(), root / "input", root / "output", root / "models" / "relumix")
    finally:
        if old is None:
            del os.environ["RELUMIX_MODELS_DIR"]
        else:
            os.environ["RELUMIX_MODELS_DIR"] = old
    return next((root / "output").rglob("*.mp4"))


@pytest.mark.slow
@pytest.mark.parametrize(("name", "frames", "kept"), [
    ("relumix_basic.json", 8, 8),
    ("relumix_long_video.json", 30, 30),
    ("relumix_keyframes.json", 30, 25),  # keyframes at 0 and 24 of the first 25 frames
])
def test_workflow_runs_end_to_end_with_the_tiny_model(tmp_path: Path, name: str, frames: int, kept: int) -> None:
    clip, written = _tiny_run(tmp_path, name, frames)
    video, fps = read_video(written)
    assert video.shape == clip[:kept].shape  # every frame kept, at the input size
    assert fps == pytest.approx(12, rel=0.01)


@pytest.mark.parametrize("path", API, ids=[p.stem for p in API])
def test_ui_workflow_is_the_api_workflow(path: Path) -> None:
    """workflows/<name>.json (dragged into the UI) is generated from workflows/api/<name>.json and kept in step."""
    from comfy_ui_format import api_to_ui, load_definitions, ui_path

    api = json.loads(path.read_text())
    expected = api_to_ui(api, load_definitions(_pack_nodes()))
    assert ui_path(path).is_file(), f"missing {ui_path(path).name}: run python tests/comfy_ui_format.py"
    stored = json.loads(ui_path(path).read_text())
    assert stored == expected, f"{ui_path(path).name} is stale: run python tests/comfy_ui_format.py"
    # the same graph: every API link is a UI link between the same node ids and slots
    api_links = sorted((int(v[0]), v[1], int(n)) for n, node in api.items() for v in node["inputs"].values()
                       if isinstance(v, list))
    assert sorted((src, slot, dst) for _, src, slot, dst, _, _ in stored["links"]) == api_links
    assert {n["id"] for n in stored["nodes"]} == {int(n) for n in api}
