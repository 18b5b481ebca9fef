"""ReLumix: propagate the light of one relit frame through a video with a fine-tuned SVD UNet.

A plain Python library (it never imports ComfyUI), one package per stage of the data's way::

    video + relit reference --media--> frames --pipeline.conditioning--> conditioning
        --pipeline.sampling (windows, guidance)--> latents --decode--> relit frames

``models`` holds the networks, ``checkpoints`` reads and writes weights, ``data``/``training``/``evaluation`` serve
research and ``cli`` the command line. The names below are the stable public API; they are imported on first use,
so ``import relumix_core`` stays instant (the CLI's ``--help`` imports no torch).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_EXPORTS = {
    "load_relumix": "relumix_core.checkpoints.loading",
    "LoadReport": "relumix_core.checkpoints.loading",
    "convert_checkpoint": "relumix_core.checkpoints.loading",
    "ReLumixModel": "relumix_core.models.relumix",
    "ReLumixConfig": "relumix_core.models.relumix",
    "ReLumixPipeline": "relumix_core.pipeline.pipeline",
    "RelightResult": "relumix_core.pipeline.pipeline",
    "RelightSettings": "relumix_core.pipeline.settings",
    "ReLumixConditioning": "relumix_core.pipeline.conditioning",
    "Interrupted": "relumix_core.pipeline.progress",
    "read_video": "relumix_core.media.video_io",
    "write_video": "relumix_core.media.video_io",
    "read_image": "relumix_core.media.video_io",
    "ReLumixError": "relumix_core.errors",
    "CheckpointError": "relumix_core.errors",
}

__all__ = [
    "CheckpointError",
    "Interrupted",
    "LoadReport",
    "ReLumixConditioning",
    "ReLumixConfig",
    "ReLumixError",
    "ReLumixModel",
    "ReLumixPipeline",
    "RelightResult",
    "RelightSettings",
    "__version__",
    "convert_checkpoint",
    "load_relumix",
    "read_image",
    "read_video",
    "write_video",
]

if TYPE_CHECKING:
    from .checkpoints.loading import LoadReport, convert_checkpoint, load_relumix
    from .errors import CheckpointError, ReLumixError
    from .media.video_io import read_image, read_video, write_video
    from .models.relumix import ReLumixConfig, ReLumixModel
    from .pipeline.conditioning import ReLumixConditioning
    from .pipeline.pipeline import RelightResult, ReLumixPipeline
    from .pipeline.progress import Interrupted
    from .pipeline.settings import RelightSettings


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'relumix_core' has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
