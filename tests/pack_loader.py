"""Load the repository folder as ComfyUI loads a custom node pack, for tests that call the nodes directly."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]
PACK = "relumix_pack_under_test"


def load_pack() -> ModuleType:
    """Import the repo folder as ComfyUI does: a package named after its folder, loaded from __init__.py."""
    if PACK in sys.modules:
        return sys.modules[PACK]
    spec = importlib.util.spec_from_file_location(PACK, REPO / "__init__.py", submodule_search_locations=[str(REPO)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK] = module
    spec.loader.exec_module(module)
    return module
