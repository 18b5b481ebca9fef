"""Layers that cast their weights to the input's dtype and device at the point of use, and fp8 weight storage.

Why: storing the UNet's Linear/Conv weights in fp8 halves their memory against fp16, but torch cannot compute in
fp8, so each layer upcasts its own weights as it runs (one layer's worth of compute-dtype weights is live at a
time; ComfyUI's ``weight_dtype`` works the same way). Casting at the point of use also lets a layer whose weights
sit on another device than its input run (low-VRAM streaming), and raw parameters used outside a layer's own
forward (the attention gates, the temporal mix factors) are cast where they are used for the same reason.

The cast classes are swapped in by replacing the ``__class__`` of existing instances (:func:`swap_layer_classes`):
no parameter is added, renamed or copied, so state dict keys and values stay as they were. When the weights
already have the input's dtype and device ``Tensor.to`` returns them unchanged, so the cast layers compute
bit-for-bit what the plain ones do.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from diffusers.models.resnet import AlphaBlender
from torch import nn


def cast_like(tensor: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    """``tensor`` on ``like``'s device in ``like``'s dtype (``None`` stays ``None``; a no-op when they match)."""
    return None if tensor is None else tensor.to(device=like.device, dtype=like.dtype)


class CastLinear(nn.Linear):
    """``nn.Linear`` whose weight and bias follow the input's dtype and device."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.linear(input, cast_like(self.weight, input), cast_like(self.bias, input))


class CastConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose weight and bias follow the input's dtype and device."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(input, cast_like(self.weight, input), cast_like(self.bias, input))


class CastConv3d(nn.Conv3d):
    """``nn.Conv3d`` whose weight and bias follow the input's dtype and device."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(input, cast_like(self.weight, input), cast_like(self.bias, input))


class CastGroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` whose affine parameters follow the input's dtype and device."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        weight, bias = cast_like(self.weight, input), cast_like(self.bias, input)
        return F.group_norm(input, self.num_groups, weight, bias, self.eps)


class CastLayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` whose affine parameters follow the input's dtype and device."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(
            input, self.normalized_shape, cast_like(self.weight, input), cast_like(self.bias, input), self.eps
        )


class CastAlphaBlender(AlphaBlender):
    """diffusers' ``AlphaBlender`` (spatial/temporal mix) with ``mix_factor`` cast to the input at the point of use.

    ``AlphaBlender.get_alpha`` reads ``mix_factor`` directly, so a factor on another device fails and one in
    another dtype changes the sigmoid's precision. Here the factor is cast to ``x_spatial`` first; everything else
    is diffusers 0.42's computation (a factor already like the input gives the same bits).
    """

    def forward(
        self, x_spatial: torch.Tensor, x_temporal: torch.Tensor, image_only_indicator: torch.Tensor | None = None
    ) -> torch.Tensor:
        factor = cast_like(self.mix_factor, x_spatial)
        alpha = blend_alpha(self.merge_strategy, factor, image_only_indicator, x_spatial.ndim).to(x_spatial.dtype)
        if self.switch_spatial_to_temporal_mix:
            alpha = 1.0 - alpha
        return alpha * x_spatial + (1.0 - alpha) * x_temporal

    def get_alpha(self, image_only_indicator: torch.Tensor, ndims: int) -> torch.Tensor:
        """``AlphaBlender.get_alpha`` for direct callers, with the factor moved to the indicator's device."""
        device = image_only_indicator.device if image_only_indicator is not None else self.mix_factor.device
        return blend_alpha(self.merge_strategy, self.mix_factor.to(device), image_only_indicator, ndims)


def blend_alpha(
    strategy: str, factor: torch.Tensor, image_only_indicator: torch.Tensor | None, ndims: int
) -> torch.Tensor:
    """The weight of the spatial branch, as ``AlphaBlender.get_alpha`` computes it from ``mix_factor``."""
    if strategy == "fixed":
        return factor
    if strategy == "learned":
        return torch.sigmoid(factor)
    if strategy != "learned_with_images":
        raise NotImplementedError(f"unknown merge strategy {strategy!r}")
    if image_only_indicator is None:
        raise ValueError("Please provide image_only_indicator to use learned_with_images merge strategy")
    alpha = torch.where(
        image_only_indicator.bool(),
        torch.ones(1, 1, device=image_only_indicator.device),
        torch.sigmoid(factor)[..., None],
    )
    if ndims == 5:  # (batch, channel, frames, height, width)
        return alpha[:, None, :, None, None]
    if ndims == 3:  # (batch*frames, height*width, channels)
        return alpha.reshape(-1)[:, None, None]
    raise ValueError(f"Unexpected ndims {ndims}. Dimensions should be 3 or 5")


#: The library layers of the UNet and their cast-at-use versions (for :func:`swap_layer_classes`).
LIBRARY_CASTS: dict[type, type] = {
    nn.Linear: CastLinear,
    nn.Conv2d: CastConv2d,
    nn.Conv3d: CastConv3d,
    nn.GroupNorm: CastGroupNorm,
    nn.LayerNorm: CastLayerNorm,
    AlphaBlender: CastAlphaBlender,
}

#: Layers whose weight and bias :func:`store_weights` may keep in a storage-only dtype (they upcast as they run).
STORABLE_LAYERS: tuple[type, ...] = (CastLinear, CastConv2d, CastConv3d)


def swap_layer_classes(module: nn.Module, classes: Mapping[type, type]) -> int:
    """Give every submodule (``module`` included) whose type is exactly a key of ``classes`` the mapped class.

    Exact types only: a subclass may have a forward of its own that the replacement would silently drop. The
    replacement must add no state of its own (only ``forward`` and friends differ). Returns how many were swapped.
    """
    swapped = 0
    for sub in module.modules():
        replacement = classes.get(type(sub))
        if replacement is not None:
            sub.__class__ = replacement
            swapped += 1
    return swapped


def store_weights(module: nn.Module, weight_dtype: torch.dtype, layers: tuple[type, ...] = STORABLE_LAYERS) -> int:
    """Keep the weight and bias of every ``layers`` instance in ``module`` in ``weight_dtype`` (e.g. fp8), in place.

    Norms, gates, mix factors and buffers keep their dtype, which stays the compute dtype the model reports
    (:func:`~relumix_core.models.precision.compute_dtype`). Call after :func:`swap_layer_classes`, so that the
    stored layers upcast as they run.
    Returns the bytes saved (negative if ``weight_dtype`` is wider than the weights were).
    """
    if not weight_dtype.is_floating_point:
        raise ValueError(f"weights can only be stored in a floating dtype, not {weight_dtype}")
    saved = 0
    for sub in module.modules():
        if not isinstance(sub, layers):
            continue
        for param in sub.parameters(recurse=False):
            if param.is_floating_point() and param.dtype != weight_dtype:
                before = param.numel() * param.element_size()
                param.data = param.data.to(weight_dtype)
                saved += before - param.numel() * param.element_size()
    return saved
