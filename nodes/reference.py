"""ReferenceReplace: put the relit reference in place of frame k (frame replacement), conformed to the frames."""

from __future__ import annotations

from typing import Any

import torch

REFERENCE_FITS = ("auto", "resize", "crop", "pad")
MAX_FRAMES = 100_000


def to_comfy_images(frames: torch.Tensor) -> torch.Tensor:
    """[B,C,H,W] (the library's layout) -> ComfyUI's IMAGE: [B,H,W,C] float32 on the CPU."""
    return frames.permute(0, 2, 3, 1).contiguous().float().cpu()


class ReferenceReplace:
    """The relit frame replaces frame ``reference_index``; its size is conformed to the video's."""

    CATEGORY = "ReLumix"
    RETURN_TYPES = ("IMAGE", "IMAGE", "INT")
    RETURN_NAMES = ("frames", "reference", "reference_index")
    FUNCTION = "replace"
    DESCRIPTION = (
        "Frame replacement: the relit reference takes the place of frame reference_index. A reference of another "
        "size is resized (auto: only when its aspect is within 5% of the video's), cropped or padded."
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "frames": ("IMAGE", {"tooltip": "the source video frames"}),
                "reference": ("IMAGE", {"tooltip": "the relit version of frame reference_index (one image)"}),
                "reference_index": ("INT", {"default": 0, "min": 0, "max": MAX_FRAMES,
                                            "tooltip": "which frame the reference is a relit version of"}),
                "fit": (REFERENCE_FITS, {"default": "auto"}),
            }
        }

    def replace(
        self, frames: torch.Tensor, reference: torch.Tensor, reference_index: int, fit: str
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        from relumix_core.errors import ReLumixError
        from relumix_core.media.frames import as_frames, as_image
        from relumix_core.media.resolution import conform_reference

        video = as_frames(frames, "frames")
        count, _, height, width = video.shape
        if not 0 <= reference_index < count:
            raise ReLumixError(
                f"reference_index {reference_index} is outside the {count} frames of the video (use 0..{count - 1})"
            )
        ref = conform_reference(as_image(reference, "reference"), height, width, fit=fit)
        video[reference_index] = ref
        return to_comfy_images(video), to_comfy_images(ref[None]), reference_index
