"""EmbeddingFuse: frame replacement and embedding fusion for every frame, once (RELUMIX_CONDITIONING)."""

from __future__ import annotations

from typing import Any

import torch

from .loader import ReLumixHandle
from .reference import MAX_FRAMES

FITS = ("resize", "crop", "pad")


class EmbeddingFuse:
    """Embeds the frames (reference in place) and the reference: the conditioning the sampler needs."""

    CATEGORY = "ReLumix"
    RETURN_TYPES = ("RELUMIX_CONDITIONING",)
    RETURN_NAMES = ("conditioning",)
    FUNCTION = "fuse"
    DESCRIPTION = (
        "CLIP and VAE embeddings of every frame and of the relit reference, whose latent and CLIP embedding are "
        "fused with every frame's. The clip is split at the reference into a forward and a backward run."
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "model": ("RELUMIX_MODEL",),
                "frames": ("IMAGE",),
                "reference": ("IMAGE",),
                "reference_index": ("INT", {"default": 0, "min": 0, "max": MAX_FRAMES}),
                "size": ("INT", {"default": 512, "min": 0, "max": 2048, "step": 64,
                                 "tooltip": "about size x size pixels at the video's aspect (sides multiples of "
                                            "64); 0 = the video's own size"}),
                "fit": (FITS, {"default": "resize", "tooltip": "how frames meet the processing size"}),
                "fps_id": ("INT", {"default": 15, "min": 0, "max": 1000, "tooltip": "the authors use 15"}),
                "cond_aug": ("FLOAT", {"default": 0.02, "min": 0.0, "max": 1.0, "step": 0.001,
                                       "tooltip": "noise added to the source frames before the VAE (0.02)"}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True,
                                 "tooltip": "seed of the cond_aug noise"}),
            }
        }

    def fuse(
        self,
        model: ReLumixHandle,
        frames: torch.Tensor,
        reference: torch.Tensor,
        reference_index: int,
        size: int,
        fit: str,
        fps_id: int,
        cond_aug: float,
        seed: int,
    ) -> tuple[Any]:
        from relumix_core.pipeline import RelightSettings

        settings = RelightSettings(
            fps_id=fps_id, cond_aug=cond_aug, reference_range=model.reference_range,  # type: ignore[arg-type]
            size=size or None, fit=fit,  # type: ignore[arg-type]
        )
        generator = torch.Generator().manual_seed(seed)
        try:
            conditioning = model.pipeline.encode(frames, reference, reference_index, settings, generator)
        finally:
            model.park()
        return (conditioning,)
