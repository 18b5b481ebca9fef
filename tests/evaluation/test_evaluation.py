"""Evaluation: metric sanity, baseline properties, report figures, test-clip loading and ``relumix eval`` end to end."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from eval_cli import eval_main
from PIL import Image

from relumix_core.data.synth import write_dataset
from relumix_core.errors import ReLumixError
from relumix_core.evaluation import (
    BASELINES,
    baseline_methods,
    clip_metrics,
    colour_transfer,
    evaluate,
    format_table,
    load_test_clips,
    lpips_status,
    metrics,
    plot_curves,
    psnr_per_frame,
    ratio_propagation,
    reference_repeated,
    save_png,
    ssim_per_frame,
    strip,
    temporal_error,
    temporal_lpips,
    temporal_ssim,
    write_report,
)
from relumix_core.evaluation.baselines import lab_to_rgb, rgb_to_lab
from relumix_core.evaluation.plots import FONT_SIZE, PLOT_SIZE

METRIC_NAMES = ("psnr", "ssim", "temporal_error", "temporal_ssim", "temporal_lpips")


def smooth_clip(frames: int = 6, size: int = 32, seed: int = 0) -> torch.Tensor:
    """A moving smooth pattern in [0.2, 0.8]: room for offsets without clamping."""
    gen = torch.Generator().manual_seed(seed)
    phase = torch.rand(3, generator=gen) * 6
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing="ij")
    out = [torch.stack([0.5 + 0.3 * torch.sin((xx + 2 * t) / 5 + phase[c]) * torch.cos(yy / 7) for c in range(3)])
           for t in range(frames)]
    return torch.stack(out)


# -------------------------------------------------------------------------------------------------- metrics


def test_identical_clips_score_perfectly() -> None:
    clip = smooth_clip()
    assert torch.allclose(psnr_per_frame(clip, clip), torch.full((6,), 100.0, dtype=torch.float64))
    assert torch.allclose(ssim_per_frame(clip, clip), torch.ones(6, dtype=torch.float64))
    assert temporal_error(clip, clip).shape == (5,) and temporal_error(clip, clip).abs().max() == 0


def test_known_mse_gives_known_psnr() -> None:
    gt = torch.full((2, 3, 8, 8), 0.5)
    assert torch.allclose(psnr_per_frame(gt + 0.1, gt), torch.full((2,), 20.0, dtype=torch.float64))
    pred = gt.clone()
    pred[1] += 0.01  # mse 1e-4 -> 40 dB
    assert psnr_per_frame(pred, gt).tolist() == pytest.approx([100.0, 40.0])


def naive_ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """SSIM with a full 2-D Gaussian window in float64: an independent check of the separable float32 path."""
    x = torch.arange(11, dtype=torch.float64) - 5
    g = torch.exp(-(x**2) / (2 * 1.5**2))
    k = (g[:, None] * g[None]) / (g.sum() ** 2)
    k = k.expand(3, 1, 11, 11)
    a, b = a.double(), b.double()

    def blur(z: torch.Tensor) -> torch.Tensor:
        return F.conv2d(z, k, groups=3)

    ma, mb = blur(a), blur(b)
    va, vb, cov = blur(a * a) - ma**2, blur(b * b) - mb**2, blur(a * b) - ma * mb
    c1, c2 = 0.01**2, 0.03**2
    return (((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2))).flatten(1).mean(1)


def test_ssim_matches_definition_and_drops_with_noise() -> None:
    gt = smooth_clip(frames=3)
    gen = torch.Generator().manual_seed(1)
    noise = torch.randn(gt.shape, generator=gen)
    light, heavy = (gt + 0.03 * noise).clamp(0, 1), (gt + 0.2 * noise).clamp(0, 1)
    assert torch.allclose(ssim_per_frame(light, gt), naive_ssim(light, gt), atol=1e-6)
    s_light, s_heavy = ssim_per_frame(light, gt), ssim_per_frame(heavy, gt)
    assert (s_light < 1).all() and (s_heavy < s_light - 0.2).all()


def test_ssim_shrinks_its_window_for_small_frames() -> None:
    assert metrics.ssim_window_size(64, 64) == 11
    assert metrics.ssim_window_size(7, 9) == 7
    assert metrics.ssim_window_size(6, 40) == 5
    clip = smooth_clip(frames=2, size=6)
    assert torch.allclose(ssim_per_frame(clip, clip), torch.ones(2, dtype=torch.float64))
    assert ssim_per_frame(clip, clip * 0.5)[0] < 0.9
    with pytest.raises(ReLumixError, match="3x3"):
        ssim_per_frame(torch.rand(1, 3, 2, 8), torch.rand(1, 3, 2, 8))


def test_flicker_costs_temporal_error_but_a_constant_offset_does_not() -> None:
    gt = smooth_clip(frames=8)
    signs = torch.tensor([(-1.0) ** t for t in range(8)]).view(8, 1, 1, 1)
    offset, flicker = gt + 0.05, gt + 0.05 * signs
    assert torch.allclose(psnr_per_frame(offset, gt), psnr_per_frame(flicker, gt))
    assert temporal_error(offset, gt).max() < 1e-6
    assert temporal_error(flicker, gt).min() > 0.09  # |(+0.05) - (-0.05)| at every pixel
    assert temporal_ssim(flicker).mean() < temporal_ssim(offset).mean()


def test_temporal_ssim_of_frozen_clip_and_single_frame() -> None:
    frozen = smooth_clip(frames=1).expand(4, -1, -1, -1)
    assert torch.allclose(temporal_ssim(frozen), torch.ones(3, dtype=torch.float64))
    assert temporal_ssim(frozen[:1]).shape == (0,) and temporal_error(frozen[:1], frozen[:1]).shape == (0,)


def test_clip_metrics_leave_frame_zero_out_of_the_means() -> None:
    gt = smooth_clip(frames=5)
    pred = gt.clone()
    pred[0] = 1 - pred[0]  # only the reference frame is wrong
    result = clip_metrics(pred, gt, use_lpips=False)
    assert set(result["per_frame"]) == set(METRIC_NAMES) == set(result["mean"])
    assert len(result["per_frame"]["psnr"]) == 5 and len(result["per_frame"]["temporal_ssim"]) == 4
    assert result["per_frame"]["psnr"][0] < 20
    assert result["mean"]["psnr"] == pytest.approx(100.0) and result["mean"]["ssim"] == pytest.approx(1.0)
    assert result["mean"]["temporal_lpips"] is None and result["per_frame"]["temporal_lpips"] is None
    assert clip_metrics(pred, gt, skip_first=False, use_lpips=False)["mean"]["psnr"] < 100.0
    one = clip_metrics(gt[:1], gt[:1], use_lpips=False)
    assert one["mean"]["psnr"] == pytest.approx(100.0) and one["mean"]["temporal_error"] is None


def test_lpips_status_explains_a_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    ok, why = lpips_status()
    assert isinstance(ok, bool) and why
    real = metrics.importlib.util.find_spec
    monkeypatch.setattr(metrics.importlib.util, "find_spec", lambda name: None if name == "lpips" else real(name))
    ok, why = lpips_status()
    assert not ok and why.startswith("lpips package not installed") and "AlexNet" in why
    with pytest.raises(ReLumixError, match="lpips package not installed"):
        temporal_lpips(smooth_clip())


# -------------------------------------------------------------------------------------------------- baselines


@pytest.fixture
def pair() -> tuple[torch.Tensor, torch.Tensor, int]:
    """A source clip in [0.2, 0.8] and a relit reference of frame 2 (a colour cast, away from the gamut edges)."""
    source = smooth_clip(frames=5, seed=3)
    k = 2
    reference = (source[k] * torch.tensor([0.9, 0.7, 0.5]).view(3, 1, 1) + 0.05).clamp(0, 1)
    return source, reference, k


def test_every_baseline_keeps_shape_and_range(pair: tuple[torch.Tensor, torch.Tensor, int]) -> None:
    source, reference, k = pair
    assert list(BASELINES) == ["input_unchanged", "reference_repeated", "colour_transfer", "ratio_propagation"]
    for name, fn in BASELINES.items():
        out = fn(source, reference, k)
        assert out.shape == source.shape and out.dtype == torch.float32, name
        assert out.min() >= 0 and out.max() <= 1, name
    assert torch.equal(BASELINES["input_unchanged"](source, reference, k), source)
    with pytest.raises(ReLumixError, match="outside"):
        ratio_propagation(source, reference, 5)
    with pytest.raises(ReLumixError, match="one frame"):
        colour_transfer(source, reference[:, :8], k)


def test_reference_repeated_is_the_reference_everywhere(pair: tuple[torch.Tensor, torch.Tensor, int]) -> None:
    source, reference, k = pair
    out = reference_repeated(source, reference, k)
    assert all(torch.equal(out[t], reference) for t in range(out.shape[0]))


def test_ratio_propagation_returns_the_reference_at_frame_k(pair: tuple[torch.Tensor, torch.Tensor, int]) -> None:
    source, reference, k = pair
    out = ratio_propagation(source, reference, k)
    assert torch.allclose(out[k], reference, atol=1e-6)
    assert not torch.allclose(out[0], reference, atol=1e-2)  # other frames keep their own content


def test_colour_transfer_maps_channel_statistics(pair: tuple[torch.Tensor, torch.Tensor, int]) -> None:
    source, reference, k = pair
    out = colour_transfer(source, reference, k)
    got, want = rgb_to_lab(out[k]).flatten(1), rgb_to_lab(reference).flatten(1)
    assert torch.allclose(got.mean(1), want.mean(1), atol=0.05)  # Lab units: L in 0..100
    assert torch.allclose(got.std(1), want.std(1), atol=0.05)
    assert torch.allclose(out[k].mean((1, 2)), reference.mean((1, 2)), atol=0.01)  # and so, nearly, in RGB
    assert torch.allclose(lab_to_rgb(rgb_to_lab(source)).float(), source, atol=1e-5)


# -------------------------------------------------------------------------------------------------- plots


def test_plot_curves_is_a_png_of_the_plot_size(tmp_path: Path) -> None:
    image = plot_curves({"a": [20.0, math.nan, 22.0, 23.5], "b": [float("nan"), 18.0, 17.0, None], "c": []},
                        "title", "frame", "PSNR (dB)")
    path = save_png(image, tmp_path / "curves.png")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == PLOT_SIZE
        colours = {im.getpixel((x, y)) for x in range(0, im.width, 2) for y in range(0, im.height, 2)}
    assert len(colours) > 5  # axes, text and coloured lines, not a blank canvas
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]  # no temporary file left behind
    plot_curves({"flat": [1.0, 1.0]}, "t", "x", "y")
    plot_curves({"none": [math.nan]}, "t", "x", "y")


def test_strip_has_one_row_per_entry(tmp_path: Path) -> None:
    clip = smooth_clip(frames=4, size=16)
    rows = {"input": clip, "reference": clip[0], "output": clip, "ground truth": clip}
    image = strip(rows, [0, 2, 3], scale=2, gap=4)
    header = FONT_SIZE + 8
    assert image.height == header + 4 * (32 + 4) + 4
    assert image.width > 3 * (32 + 4)
    save_png(image, tmp_path / "s.png")
    with Image.open(tmp_path / "s.png") as im:
        assert im.size == image.size
        # the reference row shows one tile: its second column is background
        top = header + 1 * 36
        left = image.width - 3 * 36 + 36
        assert im.getpixel((left + 16, top + 16)) == (255, 255, 255)


# -------------------------------------------------------------------------------------------------- clips


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 scenes x 3 lights x 6 frames at 32 px."""
    return write_dataset(tmp_path_factory.mktemp("evalds") / "data", 2, 3, 6, 32, seed=0)


