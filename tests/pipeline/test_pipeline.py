"""The relighting pipeline on the random tiny model: directions, windows, options, progress, interrupts, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from relumix_core.errors import ReLumixError
from relumix_core.media.frames import InputError
from relumix_core.models.tiny import random_tiny_model
from relumix_core.pipeline.conditioning import split_directions
from relumix_core.pipeline.pipeline import ReLumixPipeline
from relumix_core.pipeline.progress import Interrupted
from relumix_core.pipeline.settings import RelightSettings

SIZE = 64


@pytest.fixture(scope="module")
def pipe() -> ReLumixPipeline:
    return ReLumixPipeline(random_tiny_model(0))


def clip(frames: int, height: int = SIZE, width: int = SIZE, seed: int = 0) -> torch.Tensor:
    """[T,3,H,W] smooth frames with a moving bright square, so frames differ from each other."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.rand(1, 3, 1, 1, generator=gen) * 0.5 + 0.2
    yy = torch.linspace(0, 1, height)[:, None]
    xx = torch.linspace(0, 1, width)[None, :]
    video = (base * (0.7 + 0.3 * torch.sin(6 * xx + 3 * yy))).repeat(frames, 1, 1, 1)
    for t in range(frames):
        x0 = int((t * 3) % max(1, width - 8))
        video[t, :, 8:16, x0 : x0 + 8] = 0.95
    return video.clamp(0, 1)


def settings(**kw: object) -> RelightSettings:
    base = dict(num_steps=2, size=SIZE, window=6, overlap=2)
    base.update(kw)
    return RelightSettings(**base)  # type: ignore[arg-type]


def test_split_directions() -> None:
    assert split_directions(6, 0) == [[0, 1, 2, 3, 4, 5]]
    assert split_directions(6, 5) == [[5, 4, 3, 2, 1, 0]]
    assert split_directions(6, 2) == [[2, 3, 4, 5], [2, 1, 0]]
    assert split_directions(1, 0) == [[0]]


@pytest.mark.parametrize("k", [0, 3, 7])
def test_reference_index_is_frame_zero_of_both_halves_in_time_order(pipe: ReLumixPipeline, k: int) -> None:
    """Record what the frame encoder sees: each direction starts with the reference, then moves away from k."""
    frames = torch.stack([torch.full((3, SIZE, SIZE), (i + 1) / 10) for i in range(8)])
    reference = torch.full((3, SIZE, SIZE), 0.05)
    seen: list[torch.Tensor] = []
    encoder = pipe.model.frame_encoder
    handle = encoder.register_forward_hook(lambda m, args, out: seen.append(args[0].detach().clone()))
    try:
        cond = pipe.encode(frames, reference, k, settings(cond_aug=0.0, decode_chunk_size=100))
    finally:
        handle.remove()
    frame_batches = [s for s in seen if s.shape[0] > 1 or len(cond.directions) == 0]
    expected_runs = split_directions(8, k)
    assert [d.indices for d in cond.directions] == expected_runs
    assert len(frame_batches) == len(expected_runs)
    for batch, run in zip(frame_batches, expected_runs, strict=True):
        values = ((batch.mean(dim=(1, 2, 3)) + 1) / 2).tolist()  # back to [0, 1]
        assert values[0] == pytest.approx(0.05, abs=1e-6)  # the relit reference, not frame k
        assert values[1:] == pytest.approx([(i + 1) / 10 for i in run[1:]], abs=1e-6)
        if run[1] < run[0]:  # the backward half runs backwards in time
            assert values[1:] == sorted(values[1:], reverse=True)
    result = pipe.generate(cond, settings(), torch.Generator().manual_seed(0))
    assert result.frames.shape == (8, 3, SIZE, SIZE)
    assert [w[0][0] for w in result.windows] == [k] * len(expected_runs)


def test_same_seed_same_result_and_sequential_branches_match(pipe: ReLumixPipeline) -> None:
    video, ref = clip(5), clip(1, seed=3)[0]
    a = pipe.relight(video, ref, 0, settings(), seed=7)
    b = pipe.relight(video, ref, 0, settings(), seed=7)
    c = pipe.relight(video, ref, 0, settings(batch_branches=False), seed=7)
    d = pipe.relight(video, ref, 0, settings(), seed=8)
    assert torch.equal(a, b)
    torch.testing.assert_close(a, c, atol=1e-4, rtol=0)
    assert (a - d).abs().max() > 1e-3
    assert a.shape == (5, SIZE, SIZE, 3)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["anchor", "chain"])
