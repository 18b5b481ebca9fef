"""Reference pin: camera tracking, and where a frame shows what its keyframe showed, the keyframe's carried light."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from relumix_core.errors import ReLumixError
from relumix_core.media.reference_pin import estimate_affine, pin_to_references, warp
from relumix_core.models.relumix import ReLumixConfig
from relumix_core.models.tiny import random_tiny_model
from relumix_core.pipeline.pipeline import ReLumixPipeline
from relumix_core.pipeline.settings import RelightSettings


def world(size: int = 96, seed: int = 0) -> torch.Tensor:
    """A smooth textured albedo [1,3,S,S] (blobs a few pixels wide, so tracking has gradients to follow)."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.rand(1, 3, size // 8, size // 8, generator=gen)
    return 0.2 + 0.6 * F.interpolate(noise, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)


def light(size: int = 96) -> torch.Tensor:
    """A warm light pool fixed to the world, [1,3,S,S]."""
    y, x = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    pool = torch.exp(-((x - 0.2) ** 2 + (y + 0.1) ** 2) / 0.3)
    return (0.4 + 0.6 * pool)[None, None] * torch.tensor([1.0, 0.8, 0.5]).view(1, 3, 1, 1)


def pan(image: torch.Tensor, frames: int, step: int, crop: int = 48) -> torch.Tensor:
    """A camera panning right by ``step`` pixels a frame over ``image``: [T,3,crop,crop]."""
    return torch.cat([image[..., 20:20 + crop, 8 + t * step:8 + t * step + crop] for t in range(frames)])


def test_tracking_recovers_a_known_shift_and_zoom() -> None:
    grey = world()[:, :1]
    truth = torch.tensor([[0.95, 0.0, 0.06], [0.0, 0.95, -0.04]])
    moved, _ = warp(grey, truth)
    found = estimate_affine(grey, moved)
    assert (found - truth).abs().max() < 0.01
    assert (estimate_affine(grey, grey) - torch.tensor([[1.0, 0, 0], [0, 1.0, 0]])).abs().max() < 1e-3


def test_a_still_camera_gets_the_reference_light_everywhere() -> None:
    source = world()[..., :48, :48].expand(6, -1, -1, -1).contiguous()
    relit = (source * light(48)).clamp(0, 1)
    model = torch.rand(6, 3, 48, 48, generator=torch.Generator().manual_seed(1))  # a model that got it all wrong
    out = pin_to_references(model, source, relit[:1], [0])
    assert torch.equal(out[0], model[0])  # the keyframe is finished elsewhere
    assert (out[1:] - relit[1:]).abs().mean() < 0.01


def test_a_panning_camera_carries_the_light_with_the_surface() -> None:
    albedo, lit = world(), (world() * light()).clamp(0, 1)
    source, target = pan(albedo, 6, 2), pan(lit, 6, 2)
    model = torch.full_like(target, 0.5)
    out = pin_to_references(model, source, target[:1], [0])
    still = (source + 0.01) * ((target[0] + 0.01) / (source[0] + 0.01)) - 0.01  # the light glued to the image
    inner = (slice(None), slice(None), slice(4, -4), slice(4, -16))  # away from the newly seen right edge
    error, glued = (out - target)[1:][inner].abs().mean(), (still.clamp(0, 1) - target)[1:][inner].abs().mean()
    assert error < 0.02 and error < 0.5 * glued


def test_what_was_not_in_the_keyframe_keeps_the_models_picture() -> None:
    source = world()[..., :48, :48].expand(16, -1, -1, -1).contiguous()
    source[3:, :, 10:26, 10:26] = 0.95  # an object walks in at frame 3
    model = torch.full_like(source, 0.3)
    out = pin_to_references(model, source, (source[:1] * 0.7), [0])
    # more than three time radii after it came: the object is the model's output, the still background pinned
    assert (out[14, :, 14:22, 14:22] - 0.3).abs().max() < 0.02
    assert (out[14, :, 34:, 34:] - source[14, :, 34:, 34:] * 0.7).abs().max() < 0.02
    # right after it came too: weights averaged in time from frames before it cannot pull in a light that fits no
    # candidate here
    assert (out[4, :, 14:22, 14:22] - 0.3).abs().mean() < 0.02


def test_each_frame_follows_its_nearest_keyframe_and_bad_input_is_named() -> None:
    source = world()[..., :32, :32].expand(9, -1, -1, -1).contiguous()
    refs = torch.stack([source[0] * 0.5, source[8] * 0.9])
    out = pin_to_references(torch.zeros_like(source), source, refs, [0, 8])
    assert (out[2] - source[2] * 0.5).abs().max() < 0.02 and (out[6] - source[6] * 0.9).abs().max() < 0.02
    with pytest.raises(ReLumixError, match="one shape"):
        pin_to_references(source[:3], source, refs, [0, 8])
    with pytest.raises(ReLumixError, match="2 references for 1 keyframes"):
        pin_to_references(source, source, refs, [0])


def test_config_and_settings_carry_the_models_choice() -> None:
    model = random_tiny_model(0)
    assert model.config.reference_pin is False and RelightSettings().resolved(model).reference_pin is False
    model.config.reference_pin = True
    assert ReLumixConfig.from_json(model.config.to_json()).reference_pin is True
    assert RelightSettings().resolved(model).reference_pin is True
    assert RelightSettings(reference_pin=False).resolved(model).reference_pin is False
    data = json.loads(model.config.to_json())
    data["reference_pin"] = "on"
    with pytest.raises(ValueError, match="reference_pin must be true or false"):
        ReLumixConfig.from_json(json.dumps(data))
    del data["reference_pin"]  # files written before the field existed
    assert ReLumixConfig.from_json(json.dumps(data)).reference_pin is False


def test_the_pipeline_pins_at_the_output_size_and_leaves_the_keyframe() -> None:
    pipe = ReLumixPipeline(random_tiny_model(0))
    video = world(64)[..., :32, :32].expand(5, -1, -1, -1).contiguous()
    video = F.interpolate(video, size=(64, 64), mode="bilinear")  # twice the processing size
    reference = (video[0] * 0.6).clamp(0, 1)
    base = dict(num_steps=1, size=32, window=5, overlap=1)

    def run(pin: bool) -> torch.Tensor:
        settings = RelightSettings(**base, reference_pin=pin)  # type: ignore[arg-type]
        cond = pipe.encode(video, reference, 0, settings, torch.Generator().manual_seed(0))
        return pipe.generate(cond, settings, torch.Generator().manual_seed(1)).frames

    off, on = run(False), run(True)
    assert on.shape == (5, 3, 64, 64) and torch.equal(on[0], off[0])
    assert (on[1:] - video[1:] * 0.6).abs().mean() < 0.5 * (off[1:] - video[1:] * 0.6).abs().mean()


def test_identity_warp_returns_the_images_and_a_shift_moves_them() -> None:
    images = torch.rand(2, 6, 8, 10, generator=torch.Generator().manual_seed(0))
    same, inside = warp(images, torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    assert same is images and inside.shape == (2, 1, 8, 10) and bool((inside == 1).all())
    shift = torch.tensor([[1.0, 0.0, 0.2], [0.0, 1.0, 0.0]])  # one pixel to the right (0.2 of a half-width of 5 px)
    moved, inside = warp(images, shift)
    torch.testing.assert_close(moved[..., :-1], images[..., 1:])
    assert bool((inside[..., -1] == 0).all()) and bool((inside[..., :-1] == 1).all())
