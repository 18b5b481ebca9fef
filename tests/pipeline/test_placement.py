"""Placements: which components each stage asks for, offloading, the sampler preview and chunked encoding."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import torch

from relumix_core.models.tiny import random_tiny_model
from relumix_core.pipeline.pipeline import ENCODERS, ReLumixPipeline
from relumix_core.pipeline.placement import Offload
from relumix_core.pipeline.settings import RelightSettings

SIZE = 64


class RecordingPlacement:
    """Keeps the model on the CPU and records every stage with the device each component was on inside it."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.device = torch.device("cpu")
        self.model = model
        self.stages: list[tuple[str, tuple[str, ...]]] = []

    @contextmanager
    def stage(self, stage: str, components: tuple[str, ...]) -> Iterator[None]:
        self.stages.append((stage, components))
        yield


def _video(frames: int) -> torch.Tensor:
    ramp = torch.linspace(0, 1, SIZE)
    return torch.stack([(ramp[None, :] * ramp[:, None] + t / 20).clamp(0, 1).expand(3, SIZE, SIZE)
                        for t in range(frames)])


def _settings(**changes: object) -> RelightSettings:
    return replace(RelightSettings(num_steps=2, size=SIZE, window=6, overlap=2), **changes)  # type: ignore[arg-type]


def test_each_stage_asks_for_its_own_components_in_order() -> None:
    model = random_tiny_model(0)
    placement = RecordingPlacement(model)
    pipe = ReLumixPipeline(model, placement=placement)
    video = _video(10)
    pipe.relight(video, video[3], reference_index=3, settings=_settings(strategy="anchor"), seed=0)
    kinds = [stage for stage, _ in placement.stages]
    assert kinds[0] == "encode" and kinds[-1] == "decode" and "sample" in kinds
    assert kinds.index("decode") > max(i for i, k in enumerate(kinds) if k == "sample")
    wanted = {"encode": ENCODERS, "sample": ("unet",), "decode": ("vae",)}
    assert all(components == wanted[stage] for stage, components in placement.stages)


def test_chain_windows_return_to_the_encoders_between_windows() -> None:
    model = random_tiny_model(0)
    placement = RecordingPlacement(model)
    pipe = ReLumixPipeline(model, placement=placement)
    video = _video(12)
    pipe.relight(video, video[0], settings=_settings(strategy="chain"), seed=0)
    kinds = [stage for stage, _ in placement.stages]
    # window 2 re-embeds window 1's relit frame: encode, sample, (decode to read it), encode, sample, ..., decode
    assert kinds.count("sample") >= 2 and kinds[kinds.index("sample") + 1:].count("encode") >= 1


def test_offload_matches_resident_and_leaves_everything_on_the_cpu() -> None:
    video = _video(8)
    resident = ReLumixPipeline(random_tiny_model(0)).relight(video, video[0], settings=_settings(), seed=1)
    model = random_tiny_model(0)
    pipe = ReLumixPipeline(model, device="cpu", offload=True)
    assert isinstance(pipe.placement, Offload)
    offloaded = pipe.relight(video, video[0], settings=_settings(), seed=1)
    torch.testing.assert_close(offloaded, resident, rtol=0, atol=0)
    assert {p.device.type for p in model.parameters()} == {"cpu"}


def test_preview_sees_the_middle_frame_of_every_window_evaluation() -> None:
    model = random_tiny_model(0)
    pipe = ReLumixPipeline(model)
    video = _video(10)
    cond = pipe.encode(video, video[0], 0, _settings(strategy="anchor"), torch.Generator().manual_seed(0))
    previews: list[torch.Tensor] = []
    ticks: list[int] = []
    pipe.generate(cond, _settings(strategy="anchor"), torch.Generator().manual_seed(0),
                  progress=lambda done, total: ticks.append(len(previews)), preview=previews.append)
    latent_side = SIZE // model.latent_factor
    assert len(previews) == len(ticks) > 0
    assert ticks == list(range(1, len(ticks) + 1))  # each preview arrives just before its tick
    assert all(p.shape == (4, latent_side, latent_side) for p in previews)
    assert not torch.equal(previews[0], previews[-1])  # the prediction sharpens over the steps


def test_encoding_in_chunks_gives_the_same_conditioning_as_one_chunk() -> None:
    pipe = ReLumixPipeline(random_tiny_model(0))
    video = _video(9)
    whole = pipe.encode(video, video[0], 0, _settings(decode_chunk_size=9), torch.Generator().manual_seed(0))
    chunked = pipe.encode(video, video[0], 0, _settings(decode_chunk_size=2), torch.Generator().manual_seed(0))
    for a, b in zip(whole.directions, chunked.directions, strict=True):
        torch.testing.assert_close(a.embeddings.latents, b.embeddings.latents, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(a.embeddings.clip, b.embeddings.clip, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(a.cond_noise, b.cond_noise, rtol=0, atol=0)


def test_vae_tiles_change_the_frames_slightly_and_bad_tiles_fail_before_work() -> None:
    import pytest

    from relumix_core.errors import ReLumixError

    pipe = ReLumixPipeline(random_tiny_model(0))
    video = _video(6)
    whole = pipe.relight(video, video[0], settings=_settings(), seed=0)
    tiled = pipe.relight(video, video[0], settings=_settings(vae_tile=32), seed=0)
    difference = (whole - tiled).abs()
    assert 0 < difference.max() < 0.5
    with pytest.raises(ReLumixError, match="tile"):
        pipe.relight(video, video[0], settings=_settings(vae_tile=3), seed=0)
