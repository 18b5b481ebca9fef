"""The public API: what ``relumix_core`` exports, the import paths kept for users' scripts, and the layout rules."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import relumix_core

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "relumix_core"
TOP_LEVEL_MODULES = {"__init__.py", "__main__.py", "atomic.py", "errors.py"}


def test_every_public_name_resolves() -> None:
    assert set(relumix_core.__all__) == {"__version__", *relumix_core._EXPORTS}
    for name in relumix_core.__all__:
        assert getattr(relumix_core, name) is not None, name
    from relumix_core.checkpoints.loading import load_relumix
    from relumix_core.pipeline.pipeline import ReLumixPipeline

    assert relumix_core.load_relumix is load_relumix
    assert relumix_core.ReLumixPipeline is ReLumixPipeline


def test_unknown_names_are_attribute_errors() -> None:
    try:
        relumix_core.no_such_name  # noqa: B018
    except AttributeError as err:
        assert "no_such_name" in str(err)
    else:
        raise AssertionError("relumix_core.no_such_name did not raise")


def test_import_is_light() -> None:
    code = "import sys, relumix_core; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


def test_old_pipeline_path_still_works() -> None:
    from relumix_core.pipeline import RelightSettings, ReLumixPipeline

    assert ReLumixPipeline is relumix_core.ReLumixPipeline
    assert RelightSettings is relumix_core.RelightSettings


def test_only_the_allowed_modules_sit_at_the_top_and_none_is_long() -> None:
    top = {p.name for p in PACKAGE.glob("*.py")}
    assert top <= TOP_LEVEL_MODULES, f"move {sorted(top - TOP_LEVEL_MODULES)} into the package of its stage"
    long = {str(p.relative_to(REPO)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 500}
    assert not long, f"split these modules (over 500 lines): {long}"


def test_no_private_name_is_imported_across_modules() -> None:
    found = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("relumix_core")):
                private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                if private:
                    found.append(f"{path.relative_to(REPO)}: {private}")
    assert not found, found
