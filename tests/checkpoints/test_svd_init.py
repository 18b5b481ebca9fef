"""Initialising ReLumix from stock SVD: copies, new weights, gates, determinism, refusals, full-size shapes.

A tiny random stock SVD is written twice, in Stability's sgm layout (a single file, the UNet names made by inverting
``UNetKeyMapper``) and as a diffusers folder saved by the real diffusers / transformers classes, both holding the same
UNet weights.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel
from safetensors.torch import save_file
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from relumix_core.checkpoints.convert.clip import convert_clip_state_dict
from relumix_core.checkpoints.convert.unet import RESNET_RENAMES, TOP_LEVEL_RENAMES, UNetKeyMapper, sgm_block_map
from relumix_core.checkpoints.convert.vae import convert_first_stage, convert_latent_encoder, sgm_vae_shapes
from relumix_core.checkpoints.loading import load_relumix
from relumix_core.checkpoints.single_file import save_folder, save_single_file
from relumix_core.checkpoints.svd_init import NEW_WEIGHT_STD, init_from_sgm_state, init_from_svd
from relumix_core.checkpoints.tensor_source import DictSource
from relumix_core.errors import CheckpointError
from relumix_core.models.unet import UNetConfig, attention_module_names, build_unet
from relumix_core.models.vae import VAEConfig

_BASE = UNetConfig(
    in_channels=8,
    out_channels=4,
    model_channels=32,
    channel_mult=(1, 2),
    num_res_blocks=1,
    attention_levels=(True, False),
    transformer_depth=(1, 1),
    num_head_channels=16,
    context_dim=32,
    adm_in_channels=24,
)
SVD_UNET = UNetConfig.from_dict({**_BASE.to_dict(), "ungated_attention": attention_module_names(_BASE)})
RELUMIX_UNET = UNetConfig.from_dict({**_BASE.to_dict(), "in_channels": 12, "context_dim": 64})
VAE = VAEConfig(ch=32, block_out_channels=(32, 64), num_res_blocks=2, z_channels=4)
CLIP_WIDTH, CLIP_LAYERS, CLIP_HEAD, CLIP_PATCH, CLIP_IMAGE = 32, 2, 8, 4, 16
TINY = {"num_head_channels": 16, "clip_head_width": CLIP_HEAD}
KV = re.compile(r"\.attn2\.to_[kv]\.weight$")


# ---------------------------------------------------------------------------------------------- tiny stock SVD


def _randomise(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    """Non-trivial random weights (norm scales near 1, the rest scaled by fan-in), float32."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in shapes.items():
        values = torch.randn(shape, generator=g)
        is_norm = any(part in name for part in ("norm", "ln_", "in_layers.0", "out_layers.0"))
        if len(shape) == 1 and is_norm:
            values = 1.0 + 0.1 * values if name.endswith("weight") else 0.1 * values
        elif len(shape) >= 2:
            values = values / (torch.tensor(shape[1:]).prod().item() ** 0.5)
        else:
            values = 0.1 * values
        out[name] = values
    return out


def to_sgm_unet_name(name: str, blocks: dict[str, tuple[str, str]]) -> str:
    """Inverse of ``UNetKeyMapper``: a ReLumixUNet (diffusers) name -> the sgm VideoUNet name."""
    top = {v: k for k, v in TOP_LEVEL_RENAMES.items()}
    resnet = {v: k for k, v in RESNET_RENAMES.items()}
    layer, _, param = name.rpartition(".")
    if layer in top:
        return f"{top[layer]}.{param}"
    for sgm, (kind, target) in sorted(blocks.items(), key=lambda item: len(item[1][1]), reverse=True):
        if not name.startswith(target + "."):
            continue
        rest = name[len(target) + 1 :]
        if kind == "resnet" and rest != "time_mixer.mix_factor":
            branch, _, rest = rest.partition(".")
            layer, _, param = rest.rpartition(".")
            return f"{sgm}.{'time_stack.' if branch == 'temporal_res_block' else ''}{resnet[layer]}.{param}"
        if kind == "transformer":
            rest = re.sub(r"^temporal_transformer_blocks\.(\d+)\.", r"time_stack.\1.", rest)
            rest = re.sub(r"^time_pos_embed\.linear_([12])\.", lambda m: f"time_pos_embed.{2 * int(m[1]) - 2}.", rest)
            rest = rest.replace(".processor.", ".")
        return f"{sgm}.{rest}"
    raise KeyError(name)


