"""Reference perturbations: each changes the references by the expected amount, the spec parser's errors, the
perturbation sweep and its report table, and ``relumix eval --reference-perturb`` (baselines only)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from eval_cli import eval_main

from relumix_core.data.synth import write_dataset
from relumix_core.errors import ReLumixError
from relumix_core.evaluation import (
    BASELINES,
    EvalClip,
    evaluate,
    parse_perturb_spec,
    parse_perturb_specs,
    perturb_references,
    perturbation_sweep,
    perturbed_clip,
    write_report,
)
from relumix_core.evaluation.perturb import PERTURBATIONS, add_noise, blur, clip_seed, jpeg, shift, white_balance
from relumix_core.media.blur import gaussian_blur


def smooth_images(count: int = 2, size: int = 32) -> torch.Tensor:
    """Smooth gradients in [0.25, 0.75]: JPEG-friendly and far from the clamp."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    images = [torch.stack([0.25 + 0.5 * xx, 0.25 + 0.5 * yy, 0.5 + 0.2 * (xx - yy) * (i + 1) / count])
              for i in range(count)]
    return torch.stack(images)


def random_images(count: int = 2, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(count, 3, size, size, generator=torch.Generator().manual_seed(seed))


# -------------------------------------------------------------------------------------------------- perturbations


def test_every_kind_is_the_identity_at_level_zero() -> None:
    images = random_images()
    assert list(PERTURBATIONS) == ["noise", "color", "blur", "shift", "jpeg"]
    for kind in PERTURBATIONS:
        out = perturb_references(images, kind, 0, seed=1)
        assert torch.equal(out, images) and out is not images, kind


def test_noise_has_the_asked_standard_deviation_and_is_seeded() -> None:
    grey = torch.full((2, 3, 64, 64), 0.5)
    out = add_noise(grey, 0.05, seed=7)
    diff = out - grey
    assert float(diff.std()) == pytest.approx(0.05, rel=0.03) and abs(float(diff.mean())) < 0.002
    assert torch.equal(out, add_noise(grey, 0.05, seed=7))  # reproducible
    assert not torch.equal(out, add_noise(grey, 0.05, seed=8))
    assert not torch.equal(diff[0], diff[1])  # each reference gets its own noise
    torch.testing.assert_close(add_noise(grey, 0.1, seed=7) - grey, 2 * diff, atol=1e-6, rtol=0)  # one draw, scaled
    assert 0 <= float(add_noise(grey, 2.0, seed=7).min()) and float(add_noise(grey, 2.0, seed=7).max()) <= 1


def test_color_applies_the_documented_gains() -> None:
    grey = torch.full((1, 3, 8, 8), 0.5)
    out = white_balance(grey, 0.1)
    assert out[0, :, 0, 0].tolist() == pytest.approx([0.55, 0.5, 0.45])
    assert float(white_balance(torch.full((1, 3, 8, 8), 0.95), 0.2)[0, 0].max()) == 1.0  # clamped


def test_blur_is_the_project_gaussian_blur_and_softens() -> None:
    images = random_images()
    out = blur(images, 2.0)
    torch.testing.assert_close(out, gaussian_blur(images, 2.0).clamp(0, 1))
    assert float(out.std()) < 0.5 * float(images.std())
    torch.testing.assert_close(out.mean((-2, -1)), images.mean((-2, -1)), atol=0.02, rtol=0)  # colour kept


def test_shift_moves_the_content_right_and_down_with_repeated_edges() -> None:
    images = random_images()
    out = shift(images, 3)
    assert torch.equal(out[..., 3:, 3:], images[..., :-3, :-3])
    assert torch.equal(out[..., 0, 3:], images[..., 0, :-3])  # the top rows repeat the first row
    assert torch.equal(out[..., 3:, 0], images[..., :-3, 0])  # the left columns repeat the first column
    assert torch.equal(out[..., :3, :3], images[..., :1, :1].expand(-1, -1, 3, 3))
    assert torch.equal(shift(images, 100), images[..., :1, :1].expand_as(images))  # further than the image


def test_jpeg_error_grows_as_the_quality_falls() -> None:
    images = smooth_images()
    errors = [float((jpeg(images, q) - images).abs().mean()) for q in (100, 50, 10)]
    assert 0 < errors[0] < errors[1] < errors[2]
    assert errors[0] < 0.01
    levels = jpeg(images, 50) * 255
    assert torch.allclose(levels, levels.round(), atol=1e-4)  # 8-bit values


# -------------------------------------------------------------------------------------------------- parser


def test_specs_parse_to_levels_with_the_clean_run_first() -> None:
    assert parse_perturb_spec("noise:0.02,0.05") == ("noise", [0, 0.02, 0.05])
    assert parse_perturb_spec(" JPEG : 90, 10 ") == ("jpeg", [0, 90, 10])
    assert parse_perturb_spec("shift:0,2,2,1") == ("shift", [0, 2, 1])  # 0 and repeats dropped, order kept
    assert isinstance(parse_perturb_spec("shift:2")[1][1], int)
    assert parse_perturb_specs(["blur:1", "color:0.1"]) == {"blur": [0, 1.0], "color": [0, 0.1]}
    assert parse_perturb_specs(None) == {}


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("sparkle:1", "unknown kind 'sparkle'; choose one of noise, color, blur, shift, jpeg"),
        ("noise", "expects KIND:L1,L2"),
        ("noise:abc", "'abc' is not a number"),
        ("noise:0.1,", "empty level"),
        ("noise:", "give at least one level"),
        ("noise:nan", "finite"),
        ("noise:-0.1", "sigma must be 0 or more"),
        ("blur:-1", "sigma must be 0 or more"),
        ("jpeg:0", "quality must be a whole number in 1..100"),
        ("jpeg:101", "quality must be a whole number in 1..100"),
        ("jpeg:50.5", "quality must be a whole number in 1..100"),
        ("shift:1.5", "whole pixels"),
        ("color:1.5", "L must be in 0..1"),
    ],
)
def test_bad_specs_name_what_is_wrong(spec: str, words: str) -> None:
    with pytest.raises(ReLumixError, match="--reference-perturb") as err:
        parse_perturb_spec(spec)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_a_kind_given_twice_is_refused() -> None:
    with pytest.raises(ReLumixError, match="noise is given twice"):
        parse_perturb_specs(["noise:0.1", "noise:0.2"])


