"""Settings that fit a memory budget: try the memory switches from the fastest to the slowest, keep the first fit.

The order follows what each switch costs in speed (and, for the window, in quality): sequential guidance branches
(two UNet calls instead of one batch), offloading (components move every stage), smaller decode chunks (more
decoder calls; it also changes the pictures slightly), a shorter window (more windows; beyond the trained length's
quality) and, last, fp8 storage of the UNet's weights. The search runs on a short proxy clip, because the peak
barely depends on the clip's length (the windows bound it); the chosen settings are then planned on the whole clip.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

from ..pipeline.settings import RelightSettings
from .simulate import Plan


@dataclass(frozen=True)
class Candidate:
    settings: RelightSettings
    precision: str
    offload: bool
    change: str  # what this candidate changes, in words


def candidates(settings: RelightSettings, precision: str, offload: bool, window: int) -> Iterator[Candidate]:
    """Memory settings from the fastest (the request as given) to the slowest, each adding one switch."""
    current = Candidate(settings, precision, offload, "as requested")
    yield current
    if current.settings.batch_branches:
        current = replace(current, settings=replace(current.settings, batch_branches=False),
                          change="sequential guidance branches")
        yield current
    if not current.offload:
        current = replace(current, offload=True, change="offload between stages")
        yield current
    chunk = current.settings.decode_chunk_size or window
    for smaller in (7, 4, 2, 1):
        if smaller < chunk:
            current = replace(current, settings=replace(current.settings, decode_chunk_size=smaller),
                              change=f"decode chunk {smaller}")
            yield current
    for shorter in (10, 8, 6):
        if shorter < (current.settings.window or window):
            overlap = max(1, shorter // 3)
            current = replace(current, settings=replace(current.settings, window=shorter, overlap=overlap),
                              change=f"window {shorter} (overlap {overlap})")
            yield current
    if current.precision != "fp8":
        yield replace(current, precision="fp8", change="fp8 UNet weights")


def fit_budget(plan_for: Callable[[Candidate], Plan], options: Iterator[Candidate], budget_bytes: int
               ) -> tuple[Candidate, Plan, bool]:
    """The first candidate whose peak (CUDA context included) fits ``budget_bytes``; else the smallest peak."""
    best: tuple[Candidate, Plan] | None = None
    for candidate in options:
        plan = plan_for(candidate)
        if plan.peak_with_context_bytes <= budget_bytes:
            return candidate, plan, True
        if best is None or plan.peak_with_context_bytes < best[1].peak_with_context_bytes:
            best = (candidate, plan)
    assert best is not None
    return best[0], best[1], False
