"""Detail transfer: the function, the model's own radius, and the pipeline applying it at the output size."""

from __future__ import annotations

import json

import pytest
import torch

from relumix_core.errors import ReLumixError
from relumix_core.media.blur import gaussian_blur
from relumix_core.media.detail import DETAIL_EPS, transfer_detail
from relumix_core.models.relumix import ReLumixConfig
from relumix_core.models.tiny import random_tiny_model
from relumix_core.pipeline.pipeline import ReLumixPipeline
from relumix_core.pipeline.settings import RelightSettings


def textured(frames: int = 3, size: int = 32, seed: int = 0) -> torch.Tensor:
    """An albedo with pixel-scale texture under a smooth light: [T,3,H,W] in [0,1]."""
    gen = torch.Generator().manual_seed(seed)
    albedo = 0.3 + 0.6 * torch.rand(frames, 3, size, size, generator=gen)
    light = torch.linspace(0.4, 1.0, size).view(1, 1, 1, size)
    return albedo * light


def test_radius_zero_is_the_identity_and_bad_radii_are_refused() -> None:
    relit, source = textured(seed=1), textured(seed=2)
    assert transfer_detail(relit, source, 0.0) is relit
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ReLumixError, match="detail radius"):
            transfer_detail(relit, source, bad)
    with pytest.raises(ReLumixError, match="same shape"):
        transfer_detail(relit, source[:2], 1.0)


def test_blur_keeps_a_constant_image_and_its_mean() -> None:
    flat = torch.full((2, 3, 9, 9), 0.37)
    assert torch.allclose(gaussian_blur(flat, 1.5), flat, atol=1e-6)
    x = textured(size=40)
    assert abs(float(gaussian_blur(x, 0.75).mean() - x.mean())) < 2e-3
    assert float(gaussian_blur(x, 0.75).std()) < float(x.std())  # it does smooth


def test_a_blurred_relit_frame_gets_the_sources_texture_back() -> None:
    """Light that varies slowly multiplies the texture: from a soft relit frame and the source under another
    light, the transfer recovers the sharp relit frame far better than the soft one does."""
    source = textured(seed=3)
    new_light = torch.linspace(1.2, 0.5, 32).view(1, 1, 32, 1)
    target = (source * new_light).clamp(0, 1)
    soft = gaussian_blur(target, 1.0)
    restored = transfer_detail(soft, source, 1.0)
    before, after = (soft - target).abs().mean(), (restored - target).abs().mean()
    assert after < 0.35 * before, (float(before), float(after))
    assert restored.min() >= 0 and restored.max() <= 1


def test_the_ratio_is_guarded_against_black_sources() -> None:
    source = torch.zeros(1, 3, 16, 16)
    source[..., 8, 8] = 0.01  # a speck of noise in a black frame
    relit = torch.full((1, 3, 16, 16), 0.5)
    out = transfer_detail(relit, source, 1.0)
    assert float(out.max()) <= 0.5 * (0.01 + DETAIL_EPS) / DETAIL_EPS + 1e-6
    assert float(out.max()) < 0.8  # the speck is not blown up into a white dot


def test_the_config_carries_the_models_radius_and_old_files_read_zero() -> None:
    config = random_tiny_model(0).config
    assert config.detail_sigma == 0.0
    config.detail_sigma = 0.75
    assert ReLumixConfig.from_json(config.to_json()).detail_sigma == 0.75
    data = json.loads(config.to_json())
    del data["detail_sigma"]
    assert ReLumixConfig.from_json(json.dumps(data)).detail_sigma == 0.0
    for bad in (-0.5, "1", True):
        data["detail_sigma"] = bad
        with pytest.raises(ValueError, match="detail_sigma"):
            ReLumixConfig.from_json(json.dumps(data))


def test_settings_take_the_models_radius_unless_given() -> None:
    model = random_tiny_model(0)
    model.config.detail_sigma = 0.75
    assert RelightSettings().resolved(model).detail_sigma == 0.75
    assert RelightSettings(detail_sigma=0.0).resolved(model).detail_sigma == 0.0
    with pytest.raises(ReLumixError, match="detail radius"):
        RelightSettings(detail_sigma=-1.0).check()


def test_the_pipeline_applies_it_at_the_output_size_after_decoding() -> None:
    """Same samples, decoded the same; only the frames change, by the transfer scaled to the input's size."""
    pipe = ReLumixPipeline(random_tiny_model(0))
    video = textured(frames=3, size=64)
    video = torch.nn.functional.interpolate(video, size=(128, 128), mode="bilinear")  # input twice the processing
    base = dict(num_steps=1, size=64, window=3, overlap=1)
    off = pipe.generate(pipe.encode(video, video[0], 0, RelightSettings(**base), torch.Generator().manual_seed(0)),
                        RelightSettings(**base, detail_sigma=0.0), torch.Generator().manual_seed(1))
    on = pipe.generate(pipe.encode(video, video[0], 0, RelightSettings(**base), torch.Generator().manual_seed(0)),
                       RelightSettings(**base, detail_sigma=0.75), torch.Generator().manual_seed(1))
    assert torch.equal(off.decoded, on.decoded)
    assert on.frames.shape == (3, 3, 128, 128)
    expected = transfer_detail(off.frames, video, 0.75 * 2)  # processing radius x (128 / 64)
    assert torch.allclose(on.frames, expected, atol=1e-6)
    assert not torch.allclose(on.frames, off.frames, atol=1e-3)


def test_crop_framing_takes_the_texture_from_the_cropped_region() -> None:
    pipe = ReLumixPipeline(random_tiny_model(0))
    video = textured(frames=2, size=64)[..., :48]  # 64 x 48 input, cropped to a square
    settings = RelightSettings(num_steps=1, size=(32, 32), fit="crop", window=2, overlap=0, strategy="anchor",
                                detail_sigma=0.5)
    cond = pipe.encode(video, video[0], 0, settings, torch.Generator().manual_seed(0))
    top, left, h, w = cond.framing.crop_box  # type: ignore[misc]
    assert torch.equal(cond.source, video[..., top : top + h, left : left + w])
    result = pipe.generate(cond, settings, torch.Generator().manual_seed(1))
    assert result.frames.shape[-2:] == (h, w)