# -------------------------------------------------------------------------------------------------- sweep


def clip(name: str = "c", frames: int = 6) -> EvalClip:
    target = 0.3 + 0.4 * torch.rand(frames, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    source = 0.3 + 0.4 * torch.rand(frames, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    return EvalClip(name, source, target, target[[0, frames - 1]].clone(), [0, frames - 1])


def test_perturbed_clip_changes_only_the_references() -> None:
    c = clip()
    noisy = perturbed_clip(c, "noise", 0.05, seed=3)
    assert noisy.source is c.source and noisy.target is c.target and noisy.reference_indices == [0, 5]
    assert not torch.equal(noisy.references, c.references)
    assert torch.equal(noisy.references, perturbed_clip(c, "noise", 0.05, seed=3).references)
    assert clip_seed(3, "a") != clip_seed(3, "b") and clip_seed(3, "a") == clip_seed(3, "a")
    assert not torch.equal(perturbed_clip(clip("other"), "noise", 0.05, seed=3).references, noisy.references)


def test_sweep_scores_every_method_at_every_level() -> None:
    clips = [clip("a"), clip("b")]

    def ignores_reference(c: EvalClip) -> torch.Tensor:
        return c.source.clone()

    def copies_reference(c: EvalClip) -> torch.Tensor:
        return c.references[:1].expand_as(c.target).clone()

    methods = {"ignores": ignores_reference, "copies": copies_reference}
    report = evaluate(clips, methods, use_lpips=False)
    seen = []
    table = perturbation_sweep(report, clips, methods, {"noise": [0, 0.05, 0.2], "shift": [0, 2]}, seed=0,
                               progress=lambda d, t: seen.append((d, t)))
    assert list(table) == ["noise", "shift"] and seen[-1] == (6, 6)
    noise = table["noise"]
    assert noise["levels"] == [0, 0.05, 0.2] and list(noise["methods"]) == [*BASELINES, "ignores", "copies"]
    for name, rows in noise["methods"].items():
        assert set(rows) == {"psnr", "ssim", "temporal_error"} and all(len(v) == 3 for v in rows.values()), name
        assert rows["psnr"][0] == report["methods"][name]["psnr"]  # level 0 is the clean run
    assert noise["methods"]["ignores"]["psnr"] == pytest.approx([report["methods"]["ignores"]["psnr"]] * 3)
    copies = noise["methods"]["copies"]["psnr"]
    assert copies[0] > copies[1] > copies[2]
    with pytest.raises(ReLumixError, match="must start with 0"):
        perturbation_sweep(report, clips, methods, {"noise": [0.1]})
    with pytest.raises(ReLumixError, match="no scores for extra"):
        perturbation_sweep(report, clips, {"extra": ignores_reference}, {"noise": [0, 0.1]})


def test_report_has_one_plot_per_kind_and_drops_stale_ones(tmp_path: Path) -> None:
    clips = [clip()]
    report = evaluate(clips, use_lpips=False)
    report["perturbations"] = perturbation_sweep(report, clips, None, {"jpeg": [0, 50, 10], "blur": [0, 1.5]})
    out = write_report(report, clips, {}, tmp_path / "rep").parent
    assert sorted(p.name for p in out.glob("perturb_*.png")) == ["perturb_blur.png", "perturb_jpeg.png"]
    summary = (out / "summary.md").read_text()
    assert "Reference jpeg" in summary and "0 / 50 / 10" in summary
    report["perturbations"].pop("blur")
    write_report(report, clips, {}, out, overwrite=True)
    assert [p.name for p in out.glob("perturb_*.png")] == ["perturb_jpeg.png"]
    assert json.loads((out / "report.json").read_text())["perturbations"]["jpeg"]["levels"] == [0, 50, 10]


def test_level_plots_label_their_points_and_keep_every_curve_inside() -> None:
    from relumix_core.evaluation.plots import nice_ticks, plot_curves

    series = {"m": [27.6, 22.1, 13.4]}
    labelled = plot_curves(series, "t", "x", "y", x_labels=["0", "0.02", "0.05"])
    plain = plot_curves(series, "t", "x", "y")
    assert labelled.size == plain.size and labelled.tobytes() != plain.tobytes()  # other tick labels
    ticks = nice_ticks(13.2, 27.8)
    assert ticks[0] <= 13.2 and ticks[-1] >= 27.8  # the axis covers the highest point


# -------------------------------------------------------------------------------------------------- relumix eval



@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("pds") / "data", 1, 2, 6, 32, seed=5)


def test_eval_reference_perturb_baselines_only(data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "rep"
    assert eval_main(str(data_root), "-o", str(out), "--frames", "6", "--max-clips", "1", "--reference-perturb",
                     "noise:0.1", "--reference-perturb", "color:0.2") == 0
    report = json.loads((out / "report.json").read_text())
    assert list(report["perturbations"]) == ["noise", "color"]
    assert report["config"]["reference_perturb"] == ["noise:0.1", "color:0.2"]
    repeated = report["perturbations"]["color"]["methods"]["reference_repeated"]["psnr"]
    assert repeated[1] < repeated[0]
    assert (out / "perturb_noise.png").is_file() and (out / "perturb_color.png").is_file()


def test_bad_perturb_spec_fails_before_any_work(data_root: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert eval_main(str(data_root), "-o", str(tmp_path / "out"), "--frames", "6", "-c", str(tmp_path / "none"),
                     "--reference-perturb", "jpeg:0") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "jpeg: quality must be a whole number in 1..100" in err[0], err
    assert not (tmp_path / "out").exists()
