"""Colour anchor: the fitted map, and the pipeline option."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from relumix_core.errors import ReLumixError
from relumix_core.media.blur import gaussian_blur
from relumix_core.media.colour_anchor import (
    COLOUR_MAP_KINDS,
    LOCAL_FADE,
    anchor_colours,
    apply_colour_map,
    apply_local_gains,
    fit_colour_map,
    local_gains,
)
from relumix_core.models.tiny import random_tiny_model
from relumix_core.pipeline.pipeline import ReLumixPipeline
from relumix_core.pipeline.settings import RelightSettings

SIZE = 64


def _image(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (0.2 + 0.6 * torch.rand(3, 16, 16, generator=g)).clamp(0, 1)


@pytest.mark.parametrize("kind", COLOUR_MAP_KINDS)
def test_identity_when_output_is_reference(kind: str) -> None:
    image = _image(0)
    colour_map = fit_colour_map(image, image, kind=kind)  # type: ignore[arg-type]
    assert torch.allclose(colour_map.matrix, torch.eye(3), atol=1e-5)
    assert torch.allclose(colour_map.offset, torch.zeros(3), atol=1e-5)
    assert torch.allclose(apply_colour_map(image[None], colour_map)[0], image, atol=1e-5)


@pytest.mark.parametrize("kind", COLOUR_MAP_KINDS)
def test_removes_a_global_offset(kind: str) -> None:
    reference = _image(1)
    cast = reference + torch.tensor([0.05, -0.04, 0.03])[:, None, None]  # stays inside [0, 1]
    out = apply_colour_map(torch.stack([cast, cast]), fit_colour_map(cast, reference, kind=kind))  # type: ignore[arg-type]
    assert (out - reference).abs().max() < 1e-4


@pytest.mark.parametrize(("kind", "tolerance"), [("gain", 1e-4), ("affine", 0.01)])
def test_removes_a_global_gain_and_offset(kind: str, tolerance: float) -> None:
    reference = _image(2)
    cast = reference * torch.tensor([0.8, 1.1, 0.9])[:, None, None] + torch.tensor([0.02, -0.05, 0.04])[:, None, None]
    out = apply_colour_map(cast[None], fit_colour_map(cast, reference, kind=kind))[0]  # type: ignore[arg-type]
    assert (out - reference).abs().max() < tolerance
    shifted = apply_colour_map(cast[None], fit_colour_map(cast, reference, kind="shift"))[0]
    assert (shifted - reference).abs().max() > 0.02  # a mean shift alone cannot undo a gain


def _video(frames: int) -> torch.Tensor:
    ramp = torch.linspace(0, 1, SIZE)
    return torch.stack([(ramp[None, :] * ramp[:, None] + t / 20).clamp(0, 1).expand(3, SIZE, SIZE)
                        for t in range(frames)])


def test_pipeline_option() -> None:
    torch.manual_seed(0)
    pipe = ReLumixPipeline(random_tiny_model(0), device="cpu")
    video = _video(4)
    reference = video[1].clone()
    reference[0] *= 0.6  # a reference of another colour than the source
    settings = RelightSettings(num_steps=2, size=SIZE, window=4, overlap=1, detail_sigma=0)

    def run(**changes: object) -> tuple[torch.Tensor, torch.Tensor]:
        chosen = replace(settings, **changes)  # type: ignore[arg-type]
        conditioning = pipe.encode(video, reference, 1, chosen, torch.Generator().manual_seed(3))
        result = pipe.generate(conditioning, chosen, torch.Generator().manual_seed(4))
        return result.frames, result.decoded

    before, decoded = run()
    # off by default: the frames are the decoded latents and nothing more, as before the option existed
    assert torch.equal(before, torch.clamp((decoded.float() + 1) / 2, 0, 1))
    anchored, _ = run(colour_anchor=True)
    assert not torch.allclose(anchored, before, atol=1e-3)
    # the reference frame's per-channel mean now matches the reference's (up to clamping)
    assert (anchored[1].mean((1, 2)) - reference.mean((1, 2))).abs().max() < 0.02
    assert (before[1].mean((1, 2)) - reference.mean((1, 2))).abs().max() > 0.02


def test_local_gain_pins_the_keyframe_to_the_reference_at_its_blur_scale() -> None:
    reference = _image(5)
    output = reference.clone()
    output[1, :8] *= 0.8  # a local error a global map cannot undo: the top half lost some green
    video = torch.stack([output, output, output])
    global_only = apply_colour_map(video, fit_colour_map(output, reference))
    anchored = anchor_colours(video, [0], reference[None], sigma=1.0)
    blurred_error = (gaussian_blur(anchored[:1], 1.0) - gaussian_blur(reference[None], 1.0)).abs().mean()
    assert blurred_error < 0.005
    assert (anchored[0] - reference).abs().mean() < 0.5 * (global_only[0] - reference).abs().mean()


def test_local_gain_fades_with_distance_to_the_nearest_keyframe() -> None:
    frames = torch.full((30, 3, 4, 4), 0.25)
    gains = torch.stack([torch.full((3, 4, 4), 2.0), torch.full((3, 4, 4), 0.5)])
    out = apply_local_gains(frames, [0, 29], gains)
    expected_near_first = 0.25 * 2.0 ** torch.exp(torch.tensor(-5 / LOCAL_FADE))
    torch.testing.assert_close(out[5, 0, 0, 0], expected_near_first)
    assert out[0].eq(0.5).all() and out[29].eq(0.125).all()  # full gain at each keyframe
    assert (out[14] > 0.25).all() and (out[15] < 0.25).all()  # each frame follows its nearest keyframe
    assert (out[14] - 0.25).abs().max() < (out[5] - 0.25).abs().max()  # weaker further away


def test_local_gains_refuse_mismatched_shapes() -> None:
    with pytest.raises(ReLumixError, match=r"one shape \[N,3,H,W\]"):
        local_gains(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 4, 4))
    with pytest.raises(ReLumixError, match="2 local gains for 1 keyframes"):
        apply_local_gains(torch.rand(3, 3, 4, 4), [0], torch.ones(2, 3, 4, 4))


def test_the_model_decides_when_a_run_does_not() -> None:
    from relumix_core.checkpoints.loading import load_relumix

    tiny, _ = load_relumix("relumix-tiny")
    assert tiny.config.colour_anchor is True  # its card: chosen on the validation set
    assert RelightSettings().resolved(tiny).colour_anchor is True
    assert RelightSettings(colour_anchor=False).resolved(tiny).colour_anchor is False
    random = random_tiny_model(0)
    assert random.config.colour_anchor is False and RelightSettings().resolved(random).colour_anchor is False


def test_config_refuses_a_colour_anchor_that_is_not_a_boolean() -> None:
    import json

    from relumix_core.models.relumix import ReLumixConfig

    data = json.loads(random_tiny_model(0).config.to_json())
    data["colour_anchor"] = "yes"
    with pytest.raises(ValueError, match="colour_anchor must be true or false"):
        ReLumixConfig.from_json(json.dumps(data))
    del data["colour_anchor"]  # files written before the field existed
    assert ReLumixConfig.from_json(json.dumps(data)).colour_anchor is False
