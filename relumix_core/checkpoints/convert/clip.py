"""open_clip image-tower keys (sgm checkpoint) -> transformers ``CLIPVisionModelWithProjection`` keys.

Names are relative to ``conditioner.embedders.N.open_clip.model.``. The image tower lives under ``visual.``; the
text leftovers that sgm keeps in the state_dict (``token_embedding``, ``positional_embedding``, ``ln_final``,
``text_projection``, ``logit_scale``) are unused: ``convert_clip_key`` returns ``[]`` for them and
``is_unused_clip_key`` tells them apart, so callers can drop them without treating them as unknown.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

from torch import Tensor

from relumix_core.errors import CheckpointError
from relumix_core.models.clip import VIT_H_14_HEAD_WIDTH, CLIPTowerConfig, clip_extra_tensors

__all__ = [
    "clip_extra_tensors",
    "clip_target_shapes",
    "convert_clip_key",
    "convert_clip_state_dict",
    "infer_clip_config",
    "is_unused_clip_key",
]

_UNUSED_PREFIXES = ("token_embedding.", "ln_final.")
_UNUSED_NAMES = frozenset({"positional_embedding", "text_projection", "logit_scale"})
_VM = "vision_model."
_RESBLOCK = re.compile(r"^visual\.transformer\.resblocks\.(\d+)\.(.+)$")

#: Direct one-to-one renames outside the residual blocks.
_DIRECT = {
    "visual.conv1.weight": _VM + "embeddings.patch_embedding.weight",
    "visual.class_embedding": _VM + "embeddings.class_embedding",
    "visual.positional_embedding": _VM + "embeddings.position_embedding.weight",
    "visual.ln_pre.weight": _VM + "pre_layrnorm.weight",
    "visual.ln_pre.bias": _VM + "pre_layrnorm.bias",
    "visual.ln_post.weight": _VM + "post_layernorm.weight",
    "visual.ln_post.bias": _VM + "post_layernorm.bias",
}

#: Renames inside ``visual.transformer.resblocks.i`` (in_proj is split separately).
_BLOCK = {
    "ln_1.weight": "layer_norm1.weight",
    "ln_1.bias": "layer_norm1.bias",
    "ln_2.weight": "layer_norm2.weight",
    "ln_2.bias": "layer_norm2.bias",
    "attn.out_proj.weight": "self_attn.out_proj.weight",
    "attn.out_proj.bias": "self_attn.out_proj.bias",
    "mlp.c_fc.weight": "mlp.fc1.weight",
    "mlp.c_fc.bias": "mlp.fc1.bias",
    "mlp.c_proj.weight": "mlp.fc2.weight",
    "mlp.c_proj.bias": "mlp.fc2.bias",
}

_REQUIRED = (
    "visual.conv1.weight",
    "visual.class_embedding",
    "visual.positional_embedding",
    "visual.proj",
)


def is_unused_clip_key(name: str) -> bool:
    """True for the text-tower leftovers that the image embedder keeps but never uses."""
    return name in _UNUSED_NAMES or name.startswith(_UNUSED_PREFIXES)


def _shape(value: Tensor | Sequence[int]) -> tuple[int, ...]:
    return tuple(value.shape) if isinstance(value, Tensor) else tuple(int(d) for d in value)


def infer_clip_config(
    shapes: Mapping[str, Tensor | Sequence[int]],
    head_width: int | None = None,
    **overrides: object,
) -> CLIPTowerConfig:
    """Tower config from key shapes (or tensors); ``head_width`` is not in the shapes (None: ViT-H-14's 80).

    ``overrides`` set the config fields that shapes cannot tell (``layer_norm_eps``, ``attn_implementation``).
    """
    shapes = {k: _shape(v) for k, v in shapes.items()}
    missing = [k for k in _REQUIRED if k not in shapes]
    if missing:
        raise CheckpointError(f"not an open_clip image tower: missing {missing} (names relative to open_clip.model.)")
    if "visual.conv1.bias" in shapes:
        raise CheckpointError("visual.conv1.bias found: the open_clip ViT (and transformers CLIP) conv1 has no bias")
    conv = shapes["visual.conv1.weight"]
    if len(conv) != 4 or conv[2] != conv[3]:
        raise CheckpointError(f"visual.conv1.weight must be [width, C, p, p], got {list(conv)}")
    width, channels, patch = conv[0], conv[1], conv[2]
    positions = shapes["visual.positional_embedding"][0]
    grid = math.isqrt(max(positions - 1, 0))
    if grid * grid + 1 != positions:
        raise CheckpointError(f"visual.positional_embedding has {positions} rows, not a square grid + class token")
    proj = shapes["visual.proj"]
    if len(proj) != 2 or proj[0] != width:
        raise CheckpointError(f"visual.proj must be [{width}, embed_dim], got {list(proj)}")
    layers = sorted({int(m.group(1)) for k in shapes if (m := _RESBLOCK.match(k))})
    if layers != list(range(len(layers))):
        raise CheckpointError(f"visual.transformer.resblocks indices are not contiguous from 0: {layers}")
    fc = shapes.get("visual.transformer.resblocks.0.mlp.c_fc.weight")
    head_width = VIT_H_14_HEAD_WIDTH if head_width is None else int(head_width)
    if width % head_width:
        raise CheckpointError(f"tower width {width} is not a multiple of head_width {head_width}; pass head_width")
    return CLIPTowerConfig(
        width=width,
        layers=len(layers),
        head_width=head_width,
        patch_size=patch,
        image_size=grid * patch,
        embed_dim=proj[1],
        intermediate_size=fc[0] if fc else None,
        num_channels=channels,
        **overrides,
    )


def clip_target_shapes(config: CLIPTowerConfig) -> dict[str, tuple[int, ...]]:
    """Every transformers state_dict key with its shape, computed from the config (no model needed)."""
    w, c, p, m = (
        config.width,
        config.num_channels,
        config.patch_size,
        config.intermediate_size,
    )
    out: dict[str, tuple[int, ...]] = {
        _VM + "embeddings.class_embedding": (w,),
        _VM + "embeddings.patch_embedding.weight": (w, c, p, p),
        _VM + "embeddings.position_embedding.weight": (config.num_positions, w),
        _VM + "pre_layrnorm.weight": (w,),
        _VM + "pre_layrnorm.bias": (w,),
    }
    for i in range(config.layers):
        pre = f"{_VM}encoder.layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            out[pre + f"self_attn.{proj}.weight"] = (w, w)
            out[pre + f"self_attn.{proj}.bias"] = (w,)
        for norm in ("layer_norm1", "layer_norm2"):
            out[pre + f"{norm}.weight"] = (w,)
            out[pre + f"{norm}.bias"] = (w,)
        out[pre + "mlp.fc1.weight"] = (m, w)
        out[pre + "mlp.fc1.bias"] = (m,)
        out[pre + "mlp.fc2.weight"] = (w, m)
        out[pre + "mlp.fc2.bias"] = (w,)
    out[_VM + "post_layernorm.weight"] = (w,)
    out[_VM + "post_layernorm.bias"] = (w,)
    out["visual_projection.weight"] = (config.embed_dim, w)
    return out


def _rename(name: str, tensor: Tensor, config: CLIPTowerConfig) -> list[tuple[str, Tensor]]:
    if name in _DIRECT:
        return [(_DIRECT[name], tensor)]
    if name == "visual.proj":
        return [("visual_projection.weight", tensor.t().contiguous())]
    match = _RESBLOCK.match(name)
    if match is None:
        raise KeyError(f"unknown open_clip key {name!r}")
    index, rest = int(match.group(1)), match.group(2)
    if index >= config.layers:
        raise CheckpointError(f"{name}: block {index} but the config has {config.layers} layers")
    pre = f"{_VM}encoder.layers.{index}."
    if rest in _BLOCK:
        return [(pre + _BLOCK[rest], tensor)]
    if rest in ("attn.in_proj_weight", "attn.in_proj_bias"):
        if tensor.shape[0] != 3 * config.width:
            raise CheckpointError(f"{name}: first dim {tensor.shape[0]} is not 3 * width ({3 * config.width})")
        kind = "weight" if rest.endswith("weight") else "bias"
        q, k, v = tensor.chunk(3, dim=0)
        return [(pre + f"self_attn.{p}_proj.{kind}", t) for p, t in (("q", q), ("k", k), ("v", v))]
    raise KeyError(f"unknown open_clip key {name!r}")


def convert_clip_key(name: str, tensor: Tensor, config: CLIPTowerConfig) -> list[tuple[str, Tensor]]:
    """One open_clip key -> its transformers keys ([] for unused text leftovers); works on meta tensors.

    The q/k/v tensors are views of ``in_proj`` (no copy). Raises KeyError on unknown names and CheckpointError
    when a shape disagrees with ``config``.
    """
    if is_unused_clip_key(name):
        return []
    out = _rename(name, tensor, config)
    expected = clip_target_shapes(config)
    for new_name, new_tensor in out:
        if tuple(new_tensor.shape) != expected[new_name]:
            raise CheckpointError(
                f"{name}: shape {list(tensor.shape)} gives {new_name} {list(new_tensor.shape)}, "
                f"expected {list(expected[new_name])} for this config"
            )
    return out


def convert_clip_state_dict(state: Mapping[str, Tensor], config: CLIPTowerConfig) -> dict[str, Tensor]:
    """A whole tower (relative names); checks that every transformers key is produced exactly once."""
    out: dict[str, Tensor] = {}
    for name, tensor in state.items():
        for new_name, new_tensor in convert_clip_key(name, tensor, config):
            if new_name in out:
                raise CheckpointError(f"{name}: {new_name} produced twice")
            out[new_name] = new_tensor
    missing = sorted(set(clip_target_shapes(config)) - set(out))
    if missing:
        raise CheckpointError(f"open_clip image tower is incomplete: no source for {missing[:5]} ({len(missing)} keys)")
    return out
