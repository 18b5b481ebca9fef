"""Sampler parity: the official Euler EDM loop with per-frame guidance on the tiny UNet (``sampler_tiny.json``)."""

from __future__ import annotations

import torch

from ..models.unet import cast_module
from ..pipeline.conditioning import Conditioning
from ..pipeline.guidance import GuidedDenoiser, linear_guidance_scale
from ..pipeline.sampling import edm_sigmas, sample_windows
from .common import Fixture, ParityResult, compare
from .unet import load_fixture_unet

STEP_TENSORS = ("x_in", "sigma", "denoiser_input", "unet_input", "unet_timesteps", "unet_output", "denoised_raw",
                "denoised")
#: Tensors at the scale of the sampler state (sigma * N(0,1)).
LARGE_STATES = ("x_in", "denoiser_input", "x_out")


def _conditioning(tensors: dict[str, torch.Tensor], prefix: str, dtype: torch.dtype) -> Conditioning:
    return Conditioning(
        tensors[f"{prefix}.crossattn"], tensors[f"{prefix}.concat"], tensors[f"{prefix}.vector"]
    ).to(dtype=dtype)


def check(fixture: Fixture) -> list[ParityResult]:
    t, meta = fixture.tensors, fixture.meta
    weights = fixture.sibling(meta.get("unet_weights_file", "unet_tiny.safetensors").replace(".safetensors", ".json"))
    unet = load_fixture_unet(fixture, weights)
    frames = int(t["batch.num_video_frames"].item())
    sampler = meta["sampler"]
    disc, guider = sampler["discretization"], sampler["guider"]
    results = []
    for prefix, dtype in (("f32", torch.float32), ("f64", torch.float64)):
        if f"{prefix}.sample" not in t:
            continue
        cast_module(unet, dtype)
        sigmas = edm_sigmas(sampler["num_steps"], disc["sigma_min"], disc["sigma_max"], disc["rho"], dtype=dtype)
        scale = linear_guidance_scale(frames, guider["min_scale"], guider["max_scale"], dtype=dtype)
        trace: list[dict[str, torch.Tensor]] = []
        denoiser = GuidedDenoiser(
            unet, _conditioning(t, "c", dtype), _conditioning(t, "uc", dtype), frames, scale, on_evaluate=trace.append
        )
        states: list[torch.Tensor] = []
        with torch.no_grad():
            noise = t["noise"].to(dtype)  # B videos of T frames: one "window" of all B*T rows
            sample = sample_windows([denoiser], [list(range(noise.shape[0]))], noise, sigmas,
                                    on_step=lambda _i, x, s=states: s.append(x))
        results.append(compare(f"{prefix}.sigmas", sigmas, t[f"{prefix}.sigmas"]))
        results.append(compare(f"{prefix}.guider_scale", scale[None], t[f"{prefix}.guider_scale"]))
        for i, record in enumerate(trace):
            magnitude = max(record["x_in"].abs().max().item(), trace[max(i - 1, 0)]["x_in"].abs().max().item())
            for name in (*STEP_TENSORS, "x_out"):
                key = f"{prefix}.step{i}.{name}"
                if key in t:
                    ours = states[i] if name == "x_out" else record[name]
                    large = name in LARGE_STATES and dtype == torch.float32
                    results.append(compare(key, ours, t[key], state_tolerance(magnitude) if large else None))
        results.append(compare(f"{prefix}.sample", sample, t[f"{prefix}.sample"]))
    return results


def state_tolerance(magnitude: float) -> float:
    """Tolerance for float32 sampler states, which reach sigma_max * N(0,1) ~ 3e3.

    At that size one float32 ulp is 2.4e-4, and the Euler update rounds at the magnitude of x_in, so a 1e-5
    change of the denoised value can flip a rounding (the fixtures README reports 1.2e-4 between two runs of the
    official code itself). These states get 1e-4 plus four ulps of the step's largest |x_in|.
    """
    return 1e-4 + 4 * torch.finfo(torch.float32).eps * magnitude
