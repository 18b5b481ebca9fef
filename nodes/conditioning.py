"""EmbeddingFuse: frame replacement and embedding fusion for every frame, once (RELUMIX_CONDITIONING)."""

from __future__ import annotations

from typing import Any

import torch

from .loader import ReLumixHandle
from .reference import (
    KEYFRAME_INDICES_TOOLTIP,
    MAX_FRAMES,
    REFERENCE_INDEX_TOOLTIP,
    check_keyframes_inside,
    keyframes,
)

FITS = ("resize", "crop", "pad")
RESOLUTIONS = ("model's trained size", "video's own size", "custom")


def _processing_size(resolution: str, size: int) -> int | str | None:
    """The widget pair as RelightSettings.size: "trained", None (the video's own size) or a side length."""
    from relumix_core.errors import ReLumixError

    choices = {RESOLUTIONS[0]: "trained", RESOLUTIONS[1]: None, RESOLUTIONS[2]: size}
    if resolution not in choices:
        raise ReLumixError(f"resolution must be one of {RESOLUTIONS}, got {resolution!r}")
    return choices[resolution]


class EmbeddingFuse:
    """Embeds the frames (reference in place) and the reference: the conditioning the sampler needs."""

    CATEGORY = "ReLumix"
    RETURN_TYPES = ("RELUMIX_CONDITIONING",)
    RETURN_NAMES = ("conditioning",)
    FUNCTION = "fuse"
    DESCRIPTION = (
        "CLIP and VAE embeddings of every frame and of the relit reference, whose latent and CLIP embedding are "
        "fused with every frame's. The clip is split at the reference into a forward and a backward run. Several "
        "relit keyframes: a batch of references with keyframe_indices (one frame per image, e.g. from Reference "
        "Replace's keyframe_indices output)."
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "model": ("RELUMIX_MODEL",),
                "frames": ("IMAGE", {"tooltip": "the video frames (from Reference Replace: the reference in place)"}),
                "reference": ("IMAGE", {"tooltip": "the relit reference (one image), or with keyframe_indices a "
                                                   "batch of relit keyframes"}),
                "reference_index": ("INT", {"default": 0, "min": 0, "max": MAX_FRAMES,
                                            "tooltip": REFERENCE_INDEX_TOOLTIP}),
                "resolution": (RESOLUTIONS, {"default": RESOLUTIONS[0],
                                             "tooltip": "processing size: the size the model was trained at (512 "
                                                        "for ReLumix, 64 for relumix-tiny), the video's own size, "
                                                        "or about size x size pixels"}),
                "size": ("INT", {"default": 512, "min": 64, "max": 2048, "step": 64,
                                 "tooltip": "with resolution 'custom': about size x size pixels at the video's "
                                            "aspect (sides rounded to what the model needs)"}),
                "fit": (FITS, {"default": "resize", "tooltip": "how frames meet the processing size"}),
                "fps_id": ("INT", {"default": 15, "min": 0, "max": 1000, "tooltip": "the authors use 15"}),
                "cond_aug": ("FLOAT", {"default": 0.02, "min": 0.0, "max": 1.0, "step": 0.001,
                                       "tooltip": "noise added to the source frames before the VAE (0.02)"}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True,
                                 "tooltip": "seed of the cond_aug noise"}),
            },
            "optional": {
                "keyframe_indices": ("STRING", {"default": "", "tooltip": KEYFRAME_INDICES_TOOLTIP}),
            },
        }

    def fuse(
        self,
        model: ReLumixHandle,
        frames: torch.Tensor,
        reference: torch.Tensor,
        reference_index: int,
        resolution: str,
        size: int,
        fit: str,
        fps_id: int,
        cond_aug: float,
        seed: int,
        keyframe_indices: str = "",
    ) -> tuple[Any]:
        from relumix_core.pipeline.settings import RelightSettings

        settings = RelightSettings(
            fps_id=fps_id, cond_aug=cond_aug, reference_range=model.reference_range,  # type: ignore[arg-type]
            size=_processing_size(resolution, size), fit=fit,  # type: ignore[arg-type]
        )
        indices = keyframes(keyframe_indices, reference)
        if indices is not None and frames.ndim == 4:
            check_keyframes_inside(indices, frames.shape[0])
        at = [reference_index] if indices is None else indices
        if frames.ndim == 4 and max(at) < frames.shape[0]:  # bad shapes and indices fail in encode, with the reason
            resolved = settings.resolved(model.pipeline.model)
            size = model.pipeline.framing(frames.shape[1], frames.shape[2], resolved).size
            settings = model.plan_memory(frames.shape[0], size, settings, "auto")
        generator = torch.Generator().manual_seed(seed)
        try:
            conditioning = model.pipeline.encode(
                frames, reference, reference_index if indices is None else indices, settings, generator
            )
        finally:
            model.park()
        return (conditioning,)