def open_clip_shapes() -> dict[str, tuple[int, ...]]:
    """An open_clip ViT image tower (relative to ``open_clip.model.``), with the text leftovers sgm keeps."""
    w, positions = CLIP_WIDTH, (CLIP_IMAGE // CLIP_PATCH) ** 2 + 1
    shapes = {
        "visual.class_embedding": (w,),
        "visual.positional_embedding": (positions, w),
        "visual.proj": (w, SVD_UNET.context_dim),
        "visual.conv1.weight": (w, 3, CLIP_PATCH, CLIP_PATCH),
        "visual.ln_pre.weight": (w,),
        "visual.ln_pre.bias": (w,),
        "visual.ln_post.weight": (w,),
        "visual.ln_post.bias": (w,),
        "token_embedding.weight": (50, 16),
        "positional_embedding": (77, 16),
        "ln_final.weight": (16,),
        "ln_final.bias": (16,),
        "text_projection": (16, 16),
        "logit_scale": (),
    }
    for i in range(CLIP_LAYERS):
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
            p + "mlp.c_fc.weight": (4 * w, w),
            p + "mlp.c_fc.bias": (4 * w,),
            p + "mlp.c_proj.weight": (w, 4 * w),
            p + "mlp.c_proj.bias": (w,),
        }
    return shapes


def _randomise_module(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    state = module.state_dict()
    module.load_state_dict(_randomise({k: tuple(v.shape) for k, v in state.items()}, seed))
    return module


class TinySVD:
    """The tiny stock SVD in both layouts, with the tensors kept for comparisons."""

    def __init__(self, root: Path) -> None:
        self.unet = _randomise({k: tuple(v.shape) for k, v in build_unet(SVD_UNET).state_dict().items()}, 1)
        blocks = sgm_block_map(SVD_UNET)
        mapper = UNetKeyMapper(SVD_UNET)
        sgm_unet = {to_sgm_unet_name(k, blocks): v for k, v in self.unet.items()}
        assert {mapper(k): k for k in sgm_unet} == {k: to_sgm_unet_name(k, blocks) for k in self.unet}
        self.first_stage = _randomise(sgm_vae_shapes(VAE, "first_stage"), 2)
        self.embedder3 = _randomise(sgm_vae_shapes(VAEConfig(**{**VAE.to_dict(), "embed_dim": 4}), "latent_encoder"), 3)
        self.clip = _randomise(open_clip_shapes(), 4)
        self.sgm = (
            {f"model.diffusion_model.{k}": v for k, v in sgm_unet.items()}
            | {f"first_stage_model.{k}": v for k, v in self.first_stage.items()}
            | {f"conditioner.embedders.0.open_clip.model.{k}": v for k, v in self.clip.items()}
            | {f"conditioner.embedders.3.encoder.{k}": v for k, v in self.embedder3.items()}
        )
        self.safetensors = root / "svd.safetensors"
        save_file(self.sgm, str(self.safetensors))
        self.pth = root / "svd.pth"
        torch.save({"state_dict": self.sgm}, self.pth)

        self.folder = root / "svd-diffusers"
        unet = UNetSpatioTemporalConditionModel(**SVD_UNET.diffusers_kwargs(), addition_time_embed_dim=8)
        unet.load_state_dict(self.unet, strict=True)
        unet.save_pretrained(self.folder / "unet")
        vae = AutoencoderKLTemporalDecoder(
            down_block_types=("DownEncoderBlock2D",) * 2, block_out_channels=(32, 64), layers_per_block=2
        )
        self.vae = _randomise_module(vae, 5).state_dict()
        vae.save_pretrained(self.folder / "vae")
        clip_config = CLIPVisionConfig(
            hidden_size=CLIP_WIDTH,
            intermediate_size=4 * CLIP_WIDTH,
            projection_dim=SVD_UNET.context_dim,
            num_hidden_layers=CLIP_LAYERS,
            num_attention_heads=CLIP_WIDTH // CLIP_HEAD,
            image_size=CLIP_IMAGE,
            patch_size=CLIP_PATCH,
            hidden_act="gelu",
        )
        clip = _randomise_module(CLIPVisionModelWithProjection(clip_config), 6)
        self.transformers_clip = {k: v for k, v in clip.state_dict().items() if not k.endswith("position_ids")}
        clip.save_pretrained(self.folder / "image_encoder")


@pytest.fixture(scope="module")
def svd(tmp_path_factory: pytest.TempPathFactory) -> TinySVD:
    return TinySVD(tmp_path_factory.mktemp("svd"))


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach() for k, v in module.state_dict().items()}


