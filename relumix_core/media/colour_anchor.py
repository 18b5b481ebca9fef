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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from ..errors import ReLumixError

ColourMapKind = Literal["shift", "gain", "affine"]
COLOUR_MAP_KINDS: tuple[str, ...] = ("shift", "gain", "affine")
#: Chosen on the validation split (seed 7000, 40 clips): PSNR off 22.79, shift 23.44, gain 23.40, affine 23.80 dB.
DEFAULT_KIND: ColourMapKind = "affine"
#: The range of the ``gain`` map's per-channel gains.
GAIN_RANGE = (0.5, 2.0)
#: Ridge weight of the ``affine`` map towards the identity, relative to the pixels' colour variance.
AFFINE_RIDGE = 0.1


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
