"""The project's own formats: one ``.safetensors`` file, or a diffusers-style folder.

Single file: tensors named ``<component>.<diffusers name>``, and the :class:`ReLumixConfig` as JSON in the header
metadata (``format=relumix``), so loading needs no guessing. Folder: one subfolder per component holding
``config.json`` and ``diffusion_pytorch_model.safetensors``, plus ``model_index.json`` with the whole config.
Writes go to a temporary file that replaces the target only when complete: a failed write leaves nothing behind.

Shared weights (``ReLumixConfig.shared``) are stored once, under their owner: a linked component has no tensors or
subfolder, and a component with a linked submodule (``frame_encoder.encoder`` -> ``vae.encoder``) stores only the
rest. Loading links them again, and is otherwise strict: every tensor not covered by a link must be there.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from ..atomic import atomic_path, hidden_sibling
from ..errors import CheckpointError
from ..models.relumix import ReLumixConfig, ReLumixModel
from .components import COMPONENTS
from .report import FORMAT_NAME, FORMAT_VERSION, LoadOptions, LoadReport, load_into, materialise, report_gates
from .tensor_source import SafetensorsSource, TensorSource, open_tensor_file

FOLDER_WEIGHTS = "diffusion_pytorch_model.safetensors"
FOLDER_INDEX = "model_index.json"


def component_state(model: ReLumixModel, name: str, dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    """The tensors a file stores for component ``name`` (its own, not linked ones), contiguous and cast (floating
    point only)."""
    out = {}
    for key, tensor in model.owned_state_dict(name).items():
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        out[key] = tensor.contiguous()
    return out


def save_single_file(
    model: ReLumixModel, path: str | Path, dtype: torch.dtype | None = None, overwrite: bool = False
) -> Path:
    """Write ``model`` in the project's single-file format (atomically)."""
    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    for name in model.unique_components():
        tensors.update({f"{name}.{k}": v for k, v in component_state(model, name, dtype).items()})
    metadata = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "config": model.config.to_json()}
    with atomic_path(path, overwrite) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def _wanted(config: ReLumixConfig, opts: LoadOptions) -> list[str]:
    """Components to build: the requested ones, and the owners of requested components that are links."""
    wanted = {name for name in config.components if opts.wants(name)}
    wanted |= {config.owner(name) for name in config.shared if "." not in name and opts.wants(name)}
    return [name for name in config.components if name in wanted]


def _load_components(
    config: ReLumixConfig, tensor_for: dict[str, tuple[TensorSource, str]], opts: LoadOptions, report: LoadReport
) -> ReLumixModel:
    """Build each wanted component on meta and fill it from ``tensor_for[component] = (source, prefix)``.

    A linked submodule is left to :class:`ReLumixModel` to link when its owner is loaded too; otherwise (its owner
    was not requested) it is filled from the owner's stored tensors and stops being a link. The returned model's
    config lists only what was loaded.
    """
    wanted = _wanted(config, opts)
    modules: dict[str, nn.Module] = {}
    for name in wanted:
        if name not in tensor_for:
            raise CheckpointError(f"{report.source}: the config lists {name} but its weights are missing")
        source, prefix = tensor_for[name]
        with torch.device("meta"):
            module = COMPONENTS[name].build(config.components[name])
        state = {k[len(prefix) :]: materialise(source[k], opts) for k in source if k.startswith(prefix)}
        linked = []
        for sub in config.linked_submodules(name):
            owner = config.owner(f"{name}.{sub}")
            owner_name, _, owner_sub = owner.partition(".")
            if owner_name in wanted:
                linked.append(sub)
                continue
            if owner_name not in tensor_for:
                raise CheckpointError(f"{report.source}: {name}.{sub} is stored with {owner_name}, which is missing")
            owner_source, owner_prefix = tensor_for[owner_name]
            head = owner_prefix + (owner_sub + "." if owner_sub else "")
            state.update(
                {f"{sub}.{k[len(head) :]}": materialise(owner_source[k], opts) for k in owner_source
                 if k.startswith(head)}
            )
            del config.shared[f"{name}.{sub}"]
            report.notes.append(f"{name}.{sub} loaded from {owner}'s weights ({owner_name} was not requested)")
        modules[name] = load_into(module, state, f"{source.path} [{name}]", report, tuple(linked))
    report.absent = [n for n in COMPONENTS if n not in config.components and n not in config.shared]
    if "unet" not in modules:
        raise CheckpointError(f"{report.source} has no UNet")
    config.components = {name: c for name, c in config.components.items() if name in modules}
    config.shared = {
        path: target for path, target in config.shared.items()
        if config.owner(target).partition(".")[0] in modules and ("." not in path or path.partition(".")[0] in modules)
    }
    if opts.trained_frames is not None:
        config.trained_frames = opts.trained_frames
    report_gates(report, modules["unet"])
    report.config = config
    report.dtype = str(next(modules["unet"].parameters()).dtype).replace("torch.", "")
    return ReLumixModel(config, modules)


