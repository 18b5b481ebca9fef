"""The authors' layout: ``relumix.pth`` or an sgm-layout ``.safetensors`` (whole engine or UNet only).

Every module is built on the meta device and receives the converted tensors with ``load_state_dict(strict=True,
assign=True)``, so the weights are never held twice. Identical copies in the official layout (the reference
embedders, and the embedders' VAE encoder, which is the first stage's) are loaded once and linked
(``ReLumixConfig.shared``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError
from ..models.relumix import TRAINED_FRAMES, ReLumixConfig, ReLumixModel, set_submodule
from .components import COMPONENTS, IGNORED_PREFIXES, ComponentSpec, component_for
from .report import LoadOptions, LoadReport, load_into, materialise, report_gates
from .tensor_source import TensorSource


def _unet_prefix(source: TensorSource) -> str:
    if any(k.startswith("model.diffusion_model.") for k in source):
        return "model.diffusion_model."
    if "input_blocks.0.0.weight" in source:
        return ""  # a bare UNet state dict
    sample = ", ".join(list(source)[:3])
    raise CheckpointError(
        f"{source.path} is not a ReLumix checkpoint: it has no UNet (no 'model.diffusion_model.*' keys; "
        f"found e.g. {sample}). Expected the official relumix.pth or a file made by 'relumix convert'."
    )


def _check_is_relumix_unet(shapes: Mapping[str, tuple[int, ...]], path: Path) -> None:
    """Recognise the usual wrong files (image UNets, stock SVD) before trying to build anything."""
    if not any("time_stack" in k for k in shapes):
        raise CheckpointError(
            f"{path} holds an image (2-D) UNet, e.g. Stable Diffusion 1.x/2.x, not a video UNet. "
            "Expected the ReLumix checkpoint (relumix.pth from huggingface.co/lez/relumix)."
        )
    conv_in = shapes.get("input_blocks.0.0.weight")
    if conv_in is None or len(conv_in) != 4:
        raise CheckpointError(f"{path}: UNet input convolution missing or malformed")
    if conv_in[1] != 12:
        hint = (
            " This looks like stock Stable Video Diffusion (8 input channels); ReLumix is a fine-tune with 12. "
            "To start training from SVD, use relumix_core.checkpoints.svd_init."
            if conv_in[1] == 8
            else ""
        )
        raise CheckpointError(f"{path}: the UNet takes {conv_in[1]} input channels; ReLumix takes 12.{hint}")
    if not any(k.endswith(".gate") for k in shapes):
        raise CheckpointError(
            f"{path}: the video UNet has no attention gates, so it is not ReLumix (12-channel SVD variant?)"
        )


def _same_tensors(source: TensorSource, prefix_a: str, prefix_b: str, names: list[str]) -> bool | None:
    """Whether ``prefix_a + name`` and ``prefix_b + name`` hold equal tensors for every name, and nothing else is
    under either prefix; None when the source has shapes only. Reads two tensors at a time, never a whole copy."""
    if len([k for k in source if k.startswith(prefix_a)]) != len([k for k in source if k.startswith(prefix_b)]):
        return False
    for name in names:
        a, b = prefix_a + name, prefix_b + name
        if a not in source or source.shape(a) != source.shape(b):
            return False
        tensor_a, tensor_b = source[a], source[b]
        if tensor_a.is_meta or tensor_b.is_meta:
            return None  # shapes only (key manifests): nothing to compare
        if not torch.equal(tensor_a, tensor_b):
            return False
    return True


def _differs_note(name: str, other: str, same: bool | None) -> str:
    if same is None:
        return f"{name} cannot be compared with {other} (shapes only), so both copies are loaded"
    return f"{name} differs from {other} in this checkpoint, so both copies are loaded"


def shared_submodules(
    spec: ComponentSpec,
    keys: list[str],
    prefixes: Mapping[str, str],
    source: TensorSource,
    modules: Mapping[str, nn.Module],
    shared: dict[str, str],
    report: LoadReport,
) -> dict[str, nn.Module]:
    """Submodules of ``spec`` whose tensors repeat an already loaded component's (``spec.duplicate_submodules``):
    the owners' modules by path, each link added to ``shared``. Compared before building, tensor by tensor."""
    links: dict[str, nn.Module] = {}
    for sub, target in spec.duplicate_submodules:
        owner, _, owner_sub = target.partition(".")
        own_prefix = prefixes[spec.name] + sub + "."
        names = [k[len(own_prefix) :] for k in keys if k.startswith(own_prefix)]
        if owner not in modules or not names:
            continue
        path = f"{spec.name}.{sub}"
        same = _same_tensors(source, prefixes[owner] + owner_sub + ".", own_prefix, names)
        if same:
            links[sub] = modules[owner].get_submodule(owner_sub)
            shared[path] = target
            report.notes.append(f"{path} is identical to {target}: loaded once, one module for both")
            for key in keys:
                if key.startswith(own_prefix):
                    report.ignore(f"duplicate encoder copy: {path} is identical to {target}", key)
        else:
            report.notes.append(_differs_note(path, target, same))
    return links


