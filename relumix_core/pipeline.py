"""The relighting pipeline for one clip: conditioning, guided EDM sampling and chunked decoding.

This is the official ``infer_relit.py`` path for a clip that fits the model in one go (frame 0 is the relit
reference). Named components come from :class:`ReLumixModel`; one readable denoising loop lives in
:func:`relumix_core.sampling.sample_euler_edm`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .conditioning import DEFAULT_COND_AUG, DEFAULT_FPS_ID, ReferenceRange, encode_conditioning, make_inputs
from .denoiser import Conditioning, GuidedDenoiser
from .model import ReLumixModel
from .models.vae import decode_latents
from .sampling import StepCallback, edm_sigmas, linear_guidance_scale, sample_euler_edm

LATENT_CHANNELS = 4
LATENT_FACTOR = 8


@dataclass
class RelightSettings:
    """Sampling options; the defaults are the authors' inference defaults."""

    num_steps: int = 25
    min_guidance: float = 1.0
    max_guidance: float = 1.5
    fps_id: float = DEFAULT_FPS_ID
    cond_aug: float = DEFAULT_COND_AUG
    reference_range: ReferenceRange = "official"
    decode_chunk_size: int = 14
    batch_branches: bool = True


@dataclass
class ClipResult:
    """The relit clip and what led to it (kept for checks and for chaining windows)."""

    video: torch.Tensor  # [T, 3, H, W] in [0, 1]
    latents: torch.Tensor  # [T, 4, h, w] in diffusion (scaled) space
    decoded: torch.Tensor  # [T, 3, H, W] decoder output before the [0,1] clamp
    cond: Conditioning
    uncond: Conditioning
    trace: list[dict[str, torch.Tensor]] = field(default_factory=list)


class ReLumixPipeline:
    """Relight one clip of T frames whose frame 0 is replaced by the relit reference."""

    def __init__(self, model: ReLumixModel) -> None:
        self.model = model

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    def encode(
        self, frames_01: torch.Tensor, reference_01: torch.Tensor, cond_noise: torch.Tensor, settings: RelightSettings
    ) -> tuple[Conditioning, Conditioning]:
        """Frames [T,3,H,W] and reference [3,H,W] in [0,1] -> (cond, uncond), as ``construct_batch_simple``."""
        rgb = frames_01.clone()
        rgb[0] = reference_01
        frames_m11 = rgb * 2 - 1
        inputs = make_inputs(
            frames_m11,
            reference_01[None] * 2 - 1,
            num_frames=frames_01.shape[0],
            noise=cond_noise.to(frames_m11),
            fps_id=settings.fps_id,
            cond_aug=settings.cond_aug,
            reference_range=settings.reference_range,
        )
        return encode_conditioning(self.model, inputs)

    def sample(
        self,
        cond: Conditioning,
        uncond: Conditioning,
        latent_noise: torch.Tensor,
        settings: RelightSettings,
        callback: StepCallback | None = None,
        trace: list[dict[str, torch.Tensor]] | None = None,
    ) -> torch.Tensor:
        """Guided Euler EDM sampling from N(0,1) ``latent_noise`` [T,4,h,w]; returns latents in diffusion space."""
        dtype = latent_noise.dtype
        frames = latent_noise.shape[0]
        sigmas = edm_sigmas(settings.num_steps, dtype=dtype, device=latent_noise.device)
        scale = linear_guidance_scale(frames, settings.min_guidance, settings.max_guidance, dtype=dtype)
        denoiser = GuidedDenoiser(self.model.component("unet"), cond, uncond, frames, scale, settings.batch_branches)
        denoiser.trace = trace
        return sample_euler_edm(denoiser, latent_noise, sigmas, callback)

    def decode(self, latents: torch.Tensor, settings: RelightSettings) -> torch.Tensor:
        """Latents -> decoder output (before the clamp), in chunks of ``decode_chunk_size`` frames."""
        vae = self.model.component("vae")
        return decode_latents(vae, latents, settings.decode_chunk_size, self.model.config.scale_factor)

    @torch.no_grad()
    def relight_clip(
        self,
        frames_01: torch.Tensor,
        reference_01: torch.Tensor,
        settings: RelightSettings | None = None,
        generator: torch.Generator | None = None,
        cond_noise: torch.Tensor | None = None,
        latent_noise: torch.Tensor | None = None,
        callback: StepCallback | None = None,
        trace: bool = False,
    ) -> ClipResult:
        """Relight ``frames_01`` [T,3,H,W] so that it carries the light of ``reference_01`` [3,H,W] (both 0..1).

        Noise is drawn from ``generator`` in the official order (cond_aug noise, then latent noise) unless given.
        """
        settings = settings or RelightSettings()
        frames_01 = frames_01.to(self.dtype)
        reference_01 = reference_01.to(self.dtype)
        t, _, h, w = frames_01.shape
        if cond_noise is None:
            cond_noise = torch.randn(frames_01.shape, generator=generator, dtype=torch.float32).to(self.dtype)
        cond, uncond = self.encode(frames_01, reference_01, cond_noise, settings)
        if latent_noise is None:
            shape = (t, LATENT_CHANNELS, h // LATENT_FACTOR, w // LATENT_FACTOR)
            latent_noise = torch.randn(shape, generator=generator, dtype=torch.float32).to(self.dtype)
        steps: list[dict[str, torch.Tensor]] | None = [] if trace else None
        latents = self.sample(cond, uncond, latent_noise.to(self.dtype), settings, callback, steps)
        decoded = self.decode(latents, settings)
        video = torch.clamp((decoded + 1.0) / 2.0, min=0.0, max=1.0)
        return ClipResult(video, latents, decoded, cond, uncond, steps or [])
