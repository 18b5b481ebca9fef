"""Keyframes of an evaluation clip: which ground-truth frames are given as references, and how far every frame is
from the nearest one.

Error grows with the distance to the nearest reference (the light has to be carried further), so the report groups
frames by that distance (``by_distance``) and the baselines take each frame's result from its nearest keyframe.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..errors import ReLumixError


def keyframe_indices(num_frames: int, count: int) -> list[int]:
    """``count`` evenly spaced frames of a clip of ``num_frames``: ``[0]`` for one, otherwise the first and the last
    frame and evenly spaced ones between (positions ``i * (T - 1) / (count - 1)`` rounded half up)."""
    if count < 1:
        raise ReLumixError(f"keyframes must be at least 1, got {count}")
    if count > num_frames:
        raise ReLumixError(f"{count} keyframes need clips of at least {count} frames, got {num_frames}; "
                           "pass fewer keyframes or more frames")
    if count == 1:
        return [0]
    return [math.floor(i * (num_frames - 1) / (count - 1) + 0.5) for i in range(count)]


def check_keyframes(num_frames: int, indices: Sequence[int]) -> list[int]:
    """``indices`` as a list, checked: at least one, strictly ascending, inside the clip."""
    out = [int(k) for k in indices]
    if not out:
        raise ReLumixError("at least one keyframe (reference index) is needed")
    if any(b <= a for a, b in zip(out, out[1:], strict=False)):
        raise ReLumixError(f"keyframe indices must be strictly ascending, got {out}")
    if out[0] < 0 or out[-1] >= num_frames:
        raise ReLumixError(f"keyframe indices {out} are outside the clip of {num_frames} frames")
    return out


def nearest_keyframe(num_frames: int, indices: Sequence[int]) -> list[int]:
    """For every frame, the position (in ``indices``) of its nearest keyframe; a tie goes to the earlier one."""
    keys = check_keyframes(num_frames, indices)
    return [min(range(len(keys)), key=lambda j: (abs(t - keys[j]), j)) for t in range(num_frames)]


def keyframe_distances(num_frames: int, indices: Sequence[int]) -> list[int]:
    """For every frame, its distance in frames to the nearest keyframe (0 at the keyframes)."""
    keys = check_keyframes(num_frames, indices)
    return [min(abs(t - k) for k in keys) for t in range(num_frames)]


def keyframe_segments(num_frames: int, indices: Sequence[int]) -> list[tuple[int, int]]:
    """Per keyframe, the frame range ``[start, stop)`` whose nearest keyframe it is (contiguous, in order)."""
    owner = nearest_keyframe(num_frames, indices)
    segments = []
    for j in range(len(indices)):
        frames = [t for t, o in enumerate(owner) if o == j]
        segments.append((frames[0], frames[-1] + 1))
    return segments


__all__ = ["check_keyframes", "keyframe_distances", "keyframe_indices", "keyframe_segments", "nearest_keyframe"]
