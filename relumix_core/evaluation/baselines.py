"""Simple relighting baselines that every learned model should beat.

Each is a pure function ``(source [T,3,H,W], reference [3,H,W], reference_index k) -> [T,3,H,W]``, all in
``[0, 1]``, where ``reference`` is the relit version of ``source[k]``. They bracket what the model must do:
leave the light alone (``input_unchanged``), freeze the relit frame (``reference_repeated``: perfect light, no
motion), move the global colour cast (``colour_transfer``), or carry the per-pixel light change of frame k along
unchanged (``ratio_propagation``: right at frame k, wrong wherever things move).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ..errors import ReLumixError
from .keyframes import check_keyframes, keyframe_segments

Baseline = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]
#: ``(source [T,3,H,W], references [N,3,H,W], reference_indices) -> [T,3,H,W]``: a baseline given N keyframes.
KeyframeBaseline = Callable[[torch.Tensor, torch.Tensor, Sequence[int]], torch.Tensor]

#: Offset added before dividing in :func:`ratio_propagation`, so black source pixels still get some light.
RATIO_EPS = 0.01
#: Largest per-pixel (ratio) or per-channel (colour transfer) gain, so near-black or flat source frames cannot
#: blow small differences up into noise.
MAX_GAIN = 8.0

# sRGB (D65) <-> CIE XYZ, and the D65 white point: the standard constants of the sRGB specification.
_RGB_TO_XYZ = torch.tensor(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]],
    dtype=torch.float64,
)
_WHITE = torch.tensor([0.95047, 1.0, 1.08883], dtype=torch.float64)
_LAB_DELTA = 6.0 / 29.0


def _check(source: torch.Tensor, reference: torch.Tensor, reference_index: int) -> None:
    if source.dim() != 4 or source.shape[1] != 3:
        raise ReLumixError(f"source must be [T,3,H,W], got {tuple(source.shape)}")
    if tuple(reference.shape) != tuple(source.shape[1:]):
        raise ReLumixError(f"reference {tuple(reference.shape)} must be one frame of the source {tuple(source.shape)}")
    if not 0 <= reference_index < source.shape[0]:
        raise ReLumixError(f"reference_index {reference_index} is outside the clip of {source.shape[0]} frames")


def _linear(srgb: torch.Tensor) -> torch.Tensor:
    return torch.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)


def _gamma(linear: torch.Tensor) -> torch.Tensor:
    linear = linear.clamp(0.0, 1.0)
    return torch.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear ** (1 / 2.4) - 0.055)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB ``[..., 3, H, W]`` in [0, 1] -> CIE L*a*b* (D65), float64, channel-wise L in [0, 100]."""
    xyz = torch.einsum("ij,...jhw->...ihw", _RGB_TO_XYZ, _linear(rgb.double().clamp(0.0, 1.0)))
    xyz = xyz / _WHITE.view(3, 1, 1)
    f = torch.where(xyz > _LAB_DELTA**3, xyz.clamp_min(1e-12) ** (1 / 3), xyz / (3 * _LAB_DELTA**2) + 4 / 29)
    fx, fy, fz = f.unbind(-3)
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], dim=-3)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """CIE L*a*b* (D65) -> sRGB in [0, 1] (out-of-gamut colours clamped), float64."""
    l_, a, b = lab.double().unbind(-3)
    fy = (l_ + 16) / 116
    f = torch.stack([fy + a / 500, fy, fy - b / 200], dim=-3)
    xyz = torch.where(f > _LAB_DELTA, f**3, 3 * _LAB_DELTA**2 * (f - 4 / 29)) * _WHITE.view(3, 1, 1)
    return _gamma(torch.einsum("ij,...jhw->...ihw", torch.linalg.inv(_RGB_TO_XYZ), xyz))


def input_unchanged(source: torch.Tensor, reference: torch.Tensor, reference_index: int) -> torch.Tensor:
    """The source clip as it is: the score of doing nothing."""
    _check(source, reference, reference_index)
    return source.float().clamp(0.0, 1.0)


