"""Classifier-free guidance of one window: UNet input assembly, EDM v-scalings and per-frame guidance.

Mirrors the official ``OpenAIWrapper`` + ``Denoiser(VScalingWithEDMcNoise)`` + ``LinearPredictionGuider``: the
noisy latent (times c_in) is concatenated with the conditioning latents on channels, and the unconditional rows
come first when both branches run as one batch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..models.unet import ReLumixUNet
from .conditioning import Conditioning

#: Receives the intermediates of one guided evaluation (parity checks and debugging).
EvaluationHook = Callable[[dict[str, torch.Tensor]], None]


def v_scalings(sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(c_skip, c_out, c_in, c_noise) of v-prediction with EDM's c_noise = ln(sigma) / 4."""
    c_skip = 1.0 / (sigma**2 + 1.0)
    c_out = -sigma / (sigma**2 + 1.0) ** 0.5
    c_in = 1.0 / (sigma**2 + 1.0) ** 0.5
    c_noise = 0.25 * sigma.log()
    return c_skip, c_out, c_in, c_noise


def linear_guidance_scale(
    num_frames: int, min_scale: float, max_scale: float, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Per-frame guidance scale [num_frames], from min_scale at frame 0 to max_scale at the last frame."""
    return torch.linspace(min_scale, max_scale, num_frames, dtype=dtype)


def apply_guidance(uncond: torch.Tensor, cond: torch.Tensor, scale: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Classifier-free guidance with a per-frame scale; rows are (video, frame) pairs, frame-minor."""
    u = uncond.unflatten(0, (-1, num_frames))
    c = cond.unflatten(0, (-1, num_frames))
    s = scale.to(u).reshape(1, num_frames, *([1] * (u.ndim - 2)))
    return (u + s * (c - u)).flatten(0, 1)


def denoise_once(
    unet: ReLumixUNet,
    x: torch.Tensor,
    sigma: torch.Tensor,
    cond: Conditioning,
    num_frames: int,
    intermediates: dict[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """D(x, sigma) = F(x * c_in, c_noise, cond) * c_out + x * c_skip, for per-row ``sigma``.

    Only the noisy latent is scaled by c_in; the conditioning latents are not. The UNet runs in the conditioning's
    dtype and its output returns to ``x``'s, as the official fp16 autocast keeps the sampler state in fp32.
    ``intermediates`` (if given) receives the UNet's input and output, for parity checks and debugging.
    """
    c_skip, c_out, c_in, c_noise = v_scalings(sigma.reshape(-1, 1, 1, 1))
    dtype = cond.concat.dtype  # the UNet's precision; the sampler state may be wider (fp16 weights, fp32 state)
    unet_input = torch.cat([(x * c_in).to(dtype), cond.concat], dim=1)
    c_noise = c_noise.reshape(-1)  # stays wide: the UNet computes its sinusoids in float32, as sgm does
    v = unet(unet_input, c_noise, cond.crossattn, cond.vector, num_frames=num_frames).to(x.dtype)
    denoised = v * c_out + x * c_skip
    if intermediates is not None:
        intermediates.update(
            denoiser_input=x, unet_input=unet_input, unet_timesteps=c_noise, unet_output=v, denoised_raw=denoised
        )
    return denoised


class GuidedDenoiser:
    """x0 prediction of one window with per-frame classifier-free guidance (``LinearPredictionGuider``).

    ``on_evaluate`` receives every call's intermediates (the UNet's only with batched branches).
    """

    def __init__(
        self,
        unet: ReLumixUNet,
        cond: Conditioning,
        uncond: Conditioning,
        num_frames: int,
        guidance_scale: torch.Tensor,
        batch_branches: bool = True,
        on_evaluate: EvaluationHook | None = None,
    ) -> None:
        self.unet = unet
        self.cond = cond
        self.uncond = uncond
        self.num_frames = num_frames
        self.guidance_scale = guidance_scale
        self.on_evaluate = on_evaluate
        self._both = Conditioning.cat([uncond, cond]) if batch_branches else None

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        record: dict[str, torch.Tensor] | None = {} if self.on_evaluate is not None else None
        if self._both is not None:
            both = denoise_once(
                self.unet, torch.cat([x, x]), torch.cat([sigma, sigma]), self._both, self.num_frames, record
            )
            uncond, cond = both.chunk(2)
        else:
            uncond = denoise_once(self.unet, x, sigma, self.uncond, self.num_frames)
            cond = denoise_once(self.unet, x, sigma, self.cond, self.num_frames)
        guided = apply_guidance(uncond, cond, self.guidance_scale, self.num_frames)
        if record is not None and self.on_evaluate is not None:
            self.on_evaluate({**record, "x_in": x, "sigma": sigma, "denoised": guided})
        return guided
