"""Spatial tiling of the VAE decode and encode: bounded memory for frames too large to decode in one piece.

The latent (decode) or the frames (encode) are cut into overlapping tiles; each tile goes through the VAE alone and
the results are blended with linear ramps across the overlaps (weights summing to 1 everywhere), one tile at a time
into a float32 accumulator. The decode keeps the authors' temporal chunks: every tile is decoded by
:func:`~relumix_core.models.vae.decode_latents`, chunk by chunk, exactly as an untiled decode would be.

Tiling is not exact, and cannot be: a tile sees only its own pixels. The temporal decoder's mid block runs spatial
self-attention over the whole latent, every GroupNorm (encoder and decoder) normalises with statistics of the whole
picture, and convolutions near a tile border see zero padding instead of the neighbouring pixels. The overlap hides
the padding; attention and normalisation statistics differ per tile, which shows as small low-frequency shifts
between tiles that the ramps spread out. ``bench/vae_tiling_error.py`` measures the error. With one tile covering
the whole picture both functions return the untiled result exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise

import torch
from diffusers import AutoencoderKLTemporalDecoder

from ..errors import ReLumixError
from .vae import decode_latents

Span = tuple[int, int]
#: Runs the VAE on one tile, given the tile's row and column slices of the input.
TileFn = Callable[[slice, slice], torch.Tensor]


@dataclass(frozen=True)
class Tiling:
    """Tile side and overlap in pixels at the processing size (what a user types); tiles are square."""

    tile: int
    overlap: int

    def check(self, factor: int) -> None:
        """Raise a one-line :class:`ReLumixError` naming the bad value and a fix, before any work is done."""
        tile, overlap = self.tile, self.overlap
        if tile < 2 * factor:
            raise ReLumixError(
                f"tile {tile} is smaller than twice the VAE's factor {factor}: use a tile of at least "
                f"{2 * factor} pixels, a multiple of {factor}"
            )
        if tile % factor:
            lower = tile // factor * factor
            raise ReLumixError(
                f"tile {tile} is not a multiple of the VAE's factor {factor}: use {lower} or {lower + factor} pixels"
            )
        if overlap < 0:
            raise ReLumixError(f"overlap {overlap} is negative: use 0 or a positive multiple of {factor}")
        if overlap % factor:
            raise ReLumixError(
                f"overlap {overlap} is not a multiple of the VAE's factor {factor}: use "
                f"{min(overlap // factor * factor, _largest_overlap(tile, factor))} pixels"
            )
        if 2 * overlap >= tile:
            raise ReLumixError(
                f"overlap {overlap} is not less than half the tile {tile} (blending needs the tile's middle): use an "
                f"overlap of at most {_largest_overlap(tile, factor)} pixels, e.g. {default_overlap(tile, factor)}"
            )


def _largest_overlap(tile: int, factor: int) -> int:
    """The largest multiple of ``factor`` strictly below ``tile / 2``."""
    return (tile - 1) // 2 // factor * factor


def default_overlap(tile: int, factor: int) -> int:
    """About a quarter of the tile, a multiple of ``factor``, at least ``factor`` where the tile allows it: wide
    enough to hide the border effects of the convolutions, narrow enough to keep the overhead of the overlap low."""
    quarter = max(tile // 4 // factor * factor, factor)
    return min(quarter, _largest_overlap(tile, factor))


# ---------------------------------------------------------------------------------------------- spans and weights


def tile_spans(size: int, tile: int, overlap: int) -> list[Span]:
    """Start/stop spans covering ``[0, size)``: a step of ``tile - overlap``, the last span moved back to end at
    ``size`` (so there is never a sliver of a tile), one span when the tile covers the whole side."""
    if size < 1 or tile < 1:
        raise ValueError(f"size and tile must be positive, got size {size}, tile {tile}")
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile {tile}), got {overlap}")
    if tile >= size:
        return [(0, size)]
    step = tile - overlap
    spans = [(start, start + tile) for start in range(0, size - tile, step)]
    return spans + [(size - tile, size)]


def _ramp_starts(spans: list[Span], overlap: int) -> list[int]:
    """Where the ``overlap``-wide ramp between each pair of consecutive spans starts.

    The ramp is centred in the pair's overlap (the moved-back last span overlaps more than ``overlap``), but never
    starts before the previous ramp ends, so at most two spans share any position.
    """
    starts: list[int] = []
    previous_end = 0
    for (_, stop), (start, _) in pairwise(spans):
        low, high = max(start, previous_end), stop - overlap
        if low > high:
            raise ValueError(f"spans {spans} leave no room for ramps of width {overlap}")
        ramp = min(max((start + stop - overlap) // 2, low), high)
        starts.append(ramp)
        previous_end = ramp + overlap
    return starts


def _rise(positions: torch.Tensor, ramp: int, width: int) -> torch.Tensor:
    """0 before the ramp, (j + 1) / (width + 1) at its j-th position, 1 after it (a hard cut when width is 0)."""
    return ((positions - ramp + 1) / (width + 1)).clamp(0.0, 1.0)


def blend_weights(spans: list[Span], size: int, overlap: int) -> list[torch.Tensor]:
    """One float32 weight per position of each span: linear ramps across the overlaps, summing to 1 everywhere."""
    if not spans or spans[0][0] != 0 or spans[-1][1] != size:
        raise ValueError(f"spans {spans} do not cover [0, {size})")
    ramps = _ramp_starts(spans, overlap)
    weights = []
    for k, (start, stop) in enumerate(spans):
        positions = torch.arange(start, stop, dtype=torch.float64)
        weight = torch.ones_like(positions)
        if k > 0:
            weight = weight * _rise(positions, ramps[k - 1], overlap)
        if k < len(ramps):
            weight = weight * (1.0 - _rise(positions, ramps[k], overlap))
        weights.append(weight.float())
    return weights


# ---------------------------------------------------------------------------------------------- blending


def _scaled(spans: list[Span], scale: int) -> list[Span]:
    return [(start * scale, stop * scale) for start, stop in spans]


def _blend_tiles(
    run: TileFn, inputs: tuple[list[Span], list[Span]], outputs: tuple[list[Span], list[Span]], out_overlap: int
) -> torch.Tensor:
    """Run every tile and add it, weighted, into a float32 accumulator; only one tile's output is alive at a time.

    ``inputs``/``outputs`` are the (row, column) spans of the tiles in input and output units.
    """
    (rows_in, cols_in), (rows_out, cols_out) = inputs, outputs
    height, width = rows_out[-1][1], cols_out[-1][1]
    row_weights = blend_weights(rows_out, height, out_overlap)
    col_weights = blend_weights(cols_out, width, out_overlap)
    acc: torch.Tensor | None = None
    dtype = torch.float32
    for (r0, r1), (o0, o1), row_w in zip(rows_in, rows_out, row_weights, strict=True):
        for (c0, c1), (p0, p1), col_w in zip(cols_in, cols_out, col_weights, strict=True):
            tile = run(slice(r0, r1), slice(c0, c1))
            if tile.shape[-2:] != (o1 - o0, p1 - p0):
                raise ValueError(
                    f"the VAE turned a {r1 - r0}x{c1 - c0} tile into {tuple(tile.shape[-2:])}, expected "
                    f"{(o1 - o0, p1 - p0)}: is the factor right?"
                )
            if acc is None:
                acc = tile.new_zeros((*tile.shape[:-2], height, width), dtype=torch.float32)
                dtype = tile.dtype
            weight = (row_w[:, None] * col_w[None, :]).to(acc.device)
            acc[..., o0:o1, p0:p1] += tile.float() * weight
            del tile
    assert acc is not None  # spans are never empty
    return acc.to(dtype)


def _latent_spans(height: int, width: int, tiling: Tiling, factor: int) -> tuple[list[Span], list[Span]]:
    """Row and column spans in latent pixels for a latent of ``height`` x ``width``."""
    tile, overlap = tiling.tile // factor, tiling.overlap // factor
    return tile_spans(height, tile, overlap), tile_spans(width, tile, overlap)


def tiled_decode(
    vae: AutoencoderKLTemporalDecoder,
    z_scaled: torch.Tensor,
    chunk_size: int,
    scale_factor: float,
    tiling: Tiling,
    factor: int,
) -> torch.Tensor:
    """:func:`~relumix_core.models.vae.decode_latents` tile by tile: latents [N,C,h,w] -> frames [N,3,h*f,w*f].

    Each latent tile is decoded on its own, in the same temporal chunks of ``chunk_size`` rows as untiled, and the
    decoded tiles are blended in pixel space. One tile covering the latent gives exactly the untiled decode.
    """
    tiling.check(factor)
    rows, cols = _latent_spans(z_scaled.shape[-2], z_scaled.shape[-1], tiling, factor)
    if len(rows) == len(cols) == 1:
        return decode_latents(vae, z_scaled, chunk_size, scale_factor)

    def run(r: slice, c: slice) -> torch.Tensor:
        return decode_latents(vae, z_scaled[..., r, c], chunk_size, scale_factor)

    outputs = (_scaled(rows, factor), _scaled(cols, factor))
    return _blend_tiles(run, (rows, cols), outputs, tiling.overlap)


def tiled_encode(
    encode: Callable[[torch.Tensor], torch.Tensor], frames: torch.Tensor, tiling: Tiling, factor: int
) -> torch.Tensor:
    """A per-image encoder (frames [N,3,H,W] -> [N,C,H/f,W/f]) tile by tile: tiles cut in pixel space, blended in
    latent space. One tile covering the frames gives exactly ``encode(frames)``."""
    tiling.check(factor)
    height, width = frames.shape[-2:]
    if height % factor or width % factor:
        raise ReLumixError(
            f"frames of {height}x{width} cannot be encoded in tiles: both sides must be multiples of the VAE's "
            f"factor {factor}"
        )
    rows, cols = _latent_spans(height // factor, width // factor, tiling, factor)
    if len(rows) == len(cols) == 1:
        return encode(frames)

    def run(r: slice, c: slice) -> torch.Tensor:
        return encode(frames[..., r, c])

    inputs = (_scaled(rows, factor), _scaled(cols, factor))
    return _blend_tiles(run, inputs, (rows, cols), tiling.overlap // factor)
