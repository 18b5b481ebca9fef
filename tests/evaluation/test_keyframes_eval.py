"""Keyframes in evaluation: which frames are references, nearest-keyframe baselines, means without the keyframes,
the by_distance table, and ``relumix eval --keyframes`` end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from eval_cli import eval_main

from relumix_core.data.synth import write_dataset
from relumix_core.errors import ReLumixError
from relumix_core.evaluation import (
    BASELINES,
    EvalClip,
    check_report_dir,
    clip_metrics,
    distance_table,
    evaluate,
    keyframe_distances,
    keyframe_indices,
    load_test_clips,
    nearest_keyframe,
    nearest_keyframe_baseline,
    ratio_propagation,
    reference_repeated,
    relumix_method,
    write_report,
)
from relumix_core.evaluation.keyframes import keyframe_segments


def grey_clip(frames: int = 8, size: int = 16, seed: int = 0) -> torch.Tensor:
    """Random values in [0.3, 0.7]: room for offsets of a few percent without clamping."""
    return 0.3 + 0.4 * torch.rand(frames, 3, size, size, generator=torch.Generator().manual_seed(seed))


def make_clip(frames: int = 8, keys: list[int] | None = None, name: str = "c") -> EvalClip:
    keys = keys or [0]
    target = grey_clip(frames, seed=1)
    return EvalClip(name, grey_clip(frames, seed=2), target, target[keys].clone(), keys)


# -------------------------------------------------------------------------------------------------- selection


@pytest.mark.parametrize(
    ("frames", "count", "expected"),
    [(8, 1, [0]), (8, 2, [0, 7]), (8, 4, [0, 2, 5, 7]), (64, 1, [0]), (64, 2, [0, 63]), (64, 4, [0, 21, 42, 63]),
     (16, 3, [0, 8, 15]), (3, 3, [0, 1, 2])],
)
def test_keyframes_are_evenly_spaced_from_first_to_last(frames: int, count: int, expected: list[int]) -> None:
    assert keyframe_indices(frames, count) == expected


def test_keyframe_counts_are_checked() -> None:
    with pytest.raises(ReLumixError, match="at least 1"):
        keyframe_indices(8, 0)
    with pytest.raises(ReLumixError, match="5 keyframes need clips of at least 5 frames, got 4"):
        keyframe_indices(4, 5)


def test_nearest_keyframe_and_distance_break_ties_towards_the_earlier() -> None:
    keys = [0, 4, 7]
    assert nearest_keyframe(8, keys) == [0, 0, 0, 1, 1, 1, 2, 2]  # frame 2 is 2 from both 0 and 4: the earlier
    assert keyframe_distances(8, keys) == [0, 1, 2, 1, 0, 1, 1, 0]
    assert keyframe_segments(8, keys) == [(0, 3), (3, 6), (6, 8)]
    assert keyframe_distances(5, [0]) == [0, 1, 2, 3, 4]
    with pytest.raises(ReLumixError, match="ascending"):
        nearest_keyframe(8, [4, 0])
    with pytest.raises(ReLumixError, match="outside"):
        keyframe_distances(8, [0, 8])


# -------------------------------------------------------------------------------------------------- clips


def test_eval_clip_keeps_the_single_reference_layout() -> None:
    target = grey_clip(4)
    old = EvalClip("old", grey_clip(4, seed=5), target, target[0].clone(), 0)  # [3,H,W] and an int, as before
    assert old.reference_indices == [0] and old.references.shape == (1, 3, 16, 16)
    assert torch.equal(old.reference, target[0]) and old.reference_index == 0
    multi = old.with_keyframes([0, 3])
    assert multi.reference_indices == [0, 3] and torch.equal(multi.references, target[[0, 3]])
    assert multi.reference_index == 0 and old.reference_indices == [0]  # the original is untouched
    with pytest.raises(ReLumixError, match="one frame per reference index"):
        EvalClip("bad", target, target, target[:1].clone(), [0, 3])
    with pytest.raises(ReLumixError, match="outside"):
        EvalClip("bad", target, target, target[:1].clone(), [9])


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 scenes x 2 lights x 8 frames at 32 px."""
    return write_dataset(tmp_path_factory.mktemp("kfds") / "data", 2, 2, 8, 32, seed=3)


def test_load_test_clips_takes_the_keyframes_from_the_ground_truth(data_root: Path) -> None:
    clips = load_test_clips(data_root, 8, max_clips=2, keyframes=4)
    for clip in clips:
        assert clip.reference_indices == [0, 2, 5, 7]
        assert torch.equal(clip.references, clip.target[[0, 2, 5, 7]])
    assert load_test_clips(data_root, 8, max_clips=1)[0].reference_indices == [0]
    with pytest.raises(ReLumixError, match="9 keyframes need clips of at least 9 frames"):
        load_test_clips(data_root, 8, keyframes=9)


# -------------------------------------------------------------------------------------------------- baselines


