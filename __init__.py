"""ComfyUI entry point for ReLumix: ComfyUI imports this folder from custom_nodes/ and reads the mappings.

The library, ``relumix_core``, lives beside the nodes. When the pack was cloned rather than pip-installed, this
folder is put on ``sys.path`` so the nodes can import it; an installed ``relumix_core`` is used as it is.

When a requirement is missing (a clone without ``pip install -r requirements.txt``, or pip run with another Python
than ComfyUI's), the pack says so in one line and registers no nodes, so ComfyUI still starts. The nodes import the
heavy libraries only when they run, so the requirements are checked here, at startup, rather than at the first run.
"""

import importlib.util
import os
import re
import sys

PACK_DIR = os.path.dirname(os.path.abspath(__file__))
REQUIREMENTS = os.path.join(PACK_DIR, "requirements.txt")
#: Requirements whose import name is not their distribution name.
IMPORT_NAMES = {"pillow": "PIL"}

if importlib.util.find_spec("relumix_core") is None:
    sys.path.insert(0, PACK_DIR)


def _requirements() -> dict[str, str]:
    """Distribution name -> import name for each line of requirements.txt (lines with a marker are skipped: whether
    they apply is pip's business)."""
    found: dict[str, str] = {}
    try:
        with open(REQUIREMENTS, encoding="utf-8") as lines:
            for line in lines:
                line = line.split("#", 1)[0].strip()
                match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", line)
                if match and ";" not in line:
                    name = match.group(0).lower()
                    found[name] = IMPORT_NAMES.get(name, name.replace("-", "_"))
    except OSError:
        pass
    return found


def _importable(module: str) -> bool:
    """Whether ``import module`` can find it, without importing it (find_spec of a top-level name is cheap)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a finder that refuses the name; a module without a spec in sys.modules
        return False


def _missing_message(packages: list[str]) -> str:
    """The one line for the console: what is missing and the exact command, with this (ComfyUI's) Python."""
    import shlex
    import subprocess

    command = [sys.executable, "-m", "pip", "install", "-r", REQUIREMENTS]
    command_line = subprocess.list2cmdline(command) if os.name == "nt" else shlex.join(command)
    names = ", ".join(repr(name) for name in packages)
    what = f"the Python package {names} is" if len(packages) == 1 else f"the Python packages {names} are"
    return (f"[ReLumix] not loaded: {what} missing. Install the pack's requirements with ComfyUI's own Python: "
            f"{command_line}")


def _load() -> tuple[dict[str, type], dict[str, str]]:
    """The node mappings, or empty ones (and the one line) when a requirement is missing; a bug still raises."""
    requirements = _requirements()
    missing = [name for name, module in requirements.items() if not _importable(module)]
    if not missing:
        try:
            from .nodes import NODE_CLASS_MAPPINGS as classes
            from .nodes import NODE_DISPLAY_NAME_MAPPINGS as names
        except ModuleNotFoundError as error:
            top = (error.name or "").split(".")[0]
            missing = [name for name, module in requirements.items() if module == top]
            if not missing:
                raise
        else:
            return classes, names
    print(_missing_message(missing), file=sys.stderr, flush=True)
    return {}, {}


NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS = _load()

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
