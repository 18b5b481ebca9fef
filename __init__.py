"""ComfyUI entry point for ReLumix: ComfyUI imports this folder from custom_nodes/ and reads the mappings.

The library, ``relumix_core``, lives beside the nodes. When the pack was cloned rather than pip-installed, this
folder is put on ``sys.path`` so the nodes can import it; an installed ``relumix_core`` is used as it is.
"""

import importlib.util
import os
import sys

if importlib.util.find_spec("relumix_core") is None:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: E402

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