def test_load_test_clips_is_deterministic(data_root: Path) -> None:
    clips = load_test_clips(data_root, 4, pairs_per_scene=2, seed=5)
    again = load_test_clips(data_root, 4, pairs_per_scene=2, seed=5)
    assert [c.name for c in clips] == [c.name for c in again] and len(clips) == 4
    for a, b in zip(clips, again, strict=True):
        assert torch.equal(a.source, b.source) and torch.equal(a.target, b.target)
    assert len({c.name for c in clips}) == 4
    assert [c.scene for c in clips] == ["map_00/scene_0000", "map_00/scene_0001"] * 2  # round-robin over scenes
    for clip in clips:
        assert clip.source.shape == clip.target.shape == (4, 3, 32, 32)
        assert clip.reference_index == 0 and torch.equal(clip.reference, clip.target[0])
        assert clip.source_light != clip.target_light
        assert 0 <= clip.source.min() and clip.source.max() <= 1
    choices = {tuple(c.name for c in load_test_clips(data_root, 2, pairs_per_scene=1, seed=s)) for s in range(6)}
    assert len(choices) > 1  # the seed matters
    assert len(load_test_clips(data_root, 2, pairs_per_scene=99)) == 12  # every ordered pair of 3 lights x 2 scenes
    assert [c.scene for c in load_test_clips(data_root, 2, max_clips=2)] == ["map_00/scene_0000", "map_00/scene_0001"]
    assert load_test_clips(data_root, 2, size=16, max_clips=1)[0].source.shape == (2, 3, 16, 16)


