"""Several relit keyframes: how the clip is split into runs, how they are joined, and what the light does."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from relumix_core.checkpoints.loading import load_relumix
from relumix_core.data.synth import render_scene
from relumix_core.errors import ReLumixError
from relumix_core.media.detail import transfer_detail
from relumix_core.models.tiny import random_tiny_model
from relumix_core.pipeline.conditioning import KeyframeRun, split_directions, split_keyframe_runs
from relumix_core.pipeline.pipeline import ReLumixPipeline, join_directions
from relumix_core.pipeline.settings import RelightSettings

SIZE = 64
FRAMES = 8  # relumix-tiny's trained length


@pytest.fixture(scope="module")
def pipe() -> ReLumixPipeline:
    return ReLumixPipeline(random_tiny_model(0))


@pytest.fixture(scope="module")
def tiny() -> ReLumixPipeline:
    return ReLumixPipeline(load_relumix("relumix-tiny")[0])


def clip(frames: int, seed: int = 0) -> torch.Tensor:
    """[T,3,H,W] smooth frames with a moving bright square."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.rand(1, 3, 1, 1, generator=gen) * 0.5 + 0.2
    yy, xx = torch.linspace(0, 1, SIZE)[:, None], torch.linspace(0, 1, SIZE)[None, :]
    video = (base * (0.7 + 0.3 * torch.sin(6 * xx + 3 * yy))).repeat(frames, 1, 1, 1)
    for t in range(frames):
        video[t, :, 8:16, 3 * t : 3 * t + 8] = 0.95
    return video.clamp(0, 1)


def settings(**kw: object) -> RelightSettings:
    return RelightSettings(**{"num_steps": 2, "size": SIZE, "window": 6, "overlap": 2, **kw})  # type: ignore[arg-type]


# -- splitting the clip ------------------------------------------------------------------------------------------


def test_split_between_two_keyframes_meets_in_the_middle_with_a_ramp() -> None:
    runs = split_keyframe_runs(10, [7, 2], 2)
    assert [(r.keyframe, r.indices) for r in runs] == [
        (0, (2, 3, 4, 5)), (0, (2, 1, 0)), (1, (7, 8, 9)), (1, (7, 6, 5, 4)),
    ]
    assert runs[0].weights == pytest.approx((1, 1, 2 / 3, 1 / 3))  # fades out over the shared frames 4, 5
    assert runs[3].weights == pytest.approx((0, 1, 2 / 3, 1 / 3))  # frame 7 comes from its forward run
    assert runs[1].weights == pytest.approx((0, 1, 1)) and runs[2].weights == pytest.approx((1, 1, 1))


@pytest.mark.parametrize(
    ("frames", "keys", "overlap"),
    [(1, [0], 2), (6, [0], 2), (6, [5], 0), (6, [2], 3), (2, [0, 1], 1), (10, [2, 3], 2), (10, [0, 9], 3),
     (10, [4, 6], 0), (10, [4, 6], 5), (12, [1, 5, 11], 1), (30, [0, 7, 8, 20, 29], 4), (9, [0, 4, 8], 9)],
)
def test_every_frame_is_covered_and_its_weights_sum_to_one(frames: int, keys: list[int], overlap: int) -> None:
    runs = split_keyframe_runs(frames, keys, overlap)
    total = np.zeros(frames)
    for run in runs:
        assert run.indices[0] == keys[run.keyframe]  # the run starts at its keyframe
        assert len(run.indices) == len(run.weights)
        alone = [r for r in runs if r.keyframe == run.keyframe] == [run]
        assert len(run.indices) > 1 or alone  # one-frame runs only for keyframes with no other
        assert all(abs(b - a) == 1 for a, b in zip(run.indices, run.indices[1:], strict=False))
        assert all(0 <= w <= 1 for w in run.weights)
        np.add.at(total, list(run.indices), run.weights)
    assert total == pytest.approx(np.ones(frames))
    for rank, k in enumerate(keys):  # a keyframe's frame is its own run's, whole
        own = [w for r in runs if r.keyframe == rank for i, w in zip(r.indices, r.weights, strict=True) if i == k]
        assert sum(own) == pytest.approx(1.0)
    for a, b in zip(keys, keys[1:], strict=False):  # neighbours share max(overlap, 1) frames, as the gap allows
        ahead, back = _run_from(runs, a, 1), _run_from(runs, b, -1)
        shared = set(ahead.indices) & set(back.indices) if ahead and back else set()
        assert len(shared) == min(max(overlap, 1), b - a - 1)
        if ahead and shared:
            fading = [w for i, w in zip(ahead.indices, ahead.weights, strict=True) if i in shared]
            assert fading == sorted(fading, reverse=True) and all(0 < w < 1 for w in fading)  # a ramp, no hard seam


