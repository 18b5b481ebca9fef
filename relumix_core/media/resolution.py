"""Bring frames of any size and aspect to a size the model can process, and back.

The model needs sides that are multiples of 64 and was trained at 512x512, so a clip is processed at about
512*512 pixels with the aspect ratio closest to its own (``processing_size``). A ``Framing`` records how input
frames map to that size (stretch, crop or pad) so the relit result can be mapped back (``from_model``).

Resampling is bilinear with antialiasing (``align_corners=False``); when the sizes already match nothing is
resampled at all, so e.g. a 512x512 clip processed at 512x512 passes through bit-exactly.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Literal, get_args

import torch
import torch.nn.functional as F

from .frames import InputError

FitMode = Literal["resize", "crop", "pad"]
FIT_MODES: tuple[str, ...] = get_args(FitMode)
ReferenceFit = Literal["auto", "resize", "crop", "pad"]

#: processing_size keeps the area within this factor of size*size (both ways) when it can.
AREA_SLACK = 1.15
#: Frames resampled per interpolate call, to keep temporaries small for long clips.
CHUNK_FRAMES = 16


def processing_size(height: int, width: int, size: int | tuple[int, int] = 512, multiple: int = 64) -> tuple[int, int]:
    """The (H, W) to process a ``height`` x ``width`` clip at: multiples of ``multiple``, about ``size**2`` pixels.

    Rule: among all (h, w) that are positive multiples of ``multiple`` with area in
    ``[size**2 / AREA_SLACK, size**2 * AREA_SLACK]``, pick the smallest aspect error ``|log((w/h) / (W/H))|``;
    ties go to the larger area, then to the smaller h. The log makes the rule symmetric, so a portrait clip gets
    the transpose of the landscape answer. If no candidate falls in the area band (only for tiny ``size``), the
    area closest to ``size**2`` (in log) wins, then the aspect error. Examples: 512x512 -> 512x512,
    480x640 -> 448x576, 1080x1920 -> 384x704. Inputs smaller than ``size`` are upscaled (the model's native
    scale matters more than the input's). ``size`` may also be an explicit (H, W) of multiples of ``multiple``.
    """
    height, width = _check_side("height", height), _check_side("width", width)
    multiple = _check_side("multiple", multiple)
    if isinstance(size, (tuple, list)):
        return _explicit_size(size, multiple)
    size = _check_side("size", size)
    if size < multiple:
        raise InputError(f"size {size} is smaller than the multiple {multiple}; use a size of at least {multiple}")
    target = size * size
    aspect = math.log(width / height)
    low, high = target / AREA_SLACK, target * AREA_SLACK
    best: tuple[float, ...] | None = None
    best_hw = (0, 0)
    fallback: tuple[float, ...] | None = None
    fallback_hw = (0, 0)
    max_side = (int(high / multiple) // multiple + 1) * multiple  # the other side is at least `multiple`
    for h in range(multiple, max_side + 1, multiple):
        # Widths whose area lies in the band, plus the neighbours just outside it for the fallback.
        w_low = max(multiple, (math.ceil(low / h) // multiple) * multiple)
        w_high = (math.floor(high / h) // multiple + 1) * multiple
        for w in range(w_low, w_high + 1, multiple):
            area = h * w
            error = round(abs(math.log(w / h) - aspect), 12)
            if low <= area <= high:
                key = (error, -area, h)
                if best is None or key < best:
                    best, best_hw = key, (h, w)
            else:
                key = (round(abs(math.log(area / target)), 12), error, -area, h)
                if fallback is None or key < fallback:
                    fallback, fallback_hw = key, (h, w)
    return best_hw if best is not None else fallback_hw


@dataclass(frozen=True)
class Framing:
    """How input frames map to the processing size, and back.

    * ``resize``: stretch to ``size``; ``from_model`` stretches back to the input size.
    * ``pad``: scale to fit inside ``size`` keeping aspect (``content_size``), pad symmetrically by edge
      replication (``pad`` = top, bottom, left, right); ``from_model`` removes the pad and scales back.
    * ``crop``: the centered ``crop_box`` (top, left, height, width, in input pixels) with the processing aspect
      is scaled to ``size``; ``from_model`` scales back to the crop box's size, so the output is the cropped
      region of the input (``output_size``): the cropped-away borders were never relit.
    """

    input_size: tuple[int, int]
    size: tuple[int, int]
    fit: FitMode
    crop_box: tuple[int, int, int, int] | None = None
    pad: tuple[int, int, int, int] | None = None

    @property
    def output_size(self) -> tuple[int, int]:
        """(H, W) of what ``from_model`` returns: the crop box for ``crop``, else the input size."""
        if self.fit == "crop" and self.crop_box is not None:
            return self.crop_box[2], self.crop_box[3]
        return self.input_size

    @property
    def content_size(self) -> tuple[int, int]:
        """(H, W) of the input's pixels inside the processing frame (smaller than ``size`` only for ``pad``)."""
        if self.pad is None:
            return self.size
        top, bottom, left, right = self.pad
        return self.size[0] - top - bottom, self.size[1] - left - right

    def to_model(self, frames: torch.Tensor) -> torch.Tensor:
        """Input frames ``[T, C, H, W]`` (or one ``[C, H, W]`` image) to the processing size ``[..., h, w]``.

        Returns ``frames`` itself when nothing needs to change; never modifies it in place.
        """
        x, squeeze = _as_batch(frames, self.input_size, "frames", "this framing's input")
        if self.fit == "crop" and self.crop_box is not None:
            top, left, h, w = self.crop_box
            if (h, w) != tuple(x.shape[-2:]):
                x = x[..., top : top + h, left : left + w]
            x = _resize(x, self.size)
        elif self.fit == "pad" and self.pad is not None:
            x = _resize(x, self.content_size)
            top, bottom, left, right = self.pad
            if top or bottom or left or right:
                x = _replicate_pad(x, (left, right, top, bottom))
        else:
            x = _resize(x, self.size)
        return x[0] if squeeze else x

    def output_region(self, frames: torch.Tensor) -> torch.Tensor:
        """The part of input frames ``[..., H, W]`` that ``from_model``'s output covers (the crop box for ``crop``,
        else all of it), as a view: what the output should be compared or combined with, pixel for pixel."""
        if tuple(frames.shape[-2:]) != self.input_size:
            raise InputError(f"frames of {tuple(frames.shape[-2:])} do not match this framing's input "
                               f"{self.input_size}")
        if self.fit == "crop" and self.crop_box is not None:
            top, left, h, w = self.crop_box
            return frames[..., top : top + h, left : left + w]
        return frames

    def from_model(self, frames: torch.Tensor) -> torch.Tensor:
        """Processed frames ``[T, C, h, w]`` (or ``[C, h, w]``) back to ``output_size``."""
        x, squeeze = _as_batch(frames, self.size, "processed frames", "this framing's processing size")
        if self.fit == "pad" and self.pad is not None:
            top, _, left, _ = self.pad
            h, w = self.content_size
            x = x[..., top : top + h, left : left + w]
        x = _resize(x, self.output_size)
        return x[0] if squeeze else x


def make_framing(
    height: int, width: int, size: int | tuple[int, int] = 512, fit: FitMode = "resize", multiple: int = 64
) -> Framing:
    """The Framing for ``height`` x ``width`` frames processed at ``processing_size(height, width, size, multiple)``."""
    _check_fit(fit, FIT_MODES, "fit")
    return _framing((height, width), processing_size(height, width, size, multiple), fit)


def conform_reference(
    reference: torch.Tensor,
    height: int,
    width: int,
    fit: ReferenceFit = "auto",
    max_aspect_change: float = 0.05,
) -> torch.Tensor:
    """The relit reference ``[3, H, W]`` brought to the video's frame size ``[3, height, width]``.

    ``auto`` stretches it when the aspects differ by at most ``max_aspect_change`` (relative, measured as
    ``max(a/b, b/a) - 1``) and refuses otherwise, because stretching a differently shaped relit image would put its
    light in the wrong places. ``resize``, ``crop`` (cover + center crop) and ``pad`` (fit + replicate pad) always
    conform with that mode. A reference that already has the size is returned unchanged (the same tensor).
    """
    _check_fit(fit, ("auto", *FIT_MODES), "reference fit")
    height, width = _check_side("height", height), _check_side("width", width)
    if not isinstance(reference, torch.Tensor) or reference.dim() != 3:
        shape = tuple(reference.shape) if isinstance(reference, torch.Tensor) else type(reference).__name__
        raise InputError(f"reference must be a [3,H,W] tensor, got {shape}")
    ref_h, ref_w = reference.shape[-2:]
    if (ref_h, ref_w) == (height, width):
        return reference
    if fit == "auto":
        ref_aspect, video_aspect = ref_w / ref_h, width / height
        change = max(ref_aspect / video_aspect, video_aspect / ref_aspect) - 1.0
        if change > max_aspect_change:
            raise InputError(
                f"reference is {ref_w}x{ref_h} (aspect {ref_aspect:.2f}) but the video frames are {width}x{height} "
                f"(aspect {video_aspect:.2f}); relight a frame of the video itself, or choose reference fit "
                f"'crop' or 'pad'"
            )
        fit = "resize"
    return _framing((ref_h, ref_w), (height, width), fit).to_model(reference)


def _framing(input_size: tuple[int, int], size: tuple[int, int], fit: str) -> Framing:
    in_h, in_w = input_size
    h, w = size
    if fit == "crop":
        if in_w * h > w * in_h:  # input is wider than the target: keep full height
            crop_h, crop_w = in_h, min(in_w, max(1, round(in_h * w / h)))
        else:
            crop_h, crop_w = min(in_h, max(1, round(in_w * h / w))), in_w
        box = ((in_h - crop_h) // 2, (in_w - crop_w) // 2, crop_h, crop_w)
        return Framing(input_size, size, "crop", crop_box=box)
    if fit == "pad":
        if in_w * h > w * in_h:  # input is wider than the target: fill the width
            content_h, content_w = min(h, max(1, round(in_h * w / in_w))), w
        else:
            content_h, content_w = h, min(w, max(1, round(in_w * h / in_h)))
        top, left = (h - content_h) // 2, (w - content_w) // 2
        pad = (top, h - content_h - top, left, w - content_w - left)
        return Framing(input_size, size, "pad", pad=pad)
    return Framing(input_size, size, "resize")


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear antialiased resize of ``[T, C, H, W]``; the input itself when the size already matches."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    compute = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    out = torch.empty((*x.shape[:2], *size), dtype=x.dtype, device=x.device)
    for start in range(0, x.shape[0], CHUNK_FRAMES):
        chunk = x[start : start + CHUNK_FRAMES].to(compute)
        resized = F.interpolate(chunk, size=size, mode="bilinear", align_corners=False, antialias=True)
        out[start : start + CHUNK_FRAMES] = resized
    return out


def _replicate_pad(x: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
    if x.dtype in (torch.float32, torch.float64):
        return F.pad(x, pad, mode="replicate")
    return F.pad(x.float(), pad, mode="replicate").to(x.dtype)


def _as_batch(frames: torch.Tensor, expected: tuple[int, int], what: str, against: str) -> tuple[torch.Tensor, bool]:
    if not isinstance(frames, torch.Tensor) or frames.dim() not in (3, 4):
        shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise InputError(f"{what} must be a [T,C,H,W] or [C,H,W] tensor, got {shape}")
    if not frames.is_floating_point():
        raise InputError(f"{what} must be a float tensor, got dtype {frames.dtype}"
                         "; use relumix_core.media.frames.as_frames")
    h, w = frames.shape[-2:]
    if (h, w) != tuple(expected):
        raise InputError(f"{what} are {w}x{h} (WxH) but {against} is {expected[1]}x{expected[0]}")
    squeeze = frames.dim() == 3
    return (frames.unsqueeze(0) if squeeze else frames), squeeze


def _check_side(name: str, value: object) -> int:
    """``value`` as a positive int (numpy and torch integers are accepted), else InputError."""
    try:
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        number = None
    if isinstance(value, bool) or number is None or number <= 0:
        raise InputError(f"{name} must be a positive integer, got {value!r}")
    return number


def _check_fit(fit: object, allowed: tuple[str, ...], name: str) -> None:
    if fit not in allowed:
        raise InputError(f"{name} {fit!r} is not one of {', '.join(allowed)}")


def _explicit_size(size: tuple[int, int] | list[int], multiple: int) -> tuple[int, int]:
    if len(size) != 2:
        raise InputError(f"size {tuple(size)} must be an int or an (H, W) pair")
    valid = all(not isinstance(v, bool) and isinstance(v, int) and v > 0 and v % multiple == 0 for v in size)
    if not valid:
        # Nearest multiple, at least one multiple; non-numbers fall back to one multiple.
        nearest = tuple(
            max(multiple, round(v / multiple) * multiple) if isinstance(v, (int, float)) else multiple for v in size
        )
        raise InputError(
            f"size {tuple(size)} must be positive multiples of {multiple} as (H, W); nearest valid: {nearest}"
        )
    return int(size[0]), int(size[1])
