"""Video and image I/O: round trips per format, frame rates, odd sizes, image modes, every user error, atomic writes.

Clips are tiny (6 frames of 64x48) so the whole file runs in a few seconds on a CPU.
"""

from __future__ import annotations

import os
import sys
import wave
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from relumix_core.errors import ReLumixError
from relumix_core.media import video_io
from relumix_core.media.video_io import (
    DEFAULT_FPS,
    SUPPORTED_VIDEO_SUFFIXES,
    VideoError,
    describe_formats,
    read_image,
    read_video,
    write_video,
)

LOSSY = [".mp4", ".webm", ".gif"]


def clip(frames: int = 6, height: int = 48, width: int = 64) -> np.ndarray:
    """Smooth, moving colour gradients (lossy codecs keep these well): uint8 [T,H,W,3]."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    out = []
    for t in range(frames):
        r = 40 + 160 * xx / max(width - 1, 1) + 6 * t
        g = 30 + 180 * yy / max(height - 1, 1)
        b = np.full_like(xx, 90.0 + 15 * t)
        out.append(np.stack([r, g, b], axis=-1))
    return np.clip(np.rint(np.stack(out)), 0, 255).astype(np.uint8)


def mae(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


def listing(folder: Path) -> list[str]:
    """Every entry of a folder, hidden ones included (a stray .partial must show up)."""
    return sorted(e.name for e in folder.iterdir())


def save_png(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array).save(path)
    return path


# ------------------------------------------------------------------------------------------------------ round trips


@pytest.mark.parametrize("suffix", LOSSY)
def test_lossy_round_trip(tmp_path: Path, suffix: str) -> None:
    frames = clip()
    target = tmp_path / f"out{suffix}"
    assert write_video(target, frames, 24.0) == target
    back, fps = read_video(target)
    assert back.dtype == np.uint8 and back.shape == frames.shape
    for t in range(len(frames)):  # frame by frame, so that frame order and count are checked too
        assert mae(back[t], frames[t]) < 8, f"frame {t}"
    assert mae(back[0], back[-1]) > 10, "the motion between first and last frame was lost"
    assert fps == pytest.approx(24.0, abs=0.05)
    assert listing(tmp_path) == [target.name]


def test_written_codecs(tmp_path: Path) -> None:
    """mp4 is H.264 yuv420p (plays everywhere), webm is VP9, the GIF loops forever."""
    frames = clip()
    expected = {".mp4": ("h264", "yuv420p"), ".webm": ("vp9", "yuv420p")}
    for suffix, (codec, pix_fmt) in expected.items():
        write_video(tmp_path / f"a{suffix}", frames, 24)
        with av.open(str(tmp_path / f"a{suffix}")) as container:
            stream = container.streams.video[0]
            assert (stream.codec_context.name, stream.codec_context.format.name) == (codec, pix_fmt)
    write_video(tmp_path / "a.gif", frames, 24)
    with Image.open(tmp_path / "a.gif") as gif:
        assert gif.n_frames == len(frames)
        assert gif.info.get("loop") == 0


def test_gif_keeps_identical_frames(tmp_path: Path) -> None:
    """Pillow's GIF writer would merge repeated frames; ours must keep the frame count."""
    frames = clip()
    frames[2] = frames[3] = frames[1]
    write_video(tmp_path / "still.gif", frames, 10)
    back, fps = read_video(tmp_path / "still.gif")
    assert len(back) == len(frames)
    assert fps == pytest.approx(10.0, abs=0.01)


def test_png_folder_round_trip_is_exact(tmp_path: Path) -> None:
    frames = clip()
    out = write_video(str(tmp_path / "seq") + "/", frames, 30)
    assert out == tmp_path / "seq" and out.is_dir()
    assert listing(out) == [f"frame_{i:05d}.png" for i in range(6)]
    back, fps = read_video(out)
    np.testing.assert_array_equal(back, frames)
    assert fps == DEFAULT_FPS  # PNG sequences store no frame rate
    # A path without a suffix is a folder too.
    write_video(tmp_path / "plain", frames[:2], 30)
    assert listing(tmp_path / "plain") == ["frame_00000.png", "frame_00001.png"]
    assert sorted(listing(tmp_path)) == ["plain", "seq"]


def test_png_pattern_round_trip_is_exact(tmp_path: Path) -> None:
    frames = clip()
    pattern = tmp_path / "shot_%05d.png"
    assert write_video(pattern, frames, 24) == pattern
    assert listing(tmp_path) == [f"shot_{i:05d}.png" for i in range(6)]
    back, fps = read_video(pattern)
    np.testing.assert_array_equal(back, frames)
    assert fps == DEFAULT_FPS
    np.testing.assert_array_equal(read_video(tmp_path)[0], frames)  # the same files read as a folder


