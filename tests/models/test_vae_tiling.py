"""Spatial tiling of the VAE: spans and ramps, exact placement (a local stand-in VAE, for which tiling is exact), the
untiled result with one tile, closeness on relumix-tiny's real VAE, the temporal chunks, and the bad-input errors."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from relumix_core.checkpoints import bundled
from relumix_core.errors import ReLumixError
from relumix_core.models.vae import decode_latents
from relumix_core.models.vae_tiling import (
    Tiling,
    blend_weights,
    default_overlap,
    tile_spans,
    tiled_decode,
    tiled_encode,
)

WEIGHTS = bundled.BUNDLED_DIR / bundled.TINY_FILE
SOURCE = Path(bundled.BUNDLED_DIR).parent / "assets" / "synthetic_source.png"
#: Bounds for 32-pixel tiles, overlap 8, on relumix-tiny at 64x96 (measured on version 2: decode mean 0.077 / max 0.22
#: in [0, 1] image units; version 1 gave 0.047 / 0.27, encode mean 0.15 / max 0.78 latent standard deviations). The
#: error is spread over the whole tile, not at the seams (overlap 12 gives the same): attention and GroupNorm
#: statistics see 8x8 latents, half the size relumix-tiny was trained on, and version 2's decoder leans on them more.
MAX_MEAN_DECODE, MAX_DECODE, MAX_MEAN_ENCODE, MAX_ENCODE = 0.1, 0.35, 0.2, 1.0
needs_tiny = pytest.mark.skipif(
    not WEIGHTS.is_file(),
    reason=f"the relumix-tiny weights are missing ({WEIGHTS}); reinstall or see the model card to train them",
)


# ---------------------------------------------------------------------------------------------- spans and weights


@pytest.mark.parametrize(
    ("size", "tile", "overlap"), [(24, 8, 2), (57, 32, 8), (33, 32, 8), (100, 16, 0), (64, 16, 4), (17, 5, 2)]
)
def test_spans_cover_the_side_and_overlap_by_at_least_the_overlap(size: int, tile: int, overlap: int) -> None:
    spans = tile_spans(size, tile, overlap)
    assert spans[0][0] == 0 and spans[-1][1] == size
    assert all(stop - start == tile for start, stop in spans)  # no sliver: every span is a whole tile
    for (a0, a1), (b0, b1) in zip(spans, spans[1:], strict=False):
        assert a0 < b0 and a1 < b1 and a1 - b0 >= overlap


def test_a_tile_as_large_as_the_side_is_one_span() -> None:
    assert tile_spans(24, 24, 4) == [(0, 24)]
    assert tile_spans(10, 32, 8) == [(0, 10)]
    assert tile_spans(24, 8, 2) == [(0, 8), (6, 14), (12, 20), (16, 24)]  # the last one moved back to end at 24


@pytest.mark.parametrize(
    ("size", "tile", "overlap"), [(24, 8, 2), (57, 32, 8), (33, 32, 8), (100, 16, 0), (224, 64, 16), (9, 4, 1)]
)
def test_weights_sum_to_one_everywhere_and_ramp_across_the_overlaps(size: int, tile: int, overlap: int) -> None:
    spans = tile_spans(size, tile, overlap)
    weights = blend_weights(spans, size, overlap)
    total = torch.zeros(size, dtype=torch.float64)
    for (start, stop), weight in zip(spans, weights, strict=True):
        assert weight.shape == (stop - start,) and weight.dtype == torch.float32
        assert (weight >= 0).all() and (weight <= 1).all()
        total[start:stop] += weight.double()
    torch.testing.assert_close(total, torch.ones(size, dtype=torch.float64), rtol=0, atol=1e-6)
    if overlap:  # a ramp, not a hard cut: the first tile's weight falls through values strictly between 0 and 1
        inner = weights[0][(weights[0] > 0) & (weights[0] < 1)]
        assert inner.numel() == overlap and (inner.diff() < 0).all()


def test_default_overlap_is_a_quarter_of_the_tile_and_always_valid() -> None:
    assert default_overlap(64, 8) == 16 and default_overlap(512, 8) == 128 and default_overlap(32, 4) == 8
    assert default_overlap(24, 8) == 8  # a quarter would round down to 0
    assert default_overlap(16, 8) == 0  # the smallest tile has no room for an overlap
    for tile in range(16, 200, 8):
        Tiling(tile, default_overlap(tile, 8)).check(8)


# ---------------------------------------------------------------------------------------------- a local stand-in VAE


class LocalDecoder:
    """A VAE decoder that is a pure per-pixel function (nearest upsampling): tiling must not change its output.
    Records the ``num_frames`` of every call, which shows the temporal chunks."""

    def __init__(self, factor: int) -> None:
        self.factor = factor
        self.calls: list[int] = []

    def decode(self, z: torch.Tensor, num_frames: int) -> SimpleNamespace:
        self.calls.append(num_frames)
        return SimpleNamespace(sample=F.interpolate(torch.tanh(z[:, :3]), scale_factor=self.factor, mode="nearest"))


def local_encode(factor: int):
    """A per-image encoder that is local to each factor x factor block (average pooling)."""
    return lambda x: F.avg_pool2d(torch.cat([x, x[:, :1] ** 2], dim=1), factor)


@pytest.mark.parametrize(("tile", "overlap"), [(16, 4), (12, 4), (8, 0), (20, 8)])
def test_tiles_land_where_they_belong_for_a_local_vae(tile: int, overlap: int) -> None:
    factor = 4
    z = torch.randn(5, 4, 13, 22, generator=torch.Generator().manual_seed(0))
    vae = LocalDecoder(factor)
    untiled = decode_latents(vae, z, 2, 0.5)
    tiled = tiled_decode(vae, z, 2, 0.5, Tiling(tile, overlap), factor)
    assert tiled.shape == (5, 3, 52, 88)
    torch.testing.assert_close(tiled, untiled, rtol=0, atol=2e-6)

    frames = torch.rand(3, 3, 52, 88, generator=torch.Generator().manual_seed(1))
    encode = local_encode(factor)
    torch.testing.assert_close(tiled_encode(encode, frames, Tiling(tile, overlap), factor), encode(frames),
                               rtol=0, atol=2e-6)


def test_every_tile_is_decoded_in_the_temporal_chunks_of_the_untiled_decode() -> None:
    vae = LocalDecoder(4)
    tiled_decode(vae, torch.randn(7, 4, 10, 10), 3, 1.0, Tiling(24, 8), 4)  # latent tile 6: 2 x 2 tiles
    assert vae.calls == [3, 3, 1] * 4


def test_tiles_keep_the_decoders_dtype() -> None:
    z = torch.randn(2, 4, 12, 12).half()
    tiled = tiled_decode(LocalDecoder(4), z, 2, 1.0, Tiling(24, 8), 4)
    assert tiled.dtype == torch.float16


# ---------------------------------------------------------------------------------------------- relumix-tiny


def panned_source(frames: int, height: int, width: int) -> torch.Tensor:
    """A pan across the bundled synthetic strip (frames side by side): [T, 3, H, W] in [-1, 1]."""
    strip = torch.from_numpy(np.array(Image.open(SOURCE).convert("RGB"))).permute(2, 0, 1).float() / 255
    clip = [strip[:, :height, 8 * t : 8 * t + width] for t in range(frames)]
    return torch.stack(clip) * 2 - 1


@pytest.fixture(scope="module")
def tiny() -> SimpleNamespace:
    """relumix-tiny's VAE and frame encoder, latents of a 2-frame 64x96 clip, and their untiled decode."""
    if not WEIGHTS.is_file():
        pytest.skip(f"the relumix-tiny weights are missing ({WEIGHTS})")
    from relumix_core.checkpoints.loading import load_relumix

    model, _ = load_relumix(WEIGHTS)
    vae, encoder, scale = model.component("vae"), model.component("frame_encoder"), model.config.scale_factor
    frames = panned_source(2, 64, 96)
    with torch.no_grad():
        latents = encoder(frames)
        z = latents * scale
        decoded = decode_latents(vae, z, 2, scale)
    return SimpleNamespace(vae=vae, encoder=encoder, scale=scale, factor=model.latent_factor, frames=frames,
                           latents=latents, z=z, decoded=decoded)


