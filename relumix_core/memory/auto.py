"""The ``auto`` memory setting: the fastest settings whose simulated peak fits the GPU the run will use.

The run as asked is simulated on the meta device (:mod:`relumix_core.memory.simulate`); when it does not fit the
budget, :func:`~relumix_core.memory.search.search_budget` climbs the switches a run can change on its own
(guidance branches, VAE tiles, decode chunk, window; offloading where the caller allows it). Precision is the
loader's choice and is never changed here. Plans are cached by everything they depend on, so a second run of the
same shape costs nothing.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from typing import Any

import torch

from ..errors import ReLumixError
from ..models.relumix import ReLumixConfig
from ..pipeline.settings import RelightSettings
from .search import Candidate, search_budget
from .simulate import CUDA_CONTEXT_BYTES, Plan, simulate

GIB = 2**30
#: What ``auto`` may change: everything but the precision, which the model was loaded in.
AUTO_LADDERS = ("branches", "offload", "vae tiles", "decode chunk", "window")


@dataclass(frozen=True)
class MemoryPlan:
    """The settings to run with, their simulated plan and the one line that says what was chosen."""

    settings: RelightSettings
    offload: bool
    plan: Plan
    fits: bool
    line: str

    def activation_bytes(self, stage: str) -> int:
        """Memory beyond the weights that pipeline ``stage`` (encode, sample or decode) needs."""
        if stage == "encode":
            return max(self.plan.activation_bytes("embed"), self.plan.activation_bytes("encode"))
        return self.plan.activation_bytes(stage)


_CACHE: dict[tuple[object, ...], MemoryPlan] = {}


def plan_memory(
    config: ReLumixConfig,
    frames: int,
    size: tuple[int, int],
    settings: RelightSettings,
    precision: str,
    budget_bytes: int | None,
    offload: bool = False,
    can_offload: bool = True,
) -> MemoryPlan:
    """Settings for ``frames`` frames at processing ``size`` that fit ``budget_bytes`` (None: no limit, the
    request as it is). Raises :class:`ReLumixError` naming the smallest peak when nothing fits."""
    key = (config.to_json(), frames, size, repr(settings), precision, budget_bytes, offload, can_offload)
    if key not in _CACHE:
        _CACHE[key] = _plan(config, frames, size, settings, precision, budget_bytes, offload, can_offload)
    return _CACHE[key]


def _plan(config: ReLumixConfig, frames: int, size: tuple[int, int], settings: RelightSettings, precision: str,
          budget_bytes: int | None, offload: bool, can_offload: bool) -> MemoryPlan:
    height, width = size
    request = Candidate(settings, precision, offload)

    def plan_for(clip_frames: int, candidate: Candidate) -> Plan:
        return simulate(config, clip_frames, height, width, candidate.settings, candidate.precision,
                        candidate.offload)

    if budget_bytes is None:
        plan = plan_for(frames, request)
        return MemoryPlan(settings, offload, plan, True, f"memory: as set, simulated peak {_gib(plan)} (no limit)")
    allowed: Collection[str] = AUTO_LADDERS if can_offload else tuple(a for a in AUTO_LADDERS if a != "offload")
    window = settings.window or config.trained_frames
    chosen, plan, fits = search_budget(plan_for, request, frames, window, budget_bytes, max(height, width), allowed)
    if not fits:
        raise ReLumixError(
            f"ReLumix needs at least {_gib(plan)} for {frames} frames at {height}x{width} in {precision} (with "
            f"{chosen.change}), more than the {budget_bytes / GIB:.1f} GiB available: lower the processing size, use "
            "an fp8 precision when loading the model, or free GPU memory"
        )
    line = f"memory: auto within {budget_bytes / GIB:.1f} GiB: {chosen.change}; simulated peak {_gib(plan)}"
    return MemoryPlan(replace(chosen.settings), chosen.offload, plan, True, line)


def _gib(plan: Plan) -> str:
    return f"{plan.peak_with_context_bytes / GIB:.2f} GiB"


def cuda_budget(device: torch.device) -> int | None:
    """What a run may plan for on ``device`` outside ComfyUI: the free memory, plus what this process already holds
    there (the model's own weights, which the plan counts) and the CUDA context (which the plan adds). None off
    CUDA: no limit to plan for."""
    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    return int(free + torch.cuda.memory_allocated(device) + CUDA_CONTEXT_BYTES)


def auto_settings(pipe: Any, frames: int, height: int, width: int, settings: RelightSettings,
                  precision: str) -> tuple[RelightSettings, str]:
    """``settings`` for relighting ``frames`` frames of ``height`` x ``width`` with ``pipe`` that fit its GPU's free
    memory (the library's and the CLI's ``--memory auto``), and the one line that says what was chosen."""
    budget = cuda_budget(pipe.device)
    if budget is None:
        return settings, f"memory: auto: on {pipe.device.type}, nothing to plan"
    resolved = settings.resolved(pipe.model)
    size = pipe.framing(height, width, resolved).size
    plan = plan_memory(pipe.model.config, frames, size, resolved, precision, budget, offload=pipe.offload,
                       can_offload=False)
    return plan.settings, plan.line
