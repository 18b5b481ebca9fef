"""The guided v-prediction denoiser: UNet input assembly, EDM scalings and per-frame guidance.

Mirrors the official ``OpenAIWrapper`` + ``Denoiser(VScalingWithEDMcNoise)`` + ``LinearPredictionGuider``: the
noisy latent (times c_in) is concatenated with the conditioning latents on channels, and the unconditional rows
come first when both branches run as one batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .models.unet import ReLumixUNet
from .sampling import apply_guidance, v_scalings


@dataclass
class Conditioning:
    """One branch of the conditioning, every tensor with [B*T] rows (frame-minor)."""

    crossattn: torch.Tensor  # [B*T, 1, context_dim]: CLIP of each frame | CLIP of the reference
    concat: torch.Tensor  # [B*T, 8, h, w]: latent of each frame | latent of the reference
    vector: torch.Tensor  # [B*T, adm_in_channels]: sinusoids of fps_id | cond_aug

    @staticmethod
    def cat(parts: list[Conditioning]) -> Conditioning:
        return Conditioning(
            torch.cat([p.crossattn for p in parts]),
            torch.cat([p.concat for p in parts]),
            torch.cat([p.vector for p in parts]),
        )

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Conditioning:
        return Conditioning(
            self.crossattn.to(device=device, dtype=dtype),
            self.concat.to(device=device, dtype=dtype),
            self.vector.to(device=device, dtype=dtype),
        )


def denoise_once(
    unet: ReLumixUNet,
    x: torch.Tensor,
    sigma: torch.Tensor,
    cond: Conditioning,
    num_frames: int,
    trace: dict[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """D(x, sigma) = F(x * c_in, c_noise, cond) * c_out + x * c_skip, for per-row ``sigma``.

    Only the noisy latent is scaled by c_in; the conditioning latents are not. The UNet runs in the conditioning's
    dtype and its output returns to ``x``'s, as the official fp16 autocast keeps the sampler state in fp32.
    ``trace`` (if given) receives the intermediates, for parity checks and debugging.
    """
    c_skip, c_out, c_in, c_noise = v_scalings(sigma.reshape(-1, 1, 1, 1))
    dtype = cond.concat.dtype  # the UNet's precision; the sampler state may be wider (fp16 weights, fp32 state)
    unet_input = torch.cat([(x * c_in).to(dtype), cond.concat], dim=1)
    c_noise = c_noise.reshape(-1)  # stays wide: the UNet computes its sinusoids in float32, as sgm does
    v = unet(unet_input, c_noise, cond.crossattn, cond.vector, num_frames=num_frames).to(x.dtype)
    denoised = v * c_out + x * c_skip
    if trace is not None:
        trace.update(
            denoiser_input=x, unet_input=unet_input, unet_timesteps=c_noise, unet_output=v, denoised_raw=denoised
        )
    return denoised


class GuidedDenoiser:
    """x0 prediction with per-frame classifier-free guidance (``LinearPredictionGuider``)."""

    def __init__(
        self,
        unet: ReLumixUNet,
        cond: Conditioning,
        uncond: Conditioning,
        num_frames: int,
        guidance_scale: torch.Tensor,
        batch_branches: bool = True,
    ) -> None:
        self.unet = unet
        self.cond = cond
        self.uncond = uncond
        self.num_frames = num_frames
        self.guidance_scale = guidance_scale
        self.batch_branches = batch_branches
        self._both = Conditioning.cat([uncond, cond]) if batch_branches else None
        #: Set to a list to keep every call's intermediates (only with batched branches).
        self.trace: list[dict[str, torch.Tensor]] | None = None

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        record: dict[str, torch.Tensor] | None = {} if self.trace is not None else None
        if self._both is not None:
            both = denoise_once(
                self.unet, torch.cat([x, x]), torch.cat([sigma, sigma]), self._both, self.num_frames, record
            )
            uncond, cond = both.chunk(2)
        else:
            uncond = denoise_once(self.unet, x, sigma, self.uncond, self.num_frames)
            cond = denoise_once(self.unet, x, sigma, self.cond, self.num_frames)
        guided = apply_guidance(uncond, cond, self.guidance_scale, self.num_frames)
        if record is not None and self.trace is not None:
            self.trace.append({**record, "x_in": x, "sigma": sigma, "denoised": guided})
        return guided
