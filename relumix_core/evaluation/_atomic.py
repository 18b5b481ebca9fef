"""Atomic writes of report files, with the project's one atomic-replace helper (hidden sibling, then rename)."""

from __future__ import annotations

from pathlib import Path

from ..checkpoints.single_file import atomic_path


def write_text(target: Path, text: str) -> Path:
    """``target.write_text(text)``, atomically (the report checks for existing files before it starts)."""
    with atomic_path(target, overwrite=True) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return target