@needs_tiny
def test_one_tile_over_the_whole_picture_is_exactly_untiled(tiny: SimpleNamespace) -> None:
    with torch.no_grad():
        decoded = tiled_decode(tiny.vae, tiny.z, 2, tiny.scale, Tiling(96, 16), tiny.factor)
        encoded = tiled_encode(tiny.encoder, tiny.frames, Tiling(128, 16), tiny.factor)
    assert torch.equal(decoded, tiny.decoded)
    assert torch.equal(encoded, tiny.latents)


@needs_tiny
def test_real_tiling_is_close_to_untiled_but_not_identical(tiny: SimpleNamespace) -> None:
    tiling = Tiling(32, 8)  # 8x8 latent tiles on a 16x24 latent: 3 x 4 tiles
    with torch.no_grad():
        decoded = tiled_decode(tiny.vae, tiny.z, 2, tiny.scale, tiling, tiny.factor)
        encoded = tiled_encode(tiny.encoder, tiny.frames, tiling, tiny.factor)
    pixel_error = ((decoded.clamp(-1, 1) - tiny.decoded.clamp(-1, 1)) / 2).abs()  # in [0, 1] image units
    assert 0 < pixel_error.mean() < MAX_MEAN_DECODE and pixel_error.max() < MAX_DECODE
    latent_error = (encoded - tiny.latents).abs() / tiny.latents.std()
    assert 0 < latent_error.mean() < MAX_MEAN_ENCODE and latent_error.max() < MAX_ENCODE


