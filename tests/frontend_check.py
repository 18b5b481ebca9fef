"""Load the UI workflows in ComfyUI's real frontend (headless Chromium over the DevTools protocol) and check them.

Nothing in the ComfyUI folder is changed: the pack is linked into a temporary custom_nodes folder that an
extra_model_paths.yaml hands to the server, which also gets temporary user/input/output/temp folders and a
temporary models/relumix folder holding an empty ``relumix.pth`` placeholder (only listed by the loader's combo,
never loaded: no workflow is executed here).

Command line (also used by tests/comfyui/test_frontend.py)::

    .venv/bin/python tests/frontend_check.py --comfy-dir /work/comfy/ComfyUI \
        --comfy-python /work/comfy/venv/bin/python --screenshot docs/workflow_basic.png
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import websocket

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO / "workflows"
PACK_NODES = ("LoadReLumixModel", "ReferenceReplace", "EmbeddingFuse", "ReLumixSampler", "ReLumixSimpleRelight")
# Nodes from kijai/ComfyUI-IC-Light, which the iclight workflow needs and which are not part of ComfyUI itself.
ICLIGHT_NODES = ("LoadAndApplyICLightUnet", "ICLightConditioning", "LightSource")
WINDOW = (1600, 900)
SHOT_WINDOW = (2000, 800)  # the basic graph is about 3:1; at this size the fitted view keeps the text readable


def free_port() -> int:
    """A free loopback TCP port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_http(url: str, timeout: float, proc: subprocess.Popen, log: Path | None = None) -> None:
    """Poll ``url`` until it answers 200; fail early when ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log else ""
            raise RuntimeError(f"process exited with code {proc.returncode} before {url} answered\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f}s")


def _stop(proc: subprocess.Popen, grace: float = 15.0) -> None:
    """Stop one process this module started (by its pid), SIGKILL after ``grace`` seconds."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@contextmanager
