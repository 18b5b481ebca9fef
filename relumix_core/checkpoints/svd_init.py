"""Initialise a ReLumix model for training from stock Stable Video Diffusion (img2vid), as the authors did.

ReLumix is SVD with three changes to the UNet; everything else is copied:

* ``conv_in`` takes the reference latent as 4 more input channels (SVD: noisy latent | frame latent = 8; ReLumix:
  those + reference latent = 12, the new ones at channels 8-11). The old channels are copied in place, the new
  ones drawn from N(0, 0.02).
* The context doubles to [CLIP of the frame | CLIP of the reference]. Every ``attn2`` ``to_k``/``to_v`` (spatial
  ``transformer_blocks`` and temporal ``temporal_transformer_blocks``, which also reads the context) keeps SVD's
  weights for the first half of its input (the frame CLIP comes first) and gets N(0, 0.02) for the new half.
* Every attention module is gated (gate 1.0, ``gate_activation`` with ``nn.Linear``'s default init).

The ``label_emb`` (diffusers ``add_embedding``) is copied as is, as the authors did, although the meaning of its
768-dim input changes: SVD feeds fps(256) | motion bucket(256) | cond_aug(256), ReLumix fps(256) | cond_aug(512).

SVD has a single CLIP tower (embedder 0) and a single conditioning VAE encoder (embedder 3); ReLumix's reference
embedders start as copies of them. Identical copies are not duplicated: ``reference_image_encoder`` and
``reference_encoder`` share the module of ``image_encoder`` / ``frame_encoder`` (``ReLumixConfig.shared``), as the
loader does for checkpoints whose copies are identical. Both are frozen in ReLumix training, so they stay identical.
Likewise ``frame_encoder.encoder`` is the first stage's ``vae.encoder`` module when the two hold the same weights
(always from a diffusers folder, whose frame encoder is the VAE's; from an sgm file when embedder 3 equals it).

Every module is built on the meta device and receives its tensors with ``assign=True``; only the two widened kinds
of tensors (``conv_in`` and the k/v projections, about 3 % of the UNet) are newly allocated. All random numbers
come from one ``torch.Generator`` seeded with ``seed`` and are drawn in float32, in the UNet's state-dict order, so
the result depends only on the SVD weights and the seed, not on the file format or the requested dtype.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError
from ..models.clip import build_image_encoder
from ..models.relumix import ReLumixConfig, ReLumixModel, set_submodule
from ..models.unet import UNetConfig, build_unet
from ..models.vae import SCALE_FACTOR, VAEConfig, build_latent_encoder, build_temporal_vae
from .components import COMPONENTS
from .convert.unet import UNetKeyMapper, infer_unet_config
from .diffusers_configs import (
    CLIP_FILES,
    UNET_FILES,
    clip_config_from_transformers,
    read_json,
    unet_config_from_diffusers,
    vae_config_from_diffusers,
    weights_file,
)
from .official import build_and_load, group_by_component, shared_submodules
from .report import FORMAT_NAME, LoadOptions, LoadReport, load_into, materialise, report_gates
from .tensor_source import TensorSource, open_tensor_file

#: Standard deviation of the newly added weights (new conv_in channels, new halves of attn2 k/v).
NEW_WEIGHT_STD = 0.02
#: Initial value of every attention gate.
GATE_INIT = 1.0

_KV_WEIGHT = re.compile(r"\.attn2\.to_[kv]\.weight$")
_GATE = re.compile(r"\.processor\.(gate|gate_activation\.weight|gate_activation\.bias)$")
_ALREADY_RELUMIX = ("already a ReLumix model; load it with relumix_core.checkpoints.loading.load_relumix instead of "
                    "initialising")

TensorGetter = Callable[[str], torch.Tensor]


def init_from_svd(
    source: str | Path,
    *,
    seed: int = 0,
    dtype: torch.dtype | None = None,
    num_head_channels: int = 64,
    clip_head_width: int | None = None,
) -> tuple[ReLumixModel, LoadReport]:
    """A ReLumix model initialised from stock SVD, ready for training (UNet trainable, the rest frozen).

    ``source`` is an sgm single-file SVD checkpoint (``.safetensors``/``.pth``, Stability layout) or a diffusers
    SVD folder (``unet/``, ``vae/``, ``image_encoder/``). ``dtype`` None keeps the stored dtype. The head widths
    cannot be read from sgm shapes (SVD: 64 for the UNet, 80 for ViT-H/14); a diffusers folder states them in its
    configs, and those win. Raises :class:`CheckpointError` when the source is not stock SVD.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        return _init_from_diffusers(path, seed=seed, dtype=dtype)
    if not path.exists():
        raise CheckpointError(f"SVD checkpoint not found: {path}")
    return init_from_sgm_state(
        open_tensor_file(path),
        seed=seed,
        dtype=dtype,
        num_head_channels=num_head_channels,
        clip_head_width=clip_head_width,
    )