def test_long_video_windows_have_no_seams(pipe: ReLumixPipeline, strategy: str) -> None:
    """3x the window: the change across a seam is no larger than the model's own frame-to-frame change around it.

    A still video with the same noise in every frame makes the random model's output vary smoothly with the frame's
    position in its window, so windows that disagree at a seam show up as a spike (chain without cross-fading
    gives 1.4x its neighbours here; a joined run stays at about 1.0x).
    """
    length = 18
    video, ref = clip(1).repeat(length, 1, 1, 1), clip(1, seed=5)[0]
    # one decode chunk for the whole clip: decode chunk boundaries are seams of their own (docs/performance.md)
    s = settings(window=6, overlap=2, strategy=strategy, num_steps=5, cond_aug=0.0, decode_chunk_size=length)
    cond = pipe.encode(video, ref, 0, s, torch.Generator().manual_seed(0))
    noise = torch.randn(1, 4, SIZE // 8, SIZE // 8, generator=torch.Generator().manual_seed(1)).repeat(length, 1, 1, 1)
    result = pipe.generate(cond, s, latent_noise=[noise])
    windows = result.windows[0]
    assert len(windows) >= 3
    jumps = (result.frames[1:] - result.frames[:-1]).abs().mean(dim=(1, 2, 3))
    firsts = [w[1] if strategy == "anchor" else w[0] for w in windows[1:]]  # where each later window takes over
    for first in firsts:
        seam = jumps[first - 1]
        around = (jumps[first - 2] + jumps[first]) / 2
        assert seam <= 1.2 * around, (first, seam.item(), around.item())


@pytest.mark.slow
def test_progress_counts_steps_times_windows_and_stop_interrupts(pipe: ReLumixPipeline) -> None:
    video, ref = clip(12), clip(1, seed=1)[0]
    s = settings(num_steps=2, window=6, overlap=2)
    calls: list[tuple[int, int]] = []
    pipe.relight(video, ref, 4, s, seed=0, progress=lambda d, t: calls.append((d, t)))
    total = calls[-1][1]
    assert [d for d, _ in calls] == list(range(1, total + 1))
    cond = pipe.encode(video, ref, 4, s, torch.Generator().manual_seed(0))
    plans = sum(len(w) for w in pipe.generate(cond, s, torch.Generator().manual_seed(0)).windows)
    assert total == 2 * plans

    done: list[int] = []
    with pytest.raises(Interrupted):
        pipe.relight(video, ref, 4, s, seed=0, progress=lambda d, t: done.append(d), should_stop=lambda: len(done) >= 3)
    assert len(done) == 3  # stopped at the first check after the request
    # the model is still usable and gives the same result as before the interruption
    again = pipe.relight(video[:5], ref, 0, settings(), seed=2)
    fresh = ReLumixPipeline(random_tiny_model(0)).relight(video[:5], ref, 0, settings(), seed=2)
    torch.testing.assert_close(again, fresh)


def test_any_input_kind_and_size(pipe: ReLumixPipeline) -> None:
    video = clip(4, 50, 90)
    ref = clip(1, 100, 180, seed=2)[0]  # the same aspect at another size: conformed
    as_numpy = (video.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    as_pil = [Image.fromarray(f) for f in as_numpy]
    ref_pil = Image.fromarray((ref.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    s = settings(size=SIZE)
    out_np = pipe.relight(as_numpy, ref_pil, 0, s, seed=0, output_type="np")
    out_pil = pipe.relight(as_pil, ref_pil, 0, s, seed=0, output_type="pil")
    out_pt = pipe.relight(torch.from_numpy(as_numpy), ref_pil, 0, s, seed=0)
    assert out_np.shape == (4, 50, 90, 3) and out_np.dtype == np.uint8
    assert len(out_pil) == 4 and out_pil[0].size == (90, 50)
    assert np.array_equal(np.asarray(out_pil[2]), out_np[2])
    assert out_pt.shape == (4, 50, 90, 3)
    assert np.abs(out_pt.numpy() * 255 - out_np).max() <= 0.5 + 1e-3


def test_bf16_weights_keep_a_float32_sampler(pipe: ReLumixPipeline) -> None:
    from relumix_core.models.unet import cast_module

    model = random_tiny_model(0)
    for module in model.unique_components().values():
        cast_module(module, torch.bfloat16)
    half = ReLumixPipeline(model)
    assert half.state_dtype == torch.float32
    video, ref = clip(4), clip(1, seed=3)[0]
    cond = half.encode(video, ref, 0, settings())
    result = half.generate(cond, settings(), torch.Generator().manual_seed(0))
    assert result.latents.dtype == torch.float32 and torch.isfinite(result.frames).all()
    full = pipe.relight(video, ref, 0, settings(), seed=0)
    assert (result.frames.permute(0, 2, 3, 1) - full).abs().mean() < 0.1  # same model, lower precision


def test_offload_gives_the_same_result(pipe: ReLumixPipeline) -> None:
    video, ref = clip(4), clip(1, seed=3)[0]
    offloaded = ReLumixPipeline(pipe.model, device="cpu", offload=True)
    assert torch.equal(offloaded.relight(video, ref, 0, settings(), seed=3), pipe.relight(video, ref, 0, settings(),
                                                                                           seed=3))


def test_one_frame_video_is_the_models_rendition_of_the_reference(pipe: ReLumixPipeline) -> None:
    out = pipe.relight(clip(1), clip(1, seed=4)[0], 0, settings(), seed=0)
    assert out.shape == (1, SIZE, SIZE, 3)


def test_conditioning_from_another_model_is_refused(pipe: ReLumixPipeline) -> None:
    other = ReLumixPipeline(random_tiny_model(1))
    cond = other.encode(clip(3), clip(1)[0], 0, settings())
    with pytest.raises(ReLumixError, match="different ReLumix model"):
        pipe.generate(cond, settings())


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: (torch.zeros(0, 3, SIZE, SIZE), clip(1)[0], 0, {}), "empty|no frames|0 frames"),
        (lambda: ([clip(1)[0], clip(1, 32, 32)[0]], clip(1)[0], 0, {}), "size"),
        (lambda: (clip(3).clone().index_fill_(0, torch.tensor([1]), float("nan")), clip(1)[0], 0, {}), "NaN"),
        (lambda: (clip(3), clip(1)[0], 3, {}), "outside the clip of 3 frames"),
        (lambda: (clip(3), clip(1)[0], -1, {}), "outside the clip"),
        (lambda: (clip(3), clip(1, SIZE, 3 * SIZE)[0], 0, {}), "aspect"),
        (lambda: (clip(3), clip(1)[0], 0, {"num_steps": 0}), "steps must be at least 1"),
        (lambda: (clip(3), clip(1)[0], 0, {"window": 4, "overlap": 4}), "overlap"),
        (lambda: (clip(3), clip(1)[0], 0, {"strategy": "chain", "window": 4, "overlap": 4}), "overlap"),
        (lambda: (clip(3), clip(1)[0], 0, {"size": (100, 64)}), "multiple"),
    ],
)
def test_bad_input_gets_a_clear_error(pipe: ReLumixPipeline, make, words: str) -> None:
    frames, reference, k, options = make()
    with pytest.raises((ReLumixError, InputError), match=words):
        pipe.relight(frames, reference, k, settings(**options), seed=0)


def test_rgba_grayscale_and_16bit_frames_are_accepted(pipe: ReLumixPipeline) -> None:
    rgb = (clip(3).permute(0, 2, 3, 1).numpy() * 65535).astype(np.uint16)
    rgba = np.concatenate([rgb, np.full(rgb.shape[:3] + (1,), 65535, np.uint16)], axis=-1)
    gray = rgb[..., :1]
    ref = clip(1)[0]
    a = pipe.relight(rgba, ref, 0, settings(), seed=0)
    b = pipe.relight(rgb, ref, 0, settings(), seed=0)
    assert torch.equal(a, b)  # alpha is dropped
    assert pipe.relight(gray, ref, 0, settings(), seed=0).shape == (3, SIZE, SIZE, 3)


def test_steps_default_to_the_models_own() -> None:
    """A run that does not choose its steps takes the model's (25 for ReLumix); old configs read 25."""
    import json

    from relumix_core.models.relumix import ReLumixConfig

    model = random_tiny_model(0)
    assert RelightSettings().resolved(model).num_steps == 25
    model.config.default_steps = 4
    assert RelightSettings().resolved(model).num_steps == 4
    assert RelightSettings(num_steps=7).resolved(model).num_steps == 7
    data = json.loads(model.config.to_json())
    assert ReLumixConfig.from_json(json.dumps(data)).default_steps == 4
    del data["default_steps"]
    assert ReLumixConfig.from_json(json.dumps(data)).default_steps == 25
    for bad in (0, 2.5, True):
        data["default_steps"] = bad
        with pytest.raises(ValueError, match="default_steps"):
            ReLumixConfig.from_json(json.dumps(data))
    with pytest.raises(ReLumixError, match="steps must be at least 1"):
        RelightSettings(num_steps=0).check()


def test_default_steps_set_the_progress_total() -> None:
    model = random_tiny_model(0)
    model.config.default_steps = 3
    pipe = ReLumixPipeline(model)
    seen: list[tuple[int, int]] = []
    pipe.relight(clip(3), clip(1)[0], 0, RelightSettings(size=SIZE, window=3, overlap=1),
                 seed=0, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (3, 3)  # 3 steps x 1 window
