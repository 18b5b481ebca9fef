"""Test-only ComfyUI pack: no nodes, two read-only HTTP routes that show what the server holds in memory.

The memory tests need to see ComfyUI's own bookkeeping (``comfy.model_management.current_loaded_models``), which
no stock route exposes. Nothing here changes state: in particular there is no route that collects garbage, so the
server is measured as a user runs it.
"""

from __future__ import annotations

import os
import re
from typing import Any

NODE_CLASS_MAPPINGS: dict[str, type] = {}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {}


def _call(obj: Any, name: str) -> Any:
    """``obj.name()`` or None: the patcher API differs between ComfyUI versions."""
    method = getattr(obj, name, None)
    if not callable(method):
        return None
    try:
        return method()
    except Exception as error:  # a half-unloaded model must not break the listing
        return f"<{type(error).__name__}: {error}>"


def _patcher(loaded: Any) -> Any:
    """The ModelPatcher of a LoadedModel: ``.model`` (a property over a weakref since 0.3.x, a plain attribute
    before), or the weakref ``_model`` itself; None once the patcher was garbage collected."""
    try:
        patcher = loaded.model
    except Exception:
        patcher = None
    if patcher is None:
        ref = getattr(loaded, "_model", None)
        patcher = ref() if callable(ref) else ref
    return patcher


def _module(loaded: Any, patcher: Any) -> Any:
    """The nn.Module the patcher wraps, or the weakly held ``real_model`` when the patcher is gone."""
    module = getattr(patcher, "model", None) if patcher is not None else None
    if module is None:
        ref = getattr(loaded, "real_model", None)
        module = ref() if callable(ref) else ref
    return module


def describe(loaded: Any) -> dict[str, Any]:
    """One entry of current_loaded_models as plain JSON."""
    patcher = _patcher(loaded)
    module = _module(loaded, patcher)
    device = _call(patcher, "current_loaded_device") if patcher is not None else None
    return {
        "class": type(module).__name__ if module is not None else None,
        "patcher_class": type(patcher).__name__ if patcher is not None else None,
        "component": getattr(module, "relumix_component", None),
        "checkpoint": getattr(module, "relumix_checkpoint", None),
        "device": str(device if device is not None else getattr(loaded, "device", None)),
        "loaded_bytes": _call(patcher, "loaded_size") if patcher is not None else None,
        "size_bytes": _call(patcher, "model_size") if patcher is not None else None,
        "dead": _call(loaded, "is_dead"),
    }


def rss_bytes() -> int:
    """This process's resident memory now."""
    try:
        import psutil

        return int(psutil.Process(os.getpid()).memory_info().rss)
    except ImportError:
        with open("/proc/self/status", encoding="ascii") as status:
            match = re.search(r"^VmRSS:\s+(\d+)\s+kB", status.read(), re.MULTILINE)
        return int(match.group(1)) * 1024 if match else -1


def _register() -> None:
    """Add the routes to the running PromptServer; outside ComfyUI (a plain import) there is nothing to add to."""
    try:
        import comfy.model_management as mm
        from aiohttp import web
        from server import PromptServer
    except ImportError:
        return
    if getattr(PromptServer, "instance", None) is None:
        return
    routes = PromptServer.instance.routes

    @routes.get("/relumix_probe/loaded_models")
    async def loaded_models(request: web.Request) -> web.Response:
        return web.json_response([describe(loaded) for loaded in list(mm.current_loaded_models)])

    @routes.get("/relumix_probe/rss")
    async def rss(request: web.Request) -> web.Response:
        return web.json_response({"rss": rss_bytes(), "pid": os.getpid()})


_register()
