"""ReLumix's components under ComfyUI's memory manager.

Each group of components that share weights (the UNet; the VAE, whose encoder the frame embedders may reuse; the
image towers) is wrapped in ComfyUI's model patcher around a plain :class:`ReLumixComponent` container: the patcher
sets ``model.device``, which diffusers and transformers models expose read-only. Before each stage the sampler asks
ComfyUI to load exactly that stage's groups, with the stage's working memory from the simulator, so ComfyUI
unloads other models first (IC-Light's UNet, an SD1.5 VAE) and, on a small card, loads the UNet partially and
streams the rest. After the run the groups stay registered: ComfyUI unloads them when another model needs the room,
or on "Unload models" (``POST /free``).

Outside ComfyUI (tests, other hosts) the library's own placements are used instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from . import services


class ReLumixComponent(nn.Module):
    """A plain container for one weight-sharing group: what ComfyUI's patcher moves, measures and unloads."""

    def __init__(self, members: dict[str, nn.Module], group: str, checkpoint: str) -> None:
        super().__init__()
        self.members = nn.ModuleDict(members)
        #: Read by tools that list ComfyUI's loaded models (and by the tests).
        self.relumix_component = group
        self.relumix_checkpoint = checkpoint


def weight_groups(model: Any) -> dict[str, tuple[str, ...]]:
    """Component names grouped so that no weight is in two groups, each group named by its first component."""
    components = model.unique_components()
    owners: dict[int, str] = {}
    parent = {name: name for name in components}

    def root(name: str) -> str:
        while parent[name] != name:
            name = parent[name]
        return name

    for name, module in components.items():
        for tensor in [*module.parameters(), *module.buffers()]:
            other = owners.setdefault(id(tensor), name)
            if root(other) != root(name):
                parent[root(name)] = root(other)
    groups: dict[str, list[str]] = {}
    for name in components:
        groups.setdefault(root(name), []).append(name)
    return {members[0]: tuple(members) for members in groups.values()}


def _unique_bytes(module: nn.Module) -> int:
    """Weights and buffers counted once (a group holding the VAE and a frame encoder built on its encoder)."""
    return sum(t.numel() * t.element_size() for t in {id(t): t for t in [*module.parameters(), *module.buffers()]}
               .values())


class ComfyPlacement:
    """A :class:`~relumix_core.pipeline.placement.Placement` that hands every stage to ComfyUI's memory manager."""

    def __init__(self, model: Any, checkpoint: str) -> None:
        self.device = services.torch_device()
        self.groups = weight_groups(model)
        self.group_of = {name: group for group, names in self.groups.items() for name in names}
        self.patchers: dict[str, Any] = {}
        for group, names in self.groups.items():
            container = ReLumixComponent({n: model.component(n) for n in names}, group, checkpoint)
            self.patchers[group] = services.wrap_in_patcher(container, _unique_bytes(container))
        #: Working memory per stage for the run about to start (the sampler sets it from the memory plan).
        self.stage_memory: dict[str, int] = {}

    def patchers_for(self, components: tuple[str, ...]) -> list[Any]:
        groups = dict.fromkeys(self.group_of[name] for name in components if name in self.group_of)
        return [self.patchers[group] for group in groups]

    @contextmanager
    def stage(self, stage: str, components: tuple[str, ...]) -> Iterator[None]:
        # the encoders and the VAE hold parameters outside ComfyUI's streamable layers: they load whole. The UNet's
        # layers are ComfyUI's own (see ``stream_ready``), so it may load partially on a small card.
        services.load_models(self.patchers_for(components), self.stage_memory.get(stage, 0),
                             force_full_load=stage != "sample")
        yield

    def unload(self) -> None:
        services.unload_models(list(self.patchers.values()))


def stream_ready(unet: nn.Module, manual_cast: bool) -> int:
    """Swap the UNet's layers to ComfyUI's classes, which ComfyUI streams layer by layer when the UNet does not fit;
    layers ComfyUI has no class for (the temporal mix factors) take the library's cast-at-use class, and the gates
    are cast where they are used. Returns the layers swapped; 0 outside ComfyUI."""
    from relumix_core.models.cast import LIBRARY_CASTS, swap_layer_classes

    classes = services.layer_classes(manual_cast)
    if classes is None:
        return 0
    return swap_layer_classes(unet, {**LIBRARY_CASTS, **classes})


def store_in(unet: nn.Module, weight_dtype: torch.dtype) -> int:
    """fp8 storage of the UNet's Linear and Conv weights after :func:`stream_ready` (ComfyUI's ``manual_cast``
    layers upcast them as they run). Before the patchers are made: they measure the model once."""
    from relumix_core.models.cast import store_weights

    return store_weights(unet, weight_dtype, layers=(nn.Linear, nn.Conv2d, nn.Conv3d))