def test_load_test_clips_errors_name_the_path(data_root: Path, tmp_path: Path) -> None:
    broken = Path(shutil.copytree(data_root, tmp_path / "data"))
    scene = broken / "map_00" / "scene_0001"
    shutil.rmtree(scene / "light_01")
    shutil.rmtree(scene / "light_02")
    with pytest.raises(ReLumixError, match="1 light folder") as err:
        load_test_clips(broken, 4)
    assert str(scene) in str(err.value)
    with pytest.raises(ReLumixError, match="fewer than the 7 needed"):
        load_test_clips(data_root, 7)
    with pytest.raises(ReLumixError, match="does not exist"):
        load_test_clips(tmp_path / "nowhere", 4)
    with pytest.raises(ReLumixError, match="multiples of 8"):
        load_test_clips(data_root, 4, size=30)


def test_evaluate_report_and_refusal(data_root: Path, tmp_path: Path) -> None:
    clips = load_test_clips(data_root, 4, max_clips=3)
    outputs: dict = {}
    seen = []
    report = evaluate(clips, {"shifted": lambda c: (c.target + 0.02).clamp(0, 1)}, progress=lambda d, t: seen.append(d),
                      outputs=outputs, keep_outputs=2, use_lpips=False)
    assert seen == [1, 2, 3]
    assert list(report["methods"]) == [*BASELINES, "shifted"]
    assert set(outputs) == {clips[0].name, clips[1].name}
    assert report["methods"]["shifted"]["psnr"] >= 20 * math.log10(1 / 0.02) - 1e-6  # less where clamped at 1
    assert len(report["per_frame_psnr"]["shifted"]) == 4 and "reference" in report["notes"]["keyframes"]
    with pytest.raises(ReLumixError, match="returned"):
        evaluate(clips[:1], {"bad": lambda c: c.target[:2]}, use_lpips=False)
    path = write_report(report, clips, outputs, tmp_path / "rep")
    names = sorted(p.name for p in path.parent.iterdir())
    assert names == sorted(["report.json", "summary.md", "psnr_per_frame.png", "psnr_by_distance.png",
                            *(f"strip_{c.name}.png" for c in clips[:2])])
    assert json.loads(path.read_text())["num_clips"] == 3
    with pytest.raises(ReLumixError, match="already holds"):
        write_report(report, clips, outputs, tmp_path / "rep")
    write_report(report, clips, {clips[2].name: outputs[clips[0].name]}, tmp_path / "rep", overwrite=True)
    assert sorted(p.name for p in path.parent.glob("strip_*.png")) == [f"strip_{clips[2].name}.png"]  # stale gone
    assert baseline_methods().keys() == BASELINES.keys()