def _read_config(text: str, where: object) -> ReLumixConfig:
    try:
        data = json.loads(text)
        if isinstance(data, dict):  # model_index.json also holds diffusers' "_class_name" and the like
            text = json.dumps({k: v for k, v in data.items() if not k.startswith("_")})
        return ReLumixConfig.from_json(text)
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{where}: the ReLumix config in the file is invalid: {err}") from None


def load_single_file(source: TensorSource, opts: LoadOptions) -> tuple[ReLumixModel, LoadReport]:
    """Load the project's single-file format (config from the header metadata)."""
    report = LoadReport(str(source.path), "ReLumix single file")
    config = _read_config(source.metadata.get("config", ""), source.path)
    known = {f"{name}." for name in COMPONENTS}
    report.unexpected = [k for k in source if not k.startswith(tuple(known))]
    if report.unexpected:
        raise CheckpointError(f"{source.path}: unexpected tensors {report.unexpected[:3]}")
    tensor_for = {name: (source, f"{name}.") for name in config.components}
    return _load_components(config, tensor_for, opts, report), report


def save_folder(model: ReLumixModel, folder: str | Path, dtype: torch.dtype | None = None,
                overwrite: bool = False) -> Path:
    """Write a diffusers-style folder: ``<component>/config.json`` + weights, and ``model_index.json``.

    Everything is written to a temporary folder beside ``folder`` first, so a failure leaves no half-written
    model behind. With ``overwrite``, only the entries this function writes are replaced in an existing folder.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"{folder} exists and is not a folder")
    if folder.exists() and any(folder.iterdir()) and not overwrite:
        raise FileExistsError(f"{folder} exists and is not empty; pass overwrite=True (--overwrite)")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = hidden_sibling(folder)
    tmp.mkdir()
    try:
        for name in model.unique_components():
            sub = tmp / name
            sub.mkdir()
            save_file(component_state(model, name, dtype), str(sub / FOLDER_WEIGHTS))
            (sub / "config.json").write_text(json.dumps(model.config.components[name].to_dict(), indent=2))
        index = json.loads(model.config.to_json())
        index["_class_name"] = "ReLumixModel"
        (tmp / FOLDER_INDEX).write_text(json.dumps(index, indent=2))
        if folder.exists() and not any(folder.iterdir()):
            folder.rmdir()
        if not folder.exists():
            os.replace(tmp, folder)
            return folder
        # Overwrite in place: drop the old index first, so that a folder caught half-way never looks loadable.
        (folder / FOLDER_INDEX).unlink(missing_ok=True)
        for entry in sorted(tmp.iterdir(), key=lambda e: e.name == FOLDER_INDEX):
            target = folder / entry.name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(entry, target)
        return folder
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_folder(folder: Path, opts: LoadOptions) -> tuple[ReLumixModel, LoadReport]:
    """Load a folder written by :func:`save_folder`."""
    index = folder / FOLDER_INDEX
    if not index.exists():
        raise CheckpointError(
            f"{folder} is a folder without {FOLDER_INDEX}; expected a ReLumix diffusers-style folder "
            "(made by 'relumix convert SRC DST/' ) or a checkpoint file"
        )
    report = LoadReport(str(folder), "diffusers-style folder")
    config = _read_config(index.read_text(), index)
    tensor_for = {}
    for name in config.components:
        weights = folder / name / FOLDER_WEIGHTS
        if not weights.exists():
            raise CheckpointError(f"{folder}: {name}/{FOLDER_WEIGHTS} is missing")
        tensor_for[name] = (SafetensorsSource(weights), "")
    return _load_components(config, tensor_for, opts, report), report


__all__ = ["load_folder", "load_single_file", "open_tensor_file", "save_folder",
           "save_single_file"]
