"""Keyframes: the relit references of a run and the frames they are relit versions of, checked and paired.

One reference (``reference`` one image, ``reference_index`` an int) is the common case and runs exactly as before
keyframes existed. Several (``reference_index`` a list or tuple of N frame numbers, ``reference`` a list or tuple of
N images or one batch of N, [N,H,W,3] or [N,3,H,W]) are paired in order and sorted by frame; each then propagates
its light both ways (:func:`~relumix_core.pipeline.conditioning.split_keyframe_runs`).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import ReLumixError
from ..media.frames import as_frames, as_image


@dataclass
class Keyframes:
    """Keyframes in time order: frame numbers and their references ([3,H,W] in [0,1], not yet conformed)."""

    indices: tuple[int, ...]
    images: list[torch.Tensor]


def as_keyframes(reference: Any, reference_index: Any, num_frames: int) -> Keyframes:
    """The keyframes of ``reference`` / ``reference_index`` for a clip of ``num_frames``; bad input gets one line
    naming what is wrong and the fix. Indices are checked before any image is converted."""
    if isinstance(reference_index, (list, tuple)):
        indices = _index_list(reference_index, num_frames)
        images = _reference_list(reference, len(indices))
        pairs = sorted(zip(indices, images, strict=True), key=lambda pair: pair[0])
        return Keyframes(tuple(k for k, _ in pairs), [image for _, image in pairs])
    k = _frame_number(reference_index, "reference_index", num_frames)
    if isinstance(reference, (list, tuple)) and len(reference) != 1:
        raise ReLumixError(
            f"reference is a list of {len(reference)} images but reference_index is one frame ({k}); pass "
            f"reference_index as a list of {len(reference)} frames, one per image (paired in order)"
        )
    return Keyframes((k,), [as_image(reference, "reference")])


def _frame_number(value: Any, name: str, num_frames: int) -> int:
    """``value`` as a frame of the clip (any integer type, not bool)."""
    try:
        if isinstance(value, bool):
            raise TypeError
        k = operator.index(value)
    except TypeError:
        raise ReLumixError(f"{name} must be a whole frame number (or a list of them), got {value!r}") from None
    if not 0 <= k < num_frames:
        raise ReLumixError(f"{name} {k} is outside the clip of {num_frames} frames (use 0..{num_frames - 1})")
    return k


def _index_list(values: list[Any] | tuple[Any, ...], num_frames: int) -> list[int]:
    """A list of distinct frames of the clip, in the caller's order."""
    if not values:
        raise ReLumixError("reference_index is an empty list; give at least one frame number, e.g. [0]")
    indices = [_frame_number(v, f"reference_index[{i}]", num_frames) for i, v in enumerate(values)]
    seen: set[int] = set()
    for k in indices:
        if k in seen:
            raise ReLumixError(f"reference_index names frame {k} twice; give each keyframe once, with one reference")
        seen.add(k)
    return indices


def _reference_list(reference: Any, count: int) -> list[torch.Tensor]:
    """``count`` images [3,H,W] from a list/tuple of images (each may have its own size) or one batch."""
    if isinstance(reference, (list, tuple)):
        _check_count(len(reference), count)
        return [as_image(item, f"reference[{i}]") for i, item in enumerate(reference)]
    batch = as_frames(reference, "reference")
    _check_count(batch.shape[0], count)
    return list(batch.unbind(0))


def _check_count(found: int, count: int) -> None:
    if found != count:
        raise ReLumixError(
            f"{found} reference image{'' if found == 1 else 's'} for {count} reference indices; pass one image per "
            "index (they are paired in order)"
        )
