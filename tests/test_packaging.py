"""Packaging checks: registry metadata, dependency bounds, the ComfyUI entry point and the CI/README contract.

These guard the promises that are easy to break by accident: a torch pin that would reinstall torch inside a
user's ComfyUI, a requirements.txt (read by ComfyUI-Manager) drifting from pyproject, an entry point that needs
ComfyUI to import, and a CI script that no longer runs the command the README documents.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the dev extra brings tomli
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))

# The requirement name, then whatever specifier follows (PEP 508, without extras or markers in our deps).
_REQ_RE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(.*?)\s*$")


def _split_req(req: str) -> tuple[str, str]:
    """Normalised name and specifier of one requirement string."""
    m = _REQ_RE.match(req.split(";")[0])
    assert m, f"cannot parse requirement {req!r}"
    return re.sub(r"[-_.]+", "-", m.group(1)).lower(), m.group(2).replace(" ", "")


def _fenced_blocks(markdown: str) -> list[str]:
    """Bodies of the fenced code blocks of a Markdown text, in order."""
    return [m.group(1).strip() for m in re.finditer(r"^```[^\n]*\n(.*?)^```", markdown, re.S | re.M)]


def test_project_metadata() -> None:
    project = PYPROJECT["project"]
    for key in ("name", "version", "description", "readme", "license", "requires-python", "dependencies"):
        assert project.get(key), f"[project].{key} is missing"
    # Registry node id rules: letters, digits and single - _ . separators, starting with a letter.
    assert re.fullmatch(r"[A-Za-z](?:[A-Za-z0-9]|[-_.](?=[A-Za-z0-9]))*", project["name"])
    assert len(project["name"]) < 100
    assert re.fullmatch(r"\d+\.\d+\.\d+", project["version"]), "the registry wants X.Y.Z versions"
    assert project["scripts"]["relumix"] == "relumix_core.cli.main:main"
    assert project["urls"]["Repository"].startswith("https://")
    assert (REPO / "LICENSE").is_file()


def test_tool_comfy_has_registry_keys() -> None:
    comfy = PYPROJECT["tool"]["comfy"]
    for key in ("PublisherId", "DisplayName", "Icon"):
        assert isinstance(comfy.get(key), str) and comfy[key], f"[tool.comfy].{key} is missing"
    assert comfy["DisplayName"] == "ReLumix"
    assert isinstance(comfy.get("includes"), list)
    for model in comfy.get("Models", []):
        assert set(model) == {"location", "model_url"}


def test_only_the_library_is_packaged() -> None:
    """The repo root is a ComfyUI folder, not a Python package: setuptools must only pick relumix_core."""
    assert PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"] == ["relumix_core*"]


def test_no_dependency_pins_torch() -> None:
    """An exact pin or upper bound would make pip replace the torch (CUDA build) inside a user's ComfyUI."""
    deps = list(PYPROJECT["project"]["dependencies"])
    for extra in PYPROJECT["project"].get("optional-dependencies", {}).values():
        deps += extra
    deps += [line for line in (REPO / "requirements.txt").read_text().splitlines() if line and line[0] != "#"]
    for req in deps:
        name, spec = _split_req(req)
        if name in ("torch", "torchvision", "torchaudio"):
            assert name == "torch", f"{name} must not be a dependency"
            assert not re.search(r"==|<|~=|===", spec), f"torch must only have a lower bound, got {req!r}"


def test_requirements_txt_matches_pyproject() -> None:
    """ComfyUI-Manager installs from requirements.txt, pip from pyproject: both must ask for the same things."""
    lines = [line.strip() for line in (REPO / "requirements.txt").read_text().splitlines()]
    reqs = {_split_req(line) for line in lines if line and not line.startswith("#")}
    assert reqs == {_split_req(d) for d in PYPROJECT["project"]["dependencies"]}


def test_comfyui_entry_point_imports_without_comfyui() -> None:
    """ComfyUI imports the repo folder as a package; it must load without ComfyUI or heavy imports."""
    name = "relumix_comfy_entry_under_test"
    spec = importlib.util.spec_from_file_location(name, REPO / "__init__.py", submodule_search_locations=[str(REPO)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        assert isinstance(module.NODE_CLASS_MAPPINGS, dict)
        assert isinstance(module.NODE_DISPLAY_NAME_MAPPINGS, dict)
        assert set(module.__all__) >= {"NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"}
        assert set(module.NODE_DISPLAY_NAME_MAPPINGS) <= set(module.NODE_CLASS_MAPPINGS)
    finally:
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            del sys.modules[key]


def test_ci_runs_the_readme_test_command() -> None:
    """The second README block is the documented setup + tests; CI must run exactly that."""
    blocks = _fenced_blocks((REPO / "README.md").read_text(encoding="utf-8"))
    assert len(blocks) >= 2
    demo, tests = blocks[0], blocks[1]
    assert "\n" not in demo and "\n" not in tests, "the first two README commands are one line each"
    assert "relumix demo" in demo
    assert "pytest" in tests
    ci = REPO / ".ci" / "run"
    assert tests in ci.read_text().splitlines(), ".ci/run must contain the README test command verbatim"
    assert os.access(ci, os.X_OK), ".ci/run must be executable"


def test_comfy_node_validate() -> None:
    """`comfy node validate` runs the registry's pyproject checks locally (no network)."""
    comfy = shutil.which("comfy", path=str(Path(sys.executable).parent)) or shutil.which("comfy")
    if comfy is None:
        pytest.skip("comfy-cli is not installed (pip install -e '.[dev]' brings it)")
    env = {**os.environ, "DO_NOT_TRACK": "1"}
    proc = subprocess.run(
        [comfy, "--skip-prompt", "--no-json", "node", "validate"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Warning" not in out, out
    assert "Security warnings" not in out, out