def comfy_server(comfy_dir: Path, python: str, workdir: Path, timeout: float = 180.0,
                 extra_args: Sequence[str] = ()) -> Iterator[str]:
    """Run ComfyUI (CPU) with the pack from a temporary custom_nodes folder; yields the base URL. ``extra_args``
    go to main.py as they are (e.g. ``--preview-method latent2rgb`` for tests/frontend_preview.py)."""
    nodes = workdir / "custom_nodes"
    models = workdir / "models" / "relumix"
    for sub in ("user/default", "input", "output", "temp"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
    nodes.mkdir()
    models.mkdir(parents=True)
    (nodes / "relumix").symlink_to(REPO, target_is_directory=True)
    (models / "relumix.pth").touch()
    # No templates dialog on the first visit, no minimap over the screenshot, full-detail nodes at any zoom.
    settings = {"Comfy.TutorialCompleted": True, "Comfy.Minimap.Visible": False,
                "LiteGraph.Canvas.MinFontSizeForLOD": 0}
    (workdir / "user" / "default" / "comfy.settings.json").write_text(json.dumps(settings))
    config = workdir / "extra_model_paths.yaml"
    config.write_text(f"frontend_check:\n    custom_nodes: {json.dumps(str(nodes))}\n"
                      f"    relumix: {json.dumps(str(models))}\n")
    port = free_port()
    log = workdir / "comfyui.log"
    command = [python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port), "--disable-auto-launch",
               "--extra-model-paths-config", str(config), "--user-directory", str(workdir / "user"),
               "--input-directory", str(workdir / "input"), "--output-directory", str(workdir / "output"),
               "--temp-directory", str(workdir / "temp"), *extra_args]
    env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    with log.open("w") as fh:
        proc = subprocess.Popen(command, cwd=comfy_dir, stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_http(base + "/system_stats", timeout, proc, log)
        with urllib.request.urlopen(base + "/object_info/ReLumixSampler", timeout=30) as resp:
            if "ReLumixSampler" not in json.load(resp):
                raise RuntimeError(f"the pack's nodes are not registered\n{log.read_text()[-3000:]}")
        yield base
    finally:
        _stop(proc)
        (nodes / "relumix").unlink(missing_ok=True)


class Browser:
    """A headless Chromium page driven over the Chrome DevTools Protocol (websocket-client, synchronous)."""

    def __init__(self, binary: str, workdir: Path, window: tuple[int, int] = WINDOW) -> None:
        profile = workdir / "chromium-profile"
        profile.mkdir()
        command = [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                   "--no-first-run", "--no-default-browser-check", "--hide-scrollbars", "--mute-audio",
                   "--remote-debugging-port=0", f"--user-data-dir={profile}",
                   f"--window-size={window[0]},{window[1]}", "about:blank"]
        self.log = workdir / "chromium.log"
        with self.log.open("w") as fh:
            self.proc = subprocess.Popen(command, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        self.events: list[dict[str, Any]] = []
        self._id = 0
        try:
            port_file = profile / "DevToolsActivePort"
            deadline = time.monotonic() + 30
            while not (port_file.is_file() and port_file.read_text().strip()):
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"chromium did not start\n{self.log.read_text()[-3000:]}")
                time.sleep(0.1)
            port = int(port_file.read_text().split()[0])
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as resp:
                page = next(t for t in json.load(resp) if t["type"] == "page")
            self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=120, suppress_origin=True)
            for domain in ("Page", "Runtime", "Log"):
                self.call(f"{domain}.enable")
            self.resize(window)
        except BaseException:
            self.close()
            raise

    def resize(self, window: tuple[int, int]) -> None:
        """Set the page's viewport size (CSS pixels, device scale 1)."""
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": window[0], "height": window[1], "deviceScaleFactor": 1, "mobile": False})

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send one CDP command and return its result; events received meanwhile go to ``self.events``."""
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params or {}}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self._id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]
            if "method" in message:
                self.events.append(message)

    def evaluate(self, expression: str) -> Any:
        """Evaluate JS (promises awaited) and return its JSON value; a thrown exception becomes a RuntimeError."""
        result = self.call("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                                "returnByValue": True})
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise RuntimeError(details.get("exception", {}).get("description") or details.get("text"))
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60.0) -> None:
        """Poll a JS expression until it is truthy."""
        deadline = time.monotonic() + timeout
        while not self.evaluate(f"!!({expression})"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{expression!r} still false after {timeout:.0f}s")
            time.sleep(0.2)

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and browser log errors seen so far."""
        found = []
        for event in self.events:
            method, params = event["method"], event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append("console: " + " ".join(str(a.get("value", a.get("description", "")))
                                                    for a in params.get("args", [])))
            elif method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                found.append("exception: " + (details.get("exception", {}).get("description") or details["text"]))
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                entry = params["entry"]
                found.append(f"log: {entry.get('text')} {entry.get('url', '')}".strip())
        return found

    def screenshot(self) -> bytes:
        """PNG of the page."""
        return base64.b64decode(self.call("Page.captureScreenshot", {"format": "png"})["data"])

    def close(self) -> None:
        """Close the websocket and stop the browser process."""
        if getattr(self, "ws", None) is not None:
            self.ws.close()
        _stop(self.proc, grace=5)


INSPECT_JS = """
(async () => {
  const wf = %s;
  await app.loadGraphData(wf);
  await new Promise((resolve) => setTimeout(resolve, 500));
  const links = app.graph.links;
  const nodes = app.graph.nodes.map((n) => ({
    id: n.id, type: n.type, constructorType: n.constructor.type ?? null,
    registered: !!LiteGraph.registered_node_types[n.type], hasErrors: !!n.has_errors,
    widgets: (n.widgets ?? []).map((w) => ({name: w.name, value: w.value, serialize: w.serialize !== false})),
    serialized: n.serialize().widgets_values ?? null,
  }));
  let prompt = null;
  try { prompt = (await app.graphToPrompt()).output; } catch (e) { prompt = String(e); }
  return {nodes, links: links instanceof Map ? links.size : Object.keys(links).length, prompt};
})()
"""