def relumix_unet_config(svd: UNetConfig) -> UNetConfig:
    """The ReLumix UNet config for an SVD one: one more latent of input channels, double context, all gated."""
    return UNetConfig.from_dict(
        {
            **svd.to_dict(),
            "in_channels": svd.in_channels + svd.out_channels,
            "context_dim": 2 * svd.context_dim,
            "ungated_attention": [],
        }
    )


# ------------------------------------------------------------------------------------------------ sgm layout


def _sgm_unet_prefix(source: TensorSource) -> str:
    if any(k.startswith("model.diffusion_model.") for k in source):
        return "model.diffusion_model."
    if "input_blocks.0.0.weight" in set(source):  # (a SafetensorsSource's `in` raises for absent names)
        return ""  # a bare UNet state dict
    if any(k.startswith(tuple(f"{name}." for name in COMPONENTS)) for k in source):
        raise CheckpointError(f"{source.path} is a ReLumix file in the project's own layout: {_ALREADY_RELUMIX}")
    sample = ", ".join(list(source)[:3])
    raise CheckpointError(
        f"{source.path} is not an SVD checkpoint: it has no UNet (no 'model.diffusion_model.*' keys; found e.g. "
        f"{sample}). Expected Stability's svd.safetensors (sgm layout) or a diffusers SVD folder."
    )


def _check_svd_unet(
    where: object, *, in_channels: int, out_channels: int, video: bool, gated: bool, mixed_context: bool = False
) -> None:
    """Refuse what is not a stock SVD UNet (image UNets, ReLumix itself, other channel layouts)."""
    if not video:
        raise CheckpointError(
            f"{where} holds an image (2-D) UNet, e.g. Stable Diffusion, not Stable Video Diffusion. "
            "Expected SVD img2vid (svd.safetensors or a diffusers stable-video-diffusion-img2vid folder)."
        )
    if gated:
        raise CheckpointError(f"{where}: the UNet has attention gates, so it is {_ALREADY_RELUMIX}")
    if in_channels == 3 * out_channels:
        raise CheckpointError(
            f"{where}: the UNet takes {in_channels} input channels, as ReLumix does; it is not stock SVD "
            f"({2 * out_channels} channels: noisy latent | frame latent). A ReLumix model loads with load_relumix."
        )
    if in_channels != 2 * out_channels:
        raise CheckpointError(
            f"{where}: the UNet takes {in_channels} input channels; stock SVD img2vid takes {2 * out_channels} "
            "(noisy latent | frame latent)"
        )
    if mixed_context:
        raise CheckpointError(f"{where}: the cross-attention inputs are not all as wide as the context; not SVD")


