"""Colour anchor: pin the output's colour to the reference at the reference frame, for every frame.

A small model's first-stage VAE can shift a clip's colour as a whole (relumix-tiny nearly erases the green-magenta
axis, so each clip's output at its reference frame is off by several levels, differently per clip). The reference
frame's output should *be* the reference, so the map that brings the one onto the other, fitted there, is a per-clip
estimate of that shift, and applying it to every frame removes it. It is a global colour map: it cannot restore
chroma the model lost per pixel, and it is a post-process (like detail transfer), so evaluations report the model
with it and without it.

Three maps, each ``out = matrix @ rgb + offset``, from the least to the most freedom:

* ``shift``: per-channel mean shift (removes an offset);
* ``gain``: per-channel mean and std (gain/offset), gain clamped to [0.5, 2] so a flat frame cannot blow it up;
* ``affine``: a 3x3 matrix + offset by least squares, regularised towards the identity (can mix channels, and so
  undo a cast that moved colour between axes, at the risk of fitting the reference frame's content).

The default is the one chosen on the validation split (docs and the step 4 report of issue 20 give the numbers).

After the global map, a *local gain* pins what a global map cannot: the smooth, per-pixel part of the error at a
keyframe (chroma a small VAE lost there, a highlight it dimmed). It is the ratio of the reference to the output at
the keyframe, both blurred by :data:`LOCAL_SIGMA` processing pixels, and it fades with the distance to that keyframe
as ``gain ** exp(-distance / LOCAL_FADE)``: next to the keyframe the output meets the reference, further away, where
the camera or objects have moved, the model's own picture takes over. Each frame takes the gain of its nearest
keyframe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from ..errors import ReLumixError
from .blur import gaussian_blur

ColourMapKind = Literal["shift", "gain", "affine"]
COLOUR_MAP_KINDS: tuple[str, ...] = ("shift", "gain", "affine")
#: Chosen on the validation split (seed 7000, 40 clips): PSNR off 22.79, shift 23.44, gain 23.40, affine 23.80 dB.
DEFAULT_KIND: ColourMapKind = "affine"
#: The range of the ``gain`` map's per-channel gains.
GAIN_RANGE = (0.5, 2.0)
#: Ridge weight of the ``affine`` map towards the identity, relative to the pixels' colour variance.
AFFINE_RIDGE = 0.1
#: The local gain's blur radius (processing pixels) and fade (frames), chosen on the validation split (seed 7000):
#: 8-frame clips, PSNR/SSIM 23.80/0.7645 with the global map alone, 24.55/0.7760 with radius 1 and fade 8 (radius 2:
#: 24.49/0.7747; fade 4: 24.42, 16: 24.57 but lower SSIM); 64-frame clips 18.62 -> 18.77 dB.
LOCAL_SIGMA = 1.0
LOCAL_FADE = 8.0
#: Added to both sides of the local ratio (as in the detail transfer) and the range of its gains.
LOCAL_EPS = 0.02
LOCAL_GAIN_RANGE = (0.5, 2.0)


@dataclass
class ColourMap:
    """``out = matrix @ rgb + offset`` per pixel."""

    matrix: torch.Tensor  # [3, 3]
    offset: torch.Tensor  # [3]


def _pixels(image: torch.Tensor, name: str) -> torch.Tensor:
    """[P, 3] pixels of one image [3,H,W] or of a stack [N,3,H,W] (image by image, each in raster order)."""
    if image.dim() == 3:
        image = image[None]
    if image.dim() != 4 or image.shape[1] != 3:
        raise ReLumixError(f"colour anchor needs a [3,H,W] {name} (or a stack [N,3,H,W]), got {tuple(image.shape)}")
    return image.detach().double().transpose(0, 1).flatten(1).T  # [N*H*W, 3]


def fit_colour_map(output_ref: torch.Tensor, reference: torch.Tensor, kind: ColourMapKind = DEFAULT_KIND) -> ColourMap:
    """The map that brings ``output_ref`` (the output at the reference frame, [3,H,W]) onto ``reference`` (same
    shape), of the given ``kind``. With several keyframes both are stacks [N,3,H,W] of the output at each keyframe
    and its reference: one map fitted on all their pixels together."""
    x, y = _pixels(output_ref, "output frame"), _pixels(reference, "reference")
    if x.shape != y.shape:
        raise ReLumixError(f"colour anchor needs frames of one size, got {tuple(output_ref.shape)} and "
                           f"{tuple(reference.shape)}")
    mx, my = x.mean(0), y.mean(0)
    eye = torch.eye(3, dtype=torch.float64)
    if kind == "shift":
        matrix = eye
    elif kind == "gain":
        gain = (y.std(0, correction=0) / x.std(0, correction=0).clamp_min(1e-6)).clamp(*GAIN_RANGE)
        matrix = torch.diag(gain)
    elif kind == "affine":
        xc, yc = x - mx, y - my
        ridge = AFFINE_RIDGE * x.shape[0] * max(float(xc.var(0, correction=0).mean()), 1e-6) * eye
        matrix = torch.linalg.solve(xc.T @ xc + ridge, xc.T @ yc + ridge).T  # min |xc M^T - yc|^2 + r|M - I|^2
    else:
        raise ReLumixError(f"colour map kind must be one of {COLOUR_MAP_KINDS}, got {kind!r}")
    return ColourMap(matrix.float(), (my - matrix @ mx).float())


def apply_colour_map(frames: torch.Tensor, colour_map: ColourMap) -> torch.Tensor:
    """``frames`` [T,3,H,W] in [0,1] through the map, clamped to [0,1], in their own dtype."""
    if frames.dim() != 4 or frames.shape[1] != 3:
        raise ReLumixError(f"colour anchor needs [T,3,H,W] frames, got {tuple(frames.shape)}")
    m = colour_map.matrix.to(frames.device, torch.float32)
    b = colour_map.offset.to(frames.device, torch.float32)
    out = torch.einsum("ij,tjhw->tihw", m, frames.float()) + b[None, :, None, None]
    return out.clamp(0, 1).to(frames.dtype)


def local_gains(output_keys: torch.Tensor, references: torch.Tensor, sigma: float = LOCAL_SIGMA) -> torch.Tensor:
    """Per-pixel gains [N,3,H,W] that bring the blurred output at each keyframe ([N,3,H,W]) onto its blurred
    reference (same shape)."""
    if output_keys.dim() != 4 or output_keys.shape != references.shape:
        raise ReLumixError(f"local gain needs outputs and references of one shape [N,3,H,W], got "
                           f"{tuple(output_keys.shape)} and {tuple(references.shape)}")
    out, ref = output_keys.float(), references.to(output_keys.device, torch.float32)
    ratio = (gaussian_blur(ref, sigma) + LOCAL_EPS) / (gaussian_blur(out, sigma) + LOCAL_EPS)
    return ratio.clamp(*LOCAL_GAIN_RANGE)


def apply_local_gains(frames: torch.Tensor, keys: list[int], gains: torch.Tensor, fade: float = LOCAL_FADE
                      ) -> torch.Tensor:
    """``frames`` [T,3,H,W] times the gain of each frame's nearest keyframe (``keys``, sorted; ``gains`` [N,3,H,W]),
    raised to ``exp(-distance / fade)``; clamped to [0,1], in the frames' own dtype."""
    if len(keys) != gains.shape[0]:
        raise ReLumixError(f"{gains.shape[0]} local gains for {len(keys)} keyframes")
    key_index = torch.tensor(keys, dtype=torch.float32)
    time = torch.arange(frames.shape[0], dtype=torch.float32)
    distance, nearest = (time[:, None] - key_index[None]).abs().min(dim=1)  # ties: the earlier keyframe
    power = torch.exp(-distance / fade).to(frames.device)
    out = frames.float() * gains.to(frames.device)[nearest] ** power[:, None, None, None]
    return out.clamp(0, 1).to(frames.dtype)


def anchor_colours(frames: torch.Tensor, keys: list[int], references: torch.Tensor, sigma: float = LOCAL_SIGMA
                   ) -> torch.Tensor:
    """The whole colour anchor: the global map fitted on every keyframe, then the fading local gains.
    ``references`` [N,3,H,W] belong to the sorted frame indices ``keys``; ``sigma`` is the local radius in the
    frames' pixels."""
    frames = apply_colour_map(frames, fit_colour_map(frames[keys], references))
    return apply_local_gains(frames, keys, local_gains(frames[keys], references, sigma))
