"""Run a clip through the real pipeline on the meta device and report the GPU memory and FLOPs it needs.

Nothing is read or computed: the model is built on ``meta`` (shapes only) and :class:`ReLumixPipeline` runs
``encode`` and ``generate`` with the run's own :class:`RelightSettings`. A :class:`MemoryTracker` counts the
activations op by op; the weights each stage keeps on the GPU are added from the residency the settings imply
(everything, or with ``offload`` only the stage's own components). Sampling is traced for one step, which is
enough: every step holds the same tensors, so the peak is the same, and the sampling FLOPs are multiplied by the
number of steps. Everything else (encoding, chain windows' re-embedding, decoding) runs once per clip as traced.

Data-dependent code cannot run on meta tensors (no values: ``.item()``, ``.cpu()`` or a branch on a value raises).
The pipeline's one such point is a result leaving the device for the host, where
:func:`~relumix_core.pipeline.pipeline.to_host` hands on an empty CPU tensor of the same shape; the noise, the
sigmas and the guidance scales are made on the CPU from the settings and only moved to the device.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..errors import ReLumixError
from ..models.relumix import ReLumixConfig, ReLumixModel
from ..pipeline.pipeline import ENCODERS, ReLumixPipeline
from ..pipeline.settings import RelightSettings
from .attention import AttentionKernel, attention_as, kernel_name
from .tracker import MemoryTracker, rounded

#: Storage precision -> (compute dtype, bytes per UNet weight). fp8 stores the UNet's weights in 1 byte and computes
#: in fp16, upcasting each layer's weights as it runs (ComfyUI's fp8 modes work this way).
PRECISIONS: dict[str, tuple[torch.dtype, int | None]] = {
    "fp32": (torch.float32, None),
    "fp16": (torch.float16, None),
    "bf16": (torch.bfloat16, None),
    "fp8": (torch.float16, 1),
    "fp8_e4m3fn": (torch.float16, 1),
    "fp8_e5m2": (torch.float16, 1),
}
#: What the CUDA context takes before any tensor (not in ``max_memory_allocated``); a typical figure, not measured.
CUDA_CONTEXT_BYTES = 512 * 2**20
#: The components each stage needs on the GPU when offloading (as ``ReLumixPipeline`` moves them).
STAGE_COMPONENTS = {"embed": ENCODERS, "encode": ENCODERS, "sample": ("unet",), "decode": ("vae",)}
STAGES = ("weights", "embed", "encode", "sample", "decode")


@dataclass
class Plan:
    """What a run needs: the fields ``relumix plan --json`` prints (other tools read these names)."""

    architecture: str
    frames: int
    height: int
    width: int
    precision: str
    settings: dict[str, Any]
    offload: bool
    weights_bytes: int  # weights resident at the peak
    peak_bytes: int  # models torch.cuda.max_memory_allocated
    peak_with_context_bytes: int  # plus the CUDA context
    stages: dict[str, int]  # stage -> peak bytes (weights resident in it included)
    flops: dict[str, float]  # unet_step, total, floor, ratio_to_floor
    stage_flops: dict[str, float]  # stage -> FLOPs over the clip (sampling: all steps)
    attention: str
    windows: int  # window evaluations per sampling step
    simulation_seconds: float
    notes: list[str] = field(default_factory=list)
    stage_weights: dict[str, int] = field(default_factory=dict)  # stage -> weights resident in it

    def activation_bytes(self, stage: str) -> int:
        """What ``stage`` needs beyond its resident weights: the memory to ask a memory manager for."""
        return max(0, self.stages.get(stage, 0) - self.stage_weights.get(stage, 0))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_for_plan(config: ReLumixConfig, precision: str) -> ReLumixModel:
    """The model of ``config`` on the meta device in the compute dtype of ``precision``."""
    from ..models.full import build_on_meta

    if precision not in PRECISIONS:
        raise ReLumixError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    model = build_on_meta(config)
    # a few diffusers constants are made on the CPU whatever the default device; the plan needs every one on meta
    nn.Module.to(model, device="meta", dtype=PRECISIONS[precision][0])
    return model


def fp8_upcast_bytes(model: ReLumixModel) -> int:
    """The largest UNet layer's weights in the compute dtype: fp8 storage upcasts one layer at a time as it runs,
    so this much more is live during sampling (ComfyUI's fp8 modes cast per layer the same way)."""
    compute = torch.finfo(PRECISIONS["fp8"][0]).bits // 8
    layers = (module.parameters(recurse=False) for module in model.component("unet").modules())
    return max((sum(rounded(p.numel() * compute) for p in params) for params in layers), default=0)


def component_bytes(model: ReLumixModel, names: tuple[str, ...], precision: str) -> int:
    """Bytes of the weights (and buffers) of components ``names``, each tensor once however many use it."""
    seen: set[int] = set()
    unet_bytes = PRECISIONS[precision][1]
    unet_params = {id(p) for p in model.component("unet").parameters()}
    total = 0
    for name in names:
        module = model.component(name)
        for tensor in [*module.parameters(), *module.buffers()]:
            if id(tensor) in seen:
                continue
            seen.add(id(tensor))
            size = unet_bytes if unet_bytes and id(tensor) in unet_params and tensor.is_floating_point() else None
            total += tensor.numel() * (size or tensor.element_size())
    return total


class _StageWatch:
    """Follows which component runs (forward pre-hooks) and moves the tracker and the FLOP tally along."""

    def __init__(self, model: ReLumixModel, tracker: MemoryTracker, flops: FlopCounterMode, precision: str,
                 offload: bool) -> None:
        self.tracker, self.flop_mode = tracker, flops
        self.flops: dict[str, float] = {}
        self._last_total = 0
        everything = tuple(model.unique_components())
        self.resident = {
            stage: component_bytes(model, names if offload else everything, precision)
            for stage, names in STAGE_COMPONENTS.items()
        }
        self.resident["weights"] = 0 if offload else component_bytes(model, everything, precision)
        if PRECISIONS[precision][1] is not None:
            self.resident["sample"] += fp8_upcast_bytes(model)
        self.handles = []
        kinds = {"image_encoder": "embed", "reference_image_encoder": "embed", "frame_encoder": "encode",
                 "reference_encoder": "encode", "unet": "sample"}
        for name, stage in kinds.items():
            module = getattr(model, name, None)
            if module is not None:
                self.handles.append(module.register_forward_pre_hook(self._hook(stage)))
        self.handles.append(model.component("vae").decoder.register_forward_pre_hook(self._hook("decode")))
        # "weights" is what stays resident between stages, nothing else: the inputs' preparation belongs to "embed"
        tracker.enter_stage("weights", self.resident["weights"])
        tracker.enter_stage("embed", self.resident["embed"])

    def _hook(self, stage: str) -> Any:
        def enter(*_: object) -> None:
            self.settle()
            self.tracker.enter_stage(stage, self.resident[stage])

        return enter

    def settle(self) -> None:
        """Book the FLOPs since the last stage change to the stage that did them."""
        total = self.flop_mode.get_total_flops()
        self.flops[self.tracker.stage] = self.flops.get(self.tracker.stage, 0) + total - self._last_total
        self._last_total = total

    def close(self) -> None:
        self.settle()
        for handle in self.handles:
            handle.remove()


def simulate(
    config: ReLumixConfig,
    frames: int,
    height: int,
    width: int,
    settings: RelightSettings | None = None,
    precision: str = "fp16",
    offload: bool = False,
    attention: AttentionKernel = "fused",
    architecture: str = "custom",
) -> Plan:
    """The memory and FLOPs of relighting ``frames`` frames at ``height`` x ``width`` (the processing size), for
    the model of ``config`` built on the meta device."""
    if frames < 1:
        raise ReLumixError(f"frames must be at least 1, got {frames}")
    start = time.perf_counter()
    model = build_for_plan(config, precision)
    plan = trace_run(model, frames, height, width, settings, precision, offload, attention, architecture, "meta")
    plan.simulation_seconds = round(time.perf_counter() - start, 1)
    return plan


def trace_run(
    model: ReLumixModel,
    frames: int,
    height: int,
    width: int,
    settings: RelightSettings | None,
    precision: str,
    offload: bool,
    attention: AttentionKernel,
    architecture: str,
    device: str,
) -> Plan:
    """Relight a blank clip with ``model`` on ``device`` under the tracker: the plan's measurement. On ``meta`` it
    computes nothing; on the CPU (tests) it is a real run, counted the same way."""
    pipe = ReLumixPipeline(model, device=device)
    asked = replace(settings or RelightSettings(), size=(height, width), fit="resize")
    resolved = asked.resolved(model)
    traced = replace(resolved, num_steps=1)  # every step holds the same tensors: trace one, multiply the FLOPs
    video = np.zeros((frames, height, width, 3), np.uint8)
    tracker = MemoryTracker(device)
    tracker.ignore([*model.parameters(), *model.buffers()])
    with FlopCounterMode(display=False) as flop_mode:
        watch = _StageWatch(model, tracker, flop_mode, precision, offload)
        try:
            with attention_as(attention), tracker, torch.no_grad():
                conditioning = pipe.encode(video, video[0], 0, traced, torch.Generator().manual_seed(0))
                result = pipe.generate(conditioning, traced, torch.Generator().manual_seed(0))
        finally:
            watch.close()
    steps = int(resolved.num_steps or 1)
    evaluations = sum(len(direction) for direction in result.windows)
    sample = watch.flops.get("sample", 0.0)
    stage_flops = {stage: watch.flops.get(stage, 0.0) * (steps if stage == "sample" else 1) for stage in STAGES}
    total = sum(stage_flops.values())
    stages = {stage: tracker.stage_peaks.get(stage, 0) for stage in STAGES}
    at_peak = max(watch.resident[s] for s in stages if stages[s] == tracker.peak) if tracker.peak else 0
    return Plan(
        architecture=architecture, frames=frames, height=height, width=width, precision=precision,
        settings={k: v for k, v in asdict(resolved).items() if k not in ("size",)} | {"size": [height, width]},
        offload=offload, weights_bytes=at_peak, peak_bytes=tracker.peak,
        peak_with_context_bytes=tracker.peak + CUDA_CONTEXT_BYTES, stages=stages,
        flops={"unet_step": sample / max(evaluations, 1), "total": total, "floor": sample * steps,
               "ratio_to_floor": total / (sample * steps) if sample else float("nan")},
        stage_flops=stage_flops,
        attention=kernel_name(attention, PRECISIONS[precision][0]), windows=evaluations,
        simulation_seconds=0.0, stage_weights={stage: watch.resident[stage] for stage in STAGES},
        notes=[f"sampling traced for 1 of {steps} steps (every step holds the same tensors); its FLOPs x {steps}"]
        if steps > 1 else [],
    )
