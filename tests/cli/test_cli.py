"""The ``relumix`` command: exit codes, what it prints, one-line errors, safe writes, lazy heavy imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from checkpoint_helpers import (
    BAD_CHECKPOINTS,
    MARKERS,
    assert_bit_identical,
    official_state,
    write_state,
)

from relumix_core.checkpoints.loading import load_relumix
from relumix_core.cli.main import main
from relumix_core.models.tiny import random_tiny_model

TINY_HEADS = ["--head-channels", "16", "--clip-head-width", "16"]
REPO = Path(__file__).resolve().parents[2]


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The whole stderr, which must be exactly one 'error: ...' line (no traceback)."""
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tiny") / "tiny.safetensors"
    assert main(["init-tiny", str(path), "--seed", "5"]) == 0
    return path


def test_help_is_fast_and_imports_no_torch() -> None:
    code = ("import sys; from relumix_core.cli.main import main; rc = main(['--help']); "
            "print(rc, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("0 False")
    for command in ("convert", "init-tiny", "info", "demo"):
        assert command in out.stdout


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["bogus"]) == 2
    assert main(["convert", "only_src"]) == 2
    assert main(["info", "a", "b"]) == 2
    assert main(["convert", "a", "b", "--dtype", "fp8"]) == 2
    assert main(["convert", "a", "b", "--head-channels", "0"]) == 2
    assert "usage: relumix" in capsys.readouterr().err


