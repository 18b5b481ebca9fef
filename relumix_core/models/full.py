"""The authors' full-size ReLumix architecture, built on the meta device: for memory plans and benchmarks.

No weights are read: the config is what the loader infers from the official checkpoint's shapes, and
:func:`share_identical_copies` links the embedder copies as the loader does for the real file.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from ..checkpoints.components import COMPONENTS, config_from_dict
from .relumix import ReLumixConfig, ReLumixModel


def builtin_full_config() -> ReLumixConfig:
    """The full-size config as the loader infers it from the official key manifest (UNet head width 64, CLIP 80).

    ``bench/relight_bench.py --dry-run`` checks it against the official key manifest when that is at hand.
    """
    vae = dict(ch=128, block_out_channels=[128, 256, 512, 512], num_res_blocks=2, z_channels=4, attn_levels=[],
               in_channels=3, out_channels=3, norm_num_groups=32, video_kernel_size=[3, 1, 1])
    clip = dict(width=1280, layers=32, head_width=80, patch_size=14, image_size=224, embed_dim=1024,
                intermediate_size=5120)
    components = {
        "unet": config_from_dict("unet", {}),  # UNetConfig's defaults are ReLumix's full size
        "vae": config_from_dict("vae", {**vae, "embed_dim": None}),
        "image_encoder": config_from_dict("image_encoder", clip),
        "reference_image_encoder": config_from_dict("reference_image_encoder", clip),
        "frame_encoder": config_from_dict("frame_encoder", {**vae, "embed_dim": 4}),
        "reference_encoder": config_from_dict("reference_encoder", {**vae, "embed_dim": 4}),
    }
    return ReLumixConfig(components=components, fps_embed_dim=256, cond_aug_embed_dim=512, trained_frames=14)


def share_identical_copies(config: ReLumixConfig) -> ReLumixConfig:
    """Link the reference embedders and the embedders' VAE encoder as the loader does for the real checkpoint,
    whose copies are identical; a shapes-only manifest cannot show that, so without this every copy is built."""
    linked = ("reference_image_encoder", "reference_encoder")
    shared = {
        "reference_image_encoder": "image_encoder",
        "reference_encoder": "frame_encoder",
        "frame_encoder.encoder": "vae.encoder",
    }
    components = {k: v for k, v in config.components.items() if k not in linked}
    return replace(config, components=components, shared=shared)


def build_on_meta(config: ReLumixConfig) -> ReLumixModel:
    """Every component built on the meta device (no memory), linked as ``config.shared`` says."""
    modules: dict[str, nn.Module] = {}
    with torch.device("meta"):
        for name, component_config in config.components.items():
            modules[name] = COMPONENTS[name].build(component_config).eval().requires_grad_(False)
    return ReLumixModel(config, modules)
