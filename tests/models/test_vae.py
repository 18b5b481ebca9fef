"""VAE: official-fixture parity, config inference, meta conversion, and a plain-torch sgm reference for configs
the fixtures do not cover (ch_mult[0] != 1, attention levels, 2 resnets per level, other temporal kernels)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from relumix_core.checkpoints.convert.vae import (
    convert_first_stage_key,
    convert_latent_encoder,
    convert_latent_encoder_key,
    first_stage_extra_tensors,
    infer_vae_config,
    is_unused_latent_encoder_key,
    load_first_stage,
    load_latent_encoder,
    sgm_vae_shapes,
)
from relumix_core.errors import CheckpointError
from relumix_core.models.vae import (
    VAEConfig,
    build_latent_encoder,
    build_temporal_vae,
    decode_latents,
    encode_first_stage,
    posterior_parameters,
)
from relumix_core.parity import vae as vae_parity
from relumix_core.parity.common import Fixture

PREFIXES = ("first_stage_model.", "conditioner.embedders.3.encoder.", "conditioner.embedders.4.encoder.")

CONFIGS = {
    "tiny_like": VAEConfig(ch=32, block_out_channels=(32, 32, 64, 64), num_res_blocks=1, z_channels=4, embed_dim=4),
    "wide_first_attn": VAEConfig(
        ch=32, block_out_channels=(64, 64), num_res_blocks=2, z_channels=4, embed_dim=4, attn_levels=(1,)
    ),
    "z8_kernel333": VAEConfig(
        ch=32,
        block_out_channels=(32, 64, 64),
        num_res_blocks=1,
        z_channels=8,
        embed_dim=4,
        attn_levels=(0,),
        video_kernel_size=(3, 3, 3),
    ),
}


def _random_state(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    """Random sgm weights in the spirit of the fixtures (every parameter non-trivial), float64."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in shapes.items():
        if len(shape) == 1 and ("norm" in name or "in_layers.0" in name or "out_layers.0" in name):
            base = 1.0 if name.endswith("weight") else 0.0
            state[name] = base + 0.2 * torch.randn(shape, generator=g, dtype=torch.float64)
        elif name.endswith("mix_factor"):
            state[name] = 1.2 * torch.randn(shape, generator=g, dtype=torch.float64)
        elif len(shape) == 1:
            state[name] = 0.1 * torch.randn(shape, generator=g, dtype=torch.float64)
        else:
            fan_in = 1
            for d in shape[1:]:
                fan_in *= d
            state[name] = torch.randn(shape, generator=g, dtype=torch.float64) / fan_in**0.5
    return state


# ---------------------------------------------------------------------------------------------- sgm reference


def _gn(x, sd, p, eps=1e-6):
    return F.group_norm(x, 32, sd[p + "weight"], sd[p + "bias"], eps)


def _conv(x, sd, p, **kw):
    return F.conv2d(x, sd[p + "weight"], sd[p + "bias"], **kw)


def _resnet(x, sd, p):
    h = _conv(F.silu(_gn(x, sd, p + "norm1.")), sd, p + "conv1.", padding=1)
    h = _conv(F.silu(_gn(h, sd, p + "norm2.")), sd, p + "conv2.", padding=1)
    if p + "nin_shortcut.weight" in sd:
        x = _conv(x, sd, p + "nin_shortcut.")
    return x + h


