"""CLIP image embedders: config inference, key conversion, kornia-style preprocessing, official parity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from relumix_core.checkpoints.convert.clip import (
    clip_target_shapes,
    convert_clip_key,
    convert_clip_state_dict,
    infer_clip_config,
    is_unused_clip_key,
)
from relumix_core.errors import CheckpointError
from relumix_core.models.clip import (
    CLIP_MEAN,
    CLIP_STD,
    CLIPTowerConfig,
    build_image_encoder,
    embed_images,
    preprocess_for_clip,
    resize_bicubic_antialias,
)
from relumix_core.parity.clip import check, embedder_reshape, load_tower
from relumix_core.parity.common import Fixture

SMALL = CLIPTowerConfig(width=32, layers=2, head_width=8, patch_size=4, image_size=16, embed_dim=12)
VIT_H_14 = CLIPTowerConfig(width=1280, layers=32, head_width=80, patch_size=14, image_size=224, embed_dim=1024)
LEFTOVERS = {
    "token_embedding.weight": (50, 12),
    "positional_embedding": (77, 12),
    "ln_final.weight": (12,),
    "ln_final.bias": (12,),
    "text_projection": (12, 12),
    "logit_scale": (),
}


def open_clip_shapes(c: CLIPTowerConfig) -> dict[str, tuple[int, ...]]:
    """Key shapes of an open_clip ViT image tower (relative to ``open_clip.model.``), plus text leftovers."""
    w, m = c.width, c.intermediate_size
    shapes = {
        "visual.class_embedding": (w,),
        "visual.positional_embedding": (c.num_positions, w),
        "visual.proj": (w, c.embed_dim),
        "visual.conv1.weight": (w, 3, c.patch_size, c.patch_size),
        "visual.ln_pre.weight": (w,),
        "visual.ln_pre.bias": (w,),
        "visual.ln_post.weight": (w,),
        "visual.ln_post.bias": (w,),
    }
    for i in range(c.layers):
        p = f"visual.transformer.resblocks.{i}."
        shapes |= {
            p + "ln_1.weight": (w,),
            p + "ln_1.bias": (w,),
            p + "attn.in_proj_weight": (3 * w, w),
            p + "attn.in_proj_bias": (3 * w,),
            p + "attn.out_proj.weight": (w, w),
            p + "attn.out_proj.bias": (w,),
            p + "ln_2.weight": (w,),
            p + "ln_2.bias": (w,),
            p + "mlp.c_fc.weight": (m, w),
            p + "mlp.c_fc.bias": (m,),
            p + "mlp.c_proj.weight": (w, m),
            p + "mlp.c_proj.bias": (w,),
        }
    return shapes | LEFTOVERS


def random_open_clip(c: CLIPTowerConfig, seed: int = 0, dtype: torch.dtype = torch.float64) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in open_clip_shapes(c).items():
        fan_in = shape[-1] if len(shape) > 1 else 1
        scale = 1.0 if name.endswith("weight") and "ln" in name and len(shape) == 1 else fan_in**-0.5
        base = 1.0 if scale == 1.0 else 0.0
        out[name] = base + scale * torch.randn(shape, generator=gen, dtype=dtype) * (0.2 if base else 1.0)
    return out


def reference_tower(sd: dict[str, torch.Tensor], c: CLIPTowerConfig, pixels: torch.Tensor) -> torch.Tensor:
    """open_clip's ViT forward in plain torch (nn.MultiheadAttention with stacked in_proj, as open_clip uses)."""
    x = F.conv2d(pixels, sd["visual.conv1.weight"], stride=c.patch_size).flatten(2).transpose(1, 2)
    cls = sd["visual.class_embedding"].expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1) + sd["visual.positional_embedding"]
    x = F.layer_norm(x, (c.width,), sd["visual.ln_pre.weight"], sd["visual.ln_pre.bias"])
    for i in range(c.layers):
        p = f"visual.transformer.resblocks.{i}."
        attn = torch.nn.MultiheadAttention(c.width, c.heads, batch_first=True, dtype=x.dtype)
        attn.load_state_dict({k[len(p + "attn.") :]: v for k, v in sd.items() if k.startswith(p + "attn.")})
        h = F.layer_norm(x, (c.width,), sd[p + "ln_1.weight"], sd[p + "ln_1.bias"])
        x = x + attn(h, h, h, need_weights=False)[0]
        h = F.layer_norm(x, (c.width,), sd[p + "ln_2.weight"], sd[p + "ln_2.bias"])
        h = F.gelu(F.linear(h, sd[p + "mlp.c_fc.weight"], sd[p + "mlp.c_fc.bias"]))
        x = x + F.linear(h, sd[p + "mlp.c_proj.weight"], sd[p + "mlp.c_proj.bias"])
    x = F.layer_norm(x, (c.width,), sd["visual.ln_post.weight"], sd["visual.ln_post.bias"])
    return x[:, 0] @ sd["visual.proj"]