def test_pattern_reads_only_exact_printf_names_in_number_order(tmp_path: Path) -> None:
    colours = {2: 20, 10: 100, 9: 90}
    for i, value in colours.items():
        save_png(tmp_path / f"f{i:03d}.png", np.full((4, 4, 3), value, np.uint8))
    save_png(tmp_path / "f7.png", np.full((4, 4, 3), 70, np.uint8))  # not %03d: ignored
    save_png(tmp_path / "g001.png", np.full((4, 4, 3), 1, np.uint8))  # other prefix: ignored
    back, _ = read_video(tmp_path / "f%03d.png")
    assert back[:, 0, 0, 0].tolist() == [20, 90, 100]


def test_float_frames_are_clipped_and_rounded(tmp_path: Path) -> None:
    values = np.array([0.0, 1 / 255, 0.5, 127.4 / 255, 1.0, -0.3, 1.7, np.nan], dtype=np.float32)
    frames = np.broadcast_to(values[None, None, :, None], (1, 2, len(values), 3)).copy()
    write_video(tmp_path / "f/", frames, 24)
    back, _ = read_video(tmp_path / "f")
    assert back[0, 0, :, 0].tolist() == [0, 1, 128, 127, 255, 0, 255, 0]


def test_numpy_and_fraction_frame_rates(tmp_path: Path) -> None:
    write_video(tmp_path / "a.mp4", clip(), np.float32(25))
    write_video(tmp_path / "b.webm", clip(), Fraction(30000, 1001))
    assert read_video(tmp_path / "a.mp4")[1] == 25.0
    assert read_video(tmp_path / "b.webm")[1] == pytest.approx(30000 / 1001, abs=1e-6)


@pytest.mark.parametrize("suffix", LOSSY)
@pytest.mark.parametrize("fps", [30000 / 1001, 12.5])
def test_frame_rate_survives(tmp_path: Path, suffix: str, fps: float) -> None:
    write_video(tmp_path / f"r{suffix}", clip(), fps)
    _, back = read_video(tmp_path / f"r{suffix}")
    tolerance = 0.6 if suffix == ".gif" else 1e-3  # GIF delays are whole 1/100 s: 29.97 fps is stored as ~30
    assert back == pytest.approx(fps, abs=tolerance)


def test_odd_sizes(tmp_path: Path) -> None:
    frames = clip(height=47, width=63)
    write_video(tmp_path / "odd.mp4", frames, 24)
    back, _ = read_video(tmp_path / "odd.mp4")
    assert back.shape == (6, 48, 64, 3), "H.264 yuv420p output is padded to even sides"
    assert mae(back[:, :47, :63], frames) < 8
    assert mae(back[:, 47], back[:, 46]) < 4 and mae(back[:, :, 63], back[:, :, 62]) < 4, "padding repeats edges"
    for suffix in (".webm", ".gif"):
        write_video(tmp_path / f"odd{suffix}", frames, 24)
        back, _ = read_video(tmp_path / f"odd{suffix}")
        assert back.shape == frames.shape, suffix
        assert mae(back, frames) < 8, suffix
    write_video(tmp_path / "odd_%03d.png", frames, 24)
    np.testing.assert_array_equal(read_video(tmp_path / "odd_%03d.png")[0], frames)


# ------------------------------------------------------------------------------------------------------ still images


def test_read_still_image(tmp_path: Path) -> None:
    frame = clip(frames=1)[0]
    png = save_png(tmp_path / "ref.png", frame)
    frames, fps = read_video(png)
    assert frames.shape == (1, 48, 64, 3) and fps == DEFAULT_FPS
    np.testing.assert_array_equal(frames[0], frame)
    np.testing.assert_array_equal(read_image(png), frame)
    Image.fromarray(frame).save(tmp_path / "ref.jpg", quality=95)
    assert read_image(tmp_path / "ref.jpg").shape == (48, 64, 3)
    assert mae(read_video(tmp_path / "ref.jpg")[0][0], frame) < 4