@pytest.mark.slow
def test_init_tiny(tiny_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "t.safetensors"
    assert main(["init-tiny", str(out), "--seed", "5"]) == 0
    printed = capsys.readouterr().out
    assert "RANDOM weights" in printed and "seed 5" in printed and str(out) in printed
    model, report = load_relumix(out)
    assert report.format == "ReLumix single file"
    assert_bit_identical(random_tiny_model(5), model)

    before = out.read_bytes()
    assert main(["init-tiny", str(out)]) == 2
    assert "already exists" in _error_line(capsys) and out.read_bytes() == before
    assert main(["init-tiny", str(out), "--seed", "6", "--overwrite"]) == 0
    assert out.read_bytes() != before
    assert [p.name for p in tmp_path.iterdir()] == ["t.safetensors"]


def test_info(tiny_ckpt: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(tiny_ckpt)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Loaded {tiny_ckpt} (ReLumix single file, float32)")
    assert "gates: 44 of 44 attention modules gated" in out and "unet: 1158 tensors" in out


def test_info_official_needs_head_widths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write_state(tmp_path / "relumix.pth", official_state())
    assert main(["info", str(src)]) == 2
    assert "--head-channels" in _error_line(capsys)
    assert main(["info", str(src), *TINY_HEADS]) == 0
    out = capsys.readouterr().out
    assert "official sgm layout" in out and "44 of 44" in out and "ignored 106 keys" in out


@pytest.mark.slow
def test_convert_official(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write_state(tmp_path / "relumix.pth", official_state())
    dst = tmp_path / "relumix.safetensors"
    assert main(["convert", str(src), str(dst), *TINY_HEADS]) == 0
    out = capsys.readouterr().out
    assert "Loaded" in out and "gates: 44 of 44" in out and "reference_image_encoder differs" in out
    assert f"Wrote {dst} (single file" in out
    reference, _ = load_relumix(src, num_head_channels=16, clip_head_width=16)
    assert_bit_identical(reference, load_relumix(dst)[0])

    half = tmp_path / "relumix_fp16.safetensors"
    assert main(["convert", str(dst), str(half), "--dtype", "fp16"]) == 0
    assert "(single file, fp16" in capsys.readouterr().out  # exactness of the cast: test_loading

    folder = tmp_path / "relumix_folder"
    assert main(["convert", str(half), f"{folder}/"]) == 0  # exactness of folders: test_loading
    assert "diffusers-style folder" in capsys.readouterr().out
    assert (folder / "model_index.json").is_file() and (folder / "unet" / "config.json").is_file()
    assert not [p for p in tmp_path.rglob("*.partial")]


@pytest.mark.slow
def test_convert_refuses_to_overwrite(tiny_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dst = tmp_path / "taken.safetensors"
    dst.write_bytes(b"someone else's file")
    assert main(["convert", str(tiny_ckpt), str(dst)]) == 2
    assert "already exists" in _error_line(capsys)
    assert dst.read_bytes() == b"someone else's file"
    assert main(["convert", str(tiny_ckpt), str(dst), "--overwrite"]) == 0
    assert_bit_identical(load_relumix(tiny_ckpt)[0], load_relumix(dst)[0])


@pytest.mark.slow
def test_convert_records_the_detail_radius_and_steps(tiny_ckpt: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    dst = tmp_path / "with_detail.safetensors"
    assert load_relumix(tiny_ckpt)[0].config.detail_sigma == 0.0
    assert main(["convert", str(tiny_ckpt), str(dst), "--detail-sigma", "0.75", "--default-steps", "4"]) == 0
    converted = load_relumix(dst)[0]
    assert converted.config.detail_sigma == 0.75 and converted.config.default_steps == 4
    assert_bit_identical(load_relumix(tiny_ckpt)[0], converted)  # the weights are untouched
    capsys.readouterr()
    assert main(["convert", str(tiny_ckpt), str(tmp_path / "bad.safetensors"), "--detail-sigma", "-1"]) == 2
    assert "detail_sigma" in _error_line(capsys)
    assert not (tmp_path / "bad.safetensors").exists()


@pytest.mark.parametrize("kind", sorted(BAD_CHECKPOINTS))
def test_bad_checkpoints_give_one_line(kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, words = BAD_CHECKPOINTS[kind](tmp_path)
    assert main(["info", str(path), *TINY_HEADS]) == 2
    assert words in _error_line(capsys)
    dst = tmp_path / "out" / "converted.safetensors"
    assert main(["convert", str(path), str(dst), *TINY_HEADS]) == 2
    assert words in _error_line(capsys)
    assert not dst.exists() and not list(tmp_path.rglob("*.partial"))
    assert not any((tmp_path / m).exists() for m in MARKERS)


def test_ctrl_c_exits_130(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import relumix_core.models.tiny

    def interrupted(seed: int = 0) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(relumix_core.models.tiny, "random_tiny_model", interrupted)
    out = tmp_path / "t.safetensors"
    assert main(["init-tiny", str(out)]) == 130
    assert capsys.readouterr().err.strip() == "interrupted"
    assert not out.exists()


def test_demo_options_load_no_torch() -> None:
    code = ("import sys; from relumix_core.cli.main import main; rc = main(['demo', '--help']); "
            "print(rc, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "--frames" in out.stdout and out.stdout.strip().endswith("0 False")


def test_demo_errors_are_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from relumix_core.cli import demo

    assert main(["demo", "--frames", "x"]) == 2  # a usage error of the demo's own options
    assert "relumix demo: error: argument --frames" in capsys.readouterr().err

    def failing(*args: object) -> object:
        raise FileNotFoundError("clip.mp4 not found")

    monkeypatch.setattr(demo, "load_demo_model", failing)
    assert main(["demo", "--frames", "4", "--out", "/nonexistent-relumix-dir/x"]) == 2
    assert _error_line(capsys) == "error: clip.mp4 not found"


def test_convert_records_how_the_model_runs_on_long_clips(tiny_ckpt: Path, tmp_path: Path) -> None:
    dst = tmp_path / "long.safetensors"
    assert main(["convert", str(tiny_ckpt), str(dst), "--detail-sigma-far", "24", "--window-strategy", "anchor"]) == 0
    config = load_relumix(dst)[0].config
    assert config.detail_sigma_far == 24.0 and config.window_strategy == "anchor"
    assert load_relumix(tiny_ckpt)[0].config.window_strategy == "chain"  # the source is untouched
    assert main(["convert", str(tiny_ckpt), str(tmp_path / "x.safetensors"), "--detail-sigma-far", "-1"]) == 2
    assert not (tmp_path / "x.safetensors").exists()