def load(sd: dict[str, torch.Tensor], c: CLIPTowerConfig):
    with torch.device("meta"):
        model = build_image_encoder(c)
    model.load_state_dict(convert_clip_state_dict(sd, c), strict=True, assign=True)
    return model


# --- config -------------------------------------------------------------------------------------------------


def test_config_dict_round_trip_and_transformers_config():
    assert CLIPTowerConfig.from_dict(SMALL.to_dict()) == SMALL
    assert CLIPTowerConfig.from_dict({**SMALL.to_dict(), "head_width": None} | {"heads": 4}) == SMALL
    tc = VIT_H_14.to_transformers()
    assert (tc.hidden_size, tc.num_attention_heads, tc.intermediate_size, tc.projection_dim) == (1280, 16, 5120, 1024)
    assert tc.hidden_act == "gelu" and tc.layer_norm_eps == 1e-5 and tc._attn_implementation == "sdpa"
    with pytest.raises(ValueError):
        CLIPTowerConfig.from_dict({**SMALL.to_dict(), "bogus": 1})
    with pytest.raises(ValueError):
        CLIPTowerConfig(width=30, layers=1, head_width=8, patch_size=4, image_size=16, embed_dim=4)


def test_infer_config_round_trip():
    shapes = open_clip_shapes(SMALL)
    assert infer_clip_config(shapes, head_width=8) == SMALL
    assert infer_clip_config(open_clip_shapes(VIT_H_14)) == VIT_H_14  # head width defaults to ViT-H-14's 80
    assert infer_clip_config(shapes, head_width=16).heads == 2
    with pytest.raises(CheckpointError, match="head_width"):
        infer_clip_config(shapes)  # 32 is not a multiple of 80
    with pytest.raises(CheckpointError, match="missing"):
        infer_clip_config({k: v for k, v in shapes.items() if k != "visual.proj"}, head_width=8)


# --- conversion ---------------------------------------------------------------------------------------------


def test_meta_conversion_of_vit_h_matches_model_shapes():
    with torch.device("meta"):
        sd = {k: torch.empty(s) for k, s in open_clip_shapes(VIT_H_14).items()}
        model = build_image_encoder(VIT_H_14)
    converted = convert_clip_state_dict(sd, VIT_H_14)
    target = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in converted.items()} == target == clip_target_shapes(VIT_H_14)
    assert all(v.is_meta for v in converted.values())
    assert not model.vision_model.embeddings.position_ids.is_meta


def test_engine_key_list_converts(official_fixtures: Path):
    keys = json.loads((official_fixtures / "engine_full_keys.json").read_text())["keys"]
    for n in (0, 1):
        prefix = f"conditioner.embedders.{n}.open_clip.model."
        shapes = {k["name"][len(prefix) :]: k["shape"] for k in keys if k["name"].startswith(prefix)}
        config = infer_clip_config(shapes)
        assert config == VIT_H_14
        with torch.device("meta"):
            converted = convert_clip_state_dict({k: torch.empty(s) for k, s in shapes.items()}, config)
        assert {k: tuple(v.shape) for k, v in converted.items()} == clip_target_shapes(config)


def test_unknown_unused_and_bad_keys():
    t = torch.empty(3 * SMALL.width, SMALL.width, device="meta")
    with pytest.raises(KeyError):
        convert_clip_key("visual.transformer.resblocks.0.attn.qkv.weight", t, SMALL)
    with pytest.raises(KeyError):
        convert_clip_key("visual.something", t, SMALL)
    for name in LEFTOVERS:
        assert is_unused_clip_key(name) and convert_clip_key(name, t, SMALL) == []
    assert not is_unused_clip_key("visual.positional_embedding")
    with pytest.raises(CheckpointError):
        convert_clip_key("visual.transformer.resblocks.5.ln_1.weight", t[0], SMALL)  # beyond config.layers
    with pytest.raises(CheckpointError):
        convert_clip_key("visual.ln_pre.weight", torch.empty(5, device="meta"), SMALL)  # wrong shape
    sd = random_open_clip(SMALL)
    del sd["visual.transformer.resblocks.1.mlp.c_fc.bias"]
    with pytest.raises(CheckpointError, match="incomplete"):
        convert_clip_state_dict(sd, SMALL)


