"""relumix_core.media.frames: every accepted input form, dtype scaling, channel rules, and every refusal's message."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from relumix_core.errors import ReLumixError
from relumix_core.media.frames import InputError, as_frames, as_image, to_numpy_uint8, to_pil


def _clip(t: int = 3, h: int = 6, w: int = 5, seed: int = 0) -> torch.Tensor:
    """A float32 [T,3,H,W] clip in [0,1] with distinct values per position."""
    return torch.rand(t, 3, h, w, generator=torch.Generator().manual_seed(seed))


def _check(result: torch.Tensor, shape: tuple[int, ...]) -> None:
    assert result.dtype == torch.float32
    assert result.device.type == "cpu"
    assert tuple(result.shape) == shape
    assert result.is_contiguous()
    assert float(result.min()) >= 0.0 and float(result.max()) <= 1.0


# --- accepted forms ---------------------------------------------------------------------------------------------


def test_torch_channels_last_is_comfy_image() -> None:
    clip = _clip()
    result = as_frames(clip.permute(0, 2, 3, 1).contiguous())
    _check(result, (3, 3, 6, 5))
    assert torch.equal(result, clip)


def test_torch_channels_first() -> None:
    clip = _clip()
    result = as_frames(clip)
    _check(result, (3, 3, 6, 5))
    assert torch.equal(result, clip)
    assert result.data_ptr() != clip.data_ptr()  # always a new tensor


def test_numpy_channels_last_and_first() -> None:
    clip = _clip()
    last = clip.permute(0, 2, 3, 1).numpy()
    assert torch.equal(as_frames(last), clip)
    assert torch.equal(as_frames(clip.numpy()), clip)


def test_channels_last_wins_when_both_dims_look_like_channels() -> None:
    # [T=2, 3, 4, 3]: last dim 3 -> channels-last, so H=3, W=4.
    x = torch.rand(2, 3, 4, 3)
    assert as_frames(x).shape == (2, 3, 3, 4)


def test_single_frames_3d_and_2d() -> None:
    frame = _clip(t=1)[0]
    assert torch.equal(as_frames(frame.permute(1, 2, 0)), frame[None])
    assert torch.equal(as_frames(frame), frame[None])
    gray = torch.rand(6, 5)
    result = as_frames(gray)
    assert result.shape == (1, 3, 6, 5)
    assert all(torch.equal(result[0, c], gray) for c in range(3))


def test_numpy_noncontiguous_readonly_and_big_endian() -> None:
    base = (np.arange(2 * 4 * 5 * 3) % 256).astype(np.uint8).reshape(2, 4, 5, 3)
    expected = torch.from_numpy(base.copy()).permute(0, 3, 1, 2).float() / 255
    flipped = base[:, ::-1]
    assert torch.equal(as_frames(flipped), expected.flip(2))
    readonly = base.copy()
    readonly.flags.writeable = False
    assert torch.equal(as_frames(readonly), expected)
    big = (base.astype(np.uint16) * 257).astype(">u2")
    assert torch.allclose(as_frames(big), expected, atol=1e-6)


def test_pil_rgb_rgba_l_and_16bit() -> None:
    rgb = Image.new("RGB", (5, 4), (255, 0, 51))
    result = as_frames(rgb)
    _check(result, (1, 3, 4, 5))
    assert torch.allclose(result[0, :, 0, 0], torch.tensor([1.0, 0.0, 0.2]))
    rgba = as_frames(Image.new("RGBA", (5, 4), (0, 255, 0, 7)))
    assert torch.equal(rgba[0, :, 1, 1], torch.tensor([0.0, 1.0, 0.0]))
    gray = as_frames(Image.new("L", (5, 4), 255))
    assert torch.equal(gray, torch.ones(1, 3, 4, 5))
    sixteen = as_frames(Image.new("I;16", (5, 4), 65535))
    assert torch.equal(sixteen, torch.ones(1, 3, 4, 5))
    half = as_frames(Image.new("I;16", (5, 4), 32768))
    assert torch.allclose(half, torch.full((1, 3, 4, 5), 32768 / 65535))
    as_i = as_frames(Image.new("I", (5, 4), 65535))
    assert torch.equal(as_i, torch.ones(1, 3, 4, 5))


@pytest.mark.parametrize("mode", ["P", "PA", "CMYK", "YCbCr", "LA", "La", "RGBa", "1", "HSV", "RGBX"])
def test_pil_other_modes_become_rgb(mode: str) -> None:
    result = as_frames(Image.new(mode, (5, 4)))
    _check(result, (1, 3, 4, 5))


def test_pil_la_keeps_luminance() -> None:
    result = as_frames(Image.new("LA", (3, 2), (102, 0)))
    assert torch.allclose(result, torch.full((1, 3, 2, 3), 0.4))


def test_lists_of_frames_are_stacked() -> None:
    clip = _clip(t=4)
    assert torch.equal(as_frames([f for f in clip]), clip)
    assert torch.equal(as_frames(tuple(f.permute(1, 2, 0).numpy() for f in clip)), clip)
    assert torch.equal(as_frames([f[None] for f in clip]), clip)  # batches of one are single frames
    pil = [Image.new("RGB", (5, 4), (255, 255, 255)), Image.new("L", (5, 4), 0)]
    result = as_frames(pil)
    assert torch.equal(result[0], torch.ones(3, 4, 5)) and torch.equal(result[1], torch.zeros(3, 4, 5))


def test_list_with_mixed_dtypes() -> None:
    result = as_frames([np.full((4, 5, 3), 255, np.uint8), torch.full((4, 5, 3), 0.5)])
    assert torch.equal(result[0], torch.ones(3, 4, 5))
    assert torch.equal(result[1], torch.full((3, 4, 5), 0.5))


# --- dtypes -----------------------------------------------------------------------------------------------------


def test_uint8_and_uint16_scaling() -> None:
    assert torch.equal(as_frames(np.full((1, 2, 2, 3), 255, np.uint8)), torch.ones(1, 3, 2, 2))
    assert torch.equal(as_frames(np.full((1, 2, 2, 3), 65535, np.uint16)), torch.ones(1, 3, 2, 2))
    assert torch.allclose(as_frames(np.full((1, 2, 2, 3), 51, np.uint8)), torch.full((1, 3, 2, 2), 0.2))
    if hasattr(torch, "uint16"):
        assert torch.equal(as_frames(torch.full((1, 2, 2, 3), 65535).to(torch.uint16)), torch.ones(1, 3, 2, 2))


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.int16])
def test_wide_ints_are_read_by_range(dtype: torch.dtype) -> None:
    eight = as_frames(torch.tensor([0, 255]).to(dtype).reshape(1, 1, 2, 1))
    assert torch.equal(eight[0, 0, 0], torch.tensor([0.0, 1.0]))
    if dtype != torch.int16:
        sixteen = as_frames(torch.tensor([0, 65535]).to(dtype).reshape(1, 1, 2, 1))
        assert torch.equal(sixteen[0, 0, 0], torch.tensor([0.0, 1.0]))


def test_numpy_int64_and_uint32() -> None:
    assert torch.equal(as_frames(np.full((1, 2, 2, 3), 255, np.int64)), torch.ones(1, 3, 2, 2))
    assert torch.equal(as_frames(np.full((1, 2, 2, 3), 65535, np.uint32)), torch.ones(1, 3, 2, 2))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_floats_are_zero_to_one(dtype: torch.dtype) -> None:
    values = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0])
    x = values.to(dtype).reshape(1, 1, 1, 5).expand(2, 3, 1, 5)  # channels-first: the last dim is 5
    result = as_frames(x)
    _check(result, (2, 3, 1, 5))
    assert torch.equal(result[1, 2, 0], values)


def test_floats_slightly_out_of_range_are_clamped() -> None:
    x = torch.tensor([-0.005, 0.5, 1.009]).reshape(1, 1, 3, 1)  # [T,H,W,C]: one gray row
    result = as_frames(x)
    assert torch.equal(result[0, 0, 0], torch.tensor([0.0, 0.5, 1.0]))
    assert float(x.min()) == pytest.approx(-0.005)  # the input was not clamped in place


@pytest.mark.parametrize(
    ("values", "range_text"),
    [([-1.0, 1.0], "[-1, 1]"), ([0.0, 255.0], "[0, 255]"), ([0.5, 1.02], "[0.5, 1.02]")],
)
def test_floats_far_out_of_range_are_refused(values: list[float], range_text: str) -> None:
    x = torch.tensor(values).reshape(1, 2, 1, 1).repeat(1, 1, 1, 3)  # [T,H,W,C]
    with pytest.raises(InputError) as info:
        as_frames(x, name="reference")
    message = str(info.value)
    assert message.startswith("reference: expected 0..1 floats")
    assert f"got range {range_text}" in message
    assert "(x+1)/2" in message and "divide by 255" in message
    assert "\n" not in message


def test_nan_and_inf_are_refused_with_count_and_first_frame() -> None:
    x = torch.rand(5, 3, 4, 4)
    x[2, 0, 1, 1] = float("nan")
    x[4, 1, 0, 0] = float("inf")
    x[4, 2, 0, 0] = -float("inf")
    with pytest.raises(InputError, match=r"frames has 3 NaN/inf values \(first in frame 2\)"):
        as_frames(x)


def test_nan_in_a_list_names_the_list_index() -> None:
    frames = [torch.rand(4, 4, 3) for _ in range(4)]
    frames[3][0, 0, 0] = float("nan")
    with pytest.raises(InputError, match=r"1 NaN/inf values \(first in frame 3\)"):
        as_frames(frames)


def test_nan_in_float16() -> None:
    x = torch.zeros(2, 3, 2, 2, dtype=torch.float16)
    x[1, 0, 0, 0] = float("nan")
    with pytest.raises(InputError, match=r"1 NaN/inf values \(first in frame 1\)"):
        as_frames(x)


def test_bool_is_refused() -> None:
    with pytest.raises(InputError, match=r"^mask is a bool tensor"):
        as_frames(torch.zeros(1, 4, 4, 3, dtype=torch.bool), name="mask")
    with pytest.raises(InputError, match="bool"):
        as_frames(np.zeros((1, 4, 4, 3), dtype=bool))


def test_ints_out_of_range_are_refused() -> None:
    with pytest.raises(InputError, match=r"frames has torch.int64 values in \[0, 70000\]; integer frames must be 0"):
        as_frames(torch.tensor([0, 70000]).reshape(1, 1, 1, 2))
    with pytest.raises(InputError, match=r"values in \[-3, 10\]"):
        as_frames(np.array([-3, 10], dtype=np.int32).reshape(1, 1, 2, 1))


def test_unsupported_dtypes_and_types_are_refused() -> None:
    with pytest.raises(InputError, match="complex"):
        as_frames(torch.zeros(1, 2, 2, 3, dtype=torch.complex64))
    with pytest.raises(InputError, match="numpy dtype"):
        as_frames(np.array([["a"]]))
    with pytest.raises(InputError, match=r"^frames is a str; pass a torch tensor, a numpy array, a PIL image"):
        as_frames("clip.mp4")
    with pytest.raises(InputError, match=r"frames\[1\] is a int"):
        as_frames([torch.rand(2, 2, 3), 3])


# --- channels ---------------------------------------------------------------------------------------------------


def test_one_channel_is_replicated() -> None:
    gray = torch.rand(2, 4, 5, 1)
    result = as_frames(gray)
    assert result.shape == (2, 3, 4, 5)
    for c in range(3):
        assert torch.equal(result[:, c], gray[..., 0])


def test_rgba_drops_alpha_and_la_replicates_l() -> None:
    rgba = torch.rand(2, 4, 5, 4)
    assert torch.equal(as_frames(rgba), rgba[..., :3].permute(0, 3, 1, 2))
    la = torch.rand(2, 4, 5, 2)
    result = as_frames(la)
    for c in range(3):
        assert torch.equal(result[:, c], la[..., 0])


# --- shapes and emptiness ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "pattern"),
    [
        (torch.zeros(0, 4, 4, 3), r"^frames is empty \(0 frames"),
        ([], r"^frames is an empty list"),
        ((), r"^frames is an empty list"),
        (torch.zeros(2, 0, 4, 3), r"^frames has zero height or width"),
        (np.zeros((4, 0, 3), np.uint8), r"^frames has zero height or width"),
        (torch.rand(7, 30, 40), r"^frames has shape \(7, 30, 40\): a 3-dim input is one frame"),
        (torch.rand(2, 8, 6, 5), r"^frames has shape \(2, 8, 6, 5\): expected \[T,H,W,C\]"),
        (torch.rand(1, 2, 4, 4, 3), r"^frames has 5 dims .*pass frames\[0\]"),
        (torch.rand(3), r"^frames has 1 dims"),
    ],
)
def test_bad_shapes_are_refused(value: object, pattern: str) -> None:
    with pytest.raises(InputError, match=pattern):
        as_frames(value)


def test_list_of_different_sizes_names_the_first_mismatch() -> None:
    frames = [torch.rand(4, 5, 3), torch.rand(4, 5, 3), torch.rand(6, 5, 3), torch.rand(7, 5, 3)]
    with pytest.raises(InputError) as info:
        as_frames(frames, name="clip")
    message = str(info.value)
    assert message.startswith("clip[2] is 5x6")
    assert "clip[0] is 5x4" in message


def test_list_of_batches_is_refused() -> None:
    with pytest.raises(InputError, match=r"frames\[0\] is a batch of 2 frames"):
        as_frames([torch.rand(2, 4, 4, 3)])


def test_input_error_is_a_relumix_error() -> None:
    assert issubclass(InputError, ReLumixError)


# --- no in-place modification -----------------------------------------------------------------------------------


def test_inputs_are_never_modified() -> None:
    x = torch.rand(3, 4, 5, 4) * 1.005  # slightly over 1: clamped in the result only
    x_copy = x.clone()
    result = as_frames(x)
    result.fill_(0.5)
    assert torch.equal(x, x_copy)
    a = (np.arange(60) % 256).astype(np.uint8).reshape(1, 4, 5, 3)
    a_copy = a.copy()
    as_frames(a).fill_(0)
    assert np.array_equal(a, a_copy)
    frame = torch.rand(3, 4, 5)
    frame_copy = frame.clone()
    as_image(frame).zero_()
    assert torch.equal(frame, frame_copy)


def test_grad_tensors_are_accepted() -> None:
    x = torch.rand(2, 4, 4, 3, requires_grad=True)
    result = as_frames(x)
    assert not result.requires_grad


# --- as_image ---------------------------------------------------------------------------------------------------


def test_as_image_forms() -> None:
    frame = _clip(t=1)[0]
    for value in (frame, frame.permute(1, 2, 0), frame[None], frame.permute(1, 2, 0)[None], frame.numpy(), [frame]):
        result = as_image(value)
        assert result.shape == (3, 6, 5) and result.dtype == torch.float32
        assert torch.equal(result, frame)
    assert as_image(Image.new("RGB", (7, 3))).shape == (3, 3, 7)


def test_as_image_refuses_batches() -> None:
    with pytest.raises(InputError) as info:
        as_image(torch.rand(4, 8, 8, 3))
    message = str(info.value)
    assert message.startswith("reference is a batch of 4 frames but one image is expected; pick one frame")
    with pytest.raises(InputError, match=r"^style is a list of 2 images"):
        as_image([torch.rand(3, 4, 4), torch.rand(3, 4, 4)], name="style")


# --- outputs ----------------------------------------------------------------------------------------------------


def test_to_numpy_uint8_rounds_clamps_and_is_channels_last() -> None:
    x = torch.tensor([0.0, 1.0, 0.5, 0.2, 1.3, -0.2, float("nan"), 254.6 / 255]).reshape(1, 1, 1, 8).repeat(1, 3, 1, 1)
    out = to_numpy_uint8(x)
    assert out.dtype == np.uint8 and out.shape == (1, 1, 8, 3)
    assert out[0, 0, :, 0].tolist() == [0, 255, 128, 51, 255, 0, 0, 255]


def test_to_numpy_uint8_round_trips_uint8() -> None:
    a = np.random.default_rng(0).integers(0, 256, size=(20, 6, 7, 3), dtype=np.uint8)
    assert np.array_equal(to_numpy_uint8(as_frames(a)), a)


def test_to_pil() -> None:
    images = to_pil(torch.ones(2, 3, 4, 5))
    assert len(images) == 2
    assert images[0].mode == "RGB" and images[0].size == (5, 4)
    assert images[1].getpixel((0, 0)) == (255, 255, 255)


def test_output_shape_errors() -> None:
    with pytest.raises(InputError, match=r"\[T,3,H,W\]"):
        to_numpy_uint8(torch.rand(2, 4, 4, 3))
    with pytest.raises(InputError, match="floats"):
        to_numpy_uint8(torch.zeros(1, 3, 2, 2, dtype=torch.uint8))
