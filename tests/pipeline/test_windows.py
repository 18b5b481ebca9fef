"""Window planning and blending for long videos (pure index logic, no model)."""

from __future__ import annotations

import pytest
import torch

from relumix_core.errors import ReLumixError
from relumix_core.pipeline.sampling import sample_windows
from relumix_core.pipeline.windows import (
    blend_sequence,
    check_window_options,
    plan_windows,
    window_weights,
)


@pytest.mark.parametrize("strategy", ["anchor", "chain"])
@pytest.mark.parametrize("length", [1, 2, 5, 8])
def test_short_sequence_is_one_official_window(strategy: str, length: int) -> None:
    assert plan_windows(length, 8, 2, strategy) == [list(range(length))]


@pytest.mark.parametrize("length", [9, 14, 24, 25, 61, 100])
@pytest.mark.parametrize(("window", "overlap"), [(8, 2), (8, 3), (14, 4), (5, 1)])
def test_anchor_windows_hold_the_reference_and_cover_everything(length: int, window: int, overlap: int) -> None:
    plan = plan_windows(length, window, overlap, "anchor")
    assert all(p[0] == 0 and len(p) == min(window, length) for p in plan)
    covered = sorted({i for p in plan for i in p})
    assert covered == list(range(length))
    for prev, nxt in zip(plan, plan[1:], strict=False):
        assert nxt[1:] == list(range(nxt[1], nxt[1] + window - 1))  # consecutive frames after the reference
        shared = set(prev[1:]) & set(nxt[1:])
        assert len(shared) >= overlap
        assert nxt[1] > prev[1]
    assert plan[-1][-1] == length - 1


@pytest.mark.parametrize("length", [9, 14, 24, 61])
@pytest.mark.parametrize(("window", "overlap"), [(8, 1), (8, 3), (14, 4)])
def test_chain_windows_start_inside_the_previous_one(length: int, window: int, overlap: int) -> None:
    plan = plan_windows(length, window, overlap, "chain")
    assert plan[0][0] == 0 and plan[-1][-1] == length - 1
    for prev, nxt in zip(plan, plan[1:], strict=False):
        assert len(nxt) == window and nxt == list(range(nxt[0], nxt[0] + window))  # full windows only
        assert nxt[0] in prev  # its reference is a frame the previous window relit
        assert len(set(prev) & set(nxt)) >= overlap


@pytest.mark.parametrize(
    ("window", "overlap", "strategy", "words"),
    [
        (8, 8, "chain", "smaller than window"),
        (8, 9, "chain", "smaller than window"),
        (8, 0, "chain", "at least 1"),
        (8, 7, "anchor", "window - 1"),
        (1, 0, "anchor", "at least 2"),
        (8, -1, "anchor", "0 or more"),
        (8, 2, "zigzag", "strategy"),
    ],
)
def test_bad_window_options_are_explained(window: int, overlap: int, strategy: str, words: str) -> None:
    with pytest.raises(ReLumixError, match=words):
        check_window_options(window, overlap, strategy)


def test_weights_fall_towards_the_shared_edges() -> None:
    plan = plan_windows(20, 8, 3, "chain")
    weights = window_weights(plan)
    first, second = weights[0], weights[1]
    assert first[0] == 1 and first[-1] < first[-2] < first[-3] < 1
    assert second[0] < second[1] < second[2] <= 1
    # where two windows overlap, the first one's weight falls as the second one's rises
    shared = sorted(set(plan[0]) & set(plan[1]))
    w0 = [first[plan[0].index(p)].item() for p in shared]
    w1 = [second[plan[1].index(p)].item() for p in shared]
    assert w0 == sorted(w0, reverse=True) and w1 == sorted(w1)


@pytest.mark.parametrize("strategy", ["anchor", "chain"])
def test_blending_consistent_parts_reproduces_them(strategy: str) -> None:
    length = 23
    truth = torch.randn(length, 4, 2, 2, dtype=torch.float64)
    plan = plan_windows(length, 8, 3, strategy)
    joined = blend_sequence(plan, [truth[p] for p in plan], length)
    torch.testing.assert_close(joined, truth)


def test_blending_crossfades_disagreeing_windows() -> None:
    plan = plan_windows(13, 8, 3, "chain")
    assert len(plan) == 2
    parts = [torch.zeros(len(plan[0]), 1), torch.ones(len(plan[1]), 1)]
    joined = blend_sequence(plan, parts, 13).flatten()
    assert joined[0] == 0 and joined[-1] == 1
    assert torch.all(joined[1:] >= joined[:-1])  # a monotone cross-fade, no jump back
    assert 0 < joined[plan[1][1]] < 1


def test_sampling_loop_gives_each_window_its_rows_and_blends() -> None:
    plan = plan_windows(20, 6, 2, "anchor")
    seen: list[torch.Tensor] = []

    def make(i: int):
        def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            seen.append(x[:, 0, 0, 0].clone())
            return x * 2 + sigma.reshape(-1, 1, 1, 1)

        return denoise

    ticks: list[int] = []
    noise = torch.arange(20, dtype=torch.float64).reshape(20, 1, 1, 1).expand(20, 2, 2, 2).contiguous()
    sigmas = torch.tensor([0.5, 0.0], dtype=torch.float64)  # one Euler step from sigma 0.5 to 0
    x = noise * (1 + 0.5**2) ** 0.5
    out = sample_windows([make(i) for i in range(len(plan))], plan, noise, sigmas,
                         lambda denoised: ticks.append(denoised.shape[0]))
    torch.testing.assert_close(out, x * 2 + 0.5)  # every window agrees, so blending changes nothing; sigma 0: x0
    assert [s.tolist() for s in seen] == [x[p, 0, 0, 0].tolist() for p in plan]
    assert ticks == [len(p) for p in plan]  # one call per window evaluation, with that window's x0


def test_seam_steps_follow_the_window_plan() -> None:
    from relumix_core.pipeline.conditioning import split_directions
    from relumix_core.pipeline.windows import seam_positions, seam_transitions

    assert seam_positions([[0, 1, 2, 3]]) == []
    # chain, window 4, overlap 1: windows 0-3, 3-6 -> steps into, within and out of the shared frame 3
    assert seam_positions([[0, 1, 2, 3], [3, 4, 5, 6]]) == [2, 3]
    # anchor without overlap: windows [0,1,2,3] and [0,4,5,6] meet at the single step 3 -> 4
    assert seam_positions([[0, 1, 2, 3], [0, 4, 5, 6]]) == [3]
    assert seam_transitions(split_directions(7, 0), 4, 1, "chain") == [2, 3]
    # a backward run maps positions back onto frame steps: reference 6, frames 6,5,...,0
    assert seam_transitions(split_directions(7, 6), 4, 1, "chain") == [2, 3]
    assert seam_transitions(split_directions(8, 0), 8, 2, "anchor") == []
