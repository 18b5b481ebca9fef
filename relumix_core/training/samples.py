"""Periodic sample videos during training: one fixed clip, shown as source | model output | ground truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..media.video_io import write_video
from ..models.relumix import ReLumixModel
from .config import TrainConfig


def _strip(*videos: torch.Tensor) -> np.ndarray:
    """[T,3,H,W] videos in [0,1] side by side -> uint8 [T,H,W*n,3]."""
    joined = torch.cat([v.float().clamp(0, 1).cpu() for v in videos], dim=-1)
    return (joined.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)


@torch.no_grad()
def sample_frames(model: ReLumixModel, item: dict, config: TrainConfig) -> torch.Tensor:
    """What the model makes of ``item`` now: the relit clip (stage unet) or the reconstruction (stage vae)."""
    target = (item["target"] + 1) / 2
    if config.stage == "vae":
        from ..models.vae import decode_latents, encode_first_stage

        vae = model.component("vae")
        device = next(vae.parameters()).device
        mean = encode_first_stage(vae, item["target"].to(device), torch.zeros(1, device=device), 1.0)
        return ((decode_latents(vae, mean, chunk_size=target.shape[0], scale_factor=1.0) + 1) / 2).cpu()
    from ..pipeline.pipeline import ReLumixPipeline
    from ..pipeline.settings import RelightSettings

    settings = RelightSettings(
        num_steps=config.run.sample_steps, size=None, reference_range=config.diffusion.reference_range,
        window=target.shape[0], fps_id=int(config.diffusion.fps_id), cond_aug=float(item["cond_aug"]),
    )
    device = model.component("unet").device
    source = (item["source_raw"] + 1) / 2
    relit = ReLumixPipeline(model, device=device).relight(source, target[0], 0, settings, seed=0, output_type="pt")
    return relit.permute(0, 3, 1, 2)  # the pipeline returns channels-last


def write_sample(model: ReLumixModel, item: dict, config: TrainConfig, path: Path) -> Path:
    output = sample_frames(model, item, config)
    source, target = (item["source_raw"] + 1) / 2, (item["target"] + 1) / 2
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_video(path, _strip(source, output, target), fps=4, overwrite=True)
