"""The memory plan: the tracker counts what it should, follows the real code path, and the switches act."""

from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from relumix_core.cli.main import main
from relumix_core.memory.attention import attention_as
from relumix_core.memory.search import BudgetSearch, Candidate
from relumix_core.memory.simulate import (
    CUDA_CONTEXT_BYTES,
    build_for_plan,
    component_bytes,
    fp8_upcast_bytes,
    simulate,
    trace_run,
)
from relumix_core.memory.tracker import MemoryTracker, rounded
from relumix_core.models.full import builtin_full_config, share_identical_copies
from relumix_core.models.tiny import build_untrained, relumix_tiny_config
from relumix_core.pipeline.settings import RelightSettings

TINY = relumix_tiny_config()


def test_tracker_counts_weights_input_and_output_of_a_linear_layer_exactly() -> None:
    layer = nn.Linear(300, 200, device="meta")
    x = torch.empty(7, 300, device="meta")
    tracker = MemoryTracker("meta")
    weights = rounded(300 * 200 * 4) + rounded(200 * 4)
    tracker.enter_stage("linear", weights + rounded(x.nbytes))
    tracker.ignore([*layer.parameters(), x])
    with tracker:
        y = layer(x)
    assert tracker.peak == weights + rounded(7 * 300 * 4) + rounded(7 * 200 * 4)
    assert tracker.live == rounded(y.nbytes)
    del y
    assert tracker.live == 0  # freed with its last tensor


def test_fused_attention_keeps_no_score_matrix() -> None:
    q = torch.empty(2, 4, 1024, 64, device="meta", dtype=torch.float16)
    peaks = {}
    for kernel in ("math", "fused"):
        tracker = MemoryTracker("meta")
        with attention_as(kernel), tracker:
            torch.nn.functional.scaled_dot_product_attention(q, q, q)
        peaks[kernel] = tracker.peak
    scores = 2 * 4 * 1024 * 1024 * 2
    assert peaks["math"] >= scores > peaks["fused"]


def _real_cpu_peaks(settings: RelightSettings, attention: str) -> dict[str, int]:
    """The same tracker and stage bookkeeping around a real CPU run of the tiny model (random weights)."""
    model = build_untrained(TINY, seed=0)  # real, random weights on the CPU
    return trace_run(model, 8, 64, 64, settings, "fp32", False, attention, "tiny", "cpu").stages


@pytest.mark.slow
def test_meta_plan_matches_a_real_cpu_run_stage_by_stage() -> None:
    settings = RelightSettings(num_steps=2)
    simulated = simulate(TINY, 8, 64, 64, settings, "fp32", attention="math").stages
    real = _real_cpu_peaks(settings, "math")  # the CPU has no fused attention kernels
    for stage in ("embed", "encode", "sample", "decode"):
        assert abs(simulated[stage] - real[stage]) <= 0.05 * real[stage], (stage, simulated[stage], real[stage])


@pytest.mark.slow
def test_windowed_peak_stays_flat_with_clip_length() -> None:
    short = simulate(TINY, 8, 64, 64, RelightSettings(num_steps=1), "fp32")
    long = simulate(TINY, 40, 64, 64, RelightSettings(num_steps=1), "fp32")
    assert long.windows > short.windows
    assert long.peak_bytes <= 1.05 * short.peak_bytes


@pytest.mark.slow
def test_full_size_peak_is_flat_from_14_to_300_frames_in_windows() -> None:
    config = share_identical_copies(builtin_full_config())
    short = simulate(config, 14, 512, 512, RelightSettings(), "fp16", architecture="full")
    long = simulate(config, 300, 512, 512, RelightSettings(), "fp16", architecture="full")
    assert long.windows == 30 and short.windows == 1  # chain windows of 14 sharing 4 frames
    assert short.peak_bytes <= long.peak_bytes <= 1.05 * short.peak_bytes


@pytest.mark.slow
def test_sequential_branches_and_offload_lower_what_they_should() -> None:
    base = simulate(TINY, 8, 64, 64, RelightSettings(num_steps=1), "fp32")
    sequential = simulate(TINY, 8, 64, 64, RelightSettings(num_steps=1, batch_branches=False), "fp32")
    offload = simulate(TINY, 8, 64, 64, RelightSettings(num_steps=1), "fp32", offload=True)
    assert sequential.stages["sample"] < base.stages["sample"]
    assert offload.weights_bytes < base.weights_bytes and offload.peak_bytes < base.peak_bytes
    assert sequential.flops["total"] == base.flops["total"]  # the same work, in two calls


@pytest.mark.slow
def test_fp8_halves_the_unet_weights_of_fp16() -> None:
    config = share_identical_copies(builtin_full_config())
    model = build_for_plan(config, "fp16")
    assert component_bytes(model, ("unet",), "fp8") * 2 == pytest.approx(component_bytes(model, ("unet",), "fp16"),
                                                                          rel=1e-3)


@pytest.mark.slow
def test_fp8_adds_one_upcast_layer_while_sampling_and_nothing_elsewhere() -> None:
    model = build_for_plan(TINY, "fp16")
    fp16 = simulate(TINY, 4, 64, 64, RelightSettings(num_steps=1), "fp16")
    fp8 = simulate(TINY, 4, 64, 64, RelightSettings(num_steps=1), "fp8")
    unet_saving = component_bytes(model, ("unet",), "fp16") - component_bytes(model, ("unet",), "fp8")
    assert fp8.stages["weights"] == fp16.stages["weights"] - unet_saving
    assert fp8.stages["sample"] == fp16.stages["sample"] - unet_saving + fp8_upcast_bytes(model)
    assert 0 < fp8_upcast_bytes(model) < unet_saving


