"""Key-manifest check: convert a full-size official key list on the meta device, nothing left over.

``unet_full_keys.json`` / ``engine_full_keys.json`` list names and shapes (no weights). Every key must either go
into a module with the right shape or be ignored for a stated reason, and every module parameter must be filled.
"""

from __future__ import annotations

import torch

from ..checkpoints.loading import LoadOptions, load_official
from ..checkpoints.tensor_source import DictSource
from ..errors import CheckpointError
from .common import Fixture, ParityResult


def check(fixture: Fixture) -> list[ParityResult]:
    entries = fixture.meta["keys"]
    tensors = {e["name"]: torch.empty(e["shape"], device="meta") for e in entries}
    network = fixture.meta.get("network_config", {})
    options = LoadOptions(device="meta", num_head_channels=int(network.get("num_head_channels", 64)))
    try:
        model, report = load_official(DictSource(fixture.path, tensors), options)
    except CheckpointError as err:
        return [ParityResult(f"conversion failed: {err}", float("inf"), 0.0)]
    ignored = sum(len(keys) for keys in report.ignored.values())
    leftover = len(tensors) - report.converted - ignored
    results = [
        ParityResult("keys neither converted nor ignored", float(leftover), 0.0),
        ParityResult("unexpected keys", float(len(report.unexpected)), 0.0),
        ParityResult("missing module tensors", float(len(report.missing)), 0.0),
    ]
    expected_unet = fixture.meta.get("num_parameters") or fixture.meta.get("per_prefix", {}).get(
        "model.diffusion_model.", {}
    ).get("parameters")
    if expected_unet:
        got = sum(p.numel() for p in model.component("unet").parameters())
        results.append(ParityResult(f"UNet parameters ({got:,} vs {expected_unet:,})", float(abs(got - expected_unet)),
                                    0.0))
    for reason, keys in report.ignored.items():
        print(f"  ignored {len(keys)}: {reason}")
    print(f"  converted {report.converted} of {len(tensors)} keys; gates: {report.gates['gated']} gated")
    return results
