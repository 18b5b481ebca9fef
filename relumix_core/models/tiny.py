"""Small ReLumix models of the real architecture: relumix-tiny's config, and tiny random models for tests.

* :func:`relumix_tiny_config` is the architecture of relumix-tiny, the demonstration model this project trains on
  its own synthetic 64x64 scenes and ships in ``relumix_core/weights/`` (:func:`build_untrained` starts its
  training, with the ablations' variants).
* :func:`random_tiny_model` and :func:`tiny_config` give a tiny model with random weights, sized like the
  official-code fixtures (``unet_tiny``, ``vae_tiny``, ``clip_tiny``: same block structure, gates and mixers, only
  narrower), so that the CLI, loading, conversion and the pipeline can be exercised in seconds without the
  3B-parameter checkpoint. Its outputs mean nothing.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from .relumix import ReLumixConfig, ReLumixModel

if TYPE_CHECKING:
    from .unet import UNetConfig

#: Sizes of the tiny conditioning: CLIP embedding per image, fps_id and cond_aug sinusoid widths (fixtures' values).
TINY_CLIP_DIM = 32
TINY_FPS_DIM = 16
TINY_COND_AUG_DIM = 32
#: Clip length the tiny model claims to be trained on: shorter than ReLumix's 14 so that tests window long videos
#: cheaply.
TINY_TRAINED_FRAMES = 8


def tiny_unet_config() -> UNetConfig:
    """The tiny UNet: ReLumix's block structure, gates and mixers at 32 channels and three levels."""
    from .unet import UNetConfig

    return UNetConfig(
        in_channels=12,
        out_channels=4,
        model_channels=32,
        channel_mult=(1, 2, 2),
        num_res_blocks=2,
        attention_levels=(True, True, False),
        transformer_depth=(1, 1, 1),
        num_head_channels=16,
        context_dim=2 * TINY_CLIP_DIM,
        adm_in_channels=TINY_FPS_DIM + TINY_COND_AUG_DIM,
    )


def tiny_config(share_reference: bool = True) -> ReLumixConfig:
    """Config of a tiny ReLumix (the fixtures' tiny engine).

    With ``share_reference`` the reference CLIP tower and VAE encoder are the frame ones (as when a checkpoint stores
    identical copies); without it they are separate components with their own weights.
    """
    from .clip import CLIPTowerConfig
    from .vae import VAEConfig

    unet = tiny_unet_config()
    vae_shape = dict(ch=32, block_out_channels=(32, 32, 64, 64), num_res_blocks=1, z_channels=4)  # factor 8
    clip = CLIPTowerConfig(width=64, layers=2, head_width=16, patch_size=14, image_size=224, embed_dim=TINY_CLIP_DIM)
    components = {
        "unet": unet,
        "vae": VAEConfig(**vae_shape),
        "image_encoder": clip,
        "frame_encoder": VAEConfig(**vae_shape, embed_dim=4),
    }
    shared = {}
    if share_reference:
        shared = {"reference_image_encoder": "image_encoder", "reference_encoder": "frame_encoder"}
    else:
        components["reference_image_encoder"] = CLIPTowerConfig.from_dict(clip.to_dict())
        components["reference_encoder"] = VAEConfig(**vae_shape, embed_dim=4)
    return ReLumixConfig(
        components=components,
        shared=shared,
        fps_embed_dim=TINY_FPS_DIM,
        cond_aug_embed_dim=TINY_COND_AUG_DIM,
        trained_frames=TINY_TRAINED_FRAMES,
    )


def relumix_tiny_config(gates: bool = True, embedding_fusion: bool = True) -> ReLumixConfig:
    """Config of ``relumix-tiny``, the small model trained from scratch on synthetic clips (64x64, 8 frames).

    The same architecture as ReLumix, narrower and shallower where a 64x64 frame allows it: a first-stage VAE that
    downsamples by 4 (16x16 latents keep enough detail for high PSNR at this size), a two-layer CLIP tower at 64 px,
    and a UNet of three levels. The conditioning VAE encoders are the first stage's encoder (``shared``), as in SVD.
    ``gates`` / ``embedding_fusion`` off give the paper's ablations: no attention gates, and an 8-channel UNet
    without the reference latent.
    """
    from .clip import CLIPTowerConfig
    from .unet import ablated_unet_config
    from .vae import VAEConfig

    unet = ablated_unet_config(tiny_unet_config(), gates=gates, embedding_fusion=embedding_fusion)
    vae_shape = dict(ch=32, block_out_channels=(32, 64, 64), num_res_blocks=1, z_channels=4)  # factor 4
    clip = CLIPTowerConfig(width=64, layers=2, head_width=16, patch_size=8, image_size=64, embed_dim=TINY_CLIP_DIM)
    return ReLumixConfig(
        components={
            "unet": unet,
            "vae": VAEConfig(**vae_shape),
            "image_encoder": clip,
            "frame_encoder": VAEConfig(**vae_shape, embed_dim=4),
        },
        shared={
            "reference_image_encoder": "image_encoder",
            "reference_encoder": "frame_encoder",
            "frame_encoder.encoder": "vae.encoder",
        },
        fps_embed_dim=TINY_FPS_DIM,
        cond_aug_embed_dim=TINY_COND_AUG_DIM,
        trained_frames=TINY_TRAINED_FRAMES,
        trained_size=64,
    )


