"""The ComfyUI nodes called directly (no ComfyUI): the four roles chained on the random tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from comfy_images import video

from relumix_core.errors import ReLumixError

REPO = Path(__file__).resolve().parents[2]
def test_every_node_declares_the_classic_api(nodes: dict[str, type]) -> None:
    assert set(nodes) == {"LoadReLumixModel", "ReferenceReplace", "EmbeddingFuse", "ReLumixSampler",
                          "ReLumixSimpleRelight"}
    for name, cls in nodes.items():
        spec = cls.INPUT_TYPES()
        assert set(spec) <= {"required", "optional", "hidden"} and spec["required"], name
        assert cls.CATEGORY == "ReLumix"
        assert callable(getattr(cls(), cls.FUNCTION))
        assert len(cls.RETURN_TYPES) == len(cls.RETURN_NAMES)
    from relumix_core.checkpoints.bundled import BUNDLED_DIR, TINY_FILE

    bundled = [TINY_FILE] if (BUNDLED_DIR / TINY_FILE).is_file() else []  # the shipped model is listed after ours
    listed = nodes["LoadReLumixModel"].INPUT_TYPES()["required"]["checkpoint"][0]
    assert sorted(listed) == sorted(["relumix-tiny-random.safetensors", *bundled])


def test_load_replace_fuse_sample(nodes: dict[str, type]) -> None:
    (model,) = nodes["LoadReLumixModel"]().load("relumix-tiny-random.safetensors", "auto", "keep on GPU", "official")
    frames = video(10)
    relit = (frames[3:4] * torch.tensor([1.2, 0.9, 0.7])).clamp(0, 1)
    replaced, reference, k, keyframe_indices = nodes["ReferenceReplace"]().replace(frames, relit, 3, "auto")
    assert replaced.shape == frames.shape and k == 3 and keyframe_indices == ""
    assert torch.equal(replaced[3], reference[0]) and torch.equal(replaced[0], frames[0])
    (cond,) = nodes["EmbeddingFuse"]().fuse(model, replaced, reference, k, "custom", 64, "resize", 15, 0.02, 0)
    out, latent = nodes["ReLumixSampler"]().sample(model, cond, 0, 2, 1.0, 1.5, 6, 2, "anchor", 0, True)
    assert out.shape == frames.shape and out.dtype == torch.float32 and out.device.type == "cpu"
    assert 0 <= out.min() and out.max() <= 1
    assert latent["samples"].shape == (10, 4, 8, 8)


def test_reference_that_does_not_fit_is_explained(nodes: dict[str, type]) -> None:
    with pytest.raises(ReLumixError, match="aspect"):
        nodes["ReferenceReplace"]().replace(video(4), video(1, 80, 48), 0, "auto")
    replaced, reference, _, _ = nodes["ReferenceReplace"]().replace(video(4), video(1, 80, 48), 0, "pad")
    assert reference.shape == (1, 48, 80, 3)
    with pytest.raises(ReLumixError, match="outside"):
        nodes["ReferenceReplace"]().replace(video(4), video(1), 4, "auto")
    with pytest.raises(ReLumixError):
        nodes["ReferenceReplace"]().replace(video(4)[:0], video(1), 0, "auto")


def test_missing_checkpoint_and_foreign_conditioning(nodes: dict[str, type]) -> None:
    with pytest.raises(ReLumixError, match="not found"):
        nodes["LoadReLumixModel"]().load("nothing.safetensors", "auto", "keep on GPU", "official")
    load = nodes["LoadReLumixModel"]().load
    (a,) = load("relumix-tiny-random.safetensors", "fp32", "keep on GPU", "official")
    (b,) = load("relumix-tiny-random.safetensors", "fp32", "offload between runs", "official")
    (cond,) = nodes["EmbeddingFuse"]().fuse(a, video(4), video(1), 0, "custom", 64, "resize", 15, 0.02, 0)
    with pytest.raises(ReLumixError, match="different ReLumix model"):
        nodes["ReLumixSampler"]().sample(b, cond, 0, 1, 1.0, 1.5, 0, -1, "anchor", 0, True)


def test_sampler_strategy_auto_is_the_models_own(nodes: dict[str, type]) -> None:
    (model,) = nodes["LoadReLumixModel"]().load("relumix-tiny-random.safetensors", "auto", "keep on GPU", "official")
    frames = video(10)
    (cond,) = nodes["EmbeddingFuse"]().fuse(model, frames, frames[:1], 0, "custom", 64, "resize", 15, 0.02, 0)
    sampler = nodes["ReLumixSampler"]()
    assert sampler.INPUT_TYPES()["required"]["strategy"][1]["default"] == "auto"
    runs = {name: sampler.sample(model, cond, 0, 1, 1.0, 1.5, 6, 2, name, 0, True)[0]
            for name in ("auto", "chain", "anchor")}
    assert model.pipeline.model.config.window_strategy == "chain"  # a random model reads the old default
    assert torch.equal(runs["auto"], runs["chain"])
    assert not torch.equal(runs["auto"], runs["anchor"])
