"""ReferenceReplace: put the relit reference in place of frame k (frame replacement), conformed to the frames.

Several relit keyframes: the ``keyframe_indices`` widget ("0, 120") names one frame per image of the reference batch
(ComfyUI's Batch Images joins two relit branches into one); :func:`keyframes` reads it for this node and EmbeddingFuse.
"""

from __future__ import annotations

import re
from typing import Any

import torch

REFERENCE_FITS = ("auto", "resize", "crop", "pad")
MAX_FRAMES = 100_000
KEYFRAMES_EXAMPLE = '"0, 120"'
KEYFRAME_INDICES_TOOLTIP = (
    f"several relit keyframes: one frame index per image of the reference batch, e.g. {KEYFRAMES_EXAMPLE}; "
    "empty: one reference at reference_index"
)
REFERENCE_INDEX_TOOLTIP = "which frame the reference is a relit version of (not used when keyframe_indices is set)"


def to_comfy_images(frames: torch.Tensor) -> torch.Tensor:
    """[B,C,H,W] (the library's layout) -> ComfyUI's IMAGE: [B,H,W,C] float32 on the CPU."""
    return frames.permute(0, 2, 3, 1).contiguous().float().cpu()


def reference_count(reference: Any) -> int:
    """How many images a reference input holds: the batch of a ComfyUI IMAGE [B,H,W,C], a list's length, else 1."""
    if isinstance(reference, (list, tuple)):
        return len(reference)
    if isinstance(reference, torch.Tensor) and reference.ndim == 4:
        return int(reference.shape[0])
    return 1


def parse_keyframe_indices(text: str) -> list[int] | None:
    """The keyframe_indices widget as frame indices, in the order written; None when it is empty.

    Indices are whole numbers from 0, separated by commas (or spaces); a trailing comma is fine. A word, a fraction,
    a negative number or a frame named twice is refused with a ReLumixError that says how to write it.
    """
    from relumix_core.errors import ReLumixError

    tokens = [t for t in re.split(r"[,;\s]+", (text or "").strip()) if t]
    if not tokens:
        return None
    indices: list[int] = []
    for token in tokens:
        if re.fullmatch(r"-\d+", token):
            raise ReLumixError(
                f"keyframe_indices: {token} is negative; frames count from 0 (the first frame is 0, the last is the "
                "frame count - 1)"
            )
        if not re.fullmatch(r"\+?\d+", token):
            raise ReLumixError(
                f"keyframe_indices: {token!r} is not a frame index; write whole frame numbers separated by commas, "
                f"one per reference image, e.g. {KEYFRAMES_EXAMPLE}"
            )
        index = int(token)
        if index in indices:
            raise ReLumixError(f"keyframe_indices names frame {index} twice; each relit keyframe needs its own frame")
        indices.append(index)
    return indices


def keyframes(keyframe_indices: str, reference: Any) -> list[int] | None:
    """The keyframes' frame indices, one per image of ``reference``, or None for one reference at reference_index.

    The count must equal the reference batch's size; a batch of several images without indices is refused too.
    """
    from relumix_core.errors import ReLumixError

    indices = parse_keyframe_indices(keyframe_indices)
    images = reference_count(reference)
    if indices is None:
        if images > 1:
            raise ReLumixError(
                f"reference is a batch of {images} images but keyframe_indices is empty: set keyframe_indices to one "
                f"frame index per image (e.g. {KEYFRAMES_EXAMPLE}), or pass one image (ImageFromBatch, length 1)"
            )
        return None
    if len(indices) != images:
        listed = ", ".join(map(str, indices))
        raise ReLumixError(
            f"keyframe_indices lists {len(indices)} frame{'s' * (len(indices) != 1)} ({listed}) but the reference "
            f"batch holds {images} image{'s' * (images != 1)}: give one frame index per image, in batch order"
        )
    return indices


def check_keyframes_inside(indices: list[int], count: int) -> None:
    """Refuse, naming the widget, a keyframe outside a clip of ``count`` frames."""
    from relumix_core.errors import ReLumixError

    outside = [i for i in indices if i >= count]
    if outside:
        raise ReLumixError(
            f"keyframe_indices: frame {outside[0]} is outside the {count} frames of the video (use 0..{count - 1})"
        )


def format_keyframe_indices(indices: list[int] | None) -> str:
    """The widget's text for ``indices``: "0, 120"; empty for one reference."""
    return ", ".join(map(str, indices or []))


class ReferenceReplace:
    """The relit frame replaces frame ``reference_index``; its size is conformed to the video's. With
    ``keyframe_indices`` each image of the reference batch replaces its own frame."""

    CATEGORY = "ReLumix"
    RETURN_TYPES = ("IMAGE", "IMAGE", "INT", "STRING")
    RETURN_NAMES = ("frames", "reference", "reference_index", "keyframe_indices")
    FUNCTION = "replace"
    DESCRIPTION = (
        "Frame replacement: the relit reference takes the place of frame reference_index. A reference of another "
        "size is resized (auto: only when its aspect is within 5% of the video's), cropped or padded. Several relit "
        "keyframes: batch them (Batch Images) and list their frames in keyframe_indices; each takes its frame's "
        "place, and keyframe_indices goes on to Embedding Fuse."
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "frames": ("IMAGE", {"tooltip": "the source video frames"}),
                "reference": ("IMAGE", {"tooltip": "the relit version of frame reference_index (one image), or with "
                                                   "keyframe_indices a batch of relit keyframes"}),
                "reference_index": ("INT", {"default": 0, "min": 0, "max": MAX_FRAMES,
                                            "tooltip": REFERENCE_INDEX_TOOLTIP}),
                "fit": (REFERENCE_FITS, {"default": "auto"}),
            },
            "optional": {
                "keyframe_indices": ("STRING", {"default": "", "tooltip": KEYFRAME_INDICES_TOOLTIP}),
            },
        }

    def replace(
        self, frames: torch.Tensor, reference: torch.Tensor, reference_index: int, fit: str,
        keyframe_indices: str = "",
    ) -> tuple[torch.Tensor, torch.Tensor, int, str]:
        from relumix_core.errors import ReLumixError
        from relumix_core.media.frames import as_frames, as_image
        from relumix_core.media.resolution import conform_reference

        indices = keyframes(keyframe_indices, reference)
        video = as_frames(frames, "frames")
        count, _, height, width = video.shape
        if indices is None:
            if not 0 <= reference_index < count:
                raise ReLumixError(
                    f"reference_index {reference_index} is outside the {count} frames of the video (use "
                    f"0..{count - 1})"
                )
            ref = conform_reference(as_image(reference, "reference"), height, width, fit=fit)
            video[reference_index] = ref
            return to_comfy_images(video), to_comfy_images(ref[None]), reference_index, ""
        check_keyframes_inside(indices, count)
        refs = torch.stack([conform_reference(image, height, width, fit=fit)
                            for image in as_frames(reference, "reference")])
        for index, image in zip(indices, refs, strict=True):
            video[index] = image
        return to_comfy_images(video), to_comfy_images(refs), indices[0], format_keyframe_indices(indices)
