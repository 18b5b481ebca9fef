"""The ReLumix UNet: diffusers' ``UNetSpatioTemporalConditionModel`` with the official network's differences.

What differs from stock SVD in diffusers, and why:

* 12 input channels (noisy latent, source-frame latents, reference latent) and a 2048-dim context.
* A context per frame, ``[B*T, 1, D]``: ReLumix gives every frame its own CLIP embedding, whereas diffusers repeats
  one context per video.
* The 768-dim "vector" conditioning (sinusoids of fps_id and cond_aug) goes straight into the add-embedding MLP;
  diffusers' 3x256 ``add_time_proj`` path would not reproduce it.
* ResNet GroupNorm eps of 1e-5 everywhere, as in sgm (diffusers uses 1e-6 in some blocks).
* A learned gate on every attention module (see :mod:`relumix_core.models.gated_attention`), except where a
  checkpoint lacks it (official quirk Q1).
* ``image_only_indicator`` is an input instead of being forced to zeros.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from diffusers import UNetSpatioTemporalConditionModel
from diffusers.models.embeddings import Timesteps, get_timestep_embedding
from diffusers.models.resnet import SpatioTemporalResBlock
from torch import nn

from .gated_attention import install_gates

#: sgm's ResBlock GroupNorm32 uses torch's default eps.
SGM_RESNET_EPS = 1e-5


@dataclass
class UNetConfig:
    """The official ``VideoUNet`` hyper-parameters (sgm names), from which the diffusers model is built."""

    in_channels: int = 12
    out_channels: int = 4
    model_channels: int = 320
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    attention_levels: tuple[bool, ...] = (True, True, True, False)
    transformer_depth: tuple[int, ...] = (1, 1, 1, 1)
    num_head_channels: int = 64
    context_dim: int = 2048
    adm_in_channels: int = 768
    #: diffusers names of attention modules without a gate (e.g. the spatial ones, quirk Q1).
    ungated_attention: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for name in ("channel_mult", "attention_levels", "transformer_depth", "ungated_attention"):
            setattr(self, name, tuple(getattr(self, name)))

    @property
    def block_out_channels(self) -> tuple[int, ...]:
        return tuple(self.model_channels * m for m in self.channel_mult)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UNetConfig:
        known = cls.__dataclass_fields__
        unknown = set(data) - set(known)
        if unknown:
            raise ValueError(f"unknown UNet config keys: {sorted(unknown)}")
        return cls(**data)

    def diffusers_kwargs(self) -> dict[str, Any]:
        """Arguments for ``UNetSpatioTemporalConditionModel`` that build this network."""
        for c in self.block_out_channels:
            if c % self.num_head_channels:
                raise ValueError(f"channels {c} are not a multiple of num_head_channels {self.num_head_channels}")
        down = tuple(
            "CrossAttnDownBlockSpatioTemporal" if a else "DownBlockSpatioTemporal" for a in self.attention_levels
        )
        up = tuple(
            "CrossAttnUpBlockSpatioTemporal" if a else "UpBlockSpatioTemporal" for a in reversed(self.attention_levels)
        )
        return dict(
            in_channels=self.in_channels,
            out_channels=self.out_channels,
            down_block_types=down,
            up_block_types=up,
            block_out_channels=self.block_out_channels,
            projection_class_embeddings_input_dim=self.adm_in_channels,
            layers_per_block=self.num_res_blocks,
            cross_attention_dim=self.context_dim,
            transformer_layers_per_block=self.transformer_depth,
            num_attention_heads=tuple(c // self.num_head_channels for c in self.block_out_channels),
        )


class SinusoidalEmbedding(Timesteps):
    """diffusers' ``Timesteps`` ([cos | sin], shift 0) with a choosable compute dtype.

    sgm and diffusers compute sinusoids in float32; ``compute_dtype=torch.float64`` exists only to check the
    official float64 reference outputs that were made with float64 sinusoids.
    """

    compute_dtype: torch.dtype = torch.float32

    def forward(self, timesteps: torch.Tensor) -> torch.Tensor:
        if self.compute_dtype == torch.float32:
            return super().forward(timesteps)
        half = self.num_channels // 2
        exponent = -torch.log(torch.tensor(10000.0, dtype=self.compute_dtype)) * torch.arange(
            half, dtype=self.compute_dtype, device=timesteps.device
        )
        args = timesteps[:, None].to(self.compute_dtype) * torch.exp(exponent / half)[None, :]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def sinusoidal_embedding(values: torch.Tensor, dim: int) -> torch.Tensor:
    """sgm's ``timestep_embedding``: [cos | sin] of ``values`` at ``dim`` frequencies, computed in float32."""
    return get_timestep_embedding(values.flatten(), dim, flip_sin_to_cos=True, downscale_freq_shift=0)


