"""relumix_core.media.resolution: processing sizes, framings (resize/crop/pad) and their round trips, references."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from relumix_core.media.frames import InputError
from relumix_core.media.resolution import (
    AREA_SLACK,
    FIT_MODES,
    Framing,
    conform_reference,
    make_framing,
    processing_size,
)


def _smooth(t: int, h: int, w: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A smooth clip in [0,1]: low-frequency waves, which survive down- and up-sampling with small error."""
    y = torch.linspace(0, 1, h, dtype=torch.float64)[:, None]
    x = torch.linspace(0, 1, w, dtype=torch.float64)[None, :]
    frames = []
    for i in range(t):
        channels = [
            0.5 + 0.4 * torch.sin(2 * math.pi * (x + 0.3 * c + 0.1 * i)) * torch.cos(math.pi * (y + 0.2 * c))
            for c in range(3)
        ]
        frames.append(torch.stack(channels))
    return torch.stack(frames).to(dtype)


# --- processing_size --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("height", "width", "expected"),
    [
        (512, 512, (512, 512)),
        (480, 640, (448, 576)),
        (640, 480, (576, 448)),
        (1080, 1920, (384, 704)),
        (1920, 1080, (704, 384)),
        (720, 1280, (384, 704)),
        (256, 256, (512, 512)),  # small inputs are upscaled to the model's scale
        (4000, 4000, (512, 512)),
    ],
)
def test_processing_size_examples(height: int, width: int, expected: tuple[int, int]) -> None:
    assert processing_size(height, width) == expected


def test_processing_size_invariants_over_random_sizes() -> None:
    rng = random.Random(1234)
    for _ in range(300):
        height, width = rng.randint(64, 4096), rng.randint(64, 4096)
        if max(height / width, width / height) > 4:
            continue
        h, w = processing_size(height, width)
        assert h % 64 == 0 and w % 64 == 0 and h > 0 and w > 0
        area = h * w
        assert 512 * 512 / AREA_SLACK <= area <= 512 * 512 * AREA_SLACK
        aspect_error = abs(math.log((w / h) / (width / height)))
        assert aspect_error < 0.1, (height, width, h, w)
        assert processing_size(width, height) == (w, h)  # portrait is the transpose of landscape


def test_processing_size_is_the_best_in_the_band() -> None:
    # Brute force over all candidates: nothing in the band has a strictly smaller aspect error.
    for height, width in [(1080, 1920), (480, 640), (333, 1000), (900, 700)]:
        h, w = processing_size(height, width)
        best = abs(math.log((w / h) / (width / height)))
        for ch in range(64, 4097, 64):
            for cw in range(64, 4097, 64):
                if 512 * 512 / AREA_SLACK <= ch * cw <= 512 * 512 * AREA_SLACK:
                    assert abs(math.log((cw / ch) / (width / height))) >= best - 1e-12


def test_processing_size_other_sizes_and_multiples() -> None:
    h, w = processing_size(1080, 1920, size=1024)
    assert h % 64 == 0 and w % 64 == 0
    assert abs(math.log((w / h) / (1920 / 1080))) < 0.05
    h, w = processing_size(1080, 1920, size=512, multiple=8)
    assert h % 8 == 0 and w % 8 == 0 and abs(math.log((w / h) / (1920 / 1080))) < 0.01
    assert processing_size(480, 640, size=100) == (64, 128)  # no candidate in the band: closest area wins
    assert processing_size(np.int64(512), torch.tensor(512).item()) == (512, 512)


def test_processing_size_extreme_aspect_still_returns_a_valid_size() -> None:
    h, w = processing_size(100, 5000)
    assert h == 64 and w % 64 == 0 and w > 2000


def test_processing_size_explicit_tuple() -> None:
    assert processing_size(1080, 1920, size=(512, 768)) == (512, 768)
    with pytest.raises(InputError) as info:
        processing_size(1080, 1920, size=(500, 700))
    message = str(info.value)
    assert "(500, 700)" in message and "multiples of 64" in message and "nearest valid: (512, 704)" in message
    with pytest.raises(InputError, match=r"nearest valid: \(64, 64\)"):
        processing_size(100, 100, size=(0, -5))
    with pytest.raises(InputError, match="pair"):
        processing_size(100, 100, size=(64, 64, 64))


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"height": 0, "width": 10}, "height must be a positive integer"),
        ({"height": 10, "width": 2.5}, "width must be a positive integer"),
        ({"height": 10, "width": 10, "size": 32}, "size 32 is smaller than the multiple 64"),
        ({"height": 10, "width": 10, "multiple": 0}, "multiple must be a positive integer"),
    ],
)
def test_processing_size_bad_arguments(kwargs: dict, pattern: str) -> None:
    with pytest.raises(InputError, match=pattern):
        processing_size(**kwargs)