def test_qkv_split_order_and_projection_transpose():
    sd = random_open_clip(SMALL, dtype=torch.float32)
    w = sd["visual.transformer.resblocks.0.attn.in_proj_weight"]
    out = dict(convert_clip_key("visual.transformer.resblocks.0.attn.in_proj_weight", w, SMALL))
    width = SMALL.width
    for i, q in enumerate("qkv"):
        assert torch.equal(
            out[f"vision_model.encoder.layers.0.self_attn.{q}_proj.weight"], w[i * width : (i + 1) * width]
        )
    ((name, proj),) = convert_clip_key("visual.proj", sd["visual.proj"], SMALL)
    assert name == "visual_projection.weight" and torch.equal(proj, sd["visual.proj"].t())


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_tower_matches_plain_torch_open_clip_math(attn: str):
    config = CLIPTowerConfig(**{**SMALL.to_dict(), "attn_implementation": attn})
    sd = random_open_clip(config, seed=3)
    model = load(sd, config).double()
    pixels = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    ours = model(pixel_values=pixels).image_embeds
    ref = reference_tower(sd, config, pixels)
    # eager softmaxes in float32 inside transformers, which is why sdpa is the default
    assert (ours - ref).abs().max().item() < (1e-12 if attn == "sdpa" else 1e-5)


# --- preprocessing ------------------------------------------------------------------------------------------


def test_resize_is_plain_bicubic_when_upscaling():
    x = torch.rand(2, 3, 20, 37, generator=torch.Generator().manual_seed(0)) * 2 - 1
    expected = F.interpolate(x, size=(64, 64), mode="bicubic", align_corners=True)
    assert torch.equal(resize_bicubic_antialias(x, (64, 64)), expected)
    assert resize_bicubic_antialias(x, (20, 37)) is x


def test_resize_blurs_both_axes_when_one_is_downscaled():
    x = torch.rand(1, 3, 100, 500, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = resize_bicubic_antialias(x, (224, 224))
    plain = F.interpolate(x, size=(224, 224), mode="bicubic", align_corners=True)
    assert out.shape == (1, 3, 224, 224) and (out - plain).abs().max() > 1e-3
    # a constant image stays constant through blur (normalised kernel, reflect border) and interpolation
    flat = torch.full((1, 3, 240, 720), 0.25, dtype=torch.float64)
    assert torch.allclose(resize_bicubic_antialias(flat, (224, 224)), flat[..., :224, :224], atol=1e-15)


def test_preprocess_normalisation_and_dtype():
    x = torch.full((1, 3, 224, 224), 0.5, dtype=torch.float64)
    out = preprocess_for_clip(x)
    for c in range(3):
        assert out[0, c, 0, 0].item() == pytest.approx((0.75 - CLIP_MEAN[c]) / CLIP_STD[c], abs=1e-15)
    assert out.dtype == torch.float64
    with pytest.raises(ValueError):
        preprocess_for_clip(torch.zeros(1, 4, 8, 8))


def test_embed_images_casts_to_input_dtype():
    model = load(random_open_clip(SMALL, dtype=torch.float32), SMALL)
    z = embed_images(model, torch.rand(2, 3, 30, 40, dtype=torch.float64))
    assert z.shape == (2, SMALL.embed_dim) and z.dtype == torch.float64
    r = embedder_reshape(torch.arange(6.0).view(2, 3), n_copies=2)
    assert r.shape == (4, 1, 3) and torch.equal(r[:, 0, 0], torch.tensor([0.0, 0.0, 3.0, 3.0]))


# --- official parity ----------------------------------------------------------------------------------------


def test_official_clip_parity(official_fixtures: Path):
    paths = sorted(official_fixtures.glob("clip*.json"))
    assert paths, "no clip fixture"
    for path in paths:
        fixture = Fixture.load(path)
        results = check(fixture)
        stored = {k for k in fixture.tensors if k.startswith(("f32.", "f64."))}
        assert {r.name for r in results} == stored
        bad = [f"{r.name}: {r.max_abs_error:.3g} > {r.tolerance:.0e}" for r in results if not r.ok]
        assert not bad, f"{path.name}: " + "; ".join(bad)


def test_official_antialias_parameters(official_fixtures: Path):
    from relumix_core.models.clip import _antialias_params

    meta = json.loads((official_fixtures / "clip_tiny.json").read_text())
    for name, info in meta["kornia_resize_antialias_per_size"].items():
        h, w = meta["sizes"][name]
        if not info["gaussian_blur_applied"]:
            assert max(h, w) <= 224
            continue
        (sh, kh), (sw, kw) = _antialias_params(h, 224), _antialias_params(w, 224)
        assert [kh, kw] == info["kernel_size"] and [sh, sw] == pytest.approx(info["sigmas"])


def test_official_tower_with_eager_attention_float32(official_fixtures: Path):
    fixture = Fixture.load(official_fixtures / "clip_tiny.json")
    tower = load_tower(fixture, "1", torch.float32)
    tower.config._attn_implementation = "eager"
    with torch.no_grad():
        z = embed_images(tower, fixture.tensors["input.frames_small"])
    assert (z - fixture.tensors["f32.tower1.out_frames_small"]).abs().max().item() < 1e-4