class ReLumixUNet(UNetSpatioTemporalConditionModel):
    """``UNetSpatioTemporalConditionModel`` that runs the official ReLumix ``VideoUNet`` computation."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__(**config.diffusers_kwargs())
        self.relumix_config = config
        self._use_sgm_eps()
        self._use_sinusoids_with_precision()
        self.gated_attention = install_gates(self, set(config.ungated_attention))

    def _use_sgm_eps(self) -> None:
        for module in self.modules():
            if isinstance(module, SpatioTemporalResBlock):
                for norm in (
                    module.spatial_res_block.norm1,
                    module.spatial_res_block.norm2,
                    module.temporal_res_block.norm1,
                    module.temporal_res_block.norm2,
                ):
                    norm.eps = SGM_RESNET_EPS

    def _use_sinusoids_with_precision(self) -> None:
        for module in list(self.modules()):
            for name, child in module.named_children():
                if type(child) is Timesteps:
                    replacement = SinusoidalEmbedding(
                        child.num_channels, child.flip_sin_to_cos, child.downscale_freq_shift
                    )
                    setattr(module, name, replacement)

    def set_sinusoid_dtype(self, dtype: torch.dtype) -> None:
        """Compute sinusoidal embeddings in ``dtype`` (float32 is the official behaviour)."""
        for module in self.modules():
            if isinstance(module, SinusoidalEmbedding):
                module.compute_dtype = dtype

    def forward(  # type: ignore[override]
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        vector: torch.Tensor,
        num_frames: int,
        image_only_indicator: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict v for ``sample`` [B*T, C, H, W] (rows video-major, frame-minor).

        ``timestep`` is c_noise per row [B*T], ``encoder_hidden_states`` the per-frame context [B*T, 1, D],
        ``vector`` the [B*T, adm_in_channels] conditioning and ``image_only_indicator`` [B, T] (zeros if None).
        """
        rows = sample.shape[0]
        if rows % num_frames:
            raise ValueError(f"{rows} rows are not a whole number of {num_frames}-frame videos")
        if image_only_indicator is None:
            image_only_indicator = sample.new_zeros(rows // num_frames, num_frames)
        image_only_indicator = image_only_indicator.to(sample.dtype)
        timestep = torch.as_tensor(timestep, device=sample.device).reshape(-1).expand(rows)

        emb = self.time_embedding(self.time_proj(timestep).to(sample.dtype))
        emb = emb + self.add_embedding(vector.to(sample.dtype))

        upsample_size = None
        needs_sizes = any(s % 2**self.num_upsamplers for s in sample.shape[-2:])
        hidden = self.conv_in(sample)
        skips: tuple[torch.Tensor, ...] = (hidden,)
        for block in self.down_blocks:
            kwargs = self._block_kwargs(block, emb, encoder_hidden_states, image_only_indicator)
            hidden, res = block(hidden_states=hidden, **kwargs)
            skips += res

        hidden = self.mid_block(
            hidden_states=hidden,
            temb=emb,
            encoder_hidden_states=encoder_hidden_states,
            image_only_indicator=image_only_indicator,
        )

        for i, block in enumerate(self.up_blocks):
            res, skips = skips[-len(block.resnets) :], skips[: -len(block.resnets)]
            if needs_sizes and i < len(self.up_blocks) - 1:
                upsample_size = skips[-1].shape[2:]
            kwargs = self._block_kwargs(block, emb, encoder_hidden_states, image_only_indicator)
            hidden = block(hidden_states=hidden, res_hidden_states_tuple=res, upsample_size=upsample_size, **kwargs)

        hidden = self.conv_out(self.conv_act(self.conv_norm_out(hidden)))
        return hidden

    @staticmethod
    def _block_kwargs(
        block: nn.Module, emb: torch.Tensor, context: torch.Tensor, indicator: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        kwargs = {"temb": emb, "image_only_indicator": indicator}
        if getattr(block, "has_cross_attention", False):
            kwargs["encoder_hidden_states"] = context
        return kwargs


def cast_module(module: nn.Module, dtype: torch.dtype) -> nn.Module:
    """``nn.Module.to(dtype)``: diffusers 0.42's ``ModelMixin.to`` warns about float32-pinned modules even when a
    model has none, on every call."""
    return nn.Module.to(module, dtype)


def build_unet(config: UNetConfig) -> ReLumixUNet:
    """Build the ReLumix UNet (parameters on the current default device; use ``torch.device('meta')`` to defer)."""
    return ReLumixUNet(config)


def attention_module_names(config: UNetConfig) -> list[str]:
    """diffusers names of every attention module the config builds (gated or not), without building it."""
    names = []

    def transformer(prefix: str, depth: int) -> None:
        for d in range(depth):
            for kind in ("transformer_blocks", "temporal_transformer_blocks"):
                names.extend(f"{prefix}.{kind}.{d}.attn{a}" for a in (1, 2))

    levels = len(config.channel_mult)
    for level in range(levels):
        if config.attention_levels[level]:
            for j in range(config.num_res_blocks):
                transformer(f"down_blocks.{level}.attentions.{j}", config.transformer_depth[level])
    transformer("mid_block.attentions.0", config.transformer_depth[-1])
    for i, level in enumerate(reversed(range(levels))):
        if config.attention_levels[level]:
            for j in range(config.num_res_blocks + 1):
                transformer(f"up_blocks.{i}.attentions.{j}", config.transformer_depth[level])
    return names


def ablated_unet_config(config: UNetConfig, gates: bool = True, embedding_fusion: bool = True) -> UNetConfig:
    """``config`` with the paper's ablations applied: no attention gates, and/or an 8-channel UNet without the
    reference latent (no embedding fusion)."""
    return replace(
        config,
        in_channels=12 if embedding_fusion else 8,
        ungated_attention=() if gates else tuple(attention_module_names(config)),
    )
