"""The shipped relumix-tiny: the file matches its model card, loads as the full architecture, and relights for real.

The quality test relights clips from a seed range used nowhere else (training used seed 1, the reported test set
9000, the long clips 9100, the demo 424242), so it checks the shipped weights, not a memorised clip.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from relumix_core.checkpoints import bundled
from relumix_core.checkpoints.loading import load_relumix
from relumix_core.cli.main import main
from relumix_core.models.tiny import relumix_tiny_config

WEIGHTS = bundled.BUNDLED_DIR / bundled.TINY_FILE
MAX_BYTES = 25 * 2**20

pytestmark = pytest.mark.skipif(
    not WEIGHTS.is_file(),
    reason=f"the relumix-tiny weights are missing ({WEIGHTS}); reinstall or see the model card to train them",
)


def test_the_weights_are_small_and_the_card_names_their_digest_and_recipe() -> None:
    assert WEIGHTS.stat().st_size <= MAX_BYTES
    card = bundled.MODEL_CARD.read_text(encoding="utf-8")
    digest = hashlib.sha256(WEIGHTS.read_bytes()).hexdigest()
    assert re.search(rf"\b{digest}\b", card), "the model card's sha256 is stale: update it for the new weights"
    for command in ("relumix synth data/synth-train --scenes 400 --lights 4 --frames 14 --seed 1",
                    "git show 3da8fde:relumix_core/weights/relumix-tiny.safetensors",  # version 1, the UNet's start
                    "relumix train tiny-vae-colour ", "relumix train tiny-vae-colour-long",
                    "relumix train tiny-vae-colour-decoder", "relumix train tiny-unet-colour ",
                    "relumix train tiny-unet-colour-long",
                    "--detail-sigma 0.75 --default-steps 4 --colour-anchor",
                    "--detail-sigma-far 24 --window-strategy anchor --reference-pin",
                    "relumix synth data/synth-test --scenes 20 --lights 4 --frames 8 --seed 9000"):
        assert command in card


def test_the_bundled_name_loads_the_full_relumix_architecture() -> None:
    model, report = load_relumix("relumix-tiny")
    shipped, architecture = json.loads(model.config.to_json()), json.loads(relumix_tiny_config().to_json())
    assert 0 < shipped.pop("scale_factor") < 10  # calibrated by stage 1: 1 / std of its latents
    # how it is meant to run, chosen on validation clips (model card): a detail transfer radius, fewer steps and
    # the colour anchor
    assert shipped.pop("detail_sigma") > 0 and 1 <= shipped.pop("default_steps") < 25
    assert shipped.pop("colour_anchor") is True
    # on clips longer than a window: every window sees the reference, and far frames keep only the coarse light
    assert shipped.pop("window_strategy") == "anchor" and shipped.pop("detail_sigma_far") > 0
    assert shipped.pop("reference_pin") is True
    for key in ("scale_factor", "detail_sigma", "default_steps", "colour_anchor", "window_strategy", "detail_sigma_far",
                "reference_pin"):
        architecture.pop(key)
    assert shipped == architecture
    assert not report.missing and not report.unexpected
    unet_inputs = model.config.components["unet"].in_channels
    assert unet_inputs == 12  # noisy latent + frame latents + the fused reference latent
    gates = [p for n, p in model.component("unet").named_parameters() if n.endswith("gate")]
    assert gates and any(abs(float(g) - 1.0) > 1e-3 for g in gates)  # trained: the gates moved from their init


@pytest.mark.slow
@pytest.mark.parametrize("frames", [8])
def test_it_beats_every_baseline_on_clips_it_never_saw(tmp_path: Path, frames: int) -> None:
    data, report_dir = tmp_path / "heldout", tmp_path / "report"
    # 12 clips at the shipped settings (the model's own steps and detail transfer); fewer clips are too noisy to rank
    # methods whose means differ by a few tenths of a dB
    assert main(["synth", str(data), "--scenes", "6", "--lights", "3", "--frames", str(frames),
                 "--seed", "777000"]) == 0
    assert main(["eval", str(data), "-o", str(report_dir), "-c", "relumix-tiny", "--frames", str(frames),
                 "--device", "cpu"]) == 0
    methods = json.loads((report_dir / "report.json").read_text())["methods"]
    ours = methods.pop("relumix")
    for name, scores in methods.items():
        assert ours["psnr"] > scores["psnr"], name
        assert ours["ssim"] > scores["ssim"], name
    assert ours["temporal_error"] < min(scores["temporal_error"] for scores in methods.values())
