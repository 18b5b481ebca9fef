"""``relumix relight-batch``: the job list, the checks before loading, the split between processes, real runs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from relumix_core.cli.batch import main
from relumix_core.cli.batch_jobs import Job, load_jobs, parse_job_list, split_jobs
from relumix_core.cli.main import main as relumix_main
from relumix_core.errors import ReLumixError
from relumix_core.media.video_io import read_video, write_video

FRAMES = 6
SIZE = 64


def _clip(seed: int) -> np.ndarray:
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    out = [np.stack([0.5 + 0.4 * np.sin((xx + 3 * t + seed) / 7), 0.5 + 0.3 * np.cos(yy / 5), 0.3 + 0 * xx], -1)
           for t in range(FRAMES)]
    return (np.stack(out).clip(0, 1) * 255).astype(np.uint8)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """The tiny model is too small to gain from threads, and on a busy machine they cost it several times over."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random checkpoint, two 6-frame 64x64 clips, a reference and a broken clip."""
    root = tmp_path_factory.mktemp("batch")
    assert relumix_main(["init-tiny", str(root / "tiny.safetensors")]) == 0
    for i, name in enumerate(("a.mp4", "b.mp4")):
        write_video(root / name, _clip(i), 12)
    Image.fromarray(_clip(5)[0]).save(root / "ref.png")
    (root / "broken.mp4").write_bytes(b"this is not a video")
    return root


