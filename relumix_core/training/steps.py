"""One training step's loss, for each stage: what the model sees and what it is asked to predict."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..models.relumix import ReLumixModel
from ..models.vae import encode_first_stage, first_stage_moments, posterior_parameters
from ..pipeline.conditioning import (
    FrameEmbeddings,
    ReferenceEmbeddings,
    assemble_conditioning,
    embed_frames,
    embed_reference,
    reference_for_embedders,
)
from ..pipeline.guidance import denoise_once
from .config import TrainConfig
from .edm import loss_weight, sample_sigmas, weighted_mse

#: Unit colour-difference axes (rows: red-blue, green-magenta), orthogonal to grey: the chroma a loss on RGB
#: weighs least, since most of a frame's variation is luma.
CHROMA_AXES = torch.tensor([[1.0, 0.0, -1.0], [-1.0, 2.0, -1.0]]) / torch.tensor([[2.0**0.5], [6.0**0.5]])


def chroma_l1(error: torch.Tensor) -> torch.Tensor:
    """Mean absolute error along the chroma axes of an RGB error [N, 3, H, W]."""
    return torch.einsum("ac,nchw->nahw", CHROMA_AXES.to(error), error).abs().mean()


@dataclass
class StepResult:
    loss: torch.Tensor
    stats: dict[str, float]


def _videos(batch: dict, key: str, device: torch.device) -> torch.Tensor:
    return batch[key].to(device=device, dtype=torch.float32)


@torch.no_grad()
def unet_inputs(model: ReLumixModel, batch: dict, config: TrainConfig, generator: torch.Generator):
    """Frozen parts of a UNet step: (clean target latents x0, cond) for B videos of T frames, with the concat
    dropout applied. Frame replacement already happened in the dataset; the ablation uses the raw source."""
    device = next(model.component("unet").parameters()).device
    key = "source" if config.ablation.frame_replacement else "source_raw"
    source, target = _videos(batch, key, device), _videos(batch, "target", device)
    reference, noise = _videos(batch, "reference", device), _videos(batch, "noise", device)
    b, t = source.shape[:2]
    cond_aug = float(batch["cond_aug"][0])
    frames = source.flatten(0, 1)
    frame_emb = embed_frames(model, frames, frames + cond_aug * noise.flatten(0, 1))
    ref_in = reference_for_embedders(reference, config.diffusion.reference_range)  # type: ignore[arg-type]
    ref_emb = embed_reference(model, ref_in)  # B references, one row each
    latent_noise = torch.randn(
        (b * t, 4, *frame_emb.latents.shape[-2:]), generator=generator
    ).to(device)
    x0 = encode_first_stage(model.component("vae"), target.flatten(0, 1), latent_noise, model.config.scale_factor)
    p = config.diffusion.concat_dropout
    keep_frames = (torch.rand(b, generator=generator) >= p).float().to(device).repeat_interleave(t)
    keep_ref = (torch.rand(b, generator=generator) >= p).float().to(device)
    frame_emb = FrameEmbeddings(frame_emb.clip, frame_emb.latents * keep_frames[:, None, None, None])
    ref_emb = ReferenceEmbeddings(ref_emb.clip, ref_emb.latent * keep_ref[:, None, None, None])
    cond, _ = assemble_conditioning(model, frame_emb, ref_emb, t, config.diffusion.fps_id, cond_aug)
    return x0, cond, b, t


def unet_step(model: ReLumixModel, batch: dict, config: TrainConfig, generator: torch.Generator) -> StepResult:
    """EDM denoising loss of the v-predicting UNet on one batch of videos."""
    x0, cond, b, t = unet_inputs(model, batch, config, generator)
    d = config.diffusion
    sigma = sample_sigmas(b, d.p_mean, d.p_std, generator).to(x0.device).repeat_interleave(t)
    noise = torch.randn(x0.shape, generator=generator).to(x0.device)
    noisy = x0 + sigma[:, None, None, None] * noise
    denoised = denoise_once(model.component("unet"), noisy, sigma, cond, t)
    loss = weighted_mse(denoised, x0, loss_weight(sigma, d.sigma_data))
    return StepResult(loss, {"sigma_mean": float(sigma.mean())})


def vae_step(model: ReLumixModel, batch: dict, config: TrainConfig, generator: torch.Generator) -> StepResult:
    """First-stage autoencoder loss on target clips: L1 + L2 reconstruction through the temporal decoder, an
    optional L1 on its chroma, plus KL (a constant when the encoder is frozen, which then runs without gradients)."""
    vae = model.component("vae")
    vae = getattr(vae, "module", vae)  # the stage is single-process (the trainer says so); no DDP wrapper needed
    device = next(vae.parameters()).device
    videos = _videos(batch, "target", device)
    b, t = videos.shape[:2]
    frames = videos.flatten(0, 1)
    with torch.set_grad_enabled(config.vae.train_encoder):
        mean, logvar, std = posterior_parameters(first_stage_moments(vae, frames))
    z = mean + std * torch.randn(mean.shape, generator=generator).to(device)
    recon = vae.decode(z, num_frames=t).sample
    w = config.vae
    l1 = (recon - frames).abs().mean()
    l2 = (recon - frames).pow(2).mean()
    chroma = chroma_l1(recon - frames)
    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=(1, 2, 3)).mean()
    loss = w.l1_weight * l1 + w.l2_weight * l2 + w.kl_weight * kl + w.chroma_weight * chroma
    psnr = float(10 * torch.log10(4.0 / l2.detach().clamp_min(1e-10)))  # frames span [-1, 1]: range 2
    stats = {"l1": float(l1.detach()), "chroma_l1": float(chroma.detach()), "kl": float(kl.detach()), "psnr": psnr,
             "latent_std": float(mean.detach().std())}
    return StepResult(loss, stats)


STEPS = {"unet": unet_step, "vae": vae_step}
