"""Fixtures of the offline node tests: a models folder with a random relumix-tiny, and the pack loaded against it."""

from __future__ import annotations

from pathlib import Path

import pytest
from pack_loader import load_pack

from relumix_core.cli.main import main

TINY = "relumix-tiny-random.safetensors"


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models") / "relumix"
    root.mkdir()
    assert main(["init-tiny", str(root / TINY)]) == 0
    return root


@pytest.fixture
def nodes(models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, type]:
    monkeypatch.setenv("RELUMIX_MODELS_DIR", str(models_dir))
    return load_pack().NODE_CLASS_MAPPINGS