def group_by_component(source: TensorSource, unet_prefix: str, report: LoadReport) -> dict[str, list[str]]:
    """Sort official-layout keys by component; known non-inference keys go to the report as ignored, the rest
    as unexpected. ``unet_prefix`` "" means a bare UNet state dict (every key is the UNet's)."""
    grouped: dict[str, list[str]] = {name: [] for name in COMPONENTS}
    for key in source:
        spec = COMPONENTS["unet"] if unet_prefix == "" else component_for(key)
        ignored_reason = next((r for p, r in IGNORED_PREFIXES.items() if key.startswith(p)), None)
        if ignored_reason is not None:
            report.ignore(ignored_reason, key)
        elif spec is None:
            report.unexpected.append(key)
        else:
            grouped[spec.name].append(key)
    return grouped


def load_official(source: TensorSource, opts: LoadOptions) -> tuple[ReLumixModel, LoadReport]:
    """Convert an official-layout state dict (sgm names) while loading it."""
    report = LoadReport(str(source.path), "official sgm layout")
    unet_prefix = _unet_prefix(source)
    prefixes = {name: spec.sgm_prefix for name, spec in COMPONENTS.items()}
    prefixes["unet"] = unet_prefix
    grouped = group_by_component(source, unet_prefix, report)

    unet_shapes = {k[len(unet_prefix) :]: source.shape(k) for k in grouped["unet"]}
    _check_is_relumix_unet(unet_shapes, source.path)

    config = ReLumixConfig()
    modules: dict[str, nn.Module] = {}
    infer_options = {"num_head_channels": opts.num_head_channels, "clip_head_width": opts.clip_head_width}
    for name, spec in COMPONENTS.items():
        keys = grouped[name]
        if not keys or not opts.wants(name):
            if keys:
                for key in keys:
                    report.ignore(f"{name} not requested", key)
            else:
                report.absent.append(name)
            continue
        relative = [k[len(prefixes[name]) :] for k in keys]
        if spec.duplicate_of and spec.duplicate_of in modules:
            same = _same_tensors(source, prefixes[spec.duplicate_of], prefixes[name], relative)
            if same:
                config.shared[name] = spec.duplicate_of
                for key in keys:
                    report.ignore(f"duplicate embedder copy: {name} is identical to {spec.duplicate_of}", key)
                continue
            report.notes.append(_differs_note(name, spec.duplicate_of, same))
        shapes = {r: source.shape(k) for r, k in zip(relative, keys, strict=True)}
        component_config = spec.infer(shapes, infer_options)
        config.components[name] = component_config
        links = shared_submodules(spec, keys, prefixes, source, modules, config.shared, report)
        modules[name] = build_and_load(spec, component_config, source, keys, relative, opts, report, links)

    unet_config = config.unet
    config.fps_embed_dim = opts.fps_embed_dim or unet_config.adm_in_channels // 3
    config.cond_aug_embed_dim = unet_config.adm_in_channels - config.fps_embed_dim
    config.trained_frames = TRAINED_FRAMES if opts.trained_frames is None else opts.trained_frames
    report_gates(report, modules["unet"])
    report.config = config
    report.dtype = str(next(modules["unet"].parameters()).dtype).replace("torch.", "")
    if report.unexpected:
        raise CheckpointError(
            f"{source.path}: {len(report.unexpected)} keys belong to no ReLumix component "
            f"(e.g. {report.unexpected[:3]}); is this really a ReLumix checkpoint?"
        )
    return ReLumixModel(config, modules), report


def build_and_load(
    spec: ComponentSpec,
    config: Any,
    source: TensorSource,
    keys: list[str],
    relative: list[str],
    opts: LoadOptions,
    report: LoadReport,
    links: Mapping[str, nn.Module] | None = None,
) -> nn.Module:
    """Build ``spec`` on meta and fill it tensor by tensor from ``source`` (cast as requested).

    ``links`` maps submodule paths to already loaded modules that take their place; the source's tensors for those
    submodules (the same relative names) are identical copies: they are not read (the caller reports them).
    """
    links = dict(links or {})
    with torch.device("meta"):
        module = spec.build(config)
    for sub, owner in links.items():
        set_submodule(module, sub, owner)
    linked = tuple(sub + "." for sub in links)
    state: dict[str, torch.Tensor] = {}
    for key, rel in zip(keys, relative, strict=True):
        if linked and rel.startswith(linked):
            continue
        if spec.is_unused(rel):
            report.ignore(f"unused at inference ({spec.name})", key)
            continue
        try:
            pairs = spec.convert(rel, source[key], config)
        except KeyError:
            report.unexpected.append(key)
            continue
        report.converted += 1
        for target, tensor in pairs:
            state[target] = materialise(tensor, opts)
    if spec.extra is not None:
        dtype = opts.dtype or next(iter(state.values())).dtype
        state.update({k: v.to(opts.device) for k, v in spec.extra(config, dtype).items()})
    return load_into(module, state, f"{source.path} [{spec.name}]", report, tuple(links))