def test_seam_error_scores_the_seam_steps_only(data_root: Path) -> None:
    from relumix_core.evaluation.evaluate import window_seams

    clips = load_test_clips(data_root, 6, max_clips=1)
    seams = window_seams(4, 1, "chain")  # windows 0-3 and 2-5 (the last one ends at the clip's end): steps 1-3
    assert seams(clips[0]) == [1, 2, 3]

    def jump_at(step: int):
        def method(c):
            out = c.target.clone()
            out[step + 1 :] = (out[step + 1 :] + 0.1).clamp(0, 1)  # a light jump between frames step and step+1
            return out
        return method

    report = evaluate(clips, {"seam": jump_at(2), "inside": jump_at(4)}, include_baselines=False, use_lpips=False,
                      seams=seams)
    seam, inside = report["methods"]["seam"], report["methods"]["inside"]
    assert seam["seam_temporal_error"] > 0.02 and inside["seam_temporal_error"] == pytest.approx(0, abs=1e-6)
    assert seam["temporal_error"] == pytest.approx(inside["temporal_error"], rel=0.2)  # same jump, other place
    assert "seam error" in format_table(report)
    assert "seam_temporal_error" not in evaluate(clips, include_baselines=True, use_lpips=False)["methods"][
        "input_unchanged"]


# -------------------------------------------------------------------------------------------------- relumix eval



