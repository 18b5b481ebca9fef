"""End-to-end parity: ``infer_relit.py`` on the tiny engine (``pipeline_tiny.json``), from frames to video."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..pipeline.conditioning import Conditioning, ConditioningInputs, encode_conditioning, make_inputs
from ..pipeline.pipeline import ReLumixPipeline
from ..pipeline.sampling import edm_sigmas, sample_windows
from ..pipeline.settings import RelightSettings
from .common import Fixture, ParityResult, compare
from .conditioner import compare_conditioning
from .engine import load_fixture_engine
from .sampler import state_tolerance

REFERENCE_RANGES = {"ref01": "official", "refm11": "training"}


def _load_input(t: dict[str, torch.Tensor]) -> torch.Tensor:
    """``infer_relit.load_input``: frames to [0,1] with frame 0 replaced by the reference."""
    rgb = (t["input.video_m11"] + 1) / 2
    rgb[0] = (t["input.ref_m11"] + 1) / 2
    return rgb


def check(fixture: Fixture) -> list[ParityResult]:
    t, meta = fixture.tensors, fixture.meta
    cli = meta["cli_equivalent"]
    settings = RelightSettings(
        size=None,  # the fixture's 32x48 frames are processed as they are
        window=int(t["input.video_m11"].shape[0]),
        num_steps=int(cli["num_steps"]),
        min_guidance=float(cli["guider_min_scale"]),
        max_guidance=float(cli["guider_max_scale"]),
        fps_id=float(cli["frame_rate"]),
        cond_aug=float(cli["cond_aug"]),
        decode_chunk_size=int(cli["decoding_t"]),
    )
    rgb01 = _load_input(t)
    results = [compare("load_input.input_rgb_01", rgb01, t["load_input.input_rgb_01"])]
    batch = make_inputs(rgb01 * 2 - 1, t["input.ref_m11"][None], rgb01.shape[0], t["input.cond_aug_noise"],
                        settings.fps_id, settings.cond_aug, "official")
    results.append(compare("batch.cond_frames_without_noise", batch.frames, t["batch.cond_frames_without_noise"]))
    results.append(compare("batch.cond_frames", batch.noisy_frames, t["batch.cond_frames"]))
    results.append(compare("batch.cond_frames_1dst.ref01", batch.reference, t["batch.cond_frames_1dst.ref01"]))
    for prefix, dtype in (("f32", torch.float32), ("f64", torch.float64)):
        pipe = ReLumixPipeline(load_fixture_engine(fixture, dtype))
        for ref, reference_range in REFERENCE_RANGES.items():
            if f"{ref}.{prefix}.sampled_video" not in t:
                continue
            settings.reference_range = reference_range  # type: ignore[assignment]
            if dtype == torch.float32:
                out = _run_through_api(pipe, t, rgb01, settings)
            else:
                out = _run_from_stored_batch(pipe, t, ref, settings, dtype)
            key = f"{ref}.{prefix}"
            results += compare_conditioning(key, out.cond, out.uncond, t, pipe.model.config.fps_embed_dim)
            for i, step in enumerate(out.trace):
                magnitude = step["x_in"].abs().max().item()
                for name in ("x_in", "denoised"):
                    stored = f"{key}.step{i}.{name}"
                    if stored in t:
                        tol = state_tolerance(magnitude) if name == "x_in" and dtype == torch.float32 else None
                        results.append(compare(stored, step[name], t[stored], tol))
            results.append(compare(f"{key}.sampled_z", out.latents, t[f"{key}.sampled_z"]))
            results.append(compare(f"{key}.decoded_raw", out.decoded, t[f"{key}.decoded_raw"]))
            results.append(compare(f"{key}.sampled_video", out.video, t[f"{key}.sampled_video"]))
            if f"{key}.decoded_raw_unchunked" in t:
                whole = RelightSettings(decode_chunk_size=out.latents.shape[0])
                results.append(compare(f"{key}.decoded_raw_unchunked", pipe.decode(out.latents, whole),
                                       t[f"{key}.decoded_raw_unchunked"]))
    return results


@dataclass
class _Run:
    cond: Conditioning
    uncond: Conditioning
    trace: list[dict[str, torch.Tensor]]
    latents: torch.Tensor
    decoded: torch.Tensor
    video: torch.Tensor


def _run_through_api(
    pipe: ReLumixPipeline, t: dict[str, torch.Tensor], rgb01: torch.Tensor, settings: RelightSettings
) -> _Run:
    """The public two-stage API (encode, generate) with the fixture's noise draws."""
    conditioning = pipe.encode(rgb01, (t["input.ref_m11"] + 1) / 2, 0, settings, cond_noise=[t["input.cond_aug_noise"]])
    cond, uncond = conditioning.window_conditioning(pipe.model, conditioning.directions[0].embeddings)
    trace: list[dict[str, torch.Tensor]] = []
    pipe.on_denoise = trace.append
    try:
        result = pipe.generate(conditioning, settings, latent_noise=[t["input.latent_noise"]])
    finally:
        pipe.on_denoise = None
    return _Run(cond, uncond, trace, result.latents, result.decoded, result.frames)


@torch.no_grad()
def _run_from_stored_batch(
    pipe: ReLumixPipeline, t: dict[str, torch.Tensor], ref: str, settings: RelightSettings, dtype: torch.dtype
) -> _Run:
    """The float64 reference run used the float32 batch upcast (fixtures README), so start from that batch."""
    inputs = ConditioningInputs(
        frames=t["batch.cond_frames_without_noise"].to(dtype),
        noisy_frames=t["batch.cond_frames"].to(dtype),
        reference=t[f"batch.cond_frames_1dst.{ref}"].to(dtype),
        num_frames=int(t["batch.num_video_frames"].item()),
        fps_id=settings.fps_id,
        cond_aug=settings.cond_aug,
    )
    cond, uncond = encode_conditioning(pipe.model, inputs)
    trace: list[dict[str, torch.Tensor]] = []
    denoiser = pipe.window_denoiser(cond, uncond, settings)
    denoiser.on_evaluate = trace.append
    sigmas = edm_sigmas(settings.num_steps, dtype=dtype)
    noise = t["input.latent_noise"].to(dtype)
    latents = sample_windows([denoiser], [list(range(noise.shape[0]))], noise, sigmas)
    decoded = pipe.decode(latents, settings)
    video = torch.clamp((decoded + 1.0) / 2.0, 0.0, 1.0)
    return _Run(cond, uncond, trace, latents, decoded, video)
