"""LoadReLumixModel: a checkpoint from models/relumix, at a chosen precision, on ComfyUI's device."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from . import services

PRECISIONS = ("auto", "fp16", "bf16", "fp32")
OFFLOAD_MODES = ("keep on GPU", "offload between runs")
REFERENCE_RANGES = ("official", "training")


@dataclass
class ReLumixHandle:
    """What flows along a RELUMIX_MODEL link: the pipeline and the options it was loaded with."""

    pipeline: Any  # relumix_core.pipeline.pipeline.ReLumixPipeline
    name: str
    dtype: torch.dtype
    offload: bool
    reference_range: str

    def park(self) -> None:
        """After a run with offloading: everything back to the CPU and the cache emptied."""
        if self.offload:
            self.pipeline.model.to("cpu")
            services.soft_empty_cache()


def _dtype(precision: str, device: torch.device) -> torch.dtype:
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    from relumix_core.models.precision import dtype_from_name

    return dtype_from_name(precision)


class LoadReLumixModel:
    """Load ReLumix weights (the authors' relumix.pth or a converted file) once; ComfyUI caches the result."""

    CATEGORY = "ReLumix"
    RETURN_TYPES = ("RELUMIX_MODEL",)
    RETURN_NAMES = ("model",)
    FUNCTION = "load"
    DESCRIPTION = "Loads a ReLumix checkpoint from models/relumix (.pth, .safetensors or a diffusers-style folder)."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "checkpoint": (services.list_checkpoints(), {"tooltip": "file or folder in models/relumix"}),
                "precision": (PRECISIONS, {"default": "auto", "tooltip": "auto: fp16 on a GPU, fp32 on the CPU"}),
                "offload": (OFFLOAD_MODES, {"default": "keep on GPU",
                                            "tooltip": "offload: the model waits on the CPU between runs and each "
                                                       "part visits the GPU only while it runs"}),
                "reference_range": (REFERENCE_RANGES, {"default": "official",
                                                       "tooltip": "official: the reference enters the embedders in "
                                                                  "[0,1] as in the authors' inference; training: "
                                                                  "[-1,1]"}),
            }
        }

    def load(self, checkpoint: str, precision: str, offload: str, reference_range: str) -> tuple[ReLumixHandle]:
        from relumix_core.checkpoints.loading import load_relumix
        from relumix_core.pipeline.pipeline import ReLumixPipeline

        path = services.resolve_checkpoint(checkpoint)
        device = services.torch_device()
        dtype = _dtype(precision, device)
        model, report = load_relumix(path, dtype=dtype, device="cpu")
        for note in report.notes:
            print(f"[ReLumix] {note}")
        offloading = offload == OFFLOAD_MODES[1]
        if not offloading:
            size = sum(p.numel() * p.element_size() for p in model.parameters())
            services.free_memory(size, device)
        pipeline = ReLumixPipeline(model, device=device, offload=offloading)
        return (ReLumixHandle(pipeline, checkpoint, dtype, offloading, reference_range),)