def reference_repeated(source: torch.Tensor, reference: torch.Tensor, reference_index: int) -> torch.Tensor:
    """The relit reference for every frame: ideal light, no motion (perfect temporal SSIM, wrong content)."""
    _check(source, reference, reference_index)
    return reference.float().clamp(0.0, 1.0).expand_as(source).clone()


def colour_transfer(source: torch.Tensor, reference: torch.Tensor, reference_index: int) -> torch.Tensor:
    """Global colour transfer (Reinhard et al.-style, in CIE Lab): match source[k]'s per-channel mean and standard
    deviation to the reference's, then apply that same affine Lab map to every frame. Captures overall brightness
    and tint changes, not shadows or local light."""
    _check(source, reference, reference_index)
    src_lab = rgb_to_lab(source)
    key, ref = src_lab[reference_index].flatten(1), rgb_to_lab(reference).flatten(1)
    gain = (ref.std(1, unbiased=False) / key.std(1, unbiased=False).clamp_min(1e-6)).clamp(0.0, MAX_GAIN)
    shift = ref.mean(1) - gain * key.mean(1)
    out = src_lab * gain.view(3, 1, 1) + shift.view(3, 1, 1)
    return lab_to_rgb(out).float()


def ratio_propagation(source: torch.Tensor, reference: torch.Tensor, reference_index: int) -> torch.Tensor:
    """Per-pixel light ratio ``(reference + eps) / (source[k] + eps)`` (at most :data:`MAX_GAIN`) applied to every
    frame as ``(source + eps) * ratio - eps``: exactly the reference at frame k where the ratio is within the cap,
    and a light map glued to the image plane elsewhere, so it smears wherever the camera or objects move."""
    _check(source, reference, reference_index)
    src = source.double()
    ratio = ((reference.double() + RATIO_EPS) / (src[reference_index] + RATIO_EPS)).clamp(0.0, MAX_GAIN)
    return ((src + RATIO_EPS) * ratio - RATIO_EPS).clamp(0.0, 1.0).float()


def nearest_keyframe_baseline(fn: Baseline) -> KeyframeBaseline:
    """A single-reference baseline made multi-reference: each frame takes ``fn``'s result from its nearest keyframe
    (a tie goes to the earlier one).

    ``fn`` runs once per keyframe on the frames that keyframe owns (a contiguous run around it), which is exact for
    per-frame baselines like the ones here (a frame's output depends only on that frame, ``source[k]`` and the
    reference) and keeps the cost at one pass over the clip.
    """

    def run(source: torch.Tensor, references: torch.Tensor, reference_indices: Sequence[int]) -> torch.Tensor:
        keys = check_keyframes(int(source.shape[0]), reference_indices)
        if references.dim() != 4 or references.shape[0] != len(keys):
            raise ReLumixError(f"references {tuple(references.shape)} must be [N,3,H,W] with one image per "
                               f"keyframe ({len(keys)})")
        parts = [fn(source[a:b], references[j], keys[j] - a)
                 for j, (a, b) in enumerate(keyframe_segments(int(source.shape[0]), keys))]
        return torch.cat(parts)

    run.__name__ = f"nearest_keyframe_{getattr(fn, '__name__', 'baseline')}"
    run.__doc__ = fn.__doc__
    return run


#: The baselines in report order, from the trivial to the strongest usual one.
BASELINES: dict[str, Baseline] = {
    "input_unchanged": input_unchanged,
    "reference_repeated": reference_repeated,
    "colour_transfer": colour_transfer,
    "ratio_propagation": ratio_propagation,
}

__all__ = [
    "BASELINES",
    "Baseline",
    "KeyframeBaseline",
    "colour_transfer",
    "input_unchanged",
    "lab_to_rgb",
    "nearest_keyframe_baseline",
    "ratio_propagation",
    "reference_repeated",
    "rgb_to_lab",
]
