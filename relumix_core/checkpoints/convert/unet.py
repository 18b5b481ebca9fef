"""sgm ``VideoUNet`` (``model.diffusion_model.*``) to :class:`ReLumixUNet` key mapping and config inference.

Both walk the official block order (input blocks per level, optional downsample; middle block; output blocks per
level with ``num_res_blocks + 1`` resnets and an upsample on the last one), so they hold for any config, not just
the full-size one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import torch

from ...errors import CheckpointError
from ...models.unet import UNetConfig, attention_module_names

RESNET_RENAMES = {
    "in_layers.0": "norm1",
    "in_layers.2": "conv1",
    "emb_layers.1": "time_emb_proj",
    "out_layers.0": "norm2",
    "out_layers.3": "conv2",
    "skip_connection": "conv_shortcut",
}
TOP_LEVEL_RENAMES = {
    "time_embed.0": "time_embedding.linear_1",
    "time_embed.2": "time_embedding.linear_2",
    "label_emb.0.0": "add_embedding.linear_1",
    "label_emb.0.2": "add_embedding.linear_2",
    "input_blocks.0.0": "conv_in",
    "out.0": "conv_norm_out",
    "out.2": "conv_out",
}


def sgm_block_map(config: UNetConfig) -> dict[str, tuple[str, str]]:
    """sgm block prefix -> (kind, diffusers prefix), kind in resnet / transformer / down / up."""
    blocks: dict[str, tuple[str, str]] = {}
    levels = len(config.channel_mult)
    k = 1
    for level in range(levels):
        for j in range(config.num_res_blocks):
            blocks[f"input_blocks.{k}.0"] = ("resnet", f"down_blocks.{level}.resnets.{j}")
            if config.attention_levels[level]:
                blocks[f"input_blocks.{k}.1"] = ("transformer", f"down_blocks.{level}.attentions.{j}")
            k += 1
        if level != levels - 1:
            blocks[f"input_blocks.{k}.0.op"] = ("conv", f"down_blocks.{level}.downsamplers.0.conv")
            k += 1
    blocks["middle_block.0"] = ("resnet", "mid_block.resnets.0")
    blocks["middle_block.1"] = ("transformer", "mid_block.attentions.0")
    blocks["middle_block.2"] = ("resnet", "mid_block.resnets.1")
    k = 0
    for i, level in enumerate(reversed(range(levels))):
        for j in range(config.num_res_blocks + 1):
            blocks[f"output_blocks.{k}.0"] = ("resnet", f"up_blocks.{i}.resnets.{j}")
            sub = 1
            if config.attention_levels[level]:
                blocks[f"output_blocks.{k}.1"] = ("transformer", f"up_blocks.{i}.attentions.{j}")
                sub = 2
            if level != 0 and j == config.num_res_blocks:
                blocks[f"output_blocks.{k}.{sub}.conv"] = ("conv", f"up_blocks.{i}.upsamplers.0.conv")
            k += 1
    return blocks


def _resnet_name(rest: str) -> str:
    if rest == "time_mixer.mix_factor":
        return rest
    branch = "spatial_res_block"
    if rest.startswith("time_stack."):
        branch, rest = "temporal_res_block", rest[len("time_stack.") :]
    layer, _, param = rest.rpartition(".")
    if layer not in RESNET_RENAMES:
        raise KeyError(rest)
    return f"{branch}.{RESNET_RENAMES[layer]}.{param}"


def _transformer_name(rest: str) -> str:
    rest = re.sub(r"^time_stack\.(\d+)\.", r"temporal_transformer_blocks.\1.", rest)
    rest = re.sub(r"^time_pos_embed\.0\.", "time_pos_embed.linear_1.", rest)
    rest = re.sub(r"^time_pos_embed\.2\.", "time_pos_embed.linear_2.", rest)
    return re.sub(r"\.(attn[12])\.(gate|gate_activation)\b", r".\1.processor.\2", rest)


class UNetKeyMapper:
    """Maps sgm UNet names (without ``model.diffusion_model.``) to ReLumixUNet state-dict names."""

    def __init__(self, config: UNetConfig) -> None:
        self.config = config
        self.blocks = sgm_block_map(config)
        # Longest prefixes first so "input_blocks.3.0.op" wins over a shorter match.
        self._prefixes = sorted(self.blocks, key=len, reverse=True)

    def __call__(self, name: str) -> str:
        layer, _, param = name.rpartition(".")
        if layer in TOP_LEVEL_RENAMES:
            return f"{TOP_LEVEL_RENAMES[layer]}.{param}"
        for prefix in self._prefixes:
            if name.startswith(prefix + "."):
                kind, target = self.blocks[prefix]
                rest = name[len(prefix) + 1 :]
                if kind == "resnet":
                    return f"{target}.{_resnet_name(rest)}"
                if kind == "transformer":
                    return f"{target}.{_transformer_name(rest)}"
                return f"{target}.{rest}"
        raise KeyError(name)


def convert_unet_key(name: str, tensor: torch.Tensor, config: UNetConfig) -> list[tuple[str, torch.Tensor]]:
    """One sgm UNet tensor to its ReLumixUNet entry (a rename: the tensor itself is passed on, not copied).

    Takes the config like the other components' converters; building the mapper costs ~40 us, so it is not cached.
    """
    return [(UNetKeyMapper(config)(name), tensor)]


def infer_unet_config(
    shapes: Mapping[str, Sequence[int]], num_head_channels: int = 64, **overrides: object
) -> UNetConfig:
    """Read the UNet hyper-parameters from sgm tensor shapes (names without ``model.diffusion_model.``).

    The head width cannot be read from shapes; the authors use 64-channel heads.
    """
    try:
        conv_in = shapes["input_blocks.0.0.weight"]
        time_embed = shapes["time_embed.0.weight"]
        label_emb = shapes["label_emb.0.0.weight"]
        conv_out = shapes["out.2.weight"]
    except KeyError as missing:
        raise CheckpointError(f"not a video UNet: the tensor {missing.args[0]!r} is missing") from None
    model_channels, in_channels = int(conv_in[0]), int(conv_in[1])
    if int(time_embed[0]) != 4 * model_channels:
        raise CheckpointError(f"time embedding width {time_embed[0]} is not 4 x {model_channels} channels")

    level_channels: list[list[int]] = [[]]
    level_attention: list[list[bool]] = [[]]
    level_depth: list[list[int]] = [[]]
    k = 1
    while f"input_blocks.{k}.0.op.weight" in shapes or f"input_blocks.{k}.0.out_layers.3.weight" in shapes:
        if f"input_blocks.{k}.0.op.weight" in shapes:
            level_channels.append([])
            level_attention.append([])
            level_depth.append([])
        else:
            level_channels[-1].append(int(shapes[f"input_blocks.{k}.0.out_layers.3.weight"][0]))
            depth = 0
            while f"input_blocks.{k}.1.transformer_blocks.{depth}.norm1.weight" in shapes:
                depth += 1
            level_attention[-1].append(depth > 0)
            level_depth[-1].append(depth)
        k += 1

    counts = {len(c) for c in level_channels}
    if len(counts) != 1 or 0 in counts:
        raise CheckpointError(f"unsupported UNet layout: res blocks per level {[len(c) for c in level_channels]}")
    for name, per_level in (("channels", level_channels), ("attention", level_attention), ("depth", level_depth)):
        if any(len(set(v)) != 1 for v in per_level):
            raise CheckpointError(f"unsupported UNet layout: {name} vary within a level: {per_level}")
    channels = [c[0] for c in level_channels]
    if any(c % model_channels for c in channels):
        raise CheckpointError(f"level channels {channels} are not multiples of {model_channels}")
    attention = [a[0] for a in level_attention]
    mid_depth = 0
    while f"middle_block.1.transformer_blocks.{mid_depth}.norm1.weight" in shapes:
        mid_depth += 1
    depth = [d[0] if a else mid_depth for d, a in zip(level_depth, attention, strict=True)]
    if attention[-1] and depth[-1] != mid_depth or not mid_depth:
        raise CheckpointError(f"unsupported UNet layout: middle transformer depth {mid_depth}, levels {depth}")
    context_dim = int(shapes["middle_block.1.transformer_blocks.0.attn2.to_k.weight"][1])

    config = UNetConfig(
        in_channels=in_channels,
        out_channels=int(conv_out[0]),
        model_channels=model_channels,
        channel_mult=tuple(c // model_channels for c in channels),
        num_res_blocks=counts.pop(),
        attention_levels=tuple(attention),
        transformer_depth=tuple(depth),
        num_head_channels=num_head_channels,
        context_dim=context_dim,
        adm_in_channels=int(label_emb[1]),
    )
    mapper = UNetKeyMapper(config)
    gated = {mapper(n).rsplit(".processor.", 1)[0] for n in shapes if n.endswith(".gate")}
    ungated = tuple(n for n in attention_module_names(config) if n not in gated)
    values = {**config.to_dict(), "ungated_attention": ungated, **overrides}
    return UNetConfig.from_dict(values)
