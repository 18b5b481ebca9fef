"""The VAEs of ReLumix: sgm's temporal first stage as a diffusers ``AutoencoderKLTemporalDecoder``, and the
image encoders of the conditioning embedders #3/#4 (sgm ``AutoencoderKLModeOnly``, encoder + ``quant_conv`` only).

sgm and diffusers differ in a few places, fixed here so that any sgm ddconfig loads with exact parity:

* sgm's first stage has no ``quant_conv``; diffusers always applies one in ``encode``. The converter supplies an
  identity 1x1 conv (``convert.vae.first_stage_extra_tensors``), which is exact in floating point.
* diffusers' ``TemporalDecoder`` builds its mid block with ``layers_per_block`` resnets; sgm always uses 2 resnets
  around 1 attention. The mid block is rebuilt with 2.
* sgm's Encoder ``conv_in`` has ``ch`` outputs, diffusers' has ``ch * ch_mult[0]``; they differ when
  ``ch_mult[0] != 1``, in which case ``conv_in`` and the first resnet are rebuilt.
* Attention inside resolution levels (``attn_resolutions``) and temporal kernels other than (3, 1, 1) are
  supported by swapping in the matching blocks/convs.
* GroupNorm eps: sgm ``Normalize`` is 1e-6 (diffusers spatial resnets, attention, conv_norm_out: 1e-6) and the
  openaimodel ``time_stack`` GroupNorm32 is 1e-5 (diffusers ``temporal_eps=1e-5``); they agree, and
  :func:`check_group_norm_eps` asserts it on every build.
* sgm ``VideoResBlock``: out = a*temporal + (1-a)*spatial with a = sigmoid(mix_factor), i.e. diffusers'
  ``switch_spatial_to_temporal_mix=True`` (set by diffusers' temporal decoder blocks).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from diffusers import AutoencoderKLTemporalDecoder
from diffusers.models.attention_processor import Attention
from diffusers.models.autoencoders.vae import Encoder
from diffusers.models.resnet import ResnetBlock2D, SpatioTemporalResBlock, TemporalResnetBlock
from diffusers.models.unets.unet_3d_blocks import MidBlockTemporalDecoder, UpBlockTemporalDecoder
from torch import nn

#: sgm ``DiffusionEngine.scale_factor`` for SVD-family models.
SCALE_FACTOR = 0.18215
#: GroupNorm eps of sgm ``Normalize`` (spatial resnets, attention, norm_out).
SPATIAL_NORM_EPS = 1e-6
#: GroupNorm eps of the openaimodel ``ResBlock`` used as ``time_stack`` (``GroupNorm32`` default).
TEMPORAL_NORM_EPS = 1e-5
#: sgm clamps the posterior log-variance to this range (``DiagonalGaussianDistribution``).
LOGVAR_RANGE = (-30.0, 20.0)


@dataclass
class VAEConfig:
    """Structure of an sgm autoencoder (the ddconfig), as far as it shows in the weight shapes.

    ``block_out_channels[i] = ch * ch_mult[i]``. ``embed_dim`` is the latent width after ``quant_conv`` (embedder
    autoencoders only; ``None`` for the first stage, which has no quant convs). ``attn_levels`` are the resolution
    levels with attention after every resnet (sgm ``attn_resolutions``; empty for SVD/ReLumix).
    """

    in_channels: int = 3
    out_channels: int = 3
    ch: int = 128
    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    num_res_blocks: int = 2
    z_channels: int = 4
    embed_dim: int | None = None
    attn_levels: tuple[int, ...] = ()
    video_kernel_size: tuple[int, int, int] = (3, 1, 1)
    norm_num_groups: int = 32

    def __post_init__(self) -> None:
        self.block_out_channels = tuple(int(c) for c in self.block_out_channels)
        self.attn_levels = tuple(sorted(int(i) for i in self.attn_levels))
        kernel = self.video_kernel_size
        kernel = (kernel,) * 3 if isinstance(kernel, int) else kernel  # sgm accepts an int (cubic kernel)
        self.video_kernel_size = tuple(int(k) for k in kernel)  # type: ignore[assignment]

    @property
    def ch_mult(self) -> tuple[int, ...]:
        """sgm ``ch_mult`` (exact only when every block width is a multiple of ``ch``)."""
        return tuple(c // self.ch for c in self.block_out_channels)

    @property
    def num_levels(self) -> int:
        return len(self.block_out_channels)

    @property
    def latent_channels(self) -> int:
        """Channels of the mode latent: ``embed_dim`` after a quant_conv, else ``z_channels``."""
        return self.z_channels if self.embed_dim is None else self.embed_dim

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (tuples become lists)."""
        d = asdict(self)
        for key in ("block_out_channels", "attn_levels", "video_kernel_size"):
            d[key] = list(d[key])
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> VAEConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error, so typos do not pass silently."""
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown VAEConfig fields: {sorted(unknown)}")
        return cls(**dict(d))

    @classmethod
    def from_ddconfig(cls, ddconfig: Mapping[str, Any], embed_dim: int | None = None) -> VAEConfig:
        """From an sgm ddconfig (as in the yaml or a fixture JSON); attention levels follow ``resolution``."""
        ch = int(ddconfig["ch"])
        ch_mult = [int(m) for m in ddconfig["ch_mult"]]
        resolution = int(ddconfig.get("resolution", 256))
        attn_res = set(ddconfig.get("attn_resolutions", []) or [])
        if not ddconfig.get("double_z", True):
            raise ValueError("double_z=False is not a Gaussian-posterior autoencoder")
        return cls(
            in_channels=int(ddconfig.get("in_channels", 3)),
            out_channels=int(ddconfig.get("out_ch", 3)),
            ch=ch,
            block_out_channels=tuple(ch * m for m in ch_mult),
            num_res_blocks=int(ddconfig["num_res_blocks"]),
            z_channels=int(ddconfig["z_channels"]),
            embed_dim=embed_dim,
            attn_levels=tuple(i for i in range(len(ch_mult)) if resolution // 2**i in attn_res),
            video_kernel_size=ddconfig.get("video_kernel_size", (3, 1, 1)),
        )


# ---------------------------------------------------------------------------------------------- building


def _down_block_types(config: VAEConfig) -> tuple[str, ...]:
    return tuple(
        "AttnDownEncoderBlock2D" if i in config.attn_levels else "DownEncoderBlock2D" for i in range(config.num_levels)
    )


def _patch_encoder(encoder: Encoder, config: VAEConfig) -> None:
    """Make diffusers' Encoder match sgm when ``ch != block_out_channels[0]`` (sgm conv_in has ``ch`` outputs)."""
    first = config.block_out_channels[0]
    if config.ch == first:
        return
    encoder.conv_in = nn.Conv2d(config.in_channels, config.ch, kernel_size=3, stride=1, padding=1)
    encoder.down_blocks[0].resnets[0] = ResnetBlock2D(
        in_channels=config.ch,
        out_channels=first,
        temb_channels=None,
        eps=SPATIAL_NORM_EPS,
        groups=config.norm_num_groups,
        dropout=0.0,
        non_linearity="silu",
        output_scale_factor=1.0,
    )


