"""The one Gaussian blur: shifted sums must equal the separable convolution they replace."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from relumix_core.media.blur import gaussian_blur


def _convolved(frames: torch.Tensor, sigma: float, edges: str, radius: int) -> torch.Tensor:
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    c = frames.shape[1]
    out = F.conv2d(F.pad(frames, (0, 0, radius, radius), mode=edges), kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1),
                   groups=c)
    return F.conv2d(F.pad(out, (radius, radius, 0, 0), mode=edges), kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1),
                    groups=c)


@pytest.mark.parametrize(("sigma", "edges"), [(0.75, "replicate"), (3.0, "replicate"), (1.5, "reflect"),
                                              (20.0, "reflect")])
def test_blur_equals_a_separable_gaussian_convolution(sigma: float, edges: str) -> None:
    frames = torch.rand(2, 3, 13, 17, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    radius = max(1, math.ceil(3 * sigma))
    if edges == "reflect":
        radius = min(radius, 12, 16)  # the kernel shrinks to what mirroring can reach
    torch.testing.assert_close(gaussian_blur(frames, sigma, edges), _convolved(frames, sigma, edges, radius))


def test_blur_keeps_shape_and_dtype_and_a_point_spreads_symmetrically() -> None:
    point = torch.zeros(1, 1, 9, 9, dtype=torch.float16)
    point[..., 4, 4] = 1.0
    out = gaussian_blur(point, 1.0)
    assert out.shape == point.shape and out.dtype == torch.float16
    assert float(out.sum()) == pytest.approx(1.0, abs=1e-2)
    torch.testing.assert_close(out, out.flip(-1))
    torch.testing.assert_close(out, out.transpose(-1, -2))