@needs_tiny
def test_a_chunked_tiled_decode_is_the_per_chunk_tiled_decodes(tiny: SimpleNamespace) -> None:
    tiling, z = Tiling(32, 8), tiny.z[..., :8, :12]  # 1 x 2 tiles of 8x8 latents
    with torch.no_grad():
        chunked = tiled_decode(tiny.vae, z, 1, tiny.scale, tiling, tiny.factor)
        parts = [tiled_decode(tiny.vae, z[i : i + 1], 1, tiny.scale, tiling, tiny.factor) for i in (0, 1)]
        whole = tiled_decode(tiny.vae, z, 2, tiny.scale, tiling, tiny.factor)
    assert torch.equal(chunked, torch.cat(parts))
    assert not torch.allclose(chunked, whole, atol=1e-4)  # the chunks matter, so the equality above says something


# ---------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("tiling", "factor", "words"),
    [
        (Tiling(6, 0), 8, ("tile 6", "factor 8", "at least 16 pixels")),
        (Tiling(4, 0), 4, ("tile 4", "at least 8 pixels")),
        (Tiling(0, 0), 8, ("tile 0", "at least 16")),
        (Tiling(-16, 0), 8, ("tile -16",)),
        (Tiling(20, 0), 8, ("tile 20", "not a multiple", "16 or 24")),
        (Tiling(64, -8), 8, ("overlap -8", "negative")),
        (Tiling(64, 12), 8, ("overlap 12", "not a multiple", "8 pixels")),
        (Tiling(64, 32), 8, ("overlap 32", "half the tile 64", "at most 24")),
        (Tiling(64, 40), 8, ("overlap 40", "half the tile 64")),
        (Tiling(16, 8), 8, ("overlap 8", "at most 0")),
    ],
)
def test_bad_tilings_are_a_clear_error_naming_the_value(tiling: Tiling, factor: int, words: tuple[str, ...]) -> None:
    with pytest.raises(ReLumixError) as raised:
        tiling.check(factor)
    message = str(raised.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_the_tiled_functions_check_the_tiling_before_any_work() -> None:
    vae = LocalDecoder(8)
    with pytest.raises(ReLumixError, match="tile 6"):
        tiled_decode(vae, torch.randn(1, 4, 8, 8), 1, 1.0, Tiling(6, 0), 8)
    assert vae.calls == []
    with pytest.raises(ReLumixError, match="overlap 32"):
        tiled_encode(local_encode(8), torch.rand(1, 3, 64, 64), Tiling(64, 32), 8)
    with pytest.raises(ReLumixError, match="60x64"):
        tiled_encode(local_encode(4), torch.rand(1, 3, 60, 64), Tiling(32, 8), 8)


def test_spans_refuse_an_overlap_that_leaves_no_step() -> None:
    with pytest.raises(ValueError, match="overlap"):
        tile_spans(64, 16, 16)
