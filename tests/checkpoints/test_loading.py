"""Checkpoint loading and conversion: round trips are bit-exact, the load report tells the truth, quirk Q1 and
duplicate embedders are handled, and every kind of bad file is refused with one clear CheckpointError."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

import pytest
import torch
from checkpoint_helpers import (
    BAD_CHECKPOINTS,
    EMBEDDER_ENCODER,
    MARKERS,
    SPATIAL_GATE,
    TINY_OFFICIAL_OPTIONS,
    assert_bit_identical,
    copy_tensors,
    malicious_state,
    official_state,
    stock_svd_state,
    with_vae_encoder_copies,
    write_state,
)
from diffusers.models.attention_processor import Attention
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import relumix_core.checkpoints.single_file as single_file
from relumix_core.checkpoints.components import COMPONENTS
from relumix_core.checkpoints.loading import LoadOptions, convert_checkpoint, load_official, load_relumix
from relumix_core.checkpoints.single_file import save_folder, save_single_file
from relumix_core.checkpoints.svd_init import init_from_sgm_state
from relumix_core.checkpoints.tensor_source import DictSource
from relumix_core.errors import CheckpointError
from relumix_core.models.gated_attention import GatedAttnProcessor
from relumix_core.models.relumix import ReLumixConfig, ReLumixModel
from relumix_core.models.tiny import random_tiny_model, tiny_config

UNET_CONV_IN = "model.diffusion_model.input_blocks.0.0.weight"


@pytest.fixture(scope="module")
def official_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny official engine as one official-layout .safetensors."""
    return write_state(tmp_path_factory.mktemp("official") / "tiny_engine.safetensors", official_state())


@pytest.fixture(scope="module")
def official_loaded(official_file: Path):
    return load_relumix(official_file, **TINY_OFFICIAL_OPTIONS)


def _no_partials(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".partial")]


# ------------------------------------------------------------------------------------------------ round trips


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_official_layout_converts_bit_exactly(suffix: str, official_loaded, official_file: Path,
                                              tmp_path: Path) -> None:
    if suffix == ".safetensors":
        src, (direct, report) = official_file, official_loaded
    else:
        src = write_state(tmp_path / f"relumix{suffix}", official_state())
        direct, report = load_relumix(src, **TINY_OFFICIAL_OPTIONS)
        assert_bit_identical(official_loaded[0], direct)  # .pth and .safetensors give the same model
    assert report.format == "official sgm layout"
    # The renamed UNet input conv is the official tensor itself.
    assert torch.equal(direct.unet.conv_in.weight, official_state()[UNET_CONV_IN])

    dst = tmp_path / "converted.safetensors"
    convert_report = convert_checkpoint(src, dst, **TINY_OFFICIAL_OPTIONS)
    assert convert_report.gates["gated"] == 44
    converted, converted_report = load_relumix(dst)  # no options: the config travels in the file
    assert converted_report.format == "ReLumix single file"
    assert assert_bit_identical(direct, converted) > 1500
    assert converted.config.to_json() == direct.config.to_json()
    assert not _no_partials(tmp_path)
    umask = os.umask(0)
    os.umask(umask)
    assert dst.stat().st_mode & 0o777 == 0o666 & ~umask  # not the private mode of the temporary file


@pytest.mark.slow
def test_fp16_conversion_casts_exactly(official_loaded, official_file: Path, tmp_path: Path) -> None:
    reference, _ = official_loaded
    dst = tmp_path / "fp16.safetensors"
    convert_checkpoint(official_file, dst, dtype="fp16", **TINY_OFFICIAL_OPTIONS)
    half, report = load_relumix(dst)
    assert report.dtype == "float16"
    assert all(
        t.dtype == torch.float16 for m in half.unique_components().values() for t in m.state_dict().values()
        if t.is_floating_point()
    )
    assert_bit_identical(reference, half, cast=torch.float16)
    assert dst.stat().st_size < 0.6 * official_file.stat().st_size


