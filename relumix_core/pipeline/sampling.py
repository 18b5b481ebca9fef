"""The denoising loop: EDM Euler sampling as in the official code, over one or more windows of a sequence.

The official sampler (sgm ``EulerEDMSampler`` with ``EDMDiscretization`` and ``VScalingWithEDMcNoise``, s_churn 0)
is deterministic. diffusers' ``EDMEulerScheduler`` builds the same schedule in a different precision and order of
operations, so these functions reproduce sgm's arithmetic exactly instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from .windows import window_weights

#: Official defaults (``EDMDiscretization``).
SIGMA_MIN = 0.002
SIGMA_MAX = 700.0
RHO = 7.0

DenoiseFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
StepCallback = Callable[[int, torch.Tensor], None]


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


def euler_step(x: torch.Tensor, denoised: torch.Tensor, sigma: torch.Tensor, next_sigma: torch.Tensor) -> torch.Tensor:
    """One Euler step of the probability-flow ODE from sigma to next_sigma."""
    derivative = (x - denoised) / sigma
    return x + (next_sigma - sigma) * derivative


def sample_windows(
    window_denoisers: Sequence[DenoiseFn],
    plan: list[list[int]],
    noise: torch.Tensor,
    sigmas: torch.Tensor,
    on_window: Callable[[torch.Tensor], None] | None = None,
    on_step: StepCallback | None = None,
) -> torch.Tensor:
    """The denoising loop: Euler steps over a sequence that ``plan`` splits into windows denoised together.

    ``window_denoisers[i](x[plan[i]], sigma_per_row)`` returns the guided x0 of window ``i`` (a
    :class:`~relumix_core.pipeline.guidance.GuidedDenoiser`). Frames seen by several windows take the ramp-weighted
    mean of their x0 predictions at every step (MultiDiffusion-style), so seams are resolved during sampling. With
    one window covering the whole sequence this is exactly the official ``EulerEDMSampler`` (s_churn 0).
    ``on_window(denoised)`` follows every window evaluation with that window's x0 (progress, previews and
    interrupts), ``on_step(step, x)`` every step.
    """
    x = noise * torch.sqrt(1.0 + sigmas[0] ** 2.0)
    rows = x.new_ones([x.shape[0]])
    per_row = (-1, *([1] * (x.ndim - 1)))
    index = [torch.tensor(positions, device=x.device) for positions in plan]
    weights = [w.to(x) for w in window_weights(plan)]
    for step in range(len(sigmas) - 1):
        sigma = rows * sigmas[step]
        total = torch.zeros_like(x)
        norm = torch.zeros_like(rows)
        for rows_of_window, weight, denoise in zip(index, weights, window_denoisers, strict=True):
            denoised = denoise(x[rows_of_window], sigma[rows_of_window])
            total.index_add_(0, rows_of_window, denoised * weight.reshape(per_row))
            norm.index_add_(0, rows_of_window, weight)
            if on_window is not None:
                on_window(denoised)
        x = euler_step(x, total / norm.reshape(per_row), sigmas[step], sigmas[step + 1])
        if on_step is not None:
            on_step(step, x)
    return x