def _new_parts(state: dict[str, torch.Tensor]) -> torch.Tensor:
    """Every value the initialisation drew: new conv_in channels and the new halves of attn2 k/v."""
    parts = [state["conv_in.weight"][:, SVD_UNET.in_channels :].flatten()]
    parts += [v[:, SVD_UNET.context_dim :].flatten() for k, v in state.items() if KV.search(k)]
    return torch.cat(parts)


def _assert_unet_copied(state: dict[str, torch.Tensor], svd_unet: dict[str, torch.Tensor]) -> None:
    for name, old in svd_unet.items():
        new = state[name]
        if name == "conv_in.weight":
            new = new[:, : SVD_UNET.in_channels]
        elif KV.search(name):
            new = new[:, : SVD_UNET.context_dim]
        assert torch.equal(new, old), name


# ---------------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("kind", ["safetensors", "pth"])
def test_sgm_source_copies_svd_and_initialises_new_weights(svd: TinySVD, kind: str) -> None:
    model, report = init_from_svd(getattr(svd, kind), seed=0, **TINY)
    unet = model.unet
    assert unet.relumix_config == RELUMIX_UNET
    assert model.config.unet.ungated_attention == ()
    with torch.device("meta"):
        expected = build_unet(RELUMIX_UNET).state_dict()
    state = _state(unet)
    assert {k: tuple(v.shape) for k, v in state.items()} == {k: tuple(v.shape) for k, v in expected.items()}
    assert state["conv_in.weight"].shape[1] == 12

    _assert_unet_copied(state, svd.unet)
    widened = [k for k in state if KV.search(k)]
    assert len(widened) == 16  # 4 attention layers x (spatial, temporal) x (k, v)
    assert any("temporal_transformer_blocks" in k for k in widened)
    new = _new_parts(state)
    assert new.numel() > 10_000
    assert abs(new.mean().item()) < 0.1 * NEW_WEIGHT_STD
    assert 0.9 * NEW_WEIGHT_STD < new.std().item() < 1.1 * NEW_WEIGHT_STD
    conv_new = state["conv_in.weight"][:, 8:]
    assert 0.85 * NEW_WEIGHT_STD < conv_new.std().item() < 1.15 * NEW_WEIGHT_STD

    gates = {k: v for k, v in state.items() if k.endswith(".processor.gate")}
    assert len(gates) == len(unet.gated_attention) == 16
    assert all(torch.equal(v, torch.ones(1)) for v in gates.values())
    for name in gates:
        weight = state[name + "_activation.weight"]
        bound = weight.shape[1] ** -0.5
        assert weight.abs().max() <= bound and weight.std() > 0.2 * bound
        assert state[name + "_activation.bias"].abs().max() <= bound

    for name, converted in convert_first_stage(svd.first_stage, model.config.components["vae"]).items():
        assert torch.equal(_state(model.vae)[name], converted), name
    frame, _ = convert_latent_encoder(svd.embedder3, model.config.components["frame_encoder"])
    assert _state(model.frame_encoder).keys() == frame.keys()
    assert all(torch.equal(_state(model.frame_encoder)[k], v) for k, v in frame.items())
    clip_state = {k: v for k, v in svd.clip.items() if k.startswith("visual.")}
    clip = convert_clip_state_dict(clip_state, model.config.components["image_encoder"])
    assert all(torch.equal(_state(model.image_encoder)[k], v) for k, v in clip.items())

    assert model.reference_image_encoder is model.image_encoder
    assert model.reference_encoder is model.frame_encoder
    assert model.config.shared == {"reference_image_encoder": "image_encoder", "reference_encoder": "frame_encoder"}
    assert (model.config.fps_embed_dim, model.config.cond_aug_embed_dim) == (8, 16)
    assert all(p.requires_grad for p in unet.parameters())
    assert not any(t.is_meta for t in [*model.parameters(), *model.buffers()])
    frozen = (model.vae, model.image_encoder, model.frame_encoder)
    assert not any(p.requires_grad for m in frozen for p in m.parameters())
    assert report.absent == [] and report.unexpected == [] and report.missing == []
    assert report.gates["gated"] == 16 and not report.gates["ungated"]
    assert any("label_emb" in note for note in report.notes)
    assert "ignored" in report.summary()  # the CLIP text leftovers and embedder 3's decoder


