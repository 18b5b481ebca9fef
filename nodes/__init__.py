"""ComfyUI node adapters over relumix_core.

The nodes come with the ComfyUI issue; until then the mappings are empty so ComfyUI loads the pack cleanly.
Node modules must import ComfyUI and heavy libraries lazily, inside the node functions, never at import time.
"""

NODE_CLASS_MAPPINGS: dict[str, type] = {}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {}
