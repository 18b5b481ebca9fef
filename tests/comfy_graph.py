"""A small stand-in for ComfyUI's prompt validation and execution, for testing workflows without ComfyUI.

It follows ComfyUI's rules (execution.py ``validate_inputs`` / ``validate_prompt``): known class types, at least one
output node, every required input given, links to existing nodes and output indices, linked types equal (or "*", or
overlapping comma-separated sets), widget values of the right kind, inside min/max and inside COMBO choices. Nodes
run once each, in dependency order, from the output nodes. Core nodes are replaced by stand-ins with the same
sockets, whose definitions come from a real server's /object_info (tests/comfy_defs/core_nodes.json).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from relumix_core.media.video_io import read_image, read_video, write_video

#: Definitions recorded from a real server's /object_info: core nodes and the third-party packs our workflows use.
CORE_DEFS = {
    name: definition
    for path in sorted((Path(__file__).parent / "comfy_defs").glob("*.json"))
    for name, definition in json.loads(path.read_text()).items()
    if not name.startswith("_")
}
#: COMBO inputs whose choices are files on the user's machine (input folder, model folders).
FILE_CHOICES = {
    ("LoadVideo", "file"),
    ("LoadImage", "image"),
    ("LoadReLumixModel", "checkpoint"),
    ("CheckpointLoaderSimple", "ckpt_name"),
    ("LoadAndApplyICLightUnet", "model_path"),
}


class PromptError(Exception):
    """What ComfyUI would refuse, with the node and input named."""


def _spec_type(spec: Any) -> Any:
    return spec[0] if isinstance(spec, (list, tuple)) else spec


def _spec_options(spec: Any) -> dict[str, Any]:
    return spec[1] if isinstance(spec, (list, tuple)) and len(spec) > 1 and isinstance(spec[1], dict) else {}


def _types_match(output_type: str, input_type: Any) -> bool:
    if isinstance(input_type, (list, tuple)):
        return output_type == "COMBO" or output_type in ("STRING",)
    if "*" in (output_type, input_type):
        return True
    return bool(set(str(output_type).split(",")) & set(str(input_type).split(",")))


@dataclass
class NodeDef:
    """A node's sockets as ComfyUI sees them: inputs by section, output types, and whether it is an output node."""

    inputs: dict[str, dict[str, Any]]
    outputs: list[str]
    output_node: bool


def definition_of(cls: type) -> NodeDef:
    return NodeDef(cls.INPUT_TYPES(), list(cls.RETURN_TYPES), bool(getattr(cls, "OUTPUT_NODE", False)))


def core_definition(name: str) -> NodeDef:
    info = CORE_DEFS[name]
    return NodeDef(info["input"], list(info["output"]), bool(info.get("output_node")))


def check_input_types(name: str, cls: type) -> None:
    """An INPUT_TYPES that ComfyUI's frontend and validator accept (the classic node API)."""
    spec = cls.INPUT_TYPES()
    if not isinstance(spec, dict) or not set(spec) <= {"required", "optional", "hidden"}:
        raise PromptError(f"{name}: INPUT_TYPES sections must be required/optional/hidden, got {list(spec)}")
    for section in ("required", "optional"):
        for key, entry in spec.get(section, {}).items():
            if not isinstance(entry, tuple) or not 1 <= len(entry) <= 2:
                raise PromptError(f"{name}.{key}: an input is a (type,) or (type, options) tuple")
            kind, options = _spec_type(entry), _spec_options(entry)
            if isinstance(kind, (list, tuple)):
                if "default" in options and options["default"] not in kind:
                    raise PromptError(f"{name}.{key}: default {options['default']!r} is not one of the choices")
                continue
            if not isinstance(kind, str) or not kind:
                raise PromptError(f"{name}.{key}: the type must be a non-empty string or a list of choices")
            if kind in ("INT", "FLOAT") and "default" in options:
                low, high = options.get("min", -float("inf")), options.get("max", float("inf"))
                if not low <= options["default"] <= high:
                    raise PromptError(f"{name}.{key}: default {options['default']} outside [{low}, {high}]")
                if kind == "INT" and not isinstance(options["default"], int):
                    raise PromptError(f"{name}.{key}: INT default must be an int")
            if kind == "BOOLEAN" and not isinstance(options.get("default", False), bool):
                raise PromptError(f"{name}.{key}: BOOLEAN default must be a bool")


def validate_prompt(prompt: dict[str, Any], defs: dict[str, NodeDef], files: set[str]) -> list[str]:
    """Check an API-format prompt as ComfyUI does; returns the output node ids."""
    outputs = []
    for node_id, node in prompt.items():
        kind = node.get("class_type")
        if kind not in defs:
            raise PromptError(f"node {node_id}: unknown class_type {kind!r}")
        d = defs[kind]
        if d.output_node:
            outputs.append(node_id)
        given = node.get("inputs", {})
        for section in ("required", "optional"):
            for key, entry in d.inputs.get(section, {}).items():
                if key not in given:
                    if section == "required":
                        raise PromptError(f"node {node_id} ({kind}): required input {key!r} is missing")
                    continue
                _validate_value(node_id, kind, key, entry, given[key], prompt, defs, files)
    if not outputs:
        raise PromptError("the prompt has no output node")
    return outputs