@pytest.mark.slow
def test_the_weights_stage_is_the_resident_weights_alone() -> None:
    kept = simulate(TINY, 4, 64, 64, RelightSettings(num_steps=1), "fp32")
    offloaded = simulate(TINY, 4, 64, 64, RelightSettings(num_steps=1), "fp32", offload=True)
    everything = component_bytes(build_for_plan(TINY, "fp32"), tuple(build_for_plan(TINY, "fp32").unique_components()),
                                 "fp32")
    assert kept.stages["weights"] == everything and offloaded.stages["weights"] == 0
    assert kept.stage_flops["weights"] == 0


def _fake_plans(peaks: dict[str, int]):
    """A plan function for the search: the peak falls by ``peaks[change]`` for every change a candidate makes."""
    def plan(candidate: Candidate) -> SimpleNamespace:
        saved = sum(peaks.get(change.split(" (")[0], 0) for change in candidate.changes)
        return SimpleNamespace(peak_with_context_bytes=100 - saved)
    return plan


def test_budget_search_drops_switches_that_did_not_matter() -> None:
    # sequential branches save nothing here (decoding sets the peak): the fit is offload + a decode chunk alone
    plans = _fake_plans({"offload between stages": 30, "decode chunk 7": 5, "decode chunk 4": 10})
    request = Candidate(RelightSettings(), "fp16", False)
    chosen, plan, fits = BudgetSearch(plans, request, 14, 62).run()
    assert fits and chosen.changes == ("offload between stages", "decode chunk 4")
    assert chosen.offload and chosen.settings.batch_branches and chosen.settings.decode_chunk_size == 4
    assert plan.peak_with_context_bytes == 60


def test_budget_search_keeps_the_request_when_it_fits_and_reports_the_smallest_peak_when_nothing_does() -> None:
    request = Candidate(RelightSettings(), "fp16", False)
    chosen, _, fits = BudgetSearch(_fake_plans({}), request, 14, 100).run()
    assert fits and chosen.change == "as requested"
    chosen, plan, fits = BudgetSearch(_fake_plans({"fp8 UNet weights": 1}), request, 14, 10).run()
    assert not fits and chosen.precision == "fp8_e4m3fn" and plan.peak_with_context_bytes == 99


@pytest.mark.slow
def test_steps_multiply_sampling_flops_only() -> None:
    one = simulate(TINY, 8, 64, 64, RelightSettings(num_steps=1), "fp32")
    four = simulate(TINY, 8, 64, 64, RelightSettings(num_steps=4), "fp32")
    assert four.peak_bytes == one.peak_bytes
    assert four.stage_flops["sample"] == 4 * one.stage_flops["sample"]
    assert four.stage_flops["decode"] == one.stage_flops["decode"]
    assert four.peak_with_context_bytes == four.peak_bytes + CUDA_CONTEXT_BYTES


@pytest.mark.slow
def test_plan_json_has_the_stable_fields(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--architecture", "tiny", "--frames", "8", "--size", "64", "--precision", "fp32",
                 "--steps", "2", "--vram", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("architecture", "frames", "height", "width", "precision", "settings", "weights_bytes", "peak_bytes",
                "stages", "flops", "attention", "fits"):
        assert key in report, key
    assert report["fits"] is True and report["flops"]["total"] > report["flops"]["unet_step"] > 0
    assert report["math_attention_peak_bytes"] >= report["peak_bytes"]  # efficient attention off never helps


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--frames", "0"], "positive integer"),
        (["--frames", "8", "--precision", "fp4"], "invalid choice"),
        (["--frames", "8", "--vram", "0"], "--vram must be a positive"),
        (["--frames", "8", "--vram", "-3"], "--vram must be a positive"),
        (["--frames", "8", "--window", "0"], "positive integer"),
        (["--frames", "8", "--size", "big"], "expected a size"),
    ],
)
def test_bad_input_is_one_line(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--architecture", "tiny", *args]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_a_size_the_model_cannot_take_is_rounded_with_a_note(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--architecture", "tiny", "--frames", "4", "--size", "70x50", "--steps", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["height"], report["width"]) == (64, 48)  # relumix-tiny's sides are multiples of 16
    assert any("rounded" in note for note in report["notes"])


def test_a_checkpoint_that_is_not_relumix_is_one_line(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    bogus = tmp_path / "not_a_model.safetensors"
    bogus.write_bytes(b"this is not a checkpoint")
    assert main(["plan", "--checkpoint", str(bogus), "--frames", "8"]) == 2
    assert capsys.readouterr().err.startswith("error: ")


@pytest.mark.slow
def test_settings_replace_keeps_the_plan_honest() -> None:
    plan = simulate(TINY, 8, 64, 64, replace(RelightSettings(), num_steps=3, decode_chunk_size=2), "fp32")
    assert plan.settings["num_steps"] == 3 and plan.settings["decode_chunk_size"] == 2


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_gpu_check_refuses_to_start_without_cuda() -> None:
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "bench" / "gpu_check.py"
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "needs a CUDA GPU" in out.stderr


@pytest.mark.slow
def test_gpu_check_predicts_its_cases_without_a_gpu() -> None:
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "bench" / "gpu_check.py"
    out = subprocess.run([sys.executable, str(script), "--predict-only", "--cases", "f14"], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "f14" in out.stdout and "simulated  11." in out.stdout  # the authors' model at 512x512: about 11.3 GiB
