"""The built-in image relighter (relumix_core.media.relighter) and its ComfyUI node."""

from __future__ import annotations

import pytest
import torch
from pack_loader import load_pack

from relumix_core.errors import ReLumixError
from relumix_core.media.relighter import PRESETS, Light, parse_hex_color, relight_image


def picture(h: int = 40, w: int = 56) -> torch.Tensor:
    y = torch.linspace(0, 1, h)[:, None]
    x = torch.linspace(0, 1, w)[None, :]
    bump = torch.exp(-((x - 0.5) ** 2 + (y - 0.5) ** 2) / 0.02)
    return torch.stack([0.3 + 0.5 * bump, 0.4 + 0.2 * x + 0 * y, 0.5 - 0.2 * y + 0 * x]).clamp(0, 1)


def test_light_comes_from_the_chosen_side() -> None:
    img = torch.full((3, 32, 48), 0.5)
    from_left = relight_image(img, Light(azimuth=180.0, relief=0.0, falloff=1.0))
    from_right = relight_image(img, Light(azimuth=0.0, relief=0.0, falloff=1.0))
    assert from_left[:, :, :8].mean() > from_left[:, :, -8:].mean() + 0.1
    assert from_right[:, :, -8:].mean() > from_right[:, :, :8].mean() + 0.1


def test_colour_of_the_light_tints_the_picture() -> None:
    img = torch.full((3, 16, 16), 0.5)
    warm = relight_image(img, Light(color=(1.0, 0.6, 0.3), ambient=(0.1, 0.1, 0.1), relief=0.0, falloff=0.0))
    r, g, b = warm.mean(dim=(1, 2)).tolist()
    assert r > g > b


def test_relief_shades_the_slopes_of_bright_shapes() -> None:
    img = picture()
    flat = relight_image(img, Light(azimuth=180.0, relief=0.0, falloff=0.0))
    shaped = relight_image(img, Light(azimuth=180.0, relief=6.0, falloff=0.0))
    # a bright bump lit from the left: its left slope gains on its right slope once relief is on
    left, right = (slice(14, 26), slice(18, 26)), (slice(14, 26), slice(30, 38))
    gain = (shaped[0][left] - flat[0][left]).mean() - (shaped[0][right] - flat[0][right]).mean()
    assert gain > 0.02


def test_shapes_ranges_and_batches() -> None:
    img = picture()
    out = relight_image(img)
    assert out.shape == img.shape and out.dtype == img.dtype
    assert 0 <= float(out.min()) and float(out.max()) <= 1
    assert not torch.allclose(out, img, atol=0.02)
    batch = relight_image(torch.stack([img, img.flip(-1)]))
    torch.testing.assert_close(batch[0], out)
    for light in PRESETS.values():
        assert relight_image(img, light).shape == img.shape


@pytest.mark.parametrize(
    ("light", "message"),
    [(Light(elevation=120.0), "elevation"), (Light(falloff=2.0), "falloff"), (Light(color=(1.0, -1.0, 0.0)), "color"),
     (Light(intensity=float("nan")), "intensity")],
)
def test_bad_lights_are_named(light: Light, message: str) -> None:
    with pytest.raises(ReLumixError, match=message):
        relight_image(picture(), light)


def test_bad_images_and_colours_are_named() -> None:
    with pytest.raises(ReLumixError, match="RGB image"):
        relight_image(torch.zeros(4, 8, 8))
    assert parse_hex_color("#ff8000") == pytest.approx((1.0, 128 / 255, 0.0))
    assert parse_hex_color("FF8000") == parse_hex_color("#ff8000")
    with pytest.raises(ReLumixError, match="6 hex digits"):
        parse_hex_color("orange")


def test_node_relights_a_comfy_batch() -> None:
    node = load_pack().NODE_CLASS_MAPPINGS["ReLumixSimpleRelight"]
    spec = node.INPUT_TYPES()["required"]
    defaults = {k: v[1]["default"] for k, v in spec.items() if len(v) > 1 and "default" in v[1]}
    images = picture().permute(1, 2, 0)[None].repeat(2, 1, 1, 1)  # [B,H,W,C]
    (out,) = node().relight(images, **defaults)
    assert out.shape == images.shape and out.dtype == torch.float32
    expected = relight_image(picture(), Light())  # the widget defaults are the library's default light
    torch.testing.assert_close(out[0].permute(2, 0, 1), expected, atol=2e-3, rtol=0)
    with pytest.raises(ReLumixError, match="hex"):
        node().relight(images, **{**defaults, "light_color": "warm"})