def test_seed_determines_the_new_weights_only(svd: TinySVD) -> None:
    a = _state(init_from_svd(svd.safetensors, seed=0, **TINY)[0].unet)
    b = _state(init_from_svd(svd.safetensors, seed=0, **TINY)[0].unet)
    c = _state(init_from_svd(svd.safetensors, seed=1, **TINY)[0].unet)
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(_new_parts(a), _new_parts(c))
    gates = [k for k in a if k.endswith("gate_activation.weight")]
    assert not any(torch.equal(a[k], c[k]) for k in gates)
    _assert_unet_copied(c, svd.unet)


def test_dtype_casts_but_draws_the_same_numbers(svd: TinySVD) -> None:
    half = _state(init_from_svd(svd.safetensors, seed=3, dtype=torch.bfloat16, **TINY)[0].unet)
    full = _state(init_from_svd(svd.safetensors, seed=3, **TINY)[0].unet)
    assert all(v.dtype == torch.bfloat16 for v in half.values())
    assert torch.equal(_new_parts(half), _new_parts(full).to(torch.bfloat16))


def test_diffusers_folder(svd: TinySVD) -> None:
    model, report = init_from_svd(svd.folder, seed=0)
    assert model.unet.relumix_config == RELUMIX_UNET
    state = _state(model.unet)
    _assert_unet_copied(state, svd.unet)
    sgm_model, _ = init_from_svd(svd.safetensors, seed=0, **TINY)
    sgm_state = _state(sgm_model.unet)
    assert all(torch.equal(state[k], sgm_state[k]) for k in state), "same SVD and seed -> same ReLumix UNet"

    vae = _state(model.vae)
    assert vae.keys() == svd.vae.keys()
    assert all(torch.equal(vae[k], v) for k, v in svd.vae.items())
    frame = _state(model.frame_encoder)
    assert set(frame) == {k for k in svd.vae if k.startswith(("encoder.", "quant_conv."))}
    assert all(torch.equal(frame[k], svd.vae[k]) for k in frame)
    assert model.frame_encoder.encoder is model.vae.encoder  # one copy of the VAE encoder
    assert model.config.shared["frame_encoder.encoder"] == "vae.encoder"
    assert all(frame[k].data_ptr() != vae[k].data_ptr() for k in frame if k.startswith("quant_conv."))
    clip = _state(model.image_encoder)
    assert all(torch.equal(clip[k], v) for k, v in svd.transformers_clip.items())
    assert model.reference_image_encoder is model.image_encoder
    assert model.reference_encoder is model.frame_encoder
    assert model.config.components["image_encoder"].head_width == CLIP_HEAD
    assert report.absent == []


def test_unet_runs_and_sees_the_reference(svd: TinySVD) -> None:
    model, _ = init_from_svd(svd.safetensors, seed=0, **TINY)
    unet = model.unet.eval()
    frames = 3
    g = torch.Generator().manual_seed(0)
    x = torch.randn(frames, 12, 8, 8, generator=g)
    context = torch.randn(frames, 1, 64, generator=g)
    vector = torch.randn(frames, 24, generator=g)
    t = torch.full((frames,), 0.5)
    with torch.no_grad():
        out = unet(x, t, context, vector, num_frames=frames)
        other_reference = x.clone()
        other_reference[:, 8:] = torch.randn(frames, 4, 8, 8, generator=g)
        out_ref = unet(other_reference, t, context, vector, num_frames=frames)
    assert out.shape == (frames, 4, 8, 8) and torch.isfinite(out).all()
    assert not torch.allclose(out, out_ref)


def test_result_saves_and_reloads_as_relumix_and_is_then_refused(svd: TinySVD, tmp_path: Path) -> None:
    model, _ = init_from_svd(svd.folder, seed=0)
    path = save_single_file(model, tmp_path / "relumix-init.safetensors")
    loaded, report = load_relumix(path)
    original = _state(model.unet)
    assert all(torch.equal(v, original[k]) for k, v in _state(loaded.unet).items())
    assert loaded.config.shared == model.config.shared
    with pytest.raises(CheckpointError, match="already a ReLumix model"):
        init_from_svd(path)
    save_folder(model, tmp_path / "relumix-folder")
    with pytest.raises(CheckpointError, match="already a ReLumix model"):
        init_from_svd(tmp_path / "relumix-folder")


def _write(tmp_path: Path, tensors: dict[str, torch.Tensor], name: str = "x.safetensors") -> Path:
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp_path / name))
    return tmp_path / name