@pytest.mark.slow
def test_folder_round_trip(official_loaded, official_file: Path, tmp_path: Path) -> None:
    reference, _ = official_loaded
    dst = tmp_path / "relumix_folder"
    convert_checkpoint(official_file, f"{dst}/", **TINY_OFFICIAL_OPTIONS)
    umask = os.umask(0)
    os.umask(umask)
    assert dst.stat().st_mode & 0o777 == 0o777 & ~umask
    index = json.loads((dst / "model_index.json").read_text())
    assert index["_class_name"] == "ReLumixModel"
    assert sorted(p.name for p in dst.iterdir() if p.is_dir()) == sorted(reference.unique_components())
    loaded, report = load_relumix(dst)
    assert report.format == "diffusers-style folder"
    assert_bit_identical(reference, loaded)
    # A folder converts back to one file, still exactly.
    convert_checkpoint(dst, tmp_path / "back.safetensors")
    assert_bit_identical(reference, load_relumix(tmp_path / "back.safetensors")[0])


@pytest.mark.slow
def test_tiny_random_model_saves_loads_and_runs(tmp_path: Path) -> None:
    model = random_tiny_model(seed=3)
    assert model.reference_image_encoder is model.image_encoder
    assert_bit_identical(model, random_tiny_model(seed=3))  # deterministic by seed
    other = random_tiny_model(seed=4).unet.conv_in.weight
    assert not torch.equal(model.unet.conv_in.weight, other)

    path = save_single_file(model, tmp_path / "tiny.safetensors")
    loaded, report = load_relumix(path)
    assert_bit_identical(model, loaded)
    assert loaded.reference_encoder is loaded.frame_encoder
    assert report.gates["gated"] == report.gates["attention_modules"] == 44
    gates = torch.stack([p for n, p in loaded.unet.named_parameters() if n.endswith(".gate")])
    assert (gates < 0).any() and (gates.abs() >= 0.3).all()  # non-trivial, like the fixtures

    frames, videos = 3, 2
    rows = frames * videos
    g = torch.Generator().manual_seed(0)
    unet = loaded.unet
    config = tiny_config().unet
    with torch.no_grad():
        out = unet(
            torch.randn(rows, 12, 16, 16, generator=g),
            torch.full((rows,), 0.2),
            torch.randn(rows, 1, config.context_dim, generator=g),
            torch.randn(rows, config.adm_in_channels, generator=g),
            num_frames=frames,
        )
    assert out.shape == (rows, 4, 16, 16) and torch.isfinite(out).all()
    with torch.no_grad():
        decoded = loaded.vae.decode(torch.randn(frames, 4, 8, 8, generator=g), num_frames=frames).sample
    assert decoded.shape == (frames, 3, 64, 64) and decoded.abs().max() < 1.5


def test_tiny_model_without_shared_reference(tmp_path: Path) -> None:
    model = random_tiny_model(seed=0, share_reference=False)
    assert model.reference_image_encoder is not model.image_encoder
    loaded, _ = load_relumix(save_single_file(model, tmp_path / "tiny.safetensors"))
    assert loaded.reference_encoder is not loaded.frame_encoder
    assert_bit_identical(model, loaded)


# ------------------------------------------------------------------------------------------------ the report


def test_report_of_official_checkpoint(official_loaded) -> None:
    model, report = official_loaded
    ignored = {key: reason for reason, keys in report.ignored.items() for key in keys}
    assert "conditioner.embedders.0.open_clip.model.ln_final.weight" in ignored  # CLIP text leftovers
    assert "conditioner.embedders.1.open_clip.model.text_projection" in ignored
    assert "conditioner.embedders.3.encoder.decoder.conv_in.weight" in ignored  # embedder decoders
    assert "conditioner.embedders.4.encoder.post_quant_conv.weight" in ignored
    assert not any(k.startswith("model.diffusion_model.") for k in ignored)
    assert report.gates["gated"] == report.gates["attention_modules"] == 44 and not report.gates["ungated"]
    assert report.config.unet.context_dim == 64 and report.config.unet.adm_in_channels == 48
    assert report.config.fps_embed_dim == 16 and report.config.cond_aug_embed_dim == 32
    assert not report.missing and not report.unexpected and not report.absent

    summary = report.summary()
    assert "gates: 44 of 44 attention modules gated" in summary
    assert "UNet config: in 12, channels [32, 64, 64], context 64, vector 48, head width 16" in summary
    assert "reference_image_encoder differs from image_encoder" in summary  # different random weights
    assert "reference_encoder differs from frame_encoder" in summary
    assert "ln_final" in summary and "decoder" in summary
    assert model.reference_image_encoder is not model.image_encoder