def test_nearest_keyframe_baseline_takes_each_frame_from_its_nearest_keyframe() -> None:
    source = grey_clip(8)
    refs = torch.stack([torch.full((3, 16, 16), v) for v in (0.1, 0.5, 0.9)])  # one flat colour per keyframe
    out = nearest_keyframe_baseline(reference_repeated)(source, refs, [0, 4, 7])
    assert [round(float(out[t].mean()), 4) for t in range(8)] == [0.1, 0.1, 0.1, 0.5, 0.5, 0.5, 0.9, 0.9]

    ratio = nearest_keyframe_baseline(ratio_propagation)
    relit = (source * 0.8).clamp(0, 1)
    out = ratio(source, relit[[0, 4, 7]], [0, 4, 7])
    for k in (0, 4, 7):
        torch.testing.assert_close(out[k], relit[k], atol=1e-5, rtol=0)  # exact at every keyframe
    whole = ratio_propagation(source, relit[4], 4)
    torch.testing.assert_close(out[3:6], whole[3:6])  # the owned frames: the baseline run from keyframe 4
    assert not torch.allclose(out[1], whole[1], atol=1e-3)  # frame 1 belongs to keyframe 0
    single = nearest_keyframe_baseline(ratio_propagation)(source, relit[2:3], [2])
    torch.testing.assert_close(single, ratio_propagation(source, relit[2], 2))
    with pytest.raises(ReLumixError, match="one image per keyframe"):
        ratio(source, relit[:2], [0, 4, 7])


# -------------------------------------------------------------------------------------------------- scoring


def wrong_at(frames: list[int], offset: float = 0.2):
    """A method that returns the ground truth, off by ``offset`` at ``frames``."""

    def method(clip: EvalClip) -> torch.Tensor:
        out = clip.target.clone()
        out[frames] = (out[frames] + offset).clamp(0, 1)
        return out

    return method


def test_means_leave_out_every_keyframe() -> None:
    clip = make_clip(8, [0, 4, 7])
    report = evaluate([clip], {"keys": wrong_at([0, 4, 7]), "other": wrong_at([3])}, include_baselines=False,
                      use_lpips=False)
    keys, other = report["methods"]["keys"], report["methods"]["other"]
    assert keys["psnr"] == pytest.approx(100.0) and keys["ssim"] == pytest.approx(1.0)
    assert other["psnr"] < 100.0
    per_frame = report["clips"][0]["methods"]["keys"]["per_frame"]["psnr"]
    assert len(per_frame) == 8 and per_frame[4] < 20  # the per-frame arrays keep the keyframes
    assert report["clips"][0]["reference_indices"] == [0, 4, 7]
    assert "reference" in report["notes"]["keyframes"]
    gt = clip.target
    assert clip_metrics(wrong_at([0, 2])(clip), gt, use_lpips=False, skip=[0, 2])["mean"]["psnr"] == pytest.approx(100)
    assert clip_metrics(wrong_at([2])(clip), gt, use_lpips=False)["mean"]["psnr"] < 100  # default: frame 0 only


def offset_by_distance(clip: EvalClip) -> torch.Tensor:
    """The ground truth plus 0.01 x (1 + distance to the nearest reference): a known error at every distance."""
    dist = torch.tensor(keyframe_distances(clip.target.shape[0], clip.reference_indices), dtype=torch.float32)
    return clip.target + 0.01 * (1 + dist).view(-1, 1, 1, 1)


def test_by_distance_pools_frames_by_their_distance_to_the_nearest_reference() -> None:
    clips = [make_clip(5, [0], "a"), make_clip(5, [0, 4], "b")]  # distances 0 1 2 3 4 and 0 1 2 1 0
    report = evaluate(clips, {"offset": offset_by_distance}, use_lpips=False)
    table = report["by_distance"]
    assert table["distance"] == [0, 1, 2, 3, 4] and table["frames"] == [3, 3, 2, 1, 1]
    assert list(table["methods"]) == [*BASELINES, "offset"]
    rows = table["methods"]["offset"]
    assert rows["mae"] == pytest.approx([0.01, 0.02, 0.03, 0.04, 0.05], abs=1e-6)
    assert rows["psnr"] == pytest.approx([-20 * math.log10(0.01 * (1 + d)) for d in range(5)], abs=1e-3)
    assert all(0 < s < 1 for s in rows["ssim"]) and rows["ssim"] == sorted(rows["ssim"], reverse=True)
    assert table["methods"]["reference_repeated"]["psnr"][0] == pytest.approx(100.0)  # the references themselves


def test_distance_table_means_over_frames_not_clips() -> None:
    def entry(keys: list[int], psnr: list[float]) -> dict:
        per_frame = {"psnr": psnr, "ssim": [1.0] * len(psnr), "mae": [0.0] * len(psnr)}
        return {"num_frames": len(psnr), "reference_indices": keys, "methods": {"m": {"per_frame": per_frame}}}

    table = distance_table([entry([0], [99.0, 30.0, 20.0]), entry([0, 2], [99.0, 10.0, 99.0])], ["m"])
    assert table["frames"] == [3, 2, 1]
    assert table["methods"]["m"]["psnr"] == pytest.approx([99.0, 20.0, 20.0])


