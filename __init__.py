"""ComfyUI entry point for ReLumix: ComfyUI imports this folder from custom_nodes/ and reads the mappings.

Kept import-light (no torch, no ComfyUI) so that a broken or missing dependency cannot stop ComfyUI from starting
and so that the package can be imported in plain Python tests.
"""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