def build_encoder(config: VAEConfig) -> Encoder:
    """sgm ``Encoder`` (double_z) as a diffusers ``Encoder``."""
    encoder = Encoder(
        in_channels=config.in_channels,
        out_channels=config.z_channels,
        down_block_types=_down_block_types(config),
        block_out_channels=config.block_out_channels,
        layers_per_block=config.num_res_blocks,
        norm_num_groups=config.norm_num_groups,
        double_z=True,
    )
    _patch_encoder(encoder, config)
    return encoder


class AttnUpBlockTemporalDecoder(UpBlockTemporalDecoder):
    """sgm VideoDecoder level with ``attn_resolutions``: a spatial AttnBlock after every VideoResBlock."""

    def __init__(self, in_channels: int, out_channels: int, num_layers: int, add_upsample: bool, groups: int = 32):
        super().__init__(in_channels, out_channels, num_layers=num_layers, add_upsample=add_upsample)
        self.attentions = nn.ModuleList(_spatial_attention(out_channels, groups) for _ in range(num_layers))

    def forward(self, hidden_states: torch.Tensor, image_only_indicator: torch.Tensor) -> torch.Tensor:
        for resnet, attn in zip(self.resnets, self.attentions, strict=True):
            hidden_states = resnet(hidden_states, image_only_indicator=image_only_indicator)
            hidden_states = attn(hidden_states)
        if self.upsamplers is not None:
            for upsampler in self.upsamplers:
                hidden_states = upsampler(hidden_states)
        return hidden_states