def _conv3(x, sd, p):
    w = sd[p + "weight"]
    return F.conv3d(x, w, sd[p + "bias"], padding=[k // 2 for k in w.shape[2:]])


def _to_video(x, t):
    return x.reshape(-1, t, *x.shape[1:]).permute(0, 2, 1, 3, 4)


def _from_video(x):
    return x.permute(0, 2, 1, 3, 4).reshape(-1, x.shape[1], *x.shape[3:])


def _video_resnet(x, sd, p, t):
    """sgm VideoResBlock: alpha = sigmoid(mix_factor) weights the time_stack (openaimodel ResBlock, eps 1e-5)."""
    xs = _to_video(_resnet(x, sd, p), t)
    q = p + "time_stack."
    h = _conv3(F.silu(_gn(xs, sd, q + "in_layers.0.", 1e-5)), sd, q + "in_layers.2.")
    h = _conv3(F.silu(_gn(h, sd, q + "out_layers.0.", 1e-5)), sd, q + "out_layers.3.")
    alpha = torch.sigmoid(sd[p + "mix_factor"])
    return _from_video(alpha * (xs + h) + (1 - alpha) * xs)


def _attn(x, sd, p):
    h = _gn(x, sd, p + "norm.")
    b, c, hh, ww = h.shape
    q, k, v = (_conv(h, sd, p + n + ".").reshape(b, c, hh * ww).transpose(1, 2) for n in "qkv")
    w = torch.softmax(q @ k.transpose(1, 2) / c**0.5, dim=-1)
    out = (w @ v).transpose(1, 2).reshape(b, c, hh, ww)
    return x + _conv(out, sd, p + "proj_out.")


def _levels(sd, kind):
    return sorted({int(k.split(".")[1]) for k in sd if k.startswith(kind + ".")})


def _blocks(sd, p):
    return sorted({int(k[len(p) :].split(".")[0]) for k in sd if k.startswith(p)})


def sgm_encoder(x, sd):
    h = _conv(x, sd, "conv_in.", padding=1)
    levels = _levels(sd, "down")
    for i in levels:
        for j in _blocks(sd, f"down.{i}.block."):
            h = _resnet(h, sd, f"down.{i}.block.{j}.")
            if f"down.{i}.attn.{j}.q.weight" in sd:
                h = _attn(h, sd, f"down.{i}.attn.{j}.")
        if i != levels[-1]:
            h = _conv(F.pad(h, (0, 1, 0, 1)), sd, f"down.{i}.downsample.conv.", stride=2)
    h = _attn(_resnet(h, sd, "mid.block_1."), sd, "mid.attn_1.")
    h = _resnet(h, sd, "mid.block_2.")
    return _conv(F.silu(_gn(h, sd, "norm_out.")), sd, "conv_out.", padding=1)


def sgm_video_decoder(z, sd, t):
    h = _conv(z, sd, "conv_in.", padding=1)
    h = _attn(_video_resnet(h, sd, "mid.block_1.", t), sd, "mid.attn_1.")
    h = _video_resnet(h, sd, "mid.block_2.", t)
    for i in reversed(_levels(sd, "up")):
        for j in _blocks(sd, f"up.{i}.block."):
            h = _video_resnet(h, sd, f"up.{i}.block.{j}.", t)
            if f"up.{i}.attn.{j}.q.weight" in sd:
                h = _attn(h, sd, f"up.{i}.attn.{j}.")
        if i != 0:
            h = _conv(F.interpolate(h, scale_factor=2.0, mode="nearest"), sd, f"up.{i}.upsample.conv.", padding=1)
    h = _conv(F.silu(_gn(h, sd, "norm_out.")), sd, "conv_out.", padding=1)
    return _from_video(_conv3(_to_video(h, t), sd, "conv_out.time_mix_conv."))


def _sub(sd, prefix):
    return {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}


# ---------------------------------------------------------------------------------------------- fixtures


def test_official_vae_parity(official_fixtures: Path) -> None:
    fixture = Fixture.load(official_fixtures / "vae_tiny.json")
    results = vae_parity.check(fixture)
    stored = {k for k in fixture.tensors if k.startswith(("f32.", "f64."))}
    assert {r.name for r in results} == stored
    bad = [f"{r.name}: {r.max_abs_error:.3g} > {r.tolerance:.0e}" for r in results if not r.ok]
    assert not bad, bad


def test_sgm_layout_matches_official_keys(official_fixtures: Path) -> None:
    fixture = Fixture.load(official_fixtures / "vae_tiny.json")
    for prefix in PREFIXES:
        shapes = {k: tuple(v.shape) for k, v in fixture.with_prefix(prefix).items()}
        config = infer_vae_config(shapes)
        part = "first_stage" if prefix.startswith("first") else "latent_encoder"
        assert sgm_vae_shapes(config, part) == shapes
        assert config.to_dict()["block_out_channels"] == [32 * m for m in fixture.meta["ddconfig"]["ch_mult"]]


def test_official_fixture_reference_agrees(official_fixtures: Path) -> None:
    """The plain-torch sgm reference used below reproduces the official outputs (so it is a valid oracle)."""
    fixture = Fixture.load(official_fixtures / "vae_tiny.json")
    t = fixture.tensors
    sd = {k: v.double() for k, v in fixture.with_prefix("first_stage_model.").items()}
    x = t["input.frames"].double()
    assert (sgm_encoder(x, _sub(sd, "encoder.")) - t["f64.first_stage.encoder_out"]).abs().max() < 1e-10
    z = t["input.z_scaled"].double() / 0.18215
    out = sgm_video_decoder(z, _sub(sd, "decoder."), z.shape[0])
    assert (out - t["f64.first_stage.decode_T"]).abs().max() < 1e-10


# ---------------------------------------------------------------------------------------------- no fixtures needed


@pytest.mark.parametrize("key", sorted(CONFIGS))
def test_config_inference_round_trip(key: str) -> None:
    config = CONFIGS[key]
    latent = infer_vae_config(sgm_vae_shapes(config, "latent_encoder"))
    assert latent == VAEConfig.from_dict({**config.to_dict(), "video_kernel_size": [3, 1, 1]})  # 2-D decoder there
    first = infer_vae_config(sgm_vae_shapes(config, "first_stage"))
    assert first == VAEConfig.from_dict({**config.to_dict(), "embed_dim": None})
    assert VAEConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    only_decoder = {k: v for k, v in sgm_vae_shapes(config, "first_stage").items() if k.startswith("decoder.")}
    assert infer_vae_config(only_decoder).block_out_channels == config.block_out_channels


def test_from_ddconfig() -> None:
    dd = {"ch": 32, "ch_mult": [1, 2], "num_res_blocks": 2, "z_channels": 4, "resolution": 64}
    dd |= {"attn_resolutions": [32], "in_channels": 3, "out_ch": 3, "double_z": True}
    config = VAEConfig.from_ddconfig(dd)
    assert config.block_out_channels == (32, 64) and config.attn_levels == (1,) and config.ch_mult == (1, 2)


@pytest.mark.parametrize("key", sorted(CONFIGS))
def test_meta_conversion_matches_modules(key: str) -> None:
    config = CONFIGS[key]
    with torch.device("meta"):
        vae = build_temporal_vae(config)
        enc = build_latent_encoder(config)
    sgm = {k: torch.empty(v, device="meta") for k, v in sgm_vae_shapes(config, "first_stage").items()}
    converted = {}
    for name, tensor in sgm.items():
        for new, t in convert_first_stage_key(name, tensor, config):
            assert new not in converted
            converted[new] = t
            assert t.is_meta
            if "attn" not in name:
                assert t is tensor  # a rename, not a copy
    converted |= first_stage_extra_tensors(config, device="meta")
    expected = {k: tuple(v.shape) for k, v in vae.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in converted.items()} == expected

    sgm = {k: torch.empty(v, device="meta") for k, v in sgm_vae_shapes(config, "latent_encoder").items()}
    state, ignored = convert_latent_encoder(sgm, config)
    assert ignored and all(is_unused_latent_encoder_key(k) for k in ignored)
    assert all(convert_latent_encoder_key(k, sgm[k], config) == [] for k in ignored)
    assert {k: tuple(v.shape) for k, v in state.items()} == {k: tuple(v.shape) for k, v in enc.state_dict().items()}


@pytest.mark.parametrize("key", ["wide_first_attn", "z8_kernel333"])
def test_first_stage_matches_sgm_reference(key: str) -> None:
    config = CONFIGS[key]
    shapes = sgm_vae_shapes(config, "first_stage")
    sd = _random_state(shapes, seed=len(key))
    vae = load_first_stage(sd)
    g = torch.Generator().manual_seed(1)
    size = 8 * 2 ** (config.num_levels - 1)
    x = torch.rand(3, 3, size, size + 8, generator=g, dtype=torch.float64) * 2 - 1
    with torch.no_grad():
        moments = vae.encoder(x)
        assert (moments - sgm_encoder(x, _sub(sd, "encoder."))).abs().max() < 1e-10
        z = torch.randn(5, config.z_channels, 4, 6, generator=g, dtype=torch.float64)
        ours = decode_latents(vae, z, chunk_size=3, scale_factor=1.0)
        ref = torch.cat(
            [sgm_video_decoder(z[:3], _sub(sd, "decoder."), 3), sgm_video_decoder(z[3:], _sub(sd, "decoder."), 2)]
        )
        assert (ours - ref).abs().max() < 1e-10


@pytest.mark.parametrize("key", ["tiny_like", "z8_kernel333"])
def test_latent_encoder_matches_sgm_reference(key: str) -> None:
    config = CONFIGS[key]
    sd = _random_state(sgm_vae_shapes(config, "latent_encoder"), seed=7)
    enc = load_latent_encoder(sd)
    x = torch.rand(2, 3, 32, 16, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 2 - 1
    with torch.no_grad():
        moments = F.conv2d(sgm_encoder(x, _sub(sd, "encoder.")), sd["quant_conv.weight"], sd["quant_conv.bias"])
        assert (enc(x) - moments[:, : config.embed_dim]).abs().max() < 1e-10


def test_chunked_decode_equals_unchunked_when_chunk_covers_all() -> None:
    config = CONFIGS["tiny_like"]
    vae = load_first_stage(_random_state(sgm_vae_shapes(config, "first_stage"), seed=3))
    z = torch.randn(4, 4, 3, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    with torch.no_grad():
        whole = decode_latents(vae, z, chunk_size=4)
        assert torch.equal(decode_latents(vae, z, chunk_size=9), whole)
        assert (decode_latents(vae, z, chunk_size=3) - whole).abs().max() > 1e-3  # chunks are independent videos
        single = vae.decode(z / 0.18215, num_frames=4).sample
        assert (single - whole).abs().max() < 1e-12
    with pytest.raises(ValueError):
        decode_latents(vae, z, chunk_size=0)


def test_encode_first_stage_and_posterior() -> None:
    config = CONFIGS["tiny_like"]
    vae = load_first_stage(_random_state(sgm_vae_shapes(config, "first_stage"), seed=5))
    x = torch.rand(2, 3, 16, 24, generator=torch.Generator().manual_seed(6), dtype=torch.float64) * 2 - 1
    with torch.no_grad():
        mean, logvar, std = posterior_parameters(vae.encoder(x))
        noise = torch.randn_like(mean)
        assert torch.allclose(encode_first_stage(vae, x, noise), 0.18215 * (mean + std * noise), atol=1e-14, rtol=0)
        a = encode_first_stage(vae, x, generator=torch.Generator().manual_seed(0))
        b = encode_first_stage(vae, x, generator=torch.Generator().manual_seed(0))
        assert torch.equal(a, b)
    extreme = torch.tensor([[0.0, 100.0], [0.0, -100.0]]).reshape(2, 2, 1, 1)
    _, logvar, _ = posterior_parameters(extreme)
    assert logvar.flatten().tolist() == [20.0, -30.0]


def test_nonsense_shapes_raise_checkpoint_error() -> None:
    good = sgm_vae_shapes(CONFIGS["tiny_like"], "first_stage")
    with pytest.raises(CheckpointError, match="unexpected names"):
        infer_vae_config({"model.foo.weight": (3, 3)})
    with pytest.raises(CheckpointError, match="no 'encoder"):
        infer_vae_config({"quant_conv.weight": (8, 8, 1, 1)})
    with pytest.raises(CheckpointError, match="wrong shape"):
        infer_vae_config(good | {"decoder.up.1.block.0.conv2.weight": (32, 32, 5, 5)})
    with pytest.raises(CheckpointError, match="missing"):
        infer_vae_config({k: v for k, v in good.items() if k != "encoder.mid.attn_1.q.weight"})
    with pytest.raises(CheckpointError, match="double_z"):
        infer_vae_config(good | {"encoder.conv_out.weight": (7, 64, 3, 3), "encoder.conv_out.bias": (7,)})
    with pytest.raises(CheckpointError, match="divisible"):
        infer_vae_config(sgm_vae_shapes(VAEConfig(ch=16, block_out_channels=(16, 32), num_res_blocks=1), "first_stage"))
    with pytest.raises(CheckpointError, match="disagree"):
        infer_vae_config(good | {"decoder.conv_in.weight": (64, 8, 3, 3)})
    with pytest.raises(KeyError):
        convert_first_stage_key(
            "decoder.up.9.block.0.conv1.weight", torch.empty(1, device="meta"), CONFIGS["tiny_like"]
        )
    with pytest.raises(KeyError):
        convert_first_stage_key("quant_conv.weight", torch.empty(1, device="meta"), CONFIGS["tiny_like"])


def test_full_size_engine_keys_convert_on_meta(official_fixtures: Path) -> None:
    """The released-size layout (engine_full_keys.json): config inference and every key, on the meta device."""
    keys = json.loads((official_fixtures / "engine_full_keys.json").read_text())["keys"]
    shapes = {k["name"]: tuple(k["shape"]) for k in keys}
    for prefix in PREFIXES:
        sgm = {k[len(prefix) :]: v for k, v in shapes.items() if k.startswith(prefix)}
        config = infer_vae_config(sgm)
        assert config.block_out_channels == (128, 256, 512, 512) and config.num_res_blocks == 2
        first = prefix.startswith("first")
        assert sgm_vae_shapes(config, "first_stage" if first else "latent_encoder") == sgm
        with torch.device("meta"):
            module = build_temporal_vae(config) if first else build_latent_encoder(config)
        convert = convert_first_stage_key if first else convert_latent_encoder_key
        ours = {n: tuple(t.shape) for k, v in sgm.items() for n, t in convert(k, torch.empty(v, device="meta"), config)}
        if first:
            ours |= {k: tuple(v.shape) for k, v in first_stage_extra_tensors(config, torch.float32, "meta").items()}
        assert ours == {k: tuple(v.shape) for k, v in module.state_dict().items()}