def _run_from(runs: list[KeyframeRun], keyframe: int, step: int) -> KeyframeRun | None:
    """The run that leaves ``keyframe`` forwards (step 1) or backwards (-1), if there is one."""
    return next((r for r in runs if r.indices[0] == keyframe and r.indices[1:2] == (keyframe + step,)), None)


def test_one_keyframe_is_the_forward_and_backward_split() -> None:
    assert split_directions(6, 2) == [[2, 3, 4, 5], [2, 1, 0]]
    for k in range(6):
        runs = split_keyframe_runs(6, [k], 3)
        assert [list(r.indices) for r in runs] == split_directions(6, k)
        assert [r.weights[0] for r in runs] == ([1.0, 0.0] if 0 < k < 5 else [1.0])  # forward gives frame k


def test_joining_one_keyframe_is_the_old_overwrite_bit_for_bit(pipe: ReLumixPipeline) -> None:
    cond = pipe.encode(clip(7), clip(1, seed=3)[0], 3, settings())
    parts = [torch.randn(len(d.indices), 4, 16, 16, generator=torch.Generator().manual_seed(i))
             for i, d in enumerate(cond.directions)]
    old = torch.zeros(7, 4, 16, 16)
    for direction, z in reversed(list(zip(cond.directions, parts, strict=True))):
        old[direction.indices] = z  # the join before keyframes: the forward run last, so it gives frame k
    assert torch.equal(join_directions(cond, parts), old)


def test_joined_latents_cross_fade_where_two_keyframes_meet(pipe: ReLumixPipeline) -> None:
    cond = pipe.encode(clip(10), [clip(1, seed=3)[0], clip(1, seed=4)[0]], [0, 9], settings(overlap=3))
    parts = [torch.full((len(d.indices), 4, 16, 16), float(d.keyframe)) for d in cond.directions]
    joined = join_directions(cond, parts)[:, 0, 0, 0]
    assert joined[:4].tolist() == [0, 0, 0, 0] and joined[7:].tolist() == [1, 1, 1]
    assert joined[4:7].tolist() == pytest.approx([0.25, 0.5, 0.75])  # 3 shared frames, a linear ramp


# -- the pipeline with keyframes ---------------------------------------------------------------------------------


def test_one_keyframe_in_any_form_is_the_int_path(pipe: ReLumixPipeline) -> None:
    video, ref = clip(5), clip(1, seed=3)[0]
    base = pipe.relight(video, ref, 2, settings(), seed=5)
    assert torch.equal(pipe.relight(video, [ref], [2], settings(), seed=5), base)
    assert torch.equal(pipe.relight(video, ref[None].permute(0, 2, 3, 1), (2,), settings(), seed=5), base)
    cond = pipe.encode(video, ref, 2, settings())
    assert cond.reference_index == 2 and cond.reference_indices == (2,)
    assert cond.reference_image is not None and torch.equal(cond.reference_image, ref[None])
    assert cond.references == [cond.reference]


def test_pairs_are_sorted_and_any_reference_form_is_accepted(pipe: ReLumixPipeline) -> None:
    video, a, b = clip(9), clip(1, seed=3)[0], clip(1, seed=4)[0]
    cond = pipe.encode(video, [b, a], [8, 1], settings(), torch.Generator().manual_seed(0))
    assert cond.reference_index == 1 and cond.reference_indices == (1, 8)
    assert cond.reference_image is not None and torch.equal(cond.reference_image, torch.stack([a, b]))
    assert [(d.keyframe, d.indices[0]) for d in cond.directions] == [(0, 1), (0, 1), (1, 8)]
    assert cond.reference_of(cond.directions[2]) is cond.references[1] and cond.references[0] is cond.reference
    forms = {
        "tuple": ((a, b), (1, 8)),
        "channels-last batch": (torch.stack([a, b]).permute(0, 2, 3, 1).numpy(), [1, 8]),
        "channels-first batch": (torch.stack([a, b]), [1, 8]),
    }
    for name, (reference, indices) in forms.items():
        other = pipe.encode(video, reference, indices, settings(), torch.Generator().manual_seed(0))
        assert other.reference_image is not None and torch.equal(other.reference_image, cond.reference_image), name
        for d, e in zip(cond.directions, other.directions, strict=True):
            assert d.indices == e.indices and torch.equal(d.embeddings.latents, e.embeddings.latents), name
    larger = torch.nn.functional.interpolate(a[None], scale_factor=2.0, mode="bilinear")[0]  # conformed
    other = pipe.encode(video, [larger, b], [1, 8], settings(), torch.Generator().manual_seed(0))
    assert other.reference_image is not None and other.reference_image.shape == (2, 3, SIZE, SIZE)
    assert (other.reference_image[0] - a).abs().mean() < 0.02


