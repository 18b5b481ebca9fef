"""ReLumix under ComfyUI's memory manager, with ComfyUI's services replaced by recorders (no ComfyUI needed).

The real thing runs in tests/comfyui/test_real_memory.py; these tests pin what the pack asks of ComfyUI: one
patcher per weight-sharing group, sized without double counting, the stage's groups loaded before each stage with
the simulator's working memory, the encoders and the VAE loaded whole, the UNet allowed to stream, and previews
handed to the progress bar.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import import_module
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from pack_loader import PACK, load_pack

from relumix_core.models.full import build_on_meta, builtin_full_config, share_identical_copies
from relumix_core.models.tiny import random_tiny_model
from relumix_core.pipeline.pipeline import ENCODERS, ReLumixPipeline
from relumix_core.pipeline.settings import RelightSettings


@dataclass
class FakePatcher:
    model: Any
    size: int


@dataclass
class Recorder:
    loads: list[tuple[list[str], int, bool]] = field(default_factory=list)
    unloaded: list[list[str]] = field(default_factory=list)


@pytest.fixture
def comfy(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Recorder]:
    load_pack()
    memory, services = import_module(f"{PACK}.nodes.memory"), import_module(f"{PACK}.nodes.services")
    record = Recorder()
    monkeypatch.setattr(services, "torch_device", lambda: torch.device("cpu"))
    monkeypatch.setattr(services, "wrap_in_patcher", lambda module, size: FakePatcher(module, size))
    monkeypatch.setattr(services, "load_models", lambda patchers, memory_required, force_full_load: record.loads.append(
        ([p.model.relumix_component for p in patchers], memory_required, force_full_load)))
    monkeypatch.setattr(services, "unload_models", lambda patchers: record.unloaded.append(
        [p.model.relumix_component for p in patchers]))
    return memory, record


def test_full_model_groups_share_nothing_across_groups() -> None:
    load_pack()
    memory = import_module(f"{PACK}.nodes.memory")
    model = build_on_meta(share_identical_copies(builtin_full_config()))
    groups = memory.weight_groups(model)
    assert groups["unet"] == ("unet",)
    assert set(groups["vae"]) == {"vae", "frame_encoder"}  # the frame encoder is the VAE's encoder
    assert groups["image_encoder"] == ("image_encoder",)  # one tower serves frames and reference
    assert sum(len(names) for names in groups.values()) == len(model.unique_components())


def test_each_group_is_one_patcher_sized_once(comfy: tuple[Any, Recorder]) -> None:
    memory, _ = comfy
    model = random_tiny_model(0)
    placement = memory.ComfyPlacement(model, "tiny.safetensors")
    assert set(placement.patchers) == set(memory.weight_groups(model))
    for group, patcher in placement.patchers.items():
        assert isinstance(patcher.model, memory.ReLumixComponent)
        assert patcher.model.relumix_component == group and patcher.model.relumix_checkpoint == "tiny.safetensors"
        unique = {id(p): p for p in patcher.model.parameters()}
        assert patcher.size >= sum(p.numel() * p.element_size() for p in unique.values()) > 0
    total = sum(p.size for p in placement.patchers.values())
    assert total == sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])


def test_every_stage_loads_its_groups_with_the_planned_working_memory(comfy: tuple[Any, Recorder]) -> None:
    memory, record = comfy
    model = random_tiny_model(0)
    placement = memory.ComfyPlacement(model, "tiny.safetensors")
    placement.stage_memory = {"encode": 11, "sample": 22, "decode": 33}
    pipe = ReLumixPipeline(model, placement=placement)
    video = torch.rand(8, 3, 64, 64)
    pipe.relight(video, video[0], settings=RelightSettings(num_steps=2, size=64, strategy="anchor"), seed=0)
    encoders = [p.model.relumix_component for p in placement.patchers_for(ENCODERS)]
    assert set(encoders) == {"image_encoder", "frame_encoder"}
    assert record.loads[0] == (encoders, 11, True)  # the encoders hold raw parameters: they load whole
    assert (["unet"], 22, False) in record.loads  # the UNet may load partially and stream
    assert record.loads[-1] == (["vae"], 33, True)


def test_offload_between_runs_unloads_the_groups_after_the_run(comfy: tuple[Any, Recorder]) -> None:
    memory, record = comfy
    loader = import_module(f"{PACK}.nodes.loader")
    model = random_tiny_model(0)
    placement = memory.ComfyPlacement(model, "tiny.safetensors")
    handle = loader.ReLumixHandle(ReLumixPipeline(model, placement=placement), "tiny", torch.float32, True,
                                  "official")
    handle.park()
    assert record.unloaded and set(record.unloaded[0]) == set(placement.patchers)
    handle.offload = False
    handle.park()
    assert len(record.unloaded) == 1


def test_auto_memory_plans_on_a_gpu_budget_and_sets_each_stage(comfy: tuple[Any, Recorder],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    memory, _ = comfy
    loader, services = import_module(f"{PACK}.nodes.loader"), import_module(f"{PACK}.nodes.services")
    model = random_tiny_model(0)
    pipe = ReLumixPipeline(model, placement=memory.ComfyPlacement(model, "tiny.safetensors"))
    handle = loader.ReLumixHandle(pipe, "tiny", torch.float32, False, "official", "fp32")
    settings = RelightSettings(num_steps=1, size=64)
    assert handle.plan_memory(6, (64, 64), settings, "auto") is settings  # the CPU: nothing to plan
    pipe.device = torch.device("meta")  # stands in for a GPU: only its type is read before planning
    monkeypatch.setattr(services, "memory_budget", lambda device: 2**40)
    chosen = handle.plan_memory(6, (64, 64), settings, "auto")
    assert chosen.batch_branches and chosen.num_steps == 1  # a huge card: the request as it is
    assert set(pipe.placement.stage_memory) == {"encode", "sample", "decode"}
    assert all(v > 0 for v in pipe.placement.stage_memory.values())
    # a budget nothing fits is one error naming the smallest peak: tests/memory/test_auto.py


def test_progress_sends_the_preview_with_the_update(monkeypatch: pytest.MonkeyPatch) -> None:
    load_pack()
    services = import_module(f"{PACK}.nodes.services")
    updates: list[tuple[int, int, Any]] = []

    class Bar:
        def __init__(self, total: int) -> None:
            self.total = total

        def update_absolute(self, value: int, total: int, preview: Any = None) -> None:
            updates.append((value, total, preview))

    real_optional = services._optional
    monkeypatch.setattr(services, "_optional", lambda name: SimpleNamespace(ProgressBar=Bar)
                        if name == "comfy.utils" else real_optional(name))
    previewer = SimpleNamespace(decode_latent_to_preview_image=lambda fmt, x: (fmt, tuple(x.shape), 512))
    progress = services.Progress(previewer)
    progress.preview(torch.zeros(4, 8, 8))
    progress(1, 3)
    progress(2, 3)
    assert updates == [(1, 3, ("JPEG", (1, 4, 8, 8), 512)), (2, 3, None)]  # each preview is sent once
