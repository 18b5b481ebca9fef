"""EDM training pieces (Karras et al. 2022), as the authors' sgm config uses them: short pure functions."""

from __future__ import annotations

import torch


def sample_sigmas(num_videos: int, p_mean: float, p_std: float, generator: torch.Generator) -> torch.Tensor:
    """log sigma ~ N(p_mean, p_std), one sigma per video (sgm ``EDMSampling`` with harmonized sigmas)."""
    return torch.exp(p_mean + p_std * torch.randn(num_videos, generator=generator))


def loss_weight(sigma: torch.Tensor, sigma_data: float = 1.0) -> torch.Tensor:
    """EDM weighting (sigma^2 + sigma_data^2) / (sigma * sigma_data)^2, so every noise level counts alike."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def weighted_mse(denoised: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Mean over rows of weight * mean squared error per row (sgm ``StandardDiffusionLoss``, l2)."""
    per_row = (denoised.float() - target.float()).pow(2).flatten(1).mean(dim=1)
    return (weight.float() * per_row).mean()
