"""EDM Euler sampling as in the official code: short pure functions in the style of k-diffusion.

The official sampler (sgm ``EulerEDMSampler`` with ``EDMDiscretization`` and ``VScalingWithEDMcNoise``, s_churn 0)
is deterministic. diffusers' ``EDMEulerScheduler`` builds the same schedule in a different precision and order of
operations, so these functions reproduce sgm's arithmetic exactly instead.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

#: Official defaults (``EDMDiscretization``).
SIGMA_MIN = 0.002
SIGMA_MAX = 700.0
RHO = 7.0

DenoiseFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
StepCallback = Callable[[int, int, torch.Tensor], None]


def edm_sigmas(
    num_steps: int,
    sigma_min: float = SIGMA_MIN,
    sigma_max: float = SIGMA_MAX,
    rho: float = RHO,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Karras/EDM schedule from sigma_max down to sigma_min, with a final 0 appended: [num_steps + 1]."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be at least 1, got {num_steps}")
    ramp = torch.linspace(0, 1, num_steps, dtype=dtype, device=device)
    min_inv_rho = sigma_min ** (1 / rho)
    max_inv_rho = sigma_max ** (1 / rho)
    sigmas = (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)])


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


def euler_step(x: torch.Tensor, denoised: torch.Tensor, sigma: torch.Tensor, next_sigma: torch.Tensor) -> torch.Tensor:
    """One Euler step of the probability-flow ODE from sigma to next_sigma."""
    derivative = (x - denoised) / sigma
    return x + (next_sigma - sigma) * derivative


def sample_euler_edm(
    denoise: DenoiseFn,
    noise: torch.Tensor,
    sigmas: torch.Tensor,
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """Run the Euler sampler from unit-variance ``noise``; ``denoise(x, sigma_per_row)`` returns the guided x0.

    ``callback(step, total, x)`` is called after every step (progress, interrupts, recording).
    """
    x = noise * torch.sqrt(1.0 + sigmas[0] ** 2.0)
    rows = x.new_ones([x.shape[0]])
    steps = len(sigmas) - 1
    for i in range(steps):
        denoised = denoise(x, rows * sigmas[i])
        x = euler_step(x, denoised, sigmas[i], sigmas[i + 1])
        if callback is not None:
            callback(i, steps, x)
    return x