def build_untrained(config: ReLumixConfig, seed: int = 0) -> ReLumixModel:
    """A model with the modules' own default initialisation (for training from scratch), the same for a seed.

    The first stage and the frame encoder get identity ``quant_conv`` layers, so the frame latents are the
    first stage's posterior mean, as in SVD, whose conditioning encoder is its first stage's encoder.
    """
    from ..checkpoints.components import COMPONENTS
    from ..checkpoints.convert.vae import first_stage_extra_tensors

    modules: dict[str, nn.Module] = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name, component_config in config.components.items():
            modules[name] = COMPONENTS[name].build(component_config)
    with torch.no_grad():
        for name in ("vae", "frame_encoder"):
            module = modules.get(name)
            if module is not None:
                for key, value in first_stage_extra_tensors(config.components["vae"]).items():
                    module.get_parameter(key).copy_(value)
    return ReLumixModel(config, modules)


def _normal(shape: torch.Size, std: float, gen: torch.Generator) -> torch.Tensor:
    return torch.randn(shape, generator=gen) * std


def randomize_(module: nn.Module, gen: torch.Generator) -> None:
    """Re-draw every parameter like the fixtures do, so that no gate, mixer or zero-init layer is trivial.

    Linear/Conv weights N(0, 1/fan_in), biases 0.1 N(0,1); norms 1 + 0.2 N / 0.1 N; gates +-U(0.3, 1.7) (negative
    with probability 0.25); gate activations 2 N / sqrt(C) and 0.7 N; mix factors 1.2 N; anything else N(0, 1/d).
    """
    from .gated_attention import GatedAttnProcessor

    done: set[int] = set()

    def put(param: nn.Parameter | None, value: torch.Tensor) -> None:
        if param is not None:
            param.data.copy_(value)
            done.add(id(param))

    for sub in module.modules():
        if isinstance(sub, GatedAttnProcessor):
            sign = torch.where(torch.rand(1, generator=gen) < 0.25, -1.0, 1.0)
            put(sub.gate, sign * (0.3 + 1.4 * torch.rand(sub.gate.shape, generator=gen)))
            weight = sub.gate_activation.weight
            put(weight, _normal(weight.shape, 2.0 / math.sqrt(weight.shape[1]), gen))
            put(sub.gate_activation.bias, _normal(sub.gate_activation.bias.shape, 0.7, gen))
        elif isinstance(sub, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            if id(sub.weight) in done:  # gate_activation, drawn above
                continue
            fan_in = sub.weight[0].numel()
            put(sub.weight, _normal(sub.weight.shape, 1.0 / math.sqrt(fan_in), gen))
            put(sub.bias, _normal(sub.bias.shape, 0.1, gen) if sub.bias is not None else None)
        elif isinstance(sub, (nn.LayerNorm, nn.GroupNorm)):
            if sub.weight is not None:
                put(sub.weight, 1.0 + _normal(sub.weight.shape, 0.2, gen))
                put(sub.bias, _normal(sub.bias.shape, 0.1, gen))
        elif isinstance(sub, nn.Embedding):
            put(sub.weight, _normal(sub.weight.shape, 1.0 / math.sqrt(sub.weight.shape[1]), gen))
    for name, param in module.named_parameters():
        if id(param) in done:
            continue
        if name.endswith("mix_factor"):
            put(param, _normal(param.shape, 1.2, gen))
        else:  # e.g. CLIP's class embedding
            put(param, _normal(param.shape, 1.0 / math.sqrt(param.shape[-1] if param.ndim else 1), gen))


def random_tiny_model(seed: int = 0, share_reference: bool = True) -> ReLumixModel:
    """A tiny ReLumix with random weights, identical for the same ``seed`` (the global RNG is left untouched).

    The first stage keeps sgm's identity ``quant_conv`` and a damped output layer, so decoded frames stay roughly
    inside [-1, 1] like real pictures.
    """
    from ..checkpoints.components import COMPONENTS
    from ..checkpoints.convert.vae import first_stage_extra_tensors

    config = tiny_config(share_reference)
    modules: dict[str, nn.Module] = {}
    with torch.random.fork_rng(devices=[]):  # module constructors draw default inits from the global RNG
        for index, (name, component_config) in enumerate(config.components.items()):
            module = COMPONENTS[name].build(component_config)
            randomize_(module, torch.Generator().manual_seed(seed * 1000 + index))
            modules[name] = module.eval().requires_grad_(False)
    vae = modules["vae"]
    with torch.no_grad():
        for key, value in first_stage_extra_tensors(config.components["vae"]).items():
            vae.get_parameter(key).copy_(value)
        vae.decoder.conv_out.weight.mul_(0.35)
        vae.decoder.time_conv_out.weight.mul_(0.5)
    return ReLumixModel(config, modules)


__all__ = ["build_untrained", "random_tiny_model", "randomize_", "relumix_tiny_config", "tiny_config"]
