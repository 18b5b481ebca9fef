"""ComfyUI's services when they are importable, plain fallbacks when they are not (tests, other hosts).

Only this module touches ComfyUI: ``folder_paths`` (where models live), ``comfy.model_management`` (device, memory,
interrupts) and ``comfy.utils.ProgressBar``. Everything is looked up at call time, so importing the pack never
imports ComfyUI.
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


def free_memory(bytes_needed: int, device: torch.device) -> None:
    """Ask ComfyUI to unload its own models until ``bytes_needed`` fit on ``device``."""
    mm = _optional("comfy.model_management")
    if mm is not None and device.type != "cpu":
        mm.free_memory(bytes_needed, device)


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


class Progress:
    """``comfy.utils.ProgressBar`` when available (the node's progress in the UI), otherwise nothing."""

    def __init__(self) -> None:
        utils = _optional("comfy.utils")
        self._bar_type = getattr(utils, "ProgressBar", None)
        self._bar: Any = None

    def __call__(self, done: int, total: int) -> None:
        if self._bar_type is None:
            return
        if self._bar is None:
            self._bar = self._bar_type(total)
        self._bar.update_absolute(done, total)