def test_refuses_what_is_not_stock_svd(svd: TinySVD, tmp_path: Path) -> None:
    relumix_like = dict(svd.sgm)
    relumix_like["model.diffusion_model.input_blocks.0.0.weight"] = torch.zeros(32, 12, 3, 3)
    relumix_like["model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.gate"] = torch.ones(1)
    with pytest.raises(CheckpointError, match="attention gates.*already a ReLumix model"):
        init_from_svd(_write(tmp_path, relumix_like))

    twelve = dict(svd.sgm)
    twelve["model.diffusion_model.input_blocks.0.0.weight"] = torch.zeros(32, 12, 3, 3)
    with pytest.raises(CheckpointError, match="12 input channels, as ReLumix does"):
        init_from_svd(_write(tmp_path, twelve))

    image_unet = {k: v for k, v in svd.sgm.items() if "time_stack" not in k}
    with pytest.raises(CheckpointError, match=r"image \(2-D\) UNet"):
        init_from_svd(_write(tmp_path, image_unet))

    with pytest.raises(CheckpointError, match="has no UNet"):
        init_from_svd(_write(tmp_path, {k: v for k, v in svd.sgm.items() if k.startswith("first_stage_model.")}))

    stray = dict(svd.sgm) | {"something.else": torch.zeros(1)}
    with pytest.raises(CheckpointError, match="belong to no SVD component"):
        init_from_svd(_write(tmp_path, stray))

    with pytest.raises(CheckpointError, match="not found"):
        init_from_svd(tmp_path / "missing.safetensors")

    (tmp_path / "empty-folder").mkdir()
    with pytest.raises(CheckpointError, match="unet/config.json"):
        init_from_svd(tmp_path / "empty-folder")

    image_folder = tmp_path / "sd-folder"
    (image_folder / "unet").mkdir(parents=True)
    (image_folder / "unet" / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel"}))
    with pytest.raises(CheckpointError, match=r"image \(2-D\) UNet"):
        init_from_svd(image_folder)


# ---------------------------------------------------------------------------------------------- full size


def test_full_size_on_meta(official_fixtures: Path) -> None:
    """Stock SVD's full shapes (ReLumix's key list minus gates, SVD's shapes) give ReLumix's full UNet exactly."""
    unet_keys = json.loads((official_fixtures / "unet_full_keys.json").read_text())
    comparison = unet_keys.get("comparison_with_stock_svd", {})
    if "shape_differences" not in comparison or "keys_only_in_relumix" not in comparison:
        pytest.skip("unet_full_keys.json lists no stock-SVD shapes")
    relumix_shapes = {k["name"]: tuple(k["shape"]) for k in unet_keys["keys"]}
    only_relumix = set(comparison["keys_only_in_relumix"])
    svd_shapes = {
        name: tuple(comparison["shape_differences"].get(name, {}).get("svd", shape))
        for name, shape in relumix_shapes.items()
        if name not in only_relumix
    }
    assert len(svd_shapes) == comparison["svd_num_state_dict_entries"]
    engine = official_fixtures / "engine_full_keys.json"
    if engine.is_file():  # SVD's VAE, CLIP tower (embedder 0) and VAE encoder (embedder 3) have ReLumix's shapes
        prefixes = ("first_stage_model.", "conditioner.embedders.0.", "conditioner.embedders.3.")
        for key in json.loads(engine.read_text())["keys"]:
            if key["name"].startswith(prefixes):
                svd_shapes[key["name"]] = tuple(key["shape"])
    source = DictSource(Path("svd-full-meta"), {k: torch.empty(s, device="meta") for k, s in svd_shapes.items()})

    model, report = init_from_sgm_state(source, device="meta")
    config = model.config.unet
    assert (config.in_channels, config.context_dim, config.ungated_attention) == (12, 2048, ())
    assert (config.model_channels, config.channel_mult, config.adm_in_channels) == (320, (1, 2, 4, 4), 768)
    mapper = UNetKeyMapper(config)
    prefix = unet_keys["prefix"]
    expected = {mapper(k[len(prefix) :]): s for k, s in relumix_shapes.items()}
    got = {k: tuple(v.shape) for k, v in model.unet.state_dict().items()}
    assert got == expected
    assert sum(v.numel() for v in model.unet.parameters()) == unet_keys["num_parameters"]
    assert len(model.unet.gated_attention) == 64
    assert (model.config.fps_embed_dim, model.config.cond_aug_embed_dim) == (256, 512)
    if engine.is_file():
        assert set(model.unique_components()) == {"unet", "vae", "image_encoder", "frame_encoder"}
        assert model.config.components["image_encoder"].embed_dim == 1024
        assert model.reference_image_encoder is model.image_encoder
        assert report.absent == []
