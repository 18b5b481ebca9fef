"""Shared pieces of the parity checks: loading a fixture and comparing tensors at a tolerance."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

#: Default tolerances (max abs error) by dtype, from the issue and the fixtures README.
DEFAULT_ATOL = {torch.float32: 1e-4, torch.float64: 1e-8}


@dataclass
class ParityResult:
    """One stored output compared with ours."""

    name: str
    max_abs_error: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.max_abs_error <= self.tolerance


@dataclass
class Fixture:
    """A fixture: its JSON description and its tensors (the ``.safetensors`` beside the JSON)."""

    path: Path
    meta: dict[str, Any]
    tensors: dict[str, torch.Tensor]

    @classmethod
    def load(cls, json_path: str | Path) -> Fixture:
        json_path = Path(json_path)
        meta = json.loads(json_path.read_text())
        tensors_path = json_path.with_suffix(".safetensors")
        tensors = load_file(str(tensors_path)) if tensors_path.exists() else {}
        return cls(json_path, meta, tensors)

    def sibling(self, name: str) -> Fixture:
        """Another fixture file of the same folder (e.g. the weights a pipeline fixture uses)."""
        return Fixture.load(self.path.parent / name)

    def with_prefix(self, prefix: str, strip: bool = True) -> dict[str, torch.Tensor]:
        """The tensors whose names start with ``prefix`` (prefix removed when ``strip``)."""
        n = len(prefix) if strip else 0
        return {k[n:]: v for k, v in self.tensors.items() if k.startswith(prefix)}


def compare(name: str, ours: torch.Tensor, reference: torch.Tensor, tolerance: float | None = None) -> ParityResult:
    """Max abs error of ``ours`` against a stored tensor, with the default tolerance of its dtype."""
    if tuple(ours.shape) != tuple(reference.shape):
        raise AssertionError(f"{name}: shape {tuple(ours.shape)} differs from the stored {tuple(reference.shape)}")
    if tolerance is None:
        tolerance = DEFAULT_ATOL.get(reference.dtype, 1e-4)
    err = (ours.detach().to(torch.float64).cpu() - reference.to(torch.float64)).abs().max().item()
    return ParityResult(name, float(err), tolerance)
