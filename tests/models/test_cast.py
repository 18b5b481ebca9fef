"""Cast-at-use layers and fp8 weight storage: identical results when nothing needs casting, working layers when
weights sit in another dtype or device, and relumix-tiny relighting with its UNet weights in fp8."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
from diffusers.models.attention_processor import Attention
from diffusers.models.resnet import AlphaBlender
from torch import nn

from relumix_core.checkpoints import bundled
from relumix_core.checkpoints.loading import load_relumix
from relumix_core.errors import ReLumixError
from relumix_core.models import precision
from relumix_core.models.cast import (
    LIBRARY_CASTS,
    STORABLE_LAYERS,
    store_weights,
    swap_layer_classes,
)
from relumix_core.models.gated_attention import GatedAttnProcessor
from relumix_core.models.precision import compute_dtype, fp8_dtype, resolve_precision
from relumix_core.models.tiny import random_tiny_model
from relumix_core.pipeline.pipeline import ReLumixPipeline
from relumix_core.pipeline.settings import RelightSettings

WEIGHTS = bundled.BUNDLED_DIR / bundled.TINY_FILE
needs_tiny = pytest.mark.skipif(not WEIGHTS.is_file(), reason=f"the relumix-tiny weights are missing ({WEIGHTS})")
FP8 = (torch.float8_e4m3fn, torch.float8_e5m2)

#: (plain layer factory, input shape): every library class the UNet uses, with padding and groups that matter.
LAYERS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "linear": (lambda: nn.Linear(6, 5), (3, 4, 6)),
    "linear_no_bias": (lambda: nn.Linear(6, 5, bias=False), (3, 6)),
    "conv2d": (lambda: nn.Conv2d(4, 6, 3, padding=1, stride=2), (2, 4, 9, 7)),
    "conv2d_reflect": (lambda: nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"), (1, 4, 6, 6)),
    "conv3d": (lambda: nn.Conv3d(4, 6, (3, 1, 1), padding=(1, 0, 0)), (2, 4, 5, 3, 3)),
    "group_norm": (lambda: nn.GroupNorm(2, 6, eps=1e-5), (2, 6, 4, 4)),
    "layer_norm": (lambda: nn.LayerNorm(6, eps=1e-6), (3, 4, 6)),
    "layer_norm_plain": (lambda: nn.LayerNorm(6, elementwise_affine=False), (3, 6)),
}


def _randomised(factory: Callable[[], nn.Module], seed: int = 0) -> nn.Module:
    """A layer with random affine parameters (norms start at ones/zeros, which would hide a dropped weight)."""
    torch.manual_seed(seed)
    layer = factory()
    with torch.no_grad():
        for param in layer.parameters():
            param.normal_()
    return layer


def _swapped(layer: nn.Module) -> nn.Module:
    cast = copy.deepcopy(layer)
    assert swap_layer_classes(cast, LIBRARY_CASTS) == 1
    return cast


@pytest.mark.parametrize("name", list(LAYERS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cast_layers_equal_the_plain_ones_bit_for_bit(name: str, dtype: torch.dtype) -> None:
    factory, shape = LAYERS[name]
    plain = _randomised(factory).to(dtype)
    cast = _swapped(plain)
    assert type(cast) is LIBRARY_CASTS[type(plain)]
    x = torch.randn(shape).to(dtype)
    with torch.no_grad():
        assert torch.equal(cast(x), plain(x))


@pytest.mark.parametrize("name", list(LAYERS))
@pytest.mark.parametrize("stored", [torch.float16, *FP8])
def test_a_layer_whose_weights_have_another_dtype_computes_in_the_inputs(name: str, stored: torch.dtype) -> None:
    factory, shape = LAYERS[name]
    cast = _swapped(_randomised(factory))
    for param in cast.parameters():
        param.data = param.data.to(stored)
    upcast = _randomised(factory)  # a plain fp32 layer holding the stored values
    upcast.load_state_dict({k: v.float() for k, v in cast.state_dict().items()})
    x = torch.randn(shape)
    with torch.no_grad():
        out = cast(x)
        assert out.dtype == torch.float32 and torch.equal(out, upcast(x))


# meta convolutions accept CPU weights, so only these layers show the difference (conv uses the same cast)
@pytest.mark.parametrize("name", ["linear", "group_norm", "layer_norm"])
def test_the_weights_follow_the_inputs_device(name: str) -> None:
    factory, shape = LAYERS[name]
    layer = _randomised(factory)
    x = torch.randn(shape, device="meta")  # the only second device on a CPU-only machine
    with pytest.raises(RuntimeError):
        layer(x)
    assert _swapped(layer)(x).device.type == "meta"


def _blend_inputs(ndims: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    shape = (2, 3, 4, 2, 2) if ndims == 5 else (8, 5, 3)
    indicator = torch.tensor([[0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 1.0]])
    return torch.randn(shape).to(dtype), torch.randn(shape).to(dtype), indicator.to(dtype)


@pytest.mark.parametrize("strategy", ["learned_with_images", "learned", "fixed"])
@pytest.mark.parametrize("ndims", [5, 3])
@pytest.mark.parametrize("switch", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_cast_alpha_blender_equals_diffusers_bit_for_bit(strategy: str, ndims: int, switch: bool,
                                                         dtype: torch.dtype) -> None:
    plain = AlphaBlender(0.3, merge_strategy=strategy, switch_spatial_to_temporal_mix=switch).to(dtype)
    with torch.no_grad():
        plain.mix_factor.fill_(0.8)
    cast = _swapped(plain)
    spatial, temporal, indicator = _blend_inputs(ndims, dtype)
    with torch.no_grad():
        assert torch.equal(cast(spatial, temporal, indicator), plain(spatial, temporal, indicator))
        assert torch.equal(cast.get_alpha(indicator, ndims), plain.get_alpha(indicator, ndims))


def test_cast_alpha_blender_casts_its_mix_factor_where_it_is_used() -> None:
    plain = AlphaBlender(0.3)
    cast = _swapped(plain)  # mix_factor stays fp32 while the activations are fp16
    spatial, temporal, indicator = _blend_inputs(5, torch.float16)
    expected = plain.half()(spatial, temporal, indicator)
    assert torch.equal(cast(spatial, temporal, indicator), expected)
    meta = [t.to("meta") for t in (spatial, temporal, indicator)]
    assert cast(*meta).device.type == "meta"  # and its device
    with pytest.raises((RuntimeError, NotImplementedError)):
        AlphaBlender(0.3)(*meta)


def test_the_gate_is_cast_where_it_is_used() -> None:
    attn = Attention(8, heads=2, dim_head=4)
    attn.set_processor(GatedAttnProcessor(8, gate_init=0.7))
    x = torch.randn(2, 5, 8)
    with torch.no_grad():
        reference = attn(x)
        swap_layer_classes(attn, LIBRARY_CASTS)
        for name, param in attn.named_parameters():
            if not name.endswith("processor.gate"):  # the gate stays fp32, everything else is fp16
                param.data = param.data.half()
        out = attn(x.half())
    assert out.dtype == torch.float16
    assert (out.float() - reference).abs().max() < 2e-2


def test_swapping_keeps_the_state_dict_and_only_swaps_exact_types() -> None:
    unet = random_tiny_model(0).component("unet")
    before = {k: v.clone() for k, v in unet.state_dict().items()}

    class OwnLinear(nn.Linear):
        pass

    unet.extra = OwnLinear(2, 2)  # a subclass with its own forward must be left alone
    count = swap_layer_classes(unet, LIBRARY_CASTS)
    assert count == sum(1 for m in unet.modules() if type(m) in LIBRARY_CASTS.values())
    assert count > 0 and not any(type(m) in LIBRARY_CASTS for m in unet.modules())
    assert type(unet.extra) is OwnLinear
    del unet.extra
    after = unet.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert swap_layer_classes(unet, LIBRARY_CASTS) == 0  # nothing left to swap


def test_the_swapped_unet_computes_the_same_bits() -> None:
    model = random_tiny_model(0)
    unet = model.component("unet")
    cfg = unet.relumix_config
    torch.manual_seed(0)
    rows = 4
    inputs = (torch.randn(rows, cfg.in_channels, 8, 8), torch.full((rows,), 0.3),
              torch.randn(rows, 1, cfg.context_dim), torch.randn(rows, cfg.adm_in_channels))
    with torch.no_grad():
        plain = unet(*inputs, num_frames=rows)
        swap_layer_classes(unet, LIBRARY_CASTS)
        assert torch.equal(unet(*inputs, num_frames=rows), plain)


def test_store_weights_keeps_only_linear_and_conv_weights_in_fp8() -> None:
    unet = random_tiny_model(0).component("unet")
    swap_layer_classes(unet, LIBRARY_CASTS)
    unet.plain = nn.Linear(3, 3)  # not swapped: it could not upcast fp8 weights, so they must stay
    bytes_before = sum(p.numel() * p.element_size() for p in unet.parameters())
    saved = store_weights(unet, torch.float8_e4m3fn)
    assert saved == bytes_before - sum(p.numel() * p.element_size() for p in unet.parameters()) > 0
    kinds = set()
    for module in unet.modules():
        for name, param in module.named_parameters(recurse=False):
            stored = isinstance(module, STORABLE_LAYERS)
            assert (param.dtype == torch.float8_e4m3fn) == stored, (type(module).__name__, name)
            kinds.add((type(module).__name__, name, stored))
    # norms, gates and mix factors were all there, and kept the compute dtype
    assert {("CastGroupNorm", "weight", False), ("CastLayerNorm", "bias", False), ("GatedAttnProcessor", "gate", False),
            ("CastAlphaBlender", "mix_factor", False), ("CastConv3d", "weight", True), ("Linear", "weight", False)
            } <= kinds
    assert compute_dtype(unet) == torch.float32
    assert store_weights(unet, torch.float8_e4m3fn) == 0  # already stored
    with pytest.raises(ValueError, match="floating"):
        store_weights(unet, torch.int8)


# ---------------------------------------------------------------------------------------------- relumix-tiny


@needs_tiny
@pytest.mark.parametrize("stored", FP8)
def test_loading_with_fp8_weights_stores_the_unet_only(stored: torch.dtype) -> None:
    model, report = load_relumix("relumix-tiny", dtype=torch.float16, weight_dtype=stored)
    reference, _ = load_relumix("relumix-tiny", dtype=torch.float16)
    assert model.dtype == torch.float16  # the compute dtype, though the UNet's first parameter is fp8
    unet = model.component("unet")
    assert unet.conv_in.weight.dtype == stored
    assert list(unet.state_dict()) == list(reference.component("unet").state_dict())
    for name, param in unet.named_parameters():
        linear_or_conv = isinstance(unet.get_submodule(name.rpartition(".")[0]), (nn.Linear, nn.Conv2d, nn.Conv3d))
        assert (param.dtype == stored) == linear_or_conv, name
    for name in ("vae", "image_encoder", "frame_encoder"):
        assert {p.dtype for p in model.component(name).parameters()} == {torch.float16}, name
    assert any(precision.dtype_name(stored) in note for note in report.notes)


@needs_tiny
@pytest.mark.slow
def test_fp8_storage_relights_close_to_full_precision() -> None:
    torch.manual_seed(0)
    video, reference = torch.rand(4, 32, 32, 3), torch.rand(32, 32, 3)
    settings = RelightSettings(num_steps=2, size=32)
    outputs = {}
    for label, stored in (("fp32", None), ("fp8", torch.float8_e4m3fn)):
        model, _ = load_relumix("relumix-tiny", weight_dtype=stored)
        outputs[label] = ReLumixPipeline(model, device="cpu").relight(video, reference, 0, settings, seed=0,
                                                                      output_type="pt")
    error = (outputs["fp8"] - outputs["fp32"]).abs()
    assert torch.isfinite(outputs["fp8"]).all()
    assert 0 < error.mean() < 0.02 and error.max() < 0.2  # fp8 rounding shows, but the picture is the same


@needs_tiny
def test_fp8_weights_compute_in_fp16() -> None:
    chosen = resolve_precision("fp8_e4m3fn")
    model, _ = load_relumix("relumix-tiny", dtype=chosen.compute, weight_dtype=chosen.unet_weights)
    full, _ = load_relumix("relumix-tiny")
    unet, cfg = model.component("unet"), model.component("unet").relumix_config
    torch.manual_seed(0)
    rows = 2
    inputs = (torch.randn(rows, cfg.in_channels, 8, 8), torch.full((rows,), 0.3),
              torch.randn(rows, 1, cfg.context_dim), torch.randn(rows, cfg.adm_in_channels))
    with torch.no_grad():
        out = unet(*(t.half() for t in inputs), num_frames=rows)
        expected = full.component("unet")(*inputs, num_frames=rows)
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
    error = (out.float() - expected).abs()
    assert 0 < error.mean() < 0.05 * expected.abs().mean()


# ---------------------------------------------------------------------------------------------- precision names


def test_precision_names() -> None:
    assert precision.PRECISION_CHOICES == ("fp16", "bf16", "fp32", "fp8_e4m3fn", "fp8_e5m2")
    assert resolve_precision("fp8_e5m2") == precision.Precision(torch.float16, torch.float8_e5m2)
    assert resolve_precision("fp8_e4m3fn", "bf16") == precision.Precision(torch.bfloat16, torch.float8_e4m3fn)
    assert resolve_precision("bf16") == precision.Precision(torch.bfloat16)
    assert resolve_precision("fp8_e4m3fn").name == "fp8_e4m3fn (computed in fp16)"
    assert precision.dtype_name(torch.float8_e5m2) == "fp8_e5m2" and precision.dtype_name(torch.float16) == "fp16"
    assert precision.dtype_from_name("fp16") == torch.float16
    with pytest.raises(ValueError, match="weight precision"):
        precision.dtype_from_name("fp8_e4m3fn")  # never a whole model in fp8
    with pytest.raises(ValueError, match="only applies"):
        resolve_precision("fp16", "bf16")
    with pytest.raises(ValueError, match="unknown"):
        resolve_precision("fp8")


@pytest.mark.parametrize("name", ["fp8_e4m3fn", "fp8_e5m2"])
def test_fp8_without_float8_in_torch_names_the_torch_needed(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    assert fp8_dtype(name) is getattr(torch, precision.WEIGHT_DTYPES[name])
    monkeypatch.delattr(torch, precision.WEIGHT_DTYPES[name])
    monkeypatch.setattr(torch, "__version__", "2.0.1")
    with pytest.raises(ReLumixError, match=r"torch \(2\.0\.1\).*torch 2\.1 or newer"):
        fp8_dtype(name)
    with pytest.raises(ReLumixError, match="torch 2.1 or newer"):
        resolve_precision(name)
