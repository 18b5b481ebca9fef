"""The ReLumix model: its named components and the config that rebuilds them.

Components (diffusers / transformers modules):

* ``unet`` - :class:`~relumix_core.models.unet.ReLumixUNet`, the denoiser;
* ``vae`` - ``AutoencoderKLTemporalDecoder``, the official first stage (decodes the result);
* ``image_encoder`` / ``reference_image_encoder`` - CLIP towers for the source frames and the reference;
* ``frame_encoder`` / ``reference_encoder`` - VAE encoders for the source frames and the reference.

The official checkpoint stores a CLIP tower and a VAE encoder per conditioning embedder. When the two copies are
identical only one is loaded, and the reference attribute points at the same module.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .components import COMPONENTS, config_from_dict

#: Latent scale of the SVD first stage (sgm ``scale_factor``).
SCALE_FACTOR = 0.18215


@dataclass
class ReLumixConfig:
    """Everything needed to rebuild the modules, stored in checkpoints of the project's own format."""

    components: dict[str, Any] = field(default_factory=dict)  # name -> component config (dataclass)
    #: Which components share one module with another (name -> name), because the weights were identical.
    shared: dict[str, str] = field(default_factory=dict)
    fps_embed_dim: int = 256
    cond_aug_embed_dim: int = 512
    scale_factor: float = SCALE_FACTOR

    @property
    def unet(self) -> Any:
        return self.components["unet"]

    def to_json(self) -> str:
        return json.dumps(
            {
                "components": {name: cfg.to_dict() for name, cfg in self.components.items()},
                "shared": self.shared,
                "fps_embed_dim": self.fps_embed_dim,
                "cond_aug_embed_dim": self.cond_aug_embed_dim,
                "scale_factor": self.scale_factor,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> ReLumixConfig:
        data = json.loads(text)
        components = {name: config_from_dict(name, cfg) for name, cfg in data.pop("components").items()}
        return cls(components=components, **data)


class ReLumixModel(nn.Module):
    """Container of the named components; attributes are ``None`` for components a checkpoint lacks."""

    def __init__(self, config: ReLumixConfig, modules: dict[str, nn.Module]) -> None:
        super().__init__()
        self.config = config
        for name in COMPONENTS:
            setattr(self, name, modules.get(name))
        for name, target in config.shared.items():
            setattr(self, name, getattr(self, target))

    def component(self, name: str) -> nn.Module:
        """A component, with a clear error when the checkpoint did not provide it."""
        module = getattr(self, name, None)
        if module is None:
            raise ValueError(f"this checkpoint has no {name} ({COMPONENTS[name].role}); load a full ReLumix checkpoint")
        return module

    def unique_components(self) -> dict[str, nn.Module]:
        """The components that own their weights (shared ones appear once)."""
        return {
            name: module
            for name in COMPONENTS
            if (module := getattr(self, name)) is not None and name not in self.config.shared
        }

    @property
    def dtype(self) -> torch.dtype:
        return self.component("unet").dtype