def test_progress_total_and_windows_with_keyframes(pipe: ReLumixPipeline) -> None:
    video, a, b = clip(14), clip(1, seed=3)[0], clip(1, seed=4)[0]
    s = settings(window=4, overlap=1)
    cond = pipe.encode(video, [a, b], [2, 12], s, torch.Generator().manual_seed(0))
    calls: list[tuple[int, int]] = []
    result = pipe.generate(cond, s, torch.Generator().manual_seed(1), progress=lambda d, t: calls.append((d, t)))
    assert len(result.windows) == len(cond.directions) == 4  # per direction, as with one reference
    assert [w[0][0] for w in result.windows] == [2, 2, 12, 12]
    total = 2 * sum(len(w) for w in result.windows)
    assert calls == [(i, total) for i in range(1, total + 1)]
    assert result.frames.shape == (14, 3, SIZE, SIZE) and torch.isfinite(result.latents).all()


@pytest.mark.parametrize("window", [6, 4])  # one window per run, or chain windows (later ones swap the reference)
def test_each_run_is_conditioned_on_its_own_keyframes_reference(pipe: ReLumixPipeline, window: int) -> None:
    """The fused reference latent (UNet input channels 8-11) of each run's first window is its keyframe's."""
    s = settings(window=window, overlap=1, strategy="chain")
    cond = pipe.encode(clip(10), [clip(1, seed=3)[0], clip(1, seed=4)[0]], [0, 9], s)
    seen: list[torch.Tensor] = []
    pipe.on_denoise = lambda record: seen.append(record["unet_input"][:, 8:12].clone())
    try:
        result = pipe.generate(cond, s, torch.Generator().manual_seed(1))
    finally:
        pipe.on_denoise = None
    assert [len(w) for w in result.windows] == ([1, 1] if window == 6 else [2, 2])
    assert not torch.equal(cond.references[0].latent, cond.references[1].latent)
    first = 0
    for direction, windows in zip(cond.directions, result.windows, strict=True):
        expected = cond.references[direction.keyframe].latent
        for fused in seen[first : first + 2]:  # 2 steps of the run's first window
            assert torch.equal(fused, expected.expand_as(fused)), direction.keyframe
        first += 2 * len(windows)
    assert [d.keyframe for d in cond.directions] == [0, 1]


def test_detail_transfer_takes_each_keyframes_texture_from_its_reference(pipe: ReLumixPipeline) -> None:
    video, a, b = clip(6), clip(1, seed=3)[0], clip(1, seed=4)[0]
    cond = pipe.encode(video, [a, b], [0, 4], settings(), torch.Generator().manual_seed(0))
    off = pipe.generate(cond, settings(detail_sigma=0.0), torch.Generator().manual_seed(1)).frames
    on = pipe.generate(cond, settings(detail_sigma=0.75), torch.Generator().manual_seed(1)).frames
    from_input = transfer_detail(off, video, 0.75)
    keys, refs = [0, 4], torch.stack([a, b])
    torch.testing.assert_close(on[keys], transfer_detail(off[keys], refs, 0.75), atol=1e-6, rtol=0)
    torch.testing.assert_close(on[[1, 2, 3, 5]], from_input[[1, 2, 3, 5]], atol=1e-6, rtol=0)
    # the input frame's texture at a keyframe is the wrong one: the reference's brings the output closer to it
    assert (on[keys] - refs).abs().mean() < (from_input[keys] - refs).abs().mean()


