"""``--memory auto`` (the default) and ``--vae-tile``: what the CLI and the library pick and say."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from relumix_core.cli.main import main
from relumix_core.media.video_io import read_video, write_video
from relumix_core.memory import auto
from relumix_core.models.tiny import random_tiny_model
from relumix_core.pipeline.pipeline import ReLumixPipeline
from relumix_core.pipeline.settings import RelightSettings


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("memory")
    assert main(["init-tiny", str(root / "tiny.safetensors")]) == 0
    yy, xx = np.mgrid[0:64, 0:64].astype(np.float32)
    frames = [np.stack([(xx + t) / 80, yy / 64, 0.5 + 0 * xx], -1) for t in range(6)]
    write_video(root / "in.mp4", (np.stack(frames).clip(0, 1) * 255).astype(np.uint8), 12)
    Image.fromarray((frames[0] * 255).astype(np.uint8)).save(root / "ref.png")
    return root


def _relight(root: Path, out: str, *extra: str) -> int:
    return main(["relight", str(root / "in.mp4"), "-r", str(root / "ref.png"), "-o", str(root / out), "-c",
                 str(root / "tiny.safetensors"), "--steps", "1", "--size", "64", *extra])


def test_auto_is_the_default_and_says_there_is_nothing_to_plan_on_the_cpu(
        workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _relight(workdir, "auto/") == 0
    assert "memory: auto: on cpu, nothing to plan" in capsys.readouterr().out
    assert _relight(workdir, "as_set/", "--memory", "as-set") == 0
    assert "memory:" not in capsys.readouterr().out
    np.testing.assert_array_equal(read_video(workdir / "auto")[0], read_video(workdir / "as_set")[0])


def test_vae_tiles_run_and_a_bad_tile_is_one_line(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _relight(workdir, "tiled.mp4", "--vae-tile", "32") == 0
    assert read_video(workdir / "tiled.mp4")[0].shape == read_video(workdir / "in.mp4")[0].shape
    assert _relight(workdir, "bad.mp4", "--vae-tile", "6") == 2
    err = capsys.readouterr().err
    assert "tile 6" in err and "Traceback" not in err and not (workdir / "bad.mp4").exists()


def test_auto_settings_fit_a_gpu_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    pipe = ReLumixPipeline(random_tiny_model(0))
    settings = RelightSettings(num_steps=1, size=64)
    request = auto.plan_memory(pipe.model.config, 6, (64, 64), settings.resolved(pipe.model), "fp32", None)
    monkeypatch.setattr(auto, "cuda_budget", lambda device: int(request.plan.peak_with_context_bytes * 0.98))
    chosen, line = auto.auto_settings(pipe, 6, 64, 64, settings, "fp32")
    assert chosen != settings.resolved(pipe.model) and "auto within" in line
    monkeypatch.setattr(auto, "cuda_budget", lambda device: None)
    assert auto.auto_settings(pipe, 6, 64, 64, settings, "fp32")[0] is settings


def test_cuda_budget_is_none_off_cuda() -> None:
    assert auto.cuda_budget(torch.device("cpu")) is None


@pytest.mark.slow
@pytest.mark.parametrize("vram", [12, 8])
def test_plan_finds_a_fitting_setting_for_the_authors_model(vram: int, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--architecture", "full", "--frames", "14", "--size", "512", "--vram", str(vram),
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["fits"] and report["peak_with_context_bytes"] <= vram * 2**30
