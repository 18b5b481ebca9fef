"""Stock SVD in diffusers/transformers folders: which weight files to look for, and their configs as ours."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import CheckpointError
from ..models.clip import CLIPTowerConfig
from ..models.unet import UNetConfig, attention_module_names
from ..models.vae import VAEConfig

UNET_FILES = (
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.fp16.safetensors",
    "diffusion_pytorch_model.bin",
    "diffusion_pytorch_model.fp16.bin",
)
CLIP_FILES = ("model.safetensors", "model.fp16.safetensors", "pytorch_model.bin", "pytorch_model.fp16.bin")


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path} cannot be read as JSON: {err}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} is not a JSON object")
    return data


def weights_file(folder: Path, names: tuple[str, ...]) -> Path:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    if any(folder.glob("*.index.json")):
        raise CheckpointError(f"{folder}: sharded weights are not supported; expected one of {list(names)}")
    raise CheckpointError(f"{folder}: no weights file; expected one of {list(names)}")


def _per_level(value: Any, levels: int, what: str, where: Path) -> tuple[int, ...]:
    values = (value,) * levels if isinstance(value, int) else tuple(value)
    if len(values) != levels or not all(isinstance(v, int) for v in values):
        raise CheckpointError(f"{where}: {what} {value!r} is not one integer per level ({levels} levels)")
    return values


def unet_config_from_diffusers(data: Mapping[str, Any], where: Path) -> UNetConfig:
    """The SVD :class:`UNetConfig` (all attention ungated) of a diffusers ``UNetSpatioTemporalConditionModel``."""
    cls = data.get("_class_name", "UNetSpatioTemporalConditionModel")
    if cls != "UNetSpatioTemporalConditionModel":
        kind = "an image (2-D) UNet, not SVD" if cls.startswith("UNet2D") else "not SVD's UNet"
        raise CheckpointError(f"{where}: the UNet is a {cls}: {kind} (expected UNetSpatioTemporalConditionModel)")
    try:
        down = list(data["down_block_types"])
        channels = tuple(int(c) for c in data["block_out_channels"])
        levels = len(channels)
        heads = _per_level(data["num_attention_heads"], levels, "num_attention_heads", where)
        depth = _per_level(data.get("transformer_layers_per_block", 1), levels, "transformer_layers_per_block", where)
        res_blocks = set(_per_level(data.get("layers_per_block", 2), levels, "layers_per_block", where))
        context = data.get("cross_attention_dim", 1024)
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{where}: incomplete UNet config ({err!r})") from None
    known = {"CrossAttnDownBlockSpatioTemporal": True, "DownBlockSpatioTemporal": False}
    if len(down) != levels or any(t not in known for t in down):
        raise CheckpointError(f"{where}: unsupported down_block_types {down}")
    head_widths = {c // h for c, h in zip(channels, heads, strict=True) if c % h == 0}
    if len(head_widths) != 1 or any(c % h for c, h in zip(channels, heads, strict=True)):
        raise CheckpointError(f"{where}: heads {list(heads)} do not give one head width for channels {list(channels)}")
    if len(res_blocks) != 1 or not isinstance(context, int):
        raise CheckpointError(f"{where}: per-level layers_per_block / cross_attention_dim are not supported")
    if channels[0] == 0 or any(c % channels[0] for c in channels):
        raise CheckpointError(f"{where}: block_out_channels {list(channels)} are not multiples of the first")
    attention = tuple(known[t] for t in down)
    config = UNetConfig(
        in_channels=int(data.get("in_channels", 8)),
        out_channels=int(data.get("out_channels", 4)),
        model_channels=channels[0],
        channel_mult=tuple(c // channels[0] for c in channels),
        num_res_blocks=res_blocks.pop(),
        attention_levels=attention,
        transformer_depth=tuple(d if a else depth[-1] for d, a in zip(depth, attention, strict=True)),
        num_head_channels=head_widths.pop(),
        context_dim=context,
        adm_in_channels=int(data.get("projection_class_embeddings_input_dim", 768)),
    )
    config = UNetConfig.from_dict({**config.to_dict(), "ungated_attention": attention_module_names(config)})
    built = config.diffusers_kwargs()
    if "up_block_types" in data and list(data["up_block_types"]) != list(built["up_block_types"]):
        raise CheckpointError(f"{where}: up_block_types {data['up_block_types']} do not mirror {down}")
    return config


def vae_config_from_diffusers(data: Mapping[str, Any], where: Path) -> VAEConfig:
    """The first-stage :class:`VAEConfig` of a diffusers ``AutoencoderKLTemporalDecoder``."""
    cls = data.get("_class_name", "AutoencoderKLTemporalDecoder")
    if cls != "AutoencoderKLTemporalDecoder":
        raise CheckpointError(f"{where}: the VAE is a {cls}; SVD's is an AutoencoderKLTemporalDecoder")
    down = list(data.get("down_block_types", ["DownEncoderBlock2D"] * 4))
    if any(t != "DownEncoderBlock2D" for t in down):
        raise CheckpointError(f"{where}: unsupported VAE down_block_types {down}")
    layers = int(data.get("layers_per_block", 2))
    if layers != 2:
        raise CheckpointError(
            f"{where}: layers_per_block {layers}: diffusers then builds a mid block with {layers} resnets, sgm's has 2"
        )
    channels = tuple(int(c) for c in data.get("block_out_channels", (128, 256, 512, 512)))
    if len(channels) != len(down):
        raise CheckpointError(f"{where}: {len(channels)} block_out_channels for {len(down)} down blocks")
    return VAEConfig(
        in_channels=int(data.get("in_channels", 3)),
        out_channels=int(data.get("out_channels", 3)),
        ch=channels[0],
        block_out_channels=channels,
        num_res_blocks=layers,
        z_channels=int(data.get("latent_channels", 4)),
    )


def clip_config_from_transformers(data: Mapping[str, Any], where: Path) -> CLIPTowerConfig:
    """The :class:`CLIPTowerConfig` of a transformers ``CLIPVisionModelWithProjection`` config."""
    architectures = data.get("architectures") or ["CLIPVisionModelWithProjection"]
    if "CLIPVisionModelWithProjection" not in architectures:
        raise CheckpointError(f"{where}: image encoder is {architectures}; SVD's is a CLIPVisionModelWithProjection")
    if data.get("hidden_act", "gelu") != "gelu":
        raise CheckpointError(f"{where}: hidden_act {data['hidden_act']!r}; open_clip's ViT (SVD) uses exact 'gelu'")
    try:
        width, heads = int(data["hidden_size"]), int(data["num_attention_heads"])
        return CLIPTowerConfig(
            width=width,
            layers=int(data["num_hidden_layers"]),
            head_width=width // heads,
            patch_size=int(data["patch_size"]),
            image_size=int(data["image_size"]),
            embed_dim=int(data["projection_dim"]),
            intermediate_size=int(data.get("intermediate_size", 4 * width)),
            num_channels=int(data.get("num_channels", 3)),
            layer_norm_eps=float(data.get("layer_norm_eps", 1e-5)),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{where}: incomplete CLIP vision config ({err!r})") from None
