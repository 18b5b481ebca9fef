"""Settings that fit a memory budget: the fastest combination of memory switches whose peak fits.

Each switch is a ladder of levels, level 0 being the run as asked. The ladders, from the cheapest in speed (and
quality) to the dearest: sequential guidance branches (two UNet calls instead of one batch), offloading (the
components move every stage), smaller decode chunks (more decoder calls; the temporal decoder also sees shorter
videos, which changes the pictures slightly: 40 dB against the authors' 14-frame chunks at 7 frames, 30 dB at 1,
on relumix-tiny), spatial tiles for the VAE (the decoder's group norms see only the tile, which costs more: 29 dB
for two tiles of a 128x224 frame on relumix-tiny; bench/results/vae_tiling.json), a shorter window (more windows,
and shorter than the model was trained on) and, last, fp8 storage of the UNet's weights.

The search climbs the ladders in that order until the peak fits, then walks back down every earlier ladder, the
dearest first, as far as the peak still fits: a switch that turned out not to matter is dropped (at 14 frames the
VAE decode, not sampling, sets the peak, so sequential branches alone save nothing). Every step is one simulation;
results are cached by levels.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, replace

from ..pipeline.settings import RelightSettings
from .simulate import Plan

DECODE_CHUNKS = (7, 4, 2, 1)
WINDOWS = (10, 8, 6)
#: VAE tile sides in processing pixels, tried from the largest that is smaller than the frame.
VAE_TILES = (512, 384, 256, 192, 128)
#: Every ladder, in the order the search climbs them.
LADDERS = ("branches", "offload", "decode chunk", "vae tiles", "window", "precision")


@dataclass(frozen=True)
class Candidate:
    """One combination of memory settings and what it changes against the request, in words."""

    settings: RelightSettings
    precision: str
    offload: bool
    changes: tuple[str, ...] = ()

    @property
    def change(self) -> str:
        return ", ".join(self.changes) or "as requested"


@dataclass(frozen=True)
class Ladder:
    """One switch: ``levels[0]`` is the request, later levels save more memory and cost more time."""

    name: str
    levels: tuple[Callable[[Candidate], Candidate], ...]


def _change(candidate: Candidate, words: str, settings: dict[str, object] | None = None, **fields: object
            ) -> Candidate:
    """``candidate`` with ``settings`` fields and candidate ``fields`` replaced, ``words`` added to its changes."""
    changed = replace(candidate.settings, **(settings or {}))
    return replace(candidate, settings=changed, changes=(*candidate.changes, words), **fields)  # type: ignore[arg-type]


def _keep(candidate: Candidate) -> Candidate:
    return candidate


def _sequential(candidate: Candidate) -> Candidate:
    return _change(candidate, "sequential guidance branches", {"batch_branches": False})


def _offload(candidate: Candidate) -> Candidate:
    return _change(candidate, "offload between stages", offload=True)


def _fp8(candidate: Candidate) -> Candidate:
    return _change(candidate, "fp8 UNet weights", precision="fp8_e4m3fn")


def _vae_tile(size: int) -> Callable[[Candidate], Candidate]:
    return lambda candidate: _change(candidate, f"VAE tiles of {size} px", {"vae_tile": size})


def _decode_chunk(size: int) -> Callable[[Candidate], Candidate]:
    return lambda candidate: _change(candidate, f"decode chunk {size}", {"decode_chunk_size": size})


def _window(size: int) -> Callable[[Candidate], Candidate]:
    overlap = max(1, size // 3)
    return lambda candidate: _change(candidate, f"window {size} (overlap {overlap})",
                                     {"window": size, "overlap": overlap})


def ladders(request: Candidate, window: int, frame_side: int = 0,
            allowed: Collection[str] = LADDERS) -> list[Ladder]:
    """The switches in ``allowed`` that can still act on ``request`` (``window``: the frames per window it resolves
    to; ``frame_side``: the processing size's longer side, for the VAE tiles; 0 leaves tiles out)."""
    found = []
    if request.settings.batch_branches:
        found.append(Ladder("branches", (_keep, _sequential)))
    if not request.offload:
        found.append(Ladder("offload", (_keep, _offload)))
    window = request.settings.window or window
    chunks = [_decode_chunk(c) for c in DECODE_CHUNKS if c < (request.settings.decode_chunk_size or window)]
    if chunks:
        found.append(Ladder("decode chunk", (_keep, *chunks)))
    tiles = [_vae_tile(t) for t in VAE_TILES if t < min(frame_side, request.settings.vae_tile or frame_side)]
    if tiles:
        found.append(Ladder("vae tiles", (_keep, *tiles)))
    windows = [_window(w) for w in WINDOWS if w < window]
    if windows:
        found.append(Ladder("window", (_keep, *windows)))
    if not request.precision.startswith("fp8"):
        found.append(Ladder("precision", (_keep, _fp8)))
    return [ladder for ladder in found if ladder.name in allowed]


class BudgetSearch:
    """Find the fastest candidate whose peak (CUDA context included) fits ``budget_bytes``."""

    def __init__(self, evaluate: Callable[[Candidate], Plan], request: Candidate, window: int,
                 budget_bytes: int, frame_side: int = 0, allowed: Collection[str] = LADDERS) -> None:
        self.evaluate, self.request, self.budget = evaluate, request, budget_bytes
        self.ladders = ladders(request, window, frame_side, allowed)
        self.tried: dict[tuple[int, ...], tuple[Candidate, Plan]] = {}

    def at(self, levels: tuple[int, ...]) -> tuple[Candidate, Plan]:
        """The candidate at ``levels`` (one per ladder) and its plan, simulated once."""
        if levels not in self.tried:
            candidate = self.request
            for ladder, level in zip(self.ladders, levels, strict=True):
                if level:
                    candidate = ladder.levels[level](candidate)
            self.tried[levels] = (candidate, self.evaluate(candidate))
        return self.tried[levels]

    def fits(self, levels: tuple[int, ...]) -> bool:
        return self.at(levels)[1].peak_with_context_bytes <= self.budget

    def run(self) -> tuple[Candidate, Plan, bool]:
        """Climb the ladders in order until it fits, then drop what was not needed; without a fit, the candidate
        with the smallest peak."""
        levels = [0] * len(self.ladders)
        climbed = 0
        fitted = self.fits(tuple(levels))
        for index, ladder in enumerate(self.ladders):
            for level in range(1, len(ladder.levels)):
                if fitted:
                    break
                levels[index] = level
                climbed = index
                fitted = self.fits(tuple(levels))
        if not fitted:
            best = min(self.tried.values(), key=lambda pair: pair[1].peak_with_context_bytes)
            return best[0], best[1], False
        for index in reversed(range(climbed)):
            while levels[index] and self.fits(tuple(levels[:index] + [levels[index] - 1] + levels[index + 1:])):
                levels[index] -= 1
        candidate, plan = self.at(tuple(levels))
        return candidate, plan, True


def search_budget(
    plan_for: Callable[[int, Candidate], Plan],
    request: Candidate,
    frames: int,
    window: int,
    budget_bytes: int,
    frame_side: int = 0,
    allowed: Collection[str] = LADDERS,
    notes: list[str] | None = None,
) -> tuple[Candidate, Plan, bool]:
    """The fastest candidate that fits ``budget_bytes`` for a clip of ``frames``, its plan on the whole clip, and
    whether it fits. The search simulates a short clip (two windows: the peak barely depends on the length, which
    windows bound); if the whole clip then does not fit, it searches again on the whole clip."""
    proxy = min(frames, 2 * window)
    chosen, _, fits = BudgetSearch(lambda c: plan_for(proxy, c), request, window, budget_bytes, frame_side,
                                   allowed).run()
    plan = plan_for(frames, chosen)
    if proxy < frames and fits and plan.peak_with_context_bytes > budget_bytes:
        if notes is not None:
            notes.append(f"the {proxy}-frame search fitted but the whole clip did not: searched again on {frames} "
                         "frames")
        chosen, plan, fits = BudgetSearch(lambda c: plan_for(frames, c), request, window, budget_bytes, frame_side,
                                          allowed).run()
    return chosen, plan, fits
