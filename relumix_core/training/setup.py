"""The model a training config starts from, and which of its parameters train."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..checkpoints.components import COMPONENTS
from ..errors import ReLumixError
from ..models.relumix import ReLumixModel
from ..models.unet import ablated_unet_config
from .config import TrainConfig


def initial_model(config: TrainConfig) -> ReLumixModel:
    """Build or load the model of ``config.model`` in float32, with the ablation switches applied."""
    m = config.model
    if m.init == "tiny":
        from ..models.tiny import build_untrained, relumix_tiny_config

        cfg = relumix_tiny_config(gates=config.ablation.gates, embedding_fusion=config.ablation.embedding_fusion)
        cfg.trained_frames = config.data.num_frames
        cfg.trained_size = config.data.size
        return build_untrained(cfg, seed=m.seed)
    path = Path(m.path).expanduser()
    if not path.exists():
        raise ReLumixError(f"model.path {path} does not exist (model.init = {m.init!r})")
    if m.init == "svd":
        from ..checkpoints.svd_init import init_from_svd

        model, _ = init_from_svd(path, seed=m.seed, dtype=torch.float32)
    else:
        from ..checkpoints.loading import load_relumix

        model, _ = load_relumix(path, dtype=torch.float32)
    if m.first_stage:
        _swap_first_stage(model, Path(m.first_stage).expanduser())
    if m.unet == "new":
        model.unet = _new_unet(model, config)
    if config.stage == "unet" or config.vae.train_encoder:
        # what the model will have been trained on; a decoder fine-tune leaves the UNet's clip length and size
        model.config.trained_frames = config.data.num_frames
        model.config.trained_size = config.data.size
    return model


def _swap_first_stage(model: ReLumixModel, path: Path) -> None:
    """Copy another checkpoint's autoencoder weights (the frame encoder shares its encoder) and latent scale."""
    from ..checkpoints.loading import load_relumix

    if not path.exists():
        raise ReLumixError(f"model.first_stage {path} does not exist")
    donor, _ = load_relumix(path, dtype=torch.float32)
    for name in ("vae", "frame_encoder"):
        if donor.config.components[name] != model.config.components[name]:
            raise ReLumixError(
                f"model.first_stage {path}: its {name} has another architecture than model.path's; the first stage "
                "can only be swapped for one of the same shape"
            )
        model.component(name).load_state_dict(donor.component(name).state_dict())
    model.config.scale_factor = donor.config.scale_factor


def _new_unet(model: ReLumixModel, config: TrainConfig) -> nn.Module:
    """A freshly initialised UNet of the same size, with the ablations applied (the VAE and CLIP are kept)."""
    unet_config = ablated_unet_config(
        model.config.components["unet"], config.ablation.gates, config.ablation.embedding_fusion
    )
    model.config.components["unet"] = unet_config
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.model.seed)
        return COMPONENTS["unet"].build(unet_config)


def trainable_modules(model: ReLumixModel, stage: str, train_encoder: bool = True) -> list[nn.Module]:
    """What a stage trains: the whole UNet (everything else frozen), or the first-stage autoencoder without its
    identity ``quant_conv`` (sgm's first stage has none), or only its decoder when ``train_encoder`` is False."""
    model.requires_grad_(False)
    if stage == "unet":
        unet = model.component("unet")
        unet.requires_grad_(True)
        return [unet]
    vae = model.component("vae")
    vae.requires_grad_(True)
    vae.quant_conv.requires_grad_(False)
    if not train_encoder:
        vae.encoder.requires_grad_(False)
    return [vae]


def trainable_parameters(model: ReLumixModel) -> dict[str, nn.Parameter]:
    """Named parameters with requires_grad, named as in the model (shared modules once)."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad}
