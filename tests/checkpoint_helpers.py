"""Checkpoint files for the loading and CLI tests: the official tiny engine, its variants, and broken files.

The official-layout checkpoint is the union of the fixtures' weight tensors (``unet_tiny``, ``vae_tiny``,
``clip_tiny``), which is the complete tiny engine in official names.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import pytest
import torch
from conftest import OFFICIAL_FIXTURES
from safetensors.torch import save_file

from relumix_core.models.relumix import ReLumixModel

#: Head widths of the tiny official engine (not stored in official checkpoints).
TINY_OFFICIAL_OPTIONS = {"num_head_channels": 16, "clip_head_width": 16}
WEIGHT_PREFIXES = ("model.diffusion_model.", "first_stage_model.", "conditioner.embedders.")
FIXTURE_FILES = ("unet_tiny", "vae_tiny", "clip_tiny")
#: Spatial gates (quirk Q1): the official code without xformers has no gates in ``transformer_blocks``.
SPATIAL_GATE = re.compile(r"\.transformer_blocks\.\d+\.attn[12]\.gate")


def need_official() -> Path:
    if not OFFICIAL_FIXTURES.is_dir():
        pytest.skip(f"official fixtures not found at {OFFICIAL_FIXTURES}: official-layout tests need them")
    return OFFICIAL_FIXTURES


@lru_cache(maxsize=1)
def _official_state() -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    state: dict[str, torch.Tensor] = {}
    for name in FIXTURE_FILES:
        tensors = load_file(str(OFFICIAL_FIXTURES / f"{name}.safetensors"))
        state.update({k: v for k, v in tensors.items() if k.startswith(WEIGHT_PREFIXES)})
    return state


def official_state() -> dict[str, torch.Tensor]:
    """A fresh dict (shared tensors: do not modify them in place) of the whole tiny official engine."""
    need_official()
    return dict(_official_state())


#: sgm prefixes of the VAE encoders: the first stage's and those of the conditioning embedders #3 and #4.
FIRST_STAGE_ENCODER = "first_stage_model.encoder."
EMBEDDER_ENCODER = {3: "conditioner.embedders.3.encoder.encoder.", 4: "conditioner.embedders.4.encoder.encoder."}


def copy_tensors(state: dict[str, torch.Tensor], src_prefix: str, dst_prefix: str) -> dict[str, torch.Tensor]:
    """Make everything under ``dst_prefix`` a copy (clone) of what is under ``src_prefix``; in place, returned."""
    for key in [k for k in state if k.startswith(dst_prefix)]:
        del state[key]
    for key in [k for k in state if k.startswith(src_prefix)]:
        state[dst_prefix + key[len(src_prefix) :]] = state[key].clone()
    return state


def with_vae_encoder_copies(
    state: dict[str, torch.Tensor], embedders: tuple[int, ...] = (3,)
) -> dict[str, torch.Tensor]:
    """The embedders' VAE encoders made exact copies of the first stage's, as in SVD-derived checkpoints."""
    for index in embedders:
        copy_tensors(state, FIRST_STAGE_ENCODER, EMBEDDER_ENCODER[index])
    return state


def stock_svd_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Stock SVD img2vid in sgm names, made from the tiny official engine: no gates, 8 input channels, half the
    cross-attention context, no reference embedders (#1, #4)."""
    reference_embedders = ("conditioner.embedders.1.", "conditioner.embedders.4.")
    out = {}
    for key, tensor in state.items():
        if re.search(r"\.attn[12]\.gate", key) or key.startswith(reference_embedders):
            continue
        if key == "model.diffusion_model.input_blocks.0.0.weight":
            tensor = tensor[:, :8]
        elif re.search(r"\.attn2\.to_[kv]\.weight$", key):
            tensor = tensor[:, : tensor.shape[1] // 2]
        out[key] = tensor.clone()
    return out


def write_state(path: Path, state: dict[str, torch.Tensor]) -> Path:
    """``.safetensors`` via safetensors, anything else via ``torch.save`` (as the official .pth is)."""
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return path


def assert_bit_identical(a: ReLumixModel, b: ReLumixModel, cast: torch.dtype | None = None) -> int:
    """Every tensor of every component equal in dtype and bits (after casting ``a``'s floats to ``cast``)."""
    comps_a, comps_b = a.unique_components(), b.unique_components()
    assert sorted(comps_a) == sorted(comps_b)
    count = 0
    for name in comps_a:
        sa, sb = comps_a[name].state_dict(), comps_b[name].state_dict()
        assert sorted(sa) == sorted(sb), name
        for key, ta in sa.items():
            tb = sb[key]
            if cast is not None and ta.is_floating_point():
                ta = ta.to(cast)
            assert ta.dtype == tb.dtype, (name, key, ta.dtype, tb.dtype)
            assert ta.shape == tb.shape, (name, key)
            bits_a = ta.detach().contiguous().reshape(-1).view(torch.uint8)
            bits_b = tb.detach().contiguous().reshape(-1).view(torch.uint8)
            assert torch.equal(bits_a, bits_b), f"{name}.{key} differs"
            count += 1
    return count


class MarkerPayload:
    """Unpickling this runs a shell command that creates ``marker``: what a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., object], tuple[str]]:
        return os.system, (f"touch '{self.marker}'",)


def malicious_state(marker: Path) -> dict[str, object]:
    return {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(2, 12, 3, 3), "payload": MarkerPayload(marker)}


# ------------------------------------------------------------------------------------------- bad checkpoints
# Each builder writes a broken file under the given folder and returns (path, words the error must contain).


def bad_missing(tmp: Path) -> tuple[Path, str]:
    return tmp / "nowhere" / "relumix.pth", "not found"


def bad_empty_safetensors(tmp: Path) -> tuple[Path, str]:
    path = tmp / "empty.safetensors"
    path.write_bytes(b"")
    return path, "empty"


def bad_empty_pth(tmp: Path) -> tuple[Path, str]:
    path = tmp / "empty.pth"
    path.write_bytes(b"")
    return path, "empty"


def _small_unet_state() -> dict[str, torch.Tensor]:
    return {
        "model.diffusion_model.input_blocks.0.0.weight": torch.randn(8, 12, 3, 3),
        "first_stage_model.x": torch.ones(4),
    }


def bad_truncated_safetensors(tmp: Path) -> tuple[Path, str]:
    path = write_state(tmp / "truncated.safetensors", _small_unet_state())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path, "truncated or corrupt"


def bad_truncated_pth(tmp: Path) -> tuple[Path, str]:
    path = write_state(tmp / "truncated.pth", _small_unet_state())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path, "truncated or corrupt"


def bad_garbage_safetensors(tmp: Path) -> tuple[Path, str]:
    path = tmp / "garbage.safetensors"
    path.write_bytes(b"<html>404 Not Found</html>" * 10)
    return path, "not a readable safetensors"


def bad_random_tensors(tmp: Path) -> tuple[Path, str]:
    return write_state(tmp / "random.pth", {"foo": torch.randn(3)}), "no UNet"


def bad_sd15_unet(tmp: Path) -> tuple[Path, str]:
    """An image UNet (Stable Diffusion 1.5-like names and shapes, no ``time_stack``)."""
    state = {
        "model.diffusion_model.input_blocks.0.0.weight": torch.randn(320, 4, 3, 3),
        "model.diffusion_model.input_blocks.0.0.bias": torch.randn(320),
        "model.diffusion_model.time_embed.0.weight": torch.randn(1280, 320),
        "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": torch.randn(320, 768),
        "model.diffusion_model.out.2.weight": torch.randn(4, 320, 3, 3),
    }
    return write_state(tmp / "sd15.safetensors", state), "image (2-D) UNet"


def bad_stock_svd(tmp: Path) -> tuple[Path, str]:
    """Stock SVD img2vid: the tiny engine with 8 input channels and no gates."""
    state = {k: v for k, v in official_state().items() if not re.search(r"\.attn[12]\.gate", k)}
    key = "model.diffusion_model.input_blocks.0.0.weight"
    state[key] = state[key][:, :8].clone()
    return write_state(tmp / "svd.safetensors", state), "8 input channels"


def bad_folder_without_index(tmp: Path) -> tuple[Path, str]:
    path = tmp / "some_folder"
    path.mkdir()
    (path / "readme.txt").write_text("not a model")
    return path, "model_index.json"


def bad_malicious_pth(tmp: Path) -> tuple[Path, str]:
    path = tmp / "evil.pth"
    torch.save(malicious_state(tmp / "pwned_zip"), path)
    return path, "refusing"


def bad_malicious_legacy_pth(tmp: Path) -> tuple[Path, str]:
    path = tmp / "evil_legacy.pth"
    torch.save(malicious_state(tmp / "pwned_legacy"), path, _use_new_zipfile_serialization=False)
    return path, "refusing"


def bad_malicious_plain_pickle(tmp: Path) -> tuple[Path, str]:
    path = tmp / "evil_plain.ckpt"
    path.write_bytes(pickle.dumps(malicious_state(tmp / "pwned_plain"), protocol=2))
    return path, "refusing"


BAD_CHECKPOINTS: dict[str, Callable[[Path], tuple[Path, str]]] = {
    "missing": bad_missing,
    "empty_safetensors": bad_empty_safetensors,
    "empty_pth": bad_empty_pth,
    "truncated_safetensors": bad_truncated_safetensors,
    "truncated_pth": bad_truncated_pth,
    "garbage_safetensors": bad_garbage_safetensors,
    "random_tensors": bad_random_tensors,
    "sd15_image_unet": bad_sd15_unet,
    "stock_svd": bad_stock_svd,
    "folder_without_index": bad_folder_without_index,
    "malicious_pth": bad_malicious_pth,
    "malicious_legacy_pth": bad_malicious_legacy_pth,
    "malicious_plain_pickle": bad_malicious_plain_pickle,
}
MARKERS = ("pwned_zip", "pwned_legacy", "pwned_plain")
