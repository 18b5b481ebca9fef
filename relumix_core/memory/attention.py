"""Attention counted as a GPU runs it: the fused SDPA kernels keep no S x S score matrix.

On meta (and CPU) tensors ``F.scaled_dot_product_attention`` takes the math path, which builds the score matrix
(8.75 GiB per matrix for the full UNet at 14 frames, 512 x 512, both branches). A GPU run uses the flash kernel
(fp16/bf16, head width up to 256) or the memory-efficient one (any float dtype); both have meta implementations in
torch, so :func:`attention_as` routes every call to the kernel a GPU would pick. ``"math"`` leaves the math path:
what a user gets with efficient attention turned off.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

AttentionKernel = Literal["fused", "math"]


def _kernel_for(query: torch.Tensor) -> str:
    flash = query.dtype in (torch.float16, torch.bfloat16) and query.shape[-1] <= 256
    return "flash" if flash else "memory-efficient"


def _fused_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None, **_: object,
) -> torch.Tensor:
    if attn_mask is not None or dropout_p:
        raise NotImplementedError("the memory plan models attention without masks or dropout (as ReLumix runs it)")
    if _kernel_for(query) == "flash":
        return torch.ops.aten._scaled_dot_product_flash_attention(query, key, value, 0.0, is_causal, scale=scale)[0]
    return torch.ops.aten._scaled_dot_product_efficient_attention(query, key, value, None, False, 0.0, is_causal,
                                                                  scale=scale)[0]


@contextmanager
def attention_as(kernel: AttentionKernel) -> Iterator[None]:
    """Within the block, attention runs as ``kernel``: ``fused`` (flash or memory-efficient) or ``math``."""
    if kernel == "math":
        with sdpa_kernel([SDPBackend.MATH]):  # the CPU would otherwise pick its own fused kernel
            yield
        return
    original = F.scaled_dot_product_attention
    F.scaled_dot_product_attention = _fused_attention
    try:
        yield
    finally:
        F.scaled_dot_product_attention = original


def kernel_name(kernel: AttentionKernel, dtype: torch.dtype) -> str:
    """The kernel a GPU run uses, in words, for the report."""
    if kernel == "math":
        return "math (efficient attention off: the S x S score matrix is materialised)"
    flash = dtype in (torch.float16, torch.bfloat16)
    return "flash" if flash else "memory-efficient"