def test_image_modes_become_rgb_uint8(tmp_path: Path) -> None:
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 10, 20, 30, 0  # fully transparent: colour is kept
    save_png(tmp_path / "rgba.png", rgba)
    assert read_image(tmp_path / "rgba.png")[0, 0].tolist() == [10, 20, 30]

    grey = np.array([[0, 100, 255]], np.uint8)
    save_png(tmp_path / "grey.png", grey)
    assert read_image(tmp_path / "grey.png")[0].tolist() == [[0, 0, 0], [100, 100, 100], [255, 255, 255]]

    deep = np.array([[0, 257 * 100, 65535]], np.uint16)  # 16-bit grey: scaled to 8 bits, not clipped at 255
    Image.fromarray(deep).save(tmp_path / "deep.png")
    assert read_image(tmp_path / "deep.png")[0, :, 0].tolist() == [0, 100, 255]

    palette = Image.fromarray(clip(frames=1)[0]).quantize(16)
    palette.save(tmp_path / "pal.png")
    expected = np.asarray(palette.convert("RGB"))
    np.testing.assert_array_equal(read_image(tmp_path / "pal.png"), expected)

    # The same conversions apply inside a sequence.
    folder = tmp_path / "mixed"
    folder.mkdir()
    save_png(folder / "a.png", np.full((1, 3, 4), 7, np.uint8))
    Image.fromarray(np.full((1, 3), 257 * 9, np.uint16)).save(folder / "b.png")
    frames, _ = read_video(folder)
    assert frames.dtype == np.uint8 and frames.shape == (2, 1, 3, 3)
    assert frames[:, 0, 0].tolist() == [[7, 7, 7], [9, 9, 9]]


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(clip(frames=1)[0]).save(tmp_path / "phone.jpg", exif=exif)
    assert read_image(tmp_path / "phone.jpg").shape == (64, 48, 3)


def test_read_animated_images(tmp_path: Path) -> None:
    """GIFs from other tools (Pillow here) and animated PNGs give all frames and the rate of their delays."""
    images = [Image.fromarray(np.full((8, 10, 3), v, np.uint8)) for v in (0, 120, 240)]
    images[0].save(tmp_path / "other.gif", save_all=True, append_images=images[1:], duration=100, loop=0)
    frames, fps = read_video(tmp_path / "other.gif")
    assert frames.shape == (3, 8, 10, 3) and fps == pytest.approx(10.0, abs=0.01)
    assert np.abs(frames[:, 0, 0, 0].astype(int) - [0, 120, 240]).max() <= 2
    images[0].save(tmp_path / "anim.png", save_all=True, append_images=images[1:], duration=50, loop=0)
    frames, fps = read_video(tmp_path / "anim.png")
    assert frames[:, 0, 0, 0].tolist() == [0, 120, 240] and fps == pytest.approx(20.0)
    assert read_image(tmp_path / "anim.png").shape == (8, 10, 3)  # first frame only


def test_folder_natural_order_skips_hidden_and_other_files(tmp_path: Path) -> None:
    for i in (10, 2, 1):
        save_png(tmp_path / f"frame{i}.png", np.full((4, 4, 3), i, np.uint8))
    save_png(tmp_path / ".frame0.png", np.full((4, 4, 3), 99, np.uint8))
    (tmp_path / "notes.txt").write_text("not a frame")
    (tmp_path / "sub.png").mkdir()
    frames, fps = read_video(tmp_path)
    assert frames[:, 0, 0, 0].tolist() == [1, 2, 10]
    assert fps == DEFAULT_FPS


# ------------------------------------------------------------------------------------------------------ read errors