def _validate_value(node_id: str, kind: str, key: str, entry: Any, value: Any, prompt: dict[str, Any],
                    defs: dict[str, NodeDef], files: set[str]) -> None:
    where = f"node {node_id} ({kind}).{key}"
    expected, options = _spec_type(entry), _spec_options(entry)
    if isinstance(value, list):
        if len(value) != 2 or str(value[0]) not in prompt:
            raise PromptError(f"{where}: link {value} points at no node")
        source = prompt[str(value[0])]["class_type"]
        source_outputs = defs[source].outputs
        if not 0 <= value[1] < len(source_outputs):
            raise PromptError(f"{where}: {source} has no output {value[1]}")
        if not _types_match(source_outputs[value[1]], expected):
            raise PromptError(f"{where}: expects {expected}, linked to {source_outputs[value[1]]}")
        return
    if (kind, key) in FILE_CHOICES:
        if value not in files:
            raise PromptError(f"{where}: {value!r} is not in the input or model folder")
        return
    choices = expected if isinstance(expected, (list, tuple)) else options.get("options")
    if isinstance(expected, (list, tuple)) or expected == "COMBO":
        if choices is not None and value not in choices:
            raise PromptError(f"{where}: {value!r} is not one of {list(choices)[:8]}")
        return
    if expected == "INT" and (not isinstance(value, int) or isinstance(value, bool)):
        raise PromptError(f"{where}: expects an INT, got {value!r}")
    if expected == "FLOAT" and not isinstance(value, (int, float)):
        raise PromptError(f"{where}: expects a FLOAT, got {value!r}")
    if expected == "BOOLEAN" and not isinstance(value, bool):
        raise PromptError(f"{where}: expects a BOOLEAN, got {value!r}")
    if expected == "STRING" and not isinstance(value, str):
        raise PromptError(f"{where}: expects a STRING, got {value!r}")
    if expected in ("INT", "FLOAT"):
        if "min" in options and value < options["min"] or "max" in options and value > options["max"]:
            raise PromptError(f"{where}: {value} is outside [{options.get('min')}, {options.get('max')}]")


# ---------------------------------------------------------------------------------------------- core stand-ins


@dataclass
class Video:
    """ComfyUI's VIDEO: frames [T,H,W,3] in 0..1 and a frame rate."""

    images: torch.Tensor
    fps: float


def core_nodes(input_dir: Path, output_dir: Path) -> dict[str, Callable[..., tuple]]:
    """Stand-ins with ComfyUI's semantics for the core nodes our workflows use."""

    def load_video(file: str) -> tuple:
        frames, fps = read_video(input_dir / file)
        return (Video(torch.from_numpy(frames).float() / 255, fps),)

    def load_image(image: str) -> tuple:
        pixels = torch.from_numpy(read_image(input_dir / image)).float()[None] / 255
        return pixels, torch.zeros(pixels.shape[:3])

    def save_video(video: Video, filename_prefix: str, format: str, codec: str) -> tuple:
        target = output_dir / f"{filename_prefix}_00001_.mp4"
        target.parent.mkdir(parents=True, exist_ok=True)
        write_video(target, (video.images.numpy() * 255).round().astype(np.uint8), video.fps)
        return ()

    def from_batch(image: torch.Tensor, batch_index: int, length: int) -> tuple:
        index = min(image.shape[0] - 1, batch_index)
        return (image[index : index + min(image.shape[0] - index, length)].clone(),)

    def batch(image1: torch.Tensor, image2: torch.Tensor) -> tuple:
        """Batch Images (nodes.py ImageBatch): image2 brought to image1's size (centre crop to its aspect, then
        bilinear, as comfy.utils.common_upscale), then both in one batch."""
        if image1.shape[1:] != image2.shape[1:]:
            height, width = image1.shape[1:3]
            h, w = image2.shape[1:3]
            if w * height > h * width:  # image2 is wider: crop its sides
                keep = round(h * width / height)
                image2 = image2[:, :, (w - keep) // 2 : (w - keep) // 2 + keep]
            elif w * height < h * width:
                keep = round(w * height / width)
                image2 = image2[:, (h - keep) // 2 : (h - keep) // 2 + keep]
            image2 = torch.nn.functional.interpolate(image2.movedim(-1, 1), size=(height, width), mode="bilinear",
                                                     align_corners=False).movedim(1, -1)
        return (torch.cat((image1, image2), dim=0),)

    return {
        "LoadVideo": load_video,
        "GetVideoComponents": lambda video: (video.images, None, float(video.fps)),
        "LoadImage": load_image,
        "ImageFromBatch": from_batch,
        "ImageBatch": batch,
        "PreviewImage": lambda images: (),
        "CreateVideo": lambda images, fps, audio=None: (Video(images, fps),),
        "SaveVideo": save_video,
    }


def execute(
    prompt: dict[str, Any], pack_nodes: dict[str, type], input_dir: Path, output_dir: Path, model_dir: Path
) -> dict[str, tuple]:
    """Validate, then run every node the output nodes depend on, each once, inputs before users."""
    defs = {name: core_definition(name) for name in CORE_DEFS if not name.startswith("_")}
    defs.update({name: definition_of(cls) for name, cls in pack_nodes.items()})
    files = {p.name for p in input_dir.iterdir()} | {p.name for p in model_dir.iterdir()}
    outputs = validate_prompt(prompt, defs, files)
    core = core_nodes(input_dir, output_dir)
    results: dict[str, tuple] = {}

    def run(node_id: str) -> tuple:
        if node_id in results:
            return results[node_id]
        node = prompt[node_id]
        kwargs = {}
        for key, value in node["inputs"].items():
            kwargs[key] = run(str(value[0]))[value[1]] if isinstance(value, list) else value
        kind = node["class_type"]
        if kind in pack_nodes:
            cls = pack_nodes[kind]
            results[node_id] = tuple(getattr(cls(), cls.FUNCTION)(**kwargs))
        else:
            results[node_id] = core[kind](**kwargs)
        return results[node_id]

    for node_id in outputs:
        run(node_id)
    return results
