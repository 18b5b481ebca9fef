"""Read and write video frames as uint8 RGB numpy arrays, and nothing else.

Inputs: anything FFmpeg (through PyAV) decodes (mp4, webm, mov, mkv, animated gif, ...), a still or animated image
(png, jpg, jpeg, webp), a folder of images, or a printf pattern such as ``frames/%05d.png``. Outputs: ``.mp4``
(H.264), ``.webm`` (VP9), ``.gif``, or a PNG sequence (a folder, or a printf pattern).

Writes are atomic: frames are encoded into a hidden ``.<name>.<random>.partial`` file or folder beside the target
and moved into place only once everything succeeded, so an error or Ctrl-C never leaves a half-written video that
looks finished. User mistakes (missing files, undecodable files, existing outputs, unknown formats) raise
:class:`VideoError` with one line naming the path and what to do; malformed frame arrays (a bug in the caller)
raise ``ValueError``.
"""

from __future__ import annotations

import math
import os
import re
import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageOps, ImageSequence

from ..atomic import atomic_folder, atomic_path, hidden_sibling
from ..errors import ReLumixError

#: Frame rate reported for inputs that carry none (still images, image sequences).
DEFAULT_FPS = 24.0
#: Image files read with Pillow: as a single frame, in folders, and through printf patterns.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
#: Video files :func:`write_video` can encode; a folder or a printf pattern gives a PNG sequence instead.
SUPPORTED_VIDEO_SUFFIXES = (".mp4", ".webm", ".gif")
#: File names of a PNG sequence written into a folder.
SEQUENCE_FRAME_NAME = "frame_{:05d}.png"
#: What an error about an existing output tells the user to do.
OVERWRITE_HINT = "pass --force to overwrite"

# Container format, codec, pixel format and codec options per suffix. H.264 at CRF 18 is visually lossless for most
# footage; VP9 at CRF 24 with b=0 is constant-quality mode; cpu-used 4 + row-mt keep VP9 encoding bearable.
_AV_ENCODERS: dict[str, tuple[str, str, str, dict[str, str]]] = {
    ".mp4": ("mp4", "libx264", "yuv420p", {"crf": "18", "preset": "medium"}),
    ".webm": ("webm", "libvpx-vp9", "yuv420p", {"crf": "24", "b": "0", "cpu-used": "4", "row-mt": "1"}),
}
# GIF delays are counted in 1/100 s and browsers play delays below 2/100 s slowly, so faster GIFs cannot be honest.
_GIF_MAX_FPS = 50.0
_PRINTF = re.compile(r"%(0\d+)?d")
_SEQUENCE_NAME = re.compile(r"frame_\d+\.png\Z")


class VideoError(ReLumixError):
    """A video, image or image sequence is missing, unreadable, or cannot be written where asked."""


# ---------------------------------------------------------------------------------------------------------- reading


def read_video(path: str | os.PathLike[str]) -> tuple[np.ndarray, float]:
    """Frames as uint8 ``[T, H, W, 3]`` RGB and the frame rate of a video, image, image folder or printf pattern.

    Still images and image sequences carry no frame rate and report :data:`DEFAULT_FPS`. Video files report the
    stream's average rate; GIFs report frames divided by the summed frame delays (FFmpeg's own GIF estimate is off).
    Alpha is dropped (the colour channels are kept as stored), grey and palette images become RGB, and 16-bit images
    are scaled to 8 bits. Folders are read in natural name order (``2.png`` before ``10.png``), skipping hidden
    files and non-image files; patterns in the order of their frame number.
    """
    target = Path(path)
    if not target.exists():
        if _PRINTF.search(target.name):
            return _stack_same_size([file for _, file in _pattern_files(target, must_exist=True)]), DEFAULT_FPS
        raise VideoError(f"{target} does not exist; check the path")
    if target.is_dir():
        return _stack_same_size(_folder_images(target)), DEFAULT_FPS
    if target.suffix.lower() in IMAGE_SUFFIXES:
        return _read_image_file(target)
    return _read_with_av(target)


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """One image as uint8 ``[H, W, 3]`` RGB (the first frame of an animated one), e.g. a relit reference frame.

    EXIF orientation is applied, alpha dropped, grey/palette/16-bit converted as in :func:`read_video`.
    """
    target = Path(path)
    if not target.exists():
        raise VideoError(f"{target} does not exist; check the path")
    if target.is_dir():
        raise VideoError(f"{target} is a folder; pass an image file ({_suffix_list(IMAGE_SUFFIXES)})")
    return _load_rgb(target)