def assert_video_error(func: Callable[[Path], object], path: Path, *words: str) -> str:
    with pytest.raises(VideoError) as info:
        func(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    for word in words:
        assert word in message
    return message


def test_missing_paths(tmp_path: Path) -> None:
    assert_video_error(read_video, tmp_path / "nope.mp4", "does not exist")
    assert_video_error(read_image, tmp_path / "nope.png", "does not exist")
    assert_video_error(read_video, tmp_path / "none_%04d.png", "no files match")
    assert_video_error(read_video, tmp_path / "missing" / "%04d.png", "does not exist")


def test_corrupt_files(tmp_path: Path) -> None:
    (tmp_path / "junk.mp4").write_bytes(b"no video container here. " * 160)  # not random: noise can look like a format
    assert_video_error(read_video, tmp_path / "junk.mp4", "cannot decode")
    (tmp_path / "empty.mov").write_bytes(b"")
    assert_video_error(read_video, tmp_path / "empty.mov")
    (tmp_path / "bad.png").write_bytes(b"this is no png")
    assert_video_error(read_video, tmp_path / "bad.png", "cannot read")
    assert_video_error(read_image, tmp_path / "bad.png", "cannot read")
    good = save_png(tmp_path / "good.png", clip(frames=1)[0]).read_bytes()
    (tmp_path / "cut.png").write_bytes(good[: len(good) // 2])
    assert_video_error(read_image, tmp_path / "cut.png", "truncated")
    write_video(tmp_path / "v.mp4", clip(), 24)
    assert_video_error(read_image, tmp_path / "v.mp4", "cannot read")  # a video is not a reference image


def test_video_without_frames(tmp_path: Path) -> None:
    with av.open(str(tmp_path / "zero.webm"), "w") as container:
        stream = container.add_stream("libvpx-vp9", rate=24)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()
    assert_video_error(read_video, tmp_path / "zero.webm", "no video frames")


def test_file_without_video_stream(tmp_path: Path) -> None:
    with wave.open(str(tmp_path / "sound.wav"), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(b"\0\0" * 800)
    assert_video_error(read_video, tmp_path / "sound.wav", "no video stream")


def test_folder_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_video_error(read_video, empty, "no png")
    (empty / "readme.txt").write_text("x")
    assert_video_error(read_video, empty, "no png")
    assert_video_error(read_image, empty, "is a folder")

    seq = tmp_path / "seq"
    seq.mkdir()
    for i in range(3):
        save_png(seq / f"{i:02d}.png", np.zeros((6, 8, 3), np.uint8))
    save_png(seq / "03.png", np.zeros((6, 9, 3), np.uint8))
    save_png(seq / "04.png", np.zeros((5, 8, 3), np.uint8))
    with pytest.raises(VideoError) as info:
        read_video(seq)
    message = str(info.value)
    assert str(seq / "03.png") in message and "04.png" not in message, "names the first mismatching file"
    assert "9x6" in message and "8x6" in message
    with pytest.raises(VideoError, match="same size") as info:
        read_video(seq / "%02d.png")
    assert str(seq / "03.png") in str(info.value)


# ------------------------------------------------------------------------------------------------------ write errors


def test_unknown_suffix_lists_supported_formats(tmp_path: Path) -> None:
    message = assert_video_error(lambda p: write_video(p, clip(), 24), tmp_path / "out.avi", "unknown format")
    for suffix in SUPPORTED_VIDEO_SUFFIXES:
        assert suffix in message
    assert_video_error(lambda p: write_video(p, clip(), 24), tmp_path / "out.png", "%05d.png")
    assert_video_error(lambda p: write_video(p, clip(), 24), tmp_path / "out_%03d.jpg", "PNG")
    assert listing(tmp_path) == []


@pytest.mark.parametrize("name", ["out.mp4", "out.gif", "seq/", "seq", "f_%04d.png"])
def test_missing_parent_folder_is_not_created(tmp_path: Path, name: str) -> None:
    target = tmp_path / "no" / "such" / name
    with pytest.raises(VideoError) as info:
        write_video(str(target) + ("/" if name.endswith("/") else ""), clip(), 24)
    assert f"folder {tmp_path / 'no' / 'such'} does not exist; create it first" in str(info.value)
    assert listing(tmp_path) == []


def test_bad_frame_rates(tmp_path: Path) -> None:
    for fps in (0, -5, float("nan"), float("inf"), "fast", None):
        assert_video_error(lambda p, fps=fps: write_video(p, clip(), fps), tmp_path / "out.mp4", "frame rate")
    assert_video_error(lambda p: write_video(p, clip(), 60), tmp_path / "fast.gif", "GIF")
    assert listing(tmp_path) == []


def test_bad_frame_arrays_are_value_errors(tmp_path: Path) -> None:
    """Malformed arrays are bugs in the caller, not user mistakes."""
    bad = [clip()[0], clip()[..., :2], clip().astype(np.int16), clip()[:0], clip().tolist()]
    for frames in bad:
        with pytest.raises(ValueError):
            write_video(tmp_path / "out.mp4", frames, 24)
    assert listing(tmp_path) == []


@pytest.mark.parametrize("suffix", LOSSY)
def test_existing_video_needs_overwrite(tmp_path: Path, suffix: str) -> None:
    target = tmp_path / f"out{suffix}"
    target.write_bytes(b"precious")
    assert_video_error(lambda p: write_video(p, clip(), 24), target, "exists; pass --force to overwrite")
    assert target.read_bytes() == b"precious"
    write_video(target, clip(frames=3), 24, overwrite=True)
    assert len(read_video(target)[0]) == 3
    assert listing(tmp_path) == [target.name]


def test_existing_folder_needs_overwrite_and_stale_frames_go(tmp_path: Path) -> None:
    seq = tmp_path / "seq"
    write_video(seq, clip(), 24)
    assert_video_error(lambda p: write_video(p, clip(), 24), seq, "pass --force")
    write_video(seq, clip(frames=3), 24, overwrite=True)
    assert listing(seq) == ["frame_00000.png", "frame_00001.png", "frame_00002.png"]
    assert listing(tmp_path) == ["seq"]


def test_existing_empty_folder_is_used_without_overwrite(tmp_path: Path) -> None:
    (tmp_path / "seq").mkdir()
    write_video(tmp_path / "seq", clip(frames=2), 24)
    assert listing(tmp_path / "seq") == ["frame_00000.png", "frame_00001.png"]


def test_folder_with_other_files_is_never_replaced(tmp_path: Path) -> None:
    seq = tmp_path / "mine"
    seq.mkdir()
    (seq / "thesis.txt").write_text("do not delete")
    for overwrite in (False, True):
        with pytest.raises(VideoError) as info:
            write_video(seq, clip(), 24, overwrite=overwrite)
        assert str(seq) in str(info.value) and "thesis.txt" in str(info.value)
    assert listing(seq) == ["thesis.txt"]
    (tmp_path / "file").write_text("a file, not a folder")
    assert_video_error(lambda p: write_video(p, clip(), 24, overwrite=True), tmp_path / "file", "is a file")


def test_existing_pattern_needs_overwrite_and_stale_tail_goes(tmp_path: Path) -> None:
    pattern = tmp_path / "f_%03d.png"
    write_video(pattern, clip(), 24)
    with pytest.raises(VideoError) as info:
        write_video(pattern, clip(), 24)
    assert str(tmp_path / "f_000.png") in str(info.value) and "--force" in str(info.value)
    (tmp_path / "keep.txt").write_text("unrelated")
    new = clip(frames=2)[:, ::-1].copy()
    write_video(pattern, new, 24, overwrite=True)
    assert listing(tmp_path) == ["f_000.png", "f_001.png", "keep.txt"]
    np.testing.assert_array_equal(read_video(pattern)[0], new)


def test_output_has_ordinary_permissions(tmp_path: Path) -> None:
    if sys.platform == "win32":
        pytest.skip("POSIX permissions")
    mask = os.umask(0o022)
    try:
        write_video(tmp_path / "out.mp4", clip(), 24)
        write_video(tmp_path / "seq", clip(frames=1), 24)
    finally:
        os.umask(mask)
    assert (tmp_path / "out.mp4").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "seq").stat().st_mode & 0o777 == 0o755


# ------------------------------------------------------------------------------------------------------ atomicity


class Boom(RuntimeError):
    pass


def fail_on_third_frame(monkeypatch: pytest.MonkeyPatch, error: type[BaseException]) -> list[int]:
    """Make the per-frame conversion (called by every encoder) raise on the third frame."""
    calls: list[int] = []
    real = video_io._as_uint8

    def flaky(frame: np.ndarray) -> np.ndarray:
        calls.append(1)
        if len(calls) == 3:
            raise error("interrupted mid-clip")
        return real(frame)

    monkeypatch.setattr(video_io, "_as_uint8", flaky)
    return calls


@pytest.mark.parametrize("error", [Boom, KeyboardInterrupt])
@pytest.mark.parametrize("name", ["out.mp4", "out.webm", "out.gif", "seq/", "f_%03d.png"])
def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, error: type) -> None:
    calls = fail_on_third_frame(monkeypatch, error)
    with pytest.raises(error):
        write_video(str(tmp_path / name), clip(), 24)
    assert len(calls) == 3, "the failure must happen mid-clip, after some frames were written"
    assert listing(tmp_path) == []


@pytest.mark.parametrize("name", ["out.mp4", "out.gif", "seq", "f_%03d.png"])
def test_failed_overwrite_keeps_the_old_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    old = clip(frames=4)
    write_video(tmp_path / name, old, 24)
    before = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    fail_on_third_frame(monkeypatch, KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt):
        write_video(tmp_path / name, clip(), 24, overwrite=True)
    after = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".partial")]


def test_encoder_failure_becomes_video_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real FFmpeg refusal (a bad codec option) ends as a VideoError, with no temporary file left."""
    monkeypatch.setitem(video_io._AV_ENCODERS, ".mp4", ("mp4", "libx264", "yuv420p", {"crf": "banana"}))
    assert_video_error(lambda p: write_video(p, clip(), 24), tmp_path / "out.mp4", "cannot encode")
    assert listing(tmp_path) == []


# ------------------------------------------------------------------------------------------------------ misc


def test_error_type_and_format_help() -> None:
    assert issubclass(VideoError, ReLumixError)
    text = describe_formats()
    for suffix in SUPPORTED_VIDEO_SUFFIXES + (".png", ".jpg", ".webp"):
        assert suffix.lstrip(".") in text
    assert "%05d" in text and "\n" not in text
