"""Peak bytes of live device tensors, op by op, as the CUDA caching allocator would count them.

A :class:`MemoryTracker` is a dispatch mode: every operator's outputs on the tracked device (``meta`` in a plan) are
new allocations unless they share a storage already counted, and a storage is freed when its last tensor dies (a
finaliser on the storage). Sizes are rounded up to 512 bytes, the caching allocator's granularity, so ``peak``
models ``torch.cuda.max_memory_allocated``. Weights are not tracked op by op: the caller registers their storages
as known and adds the bytes each stage keeps resident (``resident``), which is how offloading is modelled.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.weak import WeakIdKeyDictionary

#: The CUDA caching allocator rounds every block up to this many bytes.
ALLOCATION_ROUNDING = 512


def rounded(nbytes: int) -> int:
    return -(-nbytes // ALLOCATION_ROUNDING) * ALLOCATION_ROUNDING


class MemoryTracker(TorchDispatchMode):
    """Live and peak bytes on ``device``, overall and per stage (``stage`` is set by the caller as work moves on)."""

    def __init__(self, device: str = "meta") -> None:
        super().__init__()
        self.device = torch.device(device)
        self.live = 0  # bytes of activations (tensors made inside the mode) alive now
        self.resident = 0  # bytes of weights the current stage keeps on the device
        self.peak = 0
        self.stage = "start"
        self.stage_peaks: dict[str, int] = {}
        self._counted: Any = WeakIdKeyDictionary()

    def ignore(self, tensors: Iterable[torch.Tensor]) -> None:
        """Storages that exist before the run (weights, buffers): never counted as allocations, views included."""
        for tensor in tensors:
            if tensor.device == self.device:
                self._counted[tensor.untyped_storage()] = 0

    def enter_stage(self, stage: str, resident: int) -> None:
        """Work moves to ``stage``, with ``resident`` bytes of weights on the device from now on."""
        self.stage = stage
        self.resident = resident
        self._note()

    def _note(self) -> None:
        total = self.live + self.resident
        self.peak = max(self.peak, total)
        self.stage_peaks[self.stage] = max(self.stage_peaks.get(self.stage, 0), total)

    def _release(self, nbytes: int) -> None:
        self.live -= nbytes

    def track(self, tensor: torch.Tensor) -> None:
        """Count ``tensor``'s storage once, and uncount it when the storage dies."""
        if tensor.device != self.device:
            return
        storage = tensor.untyped_storage()
        if storage in self._counted:
            return
        nbytes = rounded(storage.nbytes())
        self._counted[storage] = nbytes
        self.live += nbytes
        weakref.finalize(storage, self._release, nbytes)
        self._note()

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for leaf in tree_leaves(out):
            if isinstance(leaf, torch.Tensor):
                self.track(leaf)
        return out
