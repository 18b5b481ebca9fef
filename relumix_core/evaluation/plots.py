"""Report figures drawn with Pillow alone, so evaluation needs no plotting library.

``plot_curves`` draws line charts (per-frame PSNR per method), ``strip`` lays clips out as labelled rows of frames
(input / reference / output / ground truth), and ``save_png`` writes either atomically.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

#: One colour per series, chosen to stay distinct on white and for common colour-vision deficiencies.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")
FONT_SIZE = 14
PLOT_SIZE = (800, 480)
_MARGIN_LEFT, _MARGIN_RIGHT, _MARGIN_TOP, _MARGIN_BOTTOM = 80, 200, 40, 60


def _font(size: int = FONT_SIZE) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def _text_size(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont) -> tuple:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return right - left, bottom - top


def nice_ticks(low: float, high: float, count: int = 6) -> list[float]:
    """Round tick values (1, 2 or 5 times a power of ten apart) covering [low, high]."""
    if not high > low:
        high = low + 1.0
    raw = (high - low) / max(1, count - 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(low / step + 1e-9) * step
    count_needed = max(1, math.ceil((high - first) / step - 1e-6))  # the last tick reaches high: no curve leaves
    return [round(first + i * step, 10) for i in range(count_needed + 1)]


def _tick_label(value: float, ticks: list[float]) -> str:
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    decimals = max(0, -math.floor(math.log10(step))) if step > 0 else 0
    return f"{value:.{decimals}f}"


def _y_range(series: dict[str, list[float]]) -> tuple[float, float]:
    finite = [v for values in series.values() for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return 0.0, 1.0
    low, high = min(finite), max(finite)
    if high - low < 1e-9:
        return low - 0.5, high + 0.5
    pad = 0.05 * (high - low)
    return low - pad, high + pad


def _x_ticks(length: int, x_labels: Sequence[str] | None) -> list[tuple[float, str]]:
    """Tick positions and labels: round indices, or with ``x_labels`` one labelled tick per index (every few when
    there are many)."""
    if x_labels is not None:
        every = max(1, math.ceil(len(x_labels) / 12))
        return [(float(i), str(label)) for i, label in enumerate(x_labels) if i % every == 0]
    last = max(1, length - 1)
    ticks = nice_ticks(0, last, count=min(8, max(2, length)))
    return [(t, str(int(t))) for t in ticks if float(t).is_integer() and t <= last] or [(0.0, "0")]


def plot_curves(series: dict[str, list[float]], title: str, xlabel: str, ylabel: str,
                x_labels: Sequence[str] | None = None) -> Image.Image:
    """A line chart: x is the list index (0, 1, ...), one coloured line per series with a legend on the right.

    NaN or None values leave gaps (points alone get a dot), so a metric undefined at some frames still plots.
    ``x_labels`` names the points (e.g. perturbation levels that are not evenly spaced): one tick per index.
    """
    width, height = PLOT_SIZE
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font = _font()
    x0, y0, x1, y1 = _MARGIN_LEFT, _MARGIN_TOP, width - _MARGIN_RIGHT, height - _MARGIN_BOTTOM
    length = max((len(v) for v in series.values()), default=0)
    x_ticks = _x_ticks(length, x_labels)
    x_max = max(1.0, float(length - 1), x_ticks[-1][0])
    y_ticks = nice_ticks(*_y_range(series))
    y_low, y_high = y_ticks[0], y_ticks[-1]

    def px(x: float, y: float) -> tuple[float, float]:
        return x0 + (x1 - x0) * x / x_max, y1 - (y1 - y0) * (y - y_low) / (y_high - y_low)

    for t in y_ticks:
        _, yy = px(0, t)
        draw.line([(x0, yy), (x1, yy)], fill="#e6e6e6")
        label = _tick_label(t, y_ticks)
        tw, th = _text_size(draw, label, font)
        draw.text((x0 - 8 - tw, yy - th / 2 - 2), label, fill="black", font=font)
    for t, label in x_ticks:
        xx, _ = px(t, y_low)
        draw.line([(xx, y1), (xx, y1 + 5)], fill="black")
        tw, _ = _text_size(draw, label, font)
        draw.text((xx - tw / 2, y1 + 8), label, fill="black", font=font)
    draw.rectangle([x0, y0, x1, y1], outline="black")

    for i, (name, values) in enumerate(series.items()):
        colour = PALETTE[i % len(PALETTE)]
        run: list[tuple[float, float]] = []
        for t, v in enumerate([*values, None]):
            if v is not None and math.isfinite(v):
                run.append(px(t, v))
                continue
            if len(run) > 1:
                draw.line(run, fill=colour, width=2)
            for x, y in run:
                draw.ellipse([x - 2.5, y - 2.5, x + 2.5, y + 2.5], fill=colour)
            run = []
        ly = y0 + 4 + i * (FONT_SIZE + 8)
        draw.line([(x1 + 12, ly + FONT_SIZE / 2), (x1 + 36, ly + FONT_SIZE / 2)], fill=colour, width=3)
        draw.text((x1 + 42, ly), name, fill="black", font=font)

    tw, _ = _text_size(draw, title, font)
    draw.text(((x0 + x1) / 2 - tw / 2, 12), title, fill="black", font=font)
    tw, _ = _text_size(draw, xlabel, font)
    draw.text(((x0 + x1) / 2 - tw / 2, height - 26), xlabel, fill="black", font=font)
    tw, th = _text_size(draw, ylabel, font)
    label = Image.new("RGB", (tw + 4, th + 8), "white")
    ImageDraw.Draw(label).text((2, 0), ylabel, fill="black", font=font)
    label = label.rotate(90, expand=True)
    image.paste(label, (8, int((y0 + y1) / 2 - label.height / 2)))
    return image


def _to_image(frame: torch.Tensor, scale: int) -> Image.Image:
    arr = (frame.detach().float().cpu().clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()
    image = Image.fromarray(np.ascontiguousarray(arr))
    return image.resize((image.width * scale, image.height * scale), Image.NEAREST) if scale > 1 else image


def strip(rows: dict[str, torch.Tensor], frames: list[int], scale: int = 1, gap: int = 4) -> Image.Image:
    """Rows of frames side by side, one labelled row per entry, a ``t=..`` header per column.

    A row is a clip ``[T,3,H,W]`` (the ``frames`` columns are shown) or one image ``[3,H,W]``, shown once in the
    first column (a reference). ``scale`` enlarges each pixel to scale x scale, for small test frames.
    """
    if not rows or not frames:
        raise ValueError("strip needs at least one row and one frame")
    scale = max(1, int(scale))
    first = next(iter(rows.values()))
    h, w = first.shape[-2] * scale, first.shape[-1] * scale
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    font = _font()
    label_w = max(_text_size(probe, name, font)[0] for name in rows) + 2 * gap + 8
    header_h = FONT_SIZE + 2 * gap
    width = label_w + len(frames) * (w + gap)
    height = header_h + len(rows) * (h + gap) + gap
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    for j, t in enumerate(frames):
        draw.text((label_w + j * (w + gap), gap // 2), f"t={t}", fill="black", font=font)
    for i, (name, clip) in enumerate(rows.items()):
        top = header_h + i * (h + gap)
        _, th = _text_size(draw, name, font)
        draw.text((gap, top + h / 2 - th / 2 - 2), name, fill="black", font=font)
        tiles = [clip] if clip.dim() == 3 else [clip[t] for t in frames]
        for j, tile in enumerate(tiles):
            image.paste(_to_image(tile, scale), (label_w + j * (w + gap), top))
    return image


def save_png(image: Image.Image, path: str | os.PathLike[str]) -> Path:
    """Write ``image`` as PNG via a hidden temporary file in the same folder, so a reader never sees half a file."""
    from ..atomic import atomic_path

    target = Path(path)
    with atomic_path(target, overwrite=True) as tmp:
        image.save(tmp, format="PNG")
    return target


__all__ = ["PALETTE", "nice_ticks", "plot_curves", "save_png", "strip"]
