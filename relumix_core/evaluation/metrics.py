"""Per-frame quality and temporal-stability metrics for relit clips, in plain torch.

Every function takes clips ``[T, 3, H, W]`` of floats in ``[0, 1]`` (data range 1) and returns one value per
frame (or per pair of consecutive frames), so reports can show where in a clip quality drops, not only a mean.
Computation runs in float64 on the CPU: the clips are small and SSIM's variance terms lose digits in float32.

The no-reference temporal metrics (temporal SSIM / LPIPS between consecutive output frames) follow the authors'
real-video evaluation; :func:`temporal_error` is the paired counterpart, comparing frame differences with the
ground truth's, so flicker is caught even when every single frame is close to its target.
"""

from __future__ import annotations

import functools
import importlib.util
import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import ReLumixError

#: Lowest MSE used for PSNR, so identical frames give a finite 100 dB instead of infinity.
MSE_FLOOR = 1e-10
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
#: File name torchvision gives AlexNet's ImageNet weights in the torch hub cache (what LPIPS's backbone loads).
ALEXNET_WEIGHTS_PREFIX = "alexnet-owt-"


def _check_clip(x: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != 3:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ReLumixError(f"{name} must be a [T,3,H,W] tensor, got {shape}")
    return x.detach().to("cpu", torch.float64)


def _check_pair(pred: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    p, g = _check_clip(pred, "pred"), _check_clip(gt, "gt")
    if p.shape != g.shape:
        raise ReLumixError(f"pred {tuple(p.shape)} and gt {tuple(g.shape)} must have the same shape")
    return p, g


def psnr_per_frame(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per frame, data range 1; MSE is floored at :data:`MSE_FLOOR` (identical frames give 100 dB)."""
    p, g = _check_pair(pred, gt)
    mse = (p - g).pow(2).flatten(1).mean(1).clamp_min(MSE_FLOOR)
    return -10.0 * torch.log10(mse)


def mae_per_frame(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Mean absolute error per frame (data range 1): unlike PSNR it stays linear in the error, so averages over
    many frames are not dominated by the best ones."""
    p, g = _check_pair(pred, gt)
    return (p - g).abs().flatten(1).mean(1)


def _gaussian(size: int, sigma: float) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim_window_size(height: int, width: int) -> int:
    """11, or for frames smaller than that the largest odd size that fits (at least 3)."""
    size = min(SSIM_WINDOW, height, width)
    if size % 2 == 0:
        size -= 1
    if size < 3:
        raise ReLumixError(f"SSIM needs frames of at least 3x3 pixels, got {height}x{width}")
    return size


def _blur(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter per channel, 'valid' (no padding), as in Wang et al."""
    c = x.shape[1]
    k = kernel.numel()
    x = F.conv2d(x, kernel.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)
    return F.conv2d(x, kernel.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)


def _ssim(p: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """SSIM per frame of float64 clips, averaged over channels and valid pixels.

    The filtering runs in float32 (several times faster than float64 on CPUs) on frames centred on their own
    per-channel mean, which keeps the variance terms accurate to ~1e-6; the means are added back for the luminance
    term.
    """
    kernel = _gaussian(ssim_window_size(p.shape[-2], p.shape[-1]), SSIM_SIGMA).float()
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    out = [torch.zeros(0, dtype=torch.float64)]
    for a, b in zip(p.split(4), g.split(4), strict=True):  # a few frames at a time bounds memory at 512 px
        m_a, m_b = a.mean((-2, -1), keepdim=True), b.mean((-2, -1), keepdim=True)
        ac, bc = (a - m_a).float(), (b - m_b).float()
        maps = _blur(torch.cat([ac, bc, ac * ac, bc * bc, ac * bc], 1), kernel)
        mu_a, mu_b, e_aa, e_bb, e_ab = maps.chunk(5, dim=1)
        var_a, var_b, cov = e_aa - mu_a**2, e_bb - mu_b**2, e_ab - mu_a * mu_b
        mu_a, mu_b = mu_a + m_a.float(), mu_b + m_b.float()
        num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
        den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
        out.append((num / den).flatten(1).double().mean(1))
    return torch.cat(out)


def ssim_per_frame(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """SSIM per frame (Wang et al. 2004): Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03, data range 1."""
    return _ssim(*_check_pair(pred, gt))


def temporal_error(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """RMSE between the output's and the ground truth's frame-to-frame changes, one value per pair (t-1, t).

    A constant colour offset cancels out, flicker does not; empty for a single frame.
    """
    p, g = _check_pair(pred, gt)
    diff = (p[1:] - p[:-1]) - (g[1:] - g[:-1])
    return diff.pow(2).flatten(1).mean(1).sqrt()


def temporal_ssim(pred: torch.Tensor) -> torch.Tensor:
    """SSIM between consecutive output frames (t-1, t): a no-reference stability score, 1 for a frozen clip."""
    p = _check_clip(pred, "pred")
    return _ssim(p[1:], p[:-1])


def _lpips_package_weights() -> Path | None:
    spec = importlib.util.find_spec("lpips")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "weights" / "v0.1" / "alex.pth"


def _alexnet_weights() -> Path | None:
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    found = sorted(folder.glob(f"{ALEXNET_WEIGHTS_PREFIX}*.pth")) if folder.is_dir() else []
    return found[0] if found else None


def lpips_status() -> tuple[bool, str]:
    """Whether temporal LPIPS can run here without any download, and if not, why (for the report's notes)."""
    needs = (
        "temporal LPIPS needs the lpips package (pip install lpips), its linear-layer weights and torchvision's "
        f"AlexNet ImageNet weights ({ALEXNET_WEIGHTS_PREFIX}*.pth) in {Path(torch.hub.get_dir()) / 'checkpoints'}; "
        "nothing is downloaded during evaluation"
    )
    if importlib.util.find_spec("lpips") is None:
        return False, f"lpips package not installed; {needs}"
    if importlib.util.find_spec("torchvision") is None:
        return False, f"torchvision not installed; {needs}"
    linear = _lpips_package_weights()
    if linear is None or not linear.is_file():
        return False, f"lpips linear-layer weights not found at {linear}; {needs}"
    if _alexnet_weights() is None:
        return False, f"AlexNet weights not in the torch hub cache; {needs}"
    return True, "temporal LPIPS (AlexNet) between consecutive output frames"


@functools.lru_cache(maxsize=1)
def _lpips_model() -> torch.nn.Module:
    import lpips  # only reached after lpips_status() found the package and both weight files

    return lpips.LPIPS(net="alex", verbose=False).eval().requires_grad_(False)


def temporal_lpips(pred: torch.Tensor) -> torch.Tensor:
    """LPIPS (AlexNet) between consecutive output frames (t-1, t); lower is steadier. Needs :func:`lpips_status`."""
    ok, why = lpips_status()
    if not ok:
        raise ReLumixError(why)
    p = _check_clip(pred, "pred").float() * 2 - 1
    if p.shape[0] < 2:
        return torch.zeros(0, dtype=torch.float64)
    model = _lpips_model()
    with torch.no_grad():
        out = [model(a, b).flatten() for a, b in zip(p[1:].split(8), p[:-1].split(8), strict=True)]
    return torch.cat(out).double()


def _mean(values: list[float]) -> float | None:
    """Mean of the finite values; None when there are none (JSON has no NaN)."""
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else None


def clip_metrics(pred: torch.Tensor, gt: torch.Tensor, skip_first: bool = True, use_lpips: bool | None = None,
                 skip: Sequence[int] | None = None) -> dict:
    """Every metric of one clip: ``{"per_frame": {name: list}, "mean": {name: float | None}}``.

    The per-frame lists are complete (psnr/ssim have T values, the temporal ones T-1). With ``skip_first`` the
    psnr/ssim *means* leave out frame 0, which is the reference itself (the relit frame every method is given), so
    it would only inflate the scores; ``skip`` (the keyframes, when there are several references) names the frames
    to leave out instead. A clip whose every frame is skipped keeps them all. ``temporal_lpips`` is None unless
    LPIPS can run (``use_lpips=None``: whenever :func:`lpips_status` says so).
    """
    p, g = _check_pair(pred, gt)
    if use_lpips is None:
        use_lpips = lpips_status()[0]
    per_frame: dict[str, list[float] | None] = {
        "psnr": psnr_per_frame(p, g).tolist(),
        "ssim": ssim_per_frame(p, g).tolist(),
        "temporal_error": temporal_error(p, g).tolist(),
        "temporal_ssim": temporal_ssim(p).tolist(),
        "temporal_lpips": temporal_lpips(p).tolist() if use_lpips else None,
    }
    left_out = set(skip) if skip is not None else ({0} if skip_first else set())
    kept = [t for t in range(p.shape[0]) if t not in left_out] or list(range(p.shape[0]))
    mean = {}
    for name, values in per_frame.items():
        if values is None:
            mean[name] = None
        else:
            mean[name] = _mean([values[t] for t in kept] if name in ("psnr", "ssim") else values)
    return {"per_frame": per_frame, "mean": mean}


METRICS = ("psnr", "ssim", "temporal_error", "temporal_ssim", "temporal_lpips")

__all__ = [
    "METRICS",
    "clip_metrics",
    "lpips_status",
    "mae_per_frame",
    "psnr_per_frame",
    "ssim_per_frame",
    "ssim_window_size",
    "temporal_error",
    "temporal_lpips",
    "temporal_ssim",
]
