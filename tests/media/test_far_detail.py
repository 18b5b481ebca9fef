"""Far detail: past the first window after a keyframe the output keeps only the model's coarse, time-averaged light;
and the model's own window strategy."""

from __future__ import annotations

import json

import pytest
import torch

from relumix_core.errors import ReLumixError
from relumix_core.media.detail import (
    DETAIL_EPS,
    FAR_FADE,
    blend_far_detail,
    far_detail_weights,
    smooth_in_time,
    transfer_detail,
)
from relumix_core.models.relumix import WINDOW_STRATEGIES, ReLumixConfig
from relumix_core.models.tiny import random_tiny_model
from relumix_core.pipeline.pipeline import ReLumixPipeline
from relumix_core.pipeline.settings import RelightSettings
from relumix_core.pipeline.windows import STRATEGIES


def textured(frames: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    albedo = 0.3 + 0.6 * torch.rand(frames, 3, size, size, generator=gen)
    return albedo * torch.linspace(0.4, 1.0, size).view(1, 1, 1, size)


def test_weights_are_zero_within_the_first_window_and_rise_with_distance() -> None:
    w = far_detail_weights(40, [0, 30], start=3)
    assert torch.equal(w[[0, 1, 2, 3, 27, 28, 29, 30, 31, 32, 33]], torch.zeros(11))
    assert w[4] > 0 and torch.isclose(w[4], torch.tensor(1 - torch.exp(torch.tensor(-1 / FAR_FADE)).item()))
    assert torch.all(w[4:16].diff() > 0)  # rises with the distance to frame 0 ...
    assert w[15] > w[20]  # ... and falls again towards the keyframe at 30 (frame 20 is 10 from it, 15 is 15)
    assert float(w.max()) < 1
    with pytest.raises(ReLumixError, match="at least one keyframe"):
        far_detail_weights(4, [], start=1)


def test_smoothing_in_time_keeps_a_constant_and_damps_flicker() -> None:
    constant = torch.full((7, 3, 4, 4), 0.4)
    assert torch.allclose(smooth_in_time(constant, 2.0), constant, atol=1e-6)  # ends renormalised, not darkened
    flicker = torch.tensor([0.5, 0.6] * 6).view(12, 1, 1, 1).expand(12, 3, 2, 2).contiguous()
    smoothed = smooth_in_time(flicker, 2.0)
    assert smoothed[2:-2].diff(dim=0).abs().max() < 0.1 * flicker.diff(dim=0).abs().max()
    assert smooth_in_time(flicker, 0.0) is flicker


def test_the_light_field_is_computed_at_the_processing_size() -> None:
    """At twice the processing size the far transfer matches the one at the processing size, resized up: the
    radius is in processing pixels."""
    source = textured(1, size=32, seed=4).expand(6, -1, -1, -1).contiguous()
    relit = source * torch.linspace(0.5, 0.8, 6).view(6, 1, 1, 1)
    ones = torch.ones(6)
    small = blend_far_detail(relit, relit, source, 6.0, ones)
    big_source, big_relit = (torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")
                             for x in (source, relit))
    big = blend_far_detail(big_relit, big_relit, big_source, 6.0, ones, light_size=(32, 32))
    light_small = small / (source + DETAIL_EPS)
    light_big = big / (big_source + DETAIL_EPS)
    up = torch.nn.functional.interpolate(light_small, scale_factor=2, mode="bilinear", align_corners=False)
    assert (light_big - up).abs().max() < 0.02
    wrong = blend_far_detail(big_relit, big_relit, big_source, 6.0, ones)  # the radius read in output pixels
    assert (wrong / (big_source + DETAIL_EPS) - up).abs().max() > (light_big - up).abs().max()


def test_blend_is_the_near_frames_at_weight_zero_and_the_coarse_light_at_one() -> None:
    source = textured(1, seed=1).expand(12, -1, -1, -1).contiguous()  # a still shot
    gains = torch.tensor([0.5, 0.6] * 6).view(12, 1, 1, 1)  # the model's light flickers from frame to frame
    relit = source * gains
    near = transfer_detail(relit, source, 0.75)
    assert torch.equal(blend_far_detail(near, relit, source, 12.0, torch.zeros(12)), near)
    far = blend_far_detail(near, relit, source, 12.0, torch.ones(12))
    assert (far - source * 0.55).abs().max() < 0.03  # the source's texture under the averaged light
    assert far[2:-2].diff(dim=0).abs().max() < 0.2 * relit.diff(dim=0).abs().max()
    half = blend_far_detail(near, relit, source, 12.0, torch.full((12,), 0.5))
    assert torch.allclose(half, (near + far) / 2, atol=1e-6)


def test_blend_refuses_bad_radii_and_shapes() -> None:
    frames = textured(3)
    for bad in (0.0, -2.0, float("nan")):
        with pytest.raises(ReLumixError, match="far detail radius"):
            blend_far_detail(frames, frames, frames, bad, torch.ones(3))
    with pytest.raises(ReLumixError, match="one shape"):
        blend_far_detail(frames, frames, frames[:2], 8.0, torch.ones(3))
    with pytest.raises(ReLumixError, match="one shape"):
        blend_far_detail(frames, frames, frames, 8.0, torch.ones(2))


def test_config_carries_the_far_radius_and_the_window_strategy_and_old_files_read_the_old_behaviour() -> None:
    assert WINDOW_STRATEGIES == STRATEGIES  # the model's names are the pipeline's
    config = random_tiny_model(0).config
    assert config.detail_sigma_far == 0.0 and config.window_strategy == "chain"
    config.detail_sigma_far, config.window_strategy = 24.0, "anchor"
    back = ReLumixConfig.from_json(config.to_json())
    assert back.detail_sigma_far == 24.0 and back.window_strategy == "anchor"
    data = json.loads(config.to_json())
    del data["detail_sigma_far"], data["window_strategy"]  # files written before the fields existed
    old = ReLumixConfig.from_json(json.dumps(data))
    assert old.detail_sigma_far == 0.0 and old.window_strategy == "chain"
    for key, bad, match in (("detail_sigma_far", -1.0, "detail_sigma_far"),
                            ("detail_sigma_far", "8", "detail_sigma_far"),
                            ("window_strategy", "loop", "window_strategy must be one of")):
        broken = dict(data, **{key: bad})
        with pytest.raises(ValueError, match=match):
            ReLumixConfig.from_json(json.dumps(broken))


def test_settings_take_the_models_strategy_and_far_radius_unless_given() -> None:
    model = random_tiny_model(0)
    model.config.detail_sigma_far, model.config.window_strategy = 24.0, "anchor"
    resolved = RelightSettings().resolved(model)
    assert resolved.detail_sigma_far == 24.0 and resolved.strategy == "anchor"
    chosen = RelightSettings(detail_sigma_far=0.0, strategy="chain").resolved(model)
    assert chosen.detail_sigma_far == 0.0 and chosen.strategy == "chain"
    with pytest.raises(ReLumixError, match="far detail radius"):
        RelightSettings(detail_sigma_far=-1.0).check()


def test_the_pipeline_changes_only_frames_past_the_first_window() -> None:
    pipe = ReLumixPipeline(random_tiny_model(0))
    video = textured(9, size=32, seed=3)
    base = dict(num_steps=1, size=32, window=3, overlap=1, detail_sigma=0.75, strategy="anchor")

    def run(far: float) -> torch.Tensor:
        settings = RelightSettings(**base, detail_sigma_far=far)  # type: ignore[arg-type]
        cond = pipe.encode(video, video[0], 0, settings, torch.Generator().manual_seed(0))
        return pipe.generate(cond, settings, torch.Generator().manual_seed(1)).frames

    off, on = run(0.0), run(8.0)
    assert torch.equal(on[:3], off[:3])  # frames 0..window-1: the near transfer alone
    assert all(not torch.allclose(on[t], off[t], atol=1e-4) for t in range(3, 9))