def test_unused_official_parts_are_ignored_with_reasons(tmp_path: Path) -> None:
    state = official_state()
    state["conditioner.embedders.0.open_clip.model.transformer.resblocks.0.attn.in_proj_weight"] = torch.zeros(3, 2)
    state["model_ema.decay"] = torch.tensor(0.999)
    state["lpips.net.slice1.0.weight"] = torch.zeros(2, 3, 3, 3)
    _, report = load_relumix(write_state(tmp_path / "extra.pth", state), **TINY_OFFICIAL_OPTIONS)
    summary = report.summary()
    for reason in ("OpenCLIP text tower", "EMA copy of the UNet", "loss network (LPIPS)"):
        assert reason in report.ignored and reason in summary


# ------------------------------------------------------------------------------------------------ quirk Q1


@pytest.mark.slow
def test_checkpoint_without_spatial_gates(tmp_path: Path) -> None:
    state = {k: v for k, v in official_state().items() if not SPATIAL_GATE.search(k)}
    assert len(official_state()) - len(state) == 22 * 3  # 22 spatial attention modules x (gate, weight, bias)
    model, report = load_relumix(write_state(tmp_path / "q1.safetensors", state), **TINY_OFFICIAL_OPTIONS)

    assert report.gates["gated"] == 22 and report.gates["attention_modules"] == 44
    assert report.gates["ungated_kinds"] == "spatial"
    ungated = set(report.gates["ungated"])
    assert len(ungated) == 22 and all(".transformer_blocks." in n for n in ungated)
    summary = report.summary()
    assert "22 of 44 attention modules gated; plain attention in 22 (spatial)" in summary
    assert "quirk Q1" in summary

    for name, module in model.unet.named_modules():
        if isinstance(module, Attention):
            assert isinstance(module.processor, GatedAttnProcessor) == (name not in ungated), name
    assert not any(SPATIAL_GATE.search(k.replace(".processor.", ".")) for k in model.unet.state_dict())

    converted = tmp_path / "q1_converted.safetensors"
    convert_checkpoint(tmp_path / "q1.safetensors", converted, **TINY_OFFICIAL_OPTIONS)
    again, again_report = load_relumix(converted)
    assert set(again_report.gates["ungated"]) == ungated
    assert_bit_identical(model, again)


# ------------------------------------------------------------------------------------------------ duplicates


@pytest.mark.slow
def test_identical_reference_embedders_are_loaded_once(tmp_path: Path) -> None:
    state = official_state()
    copies = {"conditioner.embedders.0.open_clip.": "conditioner.embedders.1.open_clip.",
              "conditioner.embedders.3.encoder.": "conditioner.embedders.4.encoder."}
    for source_prefix, copy_prefix in copies.items():
        for key in [k for k in state if k.startswith(copy_prefix)]:
            del state[key]
        for key in [k for k in state if k.startswith(source_prefix)]:
            state[copy_prefix + key[len(source_prefix):]] = state[key].clone()
    src = write_state(tmp_path / "dup.safetensors", state)
    model, report = load_relumix(src, **TINY_OFFICIAL_OPTIONS)

    assert model.reference_image_encoder is model.image_encoder
    assert model.reference_encoder is model.frame_encoder
    assert report.config.shared == {"reference_image_encoder": "image_encoder", "reference_encoder": "frame_encoder"}
    duplicates = {reason: keys for reason, keys in report.ignored.items() if reason.startswith("duplicate")}
    listed = sorted(k for keys in duplicates.values() for k in keys)
    assert listed == sorted(k for k in state if k.startswith(tuple(copies.values())))
    assert "reference_image_encoder" not in report.loaded and "duplicate embedder copy" in report.summary()
    assert set(model.unique_components()) == {"unet", "vae", "image_encoder", "frame_encoder"}

    dst = tmp_path / "dup_converted.safetensors"
    convert_checkpoint(src, dst, **TINY_OFFICIAL_OPTIONS)
    from safetensors import safe_open

    with safe_open(str(dst), "pt") as handle:
        assert not any(k.startswith("reference_") for k in handle.keys())
    again, _ = load_relumix(dst)
    assert again.reference_image_encoder is again.image_encoder
    assert_bit_identical(model, again)


