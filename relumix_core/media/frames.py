"""Turn whatever the user passes as frames (tensors, arrays, PIL images, lists) into one validated tensor.

The rest of the library only ever sees float32 ``[T, 3, H, W]`` tensors in ``[0, 1]`` on the CPU, so every
input quirk (layout, dtype, channel count, bad values) is resolved, or refused with a one-line message, here.

Rules:

* Layout. A 4-dim input is a clip: channels-last ``[T, H, W, C]`` (the ComfyUI IMAGE and numpy video
  convention) when its last dim is 1, 2, 3 or 4, else channels-first ``[T, C, H, W]`` when dim 1 is. A 3-dim input
  is one frame, ``[H, W, C]`` or ``[C, H, W]`` by the same rule; a 2-dim input is one grayscale ``[H, W]`` frame.
  A list or tuple holds single frames (or batches of exactly one frame), all of one size.
* Dtype. uint8 is divided by 255 and uint16 by 65535. Other integer dtypes (int8..int64, uint32, uint64) are
  accepted only when their values fit 0..255 (read as 8-bit) or else 0..65535 (read as 16-bit); note that a dark
  16-bit image whose values all happen to be <= 255 is then read as 8-bit: pass uint16 to be explicit. Floats
  (float16/32/64, bfloat16) are taken as 0..1: values up to ``FLOAT_TOLERANCE`` outside are clamped, values
  further out are refused (they usually mean [-1, 1] or 0..255 data). NaN or inf is refused. bool is refused.
* Channels. 1 channel is replicated to RGB; 4 (RGBA) drops alpha, because relighting works on colour and ComfyUI
  carries alpha as a separate MASK; 2 (LA) replicates L and drops alpha.
* PIL. 16-bit modes (``I;16*`` and ``I``) are divided by 65535, ``F`` follows the float rule, every other mode is
  converted to RGB (``P``/``PA`` through RGBA so palette transparency does not warn).

Inputs are never modified in place; the result is always a new tensor.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..errors import ReLumixError

#: How far outside [0, 1] float values may stray (rounding, resampling overshoot) before they are refused.
FLOAT_TOLERANCE = 0.01
#: Channel counts that identify the channel axis.
CHANNEL_COUNTS = (1, 2, 3, 4)

_PIL_16BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_PIL_NATIVE_MODES = ("RGB", "RGBA", "L", "LA", "F")
_INT_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8) + tuple(
    getattr(torch, n) for n in ("uint16", "uint32", "uint64") if hasattr(torch, n)
)
_UINT16 = getattr(torch, "uint16", None)

# A part is (tensor [t, C, H, W] in its own dtype, scale): scale 255 or 65535 for integers, None for floats.
_Part = tuple[torch.Tensor, float | None]


class InputError(ReLumixError):
    """The frames or image given by the user cannot be used; the message says which argument, why and the fix."""


def as_frames(frames: Any, name: str = "frames") -> torch.Tensor:
    """A clip as float32 ``[T, 3, H, W]`` in ``[0, 1]`` on the CPU, from any accepted form (see module doc)."""
    if isinstance(frames, (list, tuple)):
        parts = _list_parts(frames, name)
    else:
        parts = [_to_part(_to_tensor(frames, name), name, allow_batch=True)]
    return _assemble(parts, name)


def as_image(image: Any, name: str = "reference") -> torch.Tensor:
    """One image as float32 ``[3, H, W]`` in ``[0, 1]``; a batch is accepted only if it holds exactly one frame."""
    if isinstance(image, (list, tuple)):
        if len(image) != 1:
            raise InputError(
                f"{name} is a list of {len(image)} images but one image is expected; pick one, e.g. {name}[0]"
            )
        return as_image(image[0], name)
    tensor = _to_tensor(image, name)
    part = _to_part(tensor, name, allow_batch=True)
    if part[0].shape[0] != 1:
        raise InputError(
            f"{name} is a batch of {part[0].shape[0]} frames but one image is expected; pick one frame, "
            f"e.g. {name}[i:i+1] (ComfyUI: ImageFromBatch with length 1)"
        )
    return _assemble([part], name)[0]


def to_numpy_uint8(frames: torch.Tensor) -> np.ndarray:
    """Model output ``[T, 3, H, W]`` (or one ``[3, H, W]`` image) floats in 0..1 as ``[T, H, W, 3]`` uint8.

    Values are clamped to [0, 1] (NaN becomes 0) and rounded, since outputs of the model may overshoot slightly.
    """
    x = _output_tensor(frames)
    t, c, h, w = x.shape
    out = np.empty((t, h, w, c), dtype=np.uint8)
    for start in range(0, t, 16):  # chunks keep the float temporaries small for long clips
        chunk = x[start : start + 16].detach()
        chunk = torch.nan_to_num(chunk.float(), nan=0.0).clamp_(0.0, 1.0).mul_(255.0).round_()
        out[start : start + 16] = chunk.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return out


def to_pil(frames: torch.Tensor) -> list[Image.Image]:
    """Model output ``[T, 3, H, W]`` floats in 0..1 as a list of RGB PIL images (one per frame)."""
    return [Image.fromarray(frame) for frame in to_numpy_uint8(frames)]


def _output_tensor(frames: torch.Tensor) -> torch.Tensor:
    if not isinstance(frames, torch.Tensor):
        raise InputError(f"frames must be a torch tensor [T,3,H,W], got {type(frames).__name__}")
    if frames.dim() == 3:
        frames = frames.unsqueeze(0)
    if frames.dim() != 4 or frames.shape[1] != 3:
        raise InputError(f"frames must be a [T,3,H,W] tensor, got shape {tuple(frames.shape)}")
    if not (frames.is_floating_point()):
        raise InputError(f"frames must be floats in 0..1, got dtype {frames.dtype}")
    return frames


def _list_parts(items: Sequence[Any], name: str) -> list[_Part]:
    if len(items) == 0:
        raise InputError(f"{name} is an empty list; pass at least one frame")
    parts = []
    for i, item in enumerate(items):
        item_name = f"{name}[{i}]"
        if isinstance(item, (list, tuple)):
            raise InputError(
                f"{item_name} is a {type(item).__name__}; a list of frames must hold tensors, arrays or PIL images"
            )
        part = _to_part(_to_tensor(item, item_name), item_name, allow_batch=True)
        if part[0].shape[0] != 1:
            raise InputError(
                f"{item_name} is a batch of {part[0].shape[0]} frames; a list must hold single frames "
                f"(pass the batch itself, or torch.cat the batches)"
            )
        parts.append(part)
    first = tuple(parts[0][0].shape[-2:])
    for i, (tensor, _) in enumerate(parts):
        if tuple(tensor.shape[-2:]) != first:
            raise InputError(
                f"{name}[{i}] is {_hw(tensor.shape[-2:])} but {name}[0] is {_hw(first)}; "
                f"all frames must have one size (resize them first)"
            )
    return parts


def _hw(shape: Sequence[int]) -> str:
    return f"{shape[-1]}x{shape[-2]} (WxH)"


def _to_tensor(x: Any, name: str) -> torch.Tensor | tuple[torch.Tensor, float | None]:
    """A CPU/GPU tensor view of ``x`` in its own dtype; PIL images come with their scale already decided."""
    if isinstance(x, Image.Image):
        return _pil_to_tensor(x, name)
    if isinstance(x, np.ndarray):
        return _numpy_to_tensor(x, name)
    if isinstance(x, torch.Tensor):
        if x.is_sparse or x.layout != torch.strided:
            raise InputError(f"{name} is a sparse tensor; pass a dense one (x.to_dense())")
        if x.device.type == "meta":
            raise InputError(f"{name} is a meta tensor without data; pass a real tensor")
        return x.detach()
    raise InputError(
        f"{name} is a {type(x).__name__}; pass a torch tensor, a numpy array, a PIL image or a list of those"
    )


def _numpy_to_tensor(x: np.ndarray, name: str) -> torch.Tensor:
    if x.dtype.kind not in "biuf" or x.dtype.itemsize > 8:
        raise InputError(f"{name} has numpy dtype {x.dtype}; pass uint8, uint16 or float frames")
    if not x.dtype.isnative:
        x = x.astype(x.dtype.newbyteorder("="))
    if any(s < 0 for s in x.strides):
        x = np.ascontiguousarray(x)
    try:
        with warnings.catch_warnings():  # read-only arrays warn, but they are only ever read here
            warnings.simplefilter("ignore", UserWarning)
            return torch.from_numpy(x)
    except TypeError:  # older torch has no uint16/uint32/uint64
        if x.dtype.kind == "u":
            return torch.from_numpy(x.astype(np.int64) if x.dtype.itemsize <= 4 else x.astype(np.float64))
        raise InputError(f"{name} has numpy dtype {x.dtype}; pass uint8, uint16 or float frames") from None


def _pil_to_tensor(image: Image.Image, name: str) -> tuple[torch.Tensor, float | None]:
    mode = image.mode
    if image.width == 0 or image.height == 0:
        raise InputError(f"{name} is an empty image ({image.width}x{image.height}); pass an image with pixels")
    if mode in _PIL_16BIT_MODES:
        array = np.asarray(image).astype(np.int32)  # native byte order, and room for the 'I' range check
        if mode == "I" and (array.min() < 0 or array.max() > 65535):
            raise InputError(
                f"{name} is a PIL 'I' image with values in [{array.min()}, {array.max()}]; "
                f"expected 16-bit values 0..65535"
            )
        return _layout(torch.from_numpy(array), name, allow_batch=False), 65535.0
    if mode not in _PIL_NATIVE_MODES:
        try:
            if mode in ("P", "PA"):
                image = image.convert("RGBA")
            elif mode == "La":
                image = image.convert("LA")
            else:
                image = image.convert("RGB")
        except (ValueError, OSError) as error:
            raise InputError(f"{name} is a PIL {mode!r} image that cannot be converted to RGB ({error})") from None
    tensor = torch.from_numpy(np.array(image))  # np.array copies: PIL buffers are read-only
    return _layout(tensor, name, allow_batch=False), (None if image.mode == "F" else 255.0)


def _layout(x: torch.Tensor, name: str, allow_batch: bool) -> torch.Tensor:
    """View ``x`` as channels-first ``[t, C, H, W]`` following the layout rules, without copying."""
    shape = tuple(x.shape)
    if x.dim() == 2:
        x = x.unsqueeze(0).unsqueeze(0)
    elif x.dim() == 3:
        if shape[-1] in CHANNEL_COUNTS:
            x = x.permute(2, 0, 1).unsqueeze(0)
        elif shape[0] in CHANNEL_COUNTS:
            x = x.unsqueeze(0)
        else:
            raise InputError(
                f"{name} has shape {shape}: a 3-dim input is one frame, [H,W,C] or [C,H,W] with 1-4 channels; "
                f"for a grayscale clip [T,H,W] add a channel axis (x[..., None])"
            )
    elif x.dim() == 4:
        if not allow_batch:
            raise InputError(f"{name} has shape {shape} but one frame is expected here")
        if shape[-1] in CHANNEL_COUNTS:
            x = x.permute(0, 3, 1, 2)
        elif shape[1] in CHANNEL_COUNTS:
            pass
        else:
            raise InputError(
                f"{name} has shape {shape}: expected [T,H,W,C] (ComfyUI IMAGE) or [T,C,H,W] with 1-4 channels"
            )
    else:
        hint = f"; if it is one clip in a batch, pass {name}[0]" if x.dim() == 5 else ""
        raise InputError(
            f"{name} has {x.dim()} dims (shape {shape}); expected a clip [T,H,W,C] or [T,C,H,W], "
            f"or one frame [H,W,C], [C,H,W] or [H,W]{hint}"
        )
    t, _, h, w = x.shape
    if t == 0:
        raise InputError(f"{name} is empty (0 frames, shape {shape}); pass at least one frame")
    if h == 0 or w == 0:
        raise InputError(f"{name} has zero height or width (shape {shape}); pass frames with pixels")
    return x


def _to_part(source: torch.Tensor | tuple[torch.Tensor, float | None], name: str, allow_batch: bool) -> _Part:
    """Decide the layout and the scale (255, 65535 or None for 0..1 floats) of one tensor."""
    if isinstance(source, tuple):  # PIL: layout and scale already decided
        return source
    x = _layout(source, name, allow_batch)
    dtype = x.dtype
    if dtype == torch.bool:
        raise InputError(f"{name} is a bool tensor (a mask?); pass an image, e.g. {name}.float() for a 0/1 image")
    if x.is_complex():
        raise InputError(f"{name} has complex dtype {dtype}; pass real-valued frames")
    if x.is_floating_point():
        return x, None
    if dtype == torch.uint8:
        return x, 255.0
    if _UINT16 is not None and dtype == _UINT16:
        return x, 65535.0
    if dtype not in _INT_DTYPES:
        raise InputError(f"{name} has dtype {dtype}; pass uint8, uint16 or float frames")
    wide = x if dtype in (torch.int8, torch.int16, torch.int32, torch.int64) else x.to(torch.int64)
    low, high = (int(v) for v in torch.aminmax(wide))
    if low >= 0 and high <= 255:
        return x, 255.0
    if low >= 0 and high <= 65535:
        return x, 65535.0
    raise InputError(
        f"{name} has {dtype} values in [{low}, {high}]; integer frames must be 0..255 (8-bit) or 0..65535 (16-bit): "
        f"convert to uint8/uint16 or to 0..1 floats"
    )


def _assemble(parts: list[_Part], name: str) -> torch.Tensor:
    """Copy the parts into one new float32 ``[T, 3, H, W]`` tensor, then check and clamp it."""
    _check_finite(parts, name)
    total = sum(x.shape[0] for x, _ in parts)
    h, w = parts[0][0].shape[-2:]
    out = torch.empty((total, 3, h, w), dtype=torch.float32)
    start = 0
    for x, scale in parts:
        t, c = x.shape[:2]
        rgb = x[:, :3] if c >= 3 else x[:, :1].expand(-1, 3, -1, -1)
        target = out[start : start + t]
        try:
            target.copy_(rgb)
        except RuntimeError:  # some unsigned dtypes have no direct copy to float on older torch
            target.copy_(rgb.to(torch.int64))
        if scale is not None:
            target.div_(scale)
        start += t
    if any(scale is None for _, scale in parts):
        low, high = (float(v) for v in torch.aminmax(out))
        if low < -FLOAT_TOLERANCE or high > 1.0 + FLOAT_TOLERANCE:
            raise InputError(
                f"{name}: expected 0..1 floats, got range [{low:.4g}, {high:.4g}]; "
                f"if your frames are in [-1,1] use (x+1)/2, if 0..255 divide by 255"
            )
        out.clamp_(0.0, 1.0)
    return out


def _check_finite(parts: list[_Part], name: str) -> None:
    bad = 0
    first: int | None = None
    offset = 0
    for x, scale in parts:
        if scale is None:
            for start in range(0, x.shape[0], 8):  # chunks keep the bool temporaries small
                per_frame = (~torch.isfinite(x[start : start + 8])).flatten(1).sum(1)
                count = int(per_frame.sum())
                if count and first is None:
                    first = offset + start + int(torch.nonzero(per_frame)[0, 0])
                bad += count
        offset += x.shape[0]
    if bad:
        raise InputError(
            f"{name} has {bad} NaN/inf values (first in frame {first}); fix the source or use torch.nan_to_num"
        )