def test_colour_anchor_is_fitted_on_every_keyframe(pipe: ReLumixPipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    from relumix_core.media import colour_anchor

    video, a, b = clip(6), clip(1, seed=3)[0], clip(1, seed=4)[0]
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    fit = colour_anchor.fit_colour_map
    monkeypatch.setattr(colour_anchor, "fit_colour_map", lambda out, ref: seen.append((out, ref)) or fit(out, ref))
    s = settings(detail_sigma=0.0)
    cond = pipe.encode(video, [b, a], [5, 1], s, torch.Generator().manual_seed(0))
    plain = pipe.generate(cond, s, torch.Generator().manual_seed(1)).frames
    anchored = pipe.generate(cond, replace(s, colour_anchor=True), torch.Generator().manual_seed(1)).frames
    (out, ref), = seen
    assert torch.equal(out, plain[[1, 5]]) and torch.equal(ref, torch.stack([a, b]))
    framing = cond.framing
    sigma = colour_anchor.LOCAL_SIGMA * framing.output_size[0] / framing.content_size[0]
    torch.testing.assert_close(anchored, colour_anchor.anchor_colours(plain, [1, 5], ref, sigma))


# -- bad input ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "index", "words"),
    [
        ("two", [0, 6], r"^reference_index\[1\] 6 is outside the clip of 6 frames \(use 0..5\)$"),
        ("two", [0, -1], r"reference_index\[1\] -1 is outside the clip of 6 frames"),
        ("two", [3, 3], r"^reference_index names frame 3 twice; give each keyframe once"),
        ("three", [0, 5], r"^3 reference images for 2 reference indices; pass one image per index"),
        ("batch3", [0, 5], r"^3 reference images for 2 reference indices"),
        ("one", [0, 2, 5], r"^1 reference image for 3 reference indices"),
        ("none", [], r"^reference_index is an empty list; give at least one frame number"),
        ("two", 0, r"^reference is a list of 2 images but reference_index is one frame \(0\); pass reference_index "
                   r"as a list of 2 frames"),
        ("two", [0, 2.5], r"^reference_index\[1\] must be a whole frame number"),
        ("one", 6, r"^reference_index 6 is outside the clip of 6 frames \(use 0..5\)$"),
    ],
)
def test_bad_keyframes_get_one_clear_line(pipe: ReLumixPipeline, reference: str, index: object, words: str) -> None:
    refs = {"one": [clip(1)[0]], "two": [clip(1)[0]] * 2, "three": [clip(1)[0]] * 3, "batch3": clip(3), "none": []}
    given = refs[reference][0] if reference == "one" and isinstance(index, int) else refs[reference]
    with pytest.raises(ReLumixError, match=words) as caught:
        pipe.relight(clip(6), given, index, settings(), seed=0)  # type: ignore[arg-type]
    assert "\n" not in str(caught.value)


# -- what the light does (the trained relumix-tiny) --------------------------------------------------------------


@pytest.fixture(scope="module")
def two_lights(tiny: ReLumixPipeline) -> dict[str, torch.Tensor]:
    """A synthetic scene under three lights: the source, light A (keyframe at frame 0) and light B (keyframe at the
    last frame), relit from A alone and from A and B."""
    lights = torch.from_numpy(render_scene(7, 0, 3, FRAMES, SIZE)).permute(0, 1, 4, 2, 3).float() / 255
    source, light_a, light_b = lights
    s = RelightSettings(num_steps=2, size=SIZE)
    one = tiny.relight(source, light_a[0], 0, s, seed=0).permute(0, 3, 1, 2)
    two = tiny.relight(source, [light_a[0], light_b[-1]], [0, FRAMES - 1], s, seed=0).permute(0, 3, 1, 2)
    return {"a": light_a, "b": light_b, "one": one, "two": two}


def _error(frame: torch.Tensor, target: torch.Tensor) -> float:
    return float((frame - target).abs().mean())


def test_each_keyframe_is_close_to_its_own_reference(two_lights: dict[str, torch.Tensor]) -> None:
    two, a, b = two_lights["two"], two_lights["a"], two_lights["b"]
    assert (a[0] - b[-1]).abs().mean() > 0.1  # two clearly different lights
    assert _error(two[0], a[0]) < 0.07 and _error(two[-1], b[-1]) < 0.07  # measured: 0.036 and 0.050
    assert _error(two[0], a[0]) < 0.5 * _error(two[0], b[0])  # light A stayed at the start
    assert _error(two[-1], b[-1]) < 0.5 * _error(two[-1], a[-1])  # and light B reached the end


def test_the_second_keyframe_pulls_its_neighbour_to_its_light(two_lights: dict[str, torch.Tensor]) -> None:
    one, two, b = two_lights["one"], two_lights["two"], two_lights["b"]
    before = _error(one[-2], b[-2])  # with A alone, the frame next to the last keeps light A
    assert _error(two[-2], b[-2]) < 0.5 * before, (before, _error(two[-2], b[-2]))  # measured: 0.061 vs 0.169
