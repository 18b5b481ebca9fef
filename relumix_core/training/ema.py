"""An exponential moving average of the trained weights.

Diffusion models are usually sampled with averaged weights: the average smooths the step-to-step noise of the
optimiser much as annealing the learning rate does, without having to stop learning. The average is kept in float32
next to the trained parameters, saved in every checkpoint (so a resumed run averages exactly as an uninterrupted
one) and swapped into the model only while it is exported or sampled.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from ..errors import ReLumixError


class WeightAverage:
    """``shadow = d * shadow + (1 - d) * weights`` after every optimiser step, with d ramping up to ``decay``."""

    def __init__(self, params: dict[str, nn.Parameter], decay: float) -> None:
        self.decay = decay
        self.shadow = {name: p.detach().float().clone() for name, p in params.items()}

    def decay_at(self, step: int) -> float:
        """Warm-up (1 + step) / (10 + step): early averages forget the starting weights quickly."""
        return min(self.decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, params: dict[str, nn.Parameter], step: int) -> None:
        keep = self.decay_at(step)
        for name, param in params.items():
            self.shadow[name].lerp_(param.detach().float(), 1.0 - keep)

    def load(self, tensors: dict[str, torch.Tensor]) -> None:
        if tensors.keys() != self.shadow.keys():
            raise ReLumixError(
                "the saved weight average does not match the trained parameters; was it made with another config?"
            )
        for name, value in tensors.items():
            self.shadow[name].copy_(value)

    @contextlib.contextmanager
    def swapped_in(self, params: dict[str, nn.Parameter]) -> Iterator[None]:
        """The averaged weights in the model for the duration of the block; the trained ones back afterwards."""
        with torch.no_grad():
            trained = {name: p.detach().clone() for name, p in params.items()}
            for name, param in params.items():
                param.copy_(self.shadow[name])
        try:
            yield
        finally:
            with torch.no_grad():
                for name, param in params.items():
                    param.copy_(trained[name])