def init_from_sgm_state(
    source: TensorSource,
    *,
    seed: int = 0,
    dtype: torch.dtype | None = None,
    num_head_channels: int = 64,
    clip_head_width: int | None = None,
    device: torch.device | str = "cpu",
) -> tuple[ReLumixModel, LoadReport]:
    """:func:`init_from_svd` for an opened sgm state dict. ``device="meta"`` checks shapes without any data."""
    if source.metadata.get("format") == FORMAT_NAME:
        raise CheckpointError(f"{source.path} is a ReLumix single file: {_ALREADY_RELUMIX}")
    report = LoadReport(str(source.path), "stock SVD, sgm layout -> ReLumix initialisation")
    prefix = _sgm_unet_prefix(source)
    grouped = group_by_component(source, prefix, report)

    unet_keys = {k[len(prefix) :]: k for k in grouped["unet"]}
    shapes = {rel: source.shape(k) for rel, k in unet_keys.items()}
    conv_in = shapes.get("input_blocks.0.0.weight")
    conv_out = shapes.get("out.2.weight")
    if conv_in is None or conv_out is None or len(conv_in) != 4:
        raise CheckpointError(f"{source.path}: the UNet input or output convolution is missing or malformed")
    context_widths = {s[1] for n, s in shapes.items() if re.search(r"\.attn2\.to_[kv]\.weight$", n)}
    _check_svd_unet(
        source.path,
        in_channels=conv_in[1],
        out_channels=conv_out[0],
        video=any("time_stack" in k for k in shapes),
        gated=any(k.endswith(".gate") for k in shapes),
        mixed_context=len(context_widths) > 1,
    )
    if grouped["reference_image_encoder"] or grouped["reference_encoder"]:
        extra = grouped["reference_image_encoder"][:1] + grouped["reference_encoder"][:1]
        raise CheckpointError(
            f"{source.path} has reference embedders (e.g. {extra}), which stock SVD lacks; is it a ReLumix "
            "checkpoint with a modified UNet?"
        )
    if report.unexpected:
        raise CheckpointError(
            f"{source.path}: {len(report.unexpected)} keys belong to no SVD component "
            f"(e.g. {report.unexpected[:3]}); is this really a stock SVD checkpoint?"
        )

    svd_config = infer_unet_config(shapes, num_head_channels=num_head_channels)
    mapper = UNetKeyMapper(svd_config)
    by_target: dict[str, str] = {}
    for rel, key in unet_keys.items():
        try:
            by_target[mapper(rel)] = key
        except KeyError:
            report.unexpected.append(key)
    if report.unexpected:
        raise CheckpointError(f"{source.path}: UNet keys that fit no SVD block: {report.unexpected[:3]}")

    opts = LoadOptions(
        dtype=dtype, device=device, num_head_channels=num_head_channels, clip_head_width=clip_head_width
    )
    where = str(source.path)
    modules: dict[str, nn.Module] = {
        "unet": _init_unet(svd_config, lambda n: source[by_target[n]], set(by_target), seed, opts, report, where)
    }
    configs: dict[str, Any] = {"unet": modules["unet"].relumix_config}
    infer_options = {"num_head_channels": num_head_channels, "clip_head_width": clip_head_width}
    prefixes = {name: spec.sgm_prefix for name, spec in COMPONENTS.items()}
    links: dict[str, str] = {}  # frame_encoder.encoder -> vae.encoder, when identical
    for name in ("vae", "image_encoder", "frame_encoder"):
        keys = grouped[name]
        if not keys:
            continue
        spec = COMPONENTS[name]
        relative = [k[len(spec.sgm_prefix) :] for k in keys]
        configs[name] = spec.infer({r: source.shape(k) for r, k in zip(relative, keys, strict=True)}, infer_options)
        shared = shared_submodules(spec, keys, prefixes, source, modules, links, report)
        modules[name] = build_and_load(spec, configs[name], source, keys, relative, opts, report, shared)
    return _assemble(svd_config, configs, modules, report, SCALE_FACTOR, links), report


# ------------------------------------------------------------------------------------------------ the UNet