def _same(a: Any, b: Any) -> bool:
    """Equality with a float tolerance (widgets round to their step)."""
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _api_view(prompt: dict[str, Any]) -> dict[str, Any]:
    """An API prompt without its ``_meta`` titles."""
    return {k: {"class_type": v.get("class_type"), "inputs": v.get("inputs")} for k, v in prompt.items()}


def check_workflow(browser: Browser, path: Path) -> dict[str, Any]:
    """Load one UI workflow into the page and compare the graph with the file."""
    data = json.loads(path.read_text())
    before = len(browser.events)
    state = browser.evaluate(INSPECT_JS % json.dumps(data))
    loaded = {n["id"]: n for n in state["nodes"]}
    problems: list[str] = []
    if sorted(loaded) != sorted(n["id"] for n in data["nodes"]):
        problems.append(f"node ids {sorted(loaded)} != file {sorted(n['id'] for n in data['nodes'])}")
    if state["links"] != len(data["links"]):
        problems.append(f"{state['links']} links loaded, the file has {len(data['links'])}")
    missing, mismatches = [], []
    for node in data["nodes"]:
        got = loaded.get(node["id"])
        if got is None:
            continue
        if got["type"] != node["type"]:
            problems.append(f"node {node['id']}: type {got['type']} != file {node['type']}")
        if not got["registered"] or got["hasErrors"] or got["constructorType"] != node["type"]:
            missing.append(node["type"])
            continue
        shown = [w["value"] for w in got["widgets"]]
        expected = node.get("widgets_values", [])
        if not _same(shown, expected) or not _same(got["serialized"] or [], expected):
            mismatches.append({"id": node["id"], "type": node["type"], "file": expected, "shown": shown,
                               "serialized": got["serialized"]})
    beside = path.parent / "api" / path.name  # a test fixture carries its own API twin
    api_file = beside if beside.is_file() else WORKFLOWS / "api" / path.name
    prompt_matches_api = None
    if api_file.is_file() and isinstance(state["prompt"], dict):
        api = json.loads(api_file.read_text())
        prompt_matches_api = _api_view(state["prompt"]) == _api_view(api)
    return {"workflow": path.name, "nodes_in_file": len(data["nodes"]), "nodes_loaded": len(loaded),
            "links_in_file": len(data["links"]), "links_loaded": state["links"], "missing_types": sorted(set(missing)),
            "widget_mismatches": mismatches, "problems": problems, "prompt_matches_api": prompt_matches_api,
            "errors": _errors_since(browser, before)}


def _errors_since(browser: Browser, start: int) -> list[str]:
    """Errors among the events recorded after index ``start``."""
    saved = browser.events
    browser.events = saved[start:]
    try:
        return browser.errors()
    finally:
        browser.events = saved


# Fit the nodes with the given ids (null: every node) into the canvas, with a margin (more at the bottom for the
# zoom controls); the frontend's own Comfy.Canvas.FitView leaves wide margins. Canvas position = (graph position +
# offset) * scale. Fill in the ids with ``FIT_JS % json.dumps(ids)``.
FIT_JS = """
(async (ids) => {
  await new Promise((r) => setTimeout(r, 500));
  const title = LiteGraph.NODE_TITLE_HEIGHT;
  const nodes = ids ? ids.map((id) => app.graph.getNodeById(id)) : app.graph.nodes;
  const xs = nodes.flatMap((n) => [n.pos[0], n.pos[0] + n.size[0]]);
  const ys = nodes.flatMap((n) => [n.pos[1] - title, n.pos[1] + n.size[1]]);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const rect = app.canvas.canvas.getBoundingClientRect();  // canvas coordinates start at its top-left corner
  const area = {left: 24, top: 24, right: rect.width - 24, bottom: rect.height - 70};
  app.canvas.show_info = false;  // the render-statistics text at the bottom left
  const scale = Math.min((area.right - area.left) / (x1 - x0), (area.bottom - area.top) / (y1 - y0));
  const ds = app.canvas.ds;
  ds.scale = scale;
  ds.offset[0] = (area.left + area.right) / 2 / scale - (x0 + x1) / 2;
  ds.offset[1] = (area.top + area.bottom) / 2 / scale - (y0 + y1) / 2;
  app.graph.setDirtyCanvas(true, true);
  await new Promise((r) => setTimeout(r, 800));
  return scale;
})(%s)
"""


