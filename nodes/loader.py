"""LoadReLumixModel: a checkpoint from models/relumix, at a chosen precision, under ComfyUI's memory manager."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from . import services

PRECISIONS = ("auto", "fp16", "bf16", "fp32", "fp8_e4m3fn", "fp8_e5m2")
OFFLOAD_MODES = ("keep on GPU", "offload between runs")
REFERENCE_RANGES = ("official", "training")
MEMORY_MODES = ("auto", "as set")


@dataclass
class ReLumixHandle:
    """What flows along a RELUMIX_MODEL link: the pipeline and the options it was loaded with."""

    pipeline: Any  # relumix_core.pipeline.pipeline.ReLumixPipeline
    name: str
    dtype: torch.dtype
    offload: bool
    reference_range: str
    precision: str = "fp16"  # the memory planner's name for the weights' storage

    def plan_memory(self, frames: int, size: tuple[int, int], settings: Any, memory: str) -> Any:
        """The settings to run ``frames`` frames at processing ``size`` with: with ``memory`` "auto" the fastest that
        fit this GPU, with "as set" ``settings`` unchanged. Under ComfyUI's memory manager each stage's working
        memory goes to ComfyUI's loader. On the CPU there is nothing to plan: ``settings`` come back as they are."""
        from relumix_core.memory.auto import plan_memory

        pipe = self.pipeline
        if pipe.device.type == "cpu":
            return settings
        budget = services.memory_budget(pipe.device) if memory == "auto" else None
        managed = _managed(pipe)
        plan = plan_memory(pipe.model.config, frames, size, settings.resolved(pipe.model), self.precision, budget,
                           offload=managed or self.offload, can_offload=False)
        print(f"[ReLumix] {plan.line}")
        if managed:
            pipe.placement.stage_memory = {s: plan.activation_bytes(s) for s in ("encode", "sample", "decode")}
        return plan.settings

    def park(self) -> None:
        """After a run with "offload between runs": ReLumix's models leave the GPU now."""
        if self.offload and _managed(self.pipeline):
            self.pipeline.placement.unload()


def _managed(pipeline: Any) -> bool:
    """True when ComfyUI's memory manager places the components."""
    from .memory import ComfyPlacement

    return isinstance(pipeline.placement, ComfyPlacement)


def _compute_dtype(precision: str, device: torch.device) -> torch.dtype:
    if precision == "auto" or precision.startswith("fp8"):
        return torch.float16 if device.type == "cuda" else torch.float32
    from relumix_core.models.precision import dtype_from_name

    return dtype_from_name(precision)


def _planner_precision(precision: str, dtype: torch.dtype) -> str:
    from relumix_core.models.precision import dtype_name

    return precision if precision.startswith("fp8") else dtype_name(dtype)


class LoadReLumixModel:
    """Load ReLumix weights (the authors' relumix.pth or a converted file) once; ComfyUI caches the result."""

    CATEGORY = "ReLumix"
    RETURN_TYPES = ("RELUMIX_MODEL",)
    RETURN_NAMES = ("model",)
    FUNCTION = "load"
    DESCRIPTION = (
        "Loads a ReLumix checkpoint from models/relumix (.pth, .safetensors or a diffusers-style folder). ComfyUI's "
        "memory manager loads each part when it runs and unloads it when another model needs the room."
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "checkpoint": (services.list_checkpoints(), {"tooltip": "file or folder in models/relumix"}),
                "precision": (PRECISIONS, {"default": "auto",
                                           "tooltip": "auto: fp16 on a GPU, fp32 on the CPU. fp8: the UNet's "
                                                      "weights stored in 8 bits (half the memory), computed in "
                                                      "fp16"}),
                "offload": (OFFLOAD_MODES, {"default": "keep on GPU",
                                            "tooltip": "keep on GPU: ReLumix stays loaded after a run until "
                                                       "ComfyUI needs the room; offload between runs: it leaves "
                                                       "the GPU when each run ends"}),
                "reference_range": (REFERENCE_RANGES, {"default": "official",
                                                       "tooltip": "official: the reference enters the embedders in "
                                                                  "[0,1] as in the authors' inference; training: "
                                                                  "[-1,1]"}),
            }
        }

    def load(self, checkpoint: str, precision: str, offload: str, reference_range: str) -> tuple[ReLumixHandle]:
        from relumix_core.checkpoints.loading import load_relumix
        from relumix_core.models.precision import fp8_dtype
        from relumix_core.pipeline.pipeline import ReLumixPipeline

        path = services.resolve_checkpoint(checkpoint)
        device = services.torch_device()
        dtype = _compute_dtype(precision, device)
        weight_dtype = fp8_dtype(precision) if precision.startswith("fp8") else None
        offloading = offload == OFFLOAD_MODES[1]
        if services.patcher_class() is not None:
            pipeline = _managed_pipeline(path, checkpoint, dtype, weight_dtype)
        else:
            model, report = load_relumix(path, dtype=dtype, device="cpu", weight_dtype=weight_dtype)
            for note in report.notes:
                print(f"[ReLumix] {note}")
            pipeline = ReLumixPipeline(model, device=device, offload=offloading)
        return (ReLumixHandle(pipeline, checkpoint, dtype, offloading, reference_range,
                              _planner_precision(precision, dtype)),)


def _managed_pipeline(path: Any, checkpoint: str, dtype: torch.dtype, weight_dtype: torch.dtype | None) -> Any:
    """The model on the CPU, its UNet in ComfyUI's streamable layers (fp8 storage cast before the patchers measure
    it), every weight-sharing group registered with ComfyUI."""
    from relumix_core.checkpoints.loading import load_relumix
    from relumix_core.pipeline.pipeline import ReLumixPipeline

    from .memory import ComfyPlacement, store_in, stream_ready

    model, report = load_relumix(path, dtype=dtype, device="cpu")
    for note in report.notes:
        print(f"[ReLumix] {note}")
    unet = model.component("unet")
    stream_ready(unet, manual_cast=weight_dtype is not None)
    if weight_dtype is not None:
        store_in(unet, weight_dtype)
    return ReLumixPipeline(model, placement=ComfyPlacement(model, checkpoint))
