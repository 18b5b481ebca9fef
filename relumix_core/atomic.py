"""The one atomic write: a hidden sibling that takes the target's place only when the writer succeeds.

Readers never see half a file or folder, and an interrupted or failed write leaves the old target (or nothing).
Every writer in the project (checkpoints, videos, image sequences, reports, training state) goes through here.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def hidden_sibling(target: Path, tag: str = "") -> Path:
    """``.NAME.<random><tag>.partial`` beside ``target`` (``%`` dropped, so image-sequence patterns stay valid)."""
    return target.parent / f".{target.name.replace('%', '')}.{secrets.token_hex(4)}{tag}.partial"


def refuse_existing(target: Path, overwrite: bool) -> None:
    """The project's one message for an output that exists and may not be replaced."""
    if not overwrite and target.exists():
        raise FileExistsError(f"{target} already exists; choose another name or pass overwrite=True (--overwrite)")


@contextmanager
def atomic_path(target: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """A temporary file path beside ``target`` that replaces it only if the block succeeds.

    The file exists (empty, with ordinary permissions) when the block starts; ``overwrite=False`` refuses an
    existing ``target`` before any work is done.
    """
    target = Path(target)
    refuse_existing(target, overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = hidden_sibling(target)
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield tmp
        # Writers may have replaced the file with a private one (safetensors does): give it ordinary permissions.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_folder(target: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """A hidden temporary folder beside ``target``; on success it takes the place of ``target`` (old one removed)."""
    target = Path(target)
    refuse_existing(target, overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = hidden_sibling(target)
    tmp.mkdir()
    try:
        yield tmp
        if not target.exists():
            os.replace(tmp, target)
            return
        old = hidden_sibling(target, ".old")
        os.replace(target, old)
        try:
            os.replace(tmp, target)
        except BaseException:
            os.replace(old, target)
            raise
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text(target: str | Path, text: str, overwrite: bool = True) -> Path:
    """``target.write_text(text)``, atomically."""
    with atomic_path(target, overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)
