"""Long sequences in windows of the trained length: which frames each window sees, and how windows are joined.

A *sequence* here is one direction of propagation: position 0 holds the relit reference, positions 1.. the frames
that follow it in time. Two strategies (both keep the window at the trained length, so every window looks to the
model exactly like a training clip):

* ``anchor``: every window starts with the original reference (position 0), followed by ``window - 1`` consecutive
  frames; consecutive windows share ``overlap`` frames. All windows are denoised together, step by step, and at
  every step the x0 predictions of frames seen by several windows are blended (MultiDiffusion-style), so seams are
  resolved during sampling rather than papered over afterwards.
* ``chain``: windows are consecutive runs of ``window`` frames sharing ``overlap`` frames; each window after the
  first takes the previous window's relit frame at its start as its reference (frame replacement and fusion). The
  overlapping latents are cross-faded.

Pure index bookkeeping; :func:`~relumix_core.pipeline.sampling.sample_windows` runs the windows.
"""

from __future__ import annotations

from typing import Literal

import torch

from ..errors import ReLumixError

Strategy = Literal["anchor", "chain"]
STRATEGIES: tuple[str, ...] = ("anchor", "chain")

def check_window_options(window: int, overlap: int, strategy: str) -> None:
    """Reject options that cannot tile a sequence, with the fix in the message."""
    if strategy not in STRATEGIES:
        raise ReLumixError(f"window strategy must be one of {STRATEGIES}, got {strategy!r}")
    if window < 2:
        raise ReLumixError(f"window must be at least 2 frames (the reference and one frame), got {window}")
    if overlap < 0:
        raise ReLumixError(f"overlap must be 0 or more, got {overlap}")
    if strategy == "anchor" and overlap >= window - 1:
        raise ReLumixError(
            f"overlap ({overlap}) must be smaller than window - 1 ({window - 1}) for 'anchor': each window holds the "
            "reference and window - 1 frames, and must move on by at least one frame"
        )
    if strategy == "chain" and not 1 <= overlap < window:
        raise ReLumixError(
            f"overlap ({overlap}) must be at least 1 and smaller than window ({window}) for 'chain': the shared "
            "frame carries the light from one window to the next"
        )


def _spans(first: int, stop: int, length: int, overlap: int) -> list[tuple[int, int]]:
    """Runs of ``length`` positions covering [first, stop), stepping by length - overlap; the last one ends at stop."""
    if stop - first <= length:
        return [(first, stop)]
    step = length - overlap
    starts = list(range(first, stop - length, step))
    starts.append(stop - length)
    return [(s, s + length) for s in starts]


def plan_windows(length: int, window: int, overlap: int, strategy: Strategy) -> list[list[int]]:
    """The sequence positions each window covers, in window order (position 0 = the reference).

    A sequence no longer than ``window`` is one window: exactly the official single-clip case.
    """
    check_window_options(window, overlap, strategy)
    if length <= window:
        return [list(range(length))]
    if strategy == "anchor":
        return [[0, *range(a, b)] for a, b in _spans(1, length, window - 1, overlap)]
    return [list(range(a, b)) for a, b in _spans(0, length, window, overlap)]


def rising_ramp(count: int) -> list[float]:
    """Weights 1/(n+1), 2/(n+1), ..., n/(n+1) of ``count`` shared frames, in the order the incoming side takes over:
    the outgoing side's weights are the same list reversed, so each shared frame's two weights sum to 1 and neither
    side ever drops to 0 or jumps to 1 inside the overlap (no hard seam)."""
    return [(rank + 1) / (count + 1) for rank in range(count)]


def ramp_weights(positions: list[int], previous: list[int] | None, following: list[int] | None) -> torch.Tensor:
    """Blend weights of one window's frames: rising over the frames shared with the previous window, falling over
    those shared with the next, 1 elsewhere. Weights are only compared among windows that cover the same frame."""
    n = len(positions)
    weights = torch.ones(n, dtype=torch.float64)
    for side, neighbour in (("head", previous), ("tail", following)):
        if not neighbour:
            continue
        neighbours = set(neighbour)
        shared = [i for i, p in enumerate(positions) if p != 0 and p in neighbours]
        ramp = rising_ramp(len(shared))
        for rank, i in enumerate(shared if side == "head" else reversed(shared)):
            weights[i] = min(weights[i].item(), ramp[rank])
    return weights


def window_weights(plan: list[list[int]]) -> list[torch.Tensor]:
    """:func:`ramp_weights` for every window of a plan."""
    return [
        ramp_weights(
            positions,
            plan[i - 1] if i > 0 else None,
            plan[i + 1] if i + 1 < len(plan) else None,
        )
        for i, positions in enumerate(plan)
    ]


def blend_sequence(plan: list[list[int]], parts: list[torch.Tensor], length: int) -> torch.Tensor:
    """Join per-window results (``parts[i]`` rows follow ``plan[i]``) into one sequence, cross-fading overlaps."""
    return weighted_join(plan, window_weights(plan), parts, length)


def weighted_join(
    rows: list[list[int]], weights: list[torch.Tensor], parts: list[torch.Tensor], length: int
) -> torch.Tensor:
    """[length, ...]: each row the weighted mean of the parts that cover it (``parts[i]`` rows land at
    ``rows[i]`` with ``weights[i]``). A row covered once with weight 1 is that part's row, bit for bit."""
    shape = (length, *parts[0].shape[1:])
    total = parts[0].new_zeros(shape)
    norm = parts[0].new_zeros(length)
    for index_list, weight, part in zip(rows, weights, parts, strict=True):
        index = torch.tensor(index_list, device=part.device)
        w = weight.to(part)
        total.index_add_(0, index, part * w.reshape(-1, *([1] * (part.ndim - 1))))
        norm.index_add_(0, index, w)
    return total / norm.reshape(-1, *([1] * (total.ndim - 1)))


def seam_positions(plan: list[list[int]]) -> list[int]:
    """Sequence positions ``p`` whose step p -> p+1 crosses from one window into the next: into the frames two
    windows share, within them, and out of them (one step when windows share nothing). Where a seam shows, it
    shows as a jump on these steps."""
    found: set[int] = set()
    for before, after in zip(plan, plan[1:], strict=False):
        first_new = min(p for p in after if p != 0)
        last_old = max(before)
        found.update(range(max(first_new - 1, 0), last_old + 1))
    return sorted(found)


def seam_transitions(directions: list[list[int]], window: int, overlap: int, strategy: Strategy) -> list[int]:
    """Frame steps ``t`` (frame t -> t+1) at window seams, for a clip split into ``directions`` (input frame indices
    of each propagation run, as the pipeline splits it); empty when every run fits in one window."""
    steps: set[int] = set()
    for run in directions:
        plan = plan_windows(len(run), window, overlap, strategy)
        for p in seam_positions(plan):
            if p + 1 < len(run):
                steps.add(min(run[p], run[p + 1]))
    return sorted(steps)
