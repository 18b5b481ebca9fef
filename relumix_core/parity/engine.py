"""Load the tiny official engine of a fixture folder (its weight files together) through the real loader."""

from __future__ import annotations

import torch

from ..checkpoints.loading import LoadOptions, load_official
from ..checkpoints.tensor_source import DictSource
from ..models.relumix import ReLumixModel
from .common import Fixture

WEIGHT_FILES = ("unet_tiny.safetensors", "vae_tiny.safetensors", "clip_tiny.safetensors")
WEIGHT_PREFIXES = ("model.diffusion_model.", "first_stage_model.", "conditioner.")


def _head_widths(fixture: Fixture) -> tuple[int, int]:
    """UNet and CLIP head widths, which shapes cannot tell: from the fixture's yaml or its sibling JSONs."""
    yaml = fixture.meta.get("tiny_engine_yaml")
    if yaml:
        unet_heads = yaml["params"]["network_config"]["params"]["num_head_channels"]
    else:
        unet_heads = fixture.sibling("unet_tiny.json").meta["unet_config"]["num_head_channels"]
    clip_meta = fixture.sibling("clip_tiny.json").meta
    vision = clip_meta["tiny_open_clip_model_config"]["vision_cfg"]
    clip_heads = vision.get("head_width") or vision["width"] // clip_meta["visual_structure"]["num_heads"]
    return int(unet_heads), int(clip_heads)


def _fps_embed_dim(fixture: Fixture) -> int | None:
    """Width of the fps_id sinusoid (the vector's split is not in any shape): from the JSON or its yaml."""
    if "fps_id_outdim" in fixture.meta:
        return int(fixture.meta["fps_id_outdim"])
    yaml = fixture.meta.get("tiny_engine_yaml")
    if yaml:
        for embedder in yaml["params"]["conditioner_config"]["params"]["emb_models"]:
            if embedder.get("input_key") == "fps_id":
                return int(embedder["params"]["outdim"])
    return None


def load_fixture_engine(fixture: Fixture, dtype: torch.dtype) -> ReLumixModel:
    """The union of the folder's weight files is the complete tiny engine (fixtures README, section 8)."""
    tensors: dict[str, torch.Tensor] = {}
    for name in WEIGHT_FILES:
        weights = fixture.sibling(name.replace(".safetensors", ".json"))
        tensors.update({k: v for k, v in weights.tensors.items() if k.startswith(WEIGHT_PREFIXES)})
    unet_heads, clip_heads = _head_widths(fixture)
    options = LoadOptions(
        dtype=dtype, num_head_channels=unet_heads, clip_head_width=clip_heads, fps_embed_dim=_fps_embed_dim(fixture)
    )
    model, _ = load_official(DictSource(fixture.path.parent / "engine", tensors), options)
    return model
