"""sgm autoencoder weights to the diffusers modules of :mod:`relumix_core.models.vae`, and config inference.

Two sgm layouts are handled, with names relative to their prefix:

* ``first_stage_model.``: ``encoder.*`` (Encoder, no quant_conv) and ``decoder.*`` (temporal ``VideoDecoder``)
  -> ``AutoencoderKLTemporalDecoder`` (:func:`convert_first_stage_key`, plus the identity ``quant_conv`` from
  :func:`first_stage_extra_tensors`).
* ``conditioner.embedders.{3,4}.encoder.`` (``AutoencoderKLModeOnly``): ``encoder.*`` and ``quant_conv.*`` ->
  :class:`LatentEncoder` (:func:`convert_latent_encoder_key`). Its ``decoder.*`` (2-D) and ``post_quant_conv.*``
  never run at inference: the converter returns ``[]`` for them, and :func:`is_unused_latent_encoder_key` lets the
  caller list them as ignored.

Everything works on meta tensors; renamed tensors are returned as the same object (attention 1x1 conv weights
become views with the Linear shape), so no data is copied.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

import torch
from diffusers import AutoencoderKLTemporalDecoder

from ...errors import CheckpointError
from ...models.vae import LatentEncoder, VAEConfig, build_latent_encoder, build_temporal_vae

Shape = tuple[int, ...]
Pair = tuple[str, torch.Tensor]

RESNET_RENAMES = {
    "norm1": "norm1",
    "conv1": "conv1",
    "norm2": "norm2",
    "conv2": "conv2",
    "nin_shortcut": "conv_shortcut",
}
TIME_STACK_RENAMES = {"in_layers.0": "norm1", "in_layers.2": "conv1", "out_layers.0": "norm2", "out_layers.3": "conv2"}
ATTN_RENAMES = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}
GROUPS = ("encoder", "decoder", "quant_conv", "post_quant_conv")
PARAM = r"(weight|bias)"


# ---------------------------------------------------------------------------------------------- sgm layout


def _resnet_shapes(prefix: str, cin: int, cout: int, temporal: Shape | None = None) -> dict[str, Shape]:
    """sgm ``ResnetBlock`` (or ``VideoResBlock`` when ``temporal`` gives the time kernel)."""
    s = {
        f"{prefix}norm1.weight": (cin,),
        f"{prefix}norm1.bias": (cin,),
        f"{prefix}conv1.weight": (cout, cin, 3, 3),
        f"{prefix}conv1.bias": (cout,),
        f"{prefix}norm2.weight": (cout,),
        f"{prefix}norm2.bias": (cout,),
        f"{prefix}conv2.weight": (cout, cout, 3, 3),
        f"{prefix}conv2.bias": (cout,),
    }
    if cin != cout:
        s[f"{prefix}nin_shortcut.weight"] = (cout, cin, 1, 1)
        s[f"{prefix}nin_shortcut.bias"] = (cout,)
    if temporal is not None:
        s[f"{prefix}mix_factor"] = (1,)
        for layer in TIME_STACK_RENAMES:
            conv = layer.endswith("2") or layer.endswith("3")
            s[f"{prefix}time_stack.{layer}.weight"] = (cout, cout, *temporal) if conv else (cout,)
            s[f"{prefix}time_stack.{layer}.bias"] = (cout,)
    return s


def _attn_shapes(prefix: str, c: int) -> dict[str, Shape]:
    s = {f"{prefix}norm.weight": (c,), f"{prefix}norm.bias": (c,)}
    for layer in ("q", "k", "v", "proj_out"):
        s[f"{prefix}{layer}.weight"] = (c, c, 1, 1)
        s[f"{prefix}{layer}.bias"] = (c,)
    return s


def _encoder_shapes(c: VAEConfig) -> dict[str, Shape]:
    s: dict[str, Shape] = {"conv_in.weight": (c.ch, c.in_channels, 3, 3), "conv_in.bias": (c.ch,)}
    block_in = c.ch
    for i, block_out in enumerate(c.block_out_channels):
        for j in range(c.num_res_blocks):
            s |= _resnet_shapes(f"down.{i}.block.{j}.", block_in, block_out)
            block_in = block_out
            if i in c.attn_levels:
                s |= _attn_shapes(f"down.{i}.attn.{j}.", block_out)
        if i != c.num_levels - 1:
            s |= {f"down.{i}.downsample.conv.weight": (block_out, block_out, 3, 3)}
            s |= {f"down.{i}.downsample.conv.bias": (block_out,)}
    s |= _mid_shapes(block_in, None)
    s |= {"norm_out.weight": (block_in,), "norm_out.bias": (block_in,)}
    s |= {"conv_out.weight": (2 * c.z_channels, block_in, 3, 3), "conv_out.bias": (2 * c.z_channels,)}
    return s


def _mid_shapes(ch: int, temporal: Shape | None) -> dict[str, Shape]:
    return (
        _resnet_shapes("mid.block_1.", ch, ch, temporal)
        | _attn_shapes("mid.attn_1.", ch)
        | _resnet_shapes("mid.block_2.", ch, ch, temporal)
    )


def _decoder_shapes(c: VAEConfig, temporal: bool) -> dict[str, Shape]:
    kernel = tuple(c.video_kernel_size) if temporal else None
    block_in = c.block_out_channels[-1]
    s: dict[str, Shape] = {"conv_in.weight": (block_in, c.z_channels, 3, 3), "conv_in.bias": (block_in,)}
    s |= _mid_shapes(block_in, kernel)
    for i in reversed(range(c.num_levels)):
        block_out = c.block_out_channels[i]
        for j in range(c.num_res_blocks + 1):
            s |= _resnet_shapes(f"up.{i}.block.{j}.", block_in, block_out, kernel)
            block_in = block_out
            if i in c.attn_levels:
                s |= _attn_shapes(f"up.{i}.attn.{j}.", block_out)
        if i != 0:
            s |= {
                f"up.{i}.upsample.conv.weight": (block_out, block_out, 3, 3),
                f"up.{i}.upsample.conv.bias": (block_out,),
            }
    s |= {"norm_out.weight": (block_in,), "norm_out.bias": (block_in,)}
    s |= {"conv_out.weight": (c.out_channels, block_in, 3, 3), "conv_out.bias": (c.out_channels,)}
    if kernel is not None:
        s |= {"conv_out.time_mix_conv.weight": (c.out_channels, c.out_channels, *kernel)}
        s |= {"conv_out.time_mix_conv.bias": (c.out_channels,)}
    return s


def sgm_vae_shapes(config: VAEConfig, part: str = "first_stage") -> dict[str, Shape]:
    """Every sgm state-dict name (relative to the prefix) and shape for ``config``.

    ``part`` is ``"first_stage"`` (Encoder + temporal VideoDecoder) or ``"latent_encoder"``
    (AutoencoderKLModeOnly: Encoder, quant_conv, 2-D Decoder, post_quant_conv). Used to validate checkpoints and
    to make synthetic sgm checkpoints in tests.
    """
    enc = {f"encoder.{k}": v for k, v in _encoder_shapes(config).items()}
    if part == "first_stage":
        return enc | {f"decoder.{k}": v for k, v in _decoder_shapes(config, temporal=True).items()}
    if part == "latent_encoder":
        if config.embed_dim is None:
            raise ValueError("latent_encoder shapes need config.embed_dim")
        z, e = config.z_channels, config.embed_dim
        quant = {"quant_conv.weight": (2 * e, 2 * z, 1, 1), "quant_conv.bias": (2 * e,)}
        post = {"post_quant_conv.weight": (z, e, 1, 1), "post_quant_conv.bias": (z,)}
        dec = {f"decoder.{k}": v for k, v in _decoder_shapes(config, temporal=False).items()}
        return enc | quant | dec | post
    raise ValueError(f"part must be 'first_stage' or 'latent_encoder', got {part!r}")


# ---------------------------------------------------------------------------------------------- inference


def _shape(shapes: Mapping[str, Shape], name: str, ndim: int, what: str) -> Shape:
    if name not in shapes:
        raise CheckpointError(f"{what}: tensor '{name}' is missing")
    shape = shapes[name]
    if len(shape) != ndim:
        raise CheckpointError(f"{what}: '{name}' has shape {list(shape)}, expected a {ndim}-D tensor")
    return shape


def _indices(shapes: Mapping[str, Shape], pattern: str) -> list[int]:
    """Sorted distinct integers captured by ``pattern`` (one group) at the start of the names."""
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in shapes if (m := rx.match(k))})


def _levels(shapes: Mapping[str, Shape], kind: str, what: str) -> tuple[int, list[int]]:
    """(number of levels, resnets per level) of ``down``/``up``; levels must be 0..L-1, all the same depth."""
    levels = _indices(shapes, rf"{kind}\.(\d+)\.")
    if not levels or levels != list(range(len(levels))):
        raise CheckpointError(f"{what}: '{kind}.N' levels should be 0..L-1, found {levels}")
    depths = [_indices(shapes, rf"{kind}\.{i}\.block\.(\d+)\.") for i in levels]
    for i, d in enumerate(depths):
        if not d or d != list(range(len(d))):
            raise CheckpointError(f"{what}: '{kind}.{i}.block.N' should be 0..n-1, found {d}")
    if len({len(d) for d in depths}) != 1:
        raise CheckpointError(f"{what}: levels have different resnet counts {[len(d) for d in depths]}")
    return len(levels), [len(d) for d in depths]


def _infer_encoder(s: Mapping[str, Shape]) -> dict:
    what = "VAE encoder"
    ch, in_channels = _shape(s, "conv_in.weight", 4, what)[:2]
    n_levels, depths = _levels(s, "down", what)
    block_out = [_shape(s, f"down.{i}.block.0.conv1.weight", 4, what)[0] for i in range(n_levels)]
    moments = _shape(s, "conv_out.weight", 4, what)[0]
    if moments % 2:
        raise CheckpointError(f"{what}: conv_out has {moments} outputs; a Gaussian posterior (double_z) needs 2*z")
    return {
        "in_channels": in_channels,
        "ch": ch,
        "block_out_channels": tuple(block_out),
        "num_res_blocks": depths[0],
        "z_channels": moments // 2,
        "attn_levels": tuple(_indices(s, r"down\.(\d+)\.attn\.")),
    }


def _infer_decoder(s: Mapping[str, Shape]) -> dict:
    what = "VAE decoder"
    z = _shape(s, "conv_in.weight", 4, what)[1]
    n_levels, depths = _levels(s, "up", what)
    if depths[0] < 2:
        raise CheckpointError(f"{what}: up levels have {depths[0]} resnet(s); sgm decoders have num_res_blocks+1 >= 2")
    block_out = [_shape(s, f"up.{i}.block.0.conv1.weight", 4, what)[0] for i in range(n_levels)]
    out = {
        "out_channels": _shape(s, "conv_out.weight", 4, what)[0],
        "block_out_channels": tuple(block_out),
        "num_res_blocks": depths[0] - 1,
        "z_channels": z,
        "attn_levels": tuple(_indices(s, r"up\.(\d+)\.attn\.")),
    }
    time_conv = "mid.block_1.time_stack.in_layers.2.weight"
    if time_conv in s:
        out["video_kernel_size"] = tuple(_shape(s, time_conv, 5, what)[2:])
    return out


def _merge(enc: dict | None, dec: dict | None) -> dict:
    if enc is None or dec is None:
        return dict(enc or dec or {})
    for key in ("block_out_channels", "num_res_blocks", "z_channels", "attn_levels"):
        if enc[key] != dec[key]:
            raise CheckpointError(f"VAE encoder and decoder disagree on {key}: {enc[key]} vs {dec[key]}")
    return dec | enc


def _group(shapes: Mapping[str, Sequence[int]]) -> dict[str, dict[str, Shape]]:
    groups: dict[str, dict[str, Shape]] = {g: {} for g in GROUPS}
    unknown = []
    for name, shape in shapes.items():
        head, _, rest = name.partition(".")
        if head in groups and rest:
            groups[head][rest] = tuple(int(d) for d in shape)
        else:
            unknown.append(name)
    if unknown:
        raise CheckpointError(
            f"not sgm autoencoder weights: unexpected names {sorted(unknown)[:5]} (expected {', '.join(GROUPS)}.*, "
            "relative to 'first_stage_model.' or 'conditioner.embedders.N.encoder.')"
        )
    if not groups["encoder"] and not groups["decoder"]:
        raise CheckpointError("no 'encoder.*' or 'decoder.*' weights: not an sgm autoencoder")
    return groups


def _embed_dim(groups: Mapping[str, Mapping[str, Shape]], z: int) -> int | None:
    if not groups["quant_conv"]:
        if groups["post_quant_conv"]:
            return _shape(groups["post_quant_conv"], "weight", 4, "post_quant_conv")[1]
        return None
    out, inp = _shape(groups["quant_conv"], "weight", 4, "quant_conv")[:2]
    if out % 2 or inp != 2 * z:
        raise CheckpointError(f"quant_conv weight is [{out}, {inp}, 1, 1]; expected [2*embed_dim, {2 * z}, 1, 1]")
    return out // 2


def _validate(groups: Mapping[str, Mapping[str, Shape]], config: VAEConfig, part: str) -> None:
    """Compare every given tensor with the sgm layout of ``config`` (only for the parts present)."""
    expected = sgm_vae_shapes(config, part)
    given = {f"{g}.{k}": v for g, d in groups.items() for k, v in d.items()}
    present = {g for g, d in groups.items() if d}
    expected = {k: v for k, v in expected.items() if k.partition(".")[0] in present}
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    wrong = sorted(k for k in set(given) & set(expected) if given[k] != expected[k])
    if missing or unexpected or wrong:
        detail = "; ".join(
            f"{label} {names[:5]}" + (f" (+{len(names) - 5} more)" if len(names) > 5 else "")
            for label, names in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
            if names
        )
        hint = "; ".join(f"{k}: {list(given[k])} vs expected {list(expected[k])}" for k in wrong[:3])
        raise CheckpointError(
            f"sgm {part} autoencoder weights do not fit the inferred config {config.to_dict()}: {detail}"
            + (f" [{hint}]" if hint else "")
        )


def infer_vae_config(shapes: Mapping[str, Sequence[int]], norm_num_groups: int = 32) -> VAEConfig:
    """The :class:`VAEConfig` of sgm autoencoder weights, from their shapes alone.

    Names are relative to ``first_stage_model.`` (``encoder.*``, temporal ``decoder.*``) or to
    ``conditioner.embedders.N.encoder.`` (``encoder.*``, ``quant_conv.*``, 2-D ``decoder.*``,
    ``post_quant_conv.*``). Either of encoder/decoder may be absent. Every given tensor is then checked against
    the full sgm layout of the inferred config; anything that does not fit raises :class:`CheckpointError`.
    """
    groups = _group(shapes)
    enc = _infer_encoder(groups["encoder"]) if groups["encoder"] else None
    dec = _infer_decoder(groups["decoder"]) if groups["decoder"] else None
    merged = _merge(enc, dec)
    merged.setdefault("ch", merged["block_out_channels"][0])
    merged["embed_dim"] = _embed_dim(groups, merged["z_channels"])
    config = VAEConfig(norm_num_groups=norm_num_groups, **merged)
    norm_widths = {config.ch, *config.block_out_channels}
    bad = sorted(c for c in norm_widths if c % norm_num_groups)
    if bad:
        raise CheckpointError(f"GroupNorm({norm_num_groups}) needs channel counts divisible by it; got {bad}")
    if len(config.video_kernel_size) != 3 or any(k % 2 == 0 for k in config.video_kernel_size):
        raise CheckpointError(f"temporal kernel {list(config.video_kernel_size)} is not an odd 3-D kernel")
    is_embedder = bool(groups["quant_conv"] or groups["post_quant_conv"])
    _validate(groups, config, "latent_encoder" if is_embedder else "first_stage")
    return config


# ---------------------------------------------------------------------------------------------- key mapping


def _param_name(rest: str, renames: Mapping[str, str], full: str) -> str:
    layer, _, param = rest.rpartition(".")
    if layer not in renames or param not in ("weight", "bias"):
        raise KeyError(full)
    return f"{renames[layer]}.{param}"


def _attn(rest: str, tensor: torch.Tensor, target: str, full: str) -> Pair:
    """sgm AttnBlock (1x1 convs) -> diffusers Attention (Linear): weights [C, C, 1, 1] become views [C, C]."""
    name = _param_name(rest, ATTN_RENAMES, full)
    if name.endswith("weight") and not name.startswith("group_norm") and tensor.dim() == 4:
        tensor = tensor.reshape(tensor.shape[0], tensor.shape[1])
    return f"{target}.{name}", tensor


def _video_resnet(rest: str, full: str) -> str:
    if rest == "mix_factor":
        return "time_mixer.mix_factor"
    if rest.startswith("time_stack."):
        return "temporal_res_block." + _param_name(rest[len("time_stack.") :], TIME_STACK_RENAMES, full)
    return "spatial_res_block." + _param_name(rest, RESNET_RENAMES, full)


def _check_index(ok: bool, full: str) -> None:
    if not ok:
        raise KeyError(full)


def _encoder_key(rest: str, tensor: torch.Tensor, c: VAEConfig, full: str) -> Pair:
    """``rest`` relative to ``encoder.`` -> diffusers name relative to ``encoder.``."""
    simple = {"conv_in": "conv_in", "norm_out": "conv_norm_out", "conv_out": "conv_out"}
    if m := re.fullmatch(rf"(conv_in|norm_out|conv_out)\.{PARAM}", rest):
        return f"{simple[m.group(1)]}.{m.group(2)}", tensor
    if m := re.fullmatch(r"down\.(\d+)\.block\.(\d+)\.(.+)", rest):
        i, j = int(m.group(1)), int(m.group(2))
        _check_index(i < c.num_levels and j < c.num_res_blocks, full)
        return f"down_blocks.{i}.resnets.{j}.{_param_name(m.group(3), RESNET_RENAMES, full)}", tensor
    if m := re.fullmatch(r"down\.(\d+)\.attn\.(\d+)\.(.+)", rest):
        i, j = int(m.group(1)), int(m.group(2))
        _check_index(i in c.attn_levels and j < c.num_res_blocks, full)
        return _attn(m.group(3), tensor, f"down_blocks.{i}.attentions.{j}", full)
    if m := re.fullmatch(rf"down\.(\d+)\.downsample\.conv\.{PARAM}", rest):
        i = int(m.group(1))
        _check_index(i < c.num_levels - 1, full)
        return f"down_blocks.{i}.downsamplers.0.conv.{m.group(2)}", tensor
    if m := re.fullmatch(r"mid\.block_([12])\.(.+)", rest):
        return f"mid_block.resnets.{int(m.group(1)) - 1}.{_param_name(m.group(2), RESNET_RENAMES, full)}", tensor
    if m := re.fullmatch(r"mid\.attn_1\.(.+)", rest):
        return _attn(m.group(1), tensor, "mid_block.attentions.0", full)
    raise KeyError(full)


def _decoder_key(rest: str, tensor: torch.Tensor, c: VAEConfig, full: str) -> Pair:
    """``rest`` relative to sgm ``decoder.`` (VideoDecoder) -> diffusers TemporalDecoder name."""
    simple = {"conv_in": "conv_in", "norm_out": "conv_norm_out", "conv_out": "conv_out"}
    if m := re.fullmatch(rf"(conv_in|norm_out|conv_out)\.{PARAM}", rest):
        return f"{simple[m.group(1)]}.{m.group(2)}", tensor
    if m := re.fullmatch(rf"conv_out\.time_mix_conv\.{PARAM}", rest):
        return f"time_conv_out.{m.group(1)}", tensor
    if m := re.fullmatch(r"mid\.block_([12])\.(.+)", rest):
        return f"mid_block.resnets.{int(m.group(1)) - 1}.{_video_resnet(m.group(2), full)}", tensor
    if m := re.fullmatch(r"mid\.attn_1\.(.+)", rest):
        return _attn(m.group(1), tensor, "mid_block.attentions.0", full)
    if m := re.fullmatch(r"up\.(\d+)\.block\.(\d+)\.(.+)", rest):
        i, j = int(m.group(1)), int(m.group(2))
        _check_index(i < c.num_levels and j <= c.num_res_blocks, full)
        return f"up_blocks.{c.num_levels - 1 - i}.resnets.{j}.{_video_resnet(m.group(3), full)}", tensor
    if m := re.fullmatch(r"up\.(\d+)\.attn\.(\d+)\.(.+)", rest):
        i, j = int(m.group(1)), int(m.group(2))
        _check_index(i in c.attn_levels and j <= c.num_res_blocks, full)
        return _attn(m.group(3), tensor, f"up_blocks.{c.num_levels - 1 - i}.attentions.{j}", full)
    if m := re.fullmatch(rf"up\.(\d+)\.upsample\.conv\.{PARAM}", rest):
        i = int(m.group(1))
        _check_index(0 < i < c.num_levels, full)
        return f"up_blocks.{c.num_levels - 1 - i}.upsamplers.0.conv.{m.group(2)}", tensor
    raise KeyError(full)


def convert_first_stage_key(name: str, tensor: torch.Tensor, config: VAEConfig) -> list[Pair]:
    """One sgm tensor (name relative to ``first_stage_model.``) -> ``AutoencoderKLTemporalDecoder`` names.

    Raises ``KeyError`` for names that are not part of sgm's first stage for ``config``.
    """
    head, _, rest = name.partition(".")
    if head == "encoder":
        new, t = _encoder_key(rest, tensor, config, name)
    elif head == "decoder":
        new, t = _decoder_key(rest, tensor, config, name)
    else:
        raise KeyError(name)
    return [(f"{head}.{new}", t)]


def first_stage_extra_tensors(
    config: VAEConfig, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> dict[str, torch.Tensor]:
    """The identity ``quant_conv`` diffusers applies in ``encode`` (sgm's first stage has none)."""
    n = 2 * config.z_channels
    weight = torch.eye(n, dtype=dtype, device=device).reshape(n, n, 1, 1)
    return {"quant_conv.weight": weight, "quant_conv.bias": torch.zeros(n, dtype=dtype, device=device)}


def is_unused_latent_encoder_key(name: str) -> bool:
    """True for embedder autoencoder parts that never run at inference (2-D ``decoder``, ``post_quant_conv``)."""
    return name.startswith(("decoder.", "post_quant_conv."))


def convert_latent_encoder_key(name: str, tensor: torch.Tensor, config: VAEConfig) -> list[Pair]:
    """One sgm tensor (relative to ``conditioner.embedders.N.encoder.``) -> :class:`LatentEncoder` names.

    Returns ``[]`` for the unused ``decoder.*`` / ``post_quant_conv.*`` (see :func:`is_unused_latent_encoder_key`)
    and raises ``KeyError`` for anything else unknown.
    """
    if is_unused_latent_encoder_key(name):
        return []
    if m := re.fullmatch(rf"quant_conv\.{PARAM}", name):
        return [(f"quant_conv.{m.group(1)}", tensor)]
    head, _, rest = name.partition(".")
    if head != "encoder":
        raise KeyError(name)
    new, t = _encoder_key(rest, tensor, config, name)
    return [(f"encoder.{new}", t)]


# ---------------------------------------------------------------------------------------------- loading


def _convert_all(
    state: Mapping[str, torch.Tensor], config: VAEConfig, fn: Callable[[str, torch.Tensor, VAEConfig], list[Pair]]
) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        for new, t in fn(name, tensor, config):
            if new in out:
                raise CheckpointError(f"two sgm tensors map to '{new}'")
            out[new] = t
    return out


def convert_first_stage(state: Mapping[str, torch.Tensor], config: VAEConfig) -> dict[str, torch.Tensor]:
    """Whole first-stage state dict (relative names) -> diffusers state dict, identity quant_conv included."""
    out = _convert_all(state, config, convert_first_stage_key)
    ref = next(iter(state.values()))
    return out | first_stage_extra_tensors(config, ref.dtype, ref.device)


def convert_latent_encoder(
    state: Mapping[str, torch.Tensor], config: VAEConfig
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Whole embedder autoencoder state dict -> (LatentEncoder state dict, ignored sgm names)."""
    ignored = sorted(k for k in state if is_unused_latent_encoder_key(k))
    return _convert_all(state, config, convert_latent_encoder_key), ignored


def load_first_stage(
    state: Mapping[str, torch.Tensor], config: VAEConfig | None = None
) -> AutoencoderKLTemporalDecoder:
    """Build (on meta) and load sgm first-stage weights (relative names) without copying them."""
    config = config or infer_vae_config({k: v.shape for k, v in state.items()})
    with torch.device("meta"):
        vae = build_temporal_vae(config)
    vae.load_state_dict(convert_first_stage(state, config), strict=True, assign=True)
    return vae.eval()


def load_latent_encoder(state: Mapping[str, torch.Tensor], config: VAEConfig | None = None) -> LatentEncoder:
    """Build (on meta) and load an embedder autoencoder (relative names); decoder/post_quant_conv are dropped."""
    config = config or infer_vae_config({k: v.shape for k, v in state.items()})
    with torch.device("meta"):
        module = build_latent_encoder(config)
    module.load_state_dict(convert_latent_encoder(state, config)[0], strict=True, assign=True)
    return module.eval()
