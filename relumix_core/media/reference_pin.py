"""Reference pin: where a frame shows what its keyframe showed, the relit keyframe is the answer.

The relit reference is exact at its keyframe, and a small model's output is not exact anywhere: its first-stage VAE
blurs, and it drifts. Wherever the input frame is the keyframe's input seen again (the same surface, only moved by
the camera), the keyframe's per-pixel light ratio ``(reference + eps) / (input_key + eps)``, carried along with that
motion, relights it better than any model can. So each frame takes, pixel by pixel:

* the camera's motion since the keyframe as one affine map of the image, tracked frame by frame (Lucas-Kanade on a
  small pyramid of the grey input frames, each frame starting from the previous frame's estimate), and also no
  motion at all (a still camera, or regions the affine map does not fit);
* for each, the keyframe's input moved onto this frame and its difference to this frame (blurred by
  :data:`PIN_BLUR` processing pixels): small where the pixel shows the same surface;
* a weight ``exp(-(difference / PIN_THRESHOLD)^2)`` per candidate; the carried ratios are mixed by those weights and
  the result replaces the model's output in proportion to the larger weight, averaged over :data:`PIN_TIME_SIGMA`
  frames so pixels do not flicker between the two.

Moving objects, newly seen regions and pixels whose light changes on their own (a shadow sweeping over a still
surface shows in the input too) differ from the keyframe's input, so there the model's own picture stays. Each frame
follows its nearest keyframe. A post-process, like the colour anchor and the detail transfer: evaluations report the
model with it and without it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ReLumixError
from .blur import gaussian_blur
from .detail import smooth_in_time

#: Mean absolute input difference (in [0, 1]) at which a pixel's pin weight is 1/e; its blur radius (processing
#: pixels) and the time radius (frames) of the weights. Chosen on the validation splits (synthetic seed 7000 and
#: ray-traced seed 7100, 8- and 64-frame clips; docs/evaluation.md gives the numbers).
PIN_THRESHOLD = 0.05
PIN_BLUR = 1.0
PIN_TIME_SIGMA = 3.0
PIN_FLOOR = 0.1
#: The light ratio's offset and largest gain (as the ratio baseline's): black input pixels still get some light,
#: and near-black ones cannot blow small differences up.
RATIO_EPS = 0.01
MAX_GAIN = 8.0
#: Lucas-Kanade: pyramid levels (each half the size, down to 16 pixels) and Gauss-Newton steps per level.
TRACK_LEVELS = 3
TRACK_STEPS = 15
_IDENTITY = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0))


def warp(images: torch.Tensor, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``images`` [N,C,H,W] sampled where the affine ``theta`` [2,3] (normalised coordinates, output -> input) points,
    and [N,1,H,W] 1 where that lands inside the image, 0 outside. The identity returns ``images`` as they are
    (sampling them at their own pixel centres would only add rounding, at full-HD cost)."""
    if torch.equal(theta.cpu(), torch.tensor(_IDENTITY, dtype=theta.dtype)):
        return images, torch.ones(images.shape[0], 1, *images.shape[-2:], dtype=images.dtype, device=images.device)
    grid = F.affine_grid(theta.to(images)[None].expand(images.shape[0], 2, 3), list(images.shape), align_corners=False)
    moved = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return moved, (grid.abs() <= 1).all(-1).to(images.dtype)[:, None]


