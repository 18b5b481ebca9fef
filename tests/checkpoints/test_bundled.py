"""Bundled models by name: ``relumix-tiny`` wherever a checkpoint path is taken."""

from __future__ import annotations

from pathlib import Path

import pytest

from relumix_core.checkpoints import bundled
from relumix_core.errors import CheckpointError


def test_existing_paths_win_and_other_names_pass_through(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "relumix-tiny").mkdir()  # a local folder of that name is what the user means
    assert bundled.resolve_model_path("relumix-tiny") == Path("relumix-tiny")
    assert bundled.resolve_model_path("elsewhere/relumix-tiny") == Path("elsewhere/relumix-tiny")
    assert bundled.resolve_model_path("other.safetensors") == Path("other.safetensors")


def test_the_bare_name_finds_the_bundled_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(bundled, "BUNDLED_DIR", tmp_path / "weights")
    with pytest.raises(CheckpointError, match="missing.*relumix train tiny-vae"):
        bundled.resolve_model_path("relumix-tiny")
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / bundled.TINY_FILE).write_bytes(b"x")
    for name in ("relumix-tiny", "relumix-tiny.safetensors"):
        assert bundled.resolve_model_path(name) == tmp_path / "weights" / bundled.TINY_FILE
    with pytest.raises(CheckpointError, match="no bundled model"):
        bundled.bundled_path("relumix-huge")


def test_comfyui_lists_the_bundled_folder_last(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from pack_loader import load_pack

    services = load_pack().nodes.services
    monkeypatch.setenv("RELUMIX_MODELS_DIR", str(tmp_path))
    assert services.model_dirs() == [tmp_path, bundled.BUNDLED_DIR]


def test_registration_keeps_extra_model_paths_and_adds_bundled_last(monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    import sys
    import types

    from pack_loader import load_pack

    services = load_pack().nodes.services
    fake = types.ModuleType("folder_paths")
    fake.models_dir = str(tmp_path / "models")
    extra = str(tmp_path / "extra" / "relumix")  # from extra_model_paths.yaml
    fake.folder_names_and_paths = {"relumix": ([extra], {".pth"})}
    fake.get_folder_paths = lambda name: list(fake.folder_names_and_paths[name][0])
    monkeypatch.setitem(sys.modules, "folder_paths", fake)
    services.register_model_folder()
    services.register_model_folder()  # idempotent
    paths, extensions = fake.folder_names_and_paths["relumix"]
    assert paths == [extra, str(tmp_path / "models" / "relumix"), str(bundled.BUNDLED_DIR)]
    assert {".pth", ".safetensors"} <= extensions


def test_the_shipped_weights_are_where_the_library_looks() -> None:
    """relumix-tiny ships in relumix_core/weights/ (and in the wheel): a moved module must still find it."""
    repo_weights = Path(__file__).resolve().parents[2] / "relumix_core" / "weights" / bundled.TINY_FILE
    assert bundled.BUNDLED_DIR == repo_weights.parent
    assert bundled.bundled_path().is_file()
