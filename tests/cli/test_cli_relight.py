"""``relumix relight`` end to end on the random tiny model: files in, files out, errors, memory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from relumix_core.cli.main import main
from relumix_core.media.video_io import read_video, write_video

FRAMES = 8  # the tiny model's trained length, hence its default window


def _clip(frames: int, height: int = 64, width: int = 96) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    out = []
    for t in range(frames):
        img = np.stack([0.5 + 0.4 * np.sin((xx + 2 * t) / 9), 0.5 + 0.3 * np.cos(yy / 7), 0.4 + 0 * xx], -1)
        out.append((img.clip(0, 1) * 255).astype(np.uint8))
    return np.stack(out)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("relight")
    assert main(["init-tiny", str(root / "tiny.safetensors")]) == 0
    for n in (FRAMES, 3 * FRAMES):
        write_video(root / f"in{n}.mp4", _clip(n), 12)
    Image.fromarray(_clip(1)[0][..., ::-1].copy()).save(root / "ref.png")
    return root


def _args(root: Path, video: str, out: str, *extra: str) -> list[str]:
    return ["relight", str(root / video), "-r", str(root / "ref.png"), "-o", str(root / out),
            "-c", str(root / "tiny.safetensors"), "--steps", "2", "--size", "64", *extra]


@pytest.mark.slow
def test_relight_long_video_writes_every_frame_at_input_size(workdir: Path) -> None:
    assert main(_args(workdir, f"in{3 * FRAMES}.mp4", "out.mp4", "-k", "5")) == 0
    frames, fps = read_video(workdir / "out.mp4")
    assert frames.shape == (3 * FRAMES, 64, 96, 3)
    assert fps == pytest.approx(12, rel=0.01)
    assert main(_args(workdir, f"in{FRAMES}.mp4", "seq/")) == 0
    assert len(list((workdir / "seq").glob("frame_*.png"))) == FRAMES


@pytest.mark.slow
def test_refuses_to_overwrite_without_force(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = workdir / "keep.gif"
    target.write_bytes(b"precious")
    assert main(_args(workdir, f"in{FRAMES}.mp4", "keep.gif")) == 2
    assert "--force" in capsys.readouterr().err
    assert target.read_bytes() == b"precious"
    assert main(_args(workdir, f"in{FRAMES}.mp4", "keep.gif", "--force")) == 0
    assert read_video(target)[0].shape[0] == FRAMES


@pytest.mark.parametrize(
    ("video", "out", "extra", "words"),
    [
        ("missing.mp4", "o.mp4", [], "does not exist"),
        ("ref.png", "o.mp4", ["-k", "3"], "outside"),
        (f"in{FRAMES}.mp4", "nofolder/o.mp4", [], "does not exist; create it first"),
        (f"in{FRAMES}.mp4", "o.mp4", ["--steps", "0"], "steps must be at least 1"),
        (f"in{FRAMES}.mp4", "o.mp4", ["--window", "4", "--overlap", "4"], "overlap"),
        (f"in{FRAMES}.mp4", "o.mp4", ["-k", "99"], "outside"),
        (f"in{FRAMES}.mp4", "o.xyz", [], "unknown format"),
    ],
)
def test_bad_input_is_one_clear_line(workdir: Path, capsys: pytest.CaptureFixture[str], video: str, out: str,
                                     extra: list[str], words: str) -> None:
    assert main(_args(workdir, video, out, *extra)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and words in err[0], err
    assert not (workdir / out).exists()


def test_unreadable_video(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (workdir / "broken.mp4").write_bytes(b"not a video at all")
    assert main(_args(workdir, "broken.mp4", "o.mp4")) == 2
    assert "broken.mp4" in capsys.readouterr().err


@pytest.mark.slow
def test_interrupt_leaves_no_output(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from relumix_core.pipeline import pipeline

    def stop(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline.ReLumixPipeline, "decode", stop)
    assert main(_args(workdir, f"in{FRAMES}.mp4", "never.mp4")) == 130
    assert not (workdir / "never.mp4").exists()
    assert not list(workdir.glob(".*partial"))


def _peak_rss_mib(workdir: Path, video: str, out: str) -> float:
    script = (
        "import resource, sys; from relumix_core.cli.main import main; "
        f"rc = main({_args(workdir, video, out)!r}); "
        "print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024); sys.exit(rc)"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return float(done.stdout.split("PEAK")[-1])


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_clip_length(workdir: Path) -> None:
    """One window and three windows of frames: the same peak memory within 10% (windows are bounded).

    The allocator adds up to ~5% of noise to a process's peak, only upwards, so each length keeps its lower peak
    of two runs.
    """
    short = min(_peak_rss_mib(workdir, f"in{FRAMES}.mp4", f"mem1_{i}.mp4") for i in range(2))
    long = min(_peak_rss_mib(workdir, f"in{3 * FRAMES}.mp4", f"mem3_{i}.mp4") for i in range(2))
    (workdir / "peak.json").write_text(json.dumps({"short": short, "long": long}))
    assert long <= 1.10 * short, (short, long)
