"""Read tensors from checkpoint files lazily and safely, one tensor at a time.

``.pth``/``.ckpt`` files are opened with ``torch.load(weights_only=True, mmap=True)``: pickled code is never
executed, and the weights stay memory-mapped until each one is converted. ``.safetensors`` files are read with
``safe_open``, one tensor per request. Either way the loader never holds two full copies of the weights.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from ..errors import CheckpointError

PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")
SAFETENSORS_SUFFIXES = (".safetensors", ".sft")


class TensorSource(Mapping[str, torch.Tensor]):
    """A read-only mapping name -> tensor that also gives shapes without reading data."""

    def __init__(self, path: Path, metadata: dict[str, str] | None = None) -> None:
        self.path = path
        self.metadata = metadata or {}

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self[name].shape)

    def shapes(self, prefix: str = "") -> dict[str, tuple[int, ...]]:
        """Shapes of the tensors under ``prefix``, with the prefix removed."""
        return {k[len(prefix) :]: self.shape(k) for k in self if k.startswith(prefix)}


class SafetensorsSource(TensorSource):
    def __init__(self, path: Path) -> None:
        try:
            self._file = safe_open(str(path), framework="pt", device="cpu")
            metadata = self._file.metadata()
            self._keys = list(self._file.keys())
            self._keyset = set(self._keys)
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(f"{path} is not a readable safetensors file (truncated or corrupt?): {err}") from None
        super().__init__(path, metadata)

    def __contains__(self, name: object) -> bool:
        return name in self._keyset

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self._keyset:
            raise KeyError(name)
        try:
            return self._file.get_tensor(name)
        except SafetensorError as err:
            raise CheckpointError(f"{self.path}: tensor {name!r} cannot be read (corrupt file?): {err}") from None

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._file.get_slice(name).get_shape())

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


class DictSource(TensorSource):
    def __init__(self, path: Path, tensors: Mapping[str, torch.Tensor]) -> None:
        super().__init__(path)
        self._tensors = tensors

    def __getitem__(self, name: str) -> torch.Tensor:
        return self._tensors[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)


def _unwrap_state_dict(obj: object, path: Path) -> dict[str, torch.Tensor]:
    """Accept a plain state dict or a Lightning-style ``{"state_dict": {...}}`` wrapper."""
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict of tensors")
    tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{path} holds no tensors (expected a ReLumix state dict)")
    return tensors


def load_pickle_weights(path: Path) -> dict[str, torch.Tensor]:
    """``torch.load`` restricted to tensors: a file with pickled code or objects is refused, never run."""
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:
            if "mmap" not in str(err):
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"refusing to load {path}: it contains pickled Python objects other than tensors, which could run "
            f"code ({str(err).splitlines()[0][:200]}). Get the checkpoint from a trusted source or as .safetensors."
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as err:
        raise CheckpointError(f"{path} is truncated or corrupt and cannot be read: {str(err)[:200]}") from None
    return _unwrap_state_dict(obj, path)


def open_tensor_file(path: str | Path) -> TensorSource:
    """Open a single checkpoint file as a lazy :class:`TensorSource`, with clear errors for bad paths."""
    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder; expected a .pth or .safetensors file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): the download may have failed")
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        return SafetensorsSource(path)
    if suffix in PICKLE_SUFFIXES:
        return DictSource(path, load_pickle_weights(path))
    with path.open("rb") as handle:
        head = handle.read(8)
    if head[:2] == b"PK":
        return DictSource(path, load_pickle_weights(path))
    if len(head) == 8 and int.from_bytes(head, "little") < 100_000_000:
        return SafetensorsSource(path)
    raise CheckpointError(f"{path}: unknown checkpoint type {suffix!r}; expected .pth, .ckpt or .safetensors")