# --- Framing ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fit", FIT_MODES)
def test_identity_when_sizes_match_is_bit_exact(fit: str) -> None:
    framing = make_framing(512, 512, fit=fit)
    assert framing.size == (512, 512) and framing.output_size == (512, 512)
    clip = torch.rand(2, 3, 512, 512)
    processed = framing.to_model(clip)
    assert processed is clip  # nothing resampled at all
    back = framing.from_model(processed)
    assert torch.equal(back, clip)


@pytest.mark.parametrize("fit", ["resize", "pad"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("height", "width"), [(270, 480), (600, 400), (300, 300)])
def test_resize_and_pad_round_trip(fit: str, dtype: torch.dtype, height: int, width: int) -> None:
    framing = make_framing(height, width, fit=fit)
    clip = _smooth(2, height, width, dtype)
    processed = framing.to_model(clip)
    assert processed.shape == (2, 3, *framing.size) and processed.dtype == dtype
    back = framing.from_model(processed)
    assert back.shape == (2, 3, height, width) and back.dtype == dtype
    assert framing.output_size == (height, width)
    assert float((back - clip).abs().max()) < 0.03
    assert float((back - clip).abs().mean()) < 0.005


def test_pad_framing_layout() -> None:
    framing = make_framing(1080, 1920, fit="pad")
    assert framing.size == (384, 704)
    top, bottom, left, right = framing.pad
    content_h, content_w = framing.content_size
    assert content_h == 384 and content_w + left + right == 704
    assert abs(left - right) <= 1 and top == bottom == 0
    assert abs(content_w / content_h - 1920 / 1080) < 0.01
    clip = _smooth(1, 1080, 1920)
    processed = framing.to_model(clip)
    # Edge replication: the padded columns repeat the content's edge column.
    assert torch.equal(processed[..., :left], processed[..., left : left + 1].expand(-1, -1, -1, left))
    edge = processed[..., left + content_w - 1 : left + content_w]
    assert torch.equal(processed[..., left + content_w :], edge.expand(-1, -1, -1, right))


def test_pad_sides_follow_the_aspect() -> None:
    tall = make_framing(1000, 500, fit="pad", size=(512, 512))
    assert tall.pad == (0, 0, 128, 128) and tall.content_size == (512, 256)
    wide = make_framing(1080, 1920, fit="pad", size=(512, 512))
    assert wide.pad == (112, 112, 0, 0) and wide.content_size == (288, 512)
    odd = make_framing(100, 301, fit="pad", size=(64, 64))
    top, bottom, left, right = odd.pad
    assert (left, right) == (0, 0) and top + bottom + odd.content_size[0] == 64 and bottom - top in (0, 1)


def test_crop_framing_output_is_the_cropped_region() -> None:
    framing = make_framing(1080, 1920, fit="crop")
    assert framing.size == (384, 704)
    top, left, h, w = framing.crop_box
    assert framing.output_size == (h, w)
    assert w == 1920 and h == round(1920 * 384 / 704) and top == (1080 - h) // 2 and left == 0
    clip = _smooth(1, 1080, 1920)
    processed = framing.to_model(clip)
    assert processed.shape == (1, 3, 384, 704)
    back = framing.from_model(processed)
    assert back.shape == (1, 3, h, w)
    region = clip[..., top : top + h, left : left + w]
    assert float((back - region).abs().max()) < 0.03


def test_crop_of_a_tall_input_crops_height_centered() -> None:
    framing = make_framing(1000, 500, size=(512, 512), fit="crop")
    assert framing.crop_box == (250, 0, 500, 500)
    assert framing.output_size == (500, 500)
    marked = torch.zeros(1, 3, 1000, 500)
    marked[..., 250:750, :] = 1.0  # only the centre is bright: the crop must contain exactly it
    assert torch.allclose(framing.to_model(marked), torch.ones(1, 3, 512, 512))


def test_single_image_and_non_standard_channels() -> None:
    framing = make_framing(300, 400, fit="pad")
    image = _smooth(1, 300, 400)[0]
    processed = framing.to_model(image)
    assert processed.shape == (3, *framing.size)
    assert framing.from_model(processed).shape == (3, 300, 400)
    mask = torch.rand(4, 1, 300, 400)
    assert framing.to_model(mask).shape == (4, 1, *framing.size)


def test_long_clips_are_resized_in_chunks_consistently() -> None:
    framing = make_framing(100, 120, size=(64, 64))
    clip = torch.rand(37, 3, 100, 120)
    processed = framing.to_model(clip)
    single = framing.to_model(clip[20:21])
    assert torch.equal(processed[20:21], single)


def test_framing_never_modifies_its_input() -> None:
    for fit in FIT_MODES:
        framing = make_framing(270, 480, fit=fit)
        clip = torch.rand(2, 3, 270, 480)
        copy = clip.clone()
        processed = framing.to_model(clip)
        processed_copy = processed.clone()
        framing.from_model(processed)
        assert torch.equal(clip, copy) and torch.equal(processed, processed_copy)


def test_framing_size_mismatches_are_refused() -> None:
    framing = make_framing(270, 480)
    with pytest.raises(InputError, match=r"frames are 400x300 \(WxH\) but this framing's input is 480x270"):
        framing.to_model(torch.rand(1, 3, 300, 400))
    with pytest.raises(InputError, match="processing size"):
        framing.from_model(torch.rand(1, 3, 270, 480))
    with pytest.raises(InputError, match="float"):
        framing.to_model(torch.zeros(1, 3, 270, 480, dtype=torch.uint8))


def test_make_framing_refuses_unknown_fit() -> None:
    with pytest.raises(InputError, match=r"fit 'stretch' is not one of resize, crop, pad"):
        make_framing(100, 100, fit="stretch")


def test_framing_is_a_frozen_record() -> None:
    framing = make_framing(1080, 1920, fit="crop")
    assert isinstance(framing, Framing)
    assert framing.input_size == (1080, 1920) and framing.fit == "crop" and framing.pad is None
    with pytest.raises(AttributeError):
        framing.fit = "pad"  # type: ignore[misc]


# --- conform_reference ------------------------------------------------------------------------------------------


def test_reference_of_the_same_size_is_returned_unchanged() -> None:
    reference = torch.rand(3, 270, 480)
    for fit in ("auto", *FIT_MODES):
        assert conform_reference(reference, 270, 480, fit=fit) is reference


def test_reference_auto_resizes_close_aspects() -> None:
    reference = _smooth(1, 512, 896)[0]  # aspect 1.75 vs 1.78: 1.6% apart
    result = conform_reference(reference, 1080, 1920)
    assert result.shape == (3, 1080, 1920)
    expected = torch.nn.functional.interpolate(
        reference[None], size=(1080, 1920), mode="bilinear", align_corners=False, antialias=True
    )[0]
    assert torch.allclose(result, expected)


def test_reference_auto_refuses_different_aspects() -> None:
    with pytest.raises(InputError) as info:
        conform_reference(torch.rand(3, 1024, 1024), 1080, 1920)
    assert str(info.value) == (
        "reference is 1024x1024 (aspect 1.00) but the video frames are 1920x1080 (aspect 1.78); "
        "relight a frame of the video itself, or choose reference fit 'crop' or 'pad'"
    )
    with pytest.raises(InputError):
        conform_reference(torch.rand(3, 512, 560), 512, 512)  # 9.4% apart
    assert conform_reference(torch.rand(3, 512, 560), 512, 512, max_aspect_change=0.1).shape == (3, 512, 512)


@pytest.mark.parametrize("fit", FIT_MODES)
def test_reference_explicit_fits(fit: str) -> None:
    reference = _smooth(1, 1024, 1024)[0]
    result = conform_reference(reference, 1080, 1920, fit=fit)
    assert result.shape == (3, 1080, 1920) and result.dtype == reference.dtype
    if fit == "pad":
        left = (1920 - 1080) // 2
        assert torch.equal(result[:, :, :left], result[:, :, left : left + 1].expand(-1, -1, left))
    if fit == "crop":
        # The centre rows of the square reference fill the frame: its top row is the reference's row ~236.
        top = (1024 - round(1024 * 1080 / 1920)) // 2
        row = torch.nn.functional.interpolate(
            reference[None, :, top : top + 2], size=(2, 1920), mode="bilinear", antialias=True
        )[0, :, 0]
        assert float((result[:, 0] - row).abs().max()) < 0.02


def test_reference_bad_arguments() -> None:
    with pytest.raises(InputError, match="reference fit 'fill'"):
        conform_reference(torch.rand(3, 8, 8), 8, 8, fit="fill")
    with pytest.raises(InputError, match=r"\[3,H,W\]"):
        conform_reference(torch.rand(1, 3, 8, 8), 8, 8)
    with pytest.raises(InputError, match="height must be a positive integer"):
        conform_reference(torch.rand(3, 8, 8), 0, 8)
