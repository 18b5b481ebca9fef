"""Conditioner parity: c and uc of the official ``GeneralConditioner`` (``conditioner_tiny.json``)."""

from __future__ import annotations

import torch

from ..pipeline.conditioning import ConditioningInputs, encode_conditioning, make_inputs
from .common import Fixture, ParityResult, compare
from .engine import load_fixture_engine


def embedder_outputs(cond_crossattn: torch.Tensor, cond_concat: torch.Tensor, vector: torch.Tensor,
                     fps_dim: int) -> dict[str, torch.Tensor]:
    """Split c back into the six embedders' outputs, in the official embedder order."""
    d = cond_crossattn.shape[-1] // 2
    z = cond_concat.shape[1] // 2
    return {
        "0_clip_frames": cond_crossattn[..., :d],
        "1_clip_ref": cond_crossattn[..., d:],
        "2_fps_id": vector[:, :fps_dim],
        "3_vae_frames": cond_concat[:, :z],
        "4_vae_ref": cond_concat[:, z:],
        "5_cond_aug": vector[:, fps_dim:],
    }


def compare_conditioning(prefix: str, cond, uncond, tensors: dict[str, torch.Tensor], fps_dim: int
                         ) -> list[ParityResult]:
    results = []
    for branch, value in (("c", cond), ("uc", uncond)):
        for part in ("crossattn", "concat", "vector"):
            key = f"{prefix}.{branch}.{part}"
            if key in tensors:
                results.append(compare(key, getattr(value, part), tensors[key]))
    embeds = embedder_outputs(cond.crossattn, cond.concat, cond.vector, fps_dim)
    for name, ours in embeds.items():
        key = f"{prefix}.embed.{name}"
        if key in tensors:
            results.append(compare(key, ours, tensors[key]))
    return results


def check(fixture: Fixture) -> list[ParityResult]:
    t, meta = fixture.tensors, fixture.meta
    frames = int(meta["T"])
    results = []
    # The batch itself: frame replacement and cond_aug noise, from the raw inputs.
    built = make_inputs(t["input.source_frames"], t["input.ref"], frames, t["input.cond_aug_noise"],
                        fps_id=meta["fps_id"], cond_aug=meta["cond_aug"], reference_range="official")
    results.append(compare("batch.cond_frames_without_noise", built.frames, t["batch.cond_frames_without_noise"]))
    results.append(compare("batch.cond_frames", built.noisy_frames, t["batch.cond_frames"]))
    results.append(compare("batch.cond_frames_1dst.ref01", built.reference, t["batch.cond_frames_1dst.ref01"]))
    for prefix, dtype in (("f32", torch.float32), ("f64", torch.float64)):
        model = load_fixture_engine(fixture, dtype)
        for ref in ("ref01", "refm11"):
            inputs = ConditioningInputs(
                frames=t["batch.cond_frames_without_noise"].to(dtype),
                noisy_frames=t["batch.cond_frames"].to(dtype),
                reference=t[f"batch.cond_frames_1dst.{ref}"].to(dtype),
                num_frames=frames,
                fps_id=meta["fps_id"],
                cond_aug=meta["cond_aug"],
            )
            with torch.no_grad():
                cond, uncond = encode_conditioning(model, inputs)
            results += compare_conditioning(f"{prefix}.{ref}", cond, uncond, t, model.config.fps_embed_dim)
    return results
