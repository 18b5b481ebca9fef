"""The ``auto`` memory setting and VAE tiles in the plan: what they pick, what they report, when they refuse."""

from __future__ import annotations

import pytest

from relumix_core.errors import ReLumixError
from relumix_core.memory.auto import plan_memory
from relumix_core.memory.search import Candidate, ladders
from relumix_core.memory.simulate import simulate
from relumix_core.models.tiny import relumix_tiny_config
from relumix_core.pipeline.settings import RelightSettings

TINY = relumix_tiny_config()
SETTINGS = RelightSettings(num_steps=1)


def test_vae_tiles_lower_the_decode_peak_in_the_plan() -> None:
    whole = simulate(TINY, 4, 128, 128, SETTINGS)
    tiled = simulate(TINY, 4, 128, 128, RelightSettings(num_steps=1, vae_tile=32))
    assert tiled.stages["decode"] < whole.stages["decode"] * 0.6
    assert tiled.stages["sample"] == whole.stages["sample"]  # tiles touch the VAE only


def test_without_a_budget_the_request_is_kept_and_each_stage_reports_its_working_memory() -> None:
    plan = plan_memory(TINY, 6, (128, 128), SETTINGS, "fp32", None, offload=True)
    assert plan.settings == SETTINGS and plan.fits and "as set" in plan.line
    for stage in ("sample", "decode"):
        assert 0 < plan.activation_bytes(stage) < plan.plan.stages[stage]
    assert plan.activation_bytes("encode") > 0


def test_auto_picks_switches_until_the_plan_fits_and_says_so_in_one_line() -> None:
    request = simulate(TINY, 6, 256, 256, SETTINGS, "fp32", offload=True)
    budget = int(request.peak_with_context_bytes * 0.97)
    plan = plan_memory(TINY, 6, (256, 256), SETTINGS, "fp32", budget, offload=True, can_offload=False)
    assert plan.fits and plan.plan.peak_with_context_bytes <= budget
    assert plan.settings != SETTINGS and plan.settings.num_steps == 1 and plan.offload
    assert "\n" not in plan.line and "auto within" in plan.line
    assert plan_memory(TINY, 6, (256, 256), SETTINGS, "fp32", budget, offload=True, can_offload=False) is plan


def test_a_budget_nothing_fits_names_the_smallest_peak_and_what_to_lower() -> None:
    with pytest.raises(ReLumixError) as error:
        plan_memory(TINY, 4, (64, 64), SETTINGS, "fp32", 1000, offload=True, can_offload=False)
    message = str(error.value)
    assert "needs at least" in message and "GiB" in message and "processing size" in message and "fp8" in message


def test_tile_ladder_only_offers_tiles_smaller_than_the_frame_and_precision_can_be_left_out() -> None:
    request = Candidate(RelightSettings(), "fp16", False)
    names = [ladder.name for ladder in ladders(request, 14, frame_side=512)]
    assert "vae tiles" in names and "precision" in names
    tiles = next(ladder for ladder in ladders(request, 14, frame_side=512) if ladder.name == "vae tiles")
    sides = [level(request).settings.vae_tile for level in tiles.levels[1:]]
    assert sides and max(sides) < 512
    assert "vae tiles" not in [ladder.name for ladder in ladders(request, 14, frame_side=0)]
    kept = [ladder.name for ladder in ladders(request, 14, 512, allowed=("branches", "vae tiles"))]
    assert kept == ["branches", "vae tiles"]
