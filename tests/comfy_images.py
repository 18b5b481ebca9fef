"""Synthetic ComfyUI IMAGE batches for the node tests."""

from __future__ import annotations

import torch


def video(frames: int, height: int = 48, width: int = 80) -> torch.Tensor:
    """A ComfyUI IMAGE batch [B,H,W,C] in 0..1 whose frames all differ (a moving red wave on fixed ramps)."""
    t = torch.linspace(0, 1, frames)[:, None, None, None]
    y = torch.linspace(0, 1, height)[None, :, None, None]
    x = torch.linspace(0, 1, width)[None, None, :, None]
    shape = (frames, height, width, 1)
    channels = [0.5 + 0.4 * torch.sin(6 * x + 3 * t), 0.3 + 0.5 * y + 0 * t, 0.6 - 0.3 * x + 0 * t]
    return torch.cat([c.expand(shape) for c in channels], dim=-1).clamp(0, 1).contiguous()