def _init_unet(
    svd: UNetConfig,
    get: TensorGetter,
    available: set[str],
    seed: int,
    opts: LoadOptions,
    report: LoadReport,
    where: str,
) -> nn.Module:
    """Build the ReLumix UNet on meta and fill it: SVD tensors copied, new inputs and gates initialised.

    ``get(name)`` returns the SVD tensor of a diffusers-named parameter; ``available`` lists those names.
    """
    config = relumix_unet_config(svd)
    with torch.device("meta"):
        unet = build_unet(config)
    expected = unet.state_dict(keep_vars=True)
    missing = sorted(n for n in expected if not _GATE.search(n) and n not in available)
    extra = sorted(available - set(expected))
    if missing or extra:
        raise CheckpointError(
            f"{where}: the SVD UNet weights do not fit the inferred SVD config "
            f"({len(missing)} missing, e.g. {missing[:3]}; {len(extra)} unexpected, e.g. {extra[:3]})"
        )
    generator = torch.Generator().manual_seed(seed)
    unet_dtype = opts.dtype or get("conv_in.weight").dtype
    state: dict[str, torch.Tensor] = {}
    kv = gates = 0
    for name, target in expected.items():
        shape = tuple(target.shape)
        if _GATE.search(name):
            state[name] = _gate_tensor(name, shape, expected, generator, unet_dtype, opts.device)
            gates += name.endswith(".gate")
            continue
        tensor = materialise(get(name), opts)
        if tuple(tensor.shape) != shape and (name == "conv_in.weight" or _KV_WEIGHT.search(name)):
            tensor = _widen(tensor, shape, generator)
            kv += name != "conv_in.weight"
        state[name] = tensor
    load_into(unet, state, f"{where} [unet]", report)
    report.notes.extend(
        [
            f"unet: conv_in widened from {svd.in_channels} to {config.in_channels} input channels; the new ones "
            f"(reference latent, channels {svd.in_channels}-{config.in_channels - 1}) ~ N(0, {NEW_WEIGHT_STD}), "
            f"seed {seed}",
            f"unet: {kv} attn2 to_k/to_v weights widened from context {svd.context_dim} to {config.context_dim}; "
            f"the first half (frame CLIP) is SVD's, the second (reference CLIP) ~ N(0, {NEW_WEIGHT_STD})",
            f"unet: {gates} attention gates added (gate {GATE_INIT}, gate_activation with nn.Linear's default init)",
            f"unet: label_emb copied as is; its {svd.adm_in_channels}-dim input now means fps | cond_aug "
            f"({svd.adm_in_channels // 3} | {svd.adm_in_channels - svd.adm_in_channels // 3}) instead of SVD's "
            "fps | motion bucket | cond_aug",
        ]
    )
    return unet.requires_grad_(True)