def _gradients(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Central differences of [1,1,H,W] per unit of normalised coordinates (x, y)."""
    h, w = image.shape[-2:]
    px = F.pad(image, (1, 1, 0, 0), mode="replicate")
    py = F.pad(image, (0, 0, 1, 1), mode="replicate")
    return (px[..., 2:] - px[..., :-2]) * (w / 4), (py[..., 2:, :] - py[..., :-2, :]) * (h / 4)


def estimate_affine(moving: torch.Tensor, fixed: torch.Tensor, start: torch.Tensor | None = None) -> torch.Tensor:
    """The affine ``theta`` [2,3] with ``moving`` sampled at ``theta(x)`` close to ``fixed`` (grey [1,1,H,W]), by
    Gauss-Newton on a pyramid, starting from ``start`` (default: no motion)."""
    theta = (start if start is not None else torch.tensor(_IDENTITY)).to(torch.float32).clone()
    pyramid = [(moving.float(), fixed.float())]
    while len(pyramid) < TRACK_LEVELS and min(pyramid[-1][0].shape[-2:]) >= 32:
        pyramid.append(tuple(F.avg_pool2d(x, 2) for x in pyramid[-1]))  # type: ignore[arg-type]
    for level_moving, level_fixed in reversed(pyramid):
        h, w = level_moving.shape[-2:]
        ys, xs = torch.meshgrid(torch.linspace(-1 + 1 / h, 1 - 1 / h, h), torch.linspace(-1 + 1 / w, 1 - 1 / w, w),
                                indexing="ij")
        for _ in range(TRACK_STEPS):
            moved, inside = warp(level_moving, theta)
            gx, gy = (g[0, 0] * inside[0, 0] for g in _gradients(moved))
            jacobian = torch.stack([gx * xs, gx * ys, gx, gy * xs, gy * ys, gy], dim=-1).reshape(-1, 6)
            residual = ((level_fixed - moved) * inside)[0, 0].reshape(-1)
            normal = jacobian.T @ jacobian
            damping = 1e-4 * normal.diagonal().mean().clamp_min(1e-8) * torch.eye(6)
            step = torch.linalg.solve(normal + damping, jacobian.T @ residual)
            theta = theta + step.view(2, 3)
            if float(step.abs().max()) < 1e-4:
                break
    return theta


def _grey(frames: torch.Tensor) -> torch.Tensor:
    return (0.299 * frames[:, 0:1] + 0.587 * frames[:, 1:2] + 0.114 * frames[:, 2:3]).float()


def track_camera(source: torch.Tensor, key: int, frames: list[int]) -> dict[int, torch.Tensor]:
    """The affine motion from frame ``key`` of ``source`` [T,3,h,w] to each of ``frames`` (one contiguous run around
    ``key``), each frame starting from its neighbour's estimate towards the keyframe."""
    grey = _grey(source)
    motion = {key: torch.tensor(_IDENTITY)}
    for direction in (1, -1):
        theta, t = motion[key], key + direction
        while t in frames:
            theta = estimate_affine(grey[key:key + 1], grey[t:t + 1], theta)
            motion[t] = theta
            t += direction
    return motion


def _carried(ratio: torch.Tensor, source_key: torch.Tensor, frame: torch.Tensor, theta: torch.Tensor, blur: float
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """The keyframe's light carried by ``theta`` onto ``frame`` [1,3,H,W], and its pin weight [1,1,H,W]."""
    moved, inside = warp(torch.cat([ratio, source_key], dim=1), theta)  # one grid for both
    moved_ratio, moved_key = moved.split(3, dim=1)
    relit = ((frame + RATIO_EPS) * moved_ratio - RATIO_EPS).clamp(0.0, 1.0)
    difference = gaussian_blur((moved_key - frame).abs().mean(1, keepdim=True), blur)
    if PIN_FLOOR > 0:  # relative to the local brightness: in a dark clip every absolute difference is small
        level = gaussian_blur(((moved_key + frame) / 2).mean(1, keepdim=True), blur)
        difference = difference * (0.5 + PIN_FLOOR) / (level + PIN_FLOOR)
    return relit, torch.exp(-((difference / PIN_THRESHOLD) ** 2)) * inside


def pin_to_references(frames: torch.Tensor, source: torch.Tensor, references: torch.Tensor, keys: list[int],
                      track_size: tuple[int, int] | None = None, blur: float = PIN_BLUR) -> torch.Tensor:
    """``frames`` [T,3,H,W] (the finished output) with every pixel that shows what its nearest keyframe showed
    replaced by that keyframe's carried light. ``source`` is the input clip, ``references`` [N,3,H,W] belong to the
    sorted frame indices ``keys``, all at the frames' size; the camera is tracked at ``track_size`` (the processing
    size; default the frames' size), ``blur`` is in the frames' pixels."""
    if frames.dim() != 4 or frames.shape != source.shape or references.shape[1:] != frames.shape[1:]:
        raise ReLumixError(f"reference pin needs frames and source [T,3,H,W] of one shape and references [N,3,H,W] "
                           f"of their frame size; got {tuple(frames.shape)}, {tuple(source.shape)}, "
                           f"{tuple(references.shape)}")
    if len(keys) != references.shape[0]:
        raise ReLumixError(f"{references.shape[0]} references for {len(keys)} keyframes")
    count = frames.shape[0]
    src = source.to(frames.device, torch.float32)
    tracked = src if track_size is None or tuple(track_size) == tuple(src.shape[-2:]) else F.interpolate(
        src, size=track_size, mode="area")
    nearest = (torch.arange(count)[:, None] - torch.tensor(keys)[None]).abs().argmin(dim=1).tolist()
    weights = torch.zeros(count, 1, *frames.shape[-2:])
    carried = frames.float().clone()
    for j, key in enumerate(keys):
        ratio = ((references[j:j + 1].float() + RATIO_EPS) / (src[key:key + 1] + RATIO_EPS)).clamp(0.0, MAX_GAIN)
        own = [t for t in range(count) if nearest[t] == j]
        for t, theta in track_camera(tracked, key, own).items():
            if t == key:  # finished against its reference already: fully pinned
                weights[t] = 1.0
                continue
            candidates = [_carried(ratio, src[key:key + 1], src[t:t + 1], th, blur)
                          for th in (theta, torch.tensor(_IDENTITY))]
            # the candidates mixed by their weights; where neither fits, the output itself (so that weights
            # borrowed from neighbouring frames in time cannot pull a pixel towards black)
            total = sum(w for _, w in candidates) + 1e-3
            carried[t] = ((sum(relit * w for relit, w in candidates) + 1e-3 * frames[t:t + 1].float()) / total)[0]
            weights[t] = torch.maximum(candidates[0][1], candidates[1][1])[0]
    weights = smooth_in_time(weights, PIN_TIME_SIGMA)
    out = (weights * carried + (1 - weights) * frames.float()).clamp(0.0, 1.0).to(frames.dtype)
    out[keys] = frames[keys]  # the keyframes are finished against their references already
    return out


__all__ = ["PIN_BLUR", "PIN_THRESHOLD", "PIN_TIME_SIGMA", "estimate_affine", "pin_to_references", "track_camera",
           "warp"]
