"""Training checkpoints: trainable weights (safetensors), optimizer state and the step, written atomically.

A checkpoint is a folder ``checkpoints/step_NNNNNNN/`` that appears complete or not at all (it is written under a
hidden name and renamed). Resuming reads the newest complete one. The optimizer state holds only tensors and
numbers, so it loads with ``torch.load(weights_only=True)``: nothing is unpickled.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..atomic import atomic_folder
from ..errors import ReLumixError

PREFIX = "step_"
AVERAGE_FILE = "average.safetensors"


def checkpoint_dirs(root: Path) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first."""
    folder = root / "checkpoints"
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and (p / "state.json").exists()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX) :]))


def save_checkpoint(
    root: Path, step: int, params: dict[str, nn.Parameter], optimizer: torch.optim.Optimizer,
    extra: dict | None = None, keep: int = 2, average: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write checkpoint ``step`` (with the weight average, if one is kept) and drop all but the ``keep`` newest."""
    folder = root / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{PREFIX}{step:07d}"
    with atomic_folder(final) as tmp:
        trainable = {k: v.detach().float().cpu().contiguous() for k, v in params.items()}
        save_file(trainable, str(tmp / "trainable.safetensors"))
        if average is not None:
            save_file({k: v.contiguous() for k, v in average.items()}, str(tmp / AVERAGE_FILE))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        (tmp / "state.json").write_text(json.dumps({"step": step, **(extra or {})}, indent=1))
    for old in checkpoint_dirs(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(
    path: Path, params: dict[str, nn.Parameter], optimizer: torch.optim.Optimizer
) -> tuple[int, dict]:
    """Restore weights and optimizer from ``path``; returns (step, state). Names must match exactly."""
    tensors = load_file(str(path / "trainable.safetensors"))
    missing, unexpected = set(params) - set(tensors), set(tensors) - set(params)
    if missing or unexpected:
        raise ReLumixError(
            f"checkpoint {path} does not fit this model ({len(missing)} missing, {len(unexpected)} unexpected "
            f"tensors, e.g. {sorted(missing or unexpected)[:2]}); was it made with another config?"
        )
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(tensors[name])
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True))
    state = json.loads((path / "state.json").read_text())
    return int(state["step"]), state


def load_average(path: Path) -> dict[str, torch.Tensor]:
    """The weight average saved in checkpoint ``path``; a clear error when the checkpoint has none."""
    file = path / AVERAGE_FILE
    if not file.exists():
        raise ReLumixError(f"checkpoint {path} holds no weight average ({AVERAGE_FILE}), but optim.ema_decay is set")
    return load_file(str(file))
