"""The one map between precision names (CLI flags, node options, file metadata) and torch dtypes.

Two kinds of names: *compute* precisions (``fp16``, ``bf16``, ``fp32``: every weight stored and computed in that
dtype) and *weight* precisions (``fp8_e4m3fn``, ``fp8_e5m2``: the UNet's Linear/Conv weights stored in 8 bits and
upcast layer by layer to a compute dtype, fp16 unless asked otherwise; the other components stay in the compute
dtype). float8 dtypes arrived in torch 2.1, so they are looked up when asked for, never at import.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ReLumixError

DTYPES: dict[str, torch.dtype] = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
#: Weight precision name -> name of the torch dtype (absent from torch before 2.1).
WEIGHT_DTYPES: dict[str, str] = {"fp8_e4m3fn": "float8_e4m3fn", "fp8_e5m2": "float8_e5m2"}
#: Every precision a user may choose.
PRECISION_CHOICES: tuple[str, ...] = (*DTYPES, *WEIGHT_DTYPES)
#: The compute dtype of a weight precision when none is asked for (ComfyUI's fp8 modes also compute in fp16).
FP8_COMPUTE_DEFAULT = "fp16"
#: Compute dtypes a weight precision may run in.
FP8_COMPUTE_CHOICES: tuple[str, ...] = ("fp16", "bf16", "fp32")
FP8_MIN_TORCH = "2.1"


@dataclass(frozen=True)
class Precision:
    """How the model is held: the dtype it computes in and, for a weight precision, the UNet's storage dtype."""

    compute: torch.dtype
    unet_weights: torch.dtype | None = None  # None: the UNet's weights are stored in the compute dtype

    @property
    def name(self) -> str:
        """``"fp16"`` or, with fp8 storage, ``"fp8_e4m3fn (computed in fp16)"``: for messages."""
        if self.unet_weights is None:
            return dtype_name(self.compute)
        return f"{dtype_name(self.unet_weights)} (computed in {dtype_name(self.compute)})"


def dtype_from_name(name: str) -> torch.dtype:
    """``"fp16"`` -> ``torch.float16``; an unknown name is a ValueError that lists the choices."""
    try:
        return DTYPES[name]
    except KeyError:
        hint = " (a weight precision: see resolve_precision)" if name in WEIGHT_DTYPES else ""
        raise ValueError(f"unknown precision {name!r}{hint}; choose one of {sorted(DTYPES)}") from None


def fp8_dtype(name: str) -> torch.dtype:
    """``"fp8_e4m3fn"`` -> ``torch.float8_e4m3fn``; an error naming the torch needed when this one lacks it."""
    if name not in WEIGHT_DTYPES:
        raise ValueError(f"unknown weight precision {name!r}; choose one of {sorted(WEIGHT_DTYPES)}")
    dtype = getattr(torch, WEIGHT_DTYPES[name], None)
    if dtype is None:
        raise ReLumixError(
            f"precision {name} stores weights as torch.{WEIGHT_DTYPES[name]}, which this torch "
            f"({torch.__version__}) lacks: float8 dtypes need torch {FP8_MIN_TORCH} or newer"
        )
    return dtype


def resolve_precision(name: str, compute: str | None = None) -> Precision:
    """A precision name (see :data:`PRECISION_CHOICES`) as compute and storage dtypes.

    ``compute`` chooses the compute dtype of a weight precision (default :data:`FP8_COMPUTE_DEFAULT`; ``bf16``
    avoids fp16 overflow); a compute precision computes in itself, so ``compute`` must then be absent or equal.
    """
    if name in WEIGHT_DTYPES:
        chosen = compute or FP8_COMPUTE_DEFAULT
        if chosen not in FP8_COMPUTE_CHOICES:
            raise ValueError(f"unknown compute precision {chosen!r} for {name}; choose one of {FP8_COMPUTE_CHOICES}")
        return Precision(DTYPES[chosen], fp8_dtype(name))
    if name not in DTYPES:
        raise ValueError(f"unknown precision {name!r}; choose one of {list(PRECISION_CHOICES)}")
    if compute is not None and compute != name:
        raise ValueError(f"precision {name} computes in {name}; a compute precision ({compute}) only applies to "
                         f"the weight precisions {list(WEIGHT_DTYPES)}")
    return Precision(DTYPES[name])


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float16`` -> ``"fp16"``, ``torch.float8_e4m3fn`` -> ``"fp8_e4m3fn"`` (others by their torch name)."""
    names = {v: k for k, v in DTYPES.items()}
    names.update({getattr(torch, attr): k for k, attr in WEIGHT_DTYPES.items() if hasattr(torch, attr)})
    return names.get(dtype, str(dtype).replace("torch.", ""))


def is_storage_dtype(dtype: torch.dtype) -> bool:
    """Floating dtypes torch keeps but does not compute in: the 8-bit (and packed 4-bit) ones."""
    return dtype.is_floating_point and dtype.itemsize == 1


def compute_dtype(module: nn.Module) -> torch.dtype:
    """The dtype ``module`` computes in: its first floating parameter's, skipping weights stored in fp8 (they are
    upcast as they run); ``float32`` for a module without floating parameters."""
    for param in module.parameters():
        if param.is_floating_point() and not is_storage_dtype(param.dtype):
            return param.dtype
    return torch.float32
