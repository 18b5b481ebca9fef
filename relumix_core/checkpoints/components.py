"""The named components of a ReLumix model and how each one is read from the official checkpoint layout.

One table says, for every component, its sgm prefix, how to infer its config from shapes, how to convert a key,
and how to build the module. Loading, conversion and the key-manifest check all go through it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..models.clip import CLIPTowerConfig, build_image_encoder
from ..models.unet import UNetConfig, build_unet
from ..models.vae import VAEConfig, build_latent_encoder, build_temporal_vae
from .convert.clip import convert_clip_key, infer_clip_config, is_unused_clip_key
from .convert.unet import convert_unet_key, infer_unet_config
from .convert.vae import (
    convert_first_stage_key,
    convert_latent_encoder_key,
    first_stage_extra_tensors,
    infer_vae_config,
    is_unused_latent_encoder_key,
)

Pairs = list[tuple[str, torch.Tensor]]


@dataclass(frozen=True)
class ComponentSpec:
    """How one component maps from the official layout (names relative to ``sgm_prefix``)."""

    name: str
    sgm_prefix: str
    role: str
    config_type: type
    infer: Callable[[Mapping[str, Sequence[int]], Mapping[str, Any]], Any]
    convert: Callable[[str, torch.Tensor, Any], Pairs]
    build: Callable[[Any], nn.Module]
    is_unused: Callable[[str], bool] = lambda name: False
    extra: Callable[[Any, torch.dtype], dict[str, torch.Tensor]] | None = None
    #: The component whose weights this one duplicates in the official checkpoint, if identical.
    duplicate_of: str | None = None
    #: Submodules that may duplicate another component's submodule: (own path, "component.path"). The sgm names
    #: below both paths are the same (e.g. embedder #3's ``encoder.*`` and ``first_stage_model.encoder.*``).
    duplicate_submodules: tuple[tuple[str, str], ...] = ()


def _infer_unet(shapes: Mapping[str, Sequence[int]], options: Mapping[str, Any]) -> UNetConfig:
    return infer_unet_config(shapes, num_head_channels=options.get("num_head_channels", 64))


def _infer_clip(shapes: Mapping[str, Sequence[int]], options: Mapping[str, Any]) -> CLIPTowerConfig:
    return infer_clip_config(shapes, head_width=options.get("clip_head_width"))


def _infer_vae(shapes: Mapping[str, Sequence[int]], options: Mapping[str, Any]) -> VAEConfig:
    return infer_vae_config(shapes)


def _clip_spec(name: str, index: int, role: str, duplicate_of: str | None = None) -> ComponentSpec:
    return ComponentSpec(
        name=name,
        sgm_prefix=f"conditioner.embedders.{index}.open_clip.model.",
        role=role,
        config_type=CLIPTowerConfig,
        infer=_infer_clip,
        convert=convert_clip_key,
        build=build_image_encoder,
        is_unused=is_unused_clip_key,
        duplicate_of=duplicate_of,
    )


def _latent_spec(name: str, index: int, role: str, duplicate_of: str | None = None) -> ComponentSpec:
    return ComponentSpec(
        name=name,
        sgm_prefix=f"conditioner.embedders.{index}.encoder.",
        role=role,
        config_type=VAEConfig,
        infer=_infer_vae,
        convert=convert_latent_encoder_key,
        build=build_latent_encoder,
        is_unused=is_unused_latent_encoder_key,
        duplicate_of=duplicate_of,
        duplicate_submodules=(("encoder", "vae.encoder"),),  # SVD's embedder encoder is the first stage's
    )


COMPONENTS: dict[str, ComponentSpec] = {
    spec.name: spec
    for spec in (
        ComponentSpec(
            name="unet",
            sgm_prefix="model.diffusion_model.",
            role="video UNet (denoiser)",
            config_type=UNetConfig,
            infer=_infer_unet,
            convert=convert_unet_key,
            build=build_unet,
        ),
        ComponentSpec(
            name="vae",
            sgm_prefix="first_stage_model.",
            role="temporal VAE (decodes the result; its encoder makes training targets)",
            config_type=VAEConfig,
            infer=_infer_vae,
            convert=convert_first_stage_key,
            build=build_temporal_vae,
            extra=lambda config, dtype: first_stage_extra_tensors(config, dtype),
        ),
        _clip_spec("image_encoder", 0, "CLIP image encoder of the source frames (embedder #0)"),
        _clip_spec(
            "reference_image_encoder", 1, "CLIP image encoder of the reference (embedder #1)", "image_encoder"
        ),
        _latent_spec("frame_encoder", 3, "VAE encoder of the source frames (embedder #3)"),
        _latent_spec("reference_encoder", 4, "VAE encoder of the reference (embedder #4)", "frame_encoder"),
    )
}

#: Keys that are in official checkpoints but play no part in inference, by prefix, with the reason.
IGNORED_PREFIXES: dict[str, str] = {
    "model_ema.": "EMA copy of the UNet",
    "lpips.": "loss network (LPIPS)",
    "loss_fn.": "loss network",
    "first_stage_model.loss.": "autoencoder training loss",
    "first_stage_model.regularization.": "autoencoder regularizer",
    "conditioner.embedders.0.open_clip.model.transformer.": "OpenCLIP text tower",
    "conditioner.embedders.1.open_clip.model.transformer.": "OpenCLIP text tower",
}


def component_for(key: str) -> ComponentSpec | None:
    for spec in COMPONENTS.values():
        if key.startswith(spec.sgm_prefix):
            return spec
    return None


def config_from_dict(name: str, data: Mapping[str, Any]) -> Any:
    return COMPONENTS[name].config_type.from_dict(dict(data))
