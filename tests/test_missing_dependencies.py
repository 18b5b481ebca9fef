"""The pack's entry point when a requirement is missing: one clear line, no nodes, no exception (no ComfyUI needed).

Each case imports the repo's ``__init__.py`` as ComfyUI does (a package loaded from the folder), in a fresh Python
whose sitecustomize hides some packages exactly as if they were not installed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
PACK = "relumix_pack_missing_deps"
EXPECTED_NODES = {"LoadReLumixModel", "ReferenceReplace", "EmbeddingFuse", "ReLumixSampler", "ReLumixSimpleRelight"}
IMPORT_PACK = f"""
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location({PACK!r}, {str(REPO / "__init__.py")!r},
                                              submodule_search_locations=[{str(REPO)!r}])
module = importlib.util.module_from_spec(spec)
sys.modules[{PACK!r}] = module
spec.loader.exec_module(module)
print("MAPPINGS " + json.dumps([sorted(module.NODE_CLASS_MAPPINGS), sorted(module.NODE_DISPLAY_NAME_MAPPINGS)]))
"""


def _comfy_server() -> ModuleType:
    """tests/comfyui/comfy_server.py, for its sitecustomize that hides packages (the same one the real server uses)."""
    spec = importlib.util.spec_from_file_location("relumix_tests_comfy_server", REPO / "tests/comfyui/comfy_server.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _import_pack(tmp_path: Path, blocked: list[str]) -> tuple[subprocess.CompletedProcess[str], list[list[str]] | None]:
    """Import the pack in a fresh interpreter with ``blocked`` hidden; the process and the exported mapping keys."""
    env = dict(os.environ)
    if blocked:
        site = tmp_path / "site"
        site.mkdir()
        (site / "sitecustomize.py").write_text(_comfy_server().blocking_sitecustomize(blocked))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH", "")) if p)
    proc = subprocess.run([sys.executable, "-c", IMPORT_PACK], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("MAPPINGS ")), None)
    return proc, json.loads(line.removeprefix("MAPPINGS ")) if line else None


@pytest.mark.parametrize(("hidden", "named"), [("diffusers", "diffusers"), ("PIL", "pillow"), ("av", "av")])
def test_missing_requirement_gives_one_line_and_no_nodes(tmp_path: Path, hidden: str, named: str) -> None:
    """The line names the pip package (pillow, not PIL) and the command with this very Python; nothing raises."""
    proc, mappings = _import_pack(tmp_path, [hidden])
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert mappings == [[], []], output
    lines = [ln for ln in output.splitlines() if "[ReLumix]" in ln]
    assert len(lines) == 1, output
    line = lines[0]
    assert f"'{named}'" in line
    assert f"{sys.executable} -m pip install -r {REPO / 'requirements.txt'}" in line
    assert "Traceback" not in output


def test_several_missing_requirements_are_named_in_the_one_line(tmp_path: Path) -> None:
    proc, mappings = _import_pack(tmp_path, ["diffusers", "einops"])
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "[ReLumix]" in ln]
    assert mappings == [[], []]
    assert len(lines) == 1 and "'diffusers', 'einops' are missing" in lines[0], lines


def test_the_check_does_not_import_the_heavy_requirements(tmp_path: Path) -> None:
    """find_spec only: a pack that imported diffusers to check for it would slow every ComfyUI start."""
    script = IMPORT_PACK + "print('HEAVY ' + json.dumps(sorted(m for m in ('diffusers', 'transformers', 'av') " \
                           "if m in sys.modules)))\n"
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("HEAVY ")), None)
    assert line is not None, proc.stdout + proc.stderr
    assert json.loads(line.removeprefix("HEAVY ")) == []


def test_normal_import_exports_the_nodes(tmp_path: Path) -> None:
    proc, mappings = _import_pack(tmp_path, [])
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert mappings is not None and set(mappings[0]) == EXPECTED_NODES, output
    assert "[ReLumix] not loaded" not in output


def test_a_missing_module_that_is_not_a_requirement_still_raises(tmp_path: Path) -> None:
    """A ModuleNotFoundError for the pack's own module is a bug, not a user's setup: it must not be hidden."""
    proc, mappings = _import_pack(tmp_path, [f"{PACK}.nodes.sampler"])
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0 and mappings is None, output
    assert "ModuleNotFoundError" in output and f"{PACK}.nodes.sampler" in output
    assert "[ReLumix] not loaded" not in output
