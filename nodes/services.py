"""ComfyUI's services when they are importable, plain fallbacks when they are not (tests, other hosts).

Only this module touches ComfyUI: ``folder_paths`` (where models live), ``comfy.model_management`` (device, memory,
the loaded-models list, interrupts), ``comfy.model_patcher`` (registering components), ``comfy.ops`` (layers that
stream on small cards), ``latent_preview`` and ``comfy.utils.ProgressBar``. Everything is looked up at call time,
so importing the pack never imports ComfyUI. Tested with ComfyUI 0.3.64; the names used exist since 0.3.40.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import torch

MODEL_FOLDER = "relumix"
CHECKPOINT_EXTENSIONS = {".pth", ".safetensors"}
#: Where models are looked for outside ComfyUI (tests, scripts).
MODELS_DIR_ENV = "RELUMIX_MODELS_DIR"


def _optional(name: str) -> Any | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def folder_paths() -> Any | None:
    return _optional("folder_paths")


def _bundled_dir() -> str:
    """The folder of relumix-tiny, the demonstration model that ships with the pack (listed last)."""
    from relumix_core.checkpoints.bundled import BUNDLED_DIR

    return str(BUNDLED_DIR)


def register_model_folder() -> None:
    """Add ``models/relumix`` and the bundled model's folder to ComfyUI's model folders, keeping paths that
    extra_model_paths.yaml added."""
    fp = folder_paths()
    if fp is None:
        return
    default = os.path.join(fp.models_dir, MODEL_FOLDER)
    paths, extensions = fp.folder_names_and_paths.get(MODEL_FOLDER, ([], set()))
    paths = [p for p in paths if p != _bundled_dir()]
    if default not in paths:
        paths = [*paths, default]
    paths = [*paths, _bundled_dir()]
    fp.folder_names_and_paths[MODEL_FOLDER] = (list(paths), set(extensions) | CHECKPOINT_EXTENSIONS)


def model_dirs() -> list[Path]:
    """Every folder that may hold ReLumix checkpoints."""
    fp = folder_paths()
    if fp is not None:
        register_model_folder()
        return [Path(p) for p in fp.get_folder_paths(MODEL_FOLDER)]
    env = os.environ.get(MODELS_DIR_ENV)
    return [Path(env) if env else Path.cwd() / "models" / MODEL_FOLDER, Path(_bundled_dir())]


def list_checkpoints() -> list[str]:
    """Checkpoint files and diffusers-style folders (with model_index.json), relative to their model folder."""
    names: set[str] = set()
    for root in model_dirs():
        if not root.is_dir():
            continue
        for path in root.rglob("*"):
            if path.is_file() and path.suffix in CHECKPOINT_EXTENSIONS and not any(
                (parent / "model_index.json").is_file() for parent in path.parents if root in parent.parents
            ):
                names.add(path.relative_to(root).as_posix())
            elif path.is_dir() and (path / "model_index.json").is_file():
                names.add(path.relative_to(root).as_posix())
    return sorted(names)


def resolve_checkpoint(name: str) -> Path:
    """The path of a listed checkpoint; a clear error naming the folders searched otherwise."""
    from relumix_core.errors import CheckpointError

    for root in model_dirs():
        candidate = root / name
        if candidate.exists():
            return candidate
    searched = ", ".join(str(p) for p in model_dirs())
    raise CheckpointError(
        f"ReLumix checkpoint {name!r} not found in {searched}; put relumix.pth (huggingface.co/lez/relumix) or a "
        "converted .safetensors there and refresh"
    )


def torch_device() -> torch.device:
    mm = _optional("comfy.model_management")
    if mm is not None:
        return mm.get_torch_device()
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def offload_device() -> torch.device:
    """Where ComfyUI keeps a model it has unloaded (the CPU, unless started with --gpu-only)."""
    mm = _optional("comfy.model_management")
    return mm.unet_offload_device() if mm is not None else torch.device("cpu")


def memory_budget(device: torch.device) -> int | None:
    """Bytes a ReLumix run may plan for on ``device``: the whole card less what ComfyUI keeps in reserve (ComfyUI
    unloads its other models to make the room). None on the CPU: no limit to plan for."""
    if device.type == "cpu":
        return None
    mm = _optional("comfy.model_management")
    if mm is not None:
        return int(mm.get_total_memory(device) - mm.extra_reserved_memory())
    from relumix_core.memory.auto import cuda_budget

    return cuda_budget(device)


def patcher_class() -> type | None:
    """The model patcher ComfyUI uses for its own models (``CoreModelPatcher`` where it exists, else
    ``ModelPatcher``); None outside ComfyUI."""
    patcher = _optional("comfy.model_patcher")
    if patcher is None:
        return None
    return getattr(patcher, "CoreModelPatcher", None) or patcher.ModelPatcher


def wrap_in_patcher(module: torch.nn.Module, size_bytes: int) -> Any:
    """Register ``module`` (a plain container) with ComfyUI's memory manager; it starts on the offload device."""
    mm = _optional("comfy.model_management")
    cls = patcher_class()
    if mm is None or cls is None:
        raise RuntimeError("ComfyUI's model patcher is not importable here")
    return cls(module, load_device=torch_device(), offload_device=offload_device(), size=size_bytes)


