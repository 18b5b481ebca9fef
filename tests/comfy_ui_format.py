"""Our UI-format workflows (what users drag into ComfyUI) are generated from the API-format ones.

The API format is the source of truth (tests execute it); ``python tests/comfy_ui_format.py`` writes
``workflows/<name>.json`` from ``workflows/api/<name>.json`` with the node definitions (ours from INPUT_TYPES, core
and third-party ones from a real server's /object_info), following the frontend's conventions: widget values in
input order, a "fixed" control after seeds, the upload widget after LoadImage/LoadVideo files, linked widgets as
inputs with a "widget" entry, and nodes laid out left to right by depth.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFS_DIR = Path(__file__).resolve().parent / "comfy_defs"
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
COLUMN, ROW = 420, 330


def load_definitions(pack_nodes: dict[str, type]) -> dict[str, dict[str, Any]]:
    """object_info-style definitions: third-party and core from tests/comfy_defs, ours from the classes."""
    defs: dict[str, dict[str, Any]] = {}
    for path in sorted(DEFS_DIR.glob("*.json")):
        defs.update({k: v for k, v in json.loads(path.read_text()).items() if not k.startswith("_")})
    for name, cls in pack_nodes.items():
        spec = cls.INPUT_TYPES()
        defs[name] = {
            "input": spec,
            "input_order": {section: list(spec[section]) for section in ("required", "optional") if section in spec},
            "output": list(cls.RETURN_TYPES),
            "output_name": list(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)),
        }
    return defs


def _is_widget(entry: Any) -> bool:
    kind = entry[0] if isinstance(entry, (list, tuple)) else entry
    return isinstance(kind, (list, tuple)) or kind in WIDGET_TYPES


def _inputs_in_order(definition: dict[str, Any]) -> list[tuple[str, str, Any]]:
    order = definition.get("input_order") or {s: list(definition["input"].get(s, {})) for s in ("required", "optional")}
    return [(section, name, definition["input"][section][name])
            for section in ("required", "optional") for name in order.get(section, [])]


def _default(entry: Any) -> Any:
    kind, options = entry[0], entry[1] if len(entry) > 1 else {}
    if "default" in options:
        return options["default"]
    if isinstance(kind, (list, tuple)):
        return kind[0] if kind else ""
    return (options.get("options") or [""])[0] if kind == "COMBO" else {"INT": 0, "FLOAT": 0.0, "BOOLEAN": False}.get(
        kind, "")


def _depths(api: dict[str, Any]) -> dict[str, int]:
    depth: dict[str, int] = {}

    def of(node_id: str) -> int:
        if node_id not in depth:
            links = [v for v in api[node_id]["inputs"].values() if isinstance(v, list)]
            depth[node_id] = 1 + max((of(str(v[0])) for v in links), default=-1)
        return depth[node_id]

    for node_id in api:
        of(node_id)
    return depth


def api_to_ui(api: dict[str, Any], defs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The UI-format workflow of an API-format one."""
    depth = _depths(api)
    rows: dict[int, int] = {}
    links: list[list[Any]] = []
    nodes: list[dict[str, Any]] = []
    out_links: dict[tuple[str, int], list[int]] = {}
    for order, node_id in enumerate(sorted(api, key=lambda n: (depth[n], int(n)))):
        node = api[node_id]
        definition = defs[node["class_type"]]
        inputs, widgets = [], []
        linked_widgets = []
        for section, name, entry in _inputs_in_order(definition):
            value = node["inputs"].get(name)
            link = None
            if isinstance(value, list):
                links.append([len(links) + 1, int(value[0]), value[1], int(node_id), None, None])
                link = len(links)
                out_links.setdefault((str(value[0]), value[1]), []).append(link)
            kind = entry[0] if isinstance(entry[0], str) else "COMBO"
            if _is_widget(entry):
                options = entry[1] if len(entry) > 1 else {}
                widgets.append(_default(entry) if value is None or link else value)
                if options.get("control_after_generate") or name in ("seed", "noise_seed"):
                    widgets.append("fixed")
                if options.get("image_upload") or options.get("video_upload"):
                    widgets.append("image")
                if link:
                    linked_widgets.append({"name": name, "type": kind, "widget": {"name": name}, "link": link})
            else:
                socket = {"name": name, "type": kind, "link": link}
                if section == "optional":
                    socket["shape"] = 7
                inputs.append(socket)
        all_inputs = inputs + linked_widgets
        for slot, socket in enumerate(all_inputs):
            if socket["link"]:
                links[socket["link"] - 1][4] = slot
                links[socket["link"] - 1][5] = socket["type"]
        column = depth[node_id]
        row = rows.get(column, 0)
        rows[column] = row + 1
        nodes.append({
            "id": int(node_id),
            "type": node["class_type"],
            "pos": [50 + column * COLUMN, 50 + row * ROW],
            "size": [360, 260],
            "flags": {},
            "order": order,
            "mode": 0,
            "inputs": all_inputs,
            "outputs": [{"name": name, "type": kind, "slot_index": i, "links": None}
                        for i, (kind, name) in enumerate(zip(definition["output"],
                                                             definition.get("output_name") or definition["output"],
                                                             strict=True))],
            "title": node.get("_meta", {}).get("title", node["class_type"]),
            "properties": {"Node name for S&R": node["class_type"]},
            "widgets_values": widgets,
        })
    for node in nodes:
        for output in node["outputs"]:
            found = out_links.get((str(node["id"]), output["slot_index"]))
            output["links"] = found or None
    return {
        "last_node_id": max(int(n) for n in api),
        "last_link_id": len(links),
        "nodes": nodes,
        "links": links,
        "groups": [],
        "config": {},
        "extra": {"ds": {"scale": 0.8, "offset": [0, 0]}},
        "version": 0.4,
    }


def ui_path(api_path: Path) -> Path:
    return REPO / "workflows" / api_path.name


def write_all(pack_nodes: dict[str, type]) -> list[Path]:
    defs = load_definitions(pack_nodes)
    written = []
    for api_path in sorted((REPO / "workflows" / "api").glob("*.json")):
        ui = api_to_ui(json.loads(api_path.read_text()), defs)
        ui_path(api_path).write_text(json.dumps(ui, indent=2) + "\n")
        written.append(ui_path(api_path))
    return written


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from pack_loader import load_pack

    for path in write_all(load_pack().NODE_CLASS_MAPPINGS):
        print(f"wrote {path.relative_to(REPO)}")
