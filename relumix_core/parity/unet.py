"""UNet parity: one forward pass of the tiny official VideoUNet (``unet_tiny.json``)."""

from __future__ import annotations

import torch

from ..checkpoints.convert.unet import convert_unet_key, infer_unet_config
from ..models.unet import ReLumixUNet, build_unet, cast_module
from .common import Fixture, ParityResult, compare

PREFIX = "model.diffusion_model."


def load_fixture_unet(fixture: Fixture, weights_fixture: Fixture | None = None) -> ReLumixUNet:
    """Build the UNet of a fixture (config from shapes, head width from the fixture JSON) and load its weights."""
    weights = (weights_fixture or fixture).with_prefix(PREFIX)
    head_channels = fixture.meta["unet_config"]["num_head_channels"]
    config = infer_unet_config({k: v.shape for k, v in weights.items()}, num_head_channels=head_channels)
    with torch.device("meta"):
        unet = build_unet(config)
    state = dict(pair for name, tensor in weights.items() for pair in convert_unet_key(name, tensor, config))
    unet.load_state_dict(state, strict=True, assign=True)
    return unet.eval()


def check(fixture: Fixture) -> list[ParityResult]:
    unet = load_fixture_unet(fixture)
    t = fixture.tensors
    frames = int(t["input.num_video_frames"].item())
    runs = [
        ("output.f32", torch.float32, torch.float32, "input.image_only_indicator"),
        ("output.f64", torch.float64, torch.float32, "input.image_only_indicator"),
        ("output.f64_temb_f64", torch.float64, torch.float64, "input.image_only_indicator"),
        ("output.mixed_indicator.f32", torch.float32, torch.float32, "input.image_only_indicator_mixed"),
        ("output.mixed_indicator.f64", torch.float64, torch.float32, "input.image_only_indicator_mixed"),
    ]
    results = []
    for name, dtype, sinusoid_dtype, indicator in runs:
        if name not in t:
            continue
        cast_module(unet, dtype)
        unet.set_sinusoid_dtype(sinusoid_dtype)
        with torch.no_grad():
            out = unet(
                t["input.x"].to(dtype),
                t["input.timesteps"].to(dtype),
                t["input.context"].to(dtype),
                t["input.y"].to(dtype),
                num_frames=frames,
                image_only_indicator=t[indicator].to(dtype),
            )
        results.append(compare(name, out, t[name]))
    unet.set_sinusoid_dtype(torch.float32)
    return results
