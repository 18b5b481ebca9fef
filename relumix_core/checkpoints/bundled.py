"""Models that ship inside the package: ``relumix-tiny``, the small demonstration model trained by this project.

Any place that takes a checkpoint path also takes the bare name ``relumix-tiny``; the ComfyUI pack lists the
bundled folder after the user's ``models/relumix`` folders.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import CheckpointError

BUNDLED_DIR = Path(__file__).resolve().parents[1] / "weights"  # relumix_core/weights
TINY_NAME = "relumix-tiny"
TINY_FILE = f"{TINY_NAME}.safetensors"
MODEL_CARD = BUNDLED_DIR / "README.md"


def bundled_path(name: str = TINY_NAME) -> Path:
    """The file of a bundled model by name (with or without ``.safetensors``); a clear error when it is absent."""
    stem = name[: -len(".safetensors")] if name.endswith(".safetensors") else name
    if stem != TINY_NAME:
        raise CheckpointError(f"no bundled model named {name!r}; the bundled model is {TINY_NAME!r}")
    path = BUNDLED_DIR / TINY_FILE
    if not path.is_file():
        raise CheckpointError(
            f"the bundled {TINY_NAME} weights are missing ({path}); reinstall relumix or train them with "
            f"'relumix train tiny-vae' and 'relumix train tiny-unet' (see {MODEL_CARD.name} in that folder)"
        )
    return path


def resolve_model_path(path: str | Path) -> Path:
    """``path`` itself when it exists; the bundled file when ``path`` is a bundled model's bare name."""
    candidate = Path(path).expanduser()
    if candidate.exists() or candidate.parent != Path(".") or candidate.name not in (TINY_NAME, TINY_FILE):
        return candidate
    return bundled_path(candidate.name)
