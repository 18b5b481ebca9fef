"""Where the model's components live while each stage of a run works.

The pipeline runs in three stages, each needing its own components on the compute device: ``encode`` (the image
towers and the frame encoder), ``sample`` (the UNet) and ``decode`` (the VAE decoder). Before a stage it enters
``placement.stage(name, components)``; what happens there is the placement's business:

- :class:`Resident`: everything moved to the device once and kept there (fastest, the most memory);
- :class:`Offload`: each component visits the device only during its stage (``relumix relight --offload``);
- inside ComfyUI the nodes supply a placement that asks ComfyUI's memory manager to load the stage's components,
  which unloads other models first and may stream the UNet layer by layer on a small card.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

import torch

from ..models.relumix import ReLumixModel

#: The stages a run goes through, in order, and the components each one uses.
STAGES = ("encode", "sample", "decode")


class Placement(Protocol):
    """Puts a stage's components on the compute device for the duration of the stage."""

    device: torch.device

    def stage(self, stage: str, components: tuple[str, ...]) -> AbstractContextManager[None]: ...


class Resident:
    """The whole model on ``device`` from the start; stages change nothing."""

    def __init__(self, model: ReLumixModel, device: torch.device) -> None:
        self.device = device
        model.to(device)

    @contextmanager
    def stage(self, stage: str, components: tuple[str, ...]) -> Iterator[None]:
        yield


class Offload:
    """Each component on ``device`` only while its stage runs, on the CPU otherwise (the cache emptied after)."""

    def __init__(self, model: ReLumixModel, device: torch.device) -> None:
        self.model, self.device = model, device

    @contextmanager
    def stage(self, stage: str, components: tuple[str, ...]) -> Iterator[None]:
        modules = [self.model.component(name) for name in components]
        for module in modules:
            module.to(self.device)
        try:
            yield
        finally:
            for module in modules:
                module.to("cpu")
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