def test_window_seams_follow_the_keyframe_runs() -> None:
    from relumix_core.evaluation.evaluate import window_seams

    seams = window_seams(8, 2, "chain")
    assert seams(make_clip(12, [0])) != []  # one run of 12 frames: two windows of 8
    assert seams(make_clip(12, [0, 11])) == []  # two runs of about 7 frames meeting in the middle: one window each


class FakePipeline:
    """Records how ``relight`` was called and returns the frames unchanged."""

    def __init__(self) -> None:
        self.calls: list[SimpleNamespace] = []

    def relight(self, frames, reference, reference_index, settings=None, seed=None, progress=None,
                output_type="pt"):
        self.calls.append(SimpleNamespace(reference=reference, reference_index=reference_index, settings=settings))
        return frames.clone()


def test_relumix_method_passes_every_keyframe_to_the_pipeline() -> None:
    from relumix_core.pipeline.settings import RelightSettings

    pipe = FakePipeline()
    method = relumix_method(pipe, RelightSettings(), seed=0)
    single, multi = make_clip(8), make_clip(8, [0, 4, 7])
    assert method(single).shape == single.target.shape
    assert pipe.calls[0].reference_index == 0 and tuple(pipe.calls[0].reference.shape) == (16, 16, 3)
    method(multi)
    call = pipe.calls[1]
    assert call.reference_index == [0, 4, 7] and tuple(call.reference.shape) == (3, 16, 16, 3)
    torch.testing.assert_close(call.reference, multi.references.permute(0, 2, 3, 1))


# -------------------------------------------------------------------------------------------------- report


def test_report_files_include_the_distance_plot_and_are_refused(tmp_path: Path) -> None:
    clips = [make_clip(8, [0, 7])]
    report = evaluate(clips, {"offset": offset_by_distance}, use_lpips=False)
    out = write_report(report, clips, {}, tmp_path / "rep").parent
    assert (out / "psnr_by_distance.png").is_file() and (out / "psnr_per_frame.png").is_file()
    assert "PSNR by distance to the nearest reference" in (out / "summary.md").read_text()
    written = json.loads((out / "report.json").read_text())
    assert written["by_distance"]["frames"] == [2, 2, 2, 2] and written["perturbations"] == {}
    for name in ("psnr_by_distance.png", "perturb_noise.png"):
        lone = tmp_path / f"lone_{name}"
        lone.mkdir()
        (lone / name).write_bytes(b"mine")
        with pytest.raises(ReLumixError, match="already holds"):
            check_report_dir(lone)
        assert (lone / name).read_bytes() == b"mine"


# -------------------------------------------------------------------------------------------------- relumix eval



def test_eval_keyframes_baselines_only(data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "rep"
    assert eval_main(str(data_root), "-o", str(out), "--frames", "8", "--max-clips", "1", "--keyframes", "3") == 0
    assert "references at frames [0, 4, 7]" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report["clips"][0]["reference_indices"] == [0, 4, 7] and report["config"]["keyframes"] == 3
    assert report["by_distance"]["distance"] == [0, 1, 2] and report["by_distance"]["frames"] == [3, 4, 1]


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--frames", "4", "--keyframes", "0"], "--keyframes must be at least 1"),
        (["--frames", "4", "--keyframes", "5"], "--keyframes 5 needs clips of at least 5 frames"),
    ],
)
def test_bad_keyframes_are_one_clear_line(data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          argv: list[str], words: str) -> None:
    assert eval_main(str(data_root), "-o", str(tmp_path / "out"), *argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_eval_model_with_keyframes_and_perturbed_references(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "data", 1, 2, 8, 64, seed=11)
    out = tmp_path / "rep"
    assert eval_main(str(data), "-o", str(out), "--keyframes", "2", "--reference-perturb", "noise:0.05",
                     "-c", "relumix-tiny", "--max-clips", "1", "--device", "cpu") == 0
    report = json.loads((out / "report.json").read_text())
    assert report["clips"][0]["reference_indices"] == [0, 7]
    table = report["by_distance"]
    assert table["distance"] == [0, 1, 2, 3] and table["frames"] == [2, 2, 2, 2]
    assert set(table["methods"]) == {*BASELINES, "relumix"}
    assert all(v is not None for v in table["methods"]["relumix"]["psnr"])
    noise = report["perturbations"]["noise"]
    assert noise["levels"] == [0, 0.05] and set(noise["methods"]) == {*BASELINES, "relumix"}
    for rows in noise["methods"].values():
        assert set(rows) == {"psnr", "ssim", "temporal_error"} and len(rows["psnr"]) == 2
    assert noise["methods"]["relumix"]["psnr"][0] == pytest.approx(report["methods"]["relumix"]["psnr"])
    assert noise["methods"]["reference_repeated"]["psnr"][1] < noise["methods"]["reference_repeated"]["psnr"][0]
    for name in ("psnr_by_distance.png", "perturb_noise.png", "psnr_per_frame.png", "summary.md"):
        assert (out / name).is_file(), name