def _spatial_attention(channels: int, groups: int) -> Attention:
    """sgm ``AttnBlock``: GroupNorm, single-head attention over H*W, residual."""
    return Attention(
        query_dim=channels,
        heads=1,
        dim_head=channels,
        eps=SPATIAL_NORM_EPS,
        norm_num_groups=groups,
        bias=True,
        residual_connection=True,
    )


def _set_temporal_kernel(module: nn.Module, kernel: tuple[int, int, int]) -> None:
    """Replace every (3,1,1) temporal Conv3d by one with sgm's ``video_kernel_size`` (no-op for (3,1,1))."""
    if tuple(kernel) == (3, 1, 1):
        return
    padding = tuple(k // 2 for k in kernel)
    for block in module.modules():
        if isinstance(block, TemporalResnetBlock):
            block.conv1 = nn.Conv3d(block.in_channels, block.out_channels, kernel, padding=padding)
            block.conv2 = nn.Conv3d(block.out_channels, block.out_channels, kernel, padding=padding)
    out = module.time_conv_out
    module.time_conv_out = nn.Conv3d(out.in_channels, out.out_channels, kernel, padding=padding)


def _patch_decoder(decoder: nn.Module, config: VAEConfig) -> None:
    """Rebuild what diffusers' TemporalDecoder gets wrong or cannot express for a general sgm VideoDecoder."""
    top = config.block_out_channels[-1]
    decoder.mid_block = MidBlockTemporalDecoder(in_channels=top, out_channels=top, attention_head_dim=top, num_layers=2)
    reversed_channels = list(reversed(config.block_out_channels))
    for i, level in enumerate(reversed(range(config.num_levels))):
        if level in config.attn_levels:
            decoder.up_blocks[i] = AttnUpBlockTemporalDecoder(
                in_channels=reversed_channels[max(i - 1, 0)],
                out_channels=reversed_channels[i],
                num_layers=config.num_res_blocks + 1,
                add_upsample=level != 0,
                groups=config.norm_num_groups,
            )
    _set_temporal_kernel(decoder, config.video_kernel_size)


def check_group_norm_eps(module: nn.Module) -> None:
    """Assert sgm's GroupNorm eps everywhere: 1e-5 inside temporal resnets (GroupNorm32), 1e-6 elsewhere."""
    temporal = {id(m) for block in module.modules() if isinstance(block, TemporalResnetBlock) for m in block.modules()}
    for name, m in module.named_modules():
        if isinstance(m, nn.GroupNorm):
            want = TEMPORAL_NORM_EPS if id(m) in temporal else SPATIAL_NORM_EPS
            if m.eps != want:
                raise AssertionError(f"GroupNorm {name}: eps {m.eps}, sgm uses {want}")
    for name, m in module.named_modules():
        if isinstance(m, SpatioTemporalResBlock) and not m.time_mixer.switch_spatial_to_temporal_mix:
            raise AssertionError(f"{name}: sgm VideoResBlock weights the temporal branch by alpha")


def build_temporal_vae(config: VAEConfig) -> AutoencoderKLTemporalDecoder:
    """sgm ``first_stage_model`` (Encoder + temporal VideoDecoder) as diffusers' ``AutoencoderKLTemporalDecoder``.

    Works under ``torch.device("meta")``; load weights with ``load_state_dict(..., assign=True)``. The
    ``quant_conv`` must be loaded as identity (see ``convert.vae.first_stage_extra_tensors``).
    """
    vae = AutoencoderKLTemporalDecoder(
        in_channels=config.in_channels,
        out_channels=config.out_channels,
        down_block_types=_down_block_types(config),
        block_out_channels=config.block_out_channels,
        layers_per_block=config.num_res_blocks,
        latent_channels=config.z_channels,
        scaling_factor=SCALE_FACTOR,
    )
    _patch_encoder(vae.encoder, config)
    _patch_decoder(vae.decoder, config)
    check_group_norm_eps(vae)
    return vae.eval()


class LatentEncoder(nn.Module):
    """Conditioning embedder #3/#4 image encoder (sgm ``AutoencoderKLModeOnly``): posterior mode, unscaled.

    Holds only what runs at inference: ``encoder`` and ``quant_conv``. sgm's 2-D decoder and ``post_quant_conv``
    of these embedders are never used and are not part of this module.
    """

    def __init__(self, config: VAEConfig):
        super().__init__()
        if config.embed_dim is None:
            raise ValueError("LatentEncoder needs config.embed_dim (the quant_conv output width / 2)")
        self.config = config
        self.encoder = build_encoder(config)
        self.quant_conv = nn.Conv2d(2 * config.z_channels, 2 * config.embed_dim, 1)

    def moments(self, x: torch.Tensor) -> torch.Tensor:
        """``quant_conv(encoder(x))``: mean and log-variance stacked on channels."""
        return self.quant_conv(self.encoder(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x in [-1, 1], [N, C, H, W] -> posterior mode [N, embed_dim, H/f, W/f] (sgm ``sample=False``)."""
        return self.moments(x)[:, : self.config.embed_dim]


def build_latent_encoder(config: VAEConfig) -> LatentEncoder:
    """A :class:`LatentEncoder` (meta-device friendly, like :func:`build_temporal_vae`)."""
    module = LatentEncoder(config)
    check_group_norm_eps(module)
    return module.eval()


# ---------------------------------------------------------------------------------------------- running


def posterior_parameters(moments: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean, logvar, std) of sgm's ``DiagonalGaussianDistribution``: logvar clamped to [-30, 20]."""
    mean, logvar = torch.chunk(moments, 2, dim=1)
    logvar = torch.clamp(logvar, *LOGVAR_RANGE)
    return mean, logvar, torch.exp(0.5 * logvar)


def first_stage_moments(vae: AutoencoderKLTemporalDecoder, x: torch.Tensor) -> torch.Tensor:
    """Encoder moments of the first stage (``quant_conv`` is identity for sgm weights, so this is exact)."""
    return vae.quant_conv(vae.encoder(x))


def encode_first_stage(
    vae: AutoencoderKLTemporalDecoder,
    x: torch.Tensor,
    noise: torch.Tensor | None = None,
    scale_factor: float = SCALE_FACTOR,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """sgm ``DiffusionEngine.encode_first_stage`` (training): ``scale_factor * (mean + std * noise)``.

    ``noise`` is N(0,1) of the latent shape; it is drawn (with ``generator``) when None.
    """
    mean, _, std = posterior_parameters(first_stage_moments(vae, x))
    if noise is None:
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
    return scale_factor * (mean + std * noise.to(mean))


def decode_latents(
    vae: AutoencoderKLTemporalDecoder, z_scaled: torch.Tensor, chunk_size: int, scale_factor: float = SCALE_FACTOR
) -> torch.Tensor:
    """sgm ``DiffusionEngine.decode_first_stage``: latents in diffusion space [N,C,h,w] -> frames [N,3,H,W].

    Multiplies by ``1/scale_factor`` once, then decodes consecutive chunks of ``chunk_size`` rows, each as an
    independent video with ``num_frames`` = chunk length (the last chunk may be shorter). The chunk length changes
    the pictures: the temporal convs (zero-padded in time) do not see across chunk borders, so chunked and
    unchunked decodes differ (by up to ~0.6 on the tiny fixture). Official inference uses ``decoding_t`` (14).
    Rows are chunked as stored, across video borders too, exactly as sgm does.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    z = 1.0 / scale_factor * z_scaled
    chunks = [z[i : i + chunk_size] for i in range(0, z.shape[0], chunk_size)]
    return torch.cat([vae.decode(c, num_frames=c.shape[0]).sample for c in chunks], dim=0)
