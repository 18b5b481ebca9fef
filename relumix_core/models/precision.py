"""The one map between precision names (CLI flags, node options, file metadata) and torch dtypes."""

from __future__ import annotations

import torch

DTYPES: dict[str, torch.dtype] = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def dtype_from_name(name: str) -> torch.dtype:
    """``"fp16"`` -> ``torch.float16``; an unknown name is a ValueError that lists the choices."""
    try:
        return DTYPES[name]
    except KeyError:
        raise ValueError(f"unknown precision {name!r}; choose one of {sorted(DTYPES)}") from None


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float16`` -> ``"fp16"`` (other dtypes by their torch name)."""
    names = {v: k for k, v in DTYPES.items()}
    return names.get(dtype, str(dtype).replace("torch.", ""))
