"""The ReLumix model: its named components and the config that rebuilds them.

Components (diffusers / transformers modules):

* ``unet`` - :class:`~relumix_core.models.unet.ReLumixUNet`, the denoiser;
* ``vae`` - ``AutoencoderKLTemporalDecoder``, the official first stage (decodes the result);
* ``image_encoder`` / ``reference_image_encoder`` - CLIP towers for the source frames and the reference;
* ``frame_encoder`` / ``reference_encoder`` - VAE encoders for the source frames and the reference.

The official checkpoint stores a CLIP tower and a VAE encoder per conditioning embedder, and the first stage has a
VAE encoder of its own. Identical copies are loaded once: the reference attribute points at the same module, and
``frame_encoder.encoder`` can be the very module ``vae.encoder`` (``ReLumixConfig.shared`` records each link).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..checkpoints.components import COMPONENTS, config_from_dict

#: Latent scale of the SVD first stage (sgm ``scale_factor``).
SCALE_FACTOR = 0.18215


#: Clip length (frames) of ReLumix training: SVD's 14, also the authors' gradio config.
TRAINED_FRAMES = 14
#: The window strategies a checkpoint may name as its default: :data:`relumix_core.pipeline.windows.STRATEGIES`
#: (spelled out here because the pipeline imports the model; a test keeps the two equal).
WINDOW_STRATEGIES: tuple[str, ...] = ("anchor", "chain")


def _is_under(path: str, root: str) -> bool:
    """``path`` is ``root`` or lies inside it (dotted module paths)."""
    return path == root or path.startswith(root + ".")


@dataclass
class ReLumixConfig:
    """Everything needed to rebuild the modules, stored in checkpoints of the project's own format."""

    components: dict[str, Any] = field(default_factory=dict)  # name -> component config (dataclass)
    #: Modules used in two places because the weights were identical: path -> path of the module that owns them.
    #: A path is a component (``"reference_encoder": "frame_encoder"``) or a submodule inside one
    #: (``"frame_encoder.encoder": "vae.encoder"``). Linked weights are stored once, under their owner.
    shared: dict[str, str] = field(default_factory=dict)
    fps_embed_dim: int = 256
    cond_aug_embed_dim: int = 512
    scale_factor: float = SCALE_FACTOR
    #: Frames per clip in training; the pipeline's default window for longer videos. 14 for ReLumix (SVD's length,
    #: and the authors' gradio config); checkpoints written before this field existed read as 14.
    trained_frames: int = TRAINED_FRAMES
    #: Side of the square frames it was trained at (about trained_size**2 pixels is the default processing size):
    #: 512 for ReLumix, 64 for relumix-tiny.
    trained_size: int = 512
    #: Blur radius, in pixels of the processing size, of the detail transfer (:mod:`relumix_core.media.detail`) the
    #: model is meant to be used with: 0 (off) for ReLumix, whose authors do none; chosen on validation data for
    #: relumix-tiny. Checkpoints written before this field existed read as 0.
    detail_sigma: float = 0.0
    #: Sampling steps the model is meant to run with when a run does not choose: 25 for ReLumix (the authors'
    #: default); relumix-tiny's card gives its own, chosen on validation data. Older checkpoints read as 25.
    default_steps: int = 25
    #: Whether runs apply the colour anchor (:mod:`relumix_core.media.colour_anchor`) unless they choose: off for
    #: ReLumix; on for relumix-tiny, whose validation set it improves (its card gives the numbers). Older checkpoints
    #: read as off.
    colour_anchor: bool = False
    #: Detail-transfer radius (processing pixels) far from every keyframe (:func:`relumix_core.media.detail.
    #: far_detail_weights`): past the first window after a keyframe the output trusts the model's light only at ever
    #: coarser scales. 0 (ReLumix, and older checkpoints) keeps ``detail_sigma`` everywhere.
    detail_sigma_far: float = 0.0
    #: How runs join windows on clips longer than one window unless they choose (``"chain"`` or ``"anchor"``,
    #: :mod:`relumix_core.pipeline.windows`): chain for ReLumix and older checkpoints; relumix-tiny's card gives its
    #: own, chosen on validation data.
    window_strategy: str = "chain"
    #: Whether runs pin the pixels that show what a keyframe showed to its carried light
    #: (:mod:`relumix_core.media.reference_pin`) unless they choose: off for ReLumix and older checkpoints; on for
    #: relumix-tiny, whose validation sets it improves (its card gives the numbers).
    reference_pin: bool = False

    @property
    def unet(self) -> Any:
        return self.components["unet"]

    @property
    def latent_factor(self) -> int:
        """How much the first-stage VAE shrinks a side (8 for SVD/ReLumix, 4 for relumix-tiny)."""
        vae = self.components.get("vae") or self.components.get("frame_encoder")
        return 2 ** (vae.num_levels - 1) if vae is not None else 8

    @property
    def size_multiple(self) -> int:
        """Processing sides are multiples of this: the VAE factor times the UNet's downsampling (64 for ReLumix).
        Read from the config alone, so a memory plan knows it without building the model."""
        unet = self.components.get("unet")
        return self.latent_factor * 2 ** (len(unet.channel_mult) - 1) if unet is not None else 64

    def to_json(self) -> str:
        return json.dumps(
            {
                "components": {name: cfg.to_dict() for name, cfg in self.components.items()},
                "shared": self.shared,
                "fps_embed_dim": self.fps_embed_dim,
                "cond_aug_embed_dim": self.cond_aug_embed_dim,
                "scale_factor": self.scale_factor,
                "trained_frames": self.trained_frames,
                "trained_size": self.trained_size,
                "detail_sigma": self.detail_sigma,
                "default_steps": self.default_steps,
                "colour_anchor": self.colour_anchor,
                "detail_sigma_far": self.detail_sigma_far,
                "window_strategy": self.window_strategy,
                "reference_pin": self.reference_pin,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> ReLumixConfig:
        data = json.loads(text)
        components = {name: config_from_dict(name, cfg) for name, cfg in data.pop("components").items()}
        config = cls(components=components, **data)
        if not isinstance(config.trained_frames, int) or config.trained_frames < 1:
            raise ValueError(f"trained_frames must be a positive integer, not {config.trained_frames!r}")
        if not isinstance(config.trained_size, int) or config.trained_size < 8:
            raise ValueError(f"trained_size must be an integer of at least 8, not {config.trained_size!r}")
        for name in ("detail_sigma", "detail_sigma_far"):
            sigma = getattr(config, name)
            if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not math.isfinite(sigma) or sigma < 0:
                raise ValueError(f"{name} must be a number of at least 0, not {sigma!r}")
            setattr(config, name, float(sigma))
        steps = config.default_steps
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"default_steps must be a positive integer, not {config.default_steps!r}")
        for name in ("colour_anchor", "reference_pin"):
            if not isinstance(getattr(config, name), bool):
                raise ValueError(f"{name} must be true or false, not {getattr(config, name)!r}")
        if config.window_strategy not in WINDOW_STRATEGIES:
            raise ValueError(f"window_strategy must be one of {WINDOW_STRATEGIES}, not {config.window_strategy!r}")
        config.link_order()  # a broken "shared" table fails here, when the file is read
        return config

    def owner(self, path: str) -> str:
        """The path of the module whose weights ``path`` uses, following links (chains included)."""
        for _ in range(len(self.shared) + 1):
            source = next((s for s in self.shared if _is_under(path, s)), None)
            if source is None:
                return path
            path = self.shared[source] + path[len(source) :]
        raise ValueError(f"the shared links {self.shared} form a cycle")

    def linked_submodules(self, name: str) -> tuple[str, ...]:
        """Paths inside component ``name`` (relative to it) that are other modules' weights, not its own."""
        return tuple(source[len(name) + 1 :] for source in self.shared if source.startswith(name + "."))

    def link_order(self) -> list[tuple[str, str]]:
        """The links as (path, owner path), each after the links that replace its owner; checks the table.

        A link must be applied after another whose path is (or contains) its owner path, else it would pick up
        the module that is about to be replaced.
        """
        for source, target in self.shared.items():
            for path in (source, target):
                if not isinstance(path, str) or path.partition(".")[0] not in COMPONENTS:
                    raise ValueError(f"shared link {source!r} -> {target!r}: {path!r} is not in a known component")
            if _is_under(target, source) or _is_under(source, target):
                raise ValueError(f"shared link {source!r} -> {target!r} points into itself")
            inside = [s for s in self.shared if s != source and _is_under(source, s)]
            if inside:
                raise ValueError(f"shared link {source!r} lies inside the linked {inside[0]!r}; link its owner instead")
        order: list[tuple[str, str]] = []
        pending = dict(self.shared)
        while pending:
            ready = [s for s, t in pending.items() if not any(_is_under(t, other) for other in pending if other != s)]
            if not ready:
                raise ValueError(f"the shared links {pending} form a cycle")
            order.extend((s, pending.pop(s)) for s in ready)
        return order


def set_submodule(root: nn.Module, path: str, module: nn.Module | None) -> None:
    """Put ``module`` at the dotted ``path`` inside ``root``, replacing what is there."""
    parent, _, leaf = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, module)