def load_models(patchers: list[Any], memory_required: int, force_full_load: bool) -> None:
    """ComfyUI loads ``patchers`` onto its device, unloading other models first until they and
    ``memory_required`` bytes of working memory fit. Without ``force_full_load`` a model too large for the room
    left is loaded partially and streams its remaining layers as they run."""
    mm = _optional("comfy.model_management")
    if mm is not None:
        mm.load_models_gpu(patchers, memory_required=memory_required, force_full_load=force_full_load)


def unload_models(patchers: list[Any]) -> None:
    """Unload ``patchers`` now (the loader's "offload between runs"), leaving ComfyUI's other models alone."""
    mm = _optional("comfy.model_management")
    if mm is None:
        return
    for index in reversed(range(len(mm.current_loaded_models))):
        loaded = mm.current_loaded_models[index]
        if any(loaded.model is patcher for patcher in patchers):
            loaded.model_unload()
            mm.current_loaded_models.pop(index)
    mm.soft_empty_cache()


def layer_classes(manual_cast: bool) -> dict[type, type] | None:
    """ComfyUI's own layer classes (``comfy.ops``) for the layer types ReLumix's UNet uses: ComfyUI streams only
    layers of these classes when it loads a model partially. ``manual_cast`` layers always cast their weights to
    the input's dtype (fp8 storage); the others only when streamed. None outside ComfyUI."""
    ops = _optional("comfy.ops")
    if ops is None:
        return None
    family = ops.manual_cast if manual_cast else ops.disable_weight_init
    return {torch.nn.Linear: family.Linear, torch.nn.Conv2d: family.Conv2d, torch.nn.Conv3d: family.Conv3d,
            torch.nn.GroupNorm: family.GroupNorm, torch.nn.LayerNorm: family.LayerNorm}


def soft_empty_cache() -> None:
    mm = _optional("comfy.model_management")
    if mm is not None:
        mm.soft_empty_cache()
    elif torch.cuda.is_available():
        torch.cuda.empty_cache()


def interrupted() -> bool:
    """True when the user pressed Cancel in ComfyUI."""
    mm = _optional("comfy.model_management")
    return bool(mm is not None and mm.processing_interrupted())


def raise_interrupt() -> None:
    """Turn a stop into ComfyUI's own interruption (shown as cancelled, not as an error)."""
    mm = _optional("comfy.model_management")
    if mm is not None:
        raise mm.InterruptProcessingException()


def latent_previewer(device: torch.device) -> Any | None:
    """The sampler preview the user chose in ComfyUI (--preview-method), for SVD's latent space, which is SD1.5's;
    None when previews are off or outside ComfyUI."""
    preview, formats = _optional("latent_preview"), _optional("comfy.latent_formats")
    if preview is None or formats is None:
        return None
    return preview.get_previewer(device, formats.SD15())


class Progress:
    """``comfy.utils.ProgressBar`` when available (the node's progress in the UI, with a preview of the frame being
    sampled, as KSampler shows), otherwise nothing. ComfyUI's progress hook is also where a cancel is raised."""

    def __init__(self, previewer: Any | None = None) -> None:
        utils = _optional("comfy.utils")
        self._bar_type = getattr(utils, "ProgressBar", None)
        self._bar: Any = None
        self._previewer = previewer
        self._preview: Any = None

    def preview(self, latent: torch.Tensor) -> None:
        """Keep a preview of ``latent`` [4, h, w] (diffusion space) for the next progress update."""
        if self._previewer is not None:
            self._preview = self._previewer.decode_latent_to_preview_image("JPEG", latent[None].float())

    def __call__(self, done: int, total: int) -> None:
        if self._bar_type is None:
            return
        if self._bar is None:
            self._bar = self._bar_type(total)
        preview, self._preview = self._preview, None
        self._bar.update_absolute(done, total, preview)