@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from relumix_core.checkpoints.single_file import save_single_file
    from relumix_core.models.tiny import random_tiny_model

    return save_single_file(random_tiny_model(0), tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


@pytest.mark.slow
def test_eval_with_model_writes_every_metric(data_root: Path, checkpoint: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report"
    assert eval_main(str(data_root), "-o", str(out), "-c", str(checkpoint), "--frames", "6", "--steps", "2",
                     "--pairs-per-scene", "1", "--device", "cpu") == 0
    printed = capsys.readouterr().out
    assert "relumix" in printed and "ratio_propagation" in printed and str(out / "report.json") in printed
    report = json.loads((out / "report.json").read_text())
    assert list(report["methods"]) == [*BASELINES, "relumix"]
    for name, values in report["methods"].items():
        assert set(values) == {*METRIC_NAMES, "seam_temporal_error"}, name
        assert values["seam_temporal_error"] is None  # 6 frames fit in one window: no seams
        for metric in ("psnr", "ssim", "temporal_error", "temporal_ssim"):
            assert isinstance(values[metric], float) and math.isfinite(values[metric]), (name, metric)
    assert report["num_clips"] == 2 and report["num_frames"] == 6 and report["config"]["steps"] == 2
    assert (report["config"]["min_guidance"], report["config"]["max_guidance"]) == (1.0, 1.5)  # relight defaults
    clip = report["clips"][0]["methods"]["relumix"]
    assert len(clip["per_frame"]["psnr"]) == 6 and len(clip["per_frame"]["temporal_error"]) == 5
    assert (out / "summary.md").read_text().count("| relumix |") == 1
    assert len(list(out.glob("strip_*.png"))) == 2

    before = (out / "report.json").read_bytes()
    assert eval_main(str(data_root), "-o", str(out), "-c", str(tmp_path / "missing.safetensors")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds" in err[0] and "--force" in err[0], err  # checked before the model
    assert (out / "report.json").read_bytes() == before


@pytest.mark.slow
def test_oracle_scores_the_ground_truth_through_the_vae(data_root: Path, checkpoint: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from relumix_core.checkpoints.loading import load_relumix
    from relumix_core.evaluation import first_stage_oracle

    model, _ = load_relumix(checkpoint)
    clip = load_test_clips(data_root, 4, max_clips=1)[0]
    out = first_stage_oracle(model, 4)(clip)
    assert out.shape == clip.target.shape and 0 <= float(out.min()) and float(out.max()) <= 1
    torch.testing.assert_close(out, first_stage_oracle(model, 4)(clip))  # the posterior mean: deterministic
    report = tmp_path / "rep"
    assert eval_main(str(data_root), "-o", str(report), "-c", str(checkpoint), "--frames", "4", "--steps", "1",
                     "--max-clips", "1", "--oracle", "--min-guidance", "1", "--max-guidance", "1") == 0
    written = json.loads((report / "report.json").read_text())
    assert (written["config"]["min_guidance"], written["config"]["max_guidance"]) == (1.0, 1.0)
    methods = written["methods"]
    assert math.isfinite(methods["first_stage_oracle"]["psnr"])
    assert eval_main(str(data_root), "-o", str(tmp_path / "rep2"), "--oracle") == 2
    assert "--oracle needs a checkpoint" in capsys.readouterr().err


def test_eval_baselines_only_and_force(data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "base"
    assert eval_main(str(data_root), "-o", str(out), "--frames", "5", "--max-clips", "2") == 0
    assert "baselines only" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert list(report["methods"]) == list(BASELINES) and report["num_clips"] == 2
    assert eval_main(str(data_root), "-o", str(out), "--frames", "4", "--force") == 0
    assert json.loads((out / "report.json").read_text())["num_frames"] == 4


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["{missing}"], "does not exist"),
        (["{data}"], "fewer than the 8 needed (clips default to 8 frames; pass --frames N"),  # the set has 6
        (["{data}", "--frames", "0"], "--frames must be at least 1"),
        (["{data}", "--frames", "4", "--size", "30"], "multiples of 8"),
        (["{data}", "--frames", "4", "-c", "{missing}"], "does not exist"),
        (["{data}", "--frames", "4", "-c", "{missing}", "--steps", "0"], "steps must be at least 1"),
        (["{data}", "--frames", "4", "-c", "{missing}", "--max-guidance", "nan"], "max_guidance must be a finite"),
    ],
)
def test_bad_input_is_one_clear_line(data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     argv: list[str], words: str) -> None:
    missing = tmp_path / "missing"
    argv = [a.format(missing=missing, data=data_root) for a in argv]
    assert eval_main(*argv, "-o", str(tmp_path / "out")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and words in err[0], err
    assert not (tmp_path / "out").exists()