def test_different_reference_embedder_is_not_deduplicated(tmp_path: Path) -> None:
    """One differing tensor is enough to keep both copies."""
    state = official_state()
    for key in [k for k in state if k.startswith("conditioner.embedders.4.encoder.")]:
        state[key] = state["conditioner.embedders.3.encoder." + key.split(".encoder.", 1)[1]].clone()
    key = "conditioner.embedders.4.encoder.encoder.conv_in.bias"
    state[key] = state[key].clone()
    state[key][0] += 1e-3
    model, report = load_relumix(write_state(tmp_path / "near_dup.safetensors", state), **TINY_OFFICIAL_OPTIONS)
    assert model.reference_encoder is not model.frame_encoder
    assert "reference_encoder differs from frame_encoder" in report.summary()


# ------------------------------------------------------------------------------------------------ one VAE encoder
# SVD-derived checkpoints store the first stage's VAE encoder again in embedder #3 (and #4): loaded once.

QUANT_CONV = ["frame_encoder.quant_conv.bias", "frame_encoder.quant_conv.weight"]
EMBEDDER_4 = "conditioner.embedders.4.encoder."


def _keys(path: Path) -> list[str]:
    with safe_open(str(path), "pt") as handle:
        return list(handle.keys())


def _images() -> torch.Tensor:
    return torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1


def _encoder_size(model: ReLumixModel) -> int:
    return sum(p.numel() for p in model.vae.encoder.parameters())


@pytest.fixture(scope="module")
def vae_copy_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny engine with embedder #3's encoder an exact copy of the first stage's (#4 still differs)."""
    state = with_vae_encoder_copies(official_state())
    return write_state(tmp_path_factory.mktemp("vae_copy") / "engine.safetensors", state)


@pytest.fixture(scope="module")
def chain_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Also embedder #4 = embedder #3, so reference_encoder -> frame_encoder, whose encoder -> vae.encoder."""
    state = copy_tensors(with_vae_encoder_copies(official_state()), "conditioner.embedders.3.encoder.", EMBEDDER_4)
    return write_state(tmp_path_factory.mktemp("chain") / "engine.safetensors", state)


@pytest.fixture(scope="module")
def chain_loaded(chain_file: Path) -> ReLumixModel:
    return load_relumix(chain_file, **TINY_OFFICIAL_OPTIONS)[0]


def _load_without_encoder_sharing(path: Path, monkeypatch: pytest.MonkeyPatch) -> ReLumixModel:
    for name in ("frame_encoder", "reference_encoder"):
        monkeypatch.setitem(COMPONENTS, name, dataclasses.replace(COMPONENTS[name], duplicate_submodules=()))
    model = load_relumix(path, **TINY_OFFICIAL_OPTIONS)[0]
    monkeypatch.undo()
    return model