def _write_list(folder: Path, name: str, *lines: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("\n".join(lines) + "\n")
    return path


def _batch(root: Path, job_list: Path, *extra: str) -> int:
    return main([str(job_list), "-c", str(root / "tiny.safetensors"), "--steps", "2", "--size", str(SIZE),
                 "--device", "cpu", *extra])


def _no_partials(folder: Path) -> None:
    assert not [p.name for p in folder.rglob(".*partial")]


# ------------------------------------------------------------------------------------------------- the job list


def test_whitespace_list_with_comments_tabs_and_relative_paths(tmp_path: Path) -> None:
    path = _write_list(
        tmp_path / "lists", "jobs.txt",
        "# clips of day 1",
        "",
        "clips/a.mp4   ref.png   out/a.mp4",
        "   # indented comment",
        "clips/b.mp4\tmy ref.png\tout/b dir/\t2",
        f"{tmp_path / 'abs.mp4'} ../ref.png out/%05d.png 1",
    )
    jobs, problems = parse_job_list(path)
    folder = tmp_path / "lists"
    assert problems == []
    assert jobs == [
        Job(0, 3, folder / "clips/a.mp4", folder / "ref.png", str(folder / "out/a.mp4"), 0),
        Job(1, 5, folder / "clips/b.mp4", folder / "my ref.png", str(folder / "out/b dir") + "/", 2),
        Job(2, 6, tmp_path / "abs.mp4", folder / "../ref.png", str(folder / "out/%05d.png"), 1),
    ]


def test_csv_list_with_header_in_any_order(tmp_path: Path) -> None:
    path = _write_list(
        tmp_path, "jobs.csv",
        "# exported from a spreadsheet",
        "Reference,video,output,reference_index",
        'r.png,"clip 1.mp4",o1.mp4,',
        "r.png,v2.mp4,o2/,4",
    )
    jobs, problems = parse_job_list(path)
    assert problems == []
    assert [(j.line, j.video.name, j.reference.name, j.output, j.reference_index) for j in jobs] == [
        (3, "clip 1.mp4", "r.png", str(tmp_path / "o1.mp4"), 0),
        (4, "v2.mp4", "r.png", str(tmp_path / "o2") + "/", 4),
    ]
    header_only = _write_list(tmp_path, "spaces.txt", "video reference output", "v.mp4 r.png o.mp4")
    assert [j.line for j in parse_job_list(header_only)[0]] == [2]


def test_malformed_lines_and_headers(tmp_path: Path) -> None:
    path = _write_list(tmp_path, "bad.txt", "a.mp4 r.png", "a.mp4,r.png,o.mp4", "a.mp4 r.png o.mp4 -1",
                       "a.mp4 r.png o.mp4 two", "a b c d e")
    jobs, problems = parse_job_list(path)
    assert jobs == []
    text = [str(p) for p in problems]
    assert [p.line for p in problems] == [1, 2, 3, 4, 5]
    assert "2 fields" in text[0] and "CSV needs the header" in text[1]
    assert "not a frame number" in text[2] and "not a frame number" in text[3] and "tabs" in text[4]
    bad_header = _write_list(tmp_path, "bad.csv", "video,reference,outpt", "a,b,c")
    assert [str(p) for p in parse_job_list(bad_header)[1]] == [
        "line 1: bad header (unknown column 'outpt'); expected video,reference,output[,reference_index]"
    ]


def test_every_bad_line_is_reported_at_once_before_loading(workdir: Path, capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from relumix_core.checkpoints import loading

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model must not load when the list is bad")

    monkeypatch.setattr(loading, "load_relumix", never)
    (workdir / "exists.mp4").write_bytes(b"old")
    path = _write_list(
        workdir, "errors.txt",
        "# line 1",
        "a.mp4 ref.png e_ok.mp4",
        "missing.mp4 ref.png e2.mp4",
        "a.mp4 noref.png e3.mp4",
        "b.mp4 ref.png e_ok.mp4",
        "a.mp4 ref.png exists.mp4",
        "a.mp4 ref.png e4.mp4 x",
        f"a.mp4 ref.png e5.mp4 {FRAMES}",
        "a.mp4 ref.png",
        "a.mp4 ref.png nofolder/e6.mp4",
        "a.mp4 ref.png e7.xyz",
        "b.mp4 ref.png a.mp4",
    )
    assert _batch(workdir, path) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "10 problems" in err[0], err
    for line, words in [(3, "does not exist"), (4, "noref.png does not exist"), (5, "also the output of line 2"),
                        (6, "--skip-existing"), (7, "not a frame number"), (8, f"has {FRAMES} frames"),
                        (9, "2 fields"), (10, "create it first"), (11, "unknown format"),
                        (12, "input video of line 2")]:
        assert f"line {line}: " in err[0] and words in err[0], (line, words, err[0])
    assert "line 2:" not in err[0]
    assert not [name for name in ("e_ok.mp4", "e2.mp4", "e4.mp4") if (workdir / name).exists()]
    assert (workdir / "exists.mp4").read_bytes() == b"old"


def test_empty_or_missing_list_and_conflicting_flags(workdir: Path) -> None:
    empty = _write_list(workdir, "empty.txt", "# nothing yet")
    with pytest.raises(ReLumixError, match="holds no jobs"):
        load_jobs(empty)
    with pytest.raises(ReLumixError, match="does not exist"):
        load_jobs(workdir / "nolist.txt")
    assert _batch(workdir, empty, "--force", "--skip-existing") == 2


def test_missing_accelerate_names_the_extra(workdir: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "accelerate", None)
    assert _batch(workdir, workdir / "whatever.txt") == 2
    assert "pip install 'relumix[train]'" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- the split


@pytest.mark.parametrize("world", [1, 2, 3])
def test_split_covers_every_job_exactly_once(world: int) -> None:
    for count in range(8):
        shares = [split_jobs(count, rank, world) for rank in range(world)]
        assert sorted(i for share in shares for i in share) == list(range(count))
        assert all(i % world == rank for rank, share in enumerate(shares) for i in share)
    with pytest.raises(ValueError):
        split_jobs(3, world, world)


# ----------------------------------------------------------------------------------------------- real runs


@pytest.mark.slow
def test_batch_writes_every_output_then_skip_existing_resumes(workdir: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = workdir / "run1"
    out.mkdir()
    path = _write_list(out, "jobs.txt", "../a.mp4 ../ref.png a.mp4", "../b.mp4\t../ref.png\tb_frames/\t3")
    assert _batch(workdir, path) == 0
    assert "2 done, 0 skipped" in capsys.readouterr().out
    frames, fps = read_video(out / "a.mp4")
    assert frames.shape == (FRAMES, SIZE, SIZE, 3) and fps == pytest.approx(12, rel=0.01)
    assert read_video(out / "b_frames")[0].shape == (FRAMES, SIZE, SIZE, 3)

    assert _batch(workdir, path) == 2  # finished outputs are not overwritten by accident
    assert "--skip-existing" in capsys.readouterr().err
    before = (out / "a.mp4").stat().st_mtime_ns
    for frame in (out / "b_frames").iterdir():
        frame.unlink()
    (out / "b_frames").rmdir()
    assert _batch(workdir, path, "--skip-existing") == 0
    assert "1 done, 1 skipped" in capsys.readouterr().out
    assert (out / "a.mp4").stat().st_mtime_ns == before
    assert len(list((out / "b_frames").glob("frame_*.png"))) == FRAMES
    _no_partials(out)


def test_a_failing_job_does_not_stop_the_others(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = workdir / "run2"
    out.mkdir()
    path = _write_list(out, "jobs.txt", "../broken.mp4 ../ref.png x.mp4", "../a.mp4 ../ref.png a.gif")
    assert _batch(workdir, path) == 1
    captured = capsys.readouterr()
    assert "line 1: FAILED" in captured.err and "broken.mp4" in captured.err
    assert "1 done, 0 skipped (output exists), 1 failed" in captured.out and "failed: line 1" in captured.out
    assert read_video(out / "a.gif")[0].shape == (FRAMES, SIZE, SIZE, 3)
    assert not (out / "x.mp4").exists()
    _no_partials(out)


def test_interrupt_exits_130_and_leaves_no_partial_file(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from relumix_core.pipeline import pipeline

    def stop(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline.ReLumixPipeline, "decode", stop)
    out = workdir / "run3"
    out.mkdir()
    path = _write_list(out, "jobs.txt", "../a.mp4 ../ref.png a.mp4", "../b.mp4 ../ref.png b.mp4")
    assert _batch(workdir, path) == 130
    assert not list(out.glob("*.mp4"))
    _no_partials(out)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_two_processes_with_accelerate_launch_match_one_process(workdir: Path) -> None:
    """``accelerate launch`` of two CPU processes: each job is done once, by process i % 2, with seed + i.

    ``--cpu`` makes accelerate launch start a single process, so two CPU processes are launched the way GPUs are
    (torchrun under the hood); CUDA is hidden so that the test behaves the same on a GPU machine.
    """
    out = workdir / "run4"
    out.mkdir()
    lines = ["../a.mp4 ../ref.png {}0/", "../b.mp4 ../ref.png {}1/ 2", "../a.mp4 ../ref.png {}2/ 4"]
    two = _write_list(out, "two.txt", *(line.format("two") for line in lines))
    one = _write_list(out, "one.txt", *(line.format("one") for line in lines))
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(_free_port()),
        "-m", "relumix_core.cli.batch", str(two), "-c", str(workdir / "tiny.safetensors"), "--steps", "2",
        "--size", str(SIZE), "--device", "cpu",
    ]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, env=env, cwd=out)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "3 jobs on 2 processes" in done.stdout and "3 done, 0 skipped" in done.stdout, done.stdout
    assert done.stdout.count("relight-batch: 3 done") == 1  # only the main process sums up
    for worker, line in ((0, 1), (1, 2), (0, 3)):
        assert f"[{worker}] line {line}: wrote" in done.stdout, done.stdout
    assert _batch(workdir, one) == 0
    for i in range(3):
        multi, single = read_video(out / f"two{i}")[0], read_video(out / f"one{i}")[0]
        assert multi.shape == (FRAMES, SIZE, SIZE, 3)
        assert np.abs(multi.astype(int) - single.astype(int)).max() <= 2, i  # same seeds, other thread count
    _no_partials(out)
