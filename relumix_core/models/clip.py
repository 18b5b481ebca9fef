"""OpenCLIP image tower of the ReLumix conditioner, as a transformers ``CLIPVisionModelWithProjection``.

The official embedders (``FrozenOpenCLIPImageEmbedder``) run an open_clip ViT (ViT-H-14 in the real model) after a
kornia antialiased bicubic resize. The tower maps one-to-one onto transformers' CLIP vision model; the
preprocessing is re-implemented here in plain torch (no kornia/torchvision dependency).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

#: CLIP normalisation constants, as in open_clip / sgm (``OPENAI_DATASET_MEAN`` / ``_STD``).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

#: ViT-H-14 head width; it cannot be inferred from weight shapes, hence a config value.
VIT_H_14_HEAD_WIDTH = 80

#: Attention implementations that keep float64 numerics in float64 ("eager" softmaxes in float32 in transformers).
ATTN_IMPLEMENTATIONS = ("sdpa", "eager")


@dataclass
class CLIPTowerConfig:
    """Shape of an open_clip ``VisionTransformer`` (class-token pooling, no conv bias, exact GELU)."""

    width: int
    layers: int
    head_width: int
    patch_size: int
    image_size: int
    embed_dim: int
    intermediate_size: int | None = None  # None: 4 * width (open_clip mlp_ratio 4)
    num_channels: int = 3
    layer_norm_eps: float = 1e-5
    attn_implementation: str = "sdpa"

    def __post_init__(self) -> None:
        if self.intermediate_size is None:
            self.intermediate_size = 4 * self.width
        if self.head_width <= 0 or self.width % self.head_width:
            raise ValueError(f"width {self.width} is not a multiple of head_width {self.head_width}")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if self.attn_implementation not in ATTN_IMPLEMENTATIONS:
            raise ValueError(
                f"attn_implementation must be one of {ATTN_IMPLEMENTATIONS}, got {self.attn_implementation!r}"
            )

    @property
    def heads(self) -> int:
        return self.width // self.head_width

    @property
    def grid_size(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_positions(self) -> int:
        """Patch tokens plus the class token."""
        return self.grid_size**2 + 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CLIPTowerConfig:
        """Inverse of ``to_dict``; also accepts ``heads`` instead of ``head_width``. Unknown keys are an error."""
        data = dict(data)
        if "heads" in data:
            heads = int(data.pop("heads"))
            if data.get("head_width") is None:
                data["head_width"] = int(data["width"]) // heads
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown CLIPTowerConfig keys: {sorted(unknown)}")
        return cls(**data)

    def to_transformers(self) -> CLIPVisionConfig:
        """The equivalent transformers config (exact ``gelu``, as open_clip's ``nn.GELU``)."""
        return CLIPVisionConfig(
            hidden_size=self.width,
            intermediate_size=self.intermediate_size,
            projection_dim=self.embed_dim,
            num_hidden_layers=self.layers,
            num_attention_heads=self.heads,
            num_channels=self.num_channels,
            image_size=self.image_size,
            patch_size=self.patch_size,
            hidden_act="gelu",
            layer_norm_eps=self.layer_norm_eps,
            attention_dropout=0.0,
            attn_implementation=self.attn_implementation,
        )


def clip_extra_tensors(config: CLIPTowerConfig) -> dict[str, Tensor]:
    """Non-persistent buffers of the transformers model that no checkpoint provides (built on CPU)."""
    ids = torch.arange(config.num_positions, device="cpu").expand((1, -1))
    return {"vision_model.embeddings.position_ids": ids}


def build_image_encoder(config: CLIPTowerConfig) -> CLIPVisionModelWithProjection:
    """An (uninitialised when under ``torch.device('meta')``) encoder in eval mode.

    Parameters follow the ambient device; meta buffers without a checkpoint source (``position_ids``) are
    materialised on CPU so that ``load_state_dict(assign=True)`` yields a usable model.
    """
    model = CLIPVisionModelWithProjection(config.to_transformers())
    for name, value in clip_extra_tensors(config).items():
        owner_name, _, attr = name.rpartition(".")
        owner = model.get_submodule(owner_name)
        if getattr(owner, attr).is_meta:
            owner.register_buffer(attr, value, persistent=False)
    return model.eval().requires_grad_(False)


def _gaussian_kernel1d(size: int, sigma: float, like: Tensor) -> Tensor:
    """kornia's ``get_gaussian_kernel1d``: centred at ``size // 2``, computed in the input dtype, sum-normalised."""
    sigma_t = torch.tensor(sigma, dtype=like.dtype, device=like.device)
    x = torch.arange(size, dtype=like.dtype, device=like.device) - float(size // 2)
    if size % 2 == 0:
        x = x + 0.5
    gauss = torch.exp(-x.pow(2.0) / (2 * sigma_t.pow(2.0)))
    return gauss / gauss.sum()


def _blur_axis(x: Tensor, kernel: Tensor, dim: int) -> Tensor:
    """Depthwise 1-D correlation along H (dim -2) or W (dim -1) with 'reflect' padding (kornia ``filter2d``)."""
    size = kernel.numel()
    left = (size - 1) // 2
    right = size - 1 - left
    channels = x.shape[1]
    if dim == -1:
        x = F.pad(x, (left, right, 0, 0), mode="reflect")
        weight = kernel.view(1, 1, 1, size)
    else:
        x = F.pad(x, (0, 0, left, right), mode="reflect")
        weight = kernel.view(1, 1, size, 1)
    return F.conv2d(x, weight.expand(channels, 1, -1, -1), groups=channels)


def _antialias_params(in_size: int, out_size: int) -> tuple[float, int]:
    """kornia ``resize`` antialias rule for one axis: sigma = max((f-1)/2, 0.001), kernel int(max(4 sigma, 3)) odd."""
    sigma = max((in_size / out_size - 1.0) / 2.0, 0.001)
    ks = int(max(2.0 * 2 * sigma, 3))
    return sigma, ks + 1 if ks % 2 == 0 else ks


def resize_bicubic_antialias(x: Tensor, size: tuple[int, int]) -> Tensor:
    """``kornia.geometry.resize(x, size, 'bicubic', align_corners=True, antialias=True)`` on [N, C, H, W].

    kornia blurs both axes (W first, then H) whenever either axis is downscaled, then interpolates.
    """
    in_h, in_w = x.shape[-2:]
    if (in_h, in_w) == tuple(size):
        return x
    if max(in_h / size[0], in_w / size[1]) > 1:
        sigma_h, ks_h = _antialias_params(in_h, size[0])
        sigma_w, ks_w = _antialias_params(in_w, size[1])
        x = _blur_axis(x, _gaussian_kernel1d(ks_w, sigma_w, x), dim=-1)
        x = _blur_axis(x, _gaussian_kernel1d(ks_h, sigma_h, x), dim=-2)
    return F.interpolate(x, size=tuple(size), mode="bicubic", align_corners=True)


def preprocess_for_clip(x: Tensor, size: int = 224) -> Tensor:
    """Official ``FrozenOpenCLIPImageEmbedder.preprocess``: resize, (x+1)/2, CLIP mean/std.

    Expects [-1, 1] input; a [0, 1] input goes through the same (x+1)/2 (official quirk, kept on purpose).
    mean/std are built in the input dtype, like the buffers of the official float32 / float64 engines.
    """
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected images [N, 3, H, W], got {tuple(x.shape)}")
    x = resize_bicubic_antialias(x, (size, size))
    x = (x + 1.0) / 2.0
    mean = torch.tensor(CLIP_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def embed_images(encoder: CLIPVisionModelWithProjection, x: Tensor) -> Tensor:
    """Images [N, 3, H, W] in [-1, 1] -> projected class-token embeddings [N, D] in the input dtype."""
    pixels = preprocess_for_clip(x, size=encoder.config.image_size)
    out = encoder(pixel_values=pixels).image_embeds
    return out.to(x.dtype)