@pytest.mark.slow
def test_identical_vae_encoder_is_loaded_once(vae_copy_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, report = load_relumix(vae_copy_file, **TINY_OFFICIAL_OPTIONS)
    assert model.frame_encoder.encoder is model.vae.encoder
    assert model.reference_encoder.encoder is not model.vae.encoder  # embedder #4 differs in the fixture
    assert model.config.shared == {"frame_encoder.encoder": "vae.encoder"}
    assert report.loaded["frame_encoder"] == 2  # only quant_conv came from embedder #3
    summary = report.summary()
    assert "frame_encoder.encoder is identical to vae.encoder" in summary
    assert "reference_encoder.encoder differs from vae.encoder" in summary
    duplicates = report.ignored["duplicate encoder copy: frame_encoder.encoder is identical to vae.encoder"]
    state_keys = _keys(vae_copy_file)
    assert sorted(duplicates) == sorted(k for k in state_keys if k.startswith(EMBEDDER_ENCODER[3]))

    plain = _load_without_encoder_sharing(vae_copy_file, monkeypatch)
    assert plain.frame_encoder.encoder is not plain.vae.encoder and not plain.config.shared
    assert model.num_parameters() == plain.num_parameters() - _encoder_size(plain)
    assert_bit_identical(model, plain)
    x = _images()
    with torch.no_grad():
        assert torch.equal(model.frame_encoder(x), plain.frame_encoder(x))
        assert torch.equal(model.vae.encode(x).latent_dist.mean, plain.vae.encode(x).latent_dist.mean)


def test_different_vae_encoders_are_both_loaded(official_loaded, tmp_path: Path) -> None:
    model, report = official_loaded  # the fixtures' encoders are independent random weights
    assert model.frame_encoder.encoder is not model.vae.encoder
    assert "frame_encoder.encoder" not in model.config.shared
    assert "frame_encoder.encoder differs from vae.encoder in this checkpoint, so both copies are loaded" in (
        report.summary()
    )
    state = with_vae_encoder_copies(official_state())
    key = EMBEDDER_ENCODER[3] + "conv_out.bias"
    state[key] = state[key] + 1e-3 * (torch.arange(state[key].numel()) == 0)  # one value of one tensor
    near, near_report = load_relumix(write_state(tmp_path / "near.safetensors", state), **TINY_OFFICIAL_OPTIONS)
    assert near.frame_encoder.encoder is not near.vae.encoder
    assert "frame_encoder.encoder differs from vae.encoder" in near_report.summary()
    assert torch.equal(near.frame_encoder.encoder.conv_out.bias, state[key])


def test_shapes_only_encoders_are_not_claimed_identical() -> None:
    """Key manifests (meta tensors) cannot show equal weights: both copies, and the report says why."""
    state = with_vae_encoder_copies(official_state())
    source = DictSource(Path("manifest"), {k: torch.empty(v.shape, device="meta") for k, v in state.items()})
    model, report = load_official(source, LoadOptions(device="meta", **TINY_OFFICIAL_OPTIONS))
    assert model.frame_encoder.encoder is not model.vae.encoder and not model.config.shared
    assert "frame_encoder.encoder cannot be compared with vae.encoder (shapes only)" in report.summary()


def test_not_requested_first_stage_keeps_the_frame_encoder_whole(vae_copy_file: Path) -> None:
    model, report = load_relumix(vae_copy_file, components=("unet", "frame_encoder"), **TINY_OFFICIAL_OPTIONS)
    assert model.vae is None and not model.config.shared
    assert report.loaded["frame_encoder"] == len(model.frame_encoder.state_dict())


@pytest.mark.slow
@pytest.mark.parametrize("reference", ["whole", "encoder"])
def test_reference_encoder_chains_to_the_vae_encoder(reference: str, chain_file: Path, chain_loaded: ReLumixModel,
                                                     tmp_path: Path) -> None:
    if reference == "whole":  # reference_encoder -> frame_encoder, frame_encoder.encoder -> vae.encoder
        model = chain_loaded
        assert model.reference_encoder is model.frame_encoder
        assert model.config.shared == {"frame_encoder.encoder": "vae.encoder", "reference_encoder": "frame_encoder"}
    else:  # embedder #4: the same encoder, its own quant_conv
        state = with_vae_encoder_copies(official_state(), embedders=(3, 4))
        model, _ = load_relumix(write_state(tmp_path / "e.safetensors", state), **TINY_OFFICIAL_OPTIONS)
        assert model.reference_encoder is not model.frame_encoder
        links = {"frame_encoder.encoder": "vae.encoder", "reference_encoder.encoder": "vae.encoder"}
        assert model.config.shared == links
    assert model.reference_encoder.encoder is model.frame_encoder.encoder is model.vae.encoder
    path = save_single_file(model, tmp_path / "chain.safetensors")
    keys = _keys(path)
    assert not any(k.startswith(("frame_encoder.encoder.", "reference_encoder.encoder.")) for k in keys)
    loaded, _ = load_relumix(path)
    assert loaded.reference_encoder.encoder is loaded.frame_encoder.encoder is loaded.vae.encoder
    assert loaded.config.shared == model.config.shared
    assert_bit_identical(model, loaded)


@pytest.mark.parametrize("target", ["file", "folder"])
def test_shared_vae_encoder_is_stored_once(target: str, chain_loaded: ReLumixModel, tmp_path: Path) -> None:
    model = chain_loaded
    encoder_tensors = len(model.vae.encoder.state_dict())
    if target == "file":
        path = save_single_file(model, tmp_path / "shared.safetensors")
        keys = _keys(path)
        assert sum(k.startswith("vae.encoder.") for k in keys) == encoder_tensors
        assert sorted(k for k in keys if k.startswith("frame_encoder.")) == QUANT_CONV
        assert not any(k.startswith("reference_encoder.") for k in keys)
    else:
        path = save_folder(model, tmp_path / "shared_folder")
        assert sorted(p.name for p in path.iterdir() if p.is_dir()) == ["frame_encoder", "image_encoder",
                                                                          "reference_image_encoder", "unet", "vae"]
        frame_keys = _keys(path / "frame_encoder" / single_file.FOLDER_WEIGHTS)
        assert sorted(f"frame_encoder.{k}" for k in frame_keys) == QUANT_CONV
        vae_keys = _keys(path / "vae" / single_file.FOLDER_WEIGHTS)
        assert sum(k.startswith("encoder.") for k in vae_keys) == encoder_tensors
        keys = [k for sub in path.iterdir() if sub.is_dir() for k in _keys(sub / single_file.FOLDER_WEIGHTS)]
    assert len(keys) == sum(len(model.owned_state_dict(name)) for name in model.unique_components())
    loaded, _ = load_relumix(path)
    assert loaded.frame_encoder.encoder is loaded.vae.encoder and loaded.reference_encoder is loaded.frame_encoder
    assert loaded.config.to_json() == model.config.to_json()
    assert loaded.num_parameters() == model.num_parameters()
    assert_bit_identical(model, loaded)
    back = convert_checkpoint(path, tmp_path / "back.safetensors")  # and across formats
    assert back.config.shared == model.config.shared
    assert sum(k.startswith(("frame_encoder.encoder.", "vae.encoder.")) for k in _keys(tmp_path / "back.safetensors")) \
        == encoder_tensors


@pytest.mark.slow
def test_linked_encoder_loading_is_still_strict(chain_loaded: ReLumixModel, tmp_path: Path) -> None:
    path = save_single_file(chain_loaded, tmp_path / "shared.safetensors")
    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata()
    tensors = load_file(str(path))

    def variant(name: str, change: dict[str, torch.Tensor | None]) -> Path:
        state = {k: v for k, v in ({**tensors, **change}).items() if v is not None}
        save_file(state, str(tmp_path / name), metadata=metadata)
        return tmp_path / name

    cases = {
        "no_vae_encoder_tensor.safetensors": ({"vae.encoder.conv_in.weight": None}, r"\[vae\].*1 missing"),
        "no_quant_conv.safetensors": ({"frame_encoder.quant_conv.bias": None}, r"\[frame_encoder\].*1 missing"),
        "second_copy.safetensors": (
            {"frame_encoder.encoder.conv_in.weight": tensors["vae.encoder.conv_in.weight"].clone()},
            r"\[frame_encoder\].*1 unexpected",
        ),
    }
    for name, (change, words) in cases.items():
        with pytest.raises(CheckpointError, match=words):
            load_relumix(variant(name, change))

    # Without the first stage, the frame encoder takes the stored encoder tensors as its own.
    partial, report = load_relumix(path, components=("unet", "frame_encoder"))
    assert partial.vae is None and partial.reference_encoder is partial.frame_encoder
    assert partial.config.shared == {"reference_encoder": "frame_encoder"} and "vae" not in partial.config.components
    assert "frame_encoder.encoder loaded from vae.encoder's weights" in report.summary()
    x = _images()
    with torch.no_grad():
        assert torch.equal(partial.frame_encoder(x), chain_loaded.frame_encoder(x))
    again, _ = load_relumix(save_single_file(partial, tmp_path / "partial.safetensors"))
    assert_bit_identical(partial, again)
    with pytest.raises(CheckpointError, match="vae"):
        load_relumix(variant("no_vae_encoder_at_all.safetensors",
                             {k: None for k in tensors if k.startswith("vae.encoder.")}),
                     components=("unet", "frame_encoder"))


BAD_LINKS = {
    "cycle": {"frame_encoder.encoder": "reference_encoder.encoder",
              "reference_encoder.encoder": "frame_encoder.encoder"},
    "unknown_component": {"frame_encoder.encoder": "decoder_stage.encoder"},
    "inside_a_link": {"reference_encoder": "frame_encoder", "reference_encoder.encoder": "vae.encoder"},
    "into_itself": {"vae.encoder": "vae"},
}


@pytest.mark.parametrize("kind", sorted(BAD_LINKS))
def test_bad_shared_links_are_refused(kind: str, tiny_file: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        ReLumixConfig(shared=BAD_LINKS[kind]).link_order()
    with safe_open(str(tiny_file), "pt") as handle:
        metadata = handle.metadata()
    data = json.loads(metadata["config"])
    data["shared"] = BAD_LINKS[kind]
    bad = {**metadata, "config": json.dumps(data)}
    save_file(load_file(str(tiny_file)), str(tmp_path / "bad.safetensors"), metadata=bad)
    with pytest.raises(CheckpointError, match="config in the file is invalid"):
        load_relumix(tmp_path / "bad.safetensors")


def test_shared_link_paths() -> None:
    chain = ReLumixConfig(shared={"reference_encoder": "frame_encoder", "frame_encoder.encoder": "vae.encoder"})
    assert chain.owner("reference_encoder.encoder.conv_in") == "vae.encoder.conv_in"
    assert chain.linked_submodules("frame_encoder") == ("encoder",) and chain.linked_submodules("vae") == ()


def test_svd_init_shares_an_identical_first_stage_encoder(tmp_path: Path) -> None:
    state = stock_svd_state(with_vae_encoder_copies(official_state()))
    model, report = init_from_sgm_state(DictSource(tmp_path / "svd", state), **TINY_OFFICIAL_OPTIONS)
    assert model.frame_encoder.encoder is model.vae.encoder and model.reference_encoder is model.frame_encoder
    assert model.config.shared == {"frame_encoder.encoder": "vae.encoder", "reference_encoder": "frame_encoder",
                                   "reference_image_encoder": "image_encoder"}
    assert "frame_encoder.encoder is identical to vae.encoder" in report.summary()
    assert not any(p.requires_grad for p in model.frame_encoder.parameters())
    loaded, _ = load_relumix(save_single_file(model, tmp_path / "init.safetensors"))
    assert loaded.frame_encoder.encoder is loaded.vae.encoder
    assert_bit_identical(model, loaded)

    different = stock_svd_state(official_state())
    model, report = init_from_sgm_state(DictSource(tmp_path / "svd2", different), **TINY_OFFICIAL_OPTIONS)
    assert model.frame_encoder.encoder is not model.vae.encoder and "frame_encoder.encoder" not in model.config.shared
    assert "frame_encoder.encoder differs from vae.encoder" in report.summary()


# ------------------------------------------------------------------------------------------------ trained_frames


@pytest.mark.slow
def test_trained_frames(official_loaded, tmp_path: Path) -> None:
    assert official_loaded[0].config.trained_frames == 14
    assert json.loads(official_loaded[0].config.to_json())["trained_frames"] == 14
    tiny = random_tiny_model(0)
    assert tiny.config.trained_frames == 8
    path = save_single_file(tiny, tmp_path / "tiny.safetensors")
    assert load_relumix(path)[0].config.trained_frames == 8
    assert load_relumix(path, trained_frames=16)[0].config.trained_frames == 16

    old = json.loads(tiny.config.to_json())  # written before the field existed
    del old["trained_frames"]
    assert ReLumixConfig.from_json(json.dumps(old)).trained_frames == 14
    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata()
    save_file(load_file(str(path)), str(tmp_path / "old.safetensors"), metadata={**metadata, "config": json.dumps(old)})
    assert load_relumix(tmp_path / "old.safetensors")[0].config.trained_frames == 14
    old["trained_frames"] = 0
    with pytest.raises(ValueError, match="trained_frames"):
        ReLumixConfig.from_json(json.dumps(old))
    with pytest.raises(ValueError, match="trained_frames"):
        load_relumix(path, trained_frames=0)


def test_trained_frames_override_for_the_official_layout(official_file: Path) -> None:
    model, _ = load_relumix(official_file, trained_frames=25, device="meta", **TINY_OFFICIAL_OPTIONS)
    assert model.config.trained_frames == 25


# ------------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize("kind", sorted(BAD_CHECKPOINTS))
def test_bad_checkpoint_is_refused_clearly(kind: str, tmp_path: Path) -> None:
    path, words = BAD_CHECKPOINTS[kind](tmp_path)
    with pytest.raises(CheckpointError, match=re.escape(words)) as caught:
        load_relumix(path, **TINY_OFFICIAL_OPTIONS)
    message = str(caught.value)
    assert str(path.name) in message or kind == "missing" and "relumix.pth" in message
    assert not any((tmp_path / m).exists() for m in MARKERS), "unpickling ran the payload"


def test_malicious_payload_is_real_but_never_runs(tmp_path: Path) -> None:
    """The crafted file does run code under an unrestricted torch.load, which the loader never uses."""
    armed = tmp_path / "armed.pth"
    torch.save(malicious_state(tmp_path / "proof"), armed)
    torch.load(armed, weights_only=False)
    assert (tmp_path / "proof").exists()

    marker = tmp_path / "pwned_X"
    evil = tmp_path / "relumix.pth"
    torch.save(malicious_state(marker), evil)
    with pytest.raises(CheckpointError, match="refusing to load .*pickled Python objects"):
        load_relumix(evil)
    with pytest.raises(CheckpointError, match="refusing"):
        convert_checkpoint(evil, tmp_path / "out.safetensors")
    assert not marker.exists()
    assert not (tmp_path / "out.safetensors").exists()


def test_single_file_with_foreign_tensors_is_refused(tmp_path: Path) -> None:
    path = save_single_file(random_tiny_model(0), tmp_path / "tiny.safetensors")
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata()
    tensors["stowaway.weight"] = torch.zeros(2)
    from safetensors.torch import save_file

    save_file(tensors, str(tmp_path / "extra.safetensors"), metadata=metadata)
    with pytest.raises(CheckpointError, match="unexpected tensors"):
        load_relumix(tmp_path / "extra.safetensors")
    metadata["config"] = "{not json"
    save_file(load_file(str(path)), str(tmp_path / "badconfig.safetensors"), metadata=metadata)
    with pytest.raises(CheckpointError, match="config in the file is invalid"):
        load_relumix(tmp_path / "badconfig.safetensors")


# ------------------------------------------------------------------------------------------------ safe writes


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_single_file(random_tiny_model(0), tmp_path_factory.mktemp("src") / "tiny.safetensors")


def _failing_save_file(monkeypatch: pytest.MonkeyPatch, fail_on_call: int) -> None:
    """Make the n-th safetensors write die half-way, as a full disk would."""
    real = single_file.save_file
    calls = {"n": 0}

    def save_file(tensors: dict[str, torch.Tensor], filename: str, metadata: dict[str, str] | None = None) -> None:
        calls["n"] += 1
        if calls["n"] == fail_on_call:
            Path(filename).write_bytes(b"\0" * 1000)
            raise OSError(28, "No space left on device")
        real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(single_file, "save_file", save_file)


@pytest.mark.parametrize("target", ["file", "folder"])
def test_failed_conversion_leaves_nothing(target: str, tiny_file: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    out.mkdir()
    dst = str(out / "converted.safetensors") if target == "file" else f"{out / 'converted_folder'}/"
    _failing_save_file(monkeypatch, fail_on_call=1 if target == "file" else 3)  # folder: after two components
    with pytest.raises(OSError, match="No space left"):
        convert_checkpoint(tiny_file, dst)
    assert list(out.iterdir()) == []  # no destination, no .partial leftovers


def test_failed_load_leaves_nothing(tmp_path: Path) -> None:
    path, _ = BAD_CHECKPOINTS["truncated_safetensors"](tmp_path)
    with pytest.raises(CheckpointError):
        convert_checkpoint(path, tmp_path / "out" / "converted.safetensors")
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


@pytest.mark.slow
def test_existing_destination_is_kept(tiny_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dst = tmp_path / "existing.safetensors"
    dst.write_bytes(b"precious")
    import relumix_core.checkpoints.loading as loading

    real_load = loading.load_relumix

    def must_not_load(*args: object, **kwargs: object) -> tuple[ReLumixModel, object]:
        raise AssertionError("the checkpoint was loaded before the destination was checked")

    monkeypatch.setattr(loading, "load_relumix", must_not_load)
    with pytest.raises(FileExistsError, match="already exists"):
        convert_checkpoint(tiny_file, dst)
    assert dst.read_bytes() == b"precious"
    folder = tmp_path / "existing_folder"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        convert_checkpoint(tiny_file, f"{folder}/")
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]

    monkeypatch.setattr(loading, "load_relumix", real_load)
    convert_checkpoint(tiny_file, dst, overwrite=True)
    reference = load_relumix(dst)[0]
    assert_bit_identical(random_tiny_model(0), reference)
    convert_checkpoint(dst, folder, overwrite=True)  # an existing folder: other files stay
    assert (folder / "notes.txt").read_text() == "mine"
    assert_bit_identical(reference, load_relumix(folder)[0])
    assert not _no_partials(tmp_path)