def _randn(shape: tuple[int, ...], generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """N(0, NEW_WEIGHT_STD) drawn in float32 on CPU (so results do not depend on dtype), then cast like ``like``."""
    if like.is_meta:
        return torch.empty(shape, dtype=like.dtype, device="meta")
    values = torch.randn(shape, generator=generator, dtype=torch.float32) * NEW_WEIGHT_STD
    return values.to(dtype=like.dtype, device=like.device)


def _widen(tensor: torch.Tensor, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """``tensor`` grown along its input dim (dim 1) to ``shape``: old values first, new ones random."""
    old = tensor.shape[1]
    if len(shape) != tensor.dim() or shape[0] != tensor.shape[0] or shape[2:] != tuple(tensor.shape[2:]):
        raise CheckpointError(f"cannot widen a {list(tensor.shape)} tensor to {list(shape)}")
    if shape[1] <= old:
        raise CheckpointError(f"a {list(tensor.shape)} tensor is already as wide as ReLumix's {list(shape)}")
    new = _randn((shape[0], shape[1] - old, *shape[2:]), generator, tensor)
    return torch.cat([tensor, new], dim=1)


def _gate_tensor(
    name: str,
    shape: tuple[int, ...],
    expected: Mapping[str, torch.Tensor],
    generator: torch.Generator,
    dtype: torch.dtype,
    device: torch.device | str,
) -> torch.Tensor:
    """The initial value of a gate parameter: ``GATE_INIT``, or ``nn.Linear``'s default init with ``generator``."""
    if str(device) == "meta":
        return torch.empty(shape, dtype=dtype, device="meta")
    if name.endswith(".gate"):
        out = torch.full(shape, GATE_INIT, dtype=torch.float32)
    elif name.endswith(".weight"):
        out = nn.init.kaiming_uniform_(torch.empty(shape), a=math.sqrt(5), generator=generator)
    else:
        fan_in = expected[name[: -len("bias")] + "weight"].shape[1]
        bound = 1 / math.sqrt(fan_in)
        out = nn.init.uniform_(torch.empty(shape), -bound, bound, generator=generator)
    return out.to(dtype=dtype, device=device)


# ------------------------------------------------------------------------------------------------ assembling


def _assemble(
    svd: UNetConfig,
    configs: dict[str, Any],
    modules: dict[str, nn.Module],
    report: LoadReport,
    scale_factor: float,
    shared: dict[str, str] | None = None,
) -> ReLumixModel:
    """The model: consistency checks, shared reference embedders (and the ``shared`` submodule links already
    made), conditioning widths, report."""
    clip = configs.get("image_encoder")
    if clip is not None and clip.embed_dim != svd.context_dim:
        raise CheckpointError(
            f"{report.source}: the CLIP tower embeds to {clip.embed_dim} dims but the UNet context is "
            f"{svd.context_dim}; these do not belong together"
        )
    for name in ("vae", "frame_encoder"):
        if name in configs and configs[name].latent_channels != svd.out_channels:
            raise CheckpointError(
                f"{report.source}: the {name} makes {configs[name].latent_channels}-channel latents but the UNet "
                f"denoises {svd.out_channels} channels"
            )
    config = ReLumixConfig(components=configs, scale_factor=scale_factor, shared=dict(shared or {}))
    for reference, original in (("reference_image_encoder", "image_encoder"), ("reference_encoder", "frame_encoder")):
        if original in modules:
            config.shared[reference] = original
            report.notes.append(f"{reference} starts as a copy of {original} and shares its module (both frozen)")
    config.fps_embed_dim = svd.adm_in_channels // 3
    config.cond_aug_embed_dim = svd.adm_in_channels - config.fps_embed_dim
    report.absent = [n for n in COMPONENTS if n not in modules and n not in config.shared]
    report_gates(report, modules["unet"])
    report.config = config
    report.dtype = str(next(modules["unet"].parameters()).dtype).replace("torch.", "")
    return ReLumixModel(config, modules)


def _load_module(
    module: nn.Module, source: TensorSource, names: Mapping[str, str], opts: LoadOptions, label: str,
    report: LoadReport, linked: tuple[str, ...] = (),
) -> nn.Module:
    """Fill ``module`` (built on meta) from ``source``: ``names`` maps module names to source names; ``linked``
    submodules are another component's and take nothing."""
    state = {target: materialise(source[key], opts) for target, key in names.items()}
    return load_into(module, state, f"{source.path} [{label}]", report, linked)


def _init_from_diffusers(folder: Path, *, seed: int, dtype: torch.dtype | None) -> tuple[ReLumixModel, LoadReport]:
    """:func:`init_from_svd` for a diffusers SVD folder."""
    index = folder / "model_index.json"
    if index.is_file() and read_json(index).get("_class_name") == "ReLumixModel":
        raise CheckpointError(f"{folder} is a ReLumix folder: {_ALREADY_RELUMIX}")
    if not (folder / "unet" / "config.json").is_file():
        raise CheckpointError(
            f"{folder} has no unet/config.json; expected a diffusers SVD folder (unet/, vae/, image_encoder/) "
            "or an sgm SVD checkpoint file"
        )
    report = LoadReport(str(folder), "stock SVD, diffusers folder -> ReLumix initialisation")
    opts = LoadOptions(dtype=dtype)

    unet_dir = folder / "unet"
    svd_config = unet_config_from_diffusers(read_json(unet_dir / "config.json"), unet_dir / "config.json")
    unet_source = open_tensor_file(weights_file(unet_dir, UNET_FILES))
    _check_svd_unet(
        unet_dir,
        in_channels=svd_config.in_channels,
        out_channels=svd_config.out_channels,
        video=True,
        gated=any(_GATE.search(k) for k in unet_source),
    )
    conv_in = unet_source.shape("conv_in.weight") if "conv_in.weight" in set(unet_source) else None
    if conv_in is None or conv_in[1] != svd_config.in_channels:
        raise CheckpointError(f"{unet_dir}: conv_in.weight {conv_in} does not match in_channels in config.json")
    modules: dict[str, nn.Module] = {
        "unet": _init_unet(
            svd_config, unet_source.__getitem__, set(unet_source), seed, opts, report, str(unet_source.path)
        )
    }
    configs: dict[str, Any] = {"unet": modules["unet"].relumix_config}

    scale_factor = SCALE_FACTOR
    shared: dict[str, str] = {}
    vae_dir = folder / "vae"
    if (vae_dir / "config.json").is_file():
        vae_json = read_json(vae_dir / "config.json")
        vae_config = vae_config_from_diffusers(vae_json, vae_dir / "config.json")
        scale_factor = float(vae_json.get("scaling_factor", SCALE_FACTOR))
        source = open_tensor_file(weights_file(vae_dir, UNET_FILES))
        with torch.device("meta"):
            vae = build_temporal_vae(vae_config)
        modules["vae"] = _load_module(vae, source, {k: k for k in source}, opts, "vae", report)
        configs["vae"] = vae_config
        # The frame encoder is what diffusers' SVD pipeline encodes the conditioning frame with: encoder + quant_conv.
        # The encoder is the VAE's own module (one copy); quant_conv gets its own tensors.
        encoder_config = VAEConfig.from_dict({**vae_config.to_dict(), "embed_dim": vae_config.z_channels})
        with torch.device("meta"):
            frame_encoder = build_latent_encoder(encoder_config)
        set_submodule(frame_encoder, "encoder", modules["vae"].encoder)
        names = {k: k for k in source if k.startswith("quant_conv.")}
        frame_encoder = _load_module(frame_encoder, source, names, opts, "frame_encoder", report, ("encoder",))
        _unshare(frame_encoder.quant_conv, modules["vae"])
        modules["frame_encoder"], configs["frame_encoder"] = frame_encoder, encoder_config
        shared["frame_encoder.encoder"] = "vae.encoder"
        report.notes.append(
            "frame_encoder = the diffusers VAE's encoder (the same module, frame_encoder.encoder -> vae.encoder) "
            "+ its own copy of quant_conv"
        )

    clip_dir = folder / "image_encoder"
    if (clip_dir / "config.json").is_file():
        clip_config = clip_config_from_transformers(read_json(clip_dir / "config.json"), clip_dir / "config.json")
        source = open_tensor_file(weights_file(clip_dir, CLIP_FILES))
        with torch.device("meta"):
            clip = build_image_encoder(clip_config)
        names = {k: k for k in source if not k.endswith("position_ids")}
        modules["image_encoder"] = _load_module(clip, source, names, opts, "image_encoder", report)
        configs["image_encoder"] = clip_config
    return _assemble(svd_config, configs, modules, report, scale_factor, shared), report


def _unshare(module: nn.Module, other: nn.Module) -> None:
    """Give ``module`` its own storage where it aliases ``other`` (safetensors refuses to save shared tensors)."""
    taken = {t.data_ptr() for t in other.state_dict().values() if t.numel()}
    for sub in module.modules():
        for name, param in list(sub.named_parameters(recurse=False)):
            if param.numel() and param.data_ptr() in taken:
                setattr(sub, name, nn.Parameter(param.detach().clone(), requires_grad=param.requires_grad))


__all__ = [
    "GATE_INIT",
    "NEW_WEIGHT_STD",
    "clip_config_from_transformers",
    "init_from_sgm_state",
    "init_from_svd",
    "relumix_unet_config",
    "unet_config_from_diffusers",
    "vae_config_from_diffusers",
]