class ReLumixModel(nn.Module):
    """Container of the named components; attributes are ``None`` for components a checkpoint lacks.

    The links of ``config.shared`` are applied here: a linked component is the owner's module, a linked submodule
    (built but left empty by the loaders) is replaced by the owner's submodule.
    """

    def __init__(self, config: ReLumixConfig, modules: dict[str, nn.Module]) -> None:
        super().__init__()
        self.config = config
        for name in COMPONENTS:
            setattr(self, name, modules.get(name))
        for path, target in config.link_order():
            name, _, sub = path.partition(".")
            owner = self._module_at(target)
            if not sub:
                setattr(self, name, owner)
            elif getattr(self, name) is not None:
                if owner is None:
                    raise ValueError(f"{path} is linked to {target}, which this model lacks")
                set_submodule(getattr(self, name), sub, owner)

    def _module_at(self, path: str) -> nn.Module | None:
        name, _, sub = path.partition(".")
        module = getattr(self, name)
        return module.get_submodule(sub) if module is not None and sub else module

    def component(self, name: str) -> nn.Module:
        """A component, with a clear error when the checkpoint did not provide it."""
        module = getattr(self, name, None)
        if module is None:
            raise ValueError(f"this checkpoint has no {name} ({COMPONENTS[name].role}); load a full ReLumix checkpoint")
        return module

    def unique_components(self) -> dict[str, nn.Module]:
        """The components that own weights (whole shared ones appear once; see :meth:`owned_state_dict`)."""
        return {
            name: module
            for name in COMPONENTS
            if (module := getattr(self, name)) is not None and name not in self.config.shared
        }

    def owned_state_dict(self, name: str) -> dict[str, torch.Tensor]:
        """A component's state dict without its linked submodules, whose weights belong to (and are saved with)
        another component: what a file stores for ``name``."""
        skip = tuple(sub + "." for sub in self.config.linked_submodules(name))
        return {k: v for k, v in self.component(name).state_dict().items() if not k.startswith(skip)}

    def num_parameters(self) -> int:
        """Parameters counted once, however many components use them."""
        return sum(p.numel() for p in self.parameters())

    @property
    def latent_factor(self) -> int:
        """How much the first-stage VAE shrinks a side (8 for SVD/ReLumix, 4 for relumix-tiny)."""
        return self.config.latent_factor

    @property
    def size_multiple(self) -> int:
        """Processing sides are multiples of this (64 for ReLumix); see :attr:`ReLumixConfig.size_multiple`."""
        return self.config.size_multiple

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the model computes in: the UNet's, not counting weights stored in fp8 (upcast as they run)."""
        from .precision import compute_dtype

        return compute_dtype(self.component("unet"))