def _suffix_list(suffixes: tuple[str, ...]) -> str:
    return ", ".join(s.lstrip(".") for s in suffixes)


def _to_rgb_array(img: Image.Image) -> np.ndarray:
    """uint8 [H,W,3] from any Pillow mode: 16-bit and 32-bit integer greys are scaled, not clipped as Pillow does."""
    if img.mode.startswith("I"):  # I;16, I;16B, I;16L, I: 16-bit samples (Pillow opens 16-bit grey PNGs so)
        grey = np.asarray(img).astype(np.float64)
        grey = np.clip(np.rint(grey / 257.0), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if img.mode == "F":  # float images (TIFF, EXR-like): taken as display-referred 0..1
        grey = np.nan_to_num(np.asarray(img, dtype=np.float64))
        grey = np.clip(np.rint(grey * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if img.mode in ("P", "PA"):  # go through RGBA so palette transparency is handled (and then dropped)
        img = img.convert("RGBA")
    if img.mode != "RGB":
        img = img.convert("RGB")  # drops alpha, expands grey, converts CMYK/YCbCr/LAB
    return np.asarray(img, dtype=np.uint8).copy()


def _load_rgb(file: Path) -> np.ndarray:
    """One image file through Pillow, with decoding errors turned into a VideoError naming the file."""
    try:
        with Image.open(file) as img:
            return _to_rgb_array(ImageOps.exif_transpose(img))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise VideoError(f"cannot read {file} as an image ({_one_line(err)}); is it a valid image file?") from err


def _read_image_file(file: Path) -> tuple[np.ndarray, float]:
    """A still image (T=1, DEFAULT_FPS) or an animated PNG/WebP (all frames, fps from the frame durations)."""
    try:
        with Image.open(file) as img:
            if getattr(img, "n_frames", 1) <= 1:
                return _to_rgb_array(ImageOps.exif_transpose(img))[None], DEFAULT_FPS
            frames, total_ms = [], 0.0
            for frame in ImageSequence.Iterator(img):
                rgb = _to_rgb_array(frame)
                if frames and rgb.shape != frames[0].shape:
                    raise VideoError(f"{file} has frames of different sizes; re-export it with one frame size")
                frames.append(rgb)
                total_ms += float(frame.info.get("duration") or 0)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise VideoError(f"cannot read {file} as an image ({_one_line(err)}); is it a valid image file?") from err
    fps = len(frames) * 1000.0 / total_ms if total_ms > 0 else DEFAULT_FPS
    return np.stack(frames), fps


def _natural_key(file: Path) -> tuple[list[str | int], str]:
    """Sort key putting ``frame2`` before ``frame10``; digits and text alternate, so the parts always compare."""
    parts: list[str | int] = [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", file.name.lower())]
    return parts, file.name


def _folder_images(folder: Path) -> list[Path]:
    """The image files of a folder in natural order; hidden files (``._x.png``, our ``.partial``) are skipped."""
    try:
        files = [
            f
            for f in folder.iterdir()
            if f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".") and f.is_file()
        ]
    except OSError as err:
        raise VideoError(f"cannot list {folder} ({_one_line(err)}); check its permissions") from err
    if not files:
        raise VideoError(f"{folder} holds no {_suffix_list(IMAGE_SUFFIXES)} images; point to a folder of frames")
    return sorted(files, key=_natural_key)


def _pattern_parts(pattern: Path) -> tuple[str, str, str]:
    """Text before the single ``%d``/``%05d`` of a pattern's file name, the specifier, and the text after it."""
    specs = list(_PRINTF.finditer(pattern.name))
    if len(specs) != 1:
        raise VideoError(f"{pattern} must contain exactly one frame number such as %05d, e.g. frames/%05d.png")
    spec = specs[0]
    return pattern.name[: spec.start()], spec.group(), pattern.name[spec.end() :]


def _pattern_files(pattern: Path, must_exist: bool) -> list[tuple[int, Path]]:
    """(frame number, file) of the files a printf pattern names, by number; only exact printf spellings count."""
    head, spec, tail = _pattern_parts(pattern)
    folder = pattern.parent
    if not folder.is_dir():
        raise VideoError(f"folder {folder} does not exist; check the path of {pattern}")
    regex = re.compile(re.escape(head) + r"(\d+)" + re.escape(tail) + r"\Z")
    hits = []
    for entry in folder.iterdir():
        match = regex.match(entry.name)
        if match and entry.name == head + spec % int(match.group(1)) + tail and entry.is_file():
            hits.append((int(match.group(1)), entry))
    if must_exist and not hits:
        raise VideoError(f"no files match {pattern}; check the folder and the number of digits")
    return sorted(hits)


def _stack_same_size(files: list[Path]) -> np.ndarray:
    """Decode files one at a time and stack them; every frame must have the first frame's size."""
    frames = [_load_rgb(files[0])]
    height, width = frames[0].shape[:2]
    for file in files[1:]:
        rgb = _load_rgb(file)
        if rgb.shape != frames[0].shape:
            raise VideoError(
                f"{file} is {rgb.shape[1]}x{rgb.shape[0]} but {files[0].name} is {width}x{height}; "
                "all frames of a sequence must have the same size"
            )
        frames.append(rgb)
    return np.stack(frames)


def _read_with_av(file: Path) -> tuple[np.ndarray, float]:
    """Decode the first video stream of a file with PyAV; frames whose size changes mid-stream are rescaled."""
    frames: list[np.ndarray] = []
    try:
        with av.open(str(file)) as container:
            if not container.streams.video:
                raise VideoError(f"{file} has no video stream; pass a video or image file")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            start: Fraction | None = None
            end: Fraction | None = None
            for frame in container.decode(stream):
                if frames and (frame.height, frame.width) != frames[0].shape[:2]:
                    frame = frame.reformat(width=frames[0].shape[1], height=frames[0].shape[0])
                frames.append(frame.to_ndarray(format="rgb24"))
                if frame.pts is not None and frame.time_base is not None:
                    start = frame.pts * frame.time_base if start is None else start
                    end = (frame.pts + (getattr(frame, "duration", None) or 0)) * frame.time_base
            is_gif = container.format.name == "gif"
            rate = stream.average_rate or stream.guessed_rate
    except av.error.EOFError as err:  # FFmpeg hit the end while still probing: a header without any frames
        raise VideoError(_no_frames(file)) from err
    except (av.error.FFmpegError, OSError, ValueError) as err:
        raise VideoError(f"cannot decode {file} ({_one_line(err)}); is it a video or image file?") from err
    if not frames:
        raise VideoError(_no_frames(file))
    fps = float(rate) if rate else DEFAULT_FPS
    if is_gif and start is not None and end is not None and end > start:
        fps = len(frames) / float(end - start)
    return np.stack(frames), fps


def _no_frames(file: Path) -> str:
    return f"{file} has no video frames (empty or truncated?); export it again or choose another file"


def _one_line(err: BaseException) -> str:
    text = " ".join(part.strip() for part in str(err).splitlines() if part.strip())
    return text or type(err).__name__


# ---------------------------------------------------------------------------------------------------------- writing


def describe_formats() -> str:
    """The accepted inputs and outputs, for CLI help texts."""
    return (
        "input: a video file (mp4, webm, mov, mkv, gif, ... whatever FFmpeg decodes), an image "
        f"({_suffix_list(IMAGE_SUFFIXES)}), a folder of images, or a pattern like frames/%05d.png; "
        "output: .mp4 (H.264), .webm (VP9), .gif, a folder (a path ending in '/' or without suffix: "
        "frame_00000.png, ...) or a pattern like frames/%05d.png (PNG frames numbered from 0)"
    )


def write_video(path: str | os.PathLike[str], frames: np.ndarray, fps: float, overwrite: bool = False) -> Path:
    """Write frames (uint8 ``[T, H, W, 3]`` RGB, or floats in 0..1) atomically; returns the path written.

    The format follows the path: ``.mp4`` (H.264 yuv420p, CRF 18; odd widths/heights are padded to even by
    repeating the last row/column, because yuv420p H.264 needs even sides, so the file is up to 1 px larger),
    ``.webm`` (VP9 yuv420p, CRF 24, any size), ``.gif`` (a 256-colour palette per frame, loops forever, at most
    50 fps since delays are in 1/100 s), a folder (path ending in '/', without suffix, or an existing folder:
    ``frame_00000.png`` ...) or a printf pattern (``frames/%05d.png``: PNG files numbered from 0). PNG sequences
    store no frame rate. The parent folder must exist; an existing output is only replaced with ``overwrite``.
    """
    raw = os.fspath(path)
    target = Path(raw)
    frames = _check_frames(frames)
    try:
        rate = float(fps)  # also numpy scalars and Fractions
    except (TypeError, ValueError):
        rate = math.nan
    if not math.isfinite(rate) or rate <= 0:
        raise VideoError(f"cannot write {target}: the frame rate must be a positive number, got {fps!r}")
    kind = check_output(raw, overwrite)
    if kind == "pattern":
        return _write_pattern(target, frames)
    if kind == "folder":
        return _write_folder(target, frames)
    suffix = target.suffix.lower()
    if suffix == ".gif" and rate > _GIF_MAX_FPS:
        raise VideoError(f"cannot write {target} at {rate:g} fps: GIF plays at most {_GIF_MAX_FPS:g} fps; use .mp4")
    with atomic_path(target) as tmp:
        try:
            if suffix == ".gif":
                _encode_gif(tmp, frames, rate)
            else:
                _encode_av(tmp, frames, rate, *_AV_ENCODERS[suffix])
        except av.error.FFmpegError as err:
            raise VideoError(f"cannot encode {target} ({_one_line(err)})") from err
    return target


def check_output(path: str | os.PathLike[str], overwrite: bool = False) -> str:
    """Every check :func:`write_video` makes on its path, without writing: call it before a long run so that a
    bad output path fails at once. Returns the kind of output: ``"file"``, ``"folder"`` or ``"pattern"``."""
    raw = os.fspath(path)
    target = Path(raw)
    if _PRINTF.search(target.name):
        _, _, tail = _pattern_parts(target)
        if not tail.lower().endswith(".png"):
            raise VideoError(f"cannot write {target}: image sequences are written as PNG; end the pattern in .png")
        _check_parent(target)
        existing = _pattern_files(target, must_exist=False)
        if existing and not overwrite:
            raise VideoError(f"{existing[0][1]} exists (matches {target}); {OVERWRITE_HINT}")
        return "pattern"
    is_folder = raw.endswith(("/", os.sep) + ((os.altsep,) if os.altsep else ())) or target.is_dir()
    if is_folder or not target.suffix:
        _check_parent(target)
        if target.exists():
            if not target.is_dir():
                raise VideoError(f"{target} is a file, not a folder; choose another output path")
            visible = sorted(e.name for e in target.iterdir() if not e.name.startswith("."))
            foreign = [name for name in visible if not _SEQUENCE_NAME.match(name)]
            if foreign:
                raise VideoError(
                    f"{target} holds files other than frame_NNNNN.png (e.g. {foreign[0]}); write into a new or "
                    "empty folder"
                )
            if visible and not overwrite:
                raise VideoError(f"{target} exists; {OVERWRITE_HINT}")
        return "folder"
    suffix = target.suffix.lower()
    if suffix not in SUPPORTED_VIDEO_SUFFIXES:
        hint = " (PNG frames: a folder ending in '/' or a pattern like %05d.png)" if suffix in IMAGE_SUFFIXES else ""
        raise VideoError(
            f"cannot write {target}: unknown format {target.suffix!r}; supported: "
            f"{', '.join(SUPPORTED_VIDEO_SUFFIXES)}, a folder, or a pattern like %05d.png{hint}"
        )
    _check_parent(target)
    if target.exists() and not overwrite:
        raise VideoError(f"{target} exists; {OVERWRITE_HINT}")
    return "file"


def _check_frames(frames: np.ndarray) -> np.ndarray:
    """Frames must be [T,H,W,3] uint8 or floating point; anything else is a caller bug, hence ValueError."""
    if not isinstance(frames, np.ndarray):
        raise ValueError(f"frames must be a numpy array, got {type(frames).__name__}")
    if frames.ndim != 4 or frames.shape[-1] != 3 or min(frames.shape) == 0:
        raise ValueError(f"frames must have shape [T, H, W, 3] with T, H, W > 0, got {list(frames.shape)}")
    if frames.dtype != np.uint8 and not np.issubdtype(frames.dtype, np.floating):
        raise ValueError(f"frames must be uint8 or floats in 0..1, got {frames.dtype}")
    return frames


def _as_uint8(frame: np.ndarray) -> np.ndarray:
    """One [H,W,3] frame as contiguous uint8; floats are clipped to 0..1 and rounded (NaN becomes 0)."""
    if frame.dtype != np.uint8:
        frame = np.rint(np.clip(np.nan_to_num(frame.astype(np.float32)), 0.0, 1.0) * 255.0).astype(np.uint8)
    return np.ascontiguousarray(frame)


def _check_parent(target: Path) -> None:
    """Refuse to create missing folders: a typo in a path should fail, not scatter folders around."""
    parent = target.parent
    if not parent.is_dir():
        what = "is not a folder" if parent.exists() else "does not exist; create it first"
        raise VideoError(f"cannot write {target}: folder {parent} {what}")


def _encode_av(
    tmp: Path, frames: np.ndarray, fps: float, fmt: str, codec: str, pix_fmt: str, options: dict[str, str]
) -> None:
    """Encode with PyAV; for yuv420p H.264, odd sides are padded to even by repeating the last row/column."""
    height, width = frames.shape[1:3]
    pad_h, pad_w = (height % 2, width % 2) if codec == "libx264" else (0, 0)
    container_options = {"movflags": "+faststart"} if fmt == "mp4" else {}
    with av.open(str(tmp), "w", format=fmt, options=container_options) as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001), options=dict(options))
        stream.width, stream.height, stream.pix_fmt = width + pad_w, height + pad_h, pix_fmt
        for i in range(len(frames)):
            rgb = _as_uint8(frames[i])
            if pad_h or pad_w:
                rgb = np.pad(rgb, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode(None))


def _encode_gif(tmp: Path, frames: np.ndarray, fps: float) -> None:
    """GIF through FFmpeg with a Pillow palette per frame: better colours than FFmpeg's fixed rgb8 palette, and
    unlike Pillow's own GIF writer it never merges identical frames, so the frame count survives a round trip."""
    height, width = frames.shape[1:3]
    with av.open(str(tmp), "w", format="gif", options={"loop": "0"}) as container:
        stream = container.add_stream("gif", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, "pal8"
        for i in range(len(frames)):
            indexed = Image.fromarray(_as_uint8(frames[i])).quantize(256)
            rgb_palette = np.asarray(indexed.getpalette(), dtype=np.uint8).reshape(-1, 3)[:256]
            argb = np.zeros((256, 4), dtype=np.uint8)
            argb[:, 0] = 255
            argb[: len(rgb_palette), 1:] = rgb_palette
            frame = av.VideoFrame.from_ndarray((np.asarray(indexed, dtype=np.uint8), argb), format="pal8")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def _save_png(file: Path, frame: np.ndarray) -> None:
    Image.fromarray(_as_uint8(frame)).save(file, format="PNG")


def _write_folder(folder: Path, frames: np.ndarray) -> Path:
    """PNG frames into a new folder, swapped in whole (:func:`check_output` vetted the target)."""
    with atomic_folder(folder) as tmp:
        for i in range(len(frames)):
            _save_png(tmp / SEQUENCE_FRAME_NAME.format(i), frames[i])
    return folder


def _write_pattern(pattern: Path, frames: np.ndarray) -> Path:
    """PNG files named by a printf pattern, numbered from 0, encoded in a hidden folder first and then moved in.

    Each file is replaced atomically; with ``overwrite``, matching files beyond the new last frame are removed, so
    the pattern never reads back a stale tail of an earlier, longer clip.
    """
    head, spec, tail = _pattern_parts(pattern)
    existing = _pattern_files(pattern, must_exist=False)  # check_output vetted the target
    names = [head + spec % i + tail for i in range(len(frames))]
    tmp = hidden_sibling(pattern)
    tmp.mkdir()
    try:
        for i, name in enumerate(names):
            _save_png(tmp / name, frames[i])
        for name in names:
            os.replace(tmp / name, pattern.parent / name)
        written = set(names)
        for _, old in existing:
            if old.name not in written:
                old.unlink(missing_ok=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return pattern