def fit_and_screenshot(browser: Browser, path: Path, workflow: Path) -> tuple[int, int]:
    """Load ``workflow``, fit it to the view and save a PNG (palette-quantised to stay small); returns its size."""
    from PIL import Image

    browser.resize(SHOT_WINDOW)
    browser.evaluate(f"app.loadGraphData({workflow.read_text()}, true, true, {json.dumps(workflow.stem)})")
    browser.evaluate(FIT_JS % "null")
    image = Image.open(io.BytesIO(browser.screenshot())).convert("RGB")
    browser.resize(WINDOW)
    image = image.quantize(colors=128, method=Image.Quantize.MEDIANCUT)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, optimize=True)
    return image.size


def run_checks(comfy_dir: Path, comfy_python: str, chromium: str, screenshot: Path | None = None,
               workflows: list[Path] | None = None) -> dict[str, Any]:
    """Start server and browser, check every UI workflow, optionally save the basic workflow's screenshot."""
    workflows = workflows or sorted(WORKFLOWS.glob("*.json"))
    started = time.monotonic()
    with ExitStack() as stack:
        workdir = Path(tempfile.mkdtemp(prefix="relumix_frontend_"))
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        base = stack.enter_context(comfy_server(comfy_dir, comfy_python, workdir))
        browser = Browser(chromium, workdir)
        stack.callback(browser.close)
        browser.call("Page.navigate", {"url": base + "/"})
        browser.wait_for("window.app && window.app.graph && window.app.canvas && window.LiteGraph "
                         "&& window.app.extensionManager && window.app.extensionManager.command", timeout=90)
        browser.wait_for("LiteGraph.registered_node_types['ReLumixSampler']", timeout=30)
        startup_errors = browser.errors()
        shot = None
        if screenshot is not None:  # first, before the iclight workflow opens its missing-nodes dialog
            size = fit_and_screenshot(browser, screenshot, WORKFLOWS / "relumix_basic.json")
            shot = {"path": str(screenshot), "size": size, "bytes": screenshot.stat().st_size}
        results = [check_workflow(browser, path) for path in workflows]
        return {"startup_errors": startup_errors, "workflows": results, "screenshot": shot,
                "seconds": round(time.monotonic() - started, 1)}


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: print the JSON report; exit 1 on a problem in our nodes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfy-dir", type=Path, default=os.environ.get("COMFYUI_DIR"), required=False)
    parser.add_argument("--comfy-python", default=os.environ.get("COMFYUI_PYTHON"))
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    parser.add_argument("--screenshot", type=Path, help="save the basic workflow, fitted to the view, here")
    args = parser.parse_args(argv)
    if not (args.comfy_dir and args.comfy_python and args.chromium):
        parser.error("need --comfy-dir, --comfy-python and a chromium binary")
    report = run_checks(args.comfy_dir, args.comfy_python, args.chromium, args.screenshot)
    print(json.dumps(report, indent=2))
    bad = [r for r in report["workflows"]
           if r["problems"] or r["widget_mismatches"] or set(r["missing_types"]) - set(ICLIGHT_NODES)]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
